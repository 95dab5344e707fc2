"""The client commands: parse flags -> call :class:`~onward.client.OnwardClient` -> render.

One coroutine per command, returning the exit code. This is the only layer
that sees ``argparse.Namespace`` or prints: human lines on stdout, remarks on
stderr, or with ``--json`` exactly one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from onward.artifacts import workspace_root
from onward.client import OnwardClient
from onward.connection import DATA_CONVERTER
from onward.contracts import AgentInput, ApprovalsDecided
from onward.retention import prune_store as prune
from onward.starter.errors import EXIT_FAILED, EXIT_OK, CliError, exit_code_for
from onward.starter.follow import (
    Ended,
    FollowEvent,
    Outcome,
    Retrying,
    StateChanged,
    StepFinished,
    WaitingForWorker,
)
from onward.starter.inputs import agent_input, budget_extension, budget_fields, load_script
from onward.starter.listing import run_table
from onward.starter.output import emit_json, note, say
from onward.starter.render import (
    describe_budget,
    result_lines,
    retry_line,
    state_change,
    status_lines,
    step_lines,
    waiting_line,
)
from onward.starter.report import parse_since, report_lines
from onward.starter.schedule_commands import schedule
from onward.starter.session_commands import chat, close, send, session_input
from onward.starter.timeline import trace_lines
from onward.starter.trace import STEPS_QUERY_TIMEOUT
from onward.store import is_postgres, local_root, open_store, store_name, store_url
from onward.text import counted

__all__ = [
    "Following",
    "approve",
    "artifacts",
    "cancel",
    "chat",
    "close",
    "export",
    "extend",
    "follow_run",
    "fork",
    "list_",
    "pause",
    "prune_store",
    "reject",
    "replay",
    "report",
    "result",
    "resume",
    "run",
    "schedule",
    "send",
    "start",
    "status",
    "steer",
    "steps",
    "trace",
    "watch",
]

Emit = Callable[[str], None]


class Following:
    """The id of the run being followed, so Ctrl-C can say how to pick it up again."""

    run_id: str | None = None


def render_event(event: FollowEvent, run_id: str, emit: Emit, notice: Emit) -> None:
    """One event of a followed run, for people (steps on ``emit``, remarks on ``notice``)."""
    if isinstance(event, StepFinished):
        for line in step_lines(event.record):
            emit(line)
    elif isinstance(event, StateChanged):
        change = state_change(run_id, event.state, event.reason, event.limit)
        if change:
            notice(change)
    elif isinstance(event, WaitingForWorker):
        notice(
            "its workflow task keeps failing on the worker, which cannot go on with the "
            "run: see the worker's log"
            if event.failing
            else waiting_line(event.task_queue)
        )
    elif isinstance(event, Retrying):
        notice(retry_line(event.retry))


async def follow_run(client: OnwardClient, run_id: str, emit: Emit, notice: Emit) -> Outcome:
    """Follow a run live until it ends; return how it ended."""
    Following.run_id = run_id
    async for event in client.follow(run_id):
        if isinstance(event, Ended):
            Following.run_id = None
            return event.outcome
        render_event(event, run_id, emit, notice)
    raise AssertionError("follow ends with Ended")  # pragma: no cover


def print_outcome(outcome: Outcome) -> None:
    """The end of a run, for people."""
    say()
    for line in result_lines(outcome.result):
        say(line)


async def _follow_to_end(client: OnwardClient, run_id: str, json: bool) -> int:
    if json:
        # Only the result on stdout; waits, pauses and retries noted on stderr.
        outcome = await follow_run(client, run_id, lambda _line: None, note)
        emit_json(outcome.result.model_dump(mode="json"))
    else:
        outcome = await follow_run(client, run_id, say, say)
        print_outcome(outcome)
    return exit_code_for(outcome.result.status)


def check_input(args: argparse.Namespace) -> None:
    """Build the input of ``run``, ``start``, ``chat`` (a new session) and ``extend``
    before connecting: a mistyped flag is reported (exit 2) without a server, and not
    behind "cannot reach Temporal"."""
    if args.command in ("run", "start"):
        args.agent_input = agent_input(args)
    elif args.command == "chat" and args.id is None:
        args.session_input = session_input(args)
    elif args.command == "extend":
        args.budget_extension = budget_extension(args)


def _agent_input(args: argparse.Namespace) -> AgentInput:
    checked: AgentInput | None = getattr(args, "agent_input", None)
    return checked if checked is not None else agent_input(args)


async def run(client: OnwardClient, args: argparse.Namespace) -> int:
    """``onward run``: start a run and follow it to its end."""
    agent = _agent_input(args)
    run_id = await client.start(agent, args.id)
    if not args.json:
        say(f"run {run_id} · model {agent.model} · task queue {client.task_queue}")
    return await _follow_to_end(client, run_id, args.json)


async def start(client: OnwardClient, args: argparse.Namespace) -> int:
    """``onward start``: start a run and print its id."""
    run_id = await client.start(_agent_input(args), args.id)
    if args.json:
        info = await client.info(run_id)
        emit_json({"workflow_id": run_id, "run_id": info.temporal_run_id})
    else:
        say(run_id)
    if not await client.has_worker():
        note(waiting_line(client.task_queue))
    return EXIT_OK


async def status(client: OnwardClient, args: argparse.Namespace) -> int:
    """``onward status ID``: state, usage against budget and the last step (exit 0 in any state)."""
    answer, source = await client.status_and_source(args.id)
    if source == "history":
        info = await client.info(args.id)
        if info.running:
            why = (
                "no worker answered in time"
                if await client.has_worker(info.task_queue)
                else waiting_line(info.task_queue)
            )
            note(f"onward: {why}; status read from the event history")
    if args.json:
        emit_json(answer.model_dump(mode="json"))
    else:
        for line in status_lines(args.id, answer):
            say(line)
    return EXIT_OK


async def steps(client: OnwardClient, args: argparse.Namespace) -> int:
    """``onward steps ID``: the step log so far, from a worker or else from the history."""
    log = await client.step_log(args.id)
    if log.unanswered:
        note(
            f"onward: no worker answered within {STEPS_QUERY_TIMEOUT.total_seconds():g} s; "
            "steps read from the event history"
        )
    if log.missing:
        note(f"onward: {log.missing}")
    if args.json:
        emit_json([record.model_dump(mode="json") for record in log.records])
    elif not log.records:
        say("(no finished steps)" if log.source == "result" else "(no finished steps yet)")
    else:
        for record in log.records:
            for line in step_lines(record):
                say(line)
    return EXIT_OK


async def trace(client: OnwardClient, args: argparse.Namespace) -> int:
    """``onward trace ID``: every model and tool call with attempts, timings, tokens and cost."""
    timeline = await client.trace(args.id)
    if timeline.missing_steps:
        note(f"onward: {timeline.missing_steps}")
    if args.json:
        emit_json(timeline.model_dump(mode="json"))
    else:
        for line in trace_lines(timeline):
            say(line)
    return EXIT_OK


async def export(client: OnwardClient, args: argparse.Namespace) -> int:
    """``onward export ID``: the run whole, one JSON document (stdout, or ``--output``)."""
    from onward.replay import export_counts

    exported = await client.export(args.id)
    document = exported.model_dump_json(indent=2) + "\n"
    for missing in (exported.steps_missing, exported.messages_missing):
        if missing:
            note(f"onward: {missing}")
    if args.output is None:
        sys.stdout.write(document)
        return EXIT_OK
    try:
        await asyncio.to_thread(Path(args.output).write_text, document, encoding="utf-8")
    except OSError as err:
        raise CliError(f"cannot write {args.output}: {err.strerror}") from None
    if args.json:
        messages = None if exported.messages is None else len(exported.messages)
        emit_json(
            {
                "workflow_id": args.id,
                "output": args.output,
                "steps": len(exported.steps),
                "messages": messages,
                "runs": len(exported.histories),
            }
        )
    else:
        say(f"exported {args.id} to {args.output}: {export_counts(exported)}")
    return EXIT_OK


async def fork(client: OnwardClient, args: argparse.Namespace) -> int:
    """``onward fork ID --at-step N PROMPT``: a new run from the run's conversation at the
    end of step N; prints its id."""
    changes: dict[str, Any] = {}
    if args.model is not None:
        changes["model"] = args.model
    if args.fallback_models:
        changes["fallback_models"] = args.fallback_models
    if args.script is not None:
        changes["script"] = load_script(args.script)
    if budget := budget_fields(args):
        changes["budget"] = budget
    run_id = await client.fork(args.id, args.at_step, args.prompt, id=args.new_id, changes=changes)
    if args.json:
        emit_json({"workflow_id": run_id, "forked_from": args.id, "at_step": args.at_step})
    else:
        say(run_id)
    if not await client.has_worker():
        note(waiting_line(client.task_queue))
    return EXIT_OK


async def replay(client: OnwardClient, args: argparse.Namespace) -> int:
    """``onward replay ID... | --file FILE... | --recent N | --running``: whether workers of this
    installation would go on with those runs (their histories replay on its workflows)."""
    from onward.replay import Replayed, histories_in_file, replay_histories

    if args.recent is not None and args.recent < 1:
        raise CliError(f"--recent: {args.recent} is not a number of runs (1 or more)")
    if not (args.ids or args.file or args.recent or args.running):
        raise CliError("name runs to replay: their IDs, --file FILE, --recent N or --running")
    outcomes: list[Replayed] = []
    for path in args.file:
        outcomes += await replay_histories(histories_in_file(Path(path)))
    ids = list(args.ids)
    if args.recent:
        ids += [row.workflow_id for row in await client.list(limit=args.recent)]
    if args.running:
        ids += await client.in_flight()
    for run_id in dict.fromkeys(ids):  # once each, in order
        outcomes += await client.replay(run_id)
    unread = [outcome for outcome in outcomes if outcome.unreadable]
    failed = [o for o in outcomes if o.failure is not None and not o.unreadable]
    if args.json:
        emit_json([dataclasses.asdict(outcome) for outcome in outcomes])
        return EXIT_FAILED if failed or unread else EXIT_OK
    for outcome in outcomes:
        where = f"{outcome.workflow_id} · run {outcome.run_id} · {outcome.events} events"
        if outcome.failure is None:
            say(f"replays      {where}")
        else:
            verdict = "UNREADABLE" if outcome.unreadable else "DOES NOT"
            say(f"{verdict:<12} {where}: {outcome.failure}")
    if failed:
        say(
            f"{len(failed)} of {counted(len(outcomes), 'run')} would not go on on a worker "
            "of this version: its workflow decides otherwise from what they recorded "
            "(guard the change with workflow.patched)"
        )
    if unread:
        say(
            f"{len(unread)} of {counted(len(outcomes), 'run')} could not be read here: "
            "replay them with the workers' ONWARD_ENCRYPTION_KEYS and ONWARD_PAYLOADS"
        )
    if failed or unread:
        return EXIT_FAILED
    say(f"all {counted(len(outcomes), 'run')} replay: workers of this version go on with them")
    return EXIT_OK


async def watch(client: OnwardClient, args: argparse.Namespace) -> int:
    """``onward watch ID``: follow a run like ``run`` does, until it ends."""
    info = await client.run_info(args.id)  # an unknown (or session) id fails here, first
    if not args.json:
        if info.running:
            say(f"watching {args.id} · task queue {info.task_queue}")
        else:
            say(f"run {args.id} has already ended")
    return await _follow_to_end(client, args.id, args.json)


async def result(client: OnwardClient, args: argparse.Namespace) -> int:
    """``onward result ID``: wait for the run to end and print its result."""
    info = await client.run_info(args.id)
    if info.running and not await client.has_worker(info.task_queue):
        note(f"onward: {waiting_line(info.task_queue)}; waiting for the run to end")
    outcome = await client.outcome(args.id)
    if args.json:
        emit_json(outcome.result.model_dump(mode="json"))
    else:
        for line in result_lines(outcome.result):
            say(line)
    return exit_code_for(outcome.result.status)


async def _signal_sent(
    client: OnwardClient, args: argparse.Namespace, name: str, effect: str
) -> int:
    if args.json:
        emit_json({"workflow_id": args.id, "signal": name})
    else:
        say(f"{name}: sent to {args.id}; {effect}")
    info = await client.info(args.id)
    if not await client.has_worker(info.task_queue):
        note(f"onward: {waiting_line(info.task_queue)}; it takes effect once one runs")
    return EXIT_OK


async def pause(client: OnwardClient, args: argparse.Namespace) -> int:
    """``onward pause ID``: no new calls start until ``resume``."""
    await client.pause(args.id)
    return await _signal_sent(client, args, "pause", "it pauses before its next model or tool call")


async def resume(client: OnwardClient, args: argparse.Namespace) -> int:
    """``onward resume ID``: undo ``pause``."""
    status = await client.resume_status(args.id)
    before = None if status is None else status.state
    if before is None:
        effect = "it goes on if it was paused"
    elif before == "paused":
        effect = "it goes on"
    elif before == "budget_paused":
        # Only more budget lifts a budget's pause.
        effect = f"nothing changes: it waits for more budget (onward extend {args.id} ...)"
    elif before == "running" and status is not None and status.pausing:
        effect = "its pause, not reached yet (calls were in flight), is withdrawn: it goes on"
    else:
        effect = f"it was not paused ({before}), so nothing changes"
    return await _signal_sent(client, args, "resume", effect)


async def cancel(client: OnwardClient, args: argparse.Namespace) -> int:
    """``onward cancel ID``: end the run as cancelled, keeping what it did."""
    await client.cancel(args.id, args.reason)
    return await _signal_sent(
        client, args, "cancel", f"see what it did with: onward result {args.id}"
    )


async def steer(client: OnwardClient, args: argparse.Namespace) -> int:
    """``onward steer ID MESSAGE``: a user message for the next model call."""
    await client.steer(args.id, args.message)
    return await _signal_sent(client, args, "steer", "the model reads it on its next call")


async def extend(client: OnwardClient, args: argparse.Namespace) -> int:
    """``onward extend ID``: raise budget limits; the run's validator may refuse."""
    extension = getattr(args, "budget_extension", None) or budget_extension(args)
    budget = await client.extend_budget(args.id, extension)
    if args.json:
        emit_json(budget.model_dump(mode="json"))
    else:
        say(f"new limits for {args.id}: {describe_budget(budget)}")
    return EXIT_OK


async def list_(client: OnwardClient, args: argparse.Namespace) -> int:
    """``onward list``: recent agent runs, newest first."""
    if args.sessions:
        if args.status or args.model:
            raise CliError("--sessions lists every session: --status and --model are for runs")
        page = await client.list_sessions(limit=args.limit, page_token=args.page_token)
    else:
        page = await client.list_page(
            status=args.status, model=args.model, limit=args.limit, page_token=args.page_token
        )
    rows = page.rows
    if args.json:
        emit_json([row.as_json() for row in rows])
    elif not rows:
        say("(no sessions)" if args.sessions else "(no runs)")
    else:
        for line in run_table(rows):
            say(line)
    if page.next_page_token is not None:
        what = "sessions" if args.sessions else "runs"
        note(f"more {what}: add --page-token {page.next_page_token}")
    return EXIT_OK


async def report(client: OnwardClient, args: argparse.Namespace) -> int:
    """``onward report``: per model and per tool figures over the runs of a time window."""
    until = datetime.now(UTC)
    try:
        since = parse_since(args.since, until)
    except ValueError as err:
        raise CliError(f"--since: {err}") from err
    summary = await client.report(since, until=until, tenant=args.tenant, limit=args.limit)
    if args.json:
        emit_json(summary.model_dump(mode="json"))
    else:
        for line in report_lines(summary):
            say(line)
    return EXIT_OK


PRUNE_AT_LEAST = timedelta(days=1)
"""The least ``--older-than`` without ``--force``: a typo (30m for 30 days) prunes nothing."""


async def prune_store(client: OnwardClient, args: argparse.Namespace) -> int:
    """``onward prune-store --older-than 30d``: delete the store's data of runs over and old."""
    now = datetime.now(UTC)
    try:
        older_than = now - parse_since(args.older_than, now)
    except ValueError as err:
        raise CliError(f"--older-than: {err}") from err
    if older_than < PRUNE_AT_LEAST and not args.force:
        raise CliError(
            f"--older-than: {args.older_than!r} is under a day (m is minutes, d days, w "
            "weeks); --force prunes data that recent"
        )
    if older_than.total_seconds() < 1:
        raise CliError(f"--older-than: {args.older_than!r} is not in the past")
    url = store_url(os.environ)
    if not is_postgres(url) and not local_root(url).is_dir():
        raise CliError(
            f"no store at {local_root(url)} (ONWARD_STORE; by default .onward/store in the "
            "current directory): run prune-store where the workers run, or set ONWARD_STORE"
        )
    store = await open_store(url, DATA_CONVERTER.payload_codec)
    # Run workspaces: in the store on PostgreSQL, else directories beside the workers.
    directories = workspace_root(os.environ) if store.files is None else None
    try:
        report = await prune(
            client, store, older_than, dry_run=args.dry_run, workspace_root=directories
        )
    finally:
        await store.close()
    if args.json:
        emit_json(report.model_dump(mode="json"))
        return EXIT_OK
    verb = "would delete" if args.dry_run else "deleted"
    since = f"{now - older_than:%Y-%m-%d %H:%M} UTC"
    say(
        f"{verb} {len(report.transcripts)} transcript(s) and tool-cache entries and "
        f"{len(report.workspaces)} workspace(s) not written since {since} "
        f"(store {store_name(url)}, runs of namespace {report.namespace})"
    )
    for item in report.kept:
        note(f"kept {item.kind} {item.id}: {item.reason}")
    if report.retention_s is not None and report.older_than_s < report.retention_s:
        days = report.retention_s / 86_400
        kept = f"{days:g} day" if days == 1 else f"{days:g} days"
        note(
            f"namespace {report.namespace} keeps closed runs {kept}: those closed "
            "since then still show in Temporal, without what the store had (their step logs)"
        )
    return EXIT_OK


# -- human approval and artifacts ------------------------------------


async def approve(client: OnwardClient, args: argparse.Namespace) -> int:
    """``onward approve ID [--call CALL_ID]``: let waiting tool calls run."""
    decided = await client.approve(args.id, args.call, args.note)
    return _decided(args, decided)


async def reject(client: OnwardClient, args: argparse.Namespace) -> int:
    """``onward reject ID [--call CALL_ID] --note ...``: refuse waiting tool calls."""
    decided = await client.reject(args.id, args.call, args.note)
    return _decided(args, decided)


def _decided(args: argparse.Namespace, decided: ApprovalsDecided) -> int:
    where = decided.run_id or args.id  # a sub-agent's id, when its call was decided
    if args.json:
        document = {"workflow_id": args.id, "decision": decided.decision}
        emit_json({**document, "call_ids": decided.call_ids, "run_id": where})
    else:
        say(f"{decided.decision}: {', '.join(decided.call_ids)} ({where})")
    return EXIT_OK


async def artifacts(client: OnwardClient, args: argparse.Namespace) -> int:
    """``onward artifacts ID [--get PATH]``: list the run's files, or print one."""
    if args.get is not None:
        data = await client.artifact(args.id, args.get, workspace_root=args.workspace)
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return EXIT_OK
    found = await client.artifacts(args.id, workspace_root=args.workspace)
    if args.json:
        emit_json([artifact.model_dump(mode="json") for artifact in found])
    elif not found:
        say("(no artifacts)")
    else:
        for artifact in found:
            say(f"{artifact.size:>10}  {artifact.sha256[:12]}  {artifact.path}")
    return EXIT_OK
