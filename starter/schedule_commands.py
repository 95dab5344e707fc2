"""``onward schedule``: agents that run periodically, over Temporal Schedules.

``create`` takes the run's input as ``onward run`` does (``--prompt`` instead
of the positional prompt); ``list`` lists them; ``show``, ``pause``,
``unpause``, ``trigger`` and ``delete`` act on one by id.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from onward.starter.errors import EXIT_OK
from onward.starter.inputs import agent_input
from onward.starter.output import emit_json, note, say

if TYPE_CHECKING:  # the CLI builds its parser without importing the Temporal client
    from onward.client import OnwardClient
    from onward.schedules import ScheduleRow

__all__ = ["add_schedule_parser", "schedule", "schedule_lines"]


def add_schedule_parser(
    parent: argparse.ArgumentParser,
    run_options: tuple[argparse.ArgumentParser, ...],
    input_options: argparse.ArgumentParser,
) -> None:
    """The ``schedule`` sub-commands under ``parent`` (``onward schedule``).

    Args:
        parent: the ``schedule`` command's parser.
        run_options: parsers whose options every sub-command takes (connection).
        input_options: the options ``create`` shares with ``onward run`` (the budget,
            ``--fallback-model``).
    """
    sub = parent.add_subparsers(dest="schedule_action", metavar="ACTION", required=True)
    create = sub.add_parser(
        "create",
        parents=[*run_options, input_options],
        help="start an agent run at each time of a cron expression",
    )
    create.add_argument("--cron", required=True, help='e.g. "0 8 * * *" (08:00 UTC daily)')
    create.add_argument("--prompt", required=True, help="what the agent should do each time")
    create.add_argument("--model", help="provider:model (default: scripted)")
    create.add_argument("--system", help="system prompt")
    create.add_argument("--script", metavar="FILE", help="JSON list of scripted turns")
    create.add_argument("--tool", dest="tools", action="append", metavar="NAME")
    create.add_argument("--approve-tool", dest="approve_tools", action="append", metavar="NAME")
    create.add_argument("--on-exceeded", choices=("stop", "pause", "finish"))
    create.add_argument(
        "--output-schema",
        metavar="FILE",
        help="JSON Schema (type object) of each run's answer, as for onward run",
    )
    create.add_argument("--tenant")
    create.add_argument(
        "--memory-scope",
        metavar="SCOPE",
        help="whose memory each run's remember/recall use (default: the tenant's shared scope)",
    )
    create.add_argument("--id", help="schedule id (default: schedule-<random>)")
    create.add_argument(
        "--no-check",
        action="store_true",
        help="do not ask a worker whether it has the tools and model first (workers "
        "that differ, or that are not started yet)",
    )
    create.add_argument("--json", action="store_true", help="print the schedule id as JSON")
    listing = sub.add_parser("list", parents=list(run_options), help="Onward's schedules")
    listing.add_argument("--json", action="store_true", help="print the schedules as JSON")
    for name, help in [
        ("show", "one schedule: its next times, its recent and running runs"),
        ("pause", "stop a schedule starting runs"),
        ("unpause", "let a paused schedule start runs again"),
        ("trigger", "start one run of a schedule now"),
        ("delete", "delete a schedule (its runs go on)"),
    ]:
        cmd = sub.add_parser(name, parents=list(run_options), help=help)
        cmd.add_argument("id", metavar="ID", help="schedule id")
        cmd.add_argument("--json", action="store_true", help="print the answer as JSON")
        if name in ("pause", "unpause"):
            cmd.add_argument("--note", help="why (shown with the schedule)")


def schedule_lines(row: ScheduleRow, detailed: bool = False) -> list[str]:
    """One schedule, for people; ``detailed`` (``show``): every next time and run it knows."""
    state = "paused" if row.paused else "active"
    lines = [f"{row.schedule_id}  {' | '.join(row.cron)}  {state}  {row.model or '?'}"]
    lines.append(f"  prompt: {row.prompt or '?'}")
    if detailed and row.note:
        lines.append(f"  note:   {row.note}")
    if detailed and row.input is not None:  # what each run is started with
        tools = row.input.tools
        lines.append(f"  tools:  {', '.join(tools) if tools is not None else '(the built-ins)'}")
        if row.input.fallback_models:
            lines.append(f"  fallback models: {', '.join(row.input.fallback_models)}")
        if row.input.tenant is not None:
            lines.append(f"  tenant: {row.input.tenant}")
        if row.input.memory_scope is not None:
            lines.append(f"  memory: {row.input.memory_scope}")
    shown = 3 if detailed else 1
    if not row.paused:  # a paused schedule starts nothing then
        lines += [f"  next:   {when.isoformat()}" for when in row.next_runs[:shown]]
    if detailed:
        lines += [f"  ran:    {run_id}" for run_id in row.recent_runs]
        lines += [f"  running: {run_id}" for run_id in row.running]
    elif row.recent_runs:
        lines.append(f"  last:   {row.recent_runs[-1]}")
    return lines


async def schedule(client: OnwardClient, args: argparse.Namespace) -> int:
    """``onward schedule ACTION``."""
    action: str = args.schedule_action
    if action == "create":
        agent = agent_input(args, prompt_flag="--prompt")
        # A worker's tools and providers; --no-check: the worker asked may not be the one.
        checked = False if args.no_check else await client.check_input(agent)
        schedule_id = await client.schedule_create(args.cron, agent, args.id, check=False)
        if args.json:
            emit_json({"schedule_id": schedule_id, "checked": checked})
        else:
            say(f"schedule {schedule_id}: runs at {args.cron!r} on task queue {client.task_queue}")
            say(f"run it now with: onward schedule trigger {schedule_id}")
        if not checked and not args.no_check:
            note(
                f"not checked by a worker: none answered on task queue {client.task_queue}; "
                "its runs fail at once if their worker lacks a tool or the model's provider"
            )
        return EXIT_OK
    if action == "list":
        rows = await client.schedule_list()
        if args.json:
            emit_json([row.model_dump(mode="json") for row in rows])
        elif not rows:
            say("(no schedules)")
        else:
            for row in rows:
                for line in schedule_lines(row):
                    say(line)
        return EXIT_OK
    if action == "show":
        row = await client.schedule(args.id)
        if args.json:
            emit_json(row.model_dump(mode="json"))
        else:
            for line in schedule_lines(row, detailed=True):
                say(line)
        return EXIT_OK
    if action == "pause":
        await client.schedule_pause(args.id, args.note)
    elif action == "unpause":
        await client.schedule_unpause(args.id, args.note)
    elif action == "trigger":
        await client.schedule_trigger(args.id)
    else:
        await client.schedule_delete(args.id)
    if args.json:
        emit_json({"schedule_id": args.id, "action": action})
    else:
        done = {"pause": "paused", "unpause": "unpaused", "trigger": "triggered"}
        say(f"schedule {args.id}: {done.get(action, 'deleted')}")
    return EXIT_OK
