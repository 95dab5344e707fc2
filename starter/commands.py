"""The client commands: one coroutine each, returning the exit code.

Each takes the :class:`~onward.starter.remote.Session` and the parsed flags, talks to
the run through a typed handle (signals, queries and the update are named by
their ``AgentWorkflow`` methods), and prints either human lines or, with
``--json``, exactly one JSON document.
"""

from __future__ import annotations

import argparse
import uuid
from datetime import UTC, datetime

from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from onward.contracts import AgentInput, CancelRequest, SteerRequest
from onward.starter.errors import EXIT_FAILED, EXIT_OK, CliError
from onward.starter.follow import QUERY_TIMEOUT, Outcome, final_result, follow, status_of
from onward.starter.inputs import agent_input, budget_extension
from onward.starter.listing import list_runs, run_table
from onward.starter.output import emit_json, note, say
from onward.starter.remote import AgentHandle, Session
from onward.starter.render import (
    describe_budget,
    result_lines,
    static_details,
    static_summary,
    status_lines,
    step_lines,
)
from onward.starter.report import aggregate, collect_traces, parse_since, report_lines
from onward.starter.timeline import trace_lines
from onward.starter.trace import STEPS_QUERY_TIMEOUT, load_step_log, load_trace
from onward.workflows import AgentWorkflow

__all__ = [
    "cancel",
    "extend",
    "list_",
    "pause",
    "report",
    "result",
    "resume",
    "run",
    "start",
    "start_run",
    "status",
    "steer",
    "steps",
    "trace",
    "watch",
    "watch_run",
]


def new_workflow_id(prefix: str = "agent") -> str:
    """A fresh run id, short enough to type: ``agent-1f3a9c0b2d4e``."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def start_run(session: Session, agent: AgentInput, workflow_id: str | None) -> AgentHandle:
    """Start a run on the session's task queue, titled and described for the Web UI."""
    client = await session.client()
    workflow_id = workflow_id or new_workflow_id()
    try:
        return await client.start_workflow(
            AgentWorkflow.run,
            agent,
            id=workflow_id,
            task_queue=session.task_queue,
            static_summary=static_summary(agent),
            static_details=static_details(agent),
        )
    except WorkflowAlreadyStartedError as err:
        raise CliError(f"a run with id {workflow_id} is already running") from err


def print_outcome(outcome: Outcome) -> None:
    """The end of a run, for people."""
    say()
    for line in result_lines(outcome.result):
        say(line)


async def watch_run(session: Session, handle: AgentHandle, task_queue: str) -> Outcome:
    """Follow a run (on ``task_queue``) live until it ends, then print its result."""
    session.following = handle.id
    outcome = await follow(handle, say, task_queue=task_queue)
    session.following = None
    print_outcome(outcome)
    return outcome


async def _follow_quietly(session: Session, handle: AgentHandle, task_queue: str) -> int:
    """``--json`` following: only the result on stdout; pauses and waits noted on stderr."""
    session.following = handle.id
    outcome = await follow(handle, lambda _line: None, notice=note, task_queue=task_queue)
    session.following = None
    emit_json(outcome.result.model_dump(mode="json"))
    return outcome.exit_code


async def run(session: Session, args: argparse.Namespace) -> int:
    """``onward run``: start a run and follow it to its end."""
    agent = agent_input(args)
    handle = await start_run(session, agent, args.id)
    if args.json:
        return await _follow_quietly(session, handle, session.task_queue)
    say(f"run {handle.id} · model {agent.model} · task queue {session.task_queue}")
    return (await watch_run(session, handle, session.task_queue)).exit_code


async def start(session: Session, args: argparse.Namespace) -> int:
    """``onward start``: start a run and print its id."""
    handle = await start_run(session, agent_input(args), args.id)
    if args.json:
        emit_json({"workflow_id": handle.id, "run_id": handle.result_run_id})
    else:
        say(handle.id)
    return EXIT_OK


def _check_unanswered(err: RPCError, workflow_id: str) -> None:
    """A query that timed out means no worker is there to answer it: say so."""
    if err.status in (RPCStatusCode.CANCELLED, RPCStatusCode.DEADLINE_EXCEEDED):
        raise CliError(
            f"no worker answered the query about {workflow_id} within "
            f"{QUERY_TIMEOUT.total_seconds():g} s; is one running on its task queue? "
            "start one with: onward worker",
            EXIT_FAILED,
        ) from err


async def status(session: Session, args: argparse.Namespace) -> int:
    """``onward status ID``: state, usage against budget and the last step."""
    handle = await session.handle(args.id)
    try:
        answer = await status_of(handle)
    except RPCError as err:
        _check_unanswered(err, args.id)
        raise
    if args.json:
        emit_json(answer.model_dump(mode="json"))
    else:
        for line in status_lines(args.id, answer):
            say(line)
    return EXIT_OK


async def steps(session: Session, args: argparse.Namespace) -> int:
    """``onward steps ID``: the step log so far, from a worker or else from the history."""
    records, _source, unanswered = await load_step_log(await session.handle(args.id))
    if unanswered:
        note(
            f"onward: no worker answered within {STEPS_QUERY_TIMEOUT.total_seconds():g} s; "
            "steps read from the event history"
        )
    if args.json:
        emit_json([record.model_dump(mode="json") for record in records])
    elif not records:
        say("(no finished steps yet)")
    else:
        for record in records:
            for line in step_lines(record):
                say(line)
    return EXIT_OK


async def trace(session: Session, args: argparse.Namespace) -> int:
    """``onward trace ID``: every model and tool call with attempts, timings, tokens and cost."""
    timeline = await load_trace(await session.handle(args.id))
    if args.json:
        emit_json(timeline.model_dump(mode="json"))
    else:
        for line in trace_lines(timeline):
            say(line)
    return EXIT_OK


async def watch(session: Session, args: argparse.Namespace) -> int:
    """``onward watch ID``: follow a run like ``run`` does, until it ends."""
    handle = await session.handle(args.id)
    description = await handle.describe()  # an unknown id fails here, before any output
    if description.status not in (None, WorkflowExecutionStatus.RUNNING):
        # Already over: its result's steps, with no query replaying the run.
        outcome = await final_result(handle)
        if args.json:
            emit_json(outcome.result.model_dump(mode="json"))
            return outcome.exit_code
        say(f"run {handle.id} has already ended")
        for record in outcome.result.steps:
            for line in step_lines(record):
                say(line)
        print_outcome(outcome)
        return outcome.exit_code
    if args.json:
        return await _follow_quietly(session, handle, description.task_queue)
    say(f"watching {handle.id} · task queue {description.task_queue}")
    return (await watch_run(session, handle, description.task_queue)).exit_code


async def result(session: Session, args: argparse.Namespace) -> int:
    """``onward result ID``: wait for the run to end and print its result."""
    outcome = await final_result(await session.handle(args.id))
    if args.json:
        emit_json(outcome.result.model_dump(mode="json"))
    else:
        for line in result_lines(outcome.result):
            say(line)
    return outcome.exit_code


def _signal_sent(args: argparse.Namespace, name: str, effect: str) -> int:
    if args.json:
        emit_json({"workflow_id": args.id, "signal": name})
    else:
        say(f"{name}: sent to {args.id}; {effect}")
    return EXIT_OK


async def pause(session: Session, args: argparse.Namespace) -> int:
    """``onward pause ID``: no new calls start until ``resume``."""
    await (await session.handle(args.id)).signal(AgentWorkflow.pause)
    return _signal_sent(args, "pause", "it pauses before its next model or tool call")


async def resume(session: Session, args: argparse.Namespace) -> int:
    """``onward resume ID``: undo ``pause``."""
    await (await session.handle(args.id)).signal(AgentWorkflow.resume)
    return _signal_sent(args, "resume", "it goes on")


async def cancel(session: Session, args: argparse.Namespace) -> int:
    """``onward cancel ID``: end the run as cancelled, keeping what it did."""
    request = CancelRequest(reason=args.reason)
    await (await session.handle(args.id)).signal(AgentWorkflow.cancel, request)
    return _signal_sent(args, "cancel", f"see what it did with: onward result {args.id}")


async def steer(session: Session, args: argparse.Namespace) -> int:
    """``onward steer ID MESSAGE``: a user message for the next model call."""
    if not args.message.strip():
        raise CliError("steer: the message must not be blank")
    request = SteerRequest(message=args.message)
    await (await session.handle(args.id)).signal(AgentWorkflow.steer, request)
    return _signal_sent(args, "steer", "the model reads it on its next call")


async def extend(session: Session, args: argparse.Namespace) -> int:
    """``onward extend ID``: raise budget limits; the run's validator may refuse."""
    extension = budget_extension(args)
    handle = await session.handle(args.id)
    try:
        budget = await handle.execute_update(AgentWorkflow.extend_budget, extension)
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        message = cause.message if isinstance(cause, ApplicationError) else str(cause or err)
        raise CliError(message, EXIT_FAILED) from err
    if args.json:
        emit_json(budget.model_dump(mode="json"))
    else:
        say(f"new limits for {args.id}: {describe_budget(budget)}")
    return EXIT_OK


def _visibility_error(err: RPCError) -> CliError | None:
    """The message for a visibility query naming search attributes the server lacks."""
    if err.status == RPCStatusCode.INVALID_ARGUMENT and "search attribute" in err.message:
        return CliError(
            f"{err.message}; this server has no Onward search attributes yet: "
            "a worker registers them when it starts (onward worker)"
        )
    return None


async def list_(session: Session, args: argparse.Namespace) -> int:
    """``onward list``: recent agent runs, newest first."""
    client = await session.client()
    try:
        rows = await list_runs(client, status=args.status, model=args.model, limit=args.limit)
    except RPCError as err:
        friendly = _visibility_error(err)
        if friendly is None:
            raise
        raise friendly from err
    if args.json:
        emit_json([row.as_json() for row in rows])
    elif not rows:
        say("(no runs)")
    else:
        for line in run_table(rows):
            say(line)
    return EXIT_OK


async def report(session: Session, args: argparse.Namespace) -> int:
    """``onward report``: per model and per tool figures over the runs of a time window."""
    until = datetime.now(UTC)
    try:
        since = parse_since(args.since, until)
    except ValueError as err:
        raise CliError(f"--since: {err}") from err
    client = await session.client()
    try:
        traces = await collect_traces(client, since, args.tenant, args.limit)
    except RPCError as err:
        friendly = _visibility_error(err)
        if friendly is None:
            raise
        raise friendly from err
    summary = aggregate(traces, since, until, args.tenant)
    if args.json:
        emit_json(summary.model_dump(mode="json"))
    else:
        for line in report_lines(summary):
            say(line)
    return EXIT_OK
