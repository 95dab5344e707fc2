"""A session message sent with an idempotency key is answered once, however often it is sent.

The recording model counts what it is sent: a repeat must not reach it. Temporal
answers a repeat within one run of the session's chain; the session answers one
that comes after it continued as new, from the turn it carried.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from test_sessions import SYSTEM, RecordingModel

from conftest import eventually, running_worker
from onward import session_client, sessions
from onward.client import OnwardClient
from onward.contracts import SESSION_WORKFLOW, ModelRequest, ModelResponse, ToolCall, Usage
from onward.errors import (
    IdempotencyKeyReused,
    InvalidInput,
    RequestRejected,
    RunNotFound,
    SessionClosed,
)


@contextlib.asynccontextmanager
async def talking(
    client: Client, workspace: Path, names: list[str], model: object, **fields: Any
) -> AsyncIterator[tuple[OnwardClient, str]]:
    """A worker whose model is ``model``, and a session open on it (``fields`` added)."""
    async with running_worker(client, workspace, names, providers={"scripted": model}) as worker:
        onward = OnwardClient(client, task_queue=worker.task_queue)
        yield onward, await onward.open_session({"system": SYSTEM, "tools": [], **fields})


async def continued_past(onward: OnwardClient, session_id: str, run_id: str) -> None:
    """Until the session has continued as new past ``run_id`` (Temporal's own dedupe of
    a repeated update is per run: past it, the session answers repeats itself)."""

    async def continued() -> bool:
        return (await onward.info(session_id)).temporal_run_id != run_id

    await eventually(continued)


async def test_a_keyed_message_sent_twice_is_answered_once(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    model = RecordingModel()
    async with talking(client, tmp_path / "workspace", search_attribute_names, model) as (
        onward,
        session_id,
    ):
        first = await onward.send_message(session_id, "hello", idempotency_key="k-1")
        again = await onward.send_message(session_id, "hello", idempotency_key="k-1")
        assert again == first
        assert first.reply == "reply to hello" and first.number == 1
        assert len(model.requests) == 1
        # Another key, or none, is another message.
        other = await onward.send_message(session_id, "hello", idempotency_key="k-2")
        plain = await onward.send_message(session_id, "hello")
        assert (other.number, plain.number) == (2, 3)
        assert len(model.requests) == 3

        history = await onward.session_history(session_id)
        assert [turn.idempotency_key for turn in history] == ["k-1", "k-2", None]
        assert history[0].message_sha256 == sessions.message_digest("hello")
        assert history[2].message_sha256 is None
        # An unkeyed turn's JSON is as it was before keys.
        assert "idempotency_key" not in history[2].model_dump(mode="json")
        await onward.close_session(session_id)
        assert (await onward.session_result(session_id)).turns == 3


async def test_a_keyed_message_sent_again_while_it_is_answered_waits_for_that_answer(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    model = RecordingModel(delay_s=0.5)
    async with talking(client, tmp_path / "workspace", search_attribute_names, model) as (
        onward,
        session_id,
    ):
        replies = await asyncio.gather(
            *(onward.send_message(session_id, "once", idempotency_key="same") for _ in range(3))
        )
        assert all(reply == replies[0] for reply in replies)
        assert replies[0].number == 1
        assert len(model.requests) == 1
        assert (await onward.session_status(session_id)).turns == 1


async def test_a_key_sent_with_another_message_is_refused_and_nothing_is_answered(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    model = RecordingModel()
    async with talking(client, tmp_path / "workspace", search_attribute_names, model) as (
        onward,
        session_id,
    ):
        await onward.send_message(session_id, "first text", idempotency_key="k")
        with pytest.raises(IdempotencyKeyReused, match="'k' was sent before with another"):
            await onward.send_message(session_id, "second text", idempotency_key="k")
        assert len(model.requests) == 1
        assert (await onward.session_status(session_id)).turns == 1
        # Still open: the refusal is the key's, not the session's.
        reply = await onward.send_message(session_id, "second text", idempotency_key="k2")
        assert reply.number == 2


async def test_a_repeat_after_continue_as_new_gets_the_whole_first_reply(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    model = RecordingModel()
    long_message = "x" * 5_000  # the carried turn keeps 4,000 characters of it and of the reply
    async with talking(
        client, tmp_path / "workspace", search_attribute_names, model, continue_as_new_after=1
    ) as (onward, session_id):
        first_run = (await onward.info(session_id)).temporal_run_id
        first = await onward.send_message(session_id, long_message, idempotency_key="long")
        second = await onward.send_message(session_id, "next", idempotency_key="next")
        assert second.number == 2
        await continued_past(onward, session_id, first_run)

        again = await onward.send_message(session_id, long_message, idempotency_key="long")
        assert again.repeated
        assert again.reply == first.reply == f"reply to {long_message}"
        assert again.steps == first.steps and len(again.steps) == 1
        assert (again.number, again.run_id, again.usage) == (1, first.run_id, first.usage)
        assert len(model.requests) == 2
        # The carried turn knows the whole message's digest, not just its first 4,000.
        with pytest.raises(IdempotencyKeyReused):
            await onward.send_message(session_id, long_message + "y", idempotency_key="long")
        assert (await onward.session_status(session_id)).turns == 2

        # Refused once the session has closed: the reply is in its history.
        await onward.close_session(session_id)
        await onward.session_result(session_id)
        with pytest.raises(SessionClosed):
            await onward.send_message(session_id, "next", idempotency_key="next")


async def answering(onward: OnwardClient, session_id: str, number: int) -> None:
    """Until the session is answering message ``number`` (its run has started)."""

    async def started() -> bool:
        try:
            return (await onward.info(sessions.run_id(session_id, number))).running
        except RunNotFound:
            return False

    await eventually(started)


async def test_a_key_sent_with_another_message_while_the_first_is_answered_is_refused(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    model = RecordingModel(delay_s=1.0)
    async with talking(client, tmp_path / "workspace", search_attribute_names, model) as (
        onward,
        session_id,
    ):
        first = asyncio.create_task(onward.send_message(session_id, "a", idempotency_key="k"))
        await answering(onward, session_id, 1)
        with pytest.raises(IdempotencyKeyReused):
            await onward.send_message(session_id, "b", idempotency_key="k")
        assert (await first).reply == "reply to a"
        assert len(model.requests) == 1


async def test_a_repeat_is_answered_while_the_session_closes(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    model = RecordingModel(delay_s=1.5)
    async with talking(
        client, tmp_path / "workspace", search_attribute_names, model, continue_as_new_after=1
    ) as (onward, session_id):
        first_run = (await onward.info(session_id)).temporal_run_id
        first = await onward.send_message(session_id, "a", idempotency_key="k1")
        await continued_past(onward, session_id, first_run)
        second = asyncio.create_task(onward.send_message(session_id, "b", idempotency_key="k2"))
        await answering(onward, session_id, 2)
        await onward.close_session(session_id)  # closes once "b" is answered
        again = await onward.send_message(session_id, "a", idempotency_key="k1")
        assert again.repeated and again.reply == first.reply
        with pytest.raises(SessionClosed):
            await onward.send_message(session_id, "c", idempotency_key="k3")
        await second
        assert len(model.requests) == 2


async def test_a_key_must_be_1_to_200_characters(client: Client) -> None:
    onward = OnwardClient(client)
    with pytest.raises(InvalidInput, match="idempotency_key"):
        await onward.send_message("any", "hello", idempotency_key="")
    with pytest.raises(InvalidInput, match="idempotency_key"):
        await onward.send_message("any", "hello", idempotency_key="k" * 201)


@workflow.defn(name=SESSION_WORKFLOW)
class RefusingSession:
    """A "session" whose worker cannot read the message (as a worker older than its fields)."""

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)

    @workflow.update(name="send_message")
    async def send_message(self, message: dict[str, Any]) -> None:
        pass

    @send_message.validator
    def _refuse(self, message: dict[str, Any]) -> None:
        raise RuntimeError("Failed decoding arguments")


async def test_a_message_refused_for_another_reason_is_not_called_closed(
    client: Client,
) -> None:
    task_queue = f"refusing-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[RefusingSession],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        handle = await client.start_workflow(
            RefusingSession.run, id=f"session-{uuid.uuid4().hex[:12]}", task_queue=task_queue
        )
        onward = OnwardClient(client, task_queue=task_queue)
        with pytest.raises(RequestRejected, match="refused the message: Failed decoding") as err:
            await onward.send_message(handle.id, "hello", idempotency_key="k")
        assert not isinstance(err.value, SessionClosed)
        await handle.terminate()


class FailsAfterAToolCall:
    """Asks for a calculation, then fails for good: the run ends failed with one step."""

    async def complete(self, request: ModelRequest) -> ModelResponse:
        if request.messages[-1].role == "tool":
            raise ApplicationError("the provider refused", type="Refused", non_retryable=True)
        call = ToolCall(id="c1", name="calculator", arguments={"expression": "1+1"})
        return ModelResponse(
            tool_calls=[call], usage=Usage(input_tokens=5, output_tokens=5), model=request.model
        )


async def test_a_repeat_of_a_message_whose_run_failed_gets_its_steps(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    model = FailsAfterAToolCall()
    async with talking(
        client,
        tmp_path / "workspace",
        search_attribute_names,
        model,
        tools=["calculator"],
        continue_as_new_after=1,
    ) as (onward, session_id):
        first_run = (await onward.info(session_id)).temporal_run_id
        first = await onward.send_message(session_id, "add", idempotency_key="k")
        assert first.status == "failed" and len(first.steps) == 2  # the failed call too
        await continued_past(onward, session_id, first_run)
        again = await onward.send_message(session_id, "add", idempotency_key="k")
        assert again.repeated
        assert (again.status, again.steps, again.reply) == (first.status, first.steps, first.reply)


def test_message_not_taken_says_what_to_do_with_and_without_a_key() -> None:
    assert "send it again with the same idempotency_key" in str(
        session_client._message_not_taken("s-1", keyed=True)
    )
    unkeyed = str(session_client._message_not_taken("s-1", keyed=False))
    assert "check the session's turns (`onward status s-1`) before sending it again" in unkeyed
