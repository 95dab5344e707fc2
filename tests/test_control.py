"""Pause, resume, cancel (signal and native), steer, and queries while the worker is busy."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from temporalio.client import (
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import CancelledError

from conftest import RunningWorker, activity_running, eventually, model_inputs
from onward.contracts import CancelRequest, SteerRequest
from onward.starter.render import status_lines
from onward.workflows import AgentWorkflow


def slow_calc(expression: str, delay_s: float) -> dict[str, Any]:
    return {
        "text": f"computing {expression}",
        "tool_calls": [{"name": "calculator", "arguments": {"expression": expression}}],
        "delay_s": delay_s,
    }


async def test_pause_stops_progress_until_resume(worker: RunningWorker) -> None:
    script = [slow_calc(f"{i}+{i}", 0.3) for i in range(1, 6)] + [{"text": "done"}]
    handle = await worker.start({"prompt": "p", "script": script})

    async def has_steps() -> bool:
        return (await handle.query(AgentWorkflow.status)).step >= 1

    await eventually(has_steps)
    await handle.signal(AgentWorkflow.pause)

    async def paused() -> bool:
        return (await handle.query(AgentWorkflow.status)).state == "paused"

    await eventually(paused)
    held = (await handle.query(AgentWorkflow.status)).step
    # No progress while paused, across seconds (the model turns take 0.3 s each).
    for _ in range(6):
        await asyncio.sleep(0.5)
        status = await handle.query(AgentWorkflow.status)
        assert (status.state, status.step) == ("paused", held)

    await handle.signal(AgentWorkflow.resume)
    result = await handle.result()
    assert result.status == "completed"
    assert len(result.steps) == 6


async def test_a_pause_asked_for_mid_call_shows_until_the_call_ends(
    worker: RunningWorker,
) -> None:
    # A model call is not interrupted by a pause: the state stays running until it
    # ends, and status says the pause is coming (a real call may take minutes).
    handle = await worker.start({"prompt": "p", "script": [slow_calc("1+1", 3), {"text": "4"}]})
    await eventually(lambda: activity_running(handle, "call_model"))
    await handle.signal(AgentWorkflow.pause)

    async def pausing() -> bool:
        status = await handle.query(AgentWorkflow.status)
        return status.state == "running" and status.pausing

    await eventually(pausing)
    assert (
        "(pausing: once the calls in flight end)"
        in status_lines(handle.id, await handle.query(AgentWorkflow.status))[1]
    )

    async def paused() -> bool:
        return (await handle.query(AgentWorkflow.status)).state == "paused"

    await eventually(paused, timeout_s=20)
    status = await handle.query(AgentWorkflow.status)
    assert not status.pausing and "pausing" not in status.model_dump_json()
    await handle.signal(AgentWorkflow.resume)
    assert (await handle.result()).status == "completed"


async def test_cancel_signal_ends_with_reason_and_partial_results(worker: RunningWorker) -> None:
    script = [slow_calc("1+1", 0), slow_calc("2+2", 60)]
    handle = await worker.start({"prompt": "p", "script": script})

    async def first_step_done() -> bool:
        return (await handle.query(AgentWorkflow.status)).step == 1

    await eventually(first_step_done)
    await handle.signal(AgentWorkflow.cancel, CancelRequest(reason="user changed their mind"))
    result = await asyncio.wait_for(handle.result(), timeout=20)  # not the 60 s model call
    assert result.status == "cancelled"
    assert result.reason == "user changed their mind"
    assert len(result.steps) == 1
    assert result.steps[0].tool_calls[0].result == "2"


async def test_native_cancel_cancels_in_flight_calls(worker: RunningWorker) -> None:
    script = [slow_calc("1+1", 0), slow_calc("2+2", 60)]
    handle = await worker.start({"prompt": "p", "script": script})

    async def second_model_call_running() -> bool:
        status = await handle.query(AgentWorkflow.status)
        return status.step == 1 and await activity_running(handle, "call_model")

    await eventually(second_model_call_running)
    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as caught:
        await asyncio.wait_for(handle.result(), timeout=20)
    assert isinstance(caught.value.cause, CancelledError)
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED

    events = [e async for e in handle.fetch_history_events()]
    assert any(e.HasField("activity_task_cancel_requested_event_attributes") for e in events)
    status = await handle.query(AgentWorkflow.status)
    assert status.state == "cancelled"
    steps = await handle.query(AgentWorkflow.steps)
    assert [s.tool_calls[0].result for s in steps] == ["2"]
    partial = await handle.query(AgentWorkflow.result)
    assert partial.status == "cancelled" and len(partial.steps) == 1


async def test_steer_adds_a_user_message_before_the_next_model_call(
    worker: RunningWorker,
) -> None:
    script = [slow_calc("1+1", 1.0), {"text": "ok"}]
    handle = await worker.start({"prompt": "p", "script": script})
    await eventually(lambda: activity_running(handle, "call_model"))
    await handle.signal(AgentWorkflow.steer, SteerRequest(message="please use metric units"))
    result = await handle.result()
    assert result.status == "completed"
    sent = await model_inputs(handle)
    assert len(sent) == 2
    assert b"please use metric units" not in sent[0]
    assert b"please use metric units" in sent[1]


async def test_status_query_answers_while_the_worker_is_busy(worker: RunningWorker) -> None:
    script = [slow_calc("6*7", 5.0), {"text": "42"}]
    handle = await worker.start(
        {"prompt": "p", "script": script, "budget": {"max_tokens": 5000, "max_tool_calls": 3}}
    )

    await eventually(lambda: activity_running(handle, "call_model"))
    status = await asyncio.wait_for(handle.query(AgentWorkflow.status), timeout=2)
    assert status.state == "running"
    assert status.step == 0
    assert status.budget.max_tokens == 5000
    assert status.usage.tool_calls == 0
    assert await handle.query(AgentWorkflow.steps) == []
    await handle.signal(AgentWorkflow.cancel)
    assert (await handle.result()).status == "cancelled"


async def test_native_cancel_marks_running_tool_calls_interrupted(worker: RunningWorker) -> None:
    script = [{"text": "waiting", "tool_calls": [{"name": "wait", "arguments": {"seconds": 60}}]}]
    handle = await worker.start({"prompt": "p", "script": script, "tools": ["wait"]})

    async def waiting() -> bool:
        return any(
            [
                e
                async for e in handle.fetch_history_events()
                if e.HasField("timer_started_event_attributes")
            ]
        )

    await eventually(waiting)
    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await asyncio.wait_for(handle.result(), timeout=20)
    steps = await handle.query(AgentWorkflow.steps)
    call = steps[0].tool_calls[0]
    assert call.name == "wait"
    assert call.result is None
    assert call.error == "interrupted: cancelled through Temporal (workflow cancel)"


async def test_an_update_sent_without_input_is_refused_saying_what_it_takes(
    worker: RunningWorker,
) -> None:
    # `temporal workflow update execute --name extend_budget` with no --input: the SDK
    # refused it with "_validate_extension() missing 1 required positional argument".
    handle = await worker.start({"prompt": "p", "script": [slow_calc("1+1", 60)]})
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update("extend_budget")
    assert 'extend_budget takes one JSON object, e.g. {"max_tokens": 5000}' in str(
        refused.value.cause
    )
    session = await worker.client.start_workflow(
        "SessionWorkflow",
        {"script": [{"text": "hi"}]},
        id=f"{handle.id}-session",
        task_queue=worker.task_queue,
    )
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await session.execute_update("send_message")
    assert 'send_message takes one JSON object, e.g. {"message": "Hello"}' in str(
        refused.value.cause
    )
    await handle.signal(AgentWorkflow.cancel, CancelRequest(reason="done"))
    await session.cancel()


async def test_a_call_that_ended_beside_a_running_one_is_not_shown_running(
    worker: RunningWorker,
) -> None:
    # A turn's fast call kept status None until its slowest sibling ended, so
    # `onward status` printed it on a `now:` line as running, its time growing.
    turn = {
        "text": "both at once",
        "tool_calls": [
            {"name": "wait", "arguments": {"seconds": 30}},
            {"name": "calculator", "arguments": {"expression": "1+1"}},
        ],
    }
    script = [turn, {"text": "done"}]
    handle = await worker.start({"prompt": "p", "tools": ["wait", "calculator"], "script": script})

    async def calculated() -> bool:
        current = (await handle.query(AgentWorkflow.status)).current_step
        return current is not None and any(c.duration_ms is not None for c in current.tool_calls)

    await eventually(calculated)
    status = await handle.query(AgentWorkflow.status)
    assert status.current_step is not None
    calls = {call.name: call for call in status.current_step.tool_calls}
    assert (calls["calculator"].status, calls["calculator"].result) == ("ok", "2")
    assert calls["wait"].status is None
    now = [line for line in status_lines(handle.id, status) if line.startswith("now:")]
    assert len(now) == 1 and now[0].startswith("now:    step 1 · wait(30)")
    await handle.signal(AgentWorkflow.cancel, CancelRequest(reason="enough"))
    await handle.result()
