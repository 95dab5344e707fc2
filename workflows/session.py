"""SessionWorkflow: one conversation, many messages, each answered by a child AgentWorkflow.

The session waits idle on a durable condition (no polling, no cost), answers
messages one at a time in the order they came, and keeps only references in
its own history: the conversation lives in the transcript store and each
message's run (``<session-id>-m<N>``) is given it by reference. Between
messages, past a threshold of its own or when Temporal suggests it, the
session continues as new once every ``send_message`` has returned.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import (
    ApplicationError,
    ChildWorkflowError,
    WorkflowAlreadyStartedError,
)

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from onward import sessions
    from onward.contracts import (
        SESSION_WORKFLOW,
        AgentResult,
        AgentState,
        AgentStatus,
        ConversationRef,
        RunUsage,
        SessionCarry,
        SessionInput,
        SessionMessage,
        SessionReply,
        SessionResult,
        SessionTurn,
    )
    from onward.errors import IDEMPOTENCY_KEY_REUSED
    from onward.markdown import escape_markdown
    from onward.text import clip, shorten
    from onward.tuning import WORKFLOW_SANDBOX, WORKFLOW_TASK_TIMEOUT
    from onward.workflows.agent import AgentWorkflow
    from onward.workflows.inputs import Given

__all__ = ["SessionWorkflow"]

CONTINUE_AS_NEW_AFTER = 100
"""Messages one run answers before the session continues as new (``continue_as_new_after``
overrides); earlier when Temporal suggests it."""
TURNS_KEPT = 100
"""Turns the ``history`` query holds; the store holds the whole conversation."""
TURN_TEXT_CHARS = 4_000
"""A turn's message and reply are cut to this in ``history`` (and so in the carry, which
must fit one payload); the reply itself and the store keep them whole. A reply's object
(``structured_output``) is kept whole when its JSON fits, else left out."""
CLOSED_BY_SIGNAL = "closed by signal"
CLOSE_AFTER_KEPT_PATCH = "session-close-after-kept-messages"
"""Sessions begun since read ``close`` after the messages that came with it: a message
the server kept while no worker ran, and a close sent after it, reach the next worker
together, signal first; the message was sent first, so it is answered."""
CANCELLED_WHILE_ANSWERING_PATCH = "session-cancelled-while-answering"
"""A session cancelled through Temporal while it answers a message closes as cancelled,
the message's reply saying so; sessions begun before answered it as failed ("Cancelled")
and went back to idle, never to close. Asked only then."""
NATIVE_CANCEL = "cancelled through Temporal (workflow cancel)"
SUMMARY_CHARS = 80
NO_INPUT = 'input: SessionWorkflow needs one JSON object as input, e.g. {"model": "scripted"}'


@dataclasses.dataclass
class _Queued:
    number: int
    message: str
    sent_at: datetime
    key: str | None = None
    digest: str | None = None


def _root_message(err: BaseException) -> str:
    """The innermost cause's message: why a message's run failed."""
    while err.__cause__ is not None and not isinstance(err, ApplicationError):
        err = err.__cause__
    if isinstance(err, ApplicationError):
        return err.message or err.type or "ApplicationError"
    return str(err) or type(err).__name__


def _repeat(turn: SessionTurn) -> SessionReply:
    """The reply to a keyed message sent again, from its kept turn (the reply cut to
    TURN_TEXT_CHARS, its object if the turn kept it, no steps: the client reads them
    from the turn's run)."""
    return SessionReply(
        reply=turn.reply,
        usage=turn.usage,
        number=turn.number,
        status=turn.status,
        reason=turn.reason,
        run_id=turn.run_id,
        structured_output=turn.structured_output,
        repeated=True,
    )


def _summary(queued: _Queued) -> str:
    """The Web UI's one line for a message's run: its number and text (markdown-escaped)."""
    text = escape_markdown(shorten(queued.message, SUMMARY_CHARS))
    return f"session message {queued.number}: {text}"


@workflow.defn(
    name=SESSION_WORKFLOW, failure_exception_types=[ValidationError], sandboxed=WORKFLOW_SANDBOX
)
class SessionWorkflow:
    """A multi-turn conversation: ``send_message`` answers, ``close`` (or idleness) ends it."""

    @workflow.init
    def __init__(self, input: SessionInput | None = None, *extra: Any) -> None:
        # Raising here would fail the workflow task again and again: ``run`` fails the session.
        self._given = Given.of(SessionInput, SESSION_WORKFLOW, (input, *extra), NO_INPUT)
        input = self._given.value or SessionInput()
        self._input = input
        self._queue: list[_Queued] = []
        self._replies: dict[int, SessionReply] = {}
        self._current: SessionTurn | None = None
        self._state: AgentState = "idle"
        self._run_messages = 0
        carry = input.carry
        if carry is None:
            now = workflow.now()
            carry = SessionCarry(usage=RunUsage(), turns=0, started_at=now, last_active=now)
        self._conversation: ConversationRef | None = carry.conversation
        self._usage = carry.usage.model_copy()
        self._turns = carry.turns
        self._next = carry.turns + 1
        self._history = list(carry.recent_turns)
        self._script_index = carry.script_index
        self._started_at = carry.started_at
        self._last_active = carry.last_active
        self._runs = carry.runs
        self._closing = carry.closing
        self._close_reason = carry.close_reason
        # ``close`` came: it takes effect once the messages of its activation are queued.
        self._close_asked = False
        self._last_reason: str | None = None
        self._cancelled = False  # cancelled through Temporal while answering a message

    @workflow.run
    async def run(self, input: SessionInput | None = None, *extra: Any) -> SessionResult:
        """Answer messages as they come; return the session's usage once closed."""
        try:
            self._given.check()
        except (ApplicationError, ValidationError):
            self._set_state("failed")
            raise
        # Past the activation the close came in (its messages admitted), the session is
        # closing: a message in a later one is refused, also while one is being answered.
        self._closer = asyncio.ensure_future(self._close_once_asked())
        while True:
            if self._queue:
                await self._answer(self._queue.pop(0))
                if self._cancelled:
                    await self._close_cancelled()
                continue
            if self._closing:
                break
            if self._time_to_continue_as_new():
                await workflow.wait_condition(workflow.all_handlers_finished)
                if not self._queue and not self._closing and not self._close_asked:
                    workflow.continue_as_new(
                        self._input.model_copy(update={"carry": self._carry()})
                    )
                continue
            await self._wait_idle()
        # Every send_message has had its reply before the session ends.
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._set_state("completed")
        return SessionResult(
            status="completed",
            reason=self._close_reason,
            usage=self._usage,
            turns=self._turns,
            conversation=self._conversation,
        )

    async def _wait_idle(self) -> None:
        """Wait for a message or ``close``; close once ``idle_timeout_s`` has passed without one."""
        self._set_state("idle")
        if self._close_asked:
            # Closing once the close's activation is over: yield to the task that closes
            # (returning at once would spin the loop without ever letting it run).
            await workflow.wait_condition(lambda: self._closing)
            return
        idle_s = self._input.idle_timeout_s
        left = idle_s - (workflow.now() - self._last_active).total_seconds()
        try:
            if left <= 0:
                raise TimeoutError
            await workflow.wait_condition(
                lambda: bool(self._queue) or self._closing or self._close_asked,
                timeout=timedelta(seconds=left),
                timeout_summary="idle_timeout_s",
            )
        except TimeoutError:
            if not self._queue and not self._closing and not self._close_asked:
                self._closing = True
                self._close_reason = f"idle for {idle_s:g} s"

    def _time_to_continue_as_new(self) -> bool:
        if self._run_messages == 0:
            return False
        limit = self._input.continue_as_new_after or CONTINUE_AS_NEW_AFTER
        return self._run_messages >= limit or workflow.info().is_continue_as_new_suggested()

    def _carry(self) -> SessionCarry:
        return SessionCarry(
            conversation=self._conversation,
            usage=self._usage,
            turns=self._turns,
            steps_total=self._usage.steps,
            recent_turns=self._history[-TURNS_KEPT:],
            script_index=self._script_index,
            started_at=self._started_at,
            last_active=self._last_active,
            runs=self._runs + 1,
            closing=self._closing,
            close_reason=self._close_reason,
        )

    # -- one message ----------------------------------------------------------------

    async def _answer(self, queued: _Queued) -> None:
        """Run the message's AgentWorkflow with the conversation so far; keep its reply."""
        self._set_state("running")
        child_id = sessions.run_id(workflow.info().workflow_id, queued.number)
        self._current = SessionTurn(
            number=queued.number,
            message=clip(queued.message, TURN_TEXT_CHARS),
            run_id=child_id,
            sent_at=queued.sent_at,
            idempotency_key=queued.key,
            message_sha256=queued.digest,
        )
        agent_input = sessions.message_input(self._input, queued.message, self._usage)
        update: dict[str, Any] = {"conversation": self._conversation or _START}
        if self._input.script is not None:
            update["script"] = self._input.script[self._script_index :]
        agent_input = agent_input.model_copy(update=update)
        try:
            result: AgentResult = await workflow.execute_child_workflow(
                AgentWorkflow.run,
                agent_input,
                id=child_id,
                static_summary=_summary(queued),
                task_timeout=WORKFLOW_TASK_TIMEOUT,
            )
        except (ChildWorkflowError, WorkflowAlreadyStartedError) as err:
            # A failed run, or its id taken by a run someone else started: no answer.
            reply = SessionReply(
                number=queued.number,
                status="failed",
                reason=_root_message(err),
                run_id=child_id,
            )
            if self._cancel_requested():
                # The session's cancel cancelled the run: the message was cancelled.
                reply = reply.model_copy(update={"status": "cancelled", "reason": NATIVE_CANCEL})
        else:
            self._usage = sessions.add_usage(self._usage, result.usage)
            reply = SessionReply(
                reply=result.output or "",
                steps=result.steps,
                usage=result.usage,
                number=queued.number,
                status=result.status,
                reason=sessions.session_reason(self._input.budget, self._usage, result),
                run_id=child_id,
                structured_output=result.structured_output,
            )
            # Its sub-agents play scripts of their own (runs before script_played: all calls).
            played = result.script_played
            self._script_index += result.usage.model_calls if played is None else played
            if result.conversation is not None:
                self._conversation = result.conversation
            self._cancel_requested()  # the run ended before the cancel reached it
        self._last_active = workflow.now()
        self._current = None
        structured, omitted = sessions.turn_structured_output(
            reply.structured_output, TURN_TEXT_CHARS
        )
        self._history.append(
            SessionTurn(
                number=queued.number,
                message=clip(queued.message, TURN_TEXT_CHARS),
                reply=clip(reply.reply, TURN_TEXT_CHARS),
                status=reply.status,
                reason=reply.reason,
                run_id=child_id,
                usage=reply.usage,
                steps=reply.usage.steps,
                sent_at=queued.sent_at,
                answered_at=self._last_active,
                idempotency_key=queued.key,
                message_sha256=queued.digest,
                structured_output=structured,
                structured_output_omitted=omitted,
            )
        )
        del self._history[:-TURNS_KEPT]
        self._last_reason = reply.reason
        self._turns += 1
        self._run_messages += 1
        self._replies[queued.number] = reply

    def _cancel_requested(self) -> bool:
        """Whether the session was cancelled through Temporal (``temporal workflow cancel``)
        while a message's run ran: the message's run was cancelled with it (unless it ended
        first) and the session closes as cancelled (CANCELLED_WHILE_ANSWERING_PATCH)."""
        if workflow.cancellation_reason() is None:
            return False
        self._cancelled = self._cancelled or workflow.patched(CANCELLED_WHILE_ANSWERING_PATCH)
        return self._cancelled

    async def _close_cancelled(self) -> None:
        """Close as cancelled, as an idle session cancelled through Temporal does, once
        every message sent has its reply (those not answered yet: cancelled)."""
        self._closing = True
        self._close_reason = NATIVE_CANCEL
        for queued in self._queue:
            self._replies[queued.number] = SessionReply(
                number=queued.number, status="cancelled", reason=NATIVE_CANCEL
            )
        self._queue.clear()
        self._set_state("cancelled")
        await workflow.wait_condition(workflow.all_handlers_finished)
        raise asyncio.CancelledError(NATIVE_CANCEL)

    def _set_state(self, state: AgentState) -> None:
        self._state = state
        workflow.set_current_details(
            f"**session** {state}: {self._turns} message(s) answered, "
            f"{self._usage.total_tokens} tokens"
        )

    # -- updates, signals, queries -----------------------------------------------------

    @workflow.update(name="send_message")
    async def send_message(self, message: SessionMessage | None = None) -> SessionReply:
        """Queue a user message; return the reply once its run has ended, tools included.

        A message sent again with its ``idempotency_key`` is not answered again: it
        gets the first one's reply (Temporal itself answers a repeat within one run
        of the chain; the session, one that comes after it continued as new).
        """
        assert message is not None  # the validator refuses none
        key = message.idempotency_key
        if key is not None and self._digest_of(key) is not None:
            await workflow.wait_condition(lambda: self._answered(key) is not None)
            turn = self._answered(key)
            assert turn is not None
            return _repeat(turn)
        number = self._next
        self._next += 1
        digest = None if key is None else sessions.message_digest(message.message)
        self._queue.append(_Queued(number, message.message, workflow.now(), key, digest))
        await workflow.wait_condition(lambda: number in self._replies)
        return self._replies.pop(number)

    @send_message.validator
    def _validate_message(self, message: SessionMessage | None = None) -> None:
        if message is None:  # `temporal workflow update execute` without --input
            raise ValueError('send_message takes one JSON object, e.g. {"message": "Hello"}')
        key = message.idempotency_key
        earlier = None if key is None else self._digest_of(key)
        if earlier is not None:
            if earlier != sessions.message_digest(message.message):
                raise ApplicationError(
                    f"idempotency_key: {key!r} was sent before with another message; "
                    "a different message needs a new key",
                    type=IDEMPOTENCY_KEY_REUSED,
                    non_retryable=True,
                )
            return  # a repeat: answered from its turn, even once the session is closing
        if self._closing:
            raise ValueError(f"send_message: the session is closed ({self._close_reason})")

    def _digest_of(self, key: str) -> str | None:
        """The digest of the message sent with ``key`` (queued, answering or kept), if any."""
        for queued in self._queue:
            if queued.key == key:
                return queued.digest
        for turn in (*([self._current] if self._current else []), *self._history):
            if turn.idempotency_key == key:
                return turn.message_sha256
        return None

    def _answered(self, key: str) -> SessionTurn | None:
        return next((turn for turn in self._history if turn.idempotency_key == key), None)

    @workflow.signal(name="close")
    def close(self, *_payload: Any) -> None:
        """Close the session once the messages already sent are answered (no payload)."""
        if self._closing or self._close_asked:
            return
        if workflow.patched(CLOSE_AFTER_KEPT_PATCH):
            self._close_asked = True  # closing once this activation's updates are in
        else:
            self._closing = True
            self._close_reason = CLOSED_BY_SIGNAL

    async def _close_once_asked(self) -> None:
        await workflow.wait_condition(lambda: self._close_asked)
        if not self._closing:
            self._closing = True
            self._close_reason = CLOSED_BY_SIGNAL

    @workflow.query(name="history")
    def history(self) -> list[SessionTurn]:
        """The turns so far (the last TURNS_KEPT), the one being answered last."""
        return [*self._history, *([self._current] if self._current else [])]

    @workflow.query(name="status")
    def status(self) -> AgentStatus:
        """The session as a run's status: ``idle`` between messages, usage of all messages."""
        last = self._history[-1] if self._history else None
        return AgentStatus(
            state=self._state,
            step=self._usage.steps,
            usage=self._usage,
            budget=self._input.budget,
            reason=self._close_reason if self._state == "completed" else self._last_reason,
            model=self._input.model,
            transcript=self._conversation.transcript if self._conversation else None,
            turns=self._turns,
            queued=len(self._queue),
            last_reply=last.reply if last else None,
        )


_START = ConversationRef(transcript="", messages=0)
"""The first message's conversation: none yet (the run begins it, system prompt first)."""
