"""A session survives a real worker process killed with SIGKILL, between and during messages."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.service import RPCError
from test_crash_resume import WorkerProcess, wait_ready, workers

from conftest import activity_running, eventually
from onward import session_client, sessions
from onward.client import OnwardClient
from onward.errors import MessageNotTaken

__all__ = ["workers"]  # the fixture


@dataclass
class SessionWorkers:
    """Worker processes of one test's task queue, sharing its workspace and store."""

    address: str
    folder: Path
    started: list[WorkerProcess]
    task_queue: str = field(default_factory=lambda: f"session-crash-{uuid.uuid4().hex[:8]}")

    def start(self, name: str) -> WorkerProcess:
        """Start one (its log is ``<name>.log``); the ``workers`` fixture kills it at the end."""
        worker = WorkerProcess(
            self.address, self.task_queue, self.folder / "workspace", self.folder / f"{name}.log"
        )
        self.started.append(worker)
        return worker


@pytest.fixture
def session_workers(
    address: str, tmp_path: Path, workers: list[WorkerProcess], monkeypatch: pytest.MonkeyPatch
) -> SessionWorkers:
    monkeypatch.setenv("ONWARD_STORE", str(tmp_path / "store"))
    return SessionWorkers(address, tmp_path, workers)


async def test_session_survives_kill_9_between_and_during_messages(
    client: Client, session_workers: SessionWorkers
) -> None:
    start = session_workers.start
    first = start("worker1")
    await wait_ready(first)
    onward = OnwardClient(client, task_queue=session_workers.task_queue)
    session_id = await onward.open_session(
        {
            "tools": [],
            "script": [{"text": "one"}, {"text": "two", "delay_s": 2}, {"text": "three"}],
        }
    )
    assert (await onward.send_message(session_id, "first")).reply == "one"

    first.kill()  # between messages: the session waits idle, nothing in flight
    second = start("worker2")
    await wait_ready(second)
    sending = asyncio.create_task(onward.send_message(session_id, "second"))
    message_run = client.get_workflow_handle(sessions.run_id(session_id, 2))

    async def model_call_running() -> bool:
        try:
            return await activity_running(message_run, "call_model")
        except RPCError:  # the message's run is not started yet
            return False

    await eventually(model_call_running, timeout_s=30, interval_s=0.05)
    second.kill()  # during a message: its model call is in flight
    third = start("worker3")
    await wait_ready(third)
    reply = await asyncio.wait_for(sending, timeout=60)
    assert reply.reply == "two"
    assert reply.number == 2

    assert (await onward.send_message(session_id, "third")).reply == "three"
    history = await onward.session_history(session_id)
    assert [(turn.message, turn.reply) for turn in history] == [
        ("first", "one"),
        ("second", "two"),
        ("third", "three"),
    ]
    status = await onward.session_status(session_id)
    assert status.turns == 3
    assert status.usage.model_calls == 3
    await onward.close_session(session_id)
    assert (await onward.session_result(session_id)).turns == 3


async def kept_by_the_server(
    client: Client, session_workers: SessionWorkers, idempotency_key: str | None = None
) -> tuple[OnwardClient, str, MessageNotTaken]:
    """A session whose worker answered "first" and was killed; then "second", which no
    worker takes (MessageNotTaken, the server keeps it). Start the next worker next."""
    first = session_workers.start("worker1")
    await wait_ready(first)
    onward = OnwardClient(client, task_queue=session_workers.task_queue)
    session_id = await onward.open_session(
        {"tools": [], "script": [{"text": "one"}, {"text": "two"}]}
    )
    assert (await onward.send_message(session_id, "first")).reply == "one"
    first.kill()
    # Temporal still lists the killed worker as a poller: the send used to wait for good.
    with pytest.raises(MessageNotTaken) as kept:
        await asyncio.wait_for(
            onward.send_message(session_id, "second", idempotency_key=idempotency_key),
            timeout=30,
        )
    return onward, session_id, kept.value


async def test_a_message_no_worker_takes_is_said_so_and_answered_by_the_next_worker(
    client: Client, session_workers: SessionWorkers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(session_client, "MESSAGE_TAKEN_WITHIN_S", 2.0)
    onward, session_id, kept = await kept_by_the_server(client, session_workers, "k2")
    assert "send it again with the same idempotency_key" in str(kept)
    assert kept.repeatable
    await wait_ready(session_workers.start("worker2"))

    async def answered() -> bool:
        turns = await onward.session_history(session_id)
        return len(turns) == 2 and bool(turns[1].reply)

    await eventually(answered, timeout_s=30)
    turns = await onward.session_history(session_id)
    assert [(turn.message, turn.reply) for turn in turns] == [("first", "one"), ("second", "two")]
    # Sent again with its key, the kept message is not answered twice: its reply comes back.
    again = await onward.send_message(session_id, "second", idempotency_key="k2")
    assert (again.reply, again.number) == ("two", 2)
    assert len(await onward.session_history(session_id)) == 2


async def test_a_message_kept_while_no_worker_runs_is_answered_before_a_later_close(
    client: Client, session_workers: SessionWorkers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(session_client, "MESSAGE_TAKEN_WITHIN_S", 2.0)
    onward, session_id, _ = await kept_by_the_server(client, session_workers)
    # "Close once the messages already sent are answered": the kept one was sent first.
    await onward.close_session(session_id)

    await wait_ready(session_workers.start("worker2"))
    result = await asyncio.wait_for(onward.session_result(session_id), timeout=60)
    assert result.turns == 2
    assert result.reason == "closed by signal"
