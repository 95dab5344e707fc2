"""Token streaming: a model's text on the event stream as it comes, over real HTTP providers.

The fake providers answer with Server-Sent Events spread over time; the run's
events must show ``token`` events before the call's ``model`` event, the
tokens must add up to the recorded text, and a worker killed mid-stream
(``kill -9``) restarts the call's stream with ``stream_restart``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from provider_servers import (
    ANTHROPIC_PATH,
    OPENAI_PATH,
    FakeProvider,
    Reply,
    anthropic_stream,
    openai_stream,
)
from temporalio.api.common.v1 import Payloads
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent, WorkflowExecutionSignaledEventAttributes
from temporalio.client import Client
from temporalio.contrib.workflow_streams import PublishEntry, PublishInput, WorkflowStreamClient
from test_crash_resume import WorkerProcess, wait_ready, workers  # noqa: F401 - the fixture
from websockets.asyncio.client import connect

from api_server import Sse, read_events, serving
from conftest import RunningWorker, eventually, running_worker
from onward.activities.providers import close_providers, providers_from_env
from onward.client import OnwardClient
from onward.connection import DATA_CONVERTER
from onward.contracts import TOKENS_TOPIC, TokenChunk
from onward.starter.api import ApiSettings, api_app
from onward.starter.api.events import _PUBLISH_SIGNAL as PUBLISH_SIGNAL
from onward.starter.api.events import EventTranslator

KEY = "test-key"
CONVERTER = DATA_CONVERTER.payload_converter
ONE_PLUS_ONE = {"name": "calculator", "arguments": {"expression": "1+1"}}
PIECES = ["The ", "answer ", "is ", "forty", "-two", "."]


@asynccontextmanager
async def api_over(
    client: Client, tmp_path: Path, names: list[str], environ: Mapping[str, str]
) -> AsyncIterator[httpx.AsyncClient]:
    """The API over a worker whose providers come from ``environ``."""
    providers = providers_from_env(environ)
    try:
        async with running_worker(client, tmp_path / "ws", names, providers=providers) as worker:
            onward = OnwardClient(worker.client, task_queue=worker.task_queue)
            async with (
                serving(api_app(ApiSettings(), onward)) as base,
                httpx.AsyncClient(base_url=base, timeout=30) as http,
            ):
                yield http
    finally:
        await close_providers(providers)


def assert_streamed_before_recorded(events: list[Sse], step: int, text: str) -> None:
    kinds = [event.event for event in events]
    tokens = [e for e in events if e.event == "token" and e.data["call"] == step]
    model = next(i for i, e in enumerate(events) if e.event == "model" and e.data["step"] == step)
    assert tokens, kinds
    assert all(events.index(token) < model for token in tokens)
    assert "".join(token.data["text"] for token in tokens) == text
    assert events[model].data["text"] == text  # the finished message, recorded once
    assert kinds.count("model") == len({e.data["step"] for e in events if e.event == "model"})


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
async def test_a_streaming_provider_sends_tokens_before_the_message(
    client: Client, tmp_path: Path, search_attribute_names: list[str], protocol: str
) -> None:
    if protocol == "openai":
        path, model = OPENAI_PATH, "openai:gpt-4o-mini"
        tool = openai_stream(
            ["Let me ", "add."], [("call_1", "calculator", {"expression": "40+2"})]
        )
        final = openai_stream(PIECES, usage=(30, 7))
    else:
        path, model = ANTHROPIC_PATH, "anthropic:claude-3-5-haiku-latest"
        tool = anthropic_stream(
            ["Let me ", "add."], [("toolu_1", "calculator", {"expression": "40+2"})]
        )
        final = anthropic_stream(PIECES, usage=(30, 7))
    async with FakeProvider(path) as server:
        server.script(Reply(events=tool, event_gap_s=0.05), Reply(events=final, event_gap_s=0.15))
        environ = (
            {"OPENAI_BASE_URL": f"{server.url}/v1", "OPENAI_API_KEY": KEY}
            if protocol == "openai"
            else {"ANTHROPIC_BASE_URL": server.url, "ANTHROPIC_API_KEY": KEY}
        )
        async with api_over(client, tmp_path, search_attribute_names, environ) as http:
            body = {"prompt": "40+2?", "model": model, "tools": ["calculator"], "stream": True}
            created = (await http.post("/v1/runs", json=body)).json()
            events = await read_events(http, created["events_url"])
            steps = (await http.get(f"{created['status_url']}/steps")).json()
            # A second read of the ended run gives the very same events (ids included).
            assert await read_events(http, created["events_url"]) == events

    assert events[-1].data["status"] == "completed"
    assert events[-1].data["output"] == "The answer is forty-two."
    assert_streamed_before_recorded(events, 1, "Let me add.")
    assert_streamed_before_recorded(events, 2, "The answer is forty-two.")
    assert [step["text"] for step in steps] == ["Let me add.", "The answer is forty-two."]
    assert steps[0]["tool_calls"][0]["result"] == "42"
    usage = steps[1]["usage"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (30, 7)
    sent = [request.json for request in server.requests]
    assert all(request["stream"] is True for request in sent)
    if protocol == "openai":
        assert all(request["stream_options"] == {"include_usage": True} for request in sent)
    # Tokens came in batches over time, not all at once at the end.
    assert len([e for e in events if e.event == "token" and e.data["call"] == 2]) >= 3


async def test_without_stream_no_tokens_and_the_scripted_model_streams_words(
    worker: RunningWorker,
) -> None:
    onward = OnwardClient(worker.client, task_queue=worker.task_queue)
    async with (
        serving(api_app(ApiSettings(), onward)) as base,
        httpx.AsyncClient(base_url=base, timeout=30) as http,
    ):
        script = [{"text": "one two three four", "delay_s": 0.8}]
        plain = (await http.post("/v1/runs", json={"prompt": "p", "script": script})).json()
        streamed = (
            await http.post("/v1/runs", json={"prompt": "p", "script": script, "stream": True})
        ).json()
        plain_events = await read_events(http, plain["events_url"])
        # The WebSocket carries the same events, tokens included.
        socket_url = "ws" + base.removeprefix("http") + streamed["status_url"] + "/ws"
        received: list[dict[str, Any]] = []
        async with connect(socket_url) as connection:
            async for message in connection:
                received.append(json.loads(message))
        events = await read_events(http, streamed["events_url"])
    assert "token" not in [e.event for e in plain_events]
    assert_streamed_before_recorded(events, 1, "one two three four")
    assert [(m["id"], m["event"], m["data"]) for m in received] == [
        (e.id, e.event, e.data) for e in events
    ]


async def test_a_worker_killed_mid_stream_restarts_the_stream(
    client: Client,
    address: str,
    search_attribute_names: list[str],
    tmp_path: Path,
    workers: list[WorkerProcess],  # noqa: F811 - the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    task_queue = f"stream-crash-{uuid.uuid4().hex[:8]}"
    slow = [f"w{i} " for i in range(40)]
    async with FakeProvider(OPENAI_PATH) as server:
        server.script(
            Reply(events=openai_stream(slow), event_gap_s=0.2),  # killed in the middle
            Reply(events=openai_stream(PIECES), event_gap_s=0.05),
        )
        monkeypatch.setenv("OPENAI_BASE_URL", f"{server.url}/v1")
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        first = WorkerProcess(address, task_queue, tmp_path / "ws", tmp_path / "worker1.log")
        workers.append(first)
        await wait_ready(first)
        onward = OnwardClient(client, task_queue=task_queue)
        async with (
            serving(api_app(ApiSettings(), onward)) as base,
            httpx.AsyncClient(base_url=base, timeout=30) as http,
        ):
            body = {"prompt": "p", "model": "openai:gpt-4o-mini", "stream": True}
            created = (await http.post("/v1/runs", json=body)).json()
            url = created["events_url"]
            whole_task = asyncio.create_task(read_events(http, url))
            before = await read_events(http, url, stop_after=4)
            assert before[-1].event == "token", before
            first.kill()
            second = WorkerProcess(address, task_queue, tmp_path / "ws", tmp_path / "w2.log")
            workers.append(second)
            await wait_ready(second)
            whole = await asyncio.wait_for(whole_task, 90)
            again = await read_events(http, url)

    assert whole == again
    kinds = [event.event for event in whole]
    restart = kinds.index("stream_restart")
    assert whole[restart].data == {"call": 1, "attempt": 2}
    assert "token" in kinds[:restart]  # the first attempt's tokens came before the crash
    after = [e.data["text"] for e in whole[restart:] if e.event == "token"]
    assert "".join(after) == "The answer is forty-two."
    model = next(e for e in whole if e.event == "model")
    assert model.data["text"] == "The answer is forty-two." and kinds.count("model") == 1
    assert whole[-1].data["status"] == "completed"
    assert whole[-1].data["output"] == "The answer is forty-two."

    async def both_asked() -> bool:
        return len(server.requests) == 2

    await eventually(both_asked)


def test_a_stalled_attempts_late_tokens_are_not_shown_after_the_restart() -> None:
    """A worker frozen mid-stream (SIGSTOP, a long pause) is given up, and another
    restarts the call; woken, the frozen one may still publish the text it had
    buffered, of its old attempt (seen with real processes: "w3 ... w39" between
    the restart and the new text). After a ``stream_restart`` the event stream
    shows only that attempt's text, as the README tells readers to join it."""
    batches = [
        ("stalled", [TokenChunk(call=1, text="w0 ")]),
        ("taking-over", [TokenChunk(kind="stream_restart", call=1, attempt=2)]),
        ("taking-over", [TokenChunk(call=1, text="The ", attempt=2)]),
        ("stalled", [TokenChunk(call=1, text="w1 w2 ")]),  # woken, late
        ("taking-over", [TokenChunk(call=1, text="answer.", attempt=2)]),
    ]
    translator = EventTranslator()
    events = []
    for number, (publisher, chunks) in enumerate(batches, start=1):
        entries = [
            PublishEntry(
                topic=TOKENS_TOPIC,
                data=base64.b64encode(CONVERTER.to_payload(c).SerializeToString()).decode(),
            )
            for c in chunks
        ]
        batch = PublishInput(items=entries, publisher_id=publisher, sequence=number)
        signaled = WorkflowExecutionSignaledEventAttributes(
            signal_name=PUBLISH_SIGNAL, input=Payloads(payloads=CONVERTER.to_payloads([batch]))
        )
        events += translator.add(
            HistoryEvent(
                event_id=number,
                event_type=EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
                workflow_execution_signaled_event_attributes=signaled,
            )
        )
    assert [(e.event, e.data) for e in events] == [
        ("token", {"call": 1, "text": "w0 "}),
        ("stream_restart", {"call": 1, "attempt": 2}),
        ("token", {"call": 1, "text": "The "}),
        ("token", {"call": 1, "text": "answer."}),
    ]


async def test_a_python_subscriber_reads_the_tokens_topic(worker: RunningWorker) -> None:
    script = [
        {"text": "first call text here", "tool_calls": [ONE_PLUS_ONE], "delay_s": 0.6},
        {"text": "second and last", "delay_s": 0.6},
    ]
    handle = await worker.start({"prompt": "p", "script": script, "stream": True})
    tokens = WorkflowStreamClient.create(worker.client, handle.id).topic(
        TOKENS_TOPIC, type=TokenChunk
    )
    chunks: list[TokenChunk] = []

    async def read() -> None:
        async for item in tokens.subscribe():
            chunks.append(item.data)

    await asyncio.wait_for(read(), 60)  # the subscription ends with the run
    result = await handle.result()
    assert result.status == "completed"
    texts = {call: "".join(c.text for c in chunks if c.call == call) for call in (1, 2)}
    assert texts == {1: "first call text here", 2: "second and last"}
    assert {c.kind for c in chunks} == {"token"}


async def test_the_subscription_follows_continue_as_new(worker: RunningWorker) -> None:
    script = [
        {"text": f"call {n} says hello", "tool_calls": [ONE_PLUS_ONE], "delay_s": 0.4}
        for n in (1, 2, 3)
    ] + [{"text": "the end", "delay_s": 0.4}]
    agent = {"prompt": "p", "script": script, "stream": True, "continue_as_new_after": 1}
    handle = await worker.start(agent)
    tokens = WorkflowStreamClient.create(worker.client, handle.id).topic(
        TOKENS_TOPIC, type=TokenChunk
    )
    chunks: list[tuple[int, TokenChunk]] = []

    async def read() -> None:
        async for item in tokens.subscribe():
            chunks.append((item.offset, item.data))

    await asyncio.wait_for(read(), 90)
    result = await handle.result()  # follows the chain to its last run
    assert result.status == "completed" and result.output == "the end"
    offsets = [offset for offset, _ in chunks]
    assert offsets == sorted(set(offsets))  # the next run's offsets go on
    texts = ["".join(c.text for _, c in chunks if c.call == call) for call in (1, 2, 3, 4)]
    assert texts == ["call 1 says hello", "call 2 says hello", "call 3 says hello", "the end"]


async def test_a_fallback_models_answer_restarts_the_steps_stream(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    """The first model's stream breaks off, its retry is refused (401): the fallback's
    text follows a ``stream_restart`` numbered past the first model's attempts, so a
    reader drops the broken text and shows the fallback's (not nothing, not both)."""
    unauthorized = Reply(401, {"error": {"message": "key revoked"}})
    async with FakeProvider(OPENAI_PATH) as openai, FakeProvider(ANTHROPIC_PATH) as anthropic:
        cut = openai_stream(["Broken ", "off"])[:-2]  # no finish_reason: retried
        openai.script(Reply(events=cut, done=False), unauthorized)
        anthropic.script(Reply(events=anthropic_stream(PIECES)))
        environ = {
            "OPENAI_BASE_URL": f"{openai.url}/v1",
            "OPENAI_API_KEY": KEY,
            "ANTHROPIC_BASE_URL": anthropic.url,
            "ANTHROPIC_API_KEY": KEY,
        }
        async with api_over(client, tmp_path, search_attribute_names, environ) as http:
            body = {
                "prompt": "p",
                "model": "openai:gpt-4o-mini",
                "fallback_models": ["anthropic:claude-3-5-haiku-latest"],
                "stream": True,
            }
            created = (await http.post("/v1/runs", json=body)).json()
            events = await read_events(http, created["events_url"])

    kinds = [event.event for event in events]
    assert events[-1].data["status"] == "completed", events[-1].data
    restarts = [event.data for event in events if event.event == "stream_restart"]
    assert restarts[-1]["attempt"] > 2, restarts  # past the first model's two attempts
    last = len(kinds) - 1 - kinds[::-1].index("stream_restart")
    after = [e.data["text"] for e in events[last:] if e.event == "token"]
    assert "".join(after) == "The answer is forty-two."
    model = next(e for e in events if e.event == "model")
    assert model.data["text"] == "The answer is forty-two."
