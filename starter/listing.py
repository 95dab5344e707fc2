"""``onward list``: agent runs from Temporal's visibility store.

The workflow upserts Onward's search attributes (status, model, steps, tokens,
cost) after every step, so the list needs no query per run and works with no
worker running. Where the server has no such attribute (or the run has not
published it yet) Temporal's own execution status stands in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from temporalio.api.workflowservice.v1 import ListWorkflowExecutionsRequest
from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from onward import search_attributes as sa
from onward.contracts import AGENT_WORKFLOW, FINAL_STATES, SESSION_WORKFLOW
from onward.errors import InvalidInput
from onward.starter.render import money, table
from onward.states import OWN_STATE_WINS, closed_state, closing_statuses, run_state

__all__ = [
    "RunPage",
    "RunRow",
    "quoted",
    "run_page",
    "run_query",
    "run_table",
    "session_page",
]


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


@dataclass(frozen=True)
class RunPage:
    """One page of a run list, and where the next one begins."""

    rows: list[RunRow]
    next_page_token: str | None
    """Give it back, with the same filters, for the runs after these; None: no more."""


async def run_page(
    client: Client,
    *,
    status: str | None = None,
    model: str | None = None,
    limit: int,
    tenant: str | None = None,
    since: datetime | None = None,
    page_token: str | None = None,
) -> RunPage:
    """Up to ``limit`` agent runs matching the filters, running ones first (as listed),
    from where ``page_token`` (a page's ``next_page_token``) left off.

    Raises:
        InvalidInput: ``page_token`` is no token a page gave.
    """
    query = run_query(status, model, tenant, since)
    return await _page(client, query, limit, page_token, _row)


async def session_page(
    client: Client,
    *,
    open: bool | None = None,
    limit: int,
    tenant: str | None = None,
    page_token: str | None = None,
) -> RunPage:
    """Up to ``limit`` sessions, open ones first, newest first, then closed ones, latest
    closed first (as :func:`run_page`).

    A session publishes no search attributes: its status is ``open`` while
    Temporal runs it, else how Temporal closed it. ``open`` keeps the open
    (True) or the closed (False) ones.
    """
    clauses = [f"WorkflowType = {quoted(SESSION_WORKFLOW)}", "ExecutionStatus != 'ContinuedAsNew'"]
    if open is not None:
        clauses.append(f"ExecutionStatus {'=' if open else '!='} 'Running'")
    if tenant:
        clauses.append(f"{sa.TENANT.name} = {quoted(tenant)}")
    return await _page(client, " AND ".join(clauses), limit, page_token, _session_row)


async def _page(
    client: Client,
    query: str,
    limit: int,
    page_token: str | None,
    row: Callable[[WorkflowExecution], RunRow],
) -> RunPage:
    token = _token_bytes(query, page_token)
    if token is not None:
        await _readable(client, query, token)
    rows: list[RunRow] = []
    while True:  # a server may answer a page short and still have more
        executions = client.list_workflows(
            query, page_size=limit - len(rows), next_page_token=token
        )
        try:
            await executions.fetch_next_page()
        except RPCError as err:
            # A token made up to pass the check (it is no secret): Temporal cannot read it.
            if page_token is None or err.status not in _TOKEN_REFUSED:
                raise
            raise _bad_token() from err
        rows += [row(execution) for execution in executions.current_page or ()]
        token = executions.next_page_token
        if token is not None and len(rows) >= limit and not await _more(client, query, token):
            token = None  # Temporal gives a token for every full page, the last one too
        if token is None or len(rows) >= limit:
            return RunPage(rows, None if token is None else _token_text(query, token))


async def _readable(client: Client, query: str, token: bytes) -> None:
    """Refuse at once a caller's token that Temporal cannot read.

    Temporal answers such a token as an unknown error ("please retry"), which
    the SDK retries for seconds as it would a passing fault. One call without
    retries tells them apart: refused, while the same query without the token is
    answered, it is the token. Anything else leaves the list to the SDK's retries.

    Raises:
        InvalidInput: Temporal cannot read ``token``.
    """

    def request(next_page_token: bytes) -> ListWorkflowExecutionsRequest:
        return ListWorkflowExecutionsRequest(
            namespace=client.namespace, query=query, page_size=1, next_page_token=next_page_token
        )

    service = client.workflow_service
    try:
        await service.list_workflow_executions(request(token), retry=False)
    except RPCError as refused:
        if refused.status not in _TOKEN_REFUSED:
            return
        try:
            await service.list_workflow_executions(request(b""), retry=False)
        except RPCError:
            return  # the server's fault, not the token's: the list retries as usual
        raise _bad_token() from refused


async def _more(client: Client, query: str, token: bytes) -> bool:
    """Whether any execution comes after ``token``: a page links to a next one only then."""
    executions = client.list_workflows(query, page_size=1, next_page_token=token)
    await executions.fetch_next_page()
    return bool(executions.current_page) or executions.next_page_token is not None


def _session_row(execution: WorkflowExecution) -> RunRow:
    temporal = execution.status or WorkflowExecutionStatus.RUNNING
    running = temporal == WorkflowExecutionStatus.RUNNING
    return RunRow(
        workflow_id=execution.id,
        run_id=execution.run_id,
        status="open" if running else closed_state(temporal),
        model=None,
        steps=None,
        tokens=None,
        cost_usd=None,
        start_time=execution.start_time,
        close_time=execution.close_time,
        temporal_status=temporal.name.lower(),
    )


_CHECK_BYTES = 8
_TOKEN_REFUSED = (RPCStatusCode.INVALID_ARGUMENT, RPCStatusCode.UNKNOWN)
"""How Temporal answers a token it cannot read (the SDK retries UNKNOWN)."""


def _check(query: str, token: bytes) -> bytes:
    return hashlib.sha256(query.encode() + b"\0" + token).digest()[:_CHECK_BYTES]


def _token_text(query: str, token: bytes) -> str:
    """Temporal's token, with a check of it and of the query it continues."""
    return base64.urlsafe_b64encode(_check(query, token) + token).decode().rstrip("=")


def _token_bytes(query: str, text: str | None) -> bytes | None:
    """Temporal's token from :func:`_token_text`'s, refused unless it continues ``query``.

    Checked here: Temporal answers a token it cannot read as an unknown error,
    which the SDK retries for seconds before it gives up. The check is no secret,
    so a token made up to pass it still reaches Temporal (:func:`_readable`).
    """
    if text is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise _bad_token() from None
    check, token = raw[:_CHECK_BYTES], raw[_CHECK_BYTES:]
    if not token or not hmac.compare_digest(check, _check(query, token)):
        raise _bad_token()
    return token


def _bad_token() -> InvalidInput:
    return InvalidInput.at(
        ("page_token",),
        "not a token a page of this list gave (pass next_page_token back as it came, with "
        "the same filters)",
    )


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
            row.start_time.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z"),  # zone named
        )
        for row in rows
    ]
    return table(header, cells)
