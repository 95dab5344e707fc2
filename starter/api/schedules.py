"""The HTTP API's schedule routes: agents a tenant has run at the times of a cron.

Like the run routes, a thin adapter over :class:`~onward.client.OnwardClient`'s
``schedule_*`` methods. A schedule is its tenant's when the input its runs
start with names that tenant (:func:`onward.schedules.tenant_of`): the input,
not the memo, because it is what each run is started and tagged
(``OnwardTenant``) with, so a schedule and its runs always have one tenant.
Another tenant's schedule is answered as a missing one (404).

Temporal starts a schedule's runs at their times, not the API: the tenant's
limits count them (they are its runs) but cannot refuse them then. So under a
daily spending ceiling no schedule is made (403 ``SchedulesNotAllowed``: a
schedule every minute would spend the ceiling 1,440 times a day); a trigger,
which the API does start, is checked as a new run.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from onward.client import OnwardClient
from onward.errors import IdempotencyKeyReused, InvalidInput, ScheduleNotFound
from onward.money import money
from onward.schedules import ScheduleRow, new_schedule_id, tenant_of
from onward.starter.api.errors import ApiProblem, TooManyRequests, error_responses, located
from onward.starter.api.models import (
    SET_BY_ONWARD,
    ControlAnswer,
    ScheduleNote,
    ScheduleRequest,
    check_client_input,
    scheduled_input,
)
from onward.starter.api.tenants import BUSY_RETRY_AFTER_S, Tenant, TenantGate

__all__ = ["idempotent_schedule_id", "schedule_routes"]

SCHEDULE_ID = Path(min_length=1, max_length=200, pattern=r"^[^\s/]+$", description="the schedule")
_ERRORS = error_responses()
_ROW_OUT: dict[str, Any] = {"input": set(SET_BY_ONWARD)}
"""Left out of a schedule's answer: the input fields Onward sets itself (never a schedule's:
the API refuses them, and the document leaves them out)."""

ScheduleId = Annotated[str, SCHEDULE_ID]


def idempotent_schedule_id(tenant: str, key: str) -> str:
    """The schedule id an idempotency key stands for: the same per tenant, different across
    tenants (a tenant cannot name, nor learn of, another's schedule by its key)."""
    digest = hashlib.sha256(f"{tenant}\0schedule\0{key}".encode()).hexdigest()[:24]
    return f"schedule-{digest}"


def schedule_routes(
    onward: Callable[[], OnwardClient], gate: Callable[[], TenantGate]
) -> APIRouter:
    """The ``/v1/schedules`` routes, over the app's client and tenant gate."""
    # The memo key of a request's digest is the one runs started with a key have.
    from onward.starter.api.app import LOCATION_HEADER, REQUEST_MEMO, refuse_fields

    router = APIRouter()

    async def owned(schedule_id: str, tenant: str) -> ScheduleRow:
        """The tenant's schedule ``schedule_id``.

        Raises:
            ScheduleNotFound: no such schedule, or another tenant's (404).
        """
        row = await onward().schedule(schedule_id)
        if tenant_of(row) != tenant:
            raise ScheduleNotFound(schedule_id)
        return row

    async def repeated(schedule_id: str, tenant: str, digest: str) -> ScheduleRow:
        """The tenant's schedule ``schedule_id``, made by the same request.

        Raises:
            ScheduleNotFound: no such schedule of the tenant's.
            IdempotencyKeyReused: its idempotency key came with another request (422).
        """
        row = await owned(schedule_id, tenant)
        if (await onward().schedule_memo(schedule_id)).get(REQUEST_MEMO) != digest:
            raise IdempotencyKeyReused.at(
                ("body", "idempotency_key"),
                f"was sent before with another request (schedule {schedule_id}); "
                "a different request needs a new key",
            )
        return row

    def answered(row: ScheduleRow, response: Response, status: int = 201) -> ScheduleRow:
        response.status_code = status
        response.headers["Location"] = f"/v1/schedules/{row.schedule_id}"
        return row

    @router.post(
        "/v1/schedules",
        status_code=201,
        response_model=ScheduleRow,
        response_model_exclude=_ROW_OUT,
        responses={
            201: {"headers": LOCATION_HEADER},
            200: {
                "model": ScheduleRow,
                "description": "the idempotency key's schedule, made by the same request before",
                "headers": LOCATION_HEADER,
            },
            **_ERRORS,
        },
    )
    async def create(body: ScheduleRequest, tenant: Tenant, response: Response) -> ScheduleRow:
        """Start a run of ``input`` (as ``POST /v1/runs`` takes it) at each time of ``cron``.

        A worker of the task queue checks the input first, when one polls it; with
        an ``idempotency_key`` the same request answers the same schedule (200).
        """
        ceiling = gate().limits.max_cost_usd_per_day
        if ceiling is not None:
            # Temporal starts a schedule's runs at their times, where no ceiling is asked:
            # a schedule every minute would spend the day's ceiling 1,440 times over.
            raise ApiProblem(
                403,
                "SchedulesNotAllowed",
                f"this API keeps each tenant under {money(ceiling)} a day, which the runs a "
                "schedule starts at their times cannot be held to: no schedules here",
            )
        check_client_input(body.input, tenant, "schedule", False, ("body", "input"))
        agent = scheduled_input(body.input, tenant)
        schedule_id = new_schedule_id()
        memo: dict[str, str] | None = None
        if body.idempotency_key is not None:
            schedule_id = idempotent_schedule_id(tenant, body.idempotency_key)
            memo = {REQUEST_MEMO: body.digest()}
            with contextlib.suppress(ScheduleNotFound):
                return answered(await repeated(schedule_id, tenant, body.digest()), response, 200)
        with located("body", "input"):
            await onward().check_input(agent)
        try:
            with located("body"):
                await onward().schedule_create(
                    body.cron, agent, schedule_id, check=False, memo=memo
                )
        except InvalidInput as err:
            if memo is None:
                raise
            try:  # the same key, sent twice at once: the other request made it
                row = await repeated(schedule_id, tenant, body.digest())
            except ScheduleNotFound:
                raise err from None  # refused for itself (its cron)
            return answered(row, response, 200)
        return answered(await onward().schedule(schedule_id), response)

    @router.get(
        "/v1/schedules",
        response_model=list[ScheduleRow],
        response_model_exclude={"__all__": _ROW_OUT},
        responses=_ERRORS,
    )
    async def list_schedules(
        tenant: Tenant, limit: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> list[ScheduleRow]:
        """The tenant's schedules (up to ``limit``), each as ``GET /v1/schedules/{id}``."""
        return await onward().schedule_list(limit, tenant=tenant)

    @router.get(
        "/v1/schedules/{schedule_id}",
        response_model=ScheduleRow,
        response_model_exclude=_ROW_OUT,
        responses=_ERRORS,
    )
    async def show(schedule_id: ScheduleId, tenant: Tenant) -> ScheduleRow:
        """Its cron, whether paused, its next times, the runs it started and those running,
        and the input each run starts with."""
        return await owned(schedule_id, tenant)

    @router.post(
        "/v1/schedules/{schedule_id}/pause",
        response_model=ScheduleRow,
        response_model_exclude=_ROW_OUT,
        responses=_ERRORS,
    )
    async def pause(
        schedule_id: ScheduleId, tenant: Tenant, body: ScheduleNote | None = None
    ) -> ScheduleRow:
        """Start no runs until unpaused (``{"note"}`` optional: why); answers the schedule."""
        await owned(schedule_id, tenant)
        await onward().schedule_pause(schedule_id, (body or ScheduleNote()).note)
        return await onward().schedule(schedule_id)

    @router.post(
        "/v1/schedules/{schedule_id}/unpause",
        response_model=ScheduleRow,
        response_model_exclude=_ROW_OUT,
        responses=_ERRORS,
    )
    async def unpause(
        schedule_id: ScheduleId, tenant: Tenant, body: ScheduleNote | None = None
    ) -> ScheduleRow:
        """Start runs at its times again (``{"note"}`` optional); answers the schedule."""
        await owned(schedule_id, tenant)
        await onward().schedule_unpause(schedule_id, (body or ScheduleNote()).note)
        return await onward().schedule(schedule_id)

    @router.post(
        "/v1/schedules/{schedule_id}/trigger",
        response_model=ControlAnswer,
        responses=error_responses(limited=True),
    )
    async def trigger(schedule_id: ScheduleId, tenant: Tenant, request: Request) -> ControlAnswer:
        """Start one run now, even while paused (no body); the tenant's limits apply as to
        a new run. The run is in the schedule's ``recent_runs`` a moment later."""
        await refuse_fields(request, "trigger")
        row = await owned(schedule_id, tenant)
        async with gate().lock(tenant):
            remaining = await gate().check(tenant)
            cap = row.input.budget.max_cost_usd if row.input is not None else None
            if remaining is not None and (cap is None or cap > remaining):
                # Its input is the schedule's: it cannot be capped to what is left, as a
                # run POST /v1/runs starts is.
                spends = "has no cost limit" if cap is None else f"may spend {money(cap)}"
                raise TooManyRequests(
                    "BudgetCeiling",
                    f"tenant {tenant!r} may spend {money(remaining)} more today; a run of "
                    f"schedule {schedule_id} {spends}",
                    BUSY_RETRY_AFTER_S,
                )
            await onward().schedule_trigger(schedule_id)
        return ControlAnswer(id=schedule_id)

    @router.delete("/v1/schedules/{schedule_id}", response_model=ControlAnswer, responses=_ERRORS)
    async def delete(schedule_id: ScheduleId, tenant: Tenant) -> ControlAnswer:
        """Delete the schedule; the runs it started go on."""
        await owned(schedule_id, tenant)
        await onward().schedule_delete(schedule_id)
        return ControlAnswer(id=schedule_id)

    return router
