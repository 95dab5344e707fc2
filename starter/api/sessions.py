"""The HTTP API's session routes: open, send a message, status, events, approvals, close.

Like the run routes, a thin adapter over :class:`~onward.client.OnwardClient`;
a session is tenant-tagged when it opens and another tenant's session is
answered as a missing one (404).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from onward.client import OnwardClient, RunInfo
from onward.contracts import (
    AgentStatus,
    ApprovalDecision,
    ApprovalsDecided,
    SessionInput,
    SessionMessage,
    SessionReply,
    SessionTurn,
)
from onward.errors import InvalidInput, RunNotFound
from onward.session_client import new_session_id
from onward.sessions import run_id as message_run_id
from onward.starter.api import params
from onward.starter.api.errors import TooManyRequests, error_responses, located
from onward.starter.api.events import RunEvent, check_readable, run_events
from onward.starter.api.models import (
    ControlAnswer,
    RunSummary,
    SessionCreated,
    check_client_input,
    session_input,
)
from onward.starter.api.tenants import StreamTenant, Tenant, TenantGate

__all__ = ["EVENTS_PER_MESSAGE", "MAX_MESSAGE", "RunKind", "session_events", "session_routes"]

EVENTS_PER_MESSAGE = 1_000_000_000
"""A session event's id is ``message number * EVENTS_PER_MESSAGE + the run's event id``."""
MAX_MESSAGE = 2**62 // EVENTS_PER_MESSAGE
"""The highest message number an event id can name (event ids are below 2^62)."""
NEXT_MESSAGE_POLL_S = 0.5
"""How often the stream asks whether the next message's run has started."""
SESSION_ID = Path(min_length=1, max_length=200, pattern=r"^[^\s/]+$", description="the session")
_ERRORS = error_responses()

SessionId = Annotated[str, SESSION_ID]
RunKind = Literal["run", "session"]
"""What a route reads: a run (an agent workflow) or a session; the other kind is a 404."""
Owned = Callable[[str, str, RunKind], Awaitable[RunInfo | None]]


async def session_events(
    client: OnwardClient, session_id: str, message: int, after: int = 0
) -> AsyncIterator[RunEvent]:
    """The events of message ``message``'s run, then of each next message's, in order.

    Each event's data names its ``message``; ids go on increasing across
    messages, so ``Last-Event-ID`` resumes anywhere. Ends once the session is
    closed and has no later message.
    """
    while True:
        run_id = message_run_id(session_id, message)
        while True:
            try:
                await client.info(run_id)
                break
            except RunNotFound:
                if not (await client.info(session_id)).running:
                    return
                await asyncio.sleep(NEXT_MESSAGE_POLL_S)
        base = message * EVENTS_PER_MESSAGE
        stream = run_events(
            client.temporal,
            run_id,
            after=max(after - base, 0),
            outcome=lambda run_id=run_id: client.result(run_id),  # type: ignore[misc]
            converter=client.temporal.data_converter,
        )
        async for item in stream:
            yield RunEvent(item.id + base, item.event, {**item.data, "message": message})
        message += 1


async def _sent_before(client: OnwardClient, session_id: str, key: str) -> bool:
    """Whether the session has a turn (answered, or being answered) sent with ``key``."""
    return any(turn.idempotency_key == key for turn in await client.session_history(session_id))


def session_routes(
    onward: Callable[[], OnwardClient], gate: Callable[[], TenantGate], owned: Owned
) -> APIRouter:
    """The ``/v1/sessions`` routes, over the app's client, tenant gate and ownership check."""
    from onward.starter.api.app import (
        LINK_HEADER,
        LOCATION_HEADER,
        next_page_link,
        refuse_fields,
        summary,
        with_keepalive,
    )

    router = APIRouter()

    @router.post(
        "/v1/sessions",
        status_code=201,
        response_model=SessionCreated,
        responses={201: {"headers": LOCATION_HEADER}, **error_responses(limited=True)},
    )
    async def open_session(
        body: SessionInput, tenant: Tenant, response: Response
    ) -> SessionCreated:
        """Open a session (the session input: ``AgentInput``'s fields but the prompt)."""
        capped = gate().limits.max_cost_usd_per_day is not None
        check_client_input(body, tenant, "session", capped)
        session = session_input(body, tenant)
        session_id = new_session_id()
        async with gate().lock(tenant):
            remaining = await gate().check(tenant)
            if remaining is not None and (
                session.budget.max_cost_usd is None or session.budget.max_cost_usd > remaining
            ):
                budget = session.budget.model_copy(update={"max_cost_usd": round(remaining, 8)})
                session = session.model_copy(update={"budget": budget})
            # Not counted as an open run itself (it is none, and visibility does not
            # list it as one): each message's run is, when the message is sent.
            await onward().open_session(session, session_id, tag_tenant=True)
            gate().opened(tenant, session_id)
        url = f"/v1/sessions/{session_id}"
        response.headers["Location"] = url
        return SessionCreated(
            id=session_id,
            status_url=url,
            messages_url=f"{url}/messages",
            events_url=f"{url}/events",
            close_url=f"{url}/close",
        )

    @router.post(
        "/v1/sessions/{session_id}/messages",
        response_model=SessionReply,
        responses=error_responses(limited=True),
    )
    async def send_message(
        session_id: SessionId, tenant: Tenant, body: SessionMessage
    ) -> SessionReply:
        """Send a user message (``{"message"}``); answers the reply once the agent has one.

        With an ``idempotency_key``, the same message sent again is answered once:
        each request gets the first one's reply; another message with the key is a 422.
        """
        await owned(session_id, tenant, "session")
        # The message's run is one more run of the tenant's: its limits apply. Until
        # visibility lists that run, the session (running while it answers) stands in
        # for it, so messages sent at once cannot all take the last slot.
        async with gate().lock(tenant):
            try:
                await gate().check(tenant, session=session_id)
            except TooManyRequests:
                # A repeat of a keyed message starts no run: its reply, maybe paid
                # for already, is not held back by the limits it was sent under.
                key = body.idempotency_key
                if key is None or not await _sent_before(onward(), session_id, key):
                    raise
            else:
                gate().started(tenant, session_id)
        with located("body"):
            reply = await onward().send_message(
                session_id, body.message, idempotency_key=body.idempotency_key
            )
        gate().answered(tenant, session_id, reply.run_id)
        return reply

    @router.get(
        "/v1/sessions",
        response_model=list[RunSummary],
        responses={200: {"headers": LINK_HEADER}, **_ERRORS},
    )
    async def list_sessions(
        request: Request,
        response: Response,
        tenant: Tenant,
        open: Annotated[
            bool | None, Query(description="true: open sessions only; false: closed ones")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 20,
        page_token: params.PageToken = None,
    ) -> list[RunSummary]:
        """The tenant's sessions, open ones first (newest first), then closed ones:
        ``status`` is ``open`` or how the session closed. More than ``limit``: ``Link``
        (``rel="next"``) is the next page."""
        with located("query"):
            page = await onward().list_sessions(
                open=open, limit=limit, tenant=tenant, page_token=page_token
            )
        next_page_link(request, response, page)
        return [summary(row) for row in page.rows]

    @router.get("/v1/sessions/{session_id}", response_model=AgentStatus, responses=_ERRORS)
    async def session_status(session_id: SessionId, tenant: Tenant) -> AgentStatus:
        """State (``idle`` between messages), messages answered, usage of the whole session."""
        await owned(session_id, tenant, "session")
        return await onward().session_status(session_id)

    @router.get(
        "/v1/sessions/{session_id}/history", response_model=list[SessionTurn], responses=_ERRORS
    )
    async def history(session_id: SessionId, tenant: Tenant) -> list[SessionTurn]:
        """The turns: each message, its reply, status and usage (the last 100)."""
        await owned(session_id, tenant, "session")
        return await onward().session_history(session_id)

    @router.get(
        "/v1/sessions/{session_id}/events",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}, **_ERRORS},
    )
    async def events(
        session_id: SessionId,
        tenant: StreamTenant,
        message: Annotated[
            int | None,
            Query(
                ge=1,
                le=MAX_MESSAGE,
                description="from this message (default: current or next)",
            ),
        ] = None,
        last_event_id: Annotated[str | None, Header(max_length=40)] = None,
        after: Annotated[
            int | None, Query(ge=0, le=params.MAX_EVENT_ID, description="like Last-Event-ID")
        ] = None,
    ) -> StreamingResponse:
        """Server-Sent Events of each message's run, in order, from the current (or next) one."""
        # Temporal is asked before the 200 even when the tenant is known (see the run's).
        await owned(session_id, tenant, "session") or await onward().info(session_id)
        await check_readable(onward().temporal, session_id, onward().temporal.data_converter)
        start = params.last_event_id(last_event_id, after)
        if 0 < start < EVENTS_PER_MESSAGE:
            # Message 0 has no run: the stream would wait for it for as long as the
            # session is open. Every id it sends is message * 10^9 + the run's id.
            name = "after" if after is not None else "Last-Event-ID"
            raise InvalidInput.at(
                params.event_id_loc(name),
                f"not an event id of a session's stream (message * {EVENTS_PER_MESSAGE:,} "
                "+ the run's event id); 0 or none starts at the current or next message, "
                "?message=1 at the first",
                name=name,
            )
        if start:
            first = start // EVENTS_PER_MESSAGE
        elif message is not None:
            first = message
        else:
            first = ((await onward().session_status(session_id)).turns or 0) + 1
        stream = session_events(onward(), session_id, first, start)
        return StreamingResponse(
            with_keepalive(stream),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @router.post("/v1/sessions/{session_id}/close", response_model=ControlAnswer, responses=_ERRORS)
    async def close(session_id: SessionId, tenant: Tenant, request: Request) -> ControlAnswer:
        """Close the session once the messages already sent are answered (no body)."""
        await refuse_fields(request, "close")  # a reason would be dropped unsaid
        await owned(session_id, tenant, "session")
        await onward().close_session(session_id)
        return ControlAnswer(id=session_id)

    @router.post(
        "/v1/sessions/{session_id}/approve", response_model=ApprovalsDecided, responses=_ERRORS
    )
    async def approve(
        session_id: SessionId, tenant: Tenant, body: ApprovalDecision | None = None
    ) -> ApprovalsDecided:
        """Let the tool calls of the message being answered run, as for a run (its
        ``{"call_id", "note"}``); 409 when nothing (or not that call) waits."""
        await owned(session_id, tenant, "session")
        decision = body or ApprovalDecision()
        return await onward().approve(session_id, decision.call_id, decision.note)

    @router.post(
        "/v1/sessions/{session_id}/reject", response_model=ApprovalsDecided, responses=_ERRORS
    )
    async def reject(
        session_id: SessionId, tenant: Tenant, body: ApprovalDecision | None = None
    ) -> ApprovalsDecided:
        """Refuse the tool calls of the message being answered, as for a run; 409 when
        nothing (or not that call) waits."""
        await owned(session_id, tenant, "session")
        decision = body or ApprovalDecision()
        return await onward().reject(session_id, decision.call_id, decision.note)

    return router
