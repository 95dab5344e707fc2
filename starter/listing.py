"""``onward list``: agent runs from Temporal's visibility store.

The workflow upserts Onward's search attributes (status, model, steps, tokens,
cost) after every step, so the list needs no query per run and works with no
worker running. Where the server has no such attribute (or the run has not
published it yet) Temporal's own execution status stands in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus

from onward import search_attributes as sa
from onward.contracts import AGENT_WORKFLOW, FINAL_STATES
from onward.starter.render import money, table
from onward.states import OWN_STATE_WINS, closing_statuses, run_state

__all__ = ["RunRow", "list_runs", "quoted", "run_query", "run_table"]


@dataclass(frozen=True)
class RunRow:
    """One run as the list shows it."""

    workflow_id: str
    run_id: str
    status: str
    model: str | None
    steps: int | None
    tokens: int | None
    cost_usd: float | None
    start_time: datetime
    close_time: datetime | None
    temporal_status: str

    def as_json(self) -> dict[str, Any]:
        return {
            "workflow_id": self.workflow_id,
            "run_id": self.run_id,
            "status": self.status,
            "model": self.model,
            "steps": self.steps,
            "tokens": self.tokens,
            "cost_usd": self.cost_usd,
            "start_time": self.start_time.isoformat(),
            "close_time": self.close_time.isoformat() if self.close_time else None,
            "temporal_status": self.temporal_status,
        }


def quoted(value: str) -> str:
    """``value`` as a string literal of a visibility query."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _status_clause(status: str) -> str:
    """Match what the list shows as ``status`` (see :func:`_row`), not only what runs published.

    The inverse of :func:`onward.states.run_state`: a running run that has not
    published yet has no status attribute; a run its own code closed is what it
    last published if that is final, else what Temporal's close says; a run
    terminated or timed out through Temporal keeps its last published one, and
    is what Temporal's close says.
    """
    name = sa.STATUS.name
    published = f"{name} = {quoted(status)}"
    if status == "running":
        published = f"({published} OR {name} IS NULL)"
    matches = [f'(ExecutionStatus = "Running" AND {published})']
    if status in FINAL_STATES:
        wins = ", ".join(quoted(_visibility_name(s)) for s in OWN_STATE_WINS)
        matches.append(f"(ExecutionStatus IN ({wins}) AND {published})")
    finals = ", ".join(quoted(state) for state in sorted(FINAL_STATES))
    for closing in closing_statuses(status):
        clause = f"ExecutionStatus = {quoted(_visibility_name(closing))}"
        if closing in OWN_STATE_WINS:
            clause += f" AND ({name} IS NULL OR {name} NOT IN ({finals}))"
        matches.append(f"({clause})")
    return f"({' OR '.join(matches)})"


def _visibility_name(status: WorkflowExecutionStatus) -> str:
    """How visibility queries name a status: ``TIMED_OUT`` is ``TimedOut``."""
    return status.name.title().replace("_", "")


def run_query(
    status: str | None = None,
    model: str | None = None,
    tenant: str | None = None,
    since: datetime | None = None,
) -> str:
    """The visibility query for agent runs, optionally with a status, a model, a tenant
    and an earliest start time."""
    # A run continued as new is listed once, as its chain's latest execution (the
    # earlier ones closed without upserting their end, so they would read "running").
    clauses = [f"WorkflowType = {quoted(AGENT_WORKFLOW)}", "ExecutionStatus != 'ContinuedAsNew'"]
    if status:
        clauses.append(_status_clause(status))
    if model:
        clauses.append(f"{sa.MODEL.name} = {quoted(model)}")
    if tenant:
        clauses.append(f"{sa.TENANT.name} = {quoted(tenant)}")
    if since:
        clauses.append(f"StartTime >= {quoted(since.isoformat())}")
    return " AND ".join(clauses)


def _row(execution: WorkflowExecution) -> RunRow:
    attributes = execution.typed_search_attributes
    temporal = execution.status or WorkflowExecutionStatus.RUNNING
    return RunRow(
        workflow_id=execution.id,
        run_id=execution.run_id,
        status=run_state(temporal, attributes.get(sa.STATUS)),
        model=attributes.get(sa.MODEL),
        steps=attributes.get(sa.STEPS),
        tokens=attributes.get(sa.TOKENS),
        cost_usd=attributes.get(sa.COST),
        start_time=execution.start_time,
        close_time=execution.close_time,
        temporal_status=temporal.name.lower(),
    )


async def list_runs(
    client: Client,
    *,
    status: str | None = None,
    model: str | None = None,
    limit: int,
    tenant: str | None = None,
    since: datetime | None = None,
) -> list[RunRow]:
    """At most ``limit`` agent runs matching the filters, running ones first (as listed)."""
    query = run_query(status, model, tenant, since)
    return [_row(execution) async for execution in client.list_workflows(query, limit=limit)]


def _cell(value: object | None) -> str:
    return "-" if value is None else str(value)


def run_table(rows: list[RunRow]) -> list[str]:
    """The rows as an aligned text table with a header."""
    header = ("ID", "STATUS", "MODEL", "STEPS", "TOKENS", "COST", "STARTED")
    cells = [
        (
            row.workflow_id,
            row.status,
            _cell(row.model),
            _cell(row.steps),
            _cell(row.tokens),
            "-" if row.cost_usd is None else money(row.cost_usd),
            row.start_time.astimezone().strftime("%Y-%m-%d %H:%M:%S"),
        )
        for row in rows
    ]
    return table(header, cells)
