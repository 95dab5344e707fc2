"""The HTTP API's routes: a thin adapter over :class:`~onward.client.OnwardClient`.

Each route authenticates the tenant, checks the run is the tenant's, calls
the client and answers with a contract model; errors become statuses in
:mod:`onward.starter.api.errors`. Serve it with uvicorn (``onward api``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

from fastapi import FastAPI, Header, Path, Query, Request, Response, WebSocket
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import StreamingResponse
from pydantic import BeforeValidator
from temporalio.service import RPCError

from onward.api_keys import ApiKeys
from onward.client import OnwardClient, RunInfo, fork_memo, new_run_id
from onward.contracts import (
    AGENT_WORKFLOW,
    SESSION_WORKFLOW,
    AgentInput,
    AgentResult,
    AgentState,
    AgentStatus,
    ApprovalDecision,
    ApprovalsDecided,
    Artifact,
    Budget,
    BudgetExtension,
    StepRecord,
)
from onward.errors import (
    IdempotencyKeyReused,
    InvalidInput,
    OnwardError,
    RunAlreadyExists,
    RunNotFound,
)
from onward.replay import RunExport
from onward.starter.api import live, params
from onward.starter.api.controls import (
    CONTROL_BODIES,
    apply_control,
    control_body,
    refuse_extra,
)
from onward.starter.api.errors import (
    ApiProblem,
    BodyLimit,
    error_responses,
    install_error_handlers,
    located,
    parse_json,
    status_of,
)
from onward.starter.api.events import RunEvent, check_readable, run_events
from onward.starter.api.live import (
    CLOSE_NOT_FOUND,
    CLOSE_TRY_AGAIN,
    CLOSE_UNAUTHORIZED,
    error_message,
    serve_socket,
)
from onward.starter.api.models import (
    SET_BY_ONWARD,
    CancelBody,
    ControlAnswer,
    ForkRequest,
    RunCreated,
    RunRequest,
    RunSummary,
    StateAnswer,
    SteerBody,
    check_client_input,
)
from onward.starter.api.origins import CORS_HEADERS, OriginGate
from onward.starter.api.schedules import schedule_routes
from onward.starter.api.sessions import RunKind, session_routes
from onward.starter.api.tenants import Limits, StreamTenant, Tenant, TenantGate, authenticate
from onward.starter.listing import RunPage, RunRow

__all__ = ["KEEPALIVE_S", "MAX_BODY_BYTES", "MAX_WAIT_S", "ApiSettings", "api_app"]

MAX_BODY_BYTES = 1024 * 1024
"""Larger request bodies are refused with 413 (a run's input must fit Temporal's 2 MB anyway)."""
MAX_WAIT_S = 60.0
"""The longest ``GET /v1/runs/{id}/result?wait=`` long-poll."""
KEEPALIVE_S = 15.0
"""An event stream with nothing new sends a comment this often, so proxies keep it open."""
RUN_ID = Path(min_length=1, max_length=255, pattern=r"^[^\s/]+$", description="the run's id")
_TENANT_CACHE = 10_000
"""Run tenants remembered (a run's tenant tag never changes)."""
_WORKFLOW_OF: dict[str, str] = {"run": AGENT_WORKFLOW, "session": SESSION_WORKFLOW}
"""The workflow type behind each kind of route."""

log = logging.getLogger("onward.api")
_ERRORS = error_responses()
LINK_HEADER = {
    "Link": {
        "description": '<the next page\'s URL>; rel="next", when more match',
        "schema": {"type": "string"},
    }
}
"""The header of a list's page (:func:`next_page_link`)."""
LOCATION_HEADER = {
    "Location": {"description": "the status URL of what was made", "schema": {"type": "string"}}
}


@dataclass
class ApiSettings:
    """How the API is set up.

    Attributes:
        keys: tenants by API key; None: no keys file, every request is the default tenant.
        limits: what each tenant may use.
        connect: makes the client when the app starts (unless ``api_app`` got one).
        cors_origins: origins (:func:`~.origins.web_origin`) of web apps allowed to call the
            API from a browser; ``*``: any (refused with no keys). Others are refused (403).
    """

    keys: ApiKeys | None = None
    limits: Limits = field(default_factory=Limits)
    connect: Callable[[], Awaitable[OnwardClient]] | None = None
    cors_origins: Sequence[str] = ()

    def __post_init__(self) -> None:
        if "*" in self.cors_origins and self.keys is None:
            raise ValueError(
                "a CORS origin of * with no API keys would let any web page drive the API; "
                "name the origins, or make keys (ONWARD_API_KEYS_FILE)"
            )


REQUEST_MEMO = "onward.request_sha256"
"""Memo of a run started with an idempotency key: the digest of the request it came with."""


def idempotent_run_id(tenant: str, key: str) -> str:
    """The run id an idempotency key stands for: the same per tenant, different across tenants."""
    digest = hashlib.sha256(f"{tenant}\0{key}".encode()).hexdigest()[:24]
    return f"agent-{digest}"


def sse(item: RunEvent) -> str:
    return f"id: {item.id}\nevent: {item.event}\ndata: {json.dumps(item.data)}\n\n"


async def with_keepalive(events: AsyncIterator[RunEvent]) -> AsyncIterator[str]:
    """The events as SSE text, with a comment whenever nothing happened for a while."""
    queue: asyncio.Queue[RunEvent | None] = asyncio.Queue(maxsize=256)

    async def produce() -> None:
        try:
            async for item in events:
                await queue.put(item)
        except (OnwardError, RPCError) as err:
            # The client resumes with Last-Event-ID; nothing is lost by ending here.
            log.warning("event stream ended early: %s", err)
        finally:
            # The end mark must not wait: when the client has gone, nobody reads the queue.
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)

    producer = asyncio.create_task(produce())
    try:
        yield "retry: 1000\n\n"
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                yield ": keepalive\n\n"
                continue
            if item is None:
                return
            yield sse(item)
    finally:
        producer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await producer


RunId = Annotated[str, RUN_ID]


async def refuse_fields(request: Request, kind: str) -> None:
    """Refuse a body with fields for a control that takes none, as the WebSocket does.

    An empty body, ``{}`` and ``null`` are no fields.
    """
    raw = (await request.body()).strip()
    if not raw:
        return
    with located("body"):
        fields = parse_json(raw, "the body")
        if fields is None:
            return
        if not isinstance(fields, dict):
            raise InvalidInput.at((), "takes no body", name=kind)
        if kind in CONTROL_BODIES:
            control_body(kind, fields)
        else:  # a session's close: no control of a run's
            refuse_extra(kind, fields)


def _capped(agent: AgentInput, remaining_usd: float) -> AgentInput:
    """``agent`` with ``max_cost_usd`` no higher than what its tenant may still spend."""
    asked = agent.budget.max_cost_usd
    if asked is not None and asked <= remaining_usd:
        return agent
    budget = agent.budget.model_copy(update={"max_cost_usd": round(remaining_usd, 8)})
    return agent.model_copy(update={"budget": budget})


SOCKET_PATH = "/v1/runs/{run_id}/ws"


def _socket_operation(events: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI entry of the run's WebSocket, which FastAPI leaves out of the document.

    OpenAPI has no WebSockets: it is described as the GET that opens one (the
    upgrade), with the run's ``/events`` parameters and security.
    """
    # run_id, after, Last-Event-ID; api_key once, said of the socket (a name twice in one
    # operation is an invalid document).
    parameters = [dict(item) for item in events["parameters"] if item["name"] != "api_key"]
    parameters.append(
        {
            "name": "api_key",
            "in": "query",
            "required": False,
            "schema": {"type": "string"},
            "description": "the bearer key, for clients that cannot set headers (a browser's "
            "WebSocket); the Authorization header wins",
        }
    )
    _, _, description = (live.__doc__ or "").partition("\n\n")
    operation = {
        "summary": "Socket",
        "description": "The run's events and its controls on one WebSocket.\n\n"
        + description.strip(),
        "operationId": "socket_v1_runs__run_id__ws_get",
        "parameters": parameters,
        "responses": {
            "101": {
                "description": "Switching Protocols. A key or run refused after the upgrade "
                'is sent as {"type": "error", "status", "error"} and the socket closed '
                f"with {CLOSE_UNAUTHORIZED} (401), {CLOSE_NOT_FOUND} (404), "
                f"{CLOSE_TRY_AGAIN} (503: try again later) or 1008."
            }
        },
    }
    if "security" in events:
        operation["security"] = events["security"]
    return {"get": operation}


_INTERNAL_FIELDS = {
    "RunRequest": tuple(SET_BY_ONWARD),
    "ScheduledInput": tuple(SET_BY_ONWARD),
    "SessionInput": ("carry",),
    # A schedule's input, as GET /v1/schedules/{id} answers it: what its runs start with.
    "AgentInput": tuple(SET_BY_ONWARD),
}
"""Input fields Onward sets for itself, which ``POST /v1/runs``, ``/v1/sessions`` and
``/v1/schedules`` refuse (and a schedule's runs do not start with)."""


_REF = "#/components/schemas/"


def _referenced(paths: dict[str, Any], schemas: dict[str, Any]) -> set[str]:
    """The component schemas the operations use, directly or through other schemas."""
    found: set[str] = set()
    pending: list[Any] = [paths]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(_REF):
                name = ref.removeprefix(_REF)
                if name not in found and name in schemas:
                    found.add(name)
                    pending.append(schemas[name])
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return found


def _openapi(app: FastAPI, secured: bool) -> None:
    """The document FastAPI builds, with the WebSocket; without keys, asking for none."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            paths = document.setdefault("paths", {})
            events = paths.get("/v1/runs/{run_id}/events", {}).get("get")
            if events is not None:
                paths[SOCKET_PATH] = _socket_operation(events)
            schemas = document.get("components", {}).get("schemas", {})
            for model, fields in _INTERNAL_FIELDS.items():
                # Set by Onward itself (a continued run, a sub-agent): the API refuses
                # them, so a client generated from the document is not offered them.
                properties = schemas.get(model, {}).get("properties", {})
                for name in fields:
                    properties.pop(name, None)
            for name in set(schemas) - _referenced(paths, schemas):
                del schemas[name]  # reached only through those fields (AgentCarry ...)
            if not secured:  # no keys file: none is checked
                for path in paths.values():
                    for operation in path.values():
                        operation.pop("security", None)
                document.get("components", {}).pop("securitySchemes", None)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def next_page_link(request: Request, response: Response, page: RunPage) -> None:
    """``Link: <this query with the next page's token>; rel="next"``, when there is one."""
    if page.next_page_token is not None:
        # Relative (RFC 8288): behind a proxy the API's own host is not the client's.
        following = request.url.include_query_params(page_token=page.next_page_token)
        response.headers["Link"] = f'<{following.path}?{following.query}>; rel="next"'


def summary(row: RunRow) -> RunSummary:
    """A list row as the API answers it."""
    return RunSummary(
        id=row.workflow_id,
        status=row.status,
        model=row.model,
        steps=row.steps,
        tokens=row.tokens,
        cost_usd=row.cost_usd,
        start_time=row.start_time,
        close_time=row.close_time,
    )


def api_app(settings: ApiSettings, client: OnwardClient | None = None) -> FastAPI:
    """The API's ASGI app; it connects through ``settings.connect`` unless given a client."""
    state: dict[str, Any] = {"client": client}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if state["client"] is None:
            if settings.connect is None:
                raise RuntimeError("api_app needs a client or settings.connect")
            state["client"] = await settings.connect()
        state["gate"] = TenantGate(state["client"], settings.limits)
        yield

    app = FastAPI(
        title="Onward API",
        summary="Durable AI agent runs on Temporal",
        version="1",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    # Added last, so outermost: errors and refusals carry the CORS headers too.
    app.add_middleware(
        OriginGate, allowed=settings.cors_origins, loopback_only=settings.keys is None
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=CORS_HEADERS,
            expose_headers=["Link", "Location", "Retry-After"],
            max_age=600,
        )
    install_error_handlers(app)
    _openapi(app, secured=settings.keys is not None)
    tenants_of_runs: dict[str, tuple[str, str]] = {}

    def onward() -> OnwardClient:
        found: OnwardClient = state["client"]
        return found

    def gate() -> TenantGate:
        if "gate" not in state:  # the app is used without its lifespan (e.g. ASGITransport)
            state["gate"] = TenantGate(onward(), settings.limits)
        found: TenantGate = state["gate"]
        return found

    async def owned(run_id: str, tenant: str, kind: RunKind = "run") -> RunInfo | None:
        """Raise RunNotFound unless ``run_id`` is ``tenant``'s and of ``kind`` (a session's
        id is no run of the run routes, nor a run's a session); its info when it was read."""
        known = tenants_of_runs.get(run_id)
        info: RunInfo | None = None
        if known is None:
            info = await onward().info(run_id)
            known = (info.tenant or "", info.workflow_type)
            if info.tenant is not None:  # an untagged run may be tagged later: ask again then
                if len(tenants_of_runs) >= _TENANT_CACHE:
                    tenants_of_runs.clear()
                tenants_of_runs[run_id] = known
        if known != (tenant, _WORKFLOW_OF[kind]):
            raise RunNotFound(run_id)
        return info

    def events_of(run_id: str, after: int) -> AsyncIterator[RunEvent]:
        client = onward()
        return run_events(
            client.temporal,
            run_id,
            after=after,
            outcome=lambda: client.result(run_id),
            converter=client.temporal.data_converter,
        )

    def created(run_id: str, is_new: bool, response: Response) -> RunCreated:
        status_url = f"/v1/runs/{run_id}"
        response.headers["Location"] = status_url
        return RunCreated(
            id=run_id,
            status_url=status_url,
            events_url=f"{status_url}/events",
            result_url=f"{status_url}/result",
            created=is_new,
        )

    @app.post(
        "/v1/runs",
        status_code=202,
        response_model=RunCreated,
        responses={202: {"headers": LOCATION_HEADER}, **error_responses(limited=True)},
    )
    async def submit(body: RunRequest, tenant: Tenant, response: Response) -> RunCreated:
        """Start a run (answers at once); the same ``idempotency_key`` gives the same run."""
        check_client_input(body, tenant, "run", gate().limits.max_cost_usd_per_day is not None)
        agent = body.agent_input(tenant)
        run_id = new_run_id()
        memo: dict[str, str] | None = None
        if body.idempotency_key is not None:
            run_id = idempotent_run_id(tenant, body.idempotency_key)
            memo = {REQUEST_MEMO: body.digest()}
            with contextlib.suppress(RunNotFound):
                await repeated(run_id, tenant, memo[REQUEST_MEMO])
                return created(run_id, False, response)
        try:
            # once: a key's run, ended since this request looked, starts no second.
            await launch(tenant, agent, run_id, memo, once=memo is not None)
        except RunAlreadyExists:  # the same key, sent twice at once
            await repeated(run_id, tenant, body.digest())
            return created(run_id, False, response)
        return created(run_id, True, response)

    async def launch(
        tenant: str, agent: AgentInput, run_id: str, memo: dict[str, Any] | None, once: bool
    ) -> None:
        """Start the tenant's run if its limits let it (429 if not), its cost capped to
        what its spend ceiling leaves, and count it as started."""
        async with gate().lock(tenant):
            remaining = await gate().check(tenant)
            if remaining is not None:
                agent = _capped(agent, remaining)
            await onward().start(agent, run_id, tag_tenant=True, memo=memo, once=once)
            gate().started(tenant, run_id)

    async def repeated(run_id: str, tenant: str, digest: str) -> None:
        """Check that the tenant's run ``run_id`` was started by the same request.

        Raises:
            RunNotFound: no such run of the tenant's.
            IdempotencyKeyReused: its idempotency key came with another request (422).
        """
        await owned(run_id, tenant)
        sent = (await onward().memo(run_id)).get(REQUEST_MEMO)
        if sent is not None and sent != digest:  # None: started before requests were kept
            raise IdempotencyKeyReused.at(
                ("body", "idempotency_key"),
                f"was sent before with another request (run {run_id}); "
                "a different request needs a new key",
            )

    @app.get(
        "/v1/runs",
        response_model=list[RunSummary],
        responses={200: {"headers": LINK_HEADER}, **_ERRORS},
    )
    async def list_runs(
        request: Request,
        response: Response,
        tenant: Tenant,
        status: AgentState | None = None,
        since: Annotated[
            datetime | None,
            BeforeValidator(params.iso_8601),
            Query(description="ISO 8601; naive is UTC"),
        ] = None,
        model: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 20,
        page_token: params.PageToken = None,
    ) -> list[RunSummary]:
        """The tenant's runs: running ones, newest first, then ended ones, latest ended first.

        When more match than ``limit``, the ``Link`` header (``rel="next"``) is the URL
        of the next page: the same query with a ``page_token``.
        """
        if since is not None:
            since = params.since_utc(since)
        with located("query"):
            page = await onward().list_page(
                status=status,
                model=model,
                limit=limit,
                tenant=tenant,
                since=since,
                page_token=page_token,
            )
        next_page_link(request, response, page)
        return [summary(row) for row in page.rows]

    @app.get("/v1/runs/{run_id}", response_model=AgentStatus, responses=_ERRORS)
    async def status(run_id: RunId, tenant: Tenant) -> AgentStatus:
        """State, usage against budget, step count and the last step."""
        await owned(run_id, tenant)
        return await onward().status(run_id)

    @app.get("/v1/runs/{run_id}/steps", response_model=list[StepRecord], responses=_ERRORS)
    async def steps(run_id: RunId, tenant: Tenant) -> list[StepRecord]:
        """The finished steps."""
        await owned(run_id, tenant)
        return await onward().steps(run_id)

    @app.post(
        "/v1/runs/{run_id}/fork",
        status_code=202,
        response_model=RunCreated,
        responses={202: {"headers": LOCATION_HEADER}, **error_responses(limited=True)},
    )
    async def fork(
        run_id: RunId, body: ForkRequest, tenant: Tenant, response: Response
    ) -> RunCreated:
        """Start a new run from the run's conversation at the end of step ``at_step``
        (nothing before it is asked of a model or a tool again), with ``prompt`` next;
        it takes the run's input with the fields given over it (``onward fork``)."""
        await owned(run_id, tenant)
        with located("body"):
            agent = await onward().fork_input(
                run_id, body.at_step, body.prompt, changes=body.changes()
            )
        if gate().limits.max_cost_usd_per_day is not None and agent.pricing is not None:
            agent = agent.model_copy(update={"pricing": None})  # priced by the workers' table
        new_id = new_run_id()
        await launch(tenant, agent, new_id, fork_memo(run_id, body.at_step), once=False)
        return created(new_id, True, response)

    @app.get("/v1/runs/{run_id}/export", response_model=RunExport, responses=_ERRORS)
    async def export(run_id: RunId, tenant: Tenant) -> RunExport:
        """The run whole: its input, result, whole step log, conversation (from the
        store; null with ``messages_missing`` when it cannot be read) and the event
        history of each run of its chain (Temporal's JSON), which Temporal keeps only
        for the namespace's retention period (``onward export``)."""
        await owned(run_id, tenant)
        return await onward().export(run_id)

    # -- artifacts: from the store when it keeps workspaces (PostgreSQL) ---------------

    @app.get("/v1/runs/{run_id}/artifacts", response_model=list[Artifact], responses=_ERRORS)
    async def artifacts(run_id: RunId, tenant: Tenant) -> list[Artifact]:
        """The files the run wrote: path, size, sha256 (from the store or the workspace root)."""
        await owned(run_id, tenant)
        return await onward().artifacts(run_id)

    @app.get(
        "/v1/runs/{run_id}/artifacts/{path:path}",
        response_class=Response,
        responses={200: {"content": {"application/octet-stream": {}}}, **_ERRORS},
    )
    async def artifact(run_id: RunId, path: str, tenant: Tenant) -> Response:
        """One file's bytes; 404 when the run has no such file."""
        await owned(run_id, tenant)
        with located("path"):
            data = await onward().artifact(run_id, path)
        return Response(content=data, media_type="application/octet-stream")

    @app.get("/v1/runs/{run_id}/result", response_model=AgentResult, responses=_ERRORS)
    async def result(
        run_id: RunId,
        tenant: Tenant,
        wait: Annotated[
            float, Query(ge=0, le=MAX_WAIT_S, description="seconds to wait for the end")
        ] = 0,
    ) -> AgentResult:
        """The result of an ended run; 409 while it runs (``?wait=30`` waits up to 30 s)."""
        info = await owned(run_id, tenant) or await onward().info(run_id)
        if info.running:
            try:
                if not wait:
                    raise TimeoutError
                return await asyncio.wait_for(onward().result(run_id), wait)
            except TimeoutError:
                raise ApiProblem(409, "RunStillRunning", f"run {run_id} is still running") from None
        return await onward().result(run_id)

    @app.get(
        "/v1/runs/{run_id}/events",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}, **_ERRORS},
    )
    async def events(
        run_id: RunId,
        tenant: StreamTenant,
        last_event_id: Annotated[str | None, Header(max_length=40)] = None,
        after: Annotated[
            int | None, Query(ge=0, le=params.MAX_EVENT_ID, description="like Last-Event-ID")
        ] = None,
    ) -> StreamingResponse:
        """Server-Sent Events of the run as they happen; the last one is ``event: result``."""
        # Temporal is asked before the 200 even when the tenant is known: unreachable,
        # it is a 503, not an empty stream an EventSource reopens every second.
        await owned(run_id, tenant) or await onward().info(run_id)
        await check_readable(onward().temporal, run_id, onward().temporal.data_converter)
        stream = events_of(run_id, params.last_event_id(last_event_id, after))
        return StreamingResponse(
            with_keepalive(stream),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def control(run_id: str, tenant: str, kind: str, body: Any = None) -> Any:
        await owned(run_id, tenant)
        spend_left = functools.partial(gate().spend_left, tenant)
        with located("body"):
            return await apply_control(onward(), run_id, kind, body, spend_left)

    @app.post("/v1/runs/{run_id}/pause", response_model=ControlAnswer, responses=_ERRORS)
    async def pause(run_id: RunId, tenant: Tenant, request: Request) -> ControlAnswer:
        """Pause before the next model or tool call (no body)."""
        await refuse_fields(request, "pause")
        answer: ControlAnswer = await control(run_id, tenant, "pause")
        return answer

    @app.post("/v1/runs/{run_id}/resume", response_model=StateAnswer, responses=_ERRORS)
    async def resume(run_id: RunId, tenant: Tenant, request: Request) -> StateAnswer:
        """Resume a paused run (no body)."""
        await refuse_fields(request, "resume")
        answer: StateAnswer = await control(run_id, tenant, "resume")
        return answer

    @app.post("/v1/runs/{run_id}/cancel", response_model=ControlAnswer, responses=_ERRORS)
    async def cancel(
        run_id: RunId, tenant: Tenant, body: CancelBody | None = None
    ) -> ControlAnswer:
        """End the run as cancelled, keeping what it did (``{"reason"}`` optional)."""
        answer: ControlAnswer = await control(run_id, tenant, "cancel", body)
        return answer

    @app.post("/v1/runs/{run_id}/steer", response_model=ControlAnswer, responses=_ERRORS)
    async def steer(run_id: RunId, tenant: Tenant, body: SteerBody) -> ControlAnswer:
        """Add a user message for the next model call (``{"message"}``)."""
        answer: ControlAnswer = await control(run_id, tenant, "steer", body)
        return answer

    @app.post("/v1/runs/{run_id}/extend-budget", response_model=Budget, responses=_ERRORS)
    async def extend_budget(run_id: RunId, tenant: Tenant, body: BudgetExtension) -> Budget:
        """Raise the run's budget limits; answers the new budget."""
        answer: Budget = await control(run_id, tenant, "extend-budget", body)
        return answer

    @app.post("/v1/runs/{run_id}/approve", response_model=ApprovalsDecided, responses=_ERRORS)
    async def approve(
        run_id: RunId, tenant: Tenant, body: ApprovalDecision | None = None
    ) -> ApprovalsDecided:
        """Let tool calls waiting for approval run (``{"call_id", "note"}``, both optional:
        without ``call_id`` every waiting call); 409 when nothing (or not that call) waits."""
        answer: ApprovalsDecided = await control(run_id, tenant, "approve", body)
        return answer

    @app.post("/v1/runs/{run_id}/reject", response_model=ApprovalsDecided, responses=_ERRORS)
    async def reject(
        run_id: RunId, tenant: Tenant, body: ApprovalDecision | None = None
    ) -> ApprovalsDecided:
        """Refuse tool calls waiting for approval; ``note`` becomes the call's result for
        the model; 409 when nothing (or not that call) waits."""
        answer: ApprovalsDecided = await control(run_id, tenant, "reject", body)
        return answer

    @app.websocket(SOCKET_PATH)
    async def socket(
        websocket: WebSocket,
        run_id: str,
        api_key: str | None = None,
        after: str | None = None,
    ) -> None:
        """The run's events and its controls on one WebSocket (see :mod:`.live`)."""
        await websocket.accept()
        try:
            tenant = authenticate(websocket, settings.keys, api_key)
        except ApiProblem as err:
            await websocket.send_json(
                {"type": "error", "status": err.status, "error": error_message(err)}
            )
            await websocket.close(CLOSE_UNAUTHORIZED, str(err))
            return
        try:
            start = params.last_event_id(
                websocket.headers.get("last-event-id"),
                None if after is None else params.event_id(after, "after"),
            )
            # Temporal is asked even when the tenant is known (as the SSE route): out of
            # reach, it is an error message and 1013, not a stream that ends with 1011.
            await owned(run_id, tenant) or await onward().info(run_id)
            await check_readable(onward().temporal, run_id, onward().temporal.data_converter)
        except OnwardError as err:
            status = status_of(err)
            await websocket.send_json(
                {"type": "error", "status": status, "error": error_message(err)}
            )
            code = {404: CLOSE_NOT_FOUND, 503: CLOSE_TRY_AGAIN, 500: 1011}.get(status, 1008)
            await websocket.close(code, str(err)[:120])
            return
        await serve_socket(
            websocket,
            onward(),
            run_id,
            events_of(run_id, start),
            functools.partial(gate().spend_left, tenant),
            max_message_bytes=MAX_BODY_BYTES,
        )

    app.include_router(session_routes(onward, gate, owned))
    app.include_router(schedule_routes(onward, gate))
    return app
