"""Runs without a size limit: the transcript store, continue-as-new, flat history per step.

A fake model checks on every call that it is sent exactly the conversation a
run without the store would send (every earlier message, in order), and the
runs are measured by their real event histories, summed over the
continue-as-new chain. The same runs go through a local directory store and a
real PostgreSQL server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from postgres_server import PostgresServer, postgres_url
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from conftest import RunningWorker, eventually, run_onward, running_worker
from onward.activities.model import ModelActivities
from onward.activities.tools import builtin_registry
from onward.activities.tools.registry import ToolRegistry, tool
from onward.client import OnwardClient
from onward.compaction import estimate_tokens
from onward.contracts import (
    AgentInput,
    CancelRequest,
    ConversationRef,
    Message,
    ModelRequest,
    ModelResponse,
    ToolCall,
    Usage,
    tool_specs_key,
)
from onward.pricing import PricingTable
from onward.store import TranscriptStore, open_store
from onward.worker import WorkerSettings, build_worker
from onward.workflows import AgentWorkflow

__all__ = ["postgres_url"]  # the fixture, for the PostgreSQL runs

PROMPT = "count with the calculator"
PADDING = "x" * 1000  # about 1 KB a step


def reply_text(step: int) -> str:
    return f"step {step}: {PADDING}"


class CheckingModel:
    """Calls the calculator ``steps - 1`` times, then answers; checks what it is sent.

    Every request must hold the prompt and then, for each earlier step, the
    model's reply and the calculator's result: exactly what a run that sends
    its whole conversation inline sends.
    """

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.calls: list[int] = []
        self.mismatches: list[str] = []

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.calls.append(request.step)
        problem = self._check(request.step, request.messages)
        if problem is not None:
            self.mismatches.append(problem)
            raise ApplicationError(problem, non_retryable=True)
        usage = Usage(input_tokens=10, output_tokens=5)
        if request.step >= self.steps:
            return ModelResponse(text="done", usage=usage, model=request.model)
        call = ToolCall(
            id=f"c{request.step}",
            name="calculator",
            arguments={"expression": f"{request.step}+1"},
        )
        return ModelResponse(
            text=reply_text(request.step), tool_calls=[call], usage=usage, model=request.model
        )

    @staticmethod
    def _check(step: int, messages: list[Message]) -> str | None:
        if len(messages) != 1 + 2 * (step - 1):
            return f"step {step}: sent {len(messages)} messages, expected {1 + 2 * (step - 1)}"
        if (messages[0].role, messages[0].content) != ("user", PROMPT):
            return f"step {step}: the prompt is not first"
        for earlier in range(1, step):
            reply, result = messages[2 * earlier - 1], messages[2 * earlier]
            if reply.role != "assistant" or reply.content != reply_text(earlier):
                return f"step {step}: message {2 * earlier - 1} is not step {earlier}'s reply"
            if [c.id for c in reply.tool_calls] != [f"c{earlier}"]:
                return f"step {step}: step {earlier}'s tool call is missing"
            if (result.role, result.tool_call_id, result.content) != (
                "tool",
                f"c{earlier}",
                str(earlier + 1),
            ):
                return f"step {step}: message {2 * earlier} is not step {earlier}'s result"
        return None


@pytest_asyncio.fixture(params=["local", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TranscriptStore]:
    if request.param == "local":
        opened = await open_store(str(tmp_path / "store"))
    else:
        opened = await open_store(request.getfixturevalue("postgres_url"))
    try:
        yield opened
    finally:
        await opened.close()


async def chain_events(client: Client, workflow_id: str) -> list[list[HistoryEvent]]:
    """The events of every run of a continue-as-new chain, first run first."""
    runs: list[list[HistoryEvent]] = []
    run_id: str | None = None
    while True:
        handle = client.get_workflow_handle(workflow_id, run_id=run_id)
        if run_id is None:
            # The chain's first run: the one whose first execution is itself.
            description = await handle.describe()
            first = description.raw_description.workflow_execution_info.first_run_id
            handle = client.get_workflow_handle(workflow_id, run_id=first or None)
        events = [event async for event in handle.fetch_history_events()]
        runs.append(events)
        last = events[-1]
        if not last.HasField("workflow_execution_continued_as_new_event_attributes"):
            return runs
        run_id = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id


def bytes_before_step(runs: list[list[HistoryEvent]]) -> dict[int, int]:
    """History bytes of the whole chain before each model call (step n's call)."""
    total, found, step = 0, {}, 0
    for events in runs:
        for event in events:
            attributes = event.activity_task_scheduled_event_attributes
            if (
                event.HasField("activity_task_scheduled_event_attributes")
                and attributes.activity_type.name == "call_model"
            ):
                step += 1
                found[step] = total
            total += event.ByteSize()
    found[step + 1] = total
    return found


def per_step(sizes: dict[int, int], first: int, last: int) -> float:
    return (sizes[last] - sizes[first]) / (last - first)


async def test_a_message_run_counts_the_tokens_of_its_whole_chain(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    """A session message's run hands back the estimated tokens of the whole conversation
    (the next message's compaction starts from it), its continued-as-new runs' included,
    though each run lets go of the messages the store holds."""
    model = CheckingModel(steps=7)
    agent_input = AgentInput(
        prompt=PROMPT,
        tools=["calculator"],
        continue_as_new_after=2,
        conversation=ConversationRef(transcript="", messages=0),  # a session's first message
    )
    async with running_worker(
        client, tmp_path / "ws", search_attribute_names, providers={"scripted": model}
    ) as worker:
        result = await (await worker.start(agent_input)).result()

    assert model.mismatches == []
    assert result.status == "completed", result.reason
    assert result.steps_total == 7
    messages = [Message(role="user", content=PROMPT)]
    for step in range(1, 7):
        call = ToolCall(id=f"c{step}", name="calculator", arguments={"expression": f"{step}+1"})
        messages += [
            Message(role="assistant", content=reply_text(step), tool_calls=[call]),
            Message(role="tool", content=str(step + 1), tool_call_id=call.id, name=call.name),
        ]
    messages.append(Message(role="assistant", content="done"))
    assert result.conversation is not None
    assert result.conversation.messages == len(messages)
    # About 250 tokens a step: a chain that counted only its last run's messages is short.
    assert result.conversation.context_tokens == sum(estimate_tokens([m]) for m in messages)


@pytest.mark.parametrize("switch_every", [None, 100])
async def test_history_per_step_stays_flat_over_300_steps(
    client: Client,
    tmp_path: Path,
    search_attribute_names: list[str],
    store: TranscriptStore,
    switch_every: int | None,
) -> None:
    model = CheckingModel(steps=300)
    agent_input = AgentInput(
        prompt=PROMPT, tools=["calculator"], continue_as_new_after=switch_every
    )
    workflow_id = f"long-{uuid.uuid4().hex[:12]}"
    async with running_worker(
        client,
        tmp_path / "ws",
        search_attribute_names,
        providers={"scripted": model},
        store=store,
    ) as worker:
        handle = await worker.start(agent_input, workflow_id=workflow_id)
        result = await handle.result()

    assert model.mismatches == []
    assert result.status == "completed", result.reason
    assert result.output == "done"
    assert result.steps_total == 300 and result.usage.steps == 300
    assert [s.step for s in result.steps] == list(range(251, 301))  # the last 50 in full
    assert result.usage.model_calls == 300 and result.usage.tool_calls == 299
    assert result.usage.input_tokens == 3000  # usage summed over the whole chain

    runs = await chain_events(client, workflow_id)
    switches = len(runs) - 1
    assert switches == (2 if switch_every == 100 else 1)
    sizes = bytes_before_step(runs)
    early, late = per_step(sizes, 10, 60), per_step(sizes, 250, 300)
    whole = sizes[301] / 300
    print(
        f"\nhistory bytes per step ({switches} continue-as-new switches): "
        f"steps 10-60 {early:.0f}, steps 250-300 {late:.0f}, whole chain {whole:.0f}"
    )
    assert late / early < 1.3
    assert whole / early < 1.3

    # The store holds each message and step once: the full log, in order.
    assert result.transcript is not None
    messages = await store.messages(result.transcript)
    assert len(messages) == 1 + 2 * 299 + 1
    assert messages[-1].content == "done"
    steps = await store.steps(result.transcript)
    assert [s.step for s in steps] == list(range(1, 301))
    assert steps[-1].text == "done" and steps[41].tool_calls[0].result == "43"
    if switch_every is not None and not str(store.backend.__class__.__name__).startswith("Post"):
        directory = tmp_path / "store" / result.transcript
        for name, count in (("messages.log", len(messages)), ("steps.log", 300)):
            lines = (directory / name).read_bytes().splitlines()
            positions = [int(line.split(b"\t", 1)[0]) for line in lines]
            assert positions == list(range(count)), name  # each written exactly once


async def test_the_run_status_and_steps_query_across_a_switch(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    store = await open_store(str(tmp_path / "store"))
    model = CheckingModel(steps=12)
    agent_input = AgentInput(prompt=PROMPT, tools=["calculator"], continue_as_new_after=5)
    async with running_worker(
        client,
        tmp_path / "ws",
        search_attribute_names,
        providers={"scripted": model},
        store=store,
    ) as worker:
        handle = await worker.start(agent_input)
        result = await handle.result()
        latest = client.get_workflow_handle(handle.id)
        status = await latest.query(AgentWorkflow.status)
        steps: list[Any] = await latest.query(AgentWorkflow.steps)
    assert model.mismatches == []
    assert result.status == "completed" and result.steps_total == 12
    assert [s.step for s in result.steps] == list(range(1, 13))  # fewer than 50: all of them
    assert status.step == 12 and status.transcript == result.transcript
    assert [s.step for s in steps] == list(range(1, 13))
    assert model.calls == list(range(1, 13))  # no model call repeated across the switches
    await store.close()


class BigPromptModel:
    """Answers with the length of the prompt it was sent (read back from the store)."""

    async def complete(self, request: ModelRequest) -> ModelResponse:
        return ModelResponse(text=f"read {len(request.messages[0].content)}", model=request.model)


async def test_a_5_mb_message_goes_through_external_storage(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    store = await open_store(str(tmp_path / "store"))
    prompt = "".join(f"{i:07d}\n" for i in range(625_000))  # 5 MB, not compressible to nothing
    async with running_worker(
        client,
        tmp_path / "ws",
        search_attribute_names,
        providers={"scripted": BigPromptModel()},
        store=store,
    ) as worker:
        handle = await worker.start(AgentInput(prompt=prompt))
        result = await handle.result()
    assert result.status == "completed", result.reason
    assert result.output == f"read {len(prompt)}"
    history = sum([event.ByteSize() async for event in handle.fetch_history_events()])
    print(f"\nhistory of a run with a 5 MB prompt: {history} bytes")
    assert history < 100_000  # the prompt is in the history only as references
    assert result.transcript is not None
    assert (await store.messages(result.transcript))[0].content == prompt
    await store.close()


class BigAnswerModel:
    """Answers at once with 300 KB: the run's result goes to external storage."""

    async def complete(self, request: ModelRequest) -> ModelResponse:
        return ModelResponse(text="".join(f"{i:07d}\n" for i in range(37_500)), model="big")


async def test_a_result_in_external_storage_is_read_from_the_history(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    async with running_worker(
        client, tmp_path / "ws", search_attribute_names, providers={"scripted": BigAnswerModel()}
    ) as worker:
        handle = await worker.start(AgentInput(prompt="a long answer, please"))
        result = await handle.result()
    completed = [
        event.workflow_execution_completed_event_attributes.result.payloads[0]
        async for event in handle.fetch_history_events()
        if event.HasField("workflow_execution_completed_event_attributes")
    ]
    assert completed[0].external_payloads  # only a reference is in the history
    # No worker now: status, steps and trace read the run's history, and open the reference.
    onward = OnwardClient(client)
    status = await onward.status(handle.id)
    assert status.state == "completed" and status.step == 1
    log = await onward.step_log(handle.id)
    assert [record.text for record in log.records] == [result.output]
    trace = await onward.trace(handle.id)
    assert trace.usage.steps == 1


async def test_clients_read_the_whole_step_log_from_the_store(
    client: Client,
    address: str,
    tmp_path: Path,
    search_attribute_names: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ONWARD_STORE", str(tmp_path / "store"))  # the client's store too
    store = await open_store(str(tmp_path / "store"))
    model = CheckingModel(steps=70)
    agent_input = AgentInput(prompt=PROMPT, tools=["calculator"], continue_as_new_after=30)
    async with running_worker(
        client,
        tmp_path / "ws",
        search_attribute_names,
        providers={"scripted": model},
        store=store,
    ) as worker:
        handle = await worker.start(agent_input)
        result = await handle.result()
    # The result holds the latest: the last run's 10 steps and the 10 carried into it.
    assert result.steps_total == 70 and [s.step for s in result.steps] == list(range(51, 71))
    onward = OnwardClient(client)
    log = await onward.step_log(handle.id)
    assert log.source == "result"
    assert [s.step for s in log.records] == list(range(1, 71))
    assert log.records[4].text == reply_text(5)
    trace = await onward.trace(handle.id)
    assert [s.step for s in trace.steps] == list(range(1, 71))
    assert trace.usage.steps == 70
    assert log.missing is None and trace.missing_steps is None
    await store.close()

    # A client whose store is not the workers' (or cannot be read) shows what the
    # result holds, and says which steps it cannot show and why: not a part as the whole.
    monkeypatch.setenv("ONWARD_STORE", str(tmp_path / "elsewhere"))
    partial = await onward.step_log(handle.id)
    assert [s.step for s in partial.records] == list(range(51, 71))
    assert partial.missing == (
        f"steps 1-50 of 70 not shown: not in the transcript store at {tmp_path / 'elsewhere'} "
        "(ONWARD_STORE must name the workers' store)"
    )
    monkeypatch.setenv("ONWARD_STORE", "postgresql://onward:hunter2@127.0.0.1:9/onward")
    unreadable = await onward.trace(handle.id)
    assert [s.step for s in unreadable.steps] == list(range(51, 71))
    assert unreadable.missing_steps is not None and "hunter2" not in unreadable.missing_steps
    assert unreadable.missing_steps.startswith(
        "steps 1-50 of 70 not shown: the transcript store cannot be read (cannot use the "
        "PostgreSQL store postgresql://onward:***@127.0.0.1:9/onward"
    )
    shown = await run_onward(
        "steps", handle.id, env={"TEMPORAL_ADDRESS": address, "ONWARD_STORE": str(tmp_path)}
    )
    assert shown.code == 0, shown.stderr
    assert shown.stdout.startswith("step 51")
    assert "onward: steps 1-50 of 70 not shown: not in the transcript store" in shown.stderr


class SummarisingModel:
    """Calculator steps; asked for a summary (no tools), answers ``summary N``.

    Records what each call was sent, to check what compaction sends.
    """

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.sent: list[tuple[int, bool, list[Message]]] = []

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.sent.append((request.step, request.allow_tools, request.messages))
        usage = Usage(input_tokens=100, output_tokens=10)
        if not request.allow_tools:
            return ModelResponse(text=f"summary {request.step}", usage=usage)
        if request.step >= self.steps:
            return ModelResponse(text="done", usage=usage)
        call = ToolCall(id=f"c{request.step}", name="calculator", arguments={"expression": "1+1"})
        return ModelResponse(text=reply_text(request.step), tool_calls=[call], usage=usage)


async def test_compaction_summarises_older_turns_and_counts_the_summary(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    store = await open_store(str(tmp_path / "store"))
    model = SummarisingModel(steps=18)
    agent_input = AgentInput.model_validate(
        {
            "prompt": PROMPT,
            "tools": ["calculator"],
            "context": {"max_tokens": 1500, "keep_last_turns": 2},  # about 5 steps of 1 KB
            "continue_as_new_after": 4,
        }
    )
    async with running_worker(
        client,
        tmp_path / "ws",
        search_attribute_names,
        providers={"scripted": model},
        store=store,
    ) as worker:
        result = await (await worker.start(agent_input)).result()
    assert result.status == "completed", result.reason
    summaries = [step for step in result.steps if step.compaction]
    assert len(summaries) >= 2 and all(s.text == f"summary {s.step}" for s in summaries)
    # Usage is exact: every call, the summaries too, is counted once.
    assert result.usage.model_calls == len(model.sent)
    assert result.usage.input_tokens == 100 * len(model.sent)
    assert result.usage.steps == result.steps_total == 18  # the summaries are steps
    turns = 18 - len(summaries)
    for step, allow_tools, messages in model.sent:
        assert messages[0].content == PROMPT  # the task is always sent
        if allow_tools and step > summaries[0].step:
            notes = [m for m in messages if m.content.startswith("[Summary")]
            assert len(notes) == 1  # older turns as one summary, not in full
            later = [s for s in summaries if s.step < step][-1]
            assert notes[0].content.endswith(f"summary {later.step}")  # the latest one
            assert sum(len(m.content) for m in messages) < 4 * 1500 + 2000
    last_sent = model.sent[-1][2]
    assert last_sent[-1].role == "tool" and last_sent[-2].tool_calls  # the last turns in full
    # The store keeps every message.
    assert result.transcript is not None
    stored = await store.messages(result.transcript)
    assert len(stored) == 1 + 2 * (turns - 1) + 1
    assert not any(m.content.startswith("[Summary") for m in stored)
    await store.close()


@tool
def dump() -> str:
    """Returns 5 MB of numbered lines."""
    return "".join(f"{i:07d}\n" for i in range(625_000))


class DumpingModel:
    """Calls ``dump`` once, then answers; keeps the tool result it was sent."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def complete(self, request: ModelRequest) -> ModelResponse:
        results = [m.content for m in request.messages if m.role == "tool"]
        if not results:
            call = ToolCall(id="d1", name="dump", arguments={})
            return ModelResponse(text="dumping", tool_calls=[call], model=request.model)
        self.seen = results
        return ModelResponse(text="done", model=request.model)


async def test_a_5_mb_tool_result_goes_through_external_storage(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    model = DumpingModel()
    async with running_worker(
        client,
        tmp_path / "ws",
        search_attribute_names,
        providers={"scripted": model},
        registry=ToolRegistry.of([dump]),
        store=await open_store(str(tmp_path / "store")),
    ) as worker:
        handle = await worker.start(AgentInput(prompt="dump it", tools=["dump"]))
        result = await handle.result()
    assert result.status == "completed", result.reason
    events = [event async for event in handle.fetch_history_events()]
    history = sum(event.ByteSize() for event in events)
    print(f"\nhistory of a run with a 5 MB tool result: {history} bytes")
    assert history < 100_000
    completed = [
        e.activity_task_completed_event_attributes.result.payloads[0]
        for e in events
        if e.HasField("activity_task_completed_event_attributes")
    ]
    references = [p for p in completed if p.external_payloads]
    assert len(references) == 1 and references[0].ByteSize() < 2_000  # the tool's result
    # The model saw the tool's own max_result_chars of it, the step log less.
    limit = dump.max_result_chars
    assert len(model.seen) == 1 and model.seen[0].startswith("0000000\n0000001\n")
    assert limit < len(model.seen[0]) < limit + 200
    assert "[truncated: showing" in model.seen[0]
    assert len(result.steps[0].tool_calls[0].result or "") < 5_000


@pytest.mark.parametrize("window", [1875, None])
async def test_a_run_without_context_compacts_at_80_percent_of_its_model_window(
    client: Client, tmp_path: Path, search_attribute_names: list[str], window: int | None
) -> None:
    # The worker's pricing file (ONWARD_PRICING) gives the scripted model a tiny window:
    # 80% of 1875 is 1500 estimated tokens, about 5 steps of 1 KB.
    entry: dict[str, Any] = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}
    if window is not None:
        entry["context_window"] = window
    pricing = tmp_path / "pricing.json"
    pricing.write_text(json.dumps({"scripted": entry}), encoding="utf-8")
    queue = f"tq-{uuid.uuid4().hex[:12]}"
    settings = WorkerSettings.from_env(
        {"ONWARD_PRICING": str(pricing), "ONWARD_TASK_QUEUE": queue, "ONWARD_WORKSPACE": "ws"}
    )
    settings = dataclasses.replace(settings, workspace=tmp_path / "ws")
    store = await open_store(str(tmp_path / "store"))
    model = SummarisingModel(steps=14)
    worker = build_worker(
        client,
        settings,
        providers={"scripted": model},
        search_attribute_names=search_attribute_names,
        store=store,
    )
    async with worker:
        running = RunningWorker(client, queue, settings.workspace)
        result = await running.run(AgentInput(prompt=PROMPT, tools=["calculator"]))
    await store.close()
    assert result.status == "completed", result.reason
    summaries = [step for step in result.steps if step.compaction]
    if window is None:
        assert summaries == []  # no window known, no context asked: never compacted
        return
    assert len(summaries) >= 2
    assert result.usage.model_calls == len(model.sent) == result.steps_total == 14
    last_sent = model.sent[-1][2]
    assert any(m.content.startswith("[Summary") for m in last_sent)
    assert sum(len(m.content) for m in last_sent) < 4 * 1500 + 2000


class SpecsRecordingModel(CheckingModel):
    """A CheckingModel that also keeps the tool names each call is offered."""

    def __init__(self, steps: int) -> None:
        super().__init__(steps)
        self.offered: list[list[str]] = []

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.offered.append([spec.name for spec in request.tools])
        return await super().complete(request)


def model_call_inputs(events: list[HistoryEvent]) -> list[ModelRequest]:
    """The ``call_model`` inputs of a run, as its history records them (without defaults)."""
    return [
        ModelRequest.model_validate_json(
            event.activity_task_scheduled_event_attributes.input.payloads[0].data
        )
        for event in events
        if event.HasField("activity_task_scheduled_event_attributes")
        and event.activity_task_scheduled_event_attributes.activity_type.name == "call_model"
    ]


async def test_tool_specs_are_recorded_once_and_every_call_is_offered_them(
    client: Client, tmp_path: Path, search_attribute_names: list[str], store: TranscriptStore
) -> None:
    """The built-ins' specs are ~3.7 KB: sent with every call they were most of a step."""
    model = SpecsRecordingModel(steps=4)
    async with running_worker(
        client, tmp_path / "ws", search_attribute_names, providers={"scripted": model}, store=store
    ) as worker:
        handle = await worker.start(AgentInput(prompt=PROMPT))
        result = await handle.result()
    assert result.status == "completed", result.reason
    assert model.mismatches == []

    builtins = model.offered[0]
    assert "calculator" in builtins and len(builtins) >= 5
    assert model.offered == [builtins] * 4  # every call offers every tool
    first, *later = model_call_inputs([e async for e in handle.fetch_history_events()])
    assert [spec.name for spec in first.tools] == builtins
    key = first.tools_key
    assert key is not None and key.startswith("sha256-")
    assert [(call.tools, call.tools_key) for call in later] == [([], key)] * 3
    # A worker that has not seen them reads them from the store.
    kept = await store.get_cached(key)
    assert kept is not None
    assert [spec["name"] for spec in json.loads(kept)] == builtins


async def test_step_records_travel_without_what_the_messages_say_and_are_stored_whole(
    client: Client, tmp_path: Path, search_attribute_names: list[str], store: TranscriptStore
) -> None:
    """A step's text, arguments and result are its messages': in the history once, not twice."""
    model = CheckingModel(steps=6)
    async with running_worker(
        client, tmp_path / "ws", search_attribute_names, providers={"scripted": model}, store=store
    ) as worker:
        handle = await worker.start(AgentInput(prompt=PROMPT, tools=["calculator"]))
        result = await handle.result()
    assert result.status == "completed", result.reason
    assert model.mismatches == []

    sent = [
        step
        for call in model_call_inputs([e async for e in handle.fetch_history_events()])
        if call.transcript is not None
        for step in call.transcript.steps
    ]
    assert [step.step for step in sent] == [1, 2, 3, 4, 5]  # the answer's, at the end
    for step in sent:
        assert step.text == ""
        [call] = step.tool_calls
        assert call.arguments == {} and call.result is None
    # The store has every record whole: as the run itself holds them.
    assert result.transcript is not None
    stored = await store.steps(result.transcript)
    assert stored == result.steps
    assert stored[2].text == reply_text(3) and stored[2].tool_calls[0].arguments == {
        "expression": "3+1"
    }


async def test_a_worker_new_to_a_runs_tool_specs_reads_them_and_a_missing_set_is_retried(
    store: TranscriptStore,
) -> None:
    registry = builtin_registry()
    specs = [item.spec() for item in map(registry.get, registry.builtin_names()) if item]
    key = tool_specs_key(specs)
    ask = ModelRequest(
        model="scripted", messages=[Message(role="user", content=PROMPT)], step=1, tools_key=key
    )
    first_worker = SpecsRecordingModel(steps=1)
    first = ModelActivities({"scripted": first_worker}, PricingTable({}), store=store)
    await ActivityEnvironment().run(first.call_model, ask.model_copy(update={"tools": specs}))
    later_worker = SpecsRecordingModel(steps=1)
    later = ModelActivities({"scripted": later_worker}, PricingTable({}), store=store)
    await ActivityEnvironment().run(later.call_model, ask)
    assert later_worker.offered == first_worker.offered == [[spec.name for spec in specs]]

    # Specs no run kept (the database is shared with the other tests: a fresh name).
    never_kept = [specs[0].model_copy(update={"name": f"t{uuid.uuid4().hex}"})]
    unknown = ask.model_copy(update={"tools_key": tool_specs_key(never_kept)})
    with pytest.raises(ApplicationError, match="lacks the run's tool specs") as raised:
        await ActivityEnvironment().run(later.call_model, unknown)
    assert not raised.value.non_retryable  # another worker's store may have them


class SlowToSummarise(SummarisingModel):
    """``SummarisingModel`` whose summary waits until ``release`` is set."""

    def __init__(self, steps: int) -> None:
        super().__init__(steps)
        self.summarising = asyncio.Event()
        self.release = asyncio.Event()

    async def complete(self, request: ModelRequest) -> ModelResponse:
        if not request.allow_tools:
            self.summarising.set()
            await self.release.wait()
        return await super().complete(request)


async def test_a_cancel_during_compaction_leaves_no_model_call_behind(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    # The model call after the compaction starts and is cancelled at once: with a
    # deadline, it runs through a task the cancel reached before its first step.
    model = SlowToSummarise(steps=18)
    agent_input = {
        "prompt": PROMPT,
        "tools": ["calculator"],
        "context": {"max_tokens": 1500, "keep_last_turns": 2},
        "budget": {"max_duration_s": 600},
    }
    async with running_worker(
        client, tmp_path / "ws", search_attribute_names, providers={"scripted": model}
    ) as worker:
        handle = await worker.start(agent_input)
        await asyncio.wait_for(model.summarising.wait(), 60)
        calls_before = len(model.sent)
        await handle.signal(AgentWorkflow.cancel, CancelRequest(reason="enough"))

        async def signal_handled() -> bool:  # before the summary answers
            kinds = [e.event_type async for e in handle.fetch_history_events()]
            signalled = kinds.index(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)
            return EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED in kinds[signalled:]

        await eventually(signal_handled)
        model.release.set()
        result = await handle.result()

    assert (result.status, result.reason) == ("cancelled", "enough")
    assert len(model.sent) == calls_before + 1  # the summary; no model call after it
    scheduled: dict[int, str] = {}
    closed: set[int] = set()
    closings = {
        f"activity_task_{name}_event_attributes"
        for name in ("cancel_requested", "completed", "failed", "canceled", "timed_out")
    }
    async for event in handle.fetch_history_events():
        field = event.WhichOneof("attributes")
        if field == "activity_task_scheduled_event_attributes":
            activity = event.activity_task_scheduled_event_attributes.activity_type.name
            scheduled[event.event_id] = activity
        elif field in closings:
            closed.add(getattr(event, field).scheduled_event_id)
    assert [kind for event_id, kind in scheduled.items() if event_id not in closed] == []


class OutageModel:
    """Answers; at its first call PostgreSQL goes away, and comes back seconds later."""

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self.calls = 0
        self.back: asyncio.Task[None] | None = None

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        if self.calls == 1:
            await asyncio.to_thread(self.server.stop)
            self.back = asyncio.create_task(self._back_later())
        return ModelResponse(text="four", model=request.model)

    async def _back_later(self) -> None:
        await asyncio.sleep(3)
        await asyncio.to_thread(self.server.start)


async def test_a_paid_reply_waits_for_a_postgresql_outage_instead_of_asking_again(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    # The reply is written to the store after the call: with PostgreSQL away, the
    # attempt failed and the next one asked the model again (a second paid answer,
    # counted nowhere); a longer outage used up the model's attempts.
    server = PostgresServer()
    server.start()
    try:
        store = await open_store(server.url)
        model = OutageModel(server)
        async with running_worker(
            client,
            tmp_path / "ws",
            search_attribute_names,
            providers={"scripted": model},
            store=store,
        ) as worker:
            result = await worker.run(AgentInput(prompt="two and two?"))
        assert result.status == "completed", result.reason
        assert result.output == "four"
        assert model.calls == 1 and result.usage.model_calls == 1
        assert result.transcript is not None
        assert [m.content for m in await store.messages(result.transcript)] == [
            "two and two?",
            "four",
        ]
        await store.close()
    finally:
        server.remove()


class HangingModel(CheckingModel):
    """As :class:`CheckingModel`, but its call of step ``hang_at`` waits until released."""

    def __init__(self, steps: int, hang_at: int) -> None:
        super().__init__(steps)
        self.hang_at = hang_at
        self.release = asyncio.Event()
        self.hanging = False

    async def complete(self, request: ModelRequest) -> ModelResponse:
        if request.step == self.hang_at:
            self.hanging = True
            await self.release.wait()
        return await super().complete(request)


async def test_a_chain_run_with_no_step_of_its_own_reads_the_earlier_steps_from_the_store(
    client: Client,
    tmp_path: Path,
    search_attribute_names: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Read from a history with no step (continued as new, its first call not answered
    # yet), the step log was empty: the store, which holds the chain's steps, was not asked.
    from onward.starter.trace import _with_stored_steps

    monkeypatch.setenv("ONWARD_STORE", str(tmp_path / "store"))
    store = await open_store(str(tmp_path / "store"))
    model = HangingModel(steps=4, hang_at=3)
    agent_input = AgentInput(prompt=PROMPT, tools=["calculator"], continue_as_new_after=2)
    async with running_worker(
        client, tmp_path / "ws", search_attribute_names, providers={"scripted": model}, store=store
    ) as worker:
        handle = await worker.start(agent_input)

        async def switched() -> bool:
            return model.hanging

        await eventually(switched)
        description = await client.get_workflow_handle(handle.id).describe()
        assert (
            description.run_id != description.raw_description.workflow_execution_info.first_run_id
        )
        steps, missing = await _with_stored_steps(description, [])
        model.release.set()
        assert (await handle.result()).status == "completed"
    assert [record.step for record in steps] == [1, 2] and missing is None
    await store.close()
