"""OpenTelemetry spans and Temporal SDK metrics of real runs.

Spans go to an in-memory exporter: a client with Temporal's
``TracingInterceptor`` starts the run, the worker built from that client
inherits the interceptor, and the model and tool activities add GenAI spans.
Metrics go through a ``MetricBuffer`` on the worker's Temporal runtime.
"""

from __future__ import annotations

import asyncio
import json
import struct
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased
from opentelemetry.trace import Tracer
from provider_servers import OPENAI_PATH, FakeProvider, Reply, openai_completion
from temporalio.client import Client, Interceptor, WorkflowFailureError
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.runtime import BufferedMetricUpdate, MetricBuffer, Runtime, TelemetryConfig

from conftest import eventually
from onward.activities.providers import close_providers, providers_from_env
from onward.activities.telemetry import ActivityTelemetry
from onward.client import OnwardClient
from onward.connection import DATA_CONVERTER
from onward.contracts import (
    AgentInput,
    AgentResult,
    ModelRequest,
    ModelResponse,
    ToolRequest,
    Usage,
)
from onward.errors import SettingsError, ToolRetryableError
from onward.telemetry import (
    RunTracingInterceptor,
    configure_telemetry,
    run_trace_id,
    temporal_runtime,
)
from onward.worker import WorkerSettings, build_worker
from onward.workflows import AgentWorkflow

SCRIPT: list[dict[str, Any]] = [
    {
        "text": "compute, save and read",
        "tool_calls": [
            {"name": "calculator", "arguments": {"expression": "6 * 7"}},
            {"name": "write_file", "arguments": {"path": "answer.txt", "content": "42"}},
            {"name": "read_file", "arguments": {"path": "missing.txt"}},
        ],
        "usage": {"input_tokens": 11, "output_tokens": 7},
    },
    {"text": "It is 42.", "usage": {"input_tokens": 13, "output_tokens": 2}},
]
USAGE = [(11, 7), (13, 2)]
"""Input and output tokens of the two model calls."""
TOOLS = [("calculator", "call_1_1"), ("write_file", "call_1_2"), ("read_file", "call_1_3")]
ACCEPTED = Reply(body=b"", headers={"content-type": "application/x-protobuf"})
"""An OTLP collector's answer to an export."""


async def _client(address: str, **options: Any) -> Client:
    return await Client.connect(address, data_converter=DATA_CONVERTER, **options)


@asynccontextmanager
async def _worker(
    client: Client, workspace: Path, telemetry: ActivityTelemetry, **options: Any
) -> AsyncIterator[str]:
    """A worker from ``client`` (inheriting its interceptors); yields its task queue."""
    settings = WorkerSettings(task_queue=f"tq-{uuid.uuid4().hex[:12]}", workspace=workspace)
    async with build_worker(client, settings, telemetry=telemetry, **options):
        yield settings.task_queue


async def _run(client: Client, task_queue: str) -> AgentResult:
    handle = await client.start_workflow(
        AgentWorkflow.run,
        AgentInput.model_validate({"prompt": "what is 6 * 7?", "script": SCRIPT}),
        id=f"otel-{uuid.uuid4().hex[:12]}",
        task_queue=task_queue,
    )
    return await handle.result()


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def _traced_interceptors(tracer: Tracer) -> list[Interceptor]:
    return [TracingInterceptor(tracer)]


async def _traced_run(
    address: str,
    provider: TracerProvider,
    workspace: Path,
    trace_content: bool = False,
    **options: Any,
) -> AgentResult:
    client = await _client(
        address, interceptors=_traced_interceptors(provider.get_tracer("onward-client"))
    )
    telemetry = ActivityTelemetry(tracer=provider.get_tracer("onward"), trace_content=trace_content)
    async with _worker(client, workspace, telemetry, **options) as task_queue:
        result = await _run(client, task_queue)
    assert result.status == "completed"
    return result


def _named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def _attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


# -- spans ----------------------------------------------------------------------------


async def test_one_run_is_one_trace_with_genai_spans(
    address: str, provider: TracerProvider, exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    await _traced_run(address, provider, tmp_path / "ws")
    spans = exporter.get_finished_spans()
    names = Counter(span.name for span in spans)

    for name in [
        "StartWorkflow:AgentWorkflow",
        "RunWorkflow:AgentWorkflow",
        "StartActivity:call_model",
        "RunActivity:call_model",
        "StartActivity:execute_tool",
        "RunActivity:execute_tool",
        "chat scripted",
        "execute_tool calculator",
        "execute_tool write_file",
    ]:
        assert names[name] >= 1, (name, names)
    assert len({span.context.trace_id for span in spans}) == 1

    chats = _named(spans, "chat scripted")
    assert len(chats) == 2
    for chat, (tokens_in, tokens_out) in zip(
        sorted(chats, key=lambda span: _attributes(span)["onward.step"]), USAGE, strict=True
    ):
        attributes = _attributes(chat)
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.provider.name"] == "scripted"
        assert attributes["gen_ai.request.model"] == "scripted"
        assert attributes["gen_ai.usage.input_tokens"] == tokens_in
        assert attributes["gen_ai.usage.output_tokens"] == tokens_out
        assert "gen_ai.input.messages" not in attributes
        assert "gen_ai.output.messages" not in attributes

    for name, call_id in TOOLS:
        (tool,) = _named(spans, f"execute_tool {name}")
        attributes = _attributes(tool)
        assert attributes["gen_ai.operation.name"] == "execute_tool"
        assert attributes["gen_ai.tool.name"] == name
        assert attributes["gen_ai.tool.call.id"] == call_id
        assert "gen_ai.tool.call.arguments" not in attributes
        assert "gen_ai.tool.call.result" not in attributes
    (failed,) = _named(spans, "execute_tool read_file")
    assert _attributes(failed)["error.type"] == "ToolError"
    assert not failed.status.is_ok


@pytest.mark.parametrize("sampled", [True, False])
async def test_a_run_started_without_a_trace_is_one_trace_of_its_own(
    address: str, exporter: InMemorySpanExporter, tmp_path: Path, sampled: bool
) -> None:
    """As from the `temporal` CLI or the Web UI: no client span, no trace context. The
    tracer's sampler decides for the trace as for a root (ParentBased: its root sampler)."""
    provider = TracerProvider(sampler=ParentBased(ALWAYS_ON if sampled else ALWAYS_OFF))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = RunTracingInterceptor(provider.get_tracer("onward"))
    worker_client = await _client(address, interceptors=[tracing])
    starter = await _client(address)  # traces nothing
    telemetry = ActivityTelemetry(tracer=provider.get_tracer("onward"))
    async with _worker(worker_client, tmp_path / "ws", telemetry) as task_queue:
        chain = {"prompt": "what is 6 * 7?", "script": SCRIPT, "continue_as_new_after": 1}
        handle = await starter.start_workflow(
            AgentWorkflow.run,
            AgentInput.model_validate(chain),
            id=f"otel-{uuid.uuid4().hex[:12]}",
            task_queue=task_queue,
        )
        assert (await handle.result()).status == "completed"
    spans = exporter.get_finished_spans()
    if not sampled:
        assert spans == ()
        return
    names = Counter(span.name for span in spans)
    assert names["StartWorkflow:AgentWorkflow"] == 0  # no client span
    assert names["RunWorkflow:AgentWorkflow"] == 2  # two runs of a chain, one trace
    assert names["chat scripted"] == 2 and names["execute_tool calculator"] == 1
    assert {trace.format_trace_id(span.context.trace_id) for span in spans} == {
        run_trace_id(handle.id, handle.first_execution_run_id or "")
    }


def _protobuf_fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """The top-level fields of a protobuf message: (number, value), a length-delimited
    value as its bytes. Just enough to read an OTLP export without its generated code."""
    fields: list[tuple[int, int | bytes]] = []
    at = 0

    def varint() -> int:
        nonlocal at
        value = shift = 0
        while True:
            byte = data[at]
            at += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    while at < len(data):
        key = varint()
        number, kind = key >> 3, key & 7
        if kind == 0:
            fields.append((number, varint()))
        elif kind == 2:
            size = varint()
            fields.append((number, data[at : at + size]))
            at += size
        else:  # fixed 64 or 32 bits
            width = 8 if kind == 1 else 4
            fields.append((number, data[at : at + width]))
            at += width
    return fields


def _field(data: bytes, number: int) -> list[bytes]:
    return [
        value for n, value in _protobuf_fields(data) if n == number and isinstance(value, bytes)
    ]


def _otlp_labels(body: bytes, metric: str, label: str) -> set[str]:
    """The values of ``label`` on the data points of a counter ``metric`` in an OTLP
    ExportMetricsServiceRequest (resource_metrics 1 > scope_metrics 2 > metrics 2 >
    sum 7 > data_points 1 > attributes 7: KeyValue key 1, value 2 > string_value 1)."""
    values: set[str] = set()
    for resource in _field(body, 1):
        for scope in _field(resource, 2):
            for found in _field(scope, 2):
                if _field(found, 1) != [metric.encode()]:
                    continue
                for total in _field(found, 7):
                    for point in _field(total, 1):
                        for attribute in _field(point, 7):
                            if _field(attribute, 1) == [label.encode()]:
                                (value,) = _field(attribute, 2)
                                values.update(v.decode() for v in _field(value, 1))
    return values


async def test_a_local_tool_calls_arguments_name_no_span_and_no_metric(
    address: str, provider: TracerProvider, exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    """A local tool call's activity type is its summary, ``calculator(6 * 7)``: spans
    and Onward's metrics name the tool instead, so that content capture off keeps the
    arguments out, and a span name or label is not one per distinct call. Metrics go
    over OTLP, as from a worker: there a label added twice keeps its first value."""
    tracing = RunTracingInterceptor(provider.get_tracer("onward"))
    telemetry = ActivityTelemetry(tracer=provider.get_tracer("onward"))
    async with FakeProvider("/v1/metrics") as collector:
        collector.script(*[ACCEPTED] * 100)
        runtime = temporal_runtime({"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url})
        client = await _client(address, interceptors=[tracing], runtime=runtime)
        async with _worker(client, tmp_path / "ws", telemetry) as task_queue:
            await _run(client, task_queue)

        def labels() -> set[str]:
            return {
                value
                for request in collector.requests
                for value in _otlp_labels(request.raw, "onward.tool.calls", "activity_type")
            }

        async def exported() -> bool:
            return len(labels()) >= 2  # the local tool's and the other tools' activity

        await eventually(exported)

    names = Counter(span.name for span in exporter.get_finished_spans())
    assert names["StartActivity:calculator"] == names["RunActivity:calculator"] == 1, names
    assert not [name for name in names if "6 * 7" in name], names
    assert labels() == {"calculator", "execute_tool"}


async def test_a_run_is_one_invoke_agent_span_with_its_outcome(
    address: str, provider: TracerProvider, exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    """One span per run, across continue-as-new and however often the workflow replays
    (no cache here): from the run's start to its end, what it used, and an outcome that
    is not the answer (``budget_exceeded``, ``failed``) as status ERROR."""
    tracing = RunTracingInterceptor(provider.get_tracer("onward"))
    client = await _client(address, interceptors=[tracing])
    telemetry = ActivityTelemetry(tracer=provider.get_tracer("onward"))
    chain = {"prompt": "what is 6 * 7?", "script": SCRIPT, "continue_as_new_after": 1}
    stopped = {"prompt": "what is 6 * 7?", "script": SCRIPT, "budget": {"max_tokens": 10}}
    results: dict[str, AgentResult] = {}
    async with _worker(client, tmp_path / "ws", telemetry, max_cached_workflows=0) as queue:
        for given in (chain, stopped):
            handle = await client.start_workflow(
                AgentWorkflow.run,
                AgentInput.model_validate(given),
                id=f"otel-{uuid.uuid4().hex[:12]}",
                task_queue=queue,
            )
            results[handle.id] = await handle.result()
    spans = exporter.get_finished_spans()

    runs = {_attributes(span)["onward.workflow_id"]: span for span in _named(spans, "invoke_agent")}
    assert len(_named(spans, "invoke_agent")) == 2 and runs.keys() == results.keys()
    for workflow_id, run in runs.items():
        result, attributes = results[workflow_id], _attributes(run)
        assert attributes["gen_ai.operation.name"] == "invoke_agent"
        assert attributes["gen_ai.request.model"] == "scripted"
        assert attributes["onward.status"] == result.status
        assert attributes["gen_ai.usage.input_tokens"] == result.usage.input_tokens
        assert attributes["gen_ai.usage.output_tokens"] == result.usage.output_tokens
        chats = [
            chat
            for chat in _named(spans, "chat scripted")
            if _attributes(chat)["onward.workflow_id"] == workflow_id
        ]
        assert chats and run.context.trace_id == chats[0].context.trace_id
        assert run.start_time is not None and run.end_time is not None
        assert all(
            run.start_time <= (chat.start_time or 0) <= (chat.end_time or 0) <= run.end_time
            for chat in chats
        )
        if result.status == "completed":
            assert run.status.is_unset and "error.type" not in attributes
        else:
            assert result.status == "budget_exceeded"
            assert attributes["error.type"] == "budget_exceeded" and not run.status.is_ok
            assert run.status.description == result.reason


async def test_a_sessions_runs_name_their_conversation(
    address: str, provider: TracerProvider, exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    """Each message's run is an ``invoke_agent`` span with ``gen_ai.conversation.id``:
    the session's id; a run outside a session has none."""
    tracing = RunTracingInterceptor(provider.get_tracer("onward"))
    client = await _client(address, interceptors=[tracing])
    telemetry = ActivityTelemetry(tracer=provider.get_tracer("onward"))
    async with _worker(client, tmp_path / "ws", telemetry) as queue:
        onward = OnwardClient(client, task_queue=queue)
        session_id = await onward.open_session({"tools": [], "script": [{"text": "hi"}] * 2})
        for text in ("one", "two"):
            assert (await onward.send_message(session_id, text)).status == "completed"
        alone = await _run(client, queue)
    assert alone.status == "completed"

    runs = _named(exporter.get_finished_spans(), "invoke_agent")
    conversations = sorted(str(_attributes(run).get("gen_ai.conversation.id")) for run in runs)
    assert conversations == ["None", session_id, session_id]


async def test_tools_the_workflow_runs_get_spans_and_metrics_of_their_own(
    address: str, provider: TracerProvider, exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    """``wait`` and ``delegate`` run in the workflow, not in an activity: their spans
    cover the call, once however often the workflow replays (no cache here)."""
    buffer = MetricBuffer(100_000)
    tracing = RunTracingInterceptor(provider.get_tracer("onward"))
    runtime = Runtime(telemetry=TelemetryConfig(metrics=buffer))
    client = await _client(address, interceptors=[tracing], runtime=runtime)
    telemetry = ActivityTelemetry(tracer=provider.get_tracer("onward"))
    sub_agent = {"prompt": "add", "script": [{"text": "4"}]}
    script = [
        {
            "tool_calls": [
                {"name": "wait", "arguments": {"seconds": 0.5}},
                {"name": "wait", "arguments": {"seconds": -1}},
            ]
        },
        {"tool_calls": [{"name": "delegate", "arguments": sub_agent}]},
        {"text": "done"},
    ]
    agent = {"prompt": "wait, then delegate", "tools": ["wait", "delegate"], "script": script}
    async with _worker(client, tmp_path / "ws", telemetry, max_cached_workflows=0) as queue:
        handle = await client.start_workflow(
            AgentWorkflow.run,
            AgentInput.model_validate(agent),
            id=f"otel-{uuid.uuid4().hex[:12]}",
            task_queue=queue,
        )
        result = await handle.result()
    assert result.status == "completed", result.reason
    spans = exporter.get_finished_spans()

    waited, refused = sorted(
        _named(spans, "execute_tool wait"), key=lambda s: _attributes(s)["gen_ai.tool.call.id"]
    )
    (delegated,) = _named(spans, "execute_tool delegate")
    for span, call_id in [(waited, "call_1_1"), (refused, "call_1_2"), (delegated, "call_2_1")]:
        attributes = _attributes(span)
        assert attributes["gen_ai.operation.name"] == "execute_tool"
        assert attributes["gen_ai.tool.call.id"] == call_id
        assert span.start_time is not None and span.end_time is not None
    assert waited.end_time - waited.start_time >= 500_000_000  # type: ignore[operator]
    assert waited.status.is_ok and "error.type" not in _attributes(waited)
    assert _attributes(refused)["error.type"] == "ToolError" and not refused.status.is_ok
    # The sub-agent's run is in the same trace: the run is one trace, as with activities.
    assert _named(spans, "RunWorkflow:AgentWorkflow")[1:]
    assert len({span.context.trace_id for span in spans}) == 1

    updates = buffer.retrieve_updates()
    for name, calls, errors in [("wait", 2, 1), ("delegate", 1, 0)]:
        labels = {"gen_ai.tool.name": name}
        assert _total(updates, "onward.tool.calls", **labels) == calls
        assert _total(updates, "onward.tool.errors", **labels) == errors
        assert len(_updates(updates, "onward.tool.duration", **labels)) == calls


async def test_a_workflow_tool_call_the_run_cancels_is_a_failed_call(
    address: str, provider: TracerProvider, exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    """As an activity's call interrupted by a cancel: counted, failed and timed."""
    buffer = MetricBuffer(100_000)
    tracing = RunTracingInterceptor(provider.get_tracer("onward"))
    runtime = Runtime(telemetry=TelemetryConfig(metrics=buffer))
    client = await _client(address, interceptors=[tracing], runtime=runtime)
    script = [{"tool_calls": [{"name": "wait", "arguments": {"seconds": 3600}}]}]
    agent = {"prompt": "wait an hour", "tools": ["wait"], "script": script}
    telemetry = ActivityTelemetry(tracer=provider.get_tracer("onward"))
    async with _worker(client, tmp_path / "ws", telemetry) as queue:
        handle = await client.start_workflow(
            AgentWorkflow.run,
            AgentInput.model_validate(agent),
            id=f"otel-{uuid.uuid4().hex[:12]}",
            task_queue=queue,
        )

        async def waiting() -> bool:
            status = await handle.query(AgentWorkflow.status)
            return status.usage.tool_calls == 1

        await eventually(waiting)
        await handle.cancel()  # a native cancel: the run ends, the wait with it
        with pytest.raises(WorkflowFailureError):
            await handle.result()

    (waited,) = _named(exporter.get_finished_spans(), "execute_tool wait")
    assert _attributes(waited)["error.type"] == "CancelledError"
    updates = buffer.retrieve_updates()
    labels = {"gen_ai.tool.name": "wait"}
    assert _total(updates, "onward.tool.calls", **labels) == 1
    assert _total(updates, "onward.tool.errors", **labels) == 1
    assert len(_updates(updates, "onward.tool.duration", **labels)) == 1


def test_a_raised_tool_failure_and_a_named_response_model_are_recorded(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    telemetry = ActivityTelemetry(tracer=provider.get_tracer("onward"))
    request = ToolRequest(name="flaky", arguments={}, call_id="c1", step=1, idempotency_key="k")
    with pytest.raises(ToolRetryableError), telemetry.tool(request):
        raise ToolRetryableError("try again")  # raised, not returned as an outcome
    chat = ModelRequest(model="openai:gpt-4o-mini", messages=[], step=1)
    with telemetry.chat(chat) as recorder:
        recorder.record(ModelResponse(text="hi", model="openai:gpt-4o-mini"))
    with telemetry.chat(chat) as recorder:  # an answer without usage: counted at a guess
        recorder.record(ModelResponse(text="hi", usage=Usage(input_tokens=3, estimated=True)))
    tool_span, chat_span, guessed = exporter.get_finished_spans()
    assert _attributes(tool_span)["error.type"] == "ToolRetryableError"
    assert not tool_span.status.is_ok
    assert _attributes(chat_span)["gen_ai.request.model"] == "gpt-4o-mini"
    assert _attributes(chat_span)["gen_ai.response.model"] == "gpt-4o-mini"
    assert "onward.usage.estimated" not in _attributes(chat_span)
    assert _attributes(guessed)["onward.usage.estimated"] is True


async def test_content_is_recorded_only_when_asked_for(
    address: str, provider: TracerProvider, exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    await _traced_run(address, provider, tmp_path / "ws", trace_content=True)
    spans = exporter.get_finished_spans()

    # As the GenAI conventions' message JSON: {role, parts}, an answer's finish_reason.
    first, second = sorted(
        _named(spans, "chat scripted"), key=lambda s: _attributes(s)["onward.step"]
    )
    messages = json.loads(_attributes(first)["gen_ai.input.messages"])
    assert messages[-1] == {
        "role": "user",
        "parts": [{"type": "text", "content": "what is 6 * 7?"}],
    }
    (output,) = json.loads(_attributes(first)["gen_ai.output.messages"])
    assert output["role"] == "assistant" and output["finish_reason"] == "tool_call"
    text, *calls = output["parts"]
    assert text == {"type": "text", "content": "compute, save and read"}
    assert [(call["type"], call["name"], call["id"]) for call in calls] == [
        ("tool_call", name, call_id) for name, call_id in TOOLS
    ]
    assert calls[0]["arguments"] == {"expression": "6 * 7"}
    answered = json.loads(_attributes(second)["gen_ai.input.messages"])
    assert {
        "role": "tool",
        "parts": [{"type": "tool_call_response", "id": "call_1_1", "response": "42"}],
    } in answered
    (final,) = json.loads(_attributes(second)["gen_ai.output.messages"])
    assert final == {
        "role": "assistant",
        "parts": [{"type": "text", "content": "It is 42."}],
        "finish_reason": "stop",
    }
    (calculator,) = _named(spans, "execute_tool calculator")
    assert json.loads(_attributes(calculator)["gen_ai.tool.call.arguments"]) == {
        "expression": "6 * 7"
    }
    assert _attributes(calculator)["gen_ai.tool.call.result"] == "42"


async def test_replayed_workflow_tasks_make_no_duplicate_spans(
    address: str, provider: TracerProvider, exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    # No cache: every workflow task replays the whole history from the start.
    await _traced_run(address, provider, tmp_path / "ws", max_cached_workflows=0)
    names = Counter(span.name for span in exporter.get_finished_spans())

    assert names["RunWorkflow:AgentWorkflow"] == 1
    assert names["StartActivity:call_model"] == 2
    assert names["chat scripted"] == 2
    assert names["RunActivity:call_model"] == 2
    for name, _ in TOOLS:
        assert names[f"execute_tool {name}"] == 1


async def test_trace_file_gets_one_json_span_per_line(address: str, tmp_path: Path) -> None:
    path = tmp_path / "spans" / "trace.jsonl"
    telemetry = configure_telemetry(
        {}, service_name="onward-test", trace_file=path, set_global=False
    )
    assert telemetry.provider is not None and not telemetry.trace_content
    client = await _client(address, interceptors=telemetry.interceptors)
    activity_telemetry = ActivityTelemetry(tracer=telemetry.provider.get_tracer("onward"))
    async with _worker(client, tmp_path / "ws", activity_telemetry) as task_queue:
        await _run(client, task_queue)
    telemetry.shutdown()

    spans = [json.loads(line) for line in path.read_text().splitlines()]
    names = {span["name"] for span in spans}
    assert {"StartWorkflow:AgentWorkflow", "RunWorkflow:AgentWorkflow", "chat scripted"} <= names
    assert {span["context"]["trace_id"] for span in spans} == {spans[0]["context"]["trace_id"]}
    assert all(span["resource"]["attributes"]["service.name"] == "onward-test" for span in spans)


@pytest.mark.parametrize("content", [False, True])
async def test_errors_text_is_content(address: str, tmp_path: Path, content: bool) -> None:
    """A tool's error quotes its arguments and a provider's the prompt: in the exported
    spans only with ONWARD_TRACE_CONTENT=1; an error without its text otherwise."""
    path = tmp_path / "trace.jsonl"
    environ = {"ONWARD_TRACE_CONTENT": "1"} if content else {}
    telemetry = configure_telemetry(
        environ, service_name="onward-test", trace_file=path, set_global=False
    )
    assert telemetry.provider is not None
    tracer = telemetry.provider.get_tracer("onward")
    client = await _client(address, interceptors=telemetry.interceptors)
    activity_telemetry = ActivityTelemetry(tracer=tracer, trace_content=content)
    async with _worker(client, tmp_path / "ws", activity_telemetry) as task_queue:
        await _run(client, task_queue)  # its read_file of missing.txt fails
    with pytest.raises(ValueError), tracer.start_as_current_span("raising"):
        raise ValueError("provider said: the prompt was 'what is 6 * 7?'")
    telemetry.shutdown()

    spans = {span["name"]: span for span in map(json.loads, path.read_text().splitlines())}
    read, raised = spans["execute_tool read_file"], spans["raising"]
    assert read["status"]["status_code"] == raised["status"]["status_code"] == "ERROR"
    assert read["attributes"]["error.type"] == "ToolError"
    [event] = raised["events"]
    assert event["attributes"]["exception.type"] == "ValueError"
    text = path.read_text()
    assert ("missing.txt" in text) is content
    assert ("the prompt was" in text) is content


# -- metrics ---------------------------------------------------------------------------


def _updates(
    updates: Sequence[BufferedMetricUpdate], name: str, **attributes: str
) -> list[BufferedMetricUpdate]:
    return [
        update
        for update in updates
        if update.metric.name == name
        and all(update.attributes.get(key) == value for key, value in attributes.items())
    ]


def _total(updates: Sequence[BufferedMetricUpdate], name: str, **attributes: str) -> float:
    return sum(update.value for update in _updates(updates, name, **attributes))


async def test_metrics_go_through_the_temporal_runtime(address: str, tmp_path: Path) -> None:
    # Large and drained once: the SDK's own metrics share the buffer.
    buffer = MetricBuffer(100_000)
    runtime = Runtime(telemetry=TelemetryConfig(metrics=buffer))
    client = await _client(address, runtime=runtime)
    async with _worker(client, tmp_path / "ws", ActivityTelemetry()) as task_queue:
        await _run(client, task_queue)
    updates = buffer.retrieve_updates()

    model = {"gen_ai.provider.name": "scripted", "gen_ai.request.model": "scripted"}
    assert _total(updates, "onward.model.calls", **model) == 2
    tokens_in = _updates(updates, "gen_ai.client.token.usage", **{"gen_ai.token.type": "input"})
    tokens_out = _updates(updates, "gen_ai.client.token.usage", **{"gen_ai.token.type": "output"})
    assert sorted(update.value for update in tokens_in) == sorted(i for i, _ in USAGE)
    assert sorted(update.value for update in tokens_out) == sorted(o for _, o in USAGE)
    assert all(update.attributes["gen_ai.operation.name"] == "chat" for update in tokens_in)
    assert len(_updates(updates, "gen_ai.client.operation.duration", **model)) == 2
    assert len(_updates(updates, "onward.model.cost", **model)) == 2

    for name, _ in TOOLS:
        assert _total(updates, "onward.tool.calls", **{"gen_ai.tool.name": name}) == 1
        assert len(_updates(updates, "onward.tool.duration", **{"gen_ai.tool.name": name})) == 1
    assert _total(updates, "onward.tool.errors", **{"gen_ai.tool.name": "read_file"}) == 1
    assert _total(updates, "onward.tool.errors") == 1
    # Step latency comes from the workflow's own (replay-safe) meter: one per step.
    steps = _updates(updates, "onward.step.duration", **{"onward.model": "scripted"})
    assert len(steps) == 2
    assert all(update.value >= 0 for update in steps)


async def test_a_failed_model_call_names_the_providers_error(
    address: str, provider: TracerProvider, exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    """A rate limit and an outage must not both read ``ApplicationError``: the span and
    the duration metric of a failed attempt carry the error's own type."""
    buffer = MetricBuffer(100_000)
    runtime = Runtime(telemetry=TelemetryConfig(metrics=buffer))
    client = await _client(address, runtime=runtime)
    telemetry = ActivityTelemetry(tracer=provider.get_tracer("onward"))
    async with FakeProvider(OPENAI_PATH) as server:
        server.script(
            Reply(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "1"}),
            openai_completion("ok"),
        )
        providers = providers_from_env({"OPENAI_BASE_URL": f"{server.url}/v1"})
        try:
            async with _worker(client, tmp_path / "ws", telemetry, providers=providers) as queue:
                handle = await client.start_workflow(
                    AgentWorkflow.run,
                    AgentInput(prompt="hi", model="openai:gpt-4o-mini"),
                    id=f"otel-{uuid.uuid4().hex[:12]}",
                    task_queue=queue,
                )
                assert (await handle.result()).status == "completed"
        finally:
            await close_providers(providers)

    limited, answered = sorted(
        _named(exporter.get_finished_spans(), "chat gpt-4o-mini"), key=lambda s: s.start_time or 0
    )
    assert _attributes(limited)["error.type"] == "RateLimited"
    host, _, port = server.url.removeprefix("http://").partition(":")
    assert (_attributes(answered)["server.address"], _attributes(answered)["server.port"]) == (
        host,
        int(port),
    )
    assert not limited.status.is_ok
    assert "error.type" not in _attributes(answered) and answered.status.is_ok
    durations = _updates(buffer.retrieve_updates(), "gen_ai.client.operation.duration")
    assert sorted(str(update.attributes.get("error.type")) for update in durations) == [
        "None",
        "RateLimited",
    ]


async def test_tokens_counted_at_a_guess_say_so(
    address: str, provider: TracerProvider, exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    """An answer that reports no usage is counted at an estimate: its span and its
    ``gen_ai.client.token.usage`` say ``onward.usage.estimated``, not reported figures."""
    buffer = MetricBuffer(100_000)
    client = await _client(address, runtime=Runtime(telemetry=TelemetryConfig(metrics=buffer)))
    telemetry = ActivityTelemetry(tracer=provider.get_tracer("onward"))
    unreported = openai_completion("a guess")
    del unreported["usage"]
    async with FakeProvider(OPENAI_PATH) as server:
        server.script(unreported)
        providers = providers_from_env({"OPENAI_BASE_URL": f"{server.url}/v1"})
        try:
            async with _worker(client, tmp_path / "ws", telemetry, providers=providers) as queue:
                result = await client.execute_workflow(
                    AgentWorkflow.run,
                    AgentInput(prompt="hi", model="openai:gpt-4o-mini"),
                    id=f"otel-{uuid.uuid4().hex[:12]}",
                    task_queue=queue,
                )
        finally:
            await close_providers(providers)
    assert result.status == "completed" and result.usage.tokens_estimated

    (chat,) = _named(exporter.get_finished_spans(), "chat gpt-4o-mini")
    assert _attributes(chat)["onward.usage.estimated"] is True
    tokens = _updates(buffer.retrieve_updates(), "gen_ai.client.token.usage")
    assert len(tokens) == 2
    assert all(update.attributes.get("onward.usage.estimated") is True for update in tokens)


@pytest.mark.parametrize(
    ("environ", "service"),
    [({}, "onward-worker"), ({"OTEL_SERVICE_NAME": "agents-eu"}, "agents-eu")],
)
async def test_metrics_name_the_service_the_spans_name(
    environ: dict[str, str], service: str
) -> None:
    """Exported metrics' resource says the worker's service (Core's own default was
    ``temporal-core-sdk``: a worker's metrics and its spans under two services)."""
    async with FakeProvider("/v1/metrics") as collector:
        collector.script(*[ACCEPTED] * 50)
        runtime = temporal_runtime({"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, **environ})
        runtime.metric_meter.create_counter("onward.test.probe").add(1)

        async def exported() -> bool:
            return any(b"onward.test.probe" in request.raw for request in collector.requests)

        await eventually(exported)
    (body, *_) = [r.raw for r in collector.requests if b"onward.test.probe" in r.raw]
    # OTLP protobuf: the resource's service.name is a length-prefixed string.
    assert b"service.name" in body
    assert bytes([len(service)]) + service.encode() in body


async def test_metrics_exporter_none_sends_no_metrics() -> None:
    """``OTEL_METRICS_EXPORTER=none`` keeps metrics home, as with any OpenTelemetry SDK
    (a collector without a metrics pipeline, metrics scraped elsewhere)."""
    async with FakeProvider("/v1/metrics") as collector:
        environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_METRICS_EXPORTER": "none"}
        runtime = temporal_runtime(environ)
        runtime.metric_meter.create_counter("onward.test.probe").add(1)
        await asyncio.sleep(3)  # the runtime exports every second
    assert collector.requests == []


@pytest.mark.parametrize(
    "variable", ["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_METRICS_HEADERS"]
)
async def test_metrics_send_the_collectors_headers(variable: str) -> None:
    """A collector that wants a key (a hosted backend) gets it with metrics, as with
    spans: Core does not read the OTLP header variables itself."""
    async with FakeProvider("/v1/metrics") as collector:
        collector.script(*[ACCEPTED] * 50)
        environ = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
            variable: "Authorization=Basic%20a2V5,x-scope-orgid=tenant-1",
        }
        runtime = temporal_runtime(environ)
        runtime.metric_meter.create_counter("onward.test.probe").add(1)

        async def exported() -> bool:
            return bool(collector.requests)

        await eventually(exported)
    headers = collector.requests[0].headers
    assert (headers.get("authorization"), headers.get("x-scope-orgid")) == (
        "Basic a2V5",
        "tenant-1",
    )


def test_a_metrics_header_that_is_no_pair_is_named_not_shown() -> None:
    with pytest.raises(SettingsError, match="OTEL_EXPORTER_OTLP_HEADERS") as raised:
        temporal_runtime(
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
                "OTEL_EXPORTER_OTLP_HEADERS": "s3cret",
            }
        )
    assert "s3cret" not in str(raised.value)


async def test_histograms_have_buckets_for_what_they_measure() -> None:
    """Token counts, costs and long calls fall in buckets of their own, not all in one
    (the Temporal runtime's default boundaries are 0.05 to 10)."""
    async with FakeProvider("/v1/metrics") as collector:
        collector.script(*[ACCEPTED] * 50)
        runtime = temporal_runtime({"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url})
        meter = runtime.metric_meter
        meter.create_histogram("gen_ai.client.token.usage", unit="{token}").record(1500)
        meter.create_histogram_float("gen_ai.client.operation.duration", unit="s").record(42.0)
        meter.create_histogram_float("onward.model.cost", unit="USD").record(0.00002)

        async def exported() -> bool:
            return any(b"onward.model.cost" in request.raw for request in collector.requests)

        await eventually(exported)
    body = next(r.raw for r in collector.requests if b"onward.model.cost" in r.raw)
    tokens = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304]
    seconds = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96]
    dollars = [1e-07, 1e-06, 1e-05, 0.0001, 0.001, 0.01, 0.1, 1.0, 10.0]
    for bounds in (tokens, seconds, dollars):
        # OTLP protobuf: explicit_bounds, packed little-endian doubles.
        assert struct.pack(f"<{len(bounds)}d", *bounds) in body, bounds
    assert b"gen_ai.client.token.usage" in body and b"gen_ai.client.operation.duration" in body


@pytest.mark.parametrize(
    "variable", ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"]
)
def test_a_metrics_endpoint_that_is_no_url_is_named(variable: str) -> None:
    with pytest.raises(SettingsError, match=f"{variable}='not-a-url'"):
        temporal_runtime({variable: "not-a-url"})  # the worker says so, no traceback
