"""Agents that run periodically: Temporal Schedules that start ``AgentWorkflow`` runs.

The pieces :class:`~onward.client.OnwardClient`'s ``schedule_*`` methods are
made of: the Temporal schedule for a run's input and a cron expression, and
the row a schedule is shown as. An Onward schedule carries its prompt,
model and cron in its memo (``onward``), which is also how a listing tells Onward's
schedules from any other in the namespace.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from temporalio.api.common.v1 import Payload
from temporalio.client import (
    Client,
    Schedule,
    ScheduleAction,
    ScheduleActionExecution,
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionResult,
    ScheduleActionStartWorkflow,
    ScheduleHandle,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.common import TypedSearchAttributes
from temporalio.converter import DataConverter
from temporalio.service import RPCError, RPCStatusCode

from onward.contracts import AgentInput
from onward.starter.render import static_details, static_summary
from onward.tuning import WORKFLOW_TASK_TIMEOUT
from onward.workflows import AgentWorkflow

__all__ = [
    "MEMO_KEY",
    "ScheduleRow",
    "agent_of",
    "agent_schedule",
    "cron_of",
    "described",
    "listed",
    "new_schedule_id",
    "refused_field",
    "run_ids",
    "schedule_memo",
    "scheduled_input",
    "tenant_of",
]

MEMO_KEY = "onward"
"""The memo entry of an Onward schedule: its prompt and model, for listings."""


def new_schedule_id() -> str:
    """A fresh schedule id: ``schedule-1f3a9c0b2d4e``."""
    return f"schedule-{uuid.uuid4().hex[:12]}"


class ScheduleRow(BaseModel):
    """One Onward schedule, as ``onward schedule list`` shows it."""

    schedule_id: str
    cron: list[str] = Field(default_factory=list)
    paused: bool = False
    note: str | None = None
    prompt: str | None = None
    model: str | None = None
    next_runs: list[datetime] = Field(default_factory=list)
    recent_runs: list[str] = Field(
        default_factory=list, description="workflow ids of the runs it started, oldest first"
    )
    running: list[str] = Field(
        default_factory=list,
        description="its runs still running: those it started at its times (a run "
        "started by a trigger runs beside them, and is not listed)",
    )
    input: AgentInput | None = Field(
        default=None,
        description="what each run is started with (tools, tenant, memory scope...); "
        "None: it could not be read (a payload this client cannot decode)",
    )


def agent_schedule(
    agent: AgentInput,
    cron: str,
    schedule_id: str,
    task_queue: str,
    search_attributes: TypedSearchAttributes = TypedSearchAttributes.empty,
) -> Schedule:
    """The Temporal schedule that starts a run of ``agent`` at each ``cron`` time.

    Temporal gives each run the workflow id ``<schedule id>-<time>``; each starts
    with ``search_attributes`` (a run's first values: its tenant's tag among them).
    """
    return Schedule(
        action=ScheduleActionStartWorkflow(
            AgentWorkflow.run,
            agent,
            id=schedule_id,
            task_queue=task_queue,
            static_summary=static_summary(agent),
            static_details=static_details(agent),
            task_timeout=WORKFLOW_TASK_TIMEOUT,
            typed_search_attributes=search_attributes,
        ),
        spec=ScheduleSpec(cron_expressions=[cron]),
        state=ScheduleState(note=f"onward agent schedule: {cron}"),
    )


def schedule_memo(agent: AgentInput, cron: str) -> dict[str, Any]:
    """The memo that marks a schedule as Onward's and names its agent, cron and tenant.

    The cron is kept as given: Temporal describes a schedule by the calendar
    it compiled the cron into. The tenant lets a listing for one tenant pass
    over the others' schedules without describing each (its input decides).
    """
    entry = {"prompt": agent.prompt, "model": agent.model, "cron": cron, "tenant": agent.tenant}
    return {MEMO_KEY: entry}


def refused_field(message: str) -> str:
    """The field of a schedule Temporal refused as invalid, told by its message.

    Its runs' workflow ids are the schedule's id and a time: an id too long for
    them is refused as a WorkflowId; anything else it refuses is the spec (cron).
    """
    return "id" if "WorkflowId" in message or "ScheduleId" in message else "cron"


def cron_of(agent: Mapping[str, Any]) -> list[str]:
    """The cron expression an Onward schedule's memo records, as a list."""
    cron = agent.get("cron")
    return [cron] if isinstance(cron, str) else []


def run_ids(actions: Iterable[ScheduleActionResult | ScheduleActionExecution]) -> list[str]:
    """Workflow ids of the runs among a schedule's recent or running actions."""
    executions = [a.action if isinstance(a, ScheduleActionResult) else a for a in actions]
    return [
        execution.workflow_id
        for execution in executions
        if isinstance(execution, ScheduleActionExecutionStartWorkflow)
    ]


def agent_of(memo: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The prompt and model a schedule's memo names; None: not an Onward schedule."""
    entry = memo.get(MEMO_KEY)
    return entry if isinstance(entry, Mapping) else None


def tenant_of(row: ScheduleRow) -> str | None:
    """The tenant a schedule's runs are started as: its input's (None: none, or unreadable).

    The input, not the memo, is what each run is started with and tagged by
    (``OnwardTenant``), so a schedule and its runs always have the same tenant.
    """
    return None if row.input is None else row.input.tenant


async def scheduled_input(action: ScheduleAction, converter: DataConverter) -> AgentInput | None:
    """The ``AgentInput`` a described schedule starts its runs with; None: unreadable."""
    if not isinstance(action, ScheduleActionStartWorkflow) or len(action.args) != 1:
        return None
    payload = action.args[0]
    if not isinstance(payload, Payload):
        return payload if isinstance(payload, AgentInput) else None
    try:
        [agent] = await converter.decode([payload], [AgentInput])
    except Exception:  # noqa: BLE001 - another key, another converter: only not shown
        return None
    return agent if isinstance(agent, AgentInput) else None


async def described(handle: ScheduleHandle, converter: DataConverter) -> ScheduleRow:
    """The row of the schedule behind ``handle`` (Temporal's errors pass through).

    ``converter`` (the client's) decodes the input its runs are started with.
    """
    description = await handle.describe()
    agent = agent_of(await description.memo()) or {}
    return ScheduleRow(
        schedule_id=handle.id,
        cron=cron_of(agent),
        paused=description.schedule.state.paused,
        note=description.schedule.state.note,
        prompt=agent.get("prompt"),
        model=agent.get("model"),
        next_runs=list(description.info.next_action_times),
        recent_runs=run_ids(description.info.recent_actions),
        running=run_ids(description.info.running_actions),
        input=await scheduled_input(description.schedule.action, converter),
    )


async def listed(client: Client, limit: int, tenant: str | None = None) -> list[ScheduleRow]:
    """Up to ``limit`` of Onward's schedules; other applications' are left out, and with
    ``tenant`` those whose runs are not started as its (their input's ``tenant``; an
    input this client cannot decode is no tenant's).

    The listing (the visibility store's, a moment late) finds them; each row is
    then the schedule's own description, as :func:`described` gives it: a
    listing has no running runs to show, and may still show a schedule paused
    a moment ago as active.
    """
    rows: list[ScheduleRow] = []
    async for item in await client.list_schedules():
        agent = agent_of(await item.memo())
        if agent is None:
            continue  # another application's schedule
        if tenant is not None and agent.get("tenant", tenant) != tenant:
            continue  # another tenant's (a memo from before tenants were kept: described)
        try:
            handle = client.get_schedule_handle(item.id)
            row = await described(handle, client.data_converter)
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            continue  # deleted since it was listed
        if tenant is not None and tenant_of(row) != tenant:
            continue
        rows.append(row)
        if len(rows) >= limit:
            break
    return rows
