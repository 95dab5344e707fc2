"""``onward report``: per model and per tool figures over the runs of a time window.

The runs come from Temporal's visibility store (agent runs started since a
time, optionally of one tenant, by the ``OnwardTenant`` search attribute);
their steps and calls from each run's result and event history, as ``onward
trace`` reads them, so the report needs no worker. Latency is a call's time
from scheduling to its outcome, retries and their back-off included: what the
run waited. Percentiles use the nearest-rank method.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, computed_field
from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus

from onward import search_attributes as sa
from onward import steplog
from onward.contracts import AGENT_WORKFLOW
from onward.encryption import EncryptionError
from onward.money import cache_saved_text
from onward.starter.listing import quoted
from onward.starter.render import cost_text, table
from onward.starter.trace import Trace, TraceStep, read_history, trace_of
from onward.text import counted

__all__ = [
    "CallStats",
    "ModelStats",
    "Report",
    "aggregate",
    "collect_traces",
    "parse_since",
    "percentile",
    "report_lines",
    "report_query",
]

FETCH_CONCURRENCY = 8
"""Histories read at once."""

_SPAN = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``90s``, ``15m``, ``1h``, ``2d``, ``1w`` (or ``1h30m``) ago, or an ISO date and time.

    Raises:
        ValueError: neither form; the message says which forms work.
    """
    now = now or datetime.now(UTC)
    spec = text.strip().lower()
    parts = _SPAN.findall(spec)
    if parts and _SPAN.sub("", spec).strip() == "":
        return now - timedelta(seconds=sum(float(n) * _UNIT_S[unit] for n, unit in parts))
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a span like 30m, 1h, 2d, 1w nor a date like 2025-01-31T09:00"
        ) from None
    return when if when.tzinfo else when.astimezone()


def report_query(since: datetime, tenant: str | None = None) -> str:
    """The visibility query: agent runs started since ``since``, of ``tenant`` if given."""
    start = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    clauses = [f"WorkflowType = {quoted(AGENT_WORKFLOW)}", f"StartTime >= {quoted(start)}"]
    if tenant:
        clauses.append(f"{sa.TENANT.name} = {quoted(tenant)}")
    return " AND ".join(clauses)


async def collect_traces(
    client: Client, since: datetime, tenant: str | None, limit: int
) -> tuple[list[Trace], int]:
    """The timelines of up to ``limit`` runs in the window (history only, no worker asked),
    and how many runs could not be read (sealed with keys this process lacks)."""
    query = report_query(since, tenant)
    executions = [e async for e in client.list_workflows(query, limit=limit)]
    gate = asyncio.Semaphore(FETCH_CONCURRENCY)

    async def one(execution: WorkflowExecution) -> Trace | None:
        async with gate:
            handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
            try:
                history = await read_history(handle)
            except EncryptionError:  # one such run is no reason to report on none
                return None
        trace = trace_of(execution, history)
        # Each execution of a continue-as-new chain is listed: its own steps count once,
        # and only the chain's latest run counts as a run (its usage is the chain's).
        carry = history.input.carry if history.input is not None else None
        trace.first_step = carry.steps_total + 1 if carry is not None else 1
        trace.continued = execution.status == WorkflowExecutionStatus.CONTINUED_AS_NEW
        return trace

    read = await asyncio.gather(*(one(execution) for execution in executions))
    traces = [trace for trace in read if trace is not None]
    return traces, len(read) - len(traces)


# -- figures ------------------------------------------------------------------------


def percentile(values: list[int], p: float) -> int | None:
    """The ``p``-th percentile by nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(math.ceil(p / 100 * len(ordered)), 1)
    return ordered[rank - 1]


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


class CallStats(BaseModel):
    """Figures of one tool (or, as :class:`ModelStats`, one model) over the window."""

    name: str
    calls: int
    errors: int
    retried: int
    """Calls that needed more than one attempt."""
    retries: int
    """Attempts after the first, summed."""
    p50_ms: int | None
    p95_ms: int | None
    cache_hits: int = 0
    """Calls answered from the tool cache (the tool did not run)."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def error_rate(self) -> float:
        """Share of calls that ended in an error."""
        return _rate(self.errors, self.calls)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def retry_rate(self) -> float:
        """Share of calls that were retried."""
        return _rate(self.retried, self.calls)


class ModelStats(CallStats):
    """Figures of one model: calls as for tools, plus tokens and cost."""

    input_tokens: int
    output_tokens: int
    total_tokens: int
    cost_usd: float
    unpriced_calls: int
    cached_input_tokens: int = 0
    """Input tokens read from the provider's prompt cache (billed at its cached rate)."""
    cache_write_tokens: int = 0
    """Input tokens written to the provider's prompt cache (billed at its cache-write rate)."""
    cache_saved_usd: float = 0.0
    """What prompt caching saved: these tokens at the full input price minus the cost
    (negative when cache writes cost more than the reads saved)."""


class Report(BaseModel):
    """The ``onward report --json`` document."""

    since: datetime
    until: datetime
    tenant: str | None
    runs: int
    by_status: dict[str, int]
    total_tokens: int
    cost_usd: float
    cost_known: bool = True
    """False when a call of some run had no price: ``cost_usd`` is then a lower bound."""
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    cache_saved_usd: float = 0.0
    """What prompt caching saved over the window (see ``ModelStats``)."""
    models: list[ModelStats]
    tools: list[CallStats]
    unreadable: int = 0
    """Runs in the window left out: sealed with keys this process lacks
    (``ONWARD_ENCRYPTION_KEYS``)."""


@dataclass
class _Tally:
    calls: int = 0
    errors: int = 0
    retried: int = 0
    retries: int = 0
    latencies: list[int] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    unpriced: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    cache_saved_usd: float = 0.0
    cache_hits: int = 0

    def count(self, failed: bool, retries: int, latency_ms: int | None) -> None:
        self.calls += 1
        self.errors += int(failed)
        self.retried += int(retries > 0)
        self.retries += retries
        if latency_ms is not None:
            self.latencies.append(latency_ms)

    def stats(self, name: str) -> CallStats:
        return CallStats(
            name=name,
            calls=self.calls,
            errors=self.errors,
            retried=self.retried,
            retries=self.retries,
            p50_ms=percentile(self.latencies, 50),
            p95_ms=percentile(self.latencies, 95),
            cache_hits=self.cache_hits,
        )

    def model_stats(self, name: str) -> ModelStats:
        return ModelStats(
            **self.stats(name).model_dump(exclude={"error_rate", "retry_rate"}),
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            total_tokens=self.input_tokens + self.output_tokens,
            cost_usd=round(self.cost_usd, 8),
            unpriced_calls=self.unpriced,
            cached_input_tokens=self.cached_input_tokens,
            cache_write_tokens=self.cache_write_tokens,
            cache_saved_usd=round(self.cache_saved_usd, 8),
        )


def _tally(traces: list[Trace]) -> tuple[dict[str, _Tally], dict[str, _Tally]]:
    models: dict[str, _Tally] = {}
    tools: dict[str, _Tally] = {}
    for trace in traces:
        for step in trace.steps:
            if step.step < trace.first_step:
                continue  # an earlier run's step, carried along: counted with that run
            _tally_failed_models(models, step)
            call = step.model_call
            tally = models.setdefault(step.model or trace.model or "?", _Tally())
            if call is None:  # a step log without history: nothing known about attempts
                failed = step.error is not None
                tally.count(failed, 0, None)
            else:
                failed = call.state in ("failed", "timed_out")
                tally.count(failed, call.retries, call.latency_ms if call.closed else None)
            tally.input_tokens += step.usage.input_tokens
            tally.output_tokens += step.usage.output_tokens
            tally.cached_input_tokens += step.usage.cached_input_tokens or 0
            tally.cache_write_tokens += step.usage.cache_write_tokens or 0
            tally.cache_saved_usd += step.cache_saved_usd or 0.0
            if step.cost_usd is not None:
                tally.cost_usd += step.cost_usd
            elif not failed:
                tally.unpriced += 1
            for tool in step.tool_calls:
                if tool.result is None and tool.error is None:
                    continue  # still running
                run = tool.call
                if run is None and steplog.tool_status(tool) == "not_run":
                    continue  # refused by a budget or a cancel: never called
                if run is None and tool.approval and tool.approval.decision == "rejected":
                    continue  # a decision not to call it (a person's, or its timeout's)
                latency = run.latency_ms if run is not None else None
                tool_tally = tools.setdefault(tool.name, _Tally())
                tool_tally.count(tool.error is not None, run.retries if run else 0, latency)
                tool_tally.cache_hits += int(tool.cache_hit)
    return models, tools


def _tally_failed_models(models: dict[str, _Tally], step: TraceStep) -> None:
    """Count the calls of the models that failed ``step`` before its model answered.

    Each is an error of its own model (the model of an outage is the one to see), with
    its retries and time when the history shows them; a step log alone names only the
    model (``failed_models``: ``<model>: <error>``).
    """
    if step.failed_model_calls:
        for call in step.failed_model_calls:
            tally = models.setdefault(call.name, _Tally())
            tally.count(True, call.retries, call.latency_ms if call.closed else None)
        return
    for failed in step.failed_models or ():
        models.setdefault(failed.split(": ", 1)[0], _Tally()).count(True, 0, None)


def aggregate(
    traces: list[Trace],
    since: datetime,
    until: datetime,
    tenant: str | None = None,
    unreadable: int = 0,
) -> Report:
    """Per model and per tool figures over ``traces`` (pure: no I/O); ``unreadable`` runs
    of the window could not be read."""
    models, tools = _tally(traces)
    # A run continued as new goes on in its chain's next run: the chain counts once.
    runs = [trace for trace in traces if not trace.continued]
    # Tokens and cost are those of the model calls in the window, as in the tables: a
    # run's usage would count a chain's calls from its start (and a sub-agent's twice).
    return Report(
        since=since,
        until=until,
        tenant=tenant,
        runs=len(runs),
        by_status=dict(Counter(trace.status for trace in runs).most_common()),
        total_tokens=sum(m.input_tokens + m.output_tokens for m in models.values()),
        cost_usd=round(sum(m.cost_usd for m in models.values()), 8),
        cost_known=all(trace.usage.cost_known for trace in traces)
        and not any(m.unpriced for m in models.values()),
        cached_input_tokens=sum(m.cached_input_tokens for m in models.values()),
        cache_write_tokens=sum(m.cache_write_tokens for m in models.values()),
        cache_saved_usd=round(sum(m.cache_saved_usd for m in models.values()), 8),
        models=[models[name].model_stats(name) for name in sorted(models)],
        tools=[tools[name].stats(name) for name in sorted(tools)],
        unreadable=unreadable,
    )


# -- human output -------------------------------------------------------------------


def _ms(value: int | None) -> str:
    return "-" if value is None else f"{value / 1000:.2f} s"


def _share(part: int, rate: float) -> str:
    return f"{part} ({rate:.0%})"


def _common(stats: CallStats) -> list[str]:
    return [
        stats.name,
        str(stats.calls),
        _share(stats.errors, stats.error_rate),
        _share(stats.retried, stats.retry_rate),
        _ms(stats.p50_ms),
        _ms(stats.p95_ms),
    ]


def report_lines(report: Report) -> list[str]:
    """The report as a header line and two tables (models, tools)."""
    # In this machine's time zone, named: a bare time reads as UTC to some and local to others.
    since = report.since.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    head = f"{report.runs} run{'s' if report.runs != 1 else ''} since {since}"
    if report.tenant:
        head += f" · tenant {report.tenant}"
    statuses = ", ".join(f"{state} {count}" for state, count in report.by_status.items())
    if statuses:
        head += f" · {statuses}"
    head += f" · {report.total_tokens} tokens · {cost_text(report.cost_usd, report.cost_known)}"
    if report.cached_input_tokens or report.cache_write_tokens:
        # Writes alone (a prompt sent once) cost more than plain input: said, not hidden.
        head += f" · prompt cache saved {cache_saved_text(report.cache_saved_usd)}"
    lines = [head]
    if report.unreadable:
        lines.append(
            f"({counted(report.unreadable, 'run')} left out: encrypted with keys this process "
            "lacks; set ONWARD_ENCRYPTION_KEYS as the workers do)"
        )
    if not report.runs:
        return lines
    common = ("CALLS", "ERRORS", "RETRIED", "P50", "P95")
    model_rows = [
        [
            *_common(m),
            str(m.input_tokens),
            str(m.cached_input_tokens),
            str(m.output_tokens),
            cost_text(m.cost_usd, m.unpriced_calls == 0),
        ]
        for m in report.models
    ]
    header = ("MODEL", *common, "TOKENS IN", "CACHED", "TOKENS OUT", "COST")
    lines += ["", *table(header, model_rows)]
    if report.tools:
        tool_rows = [[*_common(t), str(t.cache_hits)] for t in report.tools]
        lines += ["", *table(("TOOL", *common, "CACHED"), tool_rows)]
    else:
        lines += ["", "(no tool calls)"]
    return lines
