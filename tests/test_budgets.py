"""Every budget stops a run with its reason and the partial results; extend_budget lifts them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from conftest import RunningWorker, eventually, model_inputs, running_worker
from onward.activities.providers.scripted import ScriptedModel
from onward.client import OnwardClient
from onward.contracts import BudgetExtension, ModelRequest, ModelResponse
from onward.errors import DEADLINE_PASSED
from onward.starter.trace import read_history
from onward.worker import WorkerSettings, build_worker
from onward.workflows import AgentWorkflow


def calc_turn(expression: str, tokens: tuple[int, int] = (100, 50), **extra: Any) -> dict[str, Any]:
    return {
        "text": f"computing {expression}",
        "tool_calls": [{"name": "calculator", "arguments": {"expression": expression}}],
        "usage": {"input_tokens": tokens[0], "output_tokens": tokens[1]},
        **extra,
    }


FOUR_STEPS = [calc_turn("1+1"), calc_turn("2+2"), calc_turn("3+3"), {"text": "done"}]


async def test_max_tokens(worker: RunningWorker) -> None:
    result = await worker.run({"prompt": "p", "script": FOUR_STEPS, "budget": {"max_tokens": 200}})
    assert result.status == "budget_exceeded"
    assert result.reason == "max_tokens: used 300 of 200 tokens"
    assert len(result.steps) == 2  # partial results: both finished steps, with their results
    # tokens are checked before tool calls too: step 2's call was not started
    assert result.steps[0].tool_calls[0].result == "2"
    assert result.steps[1].tool_calls[0].error == "not run: max_tokens: used 300 of 200 tokens"
    assert result.usage.total_tokens == 300
    assert result.output is None


async def test_max_tool_calls_stops_between_calls_of_one_turn(worker: RunningWorker) -> None:
    two_calls = {
        "text": "two at once",
        "tool_calls": [
            {"name": "calculator", "arguments": {"expression": "5*5"}},
            {"name": "calculator", "arguments": {"expression": "6*6"}},
        ],
    }
    result = await worker.run(
        {"prompt": "p", "script": [two_calls, two_calls], "budget": {"max_tool_calls": 3}}
    )
    assert result.status == "budget_exceeded"
    assert result.reason == "max_tool_calls: made 3 of 3 tool calls"
    assert result.usage.tool_calls == 3
    assert len(result.steps) == 2
    last_calls = result.steps[1].tool_calls
    assert [(c.result, c.error) for c in last_calls] == [
        ("25", None),
        (None, "not run: max_tool_calls: made 3 of 3 tool calls"),
    ]


async def test_max_steps(worker: RunningWorker) -> None:
    result = await worker.run({"prompt": "p", "script": FOUR_STEPS, "budget": {"max_steps": 3}})
    assert result.status == "budget_exceeded"
    assert result.reason == "max_steps: 3 of 3 steps done"
    assert [s.step for s in result.steps] == [1, 2, 3]


async def test_max_cost_with_a_configured_price(worker: RunningWorker) -> None:
    # 100 input tokens at $1000 / Mtok = $0.10 and 50 output at $0 per step
    result = await worker.run(
        {
            "prompt": "p",
            "script": FOUR_STEPS,
            "pricing": {"input_per_mtok": 1000, "output_per_mtok": 0},
            "budget": {"max_cost_usd": 0.15},
        }
    )
    assert result.status == "budget_exceeded"
    assert result.reason is not None and result.reason.startswith("max_cost_usd: spent $0.200000")
    assert len(result.steps) == 2
    assert [s.cost_usd for s in result.steps] == pytest.approx([0.1, 0.1])


async def test_max_duration_does_not_wait_for_a_slow_model(worker: RunningWorker) -> None:
    script = [calc_turn("1+1"), calc_turn("2+2", delay_s=60)]
    handle = await worker.start({"prompt": "p", "script": script, "budget": {"max_duration_s": 2}})
    result = await handle.result()
    assert result.status == "budget_exceeded"
    assert result.reason is not None and result.reason.startswith("max_duration_s: ran 2.")
    assert len(result.steps) == 1  # the interrupted model call left no step
    assert result.usage.duration_s < 10  # the 60 s model call was not waited for
    events = [e async for e in handle.fetch_history_events()]
    cancelled = [e for e in events if e.HasField("activity_task_cancel_requested_event_attributes")]
    assert len(cancelled) == 1


async def test_pause_mode_waits_for_extend_budget(worker: RunningWorker) -> None:
    handle = await worker.start(
        {
            "prompt": "p",
            "script": FOUR_STEPS,
            "budget": {"max_tool_calls": 1, "on_exceeded": "pause"},
        }
    )

    async def budget_paused() -> bool:
        return (await handle.query(AgentWorkflow.status)).state == "budget_paused"

    await eventually(budget_paused)
    status = await handle.query(AgentWorkflow.status)
    assert status.reason == "max_tool_calls: made 1 of 1 tool calls"
    assert status.step == 1

    new = await handle.execute_update(
        AgentWorkflow.extend_budget, BudgetExtension(max_tool_calls=10)
    )
    assert new.max_tool_calls == 10
    assert new.on_exceeded == "pause"
    result = await handle.result()
    assert result.status == "completed"
    assert result.usage.tool_calls == 3
    assert result.reason is None
    # Ended, its status comes from the history: with the budget as extended, not 3/1.
    api = OnwardClient(worker.client, task_queue=worker.task_queue)
    status, source = await api.status_and_source(handle.id)
    assert source == "history"
    assert (status.budget.max_tool_calls, status.usage.tool_calls) == (10, 3)


async def test_extend_budget_on_a_running_agent(worker: RunningWorker) -> None:
    slow = [calc_turn("1+1", delay_s=1.5), calc_turn("2+2"), {"text": "done"}]
    handle = await worker.start({"prompt": "p", "script": slow, "budget": {"max_steps": 1}})
    new = await handle.execute_update(AgentWorkflow.extend_budget, BudgetExtension(max_steps=5))
    assert new.max_steps == 5
    result = await handle.result()
    assert result.status == "completed"
    assert len(result.steps) == 3


async def test_extend_budget_refuses_to_lower_a_limit(worker: RunningWorker) -> None:
    slow = [calc_turn("1+1", delay_s=30)]
    handle = await worker.start({"prompt": "p", "script": slow, "budget": {"max_steps": 5}})
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await handle.execute_update(AgentWorkflow.extend_budget, BudgetExtension(max_steps=2))
    assert "max_steps can only be raised (it is 5, got 2)" in str(caught.value.cause)
    await handle.terminate("test done")


async def test_finish_mode_asks_for_a_final_answer_without_tools(worker: RunningWorker) -> None:
    script = [calc_turn("1+1"), calc_turn("2+2"), {"text": "Final: 2"}]
    handle = await worker.start(
        {"prompt": "p", "script": script, "budget": {"max_steps": 1, "on_exceeded": "finish"}}
    )
    result = await handle.result()
    assert result.status == "budget_exceeded"
    assert result.reason == "max_steps: 1 of 1 steps done"
    assert result.output  # a final answer from what it had
    assert len(result.steps) == 2
    assert result.steps[1].tool_calls == []  # tools were disabled for the last call
    sent = await model_inputs(handle)
    assert len(sent) == 2
    assert b"budget is exhausted" in sent[-1]
    assert b'"allow_tools":false' in sent[-1]


async def test_a_call_refused_for_a_deadline_since_extended_is_called_again(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    """The model call waits for a worker past the run's first deadline, moved meanwhile.

    The worker that picks it up refuses it for the deadline it was given; the run,
    whose deadline is later now, calls again and goes on.
    """
    async with running_worker(
        client, tmp_path, search_attribute_names, no_remote_activities=True
    ) as runs_only:  # runs the workflow; no worker takes its calls yet
        handle = await runs_only.start(
            {"prompt": "p", "script": [{"text": "done"}], "budget": {"max_duration_s": 2}}
        )
        started = time.monotonic()

        async def call_waits() -> bool:
            pending = (await handle.describe()).raw_description.pending_activities
            return bool(pending)

        await eventually(call_waits)
        await handle.execute_update(AgentWorkflow.extend_budget, BudgetExtension(max_duration_s=60))

        async def first_deadline_passed() -> bool:
            return time.monotonic() - started > 2.5

        await eventually(first_deadline_passed, interval_s=0.1)
    # The same queue, now with a worker that takes calls too.
    settings = WorkerSettings(task_queue=runs_only.task_queue, workspace=tmp_path)
    async with build_worker(client, settings, search_attribute_names=search_attribute_names):
        result = await handle.result()

    assert result.status == "completed", result.reason
    assert result.output == "done"
    failures = [
        event.activity_task_failed_event_attributes.failure
        async for event in handle.fetch_history_events()
        if event.HasField("activity_task_failed_event_attributes")
    ]
    assert [f.application_failure_info.type for f in failures] == [DEADLINE_PASSED]
    # Read from its history (as without a worker), the refused call left no step.
    history = await read_history(handle)
    assert [(r.step, r.text, r.error) for r in history.step_log] == [(1, "done", None)]
    assert history.in_flight == []


class AheadOfTheRun:
    """Refuses every call for its deadline, as a worker whose clock runs ahead would."""

    def __init__(self) -> None:
        self.calls = 0

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        raise ApplicationError(
            "model call not started: the run's deadline passed 0.0 s before",
            type=DEADLINE_PASSED,
            non_retryable=True,
        )


async def test_a_call_refused_by_a_clock_ahead_of_the_runs_is_not_started_again(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    # The deadline did not move: the run waits out what its own clock says is left.
    ahead = AheadOfTheRun()
    providers = {"scripted": ScriptedModel(), "ahead": ahead}
    async with running_worker(client, tmp_path, search_attribute_names, providers=providers) as w:
        result = await w.run({"prompt": "p", "model": "ahead:m", "budget": {"max_duration_s": 1}})
    assert result.status == "budget_exceeded", result.reason
    assert result.reason is not None and result.reason.startswith("max_duration_s: ran 1.")
    assert ahead.calls == 1  # not once per workflow task until the run's clock caught up
