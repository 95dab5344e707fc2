"""Multi-turn sessions: one SessionWorkflow per conversation, one AgentWorkflow per message.

A recording model answers every message and keeps what it was sent, so the
tests check that each message's run sees the whole conversation before it,
across the session's continue-as-new runs; replies come back through the
``send_message`` update.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from conftest import eventually, running_worker
from onward import sessions
from onward.client import OnwardClient
from onward.contracts import (
    AgentResult,
    Budget,
    Message,
    ModelRequest,
    ModelResponse,
    RunUsage,
    SessionInput,
    Usage,
)
from onward.errors import InvalidInput, RequestRejected, SessionClosed, named_problem
from onward.starter.render import status_lines
from onward.tuning import WORKFLOW_TASK_TIMEOUT
from onward.worker import WorkerSettings, build_worker
from onward.workflows import SessionWorkflow

SYSTEM = "You are a test."


class RecordingModel:
    """Answers ``reply to <message>`` and records the conversation of every call."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.requests: list[list[Message]] = []
        self.delay_s = delay_s

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(list(request.messages))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        last = request.messages[-1].content
        return ModelResponse(
            text=f"reply to {last}",
            usage=Usage(input_tokens=10, output_tokens=5),
            model=request.model,
        )


def expected_conversation(messages: list[str]) -> list[tuple[str, str]]:
    """The conversation the model must be sent for the last of ``messages``."""
    turns = [("system", SYSTEM)]
    for text in messages[:-1]:
        turns += [("user", text), ("assistant", f"reply to {text}")]
    return [*turns, ("user", messages[-1])]


async def runs_of(client: Client, session_id: str) -> list[WorkflowExecutionStatus | None]:
    return [
        execution.status
        async for execution in client.list_workflows(f"WorkflowId = '{session_id}'")
    ]


async def test_sixteen_messages_keep_the_conversation_across_continue_as_new(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    model = RecordingModel()
    async with running_worker(
        client,
        tmp_path / "workspace",
        search_attribute_names,
        providers={"scripted": model},
    ) as worker:
        onward = OnwardClient(client, task_queue=worker.task_queue)
        session_id = await onward.open_session(
            {"system": SYSTEM, "tools": [], "continue_as_new_after": 5}
        )
        sent: list[str] = []
        for number in range(1, 17):
            text = f"message {number}"
            sent.append(text)
            reply = await onward.send_message(session_id, text)
            assert reply.reply == f"reply to {text}"
            assert reply.number == number
            assert reply.status == "completed"
            assert reply.run_id == sessions.run_id(session_id, number)
            assert reply.usage.total_tokens == 15
            assert len(reply.steps) == 1
            # The model saw every earlier turn, in order, and then this message.
            seen = [(message.role, message.content) for message in model.requests[-1]]
            assert seen == expected_conversation(sent)

        status = await onward.session_status(session_id)
        assert status.state == "idle"
        assert status.turns == 16
        assert status.usage.total_tokens == 16 * 15
        assert status.usage.model_calls == 16
        history = await onward.session_history(session_id)
        assert [turn.message for turn in history] == sent
        assert [turn.reply for turn in history] == [f"reply to {text}" for text in sent]

        async def continued_twice() -> bool:
            runs = await runs_of(client, session_id)
            return runs.count(WorkflowExecutionStatus.CONTINUED_AS_NEW) >= 2

        await eventually(continued_twice)

        await onward.close_session(session_id)
        result = await onward.session_result(session_id)
        assert result.turns == 16
        assert result.usage.total_tokens == 16 * 15
        assert result.reason == "closed by signal"
        with pytest.raises(SessionClosed):
            await onward.send_message(session_id, "too late")


async def test_two_messages_sent_at_once_are_both_answered_in_order(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    model = RecordingModel(delay_s=0.3)
    async with running_worker(
        client, tmp_path / "workspace", search_attribute_names, providers={"scripted": model}
    ) as worker:
        onward = OnwardClient(client, task_queue=worker.task_queue)
        session_id = await onward.open_session({"system": SYSTEM, "tools": []})
        first, second = await asyncio.gather(
            onward.send_message(session_id, "first"), onward.send_message(session_id, "second")
        )
        assert {first.number, second.number} == {1, 2}
        assert first.reply == "reply to first"
        assert second.reply == "reply to second"
        # Answered one after the other: the later one saw the earlier one's turn.
        one, two = sorted([first, second], key=lambda reply: reply.number)
        earlier, later = ("first", "second") if one is first else ("second", "first")
        seen = [(message.role, message.content) for message in model.requests[1]]
        assert seen == expected_conversation([earlier, later])
        assert two.number == 2
        await onward.close_session(session_id)
        assert (await onward.session_result(session_id)).turns == 2


async def test_session_budget_covers_all_messages(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    async with running_worker(
        client,
        tmp_path / "workspace",
        search_attribute_names,
        providers={"scripted": RecordingModel()},
    ) as worker:
        onward = OnwardClient(client, task_queue=worker.task_queue)
        session_id = await onward.open_session(
            {"tools": [], "budget": {"max_tokens": 30}, "message_budget": {"max_steps": 5}}
        )
        assert (await onward.send_message(session_id, "one")).status == "completed"
        assert (await onward.send_message(session_id, "two")).status == "completed"
        third = await onward.send_message(session_id, "three")
        assert third.status == "budget_exceeded"
        # Said of the session's budget, not of the run's empty share ("used 0 of 0").
        assert third.reason is not None
        assert third.reason.startswith("the session's budget is used up: max_tokens: used ")
        assert third.reason.endswith(" of 30 tokens"), third.reason
        await onward.close_session(session_id)


async def test_idle_session_closes_after_its_timeout(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    async with running_worker(
        client,
        tmp_path / "workspace",
        search_attribute_names,
        providers={"scripted": RecordingModel()},
    ) as worker:
        onward = OnwardClient(client, task_queue=worker.task_queue)
        session_id = await onward.open_session({"tools": [], "idle_timeout_s": 1})
        result = await onward.session_result(session_id)
        assert result.turns == 0
        assert result.reason == "idle for 1 s"


async def test_invalid_session_input_and_message_name_the_field(client: Client) -> None:
    onward = OnwardClient(client)
    with pytest.raises(InvalidInput, match="prompt"):
        await onward.open_session({"prompt": "no prompt in a session"})
    with pytest.raises(InvalidInput, match="idle_timeout_s"):
        await onward.open_session({"idle_timeout_s": 0})
    # Past ten years a timer overflows the workflow's clock: rejected before it starts.
    with pytest.raises(InvalidInput, match="idle_timeout_s"):
        await onward.open_session({"idle_timeout_s": 1e300})
    with pytest.raises(InvalidInput, match="approval_timeout_s"):
        await onward.open_session({"approval_timeout_s": 1e300})
    with pytest.raises(InvalidInput, match="message"):
        await onward.send_message("any", "   ")


def test_message_budget_is_the_session_remainder_at_most_the_per_message_limit() -> None:
    used = RunUsage(total_tokens=70, tool_calls=1, steps=2, cost_usd=0.5, duration_s=10)
    budget = sessions.message_budget(
        Budget(max_tokens=100, max_cost_usd=1.0, max_duration_s=60),
        Budget(max_tokens=50, max_steps=3),
        used,
    )
    assert budget.max_tokens == 30
    assert budget.max_steps == 3
    assert budget.max_cost_usd == 0.5
    assert budget.max_duration_s == 50
    assert budget.max_tool_calls is None
    spent = sessions.message_budget(Budget(max_duration_s=5), None, used)
    assert spent.max_duration_s == pytest.approx(0.001)
    # on_exceeded: the message budget's when it names one, else the session's.
    session = Budget(on_exceeded="finish")
    assert sessions.message_budget(session, Budget(max_steps=2), used).on_exceeded == "finish"
    asked = Budget(on_exceeded="stop")
    assert sessions.message_budget(session, asked, used).on_exceeded == "stop"


def test_a_run_stopped_by_its_own_share_keeps_its_reason() -> None:
    stopped = AgentResult(
        status="budget_exceeded",
        reason="max_steps: 3 of 3 steps done",
        limit="max_steps",
        usage=RunUsage(steps=3),
    )
    session = Budget(max_steps=10, max_tokens=100)
    # The message's own limit stopped it: the session has steps left.
    used = RunUsage(steps=3, total_tokens=40)
    assert sessions.session_reason(session, used, stopped) == "max_steps: 3 of 3 steps done"
    used_up = RunUsage(steps=10, total_tokens=40)
    assert sessions.session_reason(session, used_up, stopped) == (
        "the session's budget is used up: max_steps: 10 of 10 steps done"
    )
    # Out of time too: still the limit that stopped the run.
    timed = Budget(max_steps=10, max_duration_s=5)
    late = RunUsage(steps=10, duration_s=6)
    assert sessions.session_reason(timed, late, stopped) == (
        "the session's budget is used up: max_steps: 10 of 10 steps done"
    )
    completed = AgentResult(status="completed", usage=RunUsage())
    assert sessions.session_reason(session, used_up, completed) is None


async def test_unknown_session_is_not_found(client: Client) -> None:
    from onward.errors import RunNotFound

    with pytest.raises(RunNotFound):
        await OnwardClient(client).session_status(f"nope-{uuid.uuid4().hex[:8]}")


async def test_messages_racing_continue_as_new_are_all_answered_in_order(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    """Continue-as-new after every message while three senders keep sending: none is lost."""
    model = RecordingModel()
    async with running_worker(
        client, tmp_path / "workspace", search_attribute_names, providers={"scripted": model}
    ) as worker:
        onward = OnwardClient(client, task_queue=worker.task_queue)
        session_id = await onward.open_session(
            {"system": SYSTEM, "tools": [], "continue_as_new_after": 1}
        )

        async def sender(name: str) -> list[int]:
            numbers = []
            for index in range(4):
                reply = await onward.send_message(session_id, f"{name}{index}")
                assert reply.reply == f"reply to {name}{index}"
                numbers.append(reply.number)
            return numbers

        answered = await asyncio.gather(sender("a"), sender("b"), sender("c"))
        numbers = sorted(number for numbers in answered for number in numbers)
        assert numbers == list(range(1, 13))
        for numbers in answered:  # each sender's messages were answered in its order
            assert numbers == sorted(numbers)
        history = await onward.session_history(session_id)
        assert [turn.number for turn in history] == list(range(1, 13))
        # Each run saw the whole conversation before it, in the order answered.
        sent = [turn.message for turn in history]
        for number, request in enumerate(model.requests, start=1):
            seen = [(message.role, message.content) for message in request]
            assert seen == expected_conversation(sent[:number])

        async def continued() -> bool:
            # Only between messages: while senders keep the queue full, it answers on.
            runs = await runs_of(client, session_id)
            return WorkflowExecutionStatus.CONTINUED_AS_NEW in runs

        await eventually(continued)
        await onward.close_session(session_id)
        assert (await onward.session_result(session_id)).turns == 12


async def test_the_session_history_holds_references_not_the_conversation(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    model = RecordingModel()
    big = "x" * 20_000
    async with running_worker(
        client, tmp_path / "workspace", search_attribute_names, providers={"scripted": model}
    ) as worker:
        onward = OnwardClient(client, task_queue=worker.task_queue)
        session_id = await onward.open_session({"tools": []})
        for number in range(1, 6):
            await onward.send_message(session_id, f"{number} {big}")
        assert sum(len(message.content) for message in model.requests[-1]) > 5 * 20_000
        child_inputs = [
            len(
                event.start_child_workflow_execution_initiated_event_attributes.input.payloads[
                    0
                ].data
            )
            async for event in client.get_workflow_handle(session_id).fetch_history_events()
            if event.HasField("start_child_workflow_execution_initiated_event_attributes")
        ]
        assert len(child_inputs) == 5
        # Each message's run is given its own message and a reference, not the turns before.
        assert max(child_inputs) < 20_000 + 2_000
        # The history query (and the carry) holds the turns cut short; the store all of it.
        history = await onward.session_history(session_id)
        assert all(len(turn.message) < 4_100 and len(turn.reply) < 4_100 for turn in history)
        assert history[-1].message.startswith("5 xxx")
        await onward.close_session(session_id)


async def test_a_configured_context_limit_compacts_the_conversation(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    model = RecordingModel()
    async with running_worker(
        client, tmp_path / "workspace", search_attribute_names, providers={"scripted": model}
    ) as worker:
        onward = OnwardClient(client, task_queue=worker.task_queue)
        session_id = await onward.open_session(
            {"tools": [], "context": {"max_tokens": 200, "keep_last_turns": 1}}
        )
        replies = [
            await onward.send_message(session_id, f"message {number} " + "y" * 200)
            for number in range(1, 7)
        ]
        assert all(reply.reply.startswith("reply to message") for reply in replies)
        compacted = [step for reply in replies for step in reply.steps if step.compaction]
        assert compacted, "no message's run compacted the conversation"
        # After a compaction the model is sent fewer messages than the whole conversation.
        assert len(model.requests[-1]) < 2 * 6
        await onward.close_session(session_id)


async def test_a_session_started_without_input_fails_at_once(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    async with running_worker(client, tmp_path / "workspace", search_attribute_names) as worker:
        handle = await client.start_workflow(
            "SessionWorkflow", id=f"session-{uuid.uuid4().hex[:8]}", task_queue=worker.task_queue
        )
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
        assert "needs one JSON object" in str(failure.value.cause)
        bad = await client.start_workflow(
            "SessionWorkflow",
            {"model": "scripted", "prompt": "sessions take no prompt"},
            id=f"session-{uuid.uuid4().hex[:8]}",
            task_queue=worker.task_queue,
        )
        with pytest.raises(WorkflowFailureError) as failure:
            await bad.result()
        assert "prompt" in str(failure.value.cause)


async def test_a_session_closes_after_seven_idle_days_by_default(
    time_skipping_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    ts_client = time_skipping_env.client
    async with running_worker(ts_client, tmp_path / "workspace", []) as worker:
        # The handle of the start: the time-skipping server answers result() by run id.
        handle = await ts_client.start_workflow(
            SessionWorkflow.run,
            SessionInput(tools=[]),
            id=f"session-{uuid.uuid4().hex[:8]}",
            task_queue=worker.task_queue,
        )
        result = await handle.result()
    assert result.reason == "idle for 604800 s"
    assert result.turns == 0


async def test_a_message_whose_run_id_is_taken_is_answered_as_failed(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    async with running_worker(client, tmp_path / "workspace", search_attribute_names) as worker:
        onward = OnwardClient(client, task_queue=worker.task_queue)
        session_id = await onward.open_session({"tools": [], "script": [{"text": "fine"}]})
        squatter = await worker.start(
            {"prompt": "in the way", "script": [{"text": "slow", "delay_s": 30}]},
            workflow_id=sessions.run_id(session_id, 1),
        )
        taken = await onward.send_message(session_id, "first")
        assert taken.status == "failed"
        assert taken.reason is not None
        await squatter.terminate("test done")
        following = await onward.send_message(session_id, "second")
        assert (following.number, following.status, following.reply) == (2, "completed", "fine")
        await onward.close_session(session_id)


async def test_a_scripted_session_plays_on_after_a_sub_agent_played_its_own_script(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    child = {"prompt": "add", "script": [{"text": "the sub-agent's answer"}]}
    script = [
        {"tool_calls": [{"name": "delegate", "arguments": child}]},
        {"text": "first reply"},
        {"text": "second reply"},
    ]
    async with running_worker(client, tmp_path / "workspace", search_attribute_names) as worker:
        onward = OnwardClient(client, task_queue=worker.task_queue)
        session_id = await onward.open_session({"tools": ["delegate"], "script": script})
        first = await onward.send_message(session_id, "one")
        second = await onward.send_message(session_id, "two")
        await onward.close_session(session_id)

    assert (first.status, first.reply) == ("completed", "first reply")
    assert first.usage.model_calls == 3  # the sub-agent's call counts in its usage
    # Its turns were the sub-agent's own script, not the session's: none skipped.
    assert (second.status, second.reply) == ("completed", "second reply")


async def test_a_closed_sessions_status_is_read_from_its_history_without_a_worker(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    async with running_worker(client, tmp_path / "workspace", search_attribute_names) as worker:
        onward = OnwardClient(client, task_queue=worker.task_queue)
        session_id = await onward.open_session(
            {"tools": [], "script": [{"text": "hi"}, {"text": "bye"}], "budget": {"max_steps": 9}}
        )
        await onward.send_message(session_id, "one")
        await onward.send_message(session_id, "two")
        # Open, its time is its messages' answering time, as the session counts it.
        asked = await client.get_workflow_handle(session_id).query(SessionWorkflow.status)
        for open_status in (
            await onward.status(session_id),
            await onward.session_status(session_id),
        ):
            assert open_status.usage.duration_s == asked.usage.duration_s
        await onward.close_session(session_id)
        closed = await onward.session_result(session_id)
    # No worker polls the queue now.
    for status in (await onward.session_status(session_id), await onward.status(session_id)):
        assert (status.state, status.reason) == ("completed", closed.reason)
        assert status.model == "scripted"  # was "?" (read as an agent run's history)
        assert status.turns == 2 and status.step == 2  # was 0 steps
        assert status.usage == closed.usage and status.usage.model_calls == 2
        assert status.budget.max_steps == 9

    # One ended by Temporal has no result: its messages' runs say what it answered.
    async with running_worker(client, tmp_path / "workspace", search_attribute_names) as worker:
        onward = OnwardClient(client, task_queue=worker.task_queue)
        session_id = await onward.open_session({"tools": [], "script": [{"text": "hi"}]})
        answered = await onward.send_message(session_id, "one")
        await client.get_workflow_handle(session_id).terminate(reason="an operator stopped it")
    status = await onward.status(session_id)
    assert (status.state, status.reason) == (
        "terminated",
        "terminated through Temporal: an operator stopped it",
    )
    assert (status.turns, status.model, status.usage) == (1, "scripted", answered.usage)


async def test_a_message_waiting_for_approval_is_approved_and_rejected_through_its_session(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    def writes(path: str) -> dict[str, object]:
        call = {"name": "write_file", "arguments": {"path": path, "content": "x"}}
        return {"text": f"saving {path}", "tool_calls": [call]}

    script = [writes("a.md"), {"text": "saved"}, writes("b.md"), {"text": "not saved"}]
    async with running_worker(client, tmp_path / "workspace", search_attribute_names) as worker:
        onward = OnwardClient(client, task_queue=worker.task_queue)
        session_id = await onward.open_session(
            {"script": script, "tools": ["write_file"], "approve_tools": ["write_file"]}
        )

        async def waiting(path: str) -> bool:
            status = await onward.status(session_id)  # the generic status of a session
            pending = [call.arguments.get("path") for call in status.pending_approvals]
            return status.state == "awaiting_approval" and pending == [path]

        first = asyncio.create_task(onward.send_message(session_id, "save a"))
        await eventually(lambda: waiting("a.md"))
        assert (await onward.session_status(session_id)).state == "awaiting_approval"
        assert not first.done()  # nothing ran before the approval
        assert (await onward.approve(session_id)).decision == "approved"
        saved = await first
        assert saved.reply == "saved"
        assert saved.steps[0].tool_calls[0].result == "wrote 1 character to a.md"
        with pytest.raises(RequestRejected, match="no tool call waits"):
            await onward.approve(session_id)  # idle: nothing to approve

        second = asyncio.create_task(onward.send_message(session_id, "save b"))
        await eventually(lambda: waiting("b.md"))
        await onward.reject(session_id, note="not b, please")
        refused = await second
        assert refused.reply == "not saved"
        assert "not b, please" in (refused.steps[0].tool_calls[0].error or "") + (
            refused.steps[0].tool_calls[0].result or ""
        )
        assert (await onward.session_status(session_id)).state == "idle"
        await onward.close_session(session_id)


async def test_sessions_and_their_message_runs_give_up_a_dead_workers_task_in_two_seconds(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    """Runs start with WORKFLOW_TASK_TIMEOUT (Temporal's default is 10 s): sessions too."""
    async with running_worker(
        client,
        tmp_path / "workspace",
        search_attribute_names,
        providers={"scripted": RecordingModel()},
    ) as worker:
        onward = OnwardClient(client, task_queue=worker.task_queue)
        session_id = await onward.open_session({"tools": []})
        reply = await onward.send_message(session_id, "hi")
        assert reply.run_id is not None
        for workflow_id in (session_id, reply.run_id):
            description = await client.get_workflow_handle(workflow_id).describe()
            config = description.raw_description.execution_config
            assert config.default_workflow_task_timeout.ToTimedelta() == WORKFLOW_TASK_TIMEOUT
        await onward.close_session(session_id)


async def test_a_session_read_as_its_worker_starts_waits_for_it_a_moment(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    task_queue = f"tq-{uuid.uuid4().hex[:12]}"
    onward = OnwardClient(client, task_queue=task_queue)
    session_id = await onward.open_session({"tools": []})  # no worker polls yet
    settings = WorkerSettings(task_queue=task_queue, workspace=tmp_path / "workspace")

    async def worker_starting() -> None:
        await asyncio.sleep(0.5)
        async with build_worker(client, settings, search_attribute_names=search_attribute_names):
            await asyncio.Event().wait()

    starting = asyncio.create_task(worker_starting())
    try:
        status = await onward.session_status(session_id)  # before the worker's first poll
        assert status.state == "idle"
        assert await onward.session_history(session_id) == []
        await onward.close_session(session_id)
        await onward.session_result(session_id)
    finally:
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting


async def test_a_session_cancelled_through_temporal_while_answering_closes_as_cancelled(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    script = [{"tool_calls": [{"name": "wait", "arguments": {"seconds": 30}}]}, {"text": "late"}]
    async with running_worker(client, tmp_path / "workspace", search_attribute_names) as worker:
        onward = OnwardClient(client, task_queue=worker.task_queue)
        session_id = await onward.open_session({"script": script})
        first = asyncio.create_task(onward.send_message(session_id, "go"))

        async def answering() -> bool:
            return (await onward.session_status(session_id)).state == "running"

        await eventually(answering)
        second = asyncio.create_task(onward.send_message(session_id, "queued"))
        await eventually(lambda: queued(onward, session_id))
        handle = client.get_workflow_handle(session_id)
        await handle.cancel()  # `temporal workflow cancel`: the session's cancel
        reply = await asyncio.wait_for(first, 20)
        assert (reply.status, reply.reason) == (
            "cancelled",
            "cancelled through Temporal (workflow cancel)",
        )
        assert (await asyncio.wait_for(second, 20)).status == "cancelled"
        with pytest.raises(WorkflowFailureError):
            await asyncio.wait_for(handle.result(), 20)
        assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
        message_run = client.get_workflow_handle(sessions.run_id(session_id, 1))
        assert (await message_run.describe()).status == WorkflowExecutionStatus.CANCELED


async def queued(onward: OnwardClient, session_id: str) -> bool:
    return (await onward.session_status(session_id)).queued == 1


async def test_a_message_sent_as_the_session_closes_idle_is_session_closed(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    # Sent around the idle timeout, a message is answered, refused by the closing
    # session, or (taken in by the server as the session closes) aborted with
    # NOT_FOUND "workflow update was aborted by closing workflow": closed all the same.
    async with running_worker(client, tmp_path / "workspace", search_attribute_names) as worker:
        onward = OnwardClient(client, task_queue=worker.task_queue)

        async def one(delay_s: float) -> str:
            session_id = await onward.open_session(
                {"idle_timeout_s": 1, "script": [{"text": "hi"}]}
            )
            await asyncio.sleep(delay_s)
            try:
                await asyncio.wait_for(onward.send_message(session_id, "m"), 30)
            except SessionClosed:
                return "closed"
            return "answered"

        outcomes = await asyncio.gather(*(one(1.0 + 0.02 * (n % 15)) for n in range(30)))
    assert set(outcomes) <= {"closed", "answered"}


async def test_a_sessions_status_shows_the_calls_its_message_runs(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    # `onward status SESSION` read "running, 0 steps" while a message's tool ran:
    # no `now:` line, though the message's run had its current_step.
    turn = {"text": "waiting", "tool_calls": [{"name": "wait", "arguments": {"seconds": 60}}]}
    async with running_worker(client, tmp_path / "workspace", search_attribute_names) as worker:
        onward = OnwardClient(client, task_queue=worker.task_queue)
        session_id = await onward.open_session({"script": [turn], "tools": ["wait"]})
        sending = asyncio.create_task(onward.send_message(session_id, "wait"))

        async def calling() -> bool:
            current = (await onward.status(session_id)).current_step
            return current is not None and bool(current.tool_calls)

        await eventually(calling)
        status = await onward.session_status(session_id)
        assert status.state == "running" and status.current_step is not None
        now = [line for line in status_lines(session_id, status) if line.startswith("now:")]
        assert len(now) == 1 and now[0].startswith("now:    step 1 · wait(60)")
        sending.cancel()
        for run_id in (sessions.run_id(session_id, 1), session_id):
            with contextlib.suppress(Exception):
                await client.get_workflow_handle(run_id).terminate(reason="test over")


def test_a_session_given_a_prompt_says_where_the_prompt_goes() -> None:
    with pytest.raises(ValueError) as caught:
        SessionInput.model_validate({"prompt": "hi"})
    (problem,) = caught.value.errors()  # type: ignore[attr-defined]
    loc, message = named_problem(problem["loc"], problem["msg"])
    assert loc == ("prompt",)
    assert message.startswith("a session takes no prompt; send it as the first message")
