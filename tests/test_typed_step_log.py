"""The typed step log end to end: the workflow records it, readers of its history agree.

The committed ``typed_step_log`` history was recorded from a run with a wait
tool call, a refused (unknown) tool, a steering message and a budget stop.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError
from temporalio.client import Client, WorkflowFailureError, WorkflowHistory
from temporalio.exceptions import ApplicationError

from conftest import RunningWorker, running_worker
from onward import steplog
from onward.activities.tools import ToolContext, builtin_registry, tool
from onward.contracts import (
    AgentInput,
    ApprovalDecision,
    ModelRequest,
    ModelResponse,
    RunUsage,
    StepRecord,
)
from onward.errors import INVALID_INPUT
from onward.starter.history import reconstruct
from onward.starter.render import state_change, step_lines
from onward.starter.report import aggregate
from onward.starter.timeline import trace_lines
from onward.starter.trace import Trace, TraceStep, build_trace, read_history
from onward.workflows import AgentWorkflow

HISTORY = Path(__file__).parent / "histories" / "typed_step_log.json"


def test_the_recorded_run_has_typed_fields_and_its_history_says_the_same() -> None:
    history = WorkflowHistory.from_json("typed", json.loads(HISTORY.read_text()))
    run = reconstruct(history.events)
    assert run.result is not None and run.ended == "completed"
    assert (run.result.status, run.result.limit) == ("budget_exceeded", "max_tool_calls")
    recorded = run.result.steps
    statuses = [[call.status for call in step.tool_calls] for step in recorded]
    assert statuses == [["ok", "refused"], ["ok", "not_run"]]
    assert [step.steering for step in recorded] == [[], ["add 1 and 1 next"]]
    rebuilt = run.step_log
    assert [[call.status for call in step.tool_calls] for step in rebuilt] == statuses
    assert [step.steering for step in rebuilt] == [[], ["add 1 and 1 next"]]
    # Every call is matched by its typed ids: each has how it ran (but the refused one).
    (first, second) = run.steps
    assert set(first.tool_calls) == {recorded[0].tool_calls[0].id}
    assert set(second.tool_calls) == {recorded[1].tool_calls[0].id}


def test_steering_shows_in_steps_and_trace() -> None:
    history = WorkflowHistory.from_json("typed", json.loads(HISTORY.read_text()))
    run = reconstruct(history.events)
    assert run.result is not None
    lines = step_lines(run.result.steps[1])
    assert lines[0].split(None, 2)[2] == "steer: add 1 and 1 next"
    trace = build_trace("w", None, run.result.status, run, run.result.steps, "result")
    rows = trace_lines(trace)
    steer_row = next(row for row in rows if " steer " in row)
    assert steer_row.rstrip().endswith("add 1 and 1 next")
    assert rows.index(steer_row) < next(i for i, row in enumerate(rows) if "as steered" in row)


def test_budget_paused_hint_uses_the_typed_limit() -> None:
    typed = state_change("w", "budget_paused", "a limit was reached", "max_tool_calls")
    legacy = state_change("w", "budget_paused", "max_tool_calls: made 2 of 2 tool calls")
    assert typed is not None and "--max-tool-calls N" in typed
    assert legacy is not None and "--max-tool-calls N" in legacy


@pytest.mark.parametrize(
    ("model", "hint"),
    [
        ("gpt-4o-mini", "use 'openai:gpt-4o-mini'"),
        ("gpt-4.1", "use 'openai:gpt-4.1'"),
        ("claude-3-5-haiku-latest", "use 'anthropic:claude-3-5-haiku-latest'"),
        ("llama3.2", "use 'ollama:llama3.2'"),
        ("mystery", "with one of anthropic, ollama, openai"),
        ("openai", "names no model; use 'openai:<model>'"),
    ],
)
def test_a_bare_model_name_gets_a_useful_hint(model: str, hint: str) -> None:
    with pytest.raises(ValidationError) as caught:
        AgentInput(prompt="hi", model=model)
    assert hint in str(caught.value)


def test_legacy_failed_steps_render_from_their_text() -> None:
    legacy = StepRecord(step=1, started_at=datetime.now(UTC), text="model call failed: boom")
    typed = StepRecord(step=1, started_at=datetime.now(UTC), error="boom")
    assert step_lines(legacy)[0] == step_lines(typed)[0]
    assert steplog.step_error(legacy) == "boom"


async def test_unknown_tool_error_lists_the_workflow_tools(worker: RunningWorker) -> None:
    handle = await worker.start({"prompt": "hi", "tools": ["calculatr"]})
    with pytest.raises(WorkflowFailureError) as caught:
        await handle.result()
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == INVALID_INPUT
    assert "this worker has: " in cause.message and "calculator" in cause.message
    assert cause.message.endswith("and the workflow itself: wait, delegate")


class BrokenModel:
    """A model whose every call fails for good."""

    async def complete(self, request: ModelRequest) -> ModelResponse:
        raise ApplicationError("the model is gone", type="ModelGone", non_retryable=True)


async def test_a_failed_model_call_is_a_typed_step_error(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    async with running_worker(
        client, tmp_path / "ws", search_attribute_names, providers={"scripted": BrokenModel()}
    ) as broken:
        handle = await broken.start({"prompt": "hi"})
        result = await handle.result()
        history = await read_history(handle)
    assert (result.status, result.reason) == ("failed", "model call failed: the model is gone")
    (step,) = result.steps
    assert (step.error, step.text) == ("the model is gone", "")
    (rebuilt,) = history.step_log
    assert rebuilt.error == "the model is gone"
    assert step_lines(step)[0].endswith("model call failed: the model is gone")


class LaunchArgs(BaseModel):
    target: str


@tool(requires_approval=True)
def launch(args: LaunchArgs, ctx: ToolContext) -> str:
    """Launches something irreversible."""
    raise AssertionError("must never run without approval")


async def test_refusals_read_the_same_from_the_result_and_the_history(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    registry = builtin_registry()
    registry.register(launch)
    script = [
        {
            "tool_calls": [
                {"name": "launch", "arguments": {"target": "moon"}},
                {"name": "lunch", "arguments": {}},
            ]
        },
        {"text": "ok"},
    ]
    async with running_worker(client, tmp_path, search_attribute_names, registry=registry) as w:
        handle = await w.start({"prompt": "p", "script": script, "tools": ["launch"]})
        while (await handle.query(AgentWorkflow.status)).state != "awaiting_approval":
            await asyncio.sleep(0.05)
        await handle.execute_update(AgentWorkflow.reject, ApprovalDecision(note="no"))
        result = await handle.result()
        history = await read_history(handle)
    recorded = result.steps[0].tool_calls
    rebuilt = history.step_log[0].tool_calls
    assert [call.status for call in recorded] == ["refused", "refused"]
    assert [(c.status, c.error, c.approval) for c in rebuilt] == [
        (c.status, c.error, c.approval) for c in recorded
    ]
    assert recorded[0].error == "rejected: no"
    assert recorded[1].error == "unknown tool 'lunch' (available: launch)"


def test_report_counts_a_typed_model_failure() -> None:
    failed = TraceStep(step=1, model="scripted", error="the model is gone")
    answered = TraceStep(step=2, model="scripted", text="done", cost_usd=0.0)
    trace = Trace(workflow_id="w", status="failed", source="result", usage=RunUsage())
    trace.steps += [failed, answered]
    now = datetime.now(UTC)
    (model,) = aggregate([trace], now - timedelta(hours=1), now).models
    assert (model.calls, model.errors) == (2, 1)
