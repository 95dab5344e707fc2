"""``onward steps``, ``onward trace`` and ``onward report`` against real runs.

Runs go through in-process workers on the session's dev server; each command
is a real ``python -m onward.starter.cli`` subprocess, as a user would run it. The
step logs these commands print are checked against the runs' own results, also
when no worker is left to answer a query (then they come from the history).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.common.v1 import ActivityType
from temporalio.api.failure.v1 import ApplicationFailureInfo, Failure, ServerFailureInfo
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.client import Client, WorkflowHistory
from temporalio.exceptions import ApplicationError

from conftest import (
    Completed,
    RunningWorker,
    activity_running,
    eventually,
    run_onward,
    running_worker,
)
from onward import steplog
from onward.activities.providers.scripted import ScriptedModel
from onward.client import OnwardClient
from onward.contracts import (
    AgentResult,
    ApprovalRecord,
    ModelRequest,
    ModelResponse,
    RunUsage,
    StepRecord,
)
from onward.starter.calls import Call, CallState, CallTrace
from onward.starter.follow import retrying_of
from onward.starter.history import RunHistory, _Assembler, reconstruct
from onward.starter.listing import RunRow, run_table
from onward.starter.report import aggregate, parse_since, percentile, report_lines, report_query
from onward.starter.timeline import trace_lines
from onward.starter.trace import Trace, TraceStep, TraceToolCall, load_trace
from onward.workflows import AgentWorkflow
from onward.workflows.agent import MODEL_RETRY_POLICY

ROOT = Path(__file__).resolve().parent.parent
HISTORIES = Path(__file__).parent / "histories"
BACKOFF_MS = MODEL_RETRY_POLICY.initial_interval.total_seconds() * 1000
"""A rate-limited call without Retry-After is retried after this back-off."""

TOOLS_SCRIPT: list[dict[str, Any]] = [
    {
        "text": "Compute and save.",
        "tool_calls": [
            {"name": "calculator", "arguments": {"expression": "17 * 3 + 4"}},
            {"name": "write_file", "arguments": {"path": "total.txt", "content": "55\n"}},
            {"name": "read_file", "arguments": {"path": "missing.txt"}},
        ],
        "usage": {"input_tokens": 100, "output_tokens": 20},
    },
    {
        "text": "Wait a moment, and try a tool that does not exist.",
        "tool_calls": [
            {"name": "wait", "arguments": {"seconds": 1}},
            {"name": "nope", "arguments": {}},
        ],
        "usage": {"input_tokens": 150, "output_tokens": 30},
    },
    {"text": "The total is 55.", "usage": {"input_tokens": 200, "output_tokens": 5}},
]


async def onward(address: str, task_queue: str, *args: str) -> Completed:
    """Run ``onward ARGS`` as a subprocess against ``address`` and ``task_queue``."""
    return await run_onward(
        *args, env={"TEMPORAL_ADDRESS": address, "ONWARD_TASK_QUEUE": task_queue}
    )


def _log_json(steps: list[StepRecord]) -> list[dict[str, Any]]:
    return [step.model_dump(mode="json") for step in steps]


def _essentials(steps: list[StepRecord]) -> list[dict[str, Any]]:
    """What a step log says, without the workflow's own clock readings.

    Typed fields are read through :mod:`onward.steplog`, so a step log recorded
    before they existed says the same as one rebuilt today.
    """
    return [
        {
            **step.model_dump(
                mode="json", exclude={"started_at", "duration_ms", "tool_calls", "text", "error"}
            ),
            "error": steplog.step_error(step),
            "text": "" if steplog.step_error(step) else step.text,
            "tool_calls": [
                {
                    **call.model_dump(mode="json", exclude={"started_at", "duration_ms"}),
                    "status": steplog.tool_status(call),
                }
                for call in step.tool_calls
            ],
        }
        for step in steps
    ]


class FlakyModel:
    """The scripted model, failing its very first call with a retryable error."""

    def __init__(self) -> None:
        self.calls = 0
        self._scripted = ScriptedModel()

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        if self.calls == 1:
            raise ApplicationError("rate limited", type="RateLimited")
        return await self._scripted.complete(request)


class DeepFailureModel:
    """The scripted model, failing its first call with an unexpected error whose causes
    are long (a bug deep in a provider; ``http_fetch``'s stack traces do as much)."""

    def __init__(self) -> None:
        self.calls = 0
        self._scripted = ScriptedModel()

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        if self.calls == 1:
            try:
                raise ValueError("the provider's state: " + "x" * 8000)
            except ValueError as err:
                raise RuntimeError("provider state broken") from err
        return await self._scripted.complete(request)


# -- history alone ----------------------------------------------------------------


CHAIN_STEPS = {
    "continue_as_new": [1, 2],
    "continue_as_new_run2": [3, 4],
    "continue_as_new_run3": [5],
    "steps_from_messages": [1, 2],
    "steps_from_messages_run2": [3, 4],
    "run_version_chain": [1, 2],
    "run_version_chain_run2": [3, 4],
}
"""The steps each recorded run of the continue-as-new chain holds."""


def agent_histories() -> list[Path]:
    """The committed histories of AgentWorkflow runs (not of the sessions around them)."""
    found = []
    for path in sorted(HISTORIES.glob("*.json")):
        started = json.loads(path.read_text())["events"][0]
        kind = started["workflowExecutionStartedEventAttributes"]["workflowType"]["name"]
        if kind == "AgentWorkflow":
            found.append(path)
    return found


@pytest.mark.parametrize("path", agent_histories(), ids=lambda p: p.stem)
def test_committed_histories_rebuild_their_step_logs(path: Path) -> None:
    history = WorkflowHistory.from_json("replayed", json.loads(path.read_text()))
    run = reconstruct(history.events)

    if run.ended == "cancelled":  # a native cancel: no result to compare with
        assert run.result is None
        calls = [call for step in run.step_log for call in step.tool_calls]
        assert calls and (calls[-1].error or "").startswith("interrupted")
        assert run.in_flight == []
        return
    if path.stem == "webhook_invalid_input":  # failed on its tools before any step
        assert run.ended == "failed" and run.step_log == [] and run.in_flight == []
        return
    chain = CHAIN_STEPS.get(path.stem)
    if chain is not None:  # one run of a continue-as-new chain: its own steps, chain-numbered
        assert [step.step for step in run.step_log] == chain
        if path.stem.startswith("continue_as_new"):  # steered around the first switch
            steered = [s.step for s in run.step_log if s.steering == ["and then add 3"]]
            assert steered == ([4] if 4 in chain else [])
        if run.result is None:
            return
    assert run.ended == "completed" and run.result is not None
    recorded_steps = [s for s in run.result.steps if chain is None or s.step in chain]
    rebuilt, recorded = _essentials(run.step_log), _essentials(recorded_steps)
    for step in rebuilt + recorded:  # older histories offered no `wait` tool
        for call in step["tool_calls"]:
            if (call["error"] or "").startswith("unknown tool"):
                call["error"] = call["error"].split(" (available")[0]
    if path.stem == "tools_and_control":  # steered while budget-paused in step 2
        assert [step["steering"] for step in rebuilt] == [[], [], ["keep it short"]]
    # Why a call was interrupted or not run is workflow state, not in the history:
    # the rebuild says that it was, and the recorded log says why.
    for rebuilt_step, recorded_step in zip(rebuilt, recorded, strict=False):
        if not recorded_step["steering"]:  # recorded before steps showed their steering
            rebuilt_step["steering"] = []
        for mine, theirs in zip(
            rebuilt_step["tool_calls"], recorded_step["tool_calls"], strict=False
        ):
            if mine["error"] in {"interrupted", "not run"} and theirs["error"]:
                assert theirs["error"].startswith(mine["error"] + ": ")
                theirs["error"] = mine["error"]
    assert rebuilt == recorded
    assert all(step.model_call.attempts == 1 for step in run.steps)
    assert run.in_flight == []


@pytest.mark.parametrize(
    ("name", "cut"),
    [("cancel_signal", [2]), ("deadline_stop", [2]), ("native_cancel", []), ("delegate", [])],
)
def test_committed_histories_show_the_model_call_their_end_cut_off(
    name: str, cut: list[int]
) -> None:
    history = WorkflowHistory.from_json(name, json.loads((HISTORIES / f"{name}.json").read_text()))
    run = reconstruct(history.events)
    assert [(call.role, call.step) for call in run.cut_off] == [("model", step) for step in cut]
    assert all(step.record.step not in cut for step in run.steps)  # no step holds it


def _model_call(step: int, state: CallState, refused: bool = False) -> Call:
    trace = CallTrace(kind="activity", role="model", name="m", step=step, state=state)
    return Call(trace=trace, activity_type="call_model", refused=refused)


@pytest.mark.parametrize(
    ("calls", "cut"),
    [
        # refused as past the deadline: it never ran, the run ended over the deadline
        ([_model_call(1, "completed"), _model_call(2, "cancelled", refused=True)], []),
        # refused, re-issued after extend_budget, then cut off by a cancel: listed once
        ([_model_call(2, "cancelled", refused=True), _model_call(2, "cancelled")], [1]),
        # cut off by the deadline, then the finishing call answered: the end cut nothing
        ([_model_call(2, "cancelled"), _model_call(2, "completed")], []),
    ],
)
def test_only_a_runs_last_model_call_can_be_cut_off(calls: list[Call], cut: list[int]) -> None:
    run = RunHistory(ended="budget_exceeded")
    _Assembler(run, calls).assemble()
    assert run.cut_off == [calls[i].trace for i in cut]


def test_trace_lines_name_the_sub_agent_whose_call_was_cut_off() -> None:
    def cut(step: int) -> CallTrace:
        return CallTrace(kind="activity", role="model", name="m", step=step, state="started")

    child = Trace(workflow_id="run-1.d1", status="cancelled", source="history", usage=RunUsage())
    child.cut_off.append(cut(3))
    parent = Trace(workflow_id="run-1", status="cancelled", source="result", usage=RunUsage())
    parent.steps.append(
        TraceStep(
            step=1,
            tool_calls=[TraceToolCall(id="d1", name="delegate", arguments={}, child=child)],
        )
    )
    parent.cut_off.append(cut(2))

    lines = trace_lines(parent)

    assert [line for line in lines if line.startswith("cut off")] == [
        "cut off: step 2 · model m (never answered)",
        "cut off: sub-agent run-1.d1 step 3 · model m (never answered)",
    ]


def test_a_call_a_closed_run_left_pending_shows_no_outcome() -> None:
    trace = Trace(workflow_id="run-1", status="terminated", source="history", usage=RunUsage())
    pending = TraceToolCall(id="c1", name="calculator", arguments={"expression": "1+1"})
    # Started and never ended: a wait's timer, say, when the run was terminated.
    started = TraceToolCall(
        id="c2",
        name="wait",
        arguments={"seconds": 15},
        call=CallTrace(kind="timer", role="tool", name="wait", state="started"),
    )
    trace.steps.append(TraceStep(step=1, tool_calls=[pending, started]))

    rows = [line for line in trace_lines(trace) if "calculator(" in line or "wait(" in line]

    assert len(rows) == 2 and all(row.endswith("(no outcome)") for row in rows), rows


def test_since_and_percentiles() -> None:
    now = datetime(2025, 1, 31, 12, 0, tzinfo=UTC)
    assert parse_since("1h", now) == now - timedelta(hours=1)
    assert parse_since("1h30m", now) == now - timedelta(minutes=90)
    assert parse_since("2d", now) == now - timedelta(days=2)
    assert parse_since("2025-01-30T09:00:00+00:00", now) == datetime(2025, 1, 30, 9, tzinfo=UTC)
    with pytest.raises(ValueError, match="30m"):
        parse_since("yesterday", now)
    assert percentile([], 50) is None
    assert percentile([30, 10, 20], 50) == 20
    assert percentile([10, 20], 50) == 10
    assert percentile(list(range(1, 101)), 95) == 95
    assert report_query(now, 'a"b') == (
        'WorkflowType = "AgentWorkflow" AND StartTime >= "2025-01-31T12:00:00.000000Z" '
        'AND OnwardTenant = "a\\"b"'
    )


def test_the_report_and_the_list_say_in_which_time_zone_they_show_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        since = datetime(2025, 1, 31, 12, 0, tzinfo=UTC)
        head = report_lines(aggregate([], since, since))[0]
        row = RunRow("r", "1", "completed", "scripted", 1, 10, None, since, None, "completed")
        _, listed = run_table([row])
    finally:
        monkeypatch.undo()
        time.tzset()
    assert head.startswith("0 runs since 2025-01-31 21:00:00 JST"), head
    assert listed.endswith("2025-01-31 21:00:00 JST"), listed


# -- finished runs ------------------------------------------------------------------


async def test_trace_and_steps_match_the_step_log(address: str, worker: RunningWorker) -> None:
    handle = await worker.start({"prompt": "add up", "script": TOOLS_SCRIPT})
    result = await handle.result()
    assert result.status == "completed"

    # The history alone gives the same step log as the run's own result.
    rebuilt = reconstruct([event async for event in handle.fetch_history_events()])
    assert _essentials(rebuilt.step_log) == _essentials(result.steps)

    steps, trace, human = await asyncio.gather(
        onward(address, worker.task_queue, "steps", handle.id, "--json"),
        onward(address, worker.task_queue, "trace", handle.id, "--json"),
        onward(address, worker.task_queue, "trace", handle.id),
    )
    assert steps.code == 0, steps.stderr
    assert steps.json() == _log_json(result.steps)

    assert trace.code == 0, trace.stderr
    timeline = trace.json()
    assert (timeline["status"], timeline["source"]) == ("completed", "result")
    assert timeline["usage"] == result.usage.model_dump(mode="json")
    first, second, third = timeline["steps"]
    for traced, recorded in zip(timeline["steps"], _log_json(result.steps), strict=True):
        assert traced["text"] == recorded["text"]
        assert traced["usage"] == recorded["usage"]
        assert traced["cost_usd"] == recorded["cost_usd"]
        assert traced["model_call"]["attempts"] == 1
        assert traced["model_call"]["retries"] == 0
        assert [
            {key: call[key] for key in ("id", "name", "arguments", "result", "error")}
            for call in traced["tool_calls"]
        ] == [
            {key: call[key] for key in ("id", "name", "arguments", "result", "error")}
            for call in recorded["tool_calls"]
        ]
    calc, write, read = first["tool_calls"]
    assert (calc["result"], calc["call"]["kind"]) == ("55", "local_activity")
    assert (write["call"]["kind"], write["error"]) == ("activity", None)
    assert read["error"] and read["call"]["kind"] == "activity"
    wait, nope = second["tool_calls"]
    assert (wait["result"], wait["call"]["kind"]) == ("waited 1 s", "timer")
    assert wait["call"]["latency_ms"] >= 1000
    assert nope["error"].startswith("unknown tool 'nope'") and nope["call"] is None
    assert third["tool_calls"] == [] and third["text"] == "The total is 55."

    assert human.code == 0, human.stderr
    out = human.stdout
    assert "TRIES" in out and "calculator(17 * 3 + 4)" in out and "-> 55" in out
    assert "read_file(missing.txt)" in out and "!! " in out
    assert "answer: The total is 55." in out


async def test_unknown_id_exits_2(address: str, worker: RunningWorker) -> None:
    done = await onward(address, worker.task_queue, "trace", "no-such-run", "--json")
    assert done.code == 2
    assert done.json()["error"]["type"] == "RunNotFound"
    assert done.stderr.strip() == "onward: no run with id no-such-run"


async def test_finished_run_is_traced_with_its_worker_gone(
    address: str, client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    async with running_worker(client, tmp_path / "ws", search_attribute_names) as gone:
        handle = await gone.start({"prompt": "add up", "script": TOOLS_SCRIPT[:1]})
        result = await handle.result()

    steps, trace = await asyncio.gather(
        onward(address, gone.task_queue, "steps", handle.id, "--json"),
        onward(address, gone.task_queue, "trace", handle.id, "--json"),
    )
    assert steps.code == 0, steps.stderr
    assert steps.json() == _log_json(result.steps)
    assert trace.code == 0, trace.stderr
    assert trace.json()["source"] == "result"
    assert trace.json()["steps"][0]["tool_calls"][0]["result"] == "55"


async def test_running_run_without_a_worker_is_read_from_history(
    address: str, client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    script = [TOOLS_SCRIPT[0], {"text": "slow", "delay_s": 300}]
    async with running_worker(
        client,
        tmp_path / "ws",
        search_attribute_names,
        graceful_shutdown_timeout=timedelta(0),
    ) as gone:
        handle = await gone.start({"prompt": "add up", "script": script})

        async def second_call_running() -> bool:
            return await activity_running(handle, "call_model") and bool(
                await handle.query(AgentWorkflow.steps)
            )

        await eventually(second_call_running)
        logged = await handle.query(AgentWorkflow.steps)

    steps, trace, human = await asyncio.gather(
        onward(address, gone.task_queue, "steps", handle.id, "--json"),
        onward(address, gone.task_queue, "trace", handle.id, "--json"),
        onward(address, gone.task_queue, "trace", handle.id),
    )
    assert steps.code == 0, steps.stderr
    assert "event history" in steps.stderr
    assert _essentials([StepRecord.model_validate(s) for s in steps.json()]) == _essentials(logged)

    assert trace.code == 0, trace.stderr
    timeline = trace.json()
    assert (timeline["status"], timeline["source"]) == ("running", "history")
    (step,) = timeline["steps"]
    assert step["finished"] is True
    assert [call["result"] for call in step["tool_calls"]][:2] == [
        "55",
        "wrote 3 characters to total.txt",
    ]
    assert step["usage"] == {
        "input_tokens": 100,
        "output_tokens": 20,
        "cached_input_tokens": None,  # the scripted model reports no prompt cache
        "cache_write_tokens": None,
        "estimated": False,  # the scripted model reports its usage
    }
    (flying,) = timeline["in_flight"]
    assert (flying["role"], flying["step"], flying["name"]) == ("model", 2, "scripted")
    assert timeline["usage"]["total_tokens"] == 120

    assert human.code == 0, human.stderr
    assert "in flight: step 2 · model scripted" in human.stdout
    await handle.terminate("test over")


async def test_terminated_run_has_nothing_in_flight(address: str, worker: RunningWorker) -> None:
    handle = await worker.start({"prompt": "slow", "script": [{"text": "x", "delay_s": 300}]})

    async def model_running() -> bool:
        return await activity_running(handle, "call_model")

    await eventually(model_running)
    await handle.terminate("test over")
    trace, human, steps = await asyncio.gather(
        onward(address, worker.task_queue, "trace", handle.id, "--json"),
        onward(address, worker.task_queue, "trace", handle.id),
        onward(address, worker.task_queue, "steps", handle.id),
    )
    assert trace.code == 0, trace.stderr
    assert (trace.json()["status"], trace.json()["in_flight"]) == ("terminated", [])
    (cut,) = trace.json()["cut_off"]  # the call the terminate left unanswered
    # (Temporal records an attempt's start only with its outcome: none here.)
    assert (cut["role"], cut["step"], cut["state"]) == ("model", 1, "scheduled")
    assert "in flight" not in human.stdout
    assert "cut off: step 1 · model scripted (never answered)" in human.stdout
    assert "no worker answered" not in human.stdout  # no query is asked of a closed run
    assert steps.code == 0 and steps.stderr == ""


TWO_SUMS = {
    "text": "two sums",
    "tool_calls": [
        {"name": "calculator", "arguments": {"expression": "1+1"}},
        {"name": "calculator", "arguments": {"expression": "2+2"}},
    ],
}


@pytest.mark.parametrize(
    ("options", "state", "shown", "counted"),
    [
        # The budget pauses the turn after its first call: the second waits to start.
        ({"budget": {"max_tool_calls": 1, "on_exceeded": "pause"}}, "budget_paused",
         ["-> 2", "(not started)"], 1),
        # Both calls started, and wait for a decision.
        ({"approve_tools": ["calculator"]}, "awaiting_approval",
         ["(awaiting approval)", "(awaiting approval)"], 2),
    ],
)  # fmt: skip
async def test_a_call_waiting_to_start_or_for_approval_shows_what_it_waits_for(
    worker: RunningWorker,
    options: dict[str, Any],
    state: str,
    shown: list[str],
    counted: int,
) -> None:
    script = [TWO_SUMS, {"text": "2 and 4"}]
    handle = await worker.start(
        {"prompt": "add", "tools": ["calculator"], "script": script, **options}
    )
    client = OnwardClient(worker.client, task_queue=worker.task_queue)

    async def waiting() -> bool:
        return (await client.status(handle.id)).state == state

    await eventually(waiting)
    trace = await client.trace(handle.id)
    (step,) = trace.steps
    rows = [line for line in trace_lines(trace) if "calculator(" in line]
    assert len(rows) == len(shown) and all(map(str.endswith, rows, shown)), rows
    assert step.tool_calls[-1].pending
    # As the run counts them: a call is made once it starts.
    assert trace.usage.tool_calls == counted == (await client.status(handle.id)).usage.tool_calls
    await client.cancel(handle.id)


async def test_a_model_call_cut_off_by_cancel_shows_in_trace(
    address: str, worker: RunningWorker
) -> None:
    script = [TOOLS_SCRIPT[0], {"text": "slow", "delay_s": 300}]
    handle = await worker.start({"prompt": "add up", "script": script})

    async def second_call_running() -> bool:
        return await activity_running(handle, "call_model") and bool(
            await handle.query(AgentWorkflow.steps)
        )

    await eventually(second_call_running)
    await handle.signal(AgentWorkflow.cancel)
    result = await handle.result()
    assert (result.status, len(result.steps)) == ("cancelled", 1)  # the cut-off call: no step
    trace, human = await asyncio.gather(
        onward(address, worker.task_queue, "trace", handle.id, "--json"),
        onward(address, worker.task_queue, "trace", handle.id),
    )
    assert trace.code == 0, trace.stderr
    timeline = trace.json()
    assert [step["step"] for step in timeline["steps"]] == [1]
    (cut,) = timeline["cut_off"]
    assert (cut["role"], cut["step"], cut["name"], cut["state"]) == (
        "model",
        2,
        "scripted",
        "cancelled",
    )
    assert cut["latency_ms"] is not None
    assert "cut off: step 2 · model scripted (after " in human.stdout


def test_report_leaves_out_calls_that_never_ran_or_a_person_rejected() -> None:
    refused = "not run: max_tool_calls 1 reached"
    step = TraceStep(
        step=1,
        tool_calls=[
            TraceToolCall(id="a", name="calculator", arguments={}, result="2"),
            TraceToolCall(id="b", name="calculator", arguments={}, error=refused),
            TraceToolCall(id="c", name="read_file", arguments={}, error=refused),
            TraceToolCall(
                id="d",
                name="calculator",
                arguments={},
                error="rejected: not now",
                status="refused",
                approval=ApprovalRecord(decision="rejected", by="person"),
            ),
        ],
    )
    trace = Trace(workflow_id="w", status="budget_exceeded", source="result", usage=RunUsage())
    trace.steps.append(step)
    now = datetime.now(UTC)
    report = aggregate([trace], now - timedelta(hours=1), now)
    (calculator,) = report.tools
    assert (calculator.name, calculator.calls, calculator.errors) == ("calculator", 1, 0)


async def test_retried_model_call_shows_in_trace(
    address: str, client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    flaky = FlakyModel()
    async with running_worker(
        client, tmp_path / "ws", search_attribute_names, providers={"scripted": flaky}
    ) as retrying:
        handle = await retrying.start({"prompt": "add up", "script": TOOLS_SCRIPT[:1]})
        await handle.result()
        trace, human = await asyncio.gather(
            onward(address, retrying.task_queue, "trace", handle.id, "--json"),
            onward(address, retrying.task_queue, "trace", handle.id),
        )
    assert trace.code == 0, trace.stderr
    first = trace.json()["steps"][0]["model_call"]
    assert (first["attempts"], first["retries"], first["last_failure"]) == (2, 1, "rate limited")
    assert first["latency_ms"] >= BACKOFF_MS  # the retry waited out its back-off
    assert "retried after: rate limited" in human.stdout


async def test_a_retry_after_a_long_failure_names_the_failure(
    address: str, client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    """The server keeps a retried call's last failure wrapped as "Failure exceeds size
    limit." when its stack traces are long: the trace reads the failure inside."""
    async with running_worker(
        client, tmp_path / "ws", search_attribute_names, providers={"scripted": DeepFailureModel()}
    ) as retrying:
        handle = await retrying.start({"prompt": "add up", "script": TOOLS_SCRIPT[:1]})
        await handle.result()
        trace = await onward(address, retrying.task_queue, "trace", handle.id, "--json")
    assert trace.code == 0, trace.stderr
    first = trace.json()["steps"][0]["model_call"]
    assert (first["attempts"], first["last_failure"]) == (2, "provider state broken")


def test_a_pending_retry_after_a_long_failure_names_the_failure() -> None:
    """``status``'s retry line (and ``run``/``watch``'s) reads a pending call's last
    failure inside the server's wrapper, as the trace does."""
    cause = Failure(
        message="http_fetch: cannot reach 127.0.0.1: All connection attempts failed",
        application_failure_info=ApplicationFailureInfo(type="ToolRetryableError"),
    )
    wrapped = Failure(
        message="Failure exceeds size limit.", server_failure_info=ServerFailureInfo(), cause=cause
    )
    pending = PendingActivityInfo(
        activity_type=ActivityType(name="execute_tool"), attempt=3, last_failure=wrapped
    )
    retry = retrying_of([pending])
    assert retry is not None and retry.last_failure == cause.message


# -- report ---------------------------------------------------------------------------


async def test_report_aggregates_a_tenants_runs(
    address: str, client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    tenant = f"tenant-{uuid.uuid4().hex[:8]}"
    since = datetime.now(UTC) - timedelta(seconds=5)
    write_then_read = [
        {
            "text": "save",
            "tool_calls": [{"name": "write_file", "arguments": {"path": "a.txt", "content": "4"}}],
            "usage": {"input_tokens": 10, "output_tokens": 5},
        },
        {
            "text": "read back",
            "tool_calls": [
                {"name": "read_file", "arguments": {"path": "a.txt"}},
                {"name": "read_file", "arguments": {"path": "missing.txt"}},
                {"name": "calculator", "arguments": {"expression": "2+2"}},
            ],
            "usage": {"input_tokens": 20, "output_tokens": 5},
        },
        {"text": "4", "usage": {"input_tokens": 30, "output_tokens": 1}},
    ]
    calculate = [
        {
            "text": "add",
            "tool_calls": [{"name": "calculator", "arguments": {"expression": "1+1"}}],
            "usage": {"input_tokens": 7, "output_tokens": 3},
        },
        {"text": "2", "usage": {"input_tokens": 9, "output_tokens": 1}},
    ]
    async with running_worker(
        client, tmp_path / "ws", search_attribute_names, providers={"scripted": FlakyModel()}
    ) as tenants_worker:
        results: list[AgentResult] = []
        for script in (write_then_read, calculate):
            results.append(
                await tenants_worker.run({"prompt": "p", "script": script, "tenant": tenant})
            )
        other = await tenants_worker.run({"prompt": "p", "script": calculate, "tenant": "else"})
    assert other.status == "completed"

    async def all_listed() -> bool:
        count = await client.count_workflows(report_query(since, tenant))
        return count.count == 2

    await eventually(all_listed)
    queue = tenants_worker.task_queue
    done, table = await asyncio.gather(
        onward(address, queue, "report", "--json", "--tenant", tenant, "--since", "10m"),
        onward(address, queue, "report", "--tenant", tenant),
    )
    assert done.code == 0, done.stderr
    report = done.json()
    assert report["runs"] == 2 and report["by_status"] == {"completed": 2}
    assert report["tenant"] == tenant
    assert report["total_tokens"] == sum(r.usage.total_tokens for r in results) == 91
    assert report["cost_usd"] == pytest.approx(sum(r.usage.cost_usd for r in results))

    (model,) = report["models"]
    assert model["name"] == "scripted"
    assert (model["calls"], model["errors"], model["retried"], model["retries"]) == (5, 0, 1, 1)
    assert model["retry_rate"] == pytest.approx(0.2)
    assert (model["input_tokens"], model["output_tokens"]) == (76, 15)
    assert model["cost_usd"] == pytest.approx(report["cost_usd"])
    assert model["p50_ms"] is not None and model["p95_ms"] >= model["p50_ms"]
    assert model["p95_ms"] >= BACKOFF_MS  # the retried call

    tools = {tool["name"]: tool for tool in report["tools"]}
    assert set(tools) == {"calculator", "read_file", "write_file"}
    assert (tools["read_file"]["calls"], tools["read_file"]["errors"]) == (2, 1)
    assert tools["read_file"]["error_rate"] == 0.5
    assert (tools["calculator"]["calls"], tools["calculator"]["errors"]) == (2, 0)
    assert tools["write_file"]["retry_rate"] == 0.0
    assert all(tool["p50_ms"] is not None and tool["p95_ms"] is not None for tool in tools.values())

    assert table.code == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith("2 runs since") and f"tenant {tenant}" in lines[0]
    assert any(line.startswith("MODEL") for line in lines)
    assert any(line.startswith("scripted ") for line in lines)
    assert any(line.startswith("read_file ") and "1 (50%)" in line for line in lines)
    assert any(line.startswith("calculator ") for line in lines)

    bad = await onward(address, queue, "report", "--since", "yesterday")
    assert bad.code == 2 and "--since" in bad.stderr


async def test_a_run_continued_as_new_counts_once_in_report_and_list(
    address: str, worker: RunningWorker
) -> None:
    tenant = f"chain-{uuid.uuid4().hex[:8]}"
    since = datetime.now(UTC) - timedelta(seconds=5)
    turn = {
        "text": "add",
        "tool_calls": [{"name": "calculator", "arguments": {"expression": "1+1"}}],
        "usage": {"input_tokens": 10, "output_tokens": 1},
    }
    answer = {"text": "done", "usage": {"input_tokens": 10, "output_tokens": 1}}
    handle = await worker.start(
        {
            "prompt": "p",
            "tenant": tenant,
            "tools": ["calculator"],
            "continue_as_new_after": 2,  # three executions: steps 1-2, 3-4, 5-6
            "script": [turn] * 5 + [answer],
        }
    )
    result = await handle.result()
    assert result.status == "completed" and result.usage.total_tokens == 66

    async def all_listed() -> bool:
        count = await worker.client.count_workflows(report_query(since, tenant))
        return count.count == 3  # every execution of the chain

    await eventually(all_listed)
    done = await onward(address, worker.task_queue, "report", "--json", "--tenant", tenant)
    assert done.code == 0, done.stderr
    report = done.json()
    assert (report["runs"], report["by_status"]) == (1, {"completed": 1})
    assert report["total_tokens"] == 66
    ((model,), (tool,)) = report["models"], report["tools"]
    assert (model["calls"], model["input_tokens"]) == (6, 60)
    assert (tool["name"], tool["calls"]) == ("calculator", 5)

    # The trace of the chain times every step from the chain's start (no negative offsets).
    traced = await OnwardClient(worker.client).trace(handle.id)
    assert traced.started_at is not None
    assert all(step.started_at >= traced.started_at for step in traced.steps if step.started_at)
    assert [step.step for step in traced.steps] == [1, 2, 3, 4, 5, 6]
    # Each step's calls as their own execution's history shows them, the carried ones too.
    for step in traced.steps:
        assert step.model_call is not None and step.model_call.attempts == 1, step.step
        assert all(c.call is not None and c.call.attempts == 1 for c in step.tool_calls)
    # Earlier executions past the server's retention: their steps are shown without.
    gone = await load_trace(
        worker.client.get_workflow_handle(handle.id),
        runs=lambda workflow_id, _: worker.client.get_workflow_handle(
            workflow_id, run_id=str(uuid.uuid4())
        ),
    )
    assert [step.model_call is not None for step in gone.steps] == [False] * 4 + [True] * 2
    # `onward list` shows the chain once, as its latest execution (not "running" ones).
    rows = await OnwardClient(worker.client).list(tenant=tenant, limit=10)
    assert [(row.status, row.steps, row.tokens) for row in rows] == [("completed", 6, 66)]

    # A window that holds only the chain's last execution: its steps count, in the
    # header as in the tables, not the chain's usage since its start.
    chain = [e async for e in worker.client.list_workflows(f'WorkflowId = "{handle.id}"')]
    last = max(execution.start_time for execution in chain)
    late = await onward(
        address,
        worker.task_queue,
        "report",
        "--json",
        "--tenant",
        tenant,
        "--since",
        last.isoformat(),
    )
    assert late.code == 0, late.stderr
    part = late.json()
    ((model,),) = (part["models"],)
    assert (model["calls"], model["total_tokens"]) == (2, 22)
    assert (part["runs"], part["total_tokens"]) == (1, 22)
    assert part["cost_usd"] == pytest.approx(model["cost_usd"])


def test_a_run_that_ended_with_no_step_says_no_steps_not_yet() -> None:
    ended = Trace(workflow_id="r", status="failed", source="history", usage=RunUsage())
    assert "(no steps)" in trace_lines(ended)
    running = ended.model_copy(update={"status": "running"})
    assert "(no steps yet)" in trace_lines(running)
