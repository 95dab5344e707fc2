"""The HTTP API's routes: a thin adapter over :class:`~onward.client.OnwardClient`.

Each route authenticates the tenant, checks the run is the tenant's, calls
the client and answers with a contract model; errors become statuses in
:mod:`onward.starter.api.errors`. Serve it with uvicorn (``onward api``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import FastAPI, Header, Path, Query, Response
from fastapi.responses import StreamingResponse
from temporalio.service import RPCError

from onward.api_keys import ApiKeys
from onward.client import OnwardClient, RunInfo, new_run_id
from onward.contracts import (
    AgentInput,
    AgentResult,
    AgentState,
    AgentStatus,
    Budget,
    BudgetExtension,
    CancelRequest,
    SteerRequest,
    StepRecord,
)
from onward.errors import InvalidInput, OnwardError, RunAlreadyExists, RunNotFound
from onward.starter.api.errors import ApiProblem, BodyLimit, install_error_handlers
from onward.starter.api.events import RunEvent, run_events
from onward.starter.api.models import (
    ControlAnswer,
    ErrorBody,
    RunCreated,
    RunRequest,
    RunSummary,
    StateAnswer,
)
from onward.starter.api.sessions import session_routes
from onward.starter.api.tenants import Limits, Tenant, TenantGate

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

log = logging.getLogger("onward.api")
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 401, 404, 409, 413, 422, 429, 502, 503)
}


@dataclass
class ApiSettings:
    """How the API is set up.

    Attributes:
        keys: tenants by API key; None: no keys file, every request is the default tenant.
        limits: what each tenant may use.
        connect: makes the client when the app starts (unless ``api_app`` got one).
    """

    keys: ApiKeys | None = None
    limits: Limits = field(default_factory=Limits)
    connect: Callable[[], Awaitable[OnwardClient]] | None = None


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


def _capped(agent: AgentInput, remaining_usd: float) -> AgentInput:
    """``agent`` with ``max_cost_usd`` no higher than what its tenant may still spend."""
    asked = agent.budget.max_cost_usd
    if asked is not None and asked <= remaining_usd:
        return agent
    budget = agent.budget.model_copy(update={"max_cost_usd": round(remaining_usd, 8)})
    return agent.model_copy(update={"budget": budget})


def last_event_id_of(header: str | None, query: int | None) -> int:
    if query is not None:
        return query
    if header is None or not header.strip():
        return 0
    try:
        return max(int(header.strip()), 0)
    except ValueError:
        raise InvalidInput("Last-Event-ID: must be an event id (a whole number)") from None


def _without_security(app: FastAPI) -> None:
    """No keys file: the OpenAPI document asks for no bearer key (none is checked)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            for path in document.get("paths", {}).values():
                for operation in path.values():
                    operation.pop("security", None)
            document.get("components", {}).pop("securitySchemes", None)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


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
    install_error_handlers(app)
    if settings.keys is None:
        _without_security(app)
    tenants_of_runs: dict[str, str] = {}

    def onward() -> OnwardClient:
        found: OnwardClient = state["client"]
        return found

    def gate() -> TenantGate:
        if "gate" not in state:  # the app is used without its lifespan (e.g. ASGITransport)
            state["gate"] = TenantGate(onward(), settings.limits)
        found: TenantGate = state["gate"]
        return found

    async def owned(run_id: str, tenant: str) -> RunInfo | None:
        """Raise RunNotFound unless the run is ``tenant``'s; its info when it was read."""
        known = tenants_of_runs.get(run_id)
        info: RunInfo | None = None
        if known is None:
            info = await onward().info(run_id)
            known = info.tenant
            if known is not None:  # an untagged run may be tagged later: ask again then
                if len(tenants_of_runs) >= _TENANT_CACHE:
                    tenants_of_runs.clear()
                tenants_of_runs[run_id] = known
        if known != tenant:
            raise RunNotFound(run_id)
        return info

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

    @app.post("/v1/runs", status_code=202, response_model=RunCreated, responses=_ERRORS)
    async def submit(body: RunRequest, tenant: Tenant, response: Response) -> RunCreated:
        """Start a run (answers at once); the same ``idempotency_key`` gives the same run."""
        if body.tenant is not None and body.tenant != tenant:
            raise InvalidInput("tenant: runs belong to the API key's tenant; leave it out")
        agent = body.agent_input(tenant)
        run_id = new_run_id()
        if body.idempotency_key is not None:
            run_id = idempotent_run_id(tenant, body.idempotency_key)
            with contextlib.suppress(RunNotFound):
                await owned(run_id, tenant)
                return created(run_id, False, response)
        async with gate().lock(tenant):
            remaining = await gate().check(tenant)
            if remaining is not None:
                agent = _capped(agent, remaining)
            try:
                await onward().start(agent, run_id, tag_tenant=True)
            except RunAlreadyExists:  # the same key, sent twice at once
                await owned(run_id, tenant)
                return created(run_id, False, response)
            gate().started(tenant, run_id)
        return created(run_id, True, response)

    @app.get("/v1/runs", response_model=list[RunSummary], responses=_ERRORS)
    async def list_runs(
        tenant: Tenant,
        status: AgentState | None = None,
        since: Annotated[datetime | None, Query(description="ISO 8601; naive is UTC")] = None,
        model: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    ) -> list[RunSummary]:
        """The tenant's runs, newest first (from Temporal's visibility store)."""
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        rows = await onward().list(
            status=status, model=model, limit=limit, tenant=tenant, since=since
        )
        return [
            RunSummary(
                id=row.workflow_id,
                status=row.status,
                model=row.model,
                steps=row.steps,
                tokens=row.tokens,
                cost_usd=row.cost_usd,
                start_time=row.start_time,
                close_time=row.close_time,
            )
            for row in rows
        ]

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
        tenant: Tenant,
        last_event_id: Annotated[str | None, Header(max_length=40)] = None,
        after: Annotated[int | None, Query(ge=0, description="like Last-Event-ID")] = None,
    ) -> StreamingResponse:
        """Server-Sent Events of the run as they happen; the last one is ``event: result``."""
        await owned(run_id, tenant)
        start = last_event_id_of(last_event_id, after)
        client = onward()
        handle = client.temporal.get_workflow_handle(run_id)
        stream = run_events(
            handle,
            after=start,
            outcome=lambda: client.result(run_id),
            codec=client.temporal.data_converter.payload_codec,
        )
        return StreamingResponse(
            with_keepalive(stream),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.post("/v1/runs/{run_id}/pause", response_model=ControlAnswer, responses=_ERRORS)
    async def pause(run_id: RunId, tenant: Tenant) -> ControlAnswer:
        """Pause before the next model or tool call."""
        await owned(run_id, tenant)
        await onward().pause(run_id)
        return ControlAnswer(id=run_id)

    @app.post("/v1/runs/{run_id}/resume", response_model=StateAnswer, responses=_ERRORS)
    async def resume(run_id: RunId, tenant: Tenant) -> StateAnswer:
        """Resume a paused run."""
        await owned(run_id, tenant)
        before = await onward().resume(run_id)
        return StateAnswer(id=run_id, state_before=before)

    @app.post("/v1/runs/{run_id}/cancel", response_model=ControlAnswer, responses=_ERRORS)
    async def cancel(
        run_id: RunId, tenant: Tenant, body: CancelRequest | None = None
    ) -> ControlAnswer:
        """End the run as cancelled, keeping what it did (``{"reason"}`` optional)."""
        await owned(run_id, tenant)
        await onward().cancel(run_id, body.reason if body else None)
        return ControlAnswer(id=run_id)

    @app.post("/v1/runs/{run_id}/steer", response_model=ControlAnswer, responses=_ERRORS)
    async def steer(run_id: RunId, tenant: Tenant, body: SteerRequest) -> ControlAnswer:
        """Add a user message for the next model call (``{"message"}``)."""
        await owned(run_id, tenant)
        await onward().steer(run_id, body.message)
        return ControlAnswer(id=run_id)

    @app.post("/v1/runs/{run_id}/extend-budget", response_model=Budget, responses=_ERRORS)
    async def extend_budget(run_id: RunId, tenant: Tenant, body: BudgetExtension) -> Budget:
        """Raise the run's budget limits; answers the new budget."""
        await owned(run_id, tenant)
        return await onward().extend_budget(run_id, body)

    app.include_router(session_routes(onward, gate, owned))
    return app
