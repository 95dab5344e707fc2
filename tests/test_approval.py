"""Human approval of tool calls: approve, reject with a note, timeouts by policy, restarts."""

from __future__ import annotations

import asyncio
import functools
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)

from conftest import (
    RunningWorker,
    eventually,
    model_inputs,
    run_onward,
    running_worker,
    temporal_cli,
)
from onward.contracts import (
    AgentInput,
    AgentResult,
    AgentStatus,
    ApprovalDecision,
    ApprovalsDecided,
    Budget,
    PendingApproval,
    RunUsage,
)
from onward.starter.render import state_change, status_lines
from onward.worker import WorkerSettings, build_worker
from onward.workflows import AgentWorkflow
from onward.workflows.progress import progress_card

Handle = WorkflowHandle[AgentWorkflow, AgentResult]


def write(path: str, content: str) -> dict[str, Any]:
    return {
        "text": f"writing {path}",
        "tool_calls": [{"name": "write_file", "arguments": {"path": path, "content": content}}],
    }


def approval_run(script: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "prompt": "write a report",
        "tools": ["write_file", "calculator"],
        "approve_tools": ["write_file"],
        "script": script,
        **extra,
    }


async def awaiting(handle: Handle, count: int = 1) -> AgentStatus:
    """The status once ``count`` calls wait for approval."""
    found: list[AgentStatus] = []

    async def check() -> bool:
        status = await handle.query(AgentWorkflow.status)
        found[:] = [status]
        return status.state == "awaiting_approval" and len(status.pending_approvals) == count

    await eventually(check)
    return found[0]


async def tool_activities(handle: Handle) -> int:
    """How many tool activities the run has scheduled (a call that ran)."""
    return len(
        [
            event
            async for event in handle.fetch_history_events()
            if event.HasField("activity_task_scheduled_event_attributes")
            and event.activity_task_scheduled_event_attributes.activity_type.name == "execute_tool"
        ]
    )


async def test_an_approved_call_runs_only_after_approval(worker: RunningWorker) -> None:
    handle = await worker.start(approval_run([write("report.md", "# Q3\n"), {"text": "done"}]))
    status = await awaiting(handle)
    (pending,) = status.pending_approvals
    assert (pending.name, pending.arguments) == (
        "write_file",
        {"path": "report.md", "content": "# Q3\n"},
    )
    assert pending.call_id and pending.step == 1
    details = await handle.query("__temporal_workflow_metadata")
    assert "awaiting approval" in details.current_details
    assert pending.call_id in progress_card(status)
    assert await tool_activities(handle) == 0
    assert not list(worker.workspace.rglob("report.md"))

    decided = await handle.execute_update(
        AgentWorkflow.approve, ApprovalDecision(note="looks fine")
    )
    assert decided.call_ids == [pending.call_id] and decided.decision == "approved"
    result = await handle.result()
    assert result.status == "completed"
    (call,) = result.steps[0].tool_calls
    assert call.status == "ok"
    assert call.approval is not None
    assert (call.approval.decision, call.approval.by, call.approval.note) == (
        "approved",
        "person",
        "looks fine",
    )
    (written,) = worker.workspace.rglob("report.md")
    assert written.read_text() == "# Q3\n"
    after = await handle.query(AgentWorkflow.status)
    assert after.pending_approvals == []


async def test_the_temporal_cli_approves_without_input(worker: RunningWorker, address: str) -> None:
    # The README's payload is optional: no --input decides every pending call, as `{}` does.
    handle = await worker.start(approval_run([write("report.md", "# Q3\n"), {"text": "done"}]))
    (pending,) = (await awaiting(handle)).pending_approvals
    process = await asyncio.create_subprocess_exec(
        temporal_cli(),
        *("workflow", "update", "execute", "--name", "approve", "-o", "json"),
        *("--workflow-id", handle.id, "--address", address),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    assert pending.call_id in out.decode()
    result = await handle.result()
    assert result.status == "completed" and result.steps[0].tool_calls[0].status == "ok"


async def test_a_rejection_note_goes_back_to_the_model(worker: RunningWorker) -> None:
    script: list[dict[str, Any]] = [
        {
            "text": "two calls",
            "tool_calls": [
                {"name": "write_file", "arguments": {"path": "a.txt", "content": "a"}},
                {"name": "write_file", "arguments": {"path": "b.txt", "content": "b"}},
            ],
        },
        {"text": "understood"},
    ]
    handle = await worker.start(approval_run(script))
    status = await awaiting(handle, count=2)
    first, second = (p.call_id for p in status.pending_approvals)

    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await handle.execute_update(AgentWorkflow.reject, ApprovalDecision(call_id="nope"))
    assert "'nope' is not waiting for approval" in str(caught.value.cause)
    await handle.execute_update(
        AgentWorkflow.reject, ApprovalDecision(call_id=first, note="not a.txt, use the wiki")
    )
    status = await awaiting(handle, count=1)
    assert status.pending_approvals[0].call_id == second
    await handle.execute_update(AgentWorkflow.approve, ApprovalDecision(call_id=second))

    result = await handle.result()
    rejected, approved = result.steps[0].tool_calls
    assert (rejected.status, rejected.error) == ("refused", "rejected: not a.txt, use the wiki")
    assert rejected.approval is not None and rejected.approval.decision == "rejected"
    assert approved.status == "ok"
    assert not list(worker.workspace.rglob("a.txt"))
    assert list(worker.workspace.rglob("b.txt"))
    last_request = (await model_inputs(handle))[-1]
    assert b"rejected: not a.txt, use the wiki" in last_request
    assert await tool_activities(handle) == 1


@pytest.mark.parametrize(("policy", "ran"), [("reject", False), ("approve", True)])
async def test_approval_timeout_decides_by_policy(
    worker: RunningWorker, policy: str, ran: bool
) -> None:
    handle = await worker.start(
        approval_run(
            [write("late.txt", "x"), {"text": "done"}],
            approval_timeout_s=1,
            on_approval_timeout=policy,
        )
    )
    status = await awaiting(handle)
    assert status.pending_approvals[0].deadline is not None
    result = await handle.result()
    (call,) = result.steps[0].tool_calls
    assert call.approval is not None
    assert (call.approval.decision, call.approval.by) == (
        "approved" if ran else "rejected",
        "timeout",
    )
    assert call.status == ("ok" if ran else "refused")
    assert bool(list(worker.workspace.rglob("late.txt"))) is ran


async def test_nothing_runs_before_approval_across_a_worker_restart(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    settings = WorkerSettings(task_queue=f"tq-{uuid.uuid4().hex[:12]}", workspace=tmp_path)
    handle = await waiting_write(client, settings, search_attribute_names, "once.txt")
    # The first worker is gone; a new one replays the run and waits as well.
    async with build_worker(client, settings, search_attribute_names=search_attribute_names):
        status = await awaiting(handle)
        assert await tool_activities(handle) == 0
        assert not list(tmp_path.rglob("once.txt"))
        await handle.execute_update(
            AgentWorkflow.approve, ApprovalDecision(call_id=status.pending_approvals[0].call_id)
        )
        result = await handle.result()
    assert result.status == "completed"
    assert await tool_activities(handle) == 1
    (written,) = tmp_path.rglob("once.txt")
    assert written.read_text() == "v"


async def test_approve_tools_must_name_the_runs_tools(worker: RunningWorker) -> None:
    handle = await worker.start(approval_run([{"text": "x"}], approve_tools=["writefile"]))
    with pytest.raises(WorkflowFailureError) as caught:
        await handle.result()
    assert "approve_tools: 'writefile' not among the run's tools" in str(caught.value.cause)


async def test_a_cancel_while_awaiting_approval_ends_the_run(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    async with running_worker(client, tmp_path, search_attribute_names) as w:
        handle = await w.start(approval_run([write("never.txt", "x"), {"text": "done"}]))
        await awaiting(handle)
        await handle.signal(AgentWorkflow.cancel)
        result = await handle.result()
    assert result.status == "cancelled"
    (call,) = result.steps[0].tool_calls
    assert call.status == "interrupted"
    assert not list(tmp_path.rglob("never.txt"))


async def test_a_native_cancel_while_awaiting_approval_keeps_the_finished_calls(
    worker: RunningWorker,
) -> None:
    turn = {
        "text": "add, then write",
        "tool_calls": [
            {"name": "calculator", "arguments": {"expression": "2+2"}},
            {"name": "write_file", "arguments": {"path": "never.txt", "content": "x"}},
        ],
    }
    handle = await worker.start(approval_run([turn, {"text": "done"}]))
    await awaiting(handle)
    await eventually(lambda: tool_activities_done(handle, 1))
    await handle.cancel()  # `temporal workflow cancel`
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    (step,) = await handle.query(AgentWorkflow.steps)
    added, write = step.tool_calls
    assert (added.status, added.result) == ("ok", "4")
    assert (write.name, write.status) == ("write_file", "interrupted")
    assert not list(worker.workspace.rglob("never.txt"))


async def tool_activities_done(handle: Handle, count: int) -> bool:
    """Whether ``count`` tool calls have completed (local tools: their markers)."""
    kinds = ("marker_recorded_event_attributes", "activity_task_completed_event_attributes")
    done = [e async for e in handle.fetch_history_events() if e.WhichOneof("attributes") in kinds]
    return len(done) >= count + 1  # and the model call's


async def test_onward_approve_and_reject(worker: RunningWorker, address: str) -> None:
    script: list[dict[str, Any]] = [
        {
            "tool_calls": [
                {"name": "write_file", "arguments": {"path": "yes.txt", "content": "y"}},
                {"name": "write_file", "arguments": {"path": "no.txt", "content": "n"}},
            ]
        },
        {"text": "done"},
    ]
    env = {"TEMPORAL_ADDRESS": address, "ONWARD_TASK_QUEUE": worker.task_queue}
    script_file = worker.workspace.parent / "script.json"
    script_file.write_text(json.dumps(script))
    workflow_id = f"cli-approve-{uuid.uuid4().hex[:8]}"
    started = await run_onward(
        "start", "write two files", "--script", str(script_file), "--tool", "write_file",
        "--approve-tool", "write_file", "--id", workflow_id, env=env,
    )  # fmt: skip
    assert started.code == 0, started.stderr
    handle: Handle = worker.client.get_workflow_handle_for(AgentWorkflow.run, workflow_id)
    status = await awaiting(handle, count=2)
    first, second = (p.call_id for p in status.pending_approvals)
    shown = await run_onward("status", workflow_id, env=env)
    assert f"await:  {first}  write_file(path=yes.txt, content=y)" in shown.stdout

    approved = await run_onward("approve", handle.id, "--call", first, "--json", env=env)
    assert approved.code == 0, approved.stderr
    assert approved.json() == {
        "workflow_id": handle.id,
        "decision": "approved",
        "call_ids": [first],
        "run_id": handle.id,  # the run whose call it was (a sub-agent's, through its parent)
    }
    rejected = await run_onward("reject", handle.id, "--note", "keep it to one file", env=env)
    assert rejected.code == 0, rejected.stderr
    assert rejected.stdout.strip() == f"rejected: {second} ({handle.id})"
    result = await handle.result()
    assert [c.status for c in result.steps[0].tool_calls] == ["ok", "refused"]
    late = await run_onward("approve", handle.id, env=env)
    assert late.code == 1
    assert "has already ended" in late.stderr or "no tool call is waiting" in late.stderr


async def test_a_call_decided_and_run_is_refused_as_decided(worker: RunningWorker) -> None:
    # The README's promise: a second decision of a decided call is refused saying so,
    # also once the call has read the first (here, while the call beside it still waits).
    script: list[dict[str, Any]] = [
        {"tool_calls": [{"name": "write_file", "arguments": {"path": p, "content": p}}
                        for p in ("a.txt", "b.txt")]},
        {"text": "done"},
    ]  # fmt: skip
    handle = await worker.start(approval_run(script))
    status = await awaiting(handle, count=2)
    first, second = (p.call_id for p in status.pending_approvals)
    await handle.execute_update(AgentWorkflow.approve, ApprovalDecision(call_id=first))
    await awaiting(handle, count=1)  # the first call has read its decision (and run)
    for update in (AgentWorkflow.reject, AgentWorkflow.approve):
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(update, ApprovalDecision(call_id=first, note="again"))
        assert str(refused.value.cause).endswith(f": {first} is already approved")
    await handle.execute_update(AgentWorkflow.reject, ApprovalDecision(call_id=second))
    result = await handle.result()
    assert [c.status for c in result.steps[0].tool_calls] == ["ok", "refused"]


def test_status_and_follow_lines_show_pending_approvals() -> None:
    pending = PendingApproval(
        call_id="call_1_1",
        name="write_file",
        arguments={"path": "a.md"},
        step=1,
        requested_at=datetime.now(UTC),
    )
    status = AgentStatus(
        state="awaiting_approval",
        step=0,
        usage=RunUsage(),
        budget=Budget(),
        pending_approvals=[pending],
    )
    assert "await:  call_1_1  write_file(a.md)" in status_lines("r1", status)
    line = state_change("r1", "awaiting_approval", None)
    assert line is not None and "onward approve r1" in line


async def test_a_call_approved_while_paused_shows_the_run_paused(worker: RunningWorker) -> None:
    # Approval and pause were built apart: the approved call waits for resume, so
    # the run must read paused, not running, while nothing runs.
    handle = await worker.start(approval_run([write("later.md", "x"), {"text": "done"}]))
    await awaiting(handle)
    await handle.signal(AgentWorkflow.pause)
    await handle.execute_update(AgentWorkflow.approve, ApprovalDecision())

    async def decided() -> bool:
        return (await handle.query(AgentWorkflow.status)).pending_approvals == []

    await eventually(decided)
    assert (await handle.query(AgentWorkflow.status)).state == "paused"
    assert await tool_activities(handle) == 0
    await handle.signal(AgentWorkflow.resume)
    assert (await handle.result()).status == "completed"
    assert await tool_activities(handle) == 1


async def waiting_write(
    client: Client, settings: WorkerSettings, names: list[str], path: str
) -> Handle:
    """A run whose write of ``path`` waits for approval, left with no worker running."""
    agent = approval_run([write(path, "v"), {"text": "done"}])
    async with build_worker(client, settings, search_attribute_names=names):
        handle: Handle = await client.start_workflow(
            AgentWorkflow.run,
            AgentInput.model_validate(agent),
            id=f"test-{uuid.uuid4().hex[:12]}",
            task_queue=settings.task_queue,
        )
        await awaiting(handle)
    return handle


async def in_one_task(
    client: Client,
    settings: WorkerSettings,
    names: list[str],
    sends: Sequence[Callable[[], Awaitable[Any]]],
) -> list[Any]:
    """Send each of ``sends`` while no worker runs, in order: the next worker gets them
    all in one workflow task (each update's validator runs before any handler).
    Returns each one's answer or exception."""
    pending = []
    for send in sends:
        pending.append(asyncio.ensure_future(send()))
        await asyncio.sleep(0.5)  # the server has it before the next is sent
    async with build_worker(client, settings, search_attribute_names=names):
        return await asyncio.gather(*pending, return_exceptions=True)


@pytest.mark.parametrize("first", ["approve", "reject"])
async def test_of_an_approve_and_a_reject_in_one_task_the_first_wins(
    client: Client, tmp_path: Path, search_attribute_names: list[str], first: str
) -> None:
    settings = WorkerSettings(task_queue=f"tq-{uuid.uuid4().hex[:12]}", workspace=tmp_path)
    handle = await waiting_write(client, settings, search_attribute_names, "race.txt")
    updates = {"approve": AgentWorkflow.approve, "reject": AgentWorkflow.reject}
    order = [updates.pop(first), *updates.values()]
    decision = ApprovalDecision(call_id="call_1_1", note="no")
    sends = [functools.partial(handle.execute_update, update, decision) for update in order]
    answers = await in_one_task(client, settings, search_attribute_names, sends)
    async with build_worker(client, settings, search_attribute_names=search_attribute_names):
        result = await handle.result()
    # Sent in this order; a loaded server may still take them the other way round:
    # whichever it took first wins, and the other is told so.
    won, lost = answers if isinstance(answers[0], ApprovalsDecided) else answers[::-1]
    assert isinstance(won, ApprovalsDecided) and won.call_ids == ["call_1_1"]
    assert isinstance(lost, WorkflowUpdateFailedError)
    assert f"call_1_1 is already {won.decision}" in str(lost.cause)
    (call,) = result.steps[0].tool_calls
    assert call.approval is not None and call.approval.decision == won.decision
    approved = won.decision == "approved"
    assert call.status == ("ok" if approved else "refused")
    assert bool(list(tmp_path.rglob("race.txt"))) is approved


@pytest.mark.parametrize("cancel_first", [True, False])
async def test_an_approval_with_the_cancel_in_one_task_never_runs_the_call(
    client: Client, tmp_path: Path, search_attribute_names: list[str], cancel_first: bool
) -> None:
    settings = WorkerSettings(task_queue=f"tq-{uuid.uuid4().hex[:12]}", workspace=tmp_path)
    handle = await waiting_write(client, settings, search_attribute_names, "never.txt")

    def cancel() -> Awaitable[None]:
        return handle.signal(AgentWorkflow.cancel)

    def approve() -> Awaitable[ApprovalsDecided]:
        return handle.execute_update(AgentWorkflow.approve, ApprovalDecision())

    sends = [cancel, approve] if cancel_first else [approve, cancel]
    answers = await in_one_task(client, settings, search_attribute_names, sends)
    async with build_worker(client, settings, search_attribute_names=search_attribute_names):
        result = await handle.result()
    approved = answers[sends.index(approve)]
    if cancel_first:
        assert isinstance(approved, WorkflowUpdateFailedError)
        assert "the run is being cancelled" in str(approved.cause)
    assert result.status == "cancelled"
    (call,) = result.steps[0].tool_calls
    assert call.status == "interrupted"
    assert await tool_activities(handle) == 0
    assert not list(tmp_path.rglob("never.txt"))
