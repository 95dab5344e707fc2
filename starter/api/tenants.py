"""Who is asking, and whether their tenant may start one more run.

Clients send ``Authorization: Bearer <key>``; the keys file
(``ONWARD_API_KEYS_FILE``, :mod:`onward.api_keys`) maps the key's hash to a
tenant. With no keys file every request is the one :data:`DEFAULT_TENANT`
(and the API listens on loopback only). Runs are tagged with their tenant's
``OnwardTenant`` search attribute when they start; a run of another tenant is
answered exactly like a missing one (404), so ids leak nothing.

Limits apply per tenant: at most ``max_runs`` runs open at once, and at most
``max_cost_usd_per_day`` spent by the runs started in the last 24 hours (a
new run's ``max_cost_usd`` is capped to what remains, so one run cannot
overspend it by much: budgets are checked before each call). Both
are counted from Temporal's visibility store, which lags a run's start by a
moment, so the runs this process started in the last few seconds are asked
directly as well.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from onward import search_attributes as sa
from onward.api_keys import ApiKeys
from onward.client import OnwardClient
from onward.contracts import FINAL_STATES
from onward.delegation import is_sub_agent
from onward.errors import OnwardError, RunNotFound
from onward.money import money
from onward.starter.api.errors import ApiProblem, TooManyRequests
from onward.starter.listing import run_query

__all__ = [
    "DEFAULT_TENANT",
    "SPEND_WINDOW",
    "Limits",
    "StreamTenant",
    "Tenant",
    "TenantGate",
    "authenticate",
    "stream_tenant_of",
    "tenant_of",
]

DEFAULT_TENANT = "default"
"""The tenant of every request when no keys file is configured."""
SPEND_WINDOW = timedelta(hours=24)
"""``max_cost_usd_per_day`` counts the cost of the runs started within this window."""
RECENT_S = 10.0
"""How long a run this process started is counted from memory (visibility lags behind)."""
BUSY_RETRY_AFTER_S = 5
"""``Retry-After`` of a request over the concurrent-runs limit: runs end at any moment."""


@dataclass(frozen=True)
class Limits:
    """What one tenant may use; None means no limit."""

    max_runs: int | None = None
    """Runs open (running or paused) at once."""
    max_cost_usd_per_day: float | None = None
    """Cost of the runs started in the last 24 hours."""


def authenticate(
    request: HTTPConnection, keys: ApiKeys | None, query_key: str | None = None
) -> str:
    """The tenant of ``request``'s bearer key (the default tenant when keys are off).

    ``query_key`` is a key sent in the URL instead (a browser's WebSocket cannot
    set headers); the header wins when both are sent.

    Raises:
        ApiProblem: 401, no key or an unknown one.
    """
    if keys is None:
        return DEFAULT_TENANT
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if not scheme and query_key:
        scheme, key = "bearer", query_key
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiProblem(401, "Unauthorized", "send 'Authorization: Bearer <API key>'")
    tenant = keys.tenant_for(key.strip())
    if tenant is None:
        raise ApiProblem(401, "Unauthorized", "unknown API key")
    return tenant


_bearer = HTTPBearer(auto_error=False, description="an API key from `onward api add-key`")


async def tenant_of(
    request: Request,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The request's tenant (the dependency also documents the bearer scheme in OpenAPI)."""
    keys: ApiKeys | None = request.app.state.settings.keys
    return authenticate(request, keys)


Tenant = Annotated[str, Depends(tenant_of)]
"""A route parameter: the authenticated tenant of the request."""


async def stream_tenant_of(
    request: Request,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[
        str | None,
        Query(
            max_length=200,
            description="the API key, for a browser's EventSource, which cannot send a "
            "header (the Authorization header wins when both are sent)",
        ),
    ] = None,
) -> str:
    """The tenant of an event stream's request: its bearer key, or ``?api_key=``."""
    keys: ApiKeys | None = request.app.state.settings.keys
    return authenticate(request, keys, api_key)


StreamTenant = Annotated[str, Depends(stream_tenant_of)]
"""A route parameter of the event streams: the tenant, by header or ``?api_key=``."""


@dataclass
class _Recent:
    started: dict[str, float] = field(default_factory=dict)
    """Run id -> when this process started it (event loop time)."""
    ended: dict[str, float] = field(default_factory=dict)
    """Run id -> when this process saw it end (a session message's, answered)."""
    opened: dict[str, float] = field(default_factory=dict)
    """Session id -> when this process opened it (held under a spending ceiling)."""


class TenantGate:
    """Checks a tenant's limits before a start, one start at a time per tenant."""

    def __init__(self, client: OnwardClient, limits: Limits) -> None:
        self._client = client
        self.limits = limits
        self._locks: dict[str, asyncio.Lock] = {}
        self._recent: dict[str, _Recent] = {}

    def lock(self, tenant: str) -> asyncio.Lock:
        """Held around check and start, so two requests cannot both take the last slot."""
        return self._locks.setdefault(tenant, asyncio.Lock())

    def started(self, tenant: str, run_id: str) -> None:
        """Remember a run this process just started (visibility may not show it yet)."""
        now = asyncio.get_running_loop().time()
        self._recent.setdefault(tenant, _Recent()).started[run_id] = now

    def opened(self, tenant: str, session_id: str) -> None:
        """Remember a session this process just opened: what it may spend is held, though
        visibility may not list it yet (it is no run for ``max_runs``)."""
        now = asyncio.get_running_loop().time()
        self._recent.setdefault(tenant, _Recent()).opened[session_id] = now

    def answered(self, tenant: str, session_id: str, run_id: str | None) -> None:
        """A message of ``session_id`` was answered by ``run_id``, which has ended.

        The session stood in for the message's run (:meth:`started`): it no longer
        does, and the run is not counted while visibility still lists it as open,
        so a tenant at its limit can send one message after another.
        """
        recent = self._recent.setdefault(tenant, _Recent())
        recent.started.pop(session_id, None)
        if run_id is not None:
            recent.ended[run_id] = asyncio.get_running_loop().time()

    def _recent_ids(self, tenant: str) -> tuple[set[str], set[str]]:
        """The runs started and ended here within RECENT_S."""
        recent = self._recent.setdefault(tenant, _Recent())
        now = asyncio.get_running_loop().time()
        for seen in (recent.started, recent.ended, recent.opened):
            for run_id, at in list(seen.items()):
                if now - at > RECENT_S:
                    del seen[run_id]
        return set(recent.started), set(recent.ended)

    async def check(self, tenant: str, session: str | None = None) -> float | None:
        """Raise :class:`TooManyRequests` when ``tenant`` may not start a run now (a
        message's run, when ``session`` names its session).

        Returns:
            What the tenant may still spend today (None: no ceiling); a new run's
            ``max_cost_usd`` is capped to it.
        """
        if self.limits.max_runs is not None:
            await self._check_runs(tenant, self.limits.max_runs)
        if self.limits.max_cost_usd_per_day is not None:
            # A session's message spends what the session may: not held back from it.
            return await self._check_spend(tenant, self.limits.max_cost_usd_per_day, session)
        return None

    async def spend_left(self, tenant: str, excluding: str | None = None) -> float | None:
        """What ``tenant`` may still spend today (None: no ceiling), beyond what its open
        runs may (``excluding`` one of them: what it may spend is not held back from it).

        Raises:
            TooManyRequests: it has spent its ceiling.
        """
        ceiling = self.limits.max_cost_usd_per_day
        return None if ceiling is None else await self._check_spend(tenant, ceiling, excluding)

    async def _check_runs(self, tenant: str, max_runs: int) -> None:
        query = f'{run_query(tenant=tenant)} AND ExecutionStatus = "Running"'
        # A sub-agent is part of its parent's run, not a run the tenant started.
        started, ended = self._recent_ids(tenant)
        open_ids = {
            execution.id
            async for execution in self._client.temporal.list_workflows(query)
            if not is_sub_agent(execution.id, execution.parent_id) and execution.id not in ended
        }
        for run_id in started - open_ids:
            with contextlib.suppress(RunNotFound):  # not visible yet: ask the run itself
                if (await self._client.info(run_id)).running:
                    open_ids.add(run_id)
        if len(open_ids) >= max_runs:
            raise TooManyRequests(
                "TooManyRuns",
                f"tenant {tenant!r} has {max_runs} open run(s), its limit; "
                "retry when one has ended",
                BUSY_RETRY_AFTER_S,
            )

    async def _check_spend(
        self, tenant: str, ceiling: float, excluding: str | None = None
    ) -> float:
        """What ``tenant`` may still spend: its ceiling less what its runs of the last 24
        hours spent and what its open runs and sessions may still spend (each one's
        ``max_cost_usd`` less its cost so far: the API capped it to what was left when it
        started, so runs that overlap could each have spent all of it)."""
        now = datetime.now(UTC)
        since = now - SPEND_WINDOW
        query = f"{run_query(tenant=tenant, since=since)} AND {sa.COST.name} > 0"
        spent = 0.0
        oldest: datetime | None = None
        async for execution in self._client.temporal.list_workflows(query):
            if is_sub_agent(execution.id, execution.parent_id):
                continue  # its cost is in its parent's already
            cost = execution.typed_search_attributes.get(sa.COST) or 0.0
            spent += cost
            if oldest is None or execution.start_time < oldest:
                oldest = execution.start_time
        if spent >= ceiling:
            frees_at = (oldest or now) + SPEND_WINDOW
            raise TooManyRequests(
                "BudgetCeiling",
                f"tenant {tenant!r} spent {money(spent)} in the last 24 h, its ceiling is "
                f"{money(ceiling)}",
                int((frees_at - now).total_seconds()) + 1,
            )
        held = await self._held(tenant, excluding)
        if spent + held >= ceiling:
            raise TooManyRequests(
                "BudgetCeiling",
                f"tenant {tenant!r} spent {money(spent)} in the last 24 h and its open runs "
                f"may spend {money(held)} more; its ceiling is {money(ceiling)}",
                BUSY_RETRY_AFTER_S,
            )
        return ceiling - spent - held

    async def _held(self, tenant: str, excluding: str | None) -> float:
        """What the tenant's open runs and sessions may still spend, each its
        ``max_cost_usd`` less its cost so far (none without a cap). A message's run
        is its session's, a sub-agent its parent's: each is held once, in those."""
        runs = f'{run_query(tenant=tenant)} AND ExecutionStatus = "Running"'
        open_ids = {
            execution.id
            async for execution in self._client.temporal.list_workflows(runs)
            if execution.parent_id is None
        }
        sessions = await self._client.list_sessions(open=True, limit=1000, tenant=tenant)
        open_ids |= {row.workflow_id for row in sessions.rows}
        # Started here a moment ago, visibility may not list them yet.
        started, ended = self._recent_ids(tenant)
        opened = set(self._recent.setdefault(tenant, _Recent()).opened)
        open_ids = (open_ids | started | opened) - ended - {excluding}

        async def held(run_id: str) -> float:
            try:  # a run's or a session's status: its budget and what it has spent
                status = await self._client.status(run_id)
            except OnwardError:  # ended meanwhile, or no worker to ask: it spends nothing now
                return 0.0
            cap = status.budget.max_cost_usd
            if cap is None or status.state in FINAL_STATES:  # visibility lags its end
                return 0.0
            return max(0.0, cap - status.usage.cost_usd)

        return sum(await asyncio.gather(*map(held, open_ids)))
