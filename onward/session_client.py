"""The session half of :class:`onward.client.OnwardClient`: open, send, read, close.

A session is one ``SessionWorkflow``; each ``send_message`` is a Temporal
update that returns once the message's run has ended, so a reply comes back
on the same call, whichever worker answered it.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel
from temporalio.client import (
    Client,
    RPCTimeoutOrCancelledError,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateStage,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from onward import sessions
from onward.contracts import (
    FINAL_STATES,
    SESSION_WORKFLOW,
    AgentResult,
    AgentStatus,
    PendingApproval,
    SessionInput,
    SessionMessage,
    SessionReply,
    SessionResult,
    SessionTurn,
)
from onward.errors import (
    IDEMPOTENCY_KEY_REUSED,
    IdempotencyKeyReused,
    InvalidInput,
    MessageNotTaken,
    NoWorker,
    OnwardError,
    RequestRejected,
    RunEnded,
    SessionClosed,
    TemporalError,
    UpdateNotTaken,
    validated,
)
from onward.starter.follow import QUERY_TIMEOUT, StatusSource
from onward.starter.listing import RunPage, session_page
from onward.workflows import SessionWorkflow

if TYPE_CHECKING:  # the client imports this module
    from onward.client import RunInfo

__all__ = ["SessionMethods", "new_session_id"]

SessionHandle = WorkflowHandle[SessionWorkflow, SessionResult]
WORKER_GRACE_S = 3.0
"""How long ``send_message``, ``session_status`` and ``session_history`` wait for a worker
to show before raising NoWorker (one started a moment ago polls a moment later)."""
WORKER_CHECK_INTERVAL_S = 0.2
MESSAGE_TAKEN_WITHIN_S = 10.0
"""How long ``send_message`` waits for a worker to take the message before raising
MessageNotTaken: a worker killed a moment ago still counts as a poller for up to 75 s.
Once taken, the reply is waited for as long as the agent takes."""


def new_session_id() -> str:
    """A fresh session id: ``session-1f3a9c0b2d4e``."""
    return f"session-{uuid.uuid4().hex[:12]}"


class _Client(Protocol):
    """What the session methods need of :class:`~onward.client.OnwardClient`."""

    task_queue: str

    @property
    def temporal(self) -> Client: ...

    def _translated(self, run_id: str | None = None) -> contextlib.AbstractContextManager[None]: ...

    async def _require_worker(self, run_id: str, info: RunInfo | None = None) -> RunInfo: ...

    async def info(self, run_id: str) -> RunInfo: ...

    async def _start_workflow(
        self, run: Any, arg: BaseModel, workflow_id: str, tenant_tag: str | None, **options: Any
    ) -> None: ...

    async def status(self, run_id: str) -> AgentStatus: ...

    async def status_and_source(self, run_id: str) -> tuple[AgentStatus, StatusSource]: ...

    async def result(self, run_id: str) -> AgentResult: ...

    def _handle(self, run_id: str) -> WorkflowHandle[Any, Any]: ...


async def _session_info(client: _Client, session_id: str) -> RunInfo:
    """The session's info; a run's id is refused (it has no messages to take).

    Raises:
        InvalidInput: ``session_id`` is a run's.
        RunNotFound: nothing has this id.
    """
    info = await client.info(session_id)
    if info.workflow_type != SESSION_WORKFLOW:
        raise InvalidInput(f"{session_id} is a run, not a session: start one with `onward chat`")
    return info


async def _worker_in_grace(client: _Client, session_id: str, info: RunInfo) -> None:
    """Raise NoWorker unless a worker polls the session's queue within WORKER_GRACE_S.

    An update waits for a worker as long as none polls: better to say so. A worker
    that has just started shows as a poller a moment after its first poll.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WORKER_GRACE_S
    while True:
        try:
            await client._require_worker(session_id, info)
            return
        except NoWorker:
            if loop.time() >= deadline:
                raise
            await asyncio.sleep(WORKER_CHECK_INTERVAL_S)


@contextlib.contextmanager
def not_taken(error: Callable[[], UpdateNotTaken]) -> Iterator[None]:
    """An update no worker took (or answered) in time as ``error()``.

    The server keeps such an update until a worker takes the run up (a worker
    killed a moment ago still looks like a poller), so "failed" would invite
    sending it again, applied twice. The SDK reports a caller's own cancel
    (Ctrl-C, a ``wait_for``) as it reports the server's deadline: that stays a
    cancel. Other RPC errors are left to the caller.
    """
    try:
        yield
    except (TimeoutError, RPCTimeoutOrCancelledError, RPCError) as err:
        if isinstance(err, RPCError) and err.status not in _UPDATE_DEADLINES:
            raise
        if _cancelling():
            raise asyncio.CancelledError from err
        raise error() from err


def _cancelling() -> bool:
    """Whether the running task is being cancelled (False outside an event loop)."""
    try:
        task = asyncio.current_task()
    except RuntimeError:
        return False
    return task is not None and task.cancelling() > 0


_UPDATE_DEADLINES = (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED)


def _message_not_taken(session_id: str, keyed: bool) -> MessageNotTaken:
    again = (
        "send it again with the same idempotency_key to wait for its reply (it is answered once)"
        if keyed
        else f"check the session's turns (`onward status {session_id}`) before sending it again"
    )
    return MessageNotTaken(
        f"no worker took the message to {session_id} within {MESSAGE_TAKEN_WITHIN_S:g} s "
        "(a worker stopped a moment ago still looks like one for up to 75 s); the server "
        "keeps it, and the next worker to take the session up answers it (a close sent "
        f"after it waits for it): {again}",
        repeatable=keyed,
    )


def _handle(client: Client, session_id: str) -> SessionHandle:
    return client.get_workflow_handle_for(SessionWorkflow.run, session_id)


def _cause(err: BaseException) -> str:
    cause = err.__cause__ or getattr(err, "cause", None)
    if isinstance(cause, ApplicationError):
        return cause.message
    return str(cause or err)


class SessionMethods:
    """Multi-turn sessions; mixed into :class:`~onward.client.OnwardClient`."""

    async def open_session(
        self: _Client,
        input: SessionInput | Mapping[str, Any],
        id: str | None = None,
        *,
        tag_tenant: bool = False,
    ) -> str:
        """Start a session on this client's task queue; return its id.

        ``tag_tenant`` sets the ``OnwardTenant`` search attribute at once, as
        :meth:`~onward.client.OnwardClient.start` does for runs.

        Raises:
            InvalidInput: ``input`` is not a valid :class:`~onward.contracts.SessionInput`,
                or ``id`` is blank.
            RunAlreadyExists: a session (or run) with ``id`` is running.
        """
        input = validated(SessionInput, input)
        if input.carry is not None:
            raise InvalidInput("carry: set by the session itself, not by clients")
        if id is not None and not id.strip():
            raise InvalidInput("id: must not be blank (leave it out for a new one)")
        session_id = id or new_session_id()
        await self._start_workflow(
            SessionWorkflow.run,
            input,
            session_id,
            input.tenant if tag_tenant else None,
            static_summary=f"session ({input.model})",
        )
        return session_id

    async def list_sessions(
        self: _Client,
        *,
        open: bool | None = None,
        limit: int = 20,
        tenant: str | None = None,
        page_token: str | None = None,
    ) -> RunPage:
        """Sessions, open ones first (newest first), then closed ones (latest closed first),
        a page at a time (no worker needed).

        A row's ``status`` is ``open``, or how the session closed (``completed``,
        ``cancelled``, ...); ``open`` keeps only the open (True) or closed (False) ones;
        ``page_token`` is the last page's ``next_page_token``, given with the same filters.

        Raises:
            InvalidInput: ``page_token`` is no token a page gave.
        """
        with self._translated():
            return await session_page(
                self.temporal, open=open, limit=limit, tenant=tenant, page_token=page_token
            )

    async def send_message(
        self: _Client, session_id: str, message: str, *, idempotency_key: str | None = None
    ) -> SessionReply:
        """Send a user message; return the reply once the agent has answered it.

        Messages sent while one is being answered wait their turn. With an
        ``idempotency_key``, sending the same message again (after a
        :class:`~onward.errors.MessageNotTaken`, a lost connection, a crash of the
        caller) is answered once: every send gets the first one's reply, while the
        session keeps the turn (its last 100).

        Raises:
            InvalidInput: the message is blank, or the key is not 1-200 characters.
            IdempotencyKeyReused: the key came before with another message.
            RunNotFound: no session has this id.
            SessionClosed: the session is closed.
            NoWorker: no worker polls the session's task queue (nothing was sent).
            MessageNotTaken: no worker took the message in time; the server keeps it,
                and the next worker answers it (a close sent after it waits for it).
        """
        fields = {"message": message}
        update_id = None
        if idempotency_key is not None:
            fields["idempotency_key"] = idempotency_key
            update_id = sessions.message_update_id(idempotency_key, message)
        request = validated(SessionMessage, fields)
        await _worker_in_grace(self, session_id, await _session_info(self, session_id))
        handle = _handle(self.temporal, session_id)
        with _closed_as(session_id), self._translated(session_id):
            try:
                with not_taken(lambda: _message_not_taken(session_id, update_id is not None)):
                    async with asyncio.timeout(MESSAGE_TAKEN_WITHIN_S):
                        taken = await handle.start_update(
                            SessionWorkflow.send_message,
                            request,
                            id=update_id,
                            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                        )
                # Taken: the reply comes when the agent is done, however long that is.
                # The SDK types an async update's result as its coroutine (sdk-python typing).
                reply: SessionReply = await taken.result()  # type: ignore[assignment]
            except WorkflowUpdateFailedError as err:
                raise _refused(session_id, err) from err
        return await _whole(self, reply)

    async def session_history(self: _Client, session_id: str) -> list[SessionTurn]:
        """The session's turns: each message, its reply and its usage (the last 100).

        Raises:
            NoWorker: no worker polls the session's task queue, or none answered in time.
        """
        # A query waits for a worker as long as the server lets it (about 30 s): say so.
        await _worker_in_grace(self, session_id, await _session_info(self, session_id))
        handle = _handle(self.temporal, session_id)
        with self._translated(session_id):
            return await handle.query(SessionWorkflow.history, rpc_timeout=QUERY_TIMEOUT)

    async def session_status(self: _Client, session_id: str) -> AgentStatus:
        """The session's state (``idle`` between messages) and the usage of all its messages.

        While a message's run waits for approval or is paused, the session shows that
        state and the run's ``pending_approvals``. A closed session's is read from its
        history, with no worker.

        Raises:
            NoWorker: the session is open and no worker polls its task queue, or none
                answered in time.
        """
        info = await self.info(session_id)
        if not info.running:
            return await self.status(session_id)
        await _worker_in_grace(self, session_id, info)
        handle = _handle(self.temporal, session_id)
        with self._translated(session_id):
            status = await handle.query(SessionWorkflow.status, rpc_timeout=QUERY_TIMEOUT)
        return await with_message_run(self, session_id, status)

    async def close_session(self: _Client, session_id: str) -> None:
        """Close the session once the messages already sent are answered.

        Raises:
            SessionClosed: the session has closed already.
        """
        await _session_info(self, session_id)
        handle = _handle(self.temporal, session_id)
        with _closed_as(session_id), self._translated(session_id):
            await handle.signal(SessionWorkflow.close)

    async def session_result(self: _Client, session_id: str) -> SessionResult:
        """Wait for the session to close; its usage and how many messages it answered."""
        handle = _handle(self.temporal, session_id)
        with self._translated(session_id):
            try:
                return await handle.result()
            except WorkflowFailureError as err:
                raise TemporalError(
                    f"session {session_id} failed: {_cause(err)}", "FAILED"
                ) from err


def _refused(session_id: str, err: WorkflowUpdateFailedError) -> OnwardError:
    """Why the session refused a message: closed (its validator's ValueError), the key
    reused, or anything else (a worker older than the message's fields, say)."""
    cause = err.cause
    if isinstance(cause, ApplicationError):
        if cause.type == IDEMPOTENCY_KEY_REUSED:
            problem = {
                "loc": ("idempotency_key",),
                "msg": "was sent before with another message",
                "type": "value_error",
            }
            return IdempotencyKeyReused(cause.message, [problem])
        if cause.type != "ValueError":
            return RequestRejected(f"session {session_id} refused the message: {cause.message}")
    return SessionClosed(session_id, _cause(err))


async def _whole(client: _Client, reply: SessionReply) -> SessionReply:
    """A repeated message's reply with its run's whole answer, object and steps.

    A session that continued as new answers a repeat from the turn it keeps,
    whose reply is cut short, whose object is left out when it is long, and
    which has no steps; the message's run has them. A
    message whose run failed without a result (or whose run id another run
    took) used nothing: there is nothing of its own to read.
    """
    if not reply.repeated or reply.run_id is None:
        return reply
    if reply.status == "failed" and reply.usage.model_calls == 0:
        return reply
    try:
        result = await client.result(reply.run_id)
    except OnwardError:  # the run is gone (retention): the turn's reply is what is left
        return reply
    return reply.model_copy(
        update={
            "reply": result.output or "",
            "steps": result.steps,
            "structured_output": result.structured_output,
        }
    )


async def with_message_run(client: _Client, session_id: str, status: AgentStatus) -> AgentStatus:
    """``status`` of a session, with the wait and the running calls of the message run
    it is answering, if any.

    A session cannot query its message's run, so the client asks the run itself.
    """
    if status.turns is None or status.state != "running":
        return status
    try:
        run = await client.status(answering(session_id, status))
    except OnwardError:  # not started yet, or just ended
        return status
    update: dict[str, object] = {}
    if run.current_step is not None:
        update["current_step"] = run.current_step
    if run.state in ("awaiting_approval", "paused"):
        update |= {"state": run.state, "pending_approvals": run.pending_approvals}
    return status.model_copy(update=update)


def answering(session_id: str, status: AgentStatus) -> str:
    """The id of the run answering the session's current message."""
    return sessions.run_id(session_id, (status.turns or 0) + 1)


async def with_sub_agents(client: _Client, status: AgentStatus, children: list[str]) -> AgentStatus:
    """``status`` of a run not ended, with the calls its sub-agents wait to have approved.

    A run waits for its sub-agent as for any call, so its own state reads
    ``running`` (or ``awaiting_approval`` for calls of its own, ``paused``...); the
    client asks the sub-agents (its pending ``children``, and theirs) and lists their
    waiting calls after its own, each with the ``run_id`` it belongs to.
    """
    if status.turns is not None or status.state in FINAL_STATES or not children:
        return status
    waiting: list[PendingApproval] = []
    for child in children:
        try:
            child_status = await client.status(child)
        except OnwardError:  # just ended, or no worker answered
            continue
        waiting += [
            call if call.run_id else call.model_copy(update={"run_id": child})
            for call in child_status.pending_approvals
        ]
    if not waiting:
        return status
    state = "awaiting_approval" if status.state == "running" else status.state
    pending = [*status.pending_approvals, *waiting]
    return status.model_copy(update={"state": state, "pending_approvals": pending})


async def approval_target(client: _Client, run: RunInfo, call_id: str | None = None) -> str:
    """Where approvals for ``run`` go: the run itself, a session's current message
    run, or the sub-agent whose call waits (the one with ``call_id``, or the only one).

    Raises:
        RequestRejected: a session whose current message waits for no approval, or
            calls of several runs (the run, its sub-agents) wait and no ``call_id``
            picks one.
        NoWorker: no worker answered for a run with sub-agents running: which of
            them the call waits in cannot be read (nothing is sent).
    """
    run_id = run.run_id
    status, source = await client.status_and_source(run_id)
    if source != "query" and run.workflow_type != SESSION_WORKFLOW:
        description = await client._handle(run_id).describe()
        if description.raw_description.pending_children:
            # Sent to the run, a sub-agent's decision would be refused there once a
            # worker took it up, and the sub-agent would wait on: say so instead.
            raise NoWorker(
                f"no worker answered for {run_id}, which has sub-agents running: which "
                "run the call waits in cannot be read, so nothing was sent; decide it once "
                "a worker runs (or by the sub-agent's own id)",
                run.task_queue,
            )
    if run.workflow_type == SESSION_WORKFLOW:
        if status.state != "awaiting_approval":
            raise RequestRejected(f"session {run_id}: no tool call waits for approval")
        # The message run answers for its own calls; its sub-agents' calls name their run.
        run_id = answering(run_id, status)
    calls = status.pending_approvals
    if call_id is not None:
        calls = [call for call in calls if call.call_id == call_id]
        if any(call.run_id is None for call in calls):
            return run_id  # the run's own call: a sub-agent's of that id is named by its run
    owners = {call.run_id or run_id for call in calls}
    if len(owners) > 1:
        raise RequestRejected(
            f"calls of several runs wait ({', '.join(sorted(owners))}: the run and its "
            "sub-agents): name one call (--call), or decide each by its run's id"
        )
    return owners.pop() if owners else run_id


@contextlib.contextmanager
def _closed_as(session_id: str) -> Iterator[None]:
    """A message to a session that has ended is a closed session, not an ended run."""
    try:
        yield
    except RunEnded as err:
        raise SessionClosed(session_id) from err
