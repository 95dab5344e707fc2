"""Fuzzed input, signals and updates against a real worker: every run ends, nothing wedges.

A workflow task that fails is retried by Temporal forever: a run started with
an input its code did not expect (no input at all, ``null``) never ends. Here
hypothesis throws arbitrary JSON at the workflow's every entry point and checks
that each run ends (or each signal or update is handled or refused) within a
bound, with no workflow task failure in its history.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from conftest import RunningWorker, eventually, temporal_cli
from onward.contracts import AGENT_WORKFLOW, SESSION_WORKFLOW
from onward.errors import INVALID_INPUT

ENDS_WITHIN_S = 20.0
"""Longest a fuzzed run may take to end (a valid one runs the scripted model)."""
FUZZ = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**6), max_value=10**6)
    | st.floats(allow_nan=False, allow_infinity=False, width=32)
    | st.text(max_size=12)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
"""Any JSON value."""
NEAR_INPUT = st.fixed_dictionaries(
    {},
    optional={
        "prompt": st.text(max_size=12) | JSON,
        "model": st.sampled_from(["scripted", "gpt-4o-mini", "openai:", "x:y", ""]) | JSON,
        "tools": st.lists(st.sampled_from(["calculator", "wait", "nope"]), max_size=2) | JSON,
        "budget": st.dictionaries(
            st.sampled_from(["max_tokens", "max_steps", "max_tool_calls", "on_exceeded"]),
            SCALARS,
            max_size=2,
        ),
        "script": st.lists(st.fixed_dictionaries({"text": st.text(max_size=8)}), max_size=2) | JSON,
        "system": JSON,
    },
)
"""Inputs close to valid ones, so the fuzz reaches past the first validation error."""
WAITING = {
    "prompt": "wait while being fuzzed",
    "tools": ["wait"],
    "script": [{"tool_calls": [{"name": "wait", "arguments": {"seconds": 3600}}]}],
}
"""A run that sits in a long durable timer while signals and updates arrive."""


async def task_failures(handle: WorkflowHandle[Any, Any]) -> list[str]:
    """The messages of the workflow task failures in a run's history.

    ``UnhandledCommand`` is left out: the server refuses a task's completion when
    a signal arrived while it ran, and the worker redoes the task with the
    signal; that is Temporal's normal race (seen under load), not a failure.
    """
    return [
        event.workflow_task_failed_event_attributes.failure.message
        async for event in handle.fetch_history_events()
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
        and event.workflow_task_failed_event_attributes.cause
        != WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND
    ]


async def settled(handle: WorkflowHandle[Any, Any]) -> bool:
    """Whether the run has no workflow task waiting or running (its last event says so)."""
    events = [event async for event in handle.fetch_history_events()]
    return events[-1].event_type not in (
        EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
        EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
    )


async def start_raw(client: Client, task_queue: str, *args: Any) -> WorkflowHandle[Any, Any]:
    """Start AgentWorkflow with raw JSON arguments, as any client or CLI could."""
    return await client.start_workflow(
        AGENT_WORKFLOW,
        args=list(args),
        id=f"fuzz-{uuid.uuid4().hex[:12]}",
        task_queue=task_queue,
    )


async def ends(handle: WorkflowHandle[Any, Any]) -> BaseException | None:
    """Wait for the run to close; return its failure's cause, or None when it completed."""
    try:
        await asyncio.wait_for(handle.result(), ENDS_WITHIN_S)
    except WorkflowFailureError as err:
        return err.cause
    return None


@pytest.mark.parametrize("args", [(), (None,)], ids=["no input", "null"])
async def test_a_run_without_input_fails_at_once_naming_input(
    worker: RunningWorker, args: tuple[Any, ...]
) -> None:
    handle = await start_raw(worker.client, worker.task_queue, *args)
    cause = await ends(handle)
    assert isinstance(cause, ApplicationError) and cause.type == INVALID_INPUT
    assert cause.message.startswith("input: AgentWorkflow needs one JSON object as input")
    assert cause.non_retryable
    assert await task_failures(handle) == []


@pytest.mark.parametrize("workflow_type", [AGENT_WORKFLOW, SESSION_WORKFLOW])
async def test_a_start_with_two_inputs_fails_at_once_naming_input(
    worker: RunningWorker, workflow_type: str
) -> None:
    # As `temporal workflow start --input '{...}' --input '{...}'` starts it.
    handle = await worker.client.start_workflow(
        workflow_type,
        args=[{"prompt": "a", "model": "scripted"}, {"prompt": "b"}],
        id=f"fuzz-{uuid.uuid4().hex[:12]}",
        task_queue=worker.task_queue,
    )
    cause = await ends(handle)
    assert isinstance(cause, ApplicationError) and cause.type == INVALID_INPUT
    assert cause.message.startswith(f"input: {workflow_type} takes one JSON object as input")
    assert cause.non_retryable
    assert await task_failures(handle) == []


async def test_temporal_cli_start_without_input_fails_at_once(
    worker: RunningWorker, address: str
) -> None:
    workflow_id = f"fuzz-cli-{uuid.uuid4().hex[:8]}"
    process = await asyncio.create_subprocess_exec(
        temporal_cli(),
        "workflow",
        "start",
        "--type",
        AGENT_WORKFLOW,
        "--task-queue",
        worker.task_queue,
        "--workflow-id",
        workflow_id,
        "--address",
        address,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    handle = worker.client.get_workflow_handle(workflow_id)
    cause = await ends(handle)
    assert isinstance(cause, ApplicationError) and cause.type == INVALID_INPUT
    assert await task_failures(handle) == []


@FUZZ
@given(value=JSON | NEAR_INPUT)
async def test_any_json_input_ends_the_run(worker: RunningWorker, value: Any) -> None:
    handle = await start_raw(worker.client, worker.task_queue, value)
    await ends(handle)  # completed, or failed as a run: either way it ended
    assert await task_failures(handle) == []


EXTENSIONS = st.dictionaries(st.sampled_from(["max_steps", "max_tokens"]), SCALARS)
"""Payloads close to a valid BudgetExtension."""
SIGNALS = st.sampled_from(["pause", "resume", "cancel", "steer"])


@FUZZ
@given(name=SIGNALS, args=st.lists(JSON, max_size=2))
# Found by this test: more arguments than a handler takes wedged the run.
@example(name="steer", args=[{"message": "x"}, 2])
@example(name="pause", args=[None])
@example(name="steer", args=[])
async def test_any_signal_payload_is_handled_or_dropped(
    worker: RunningWorker, name: str, args: list[Any]
) -> None:
    handle = await start_raw(worker.client, worker.task_queue, WAITING)
    try:
        await handle.signal(name, args=args)
        await eventually(lambda: settled(handle), timeout_s=ENDS_WITHIN_S)
        assert await task_failures(handle) == []
    finally:
        await _terminate(handle)


@FUZZ
@given(
    args=st.lists(
        JSON | st.dictionaries(st.sampled_from(["max_steps", "max_tokens"]), SCALARS), max_size=2
    )
)
async def test_any_extend_budget_payload_is_answered(
    worker: RunningWorker, args: list[Any]
) -> None:
    handle = await start_raw(worker.client, worker.task_queue, WAITING)
    try:
        with contextlib.suppress(WorkflowUpdateFailedError):  # refused: that is an answer
            await asyncio.wait_for(handle.execute_update("extend_budget", args=args), ENDS_WITHIN_S)
        await eventually(lambda: settled(handle), timeout_s=ENDS_WITHIN_S)
        assert await task_failures(handle) == []
    finally:
        await _terminate(handle)


async def _terminate(handle: WorkflowHandle[Any, Any]) -> None:
    with contextlib.suppress(RPCError):  # it had ended already (a cancel signal)
        await handle.terminate("fuzz example done")
