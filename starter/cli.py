"""The ``onward`` command: the argument parser, dispatch, and a clean exit.

Exit codes: 0 completed (or the command did what it was asked), 1 the run
failed or was cancelled, refused a request or has ended, or no worker polls
for a command that needs one, 2 bad usage or input, Temporal unreachable, or
no run with that id, 3 the run's budget ran out, 130 interrupted. Expected
problems are one ``onward: ...`` line on stderr (and, with ``--json``, one
JSON error document on stdout), never a traceback. The commands themselves
are in :mod:`onward.starter.commands`, over :class:`onward.client.OnwardClient`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn, get_args

from onward.contracts import DEFAULT_TASK_QUEUE, AgentState
from onward.errors import OnwardError
from onward.starter import devserver
from onward.starter.devserver import DevServer, state_dir
from onward.starter.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    exit_code_of,
)
from onward.starter.interrupt import run_interruptibly
from onward.starter.output import emit_json, note, say
from onward.starter.schedule_commands import add_schedule_parser

# Client commands import the Temporal client and the workflow definition when
# they run, not here: `onward dev` and `--help` start fast and do not depend on
# the worker's code importing cleanly.

__all__ = ["build_parser", "main", "run_cli"]

STATES: tuple[str, ...] = tuple(state for state in get_args(AgentState) if state != "idle")
"""A run's states (``idle`` is a session's, between messages: no run is ever idle)."""
CODEC_PORT = 8702
"""Where ``onward codec-server`` listens unless ``--port`` says otherwise."""
API_PORT = 8700
"""Where ``onward api`` listens unless ``--port`` says otherwise."""
LIST_LIMIT = 20
"""Runs shown by ``onward list`` unless ``--limit`` says otherwise."""
REPORT_SINCE = "24h"
"""The window ``onward report`` covers unless ``--since`` says otherwise."""
REPORT_LIMIT = 1000
"""Most runs ``onward report`` reads."""
DASH_LED_VALUES = ("--page-token",)
"""Options whose value may begin with ``-``: a page token is base64url."""
_FLAG = re.compile(r"--?[a-z][a-z-]*|--")


EPILOG = """\
exit codes:
  0    the run completed, or the command did what it was asked
  1    the run failed or was cancelled, the run refused the request or has
       ended, or no worker polls its task queue (extend)
  2    bad usage or input, Temporal unreachable, or no run with that id
  3    the run's budget ran out
  130  interrupted (a run being followed goes on)

start here: onward demo"""


def _version() -> str:
    try:
        return importlib.metadata.version("onward")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# -- parser ---------------------------------------------------------------------


def _connection_options(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument(
        "--task-queue",
        default=default,
        help=f"task queue (default: $ONWARD_TASK_QUEUE or {DEFAULT_TASK_QUEUE})",
    )
    parser.add_argument(
        "--address", default=default, help="Temporal address (default: $TEMPORAL_ADDRESS)"
    )
    parser.add_argument(
        "--namespace", default=default, help="Temporal namespace (default: $TEMPORAL_NAMESPACE)"
    )


def _json_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--json", action="store_true", help=f"print {what} as JSON")


def _budget_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-tokens", type=int, metavar="N", help="input + output tokens")
    parser.add_argument("--max-tool-calls", type=int, metavar="N")
    parser.add_argument("--max-duration", type=float, metavar="S", help="wall time in seconds")
    parser.add_argument("--max-cost", type=float, metavar="USD")
    parser.add_argument("--max-steps", type=int, metavar="N")


def _fallback_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fallback-model",
        dest="fallback_models",
        action="append",
        metavar="MODEL",
        help="a provider:model to go on with when the model's provider fails a call "
        "(repeat, in order)",
    )


def _run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", metavar="PROMPT", help="what the agent should do")
    parser.add_argument(
        "--model", help="provider:model, e.g. openai:gpt-4o-mini (default: scripted)"
    )
    _fallback_option(parser)
    parser.add_argument("--system", help="system prompt")
    parser.add_argument("--script", metavar="FILE", help="JSON list of scripted turns (- = stdin)")
    parser.add_argument(
        "--tool",
        dest="tools",
        action="append",
        metavar="NAME",
        help="a tool the agent may use (repeat; default: all built-ins)",
    )
    parser.add_argument(
        "--approve-tool",
        dest="approve_tools",
        action="append",
        metavar="NAME",
        help="calls of this tool wait for onward approve / reject (repeat)",
    )
    _budget_options(parser)
    parser.add_argument(
        "--on-exceeded",
        choices=("stop", "pause", "finish"),
        help="when a budget runs out: stop (default), pause for 'onward extend', "
        "or finish with one last answer",
    )
    parser.add_argument(
        "--output-schema",
        metavar="FILE",
        help="JSON Schema (type object) of the answer: the model answers by calling "
        "final_answer, and the output is that JSON (- = stdin)",
    )
    parser.add_argument("--id", help="workflow id of the run (default: agent-<random>)")
    parser.add_argument("--tenant", help="tenant the run belongs to (see: onward report --tenant)")
    parser.add_argument(
        "--memory-scope",
        metavar="SCOPE",
        help="whose memory remember/recall use within the tenant (default: the tenant's shared "
        "scope)",
    )


def _session_options(parser: argparse.ArgumentParser) -> None:
    """``onward run``'s options that make sense for a whole session (a new one)."""
    parser.add_argument(
        "--model", help="provider:model, e.g. openai:gpt-4o-mini (default: scripted)"
    )
    _fallback_option(parser)
    parser.add_argument("--system", help="system prompt")
    parser.add_argument("--script", metavar="FILE", help="JSON list of scripted turns (- = stdin)")
    parser.add_argument(
        "--tool", dest="tools", action="append", metavar="NAME", help="a tool (repeat)"
    )
    parser.add_argument("--approve-tool", dest="approve_tools", action="append", metavar="NAME")
    _budget_options(parser)
    parser.add_argument("--on-exceeded", choices=("stop", "pause", "finish"))
    parser.add_argument(
        "--output-schema",
        metavar="FILE",
        help="JSON Schema (type object) of every reply: the model answers by calling "
        "final_answer, and the reply is that JSON",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        metavar="S",
        help="close after S idle seconds (default 7 days)",
    )
    parser.add_argument("--tenant", help="tenant the session belongs to")
    parser.add_argument(
        "--memory-scope",
        metavar="SCOPE",
        help="whose memory remember/recall use within the tenant (default: the tenant's shared "
        "scope)",
    )


class UsageError(SystemExit):
    """Bad flags or arguments: argparse said so on stderr; ``message`` is what it said."""

    def __init__(self, message: str) -> None:
        super().__init__(EXIT_USAGE)
        self.message = message


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose errors carry their message (for ``--json``'s document)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """The whole ``onward`` command line."""
    parser = _Parser(
        prog="onward",
        description="Durable AI agents on Temporal.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    _connection_options(parser, None)
    # The same options after the command name; SUPPRESS keeps values given before it.
    common = _Parser(add_help=False)
    _connection_options(common, argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], help=help, description=help)

    run = command("run", "start an agent run and follow it to its end")
    _run_options(run)
    _json_option(run, "only the result")
    start = command("start", "start an agent run and print its id")
    _run_options(start)
    _json_option(start, "the workflow and run ids")

    for name, help in [
        ("status", "state, usage against budget, and the last step of a run"),
        ("steps", "the step log of a run (read from the history when no worker answers)"),
        ("trace", "every model and tool call of a run: attempts, timings, tokens, cost"),
        ("watch", "follow a run live until it ends"),
        ("result", "wait for a run to end and print its result"),
        ("pause", "pause a run before its next model or tool call"),
        ("resume", "resume a paused run"),
    ]:
        cmd = command(name, help)
        cmd.add_argument("id", metavar="ID", help="workflow id of the run")
        _json_option(cmd, "the answer")

    export = command(
        "export",
        "a run whole as one JSON document: input, result, steps, conversation, and its "
        "event histories (to keep, or to replay elsewhere)",
    )
    export.add_argument("id", metavar="ID", help="workflow id of the run")
    export.add_argument(
        "--output", "-o", metavar="FILE", help="write it to FILE (default: standard output)"
    )
    _json_option(export, "with --output, what was written")
    fork = command(
        "fork",
        "start a new run from a run's conversation at the end of step N, with PROMPT "
        "next (no model or tool call before it is made again)",
    )
    fork.add_argument("id", metavar="ID", help="workflow id of the run to fork")
    fork.add_argument("prompt", metavar="PROMPT", help="the user message the new run goes on with")
    fork.add_argument(
        "--at-step", type=int, required=True, metavar="N", help="the last step taken over"
    )
    fork.add_argument("--model", help="provider:model instead of the run's")
    _fallback_option(fork)
    fork.add_argument("--script", metavar="FILE", help="scripted turns instead of the run's rest")
    _budget_options(fork)
    fork.add_argument("--id", dest="new_id", help="workflow id of the new run")
    _json_option(fork, "the new run's id")
    replay = command(
        "replay",
        "replay runs' histories on this installation's workflows: would workers of this "
        "version go on with them? (exit 1 if not)",
    )
    replay.add_argument("ids", metavar="ID", nargs="*", help="workflow ids of runs or sessions")
    replay.add_argument(
        "--file",
        action="append",
        default=[],
        metavar="FILE",
        help="an `onward export` file, or a Temporal JSON history (repeatable)",
    )
    replay.add_argument("--recent", type=int, metavar="N", help="the N most recent runs too")
    replay.add_argument(
        "--running",
        action="store_true",
        help="every run and session still running too (up to 1,000): the runs a new "
        "version's workers must go on with",
    )
    _json_option(replay, "each run's outcome")

    cancel = command("cancel", "end a run as cancelled, keeping what it did")
    cancel.add_argument("id", metavar="ID")
    cancel.add_argument("--reason", help="why (shown in the result)")
    _json_option(cancel, "the answer")

    steer = command("steer", "add a user message for the run's next model call")
    steer.add_argument("id", metavar="ID")
    steer.add_argument("message", metavar="MESSAGE")
    _json_option(steer, "the answer")

    extend = command("extend", "raise the budget limits of a running run")
    extend.add_argument("id", metavar="ID")
    _budget_options(extend)
    _json_option(extend, "the new limits")

    # -- sessions ----------------------------------------------------------------------
    chat = command("chat", "talk to an agent: a new session, or session ID again")
    chat.add_argument("id", metavar="ID", nargs="?", help="the session to reattach to")
    _session_options(chat)
    _json_option(chat, "each reply object")
    send = command("send", "send one message to session ID and print the reply")
    send.add_argument("id", metavar="ID")
    send.add_argument("message", metavar="MESSAGE")
    send.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="sent again with the same KEY and MESSAGE, the message is answered once",
    )
    _json_option(send, "the reply object")
    close = command("close", "close session ID once the messages sent to it are answered")
    close.add_argument("id", metavar="ID")
    _json_option(close, "the answer")

    listing = command("list", "recent agent runs, newest first")
    listing.add_argument("--status", choices=STATES, help="only runs in this state")
    listing.add_argument("--model", help="only runs of this model")
    listing.add_argument("--limit", type=int, default=LIST_LIMIT, metavar="N")
    listing.add_argument(
        "--page-token", metavar="TOKEN", help="the next page, as the last one said (same filters)"
    )
    listing.add_argument(
        "--sessions", action="store_true", help="sessions instead: open ones first, then closed"
    )
    _json_option(listing, "the runs")

    # -- human approval, artifacts, schedules --------------------
    for verdict, help in [
        ("approve", "let tool calls waiting for approval run"),
        ("reject", "refuse tool calls waiting for approval; the note goes to the model"),
    ]:
        decide = command(verdict, help)
        decide.add_argument("id", metavar="ID")
        decide.add_argument(
            "--call", metavar="CALL_ID", help="one call (default: every pending call)"
        )
        decide.add_argument("--note", help="why; a rejection's note is the call's result")
        _json_option(decide, "the calls decided")

    artifacts = command(
        "artifacts",
        "the files a run wrote (from the store when ONWARD_STORE is PostgreSQL, "
        "else this machine's workspace)",
    )
    artifacts.add_argument("id", metavar="ID")
    artifacts.add_argument("--get", metavar="PATH", help="print this artifact's bytes")
    artifacts.add_argument(
        "--workspace",
        metavar="DIR",
        help="the worker's workspace root (default: $ONWARD_WORKSPACE)",
    )
    _json_option(artifacts, "the list")

    shared = argparse.ArgumentParser(add_help=False)
    _budget_options(shared)
    _fallback_option(shared)
    add_schedule_parser(
        command("schedule", "agents that run periodically: create, list, show, pause, trigger..."),
        (common,),
        shared,
    )
    # -- end longlived ----------------------------------------------------------------

    report = command("report", "per model and per tool figures over recent runs")
    report.add_argument(
        "--since",
        default=REPORT_SINCE,
        metavar="WHEN",
        help=f"runs started since: 30m, 1h, 2d, 1w ago or an ISO time (default: {REPORT_SINCE})",
    )
    report.add_argument("--tenant", help="only runs of this tenant")
    report.add_argument(
        "--limit", type=int, default=REPORT_LIMIT, metavar="N", help="most runs to read"
    )
    _json_option(report, "the figures")

    pruning = command(
        "prune-store",
        "delete the store's transcripts (and stored workspaces) of runs over and old",
    )
    pruning.add_argument(
        "--older-than",
        required=True,
        metavar="WHEN",
        help="not written for: 30d, 12h, 1w, or since an ISO time",
    )
    pruning.add_argument("--dry-run", action="store_true", help="list, delete nothing")
    pruning.add_argument("--force", action="store_true", help="allow an age under a day")
    _json_option(pruning, "what was deleted and kept")

    sub.add_parser(
        "worker", parents=[common], add_help=False, help="run a worker (see: onward worker --help)"
    )

    dev = command(
        "dev",
        "the embedded Temporal dev server: start (default), stop, status "
        "(status exits 1 when none runs)",
    )
    dev.add_argument("action", nargs="?", choices=("start", "stop", "status"), default="start")
    dev.add_argument("--port", type=port, help="frontend port (default 7233)")
    dev.add_argument("--ui-port", type=port, help="Web UI port (default 8233)")
    dev.add_argument("--foreground", action="store_true", help="run attached to this terminal")
    _json_option(dev, "the server's state")

    demo = command("demo", "run an example agent offline (dev server + worker)")
    demo.add_argument("--port", type=port, help="dev server frontend port (default 7233)")
    demo.add_argument("--ui-port", type=port, help="dev server Web UI port (default 8233)")

    codec = command(
        "codec-server",
        "serve the payload codec to the Temporal Web UI (needs ONWARD_ENCRYPTION_KEYS)",
    )
    codec.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1 (loopback only)")
    codec.add_argument("--port", type=port, default=CODEC_PORT, help=f"default: {CODEC_PORT}")
    codec.add_argument(
        "--ui-origin",
        action="append",
        type=_ui_origin,
        metavar="URL",
        help="a Web UI origin allowed by CORS (repeatable; default: the dev server's UI)",
    )
    _api_parser(command)
    return parser


# -- api -------------------------------------------------------------


def _api_parser(command: Any) -> None:
    api = command(
        "api",
        "serve the HTTP API (or: onward api add-key TENANT, to make a tenant's API key)",
    )
    api.add_argument("action", nargs="?", choices=("serve", "add-key"), default="serve")
    api.add_argument("tenant", nargs="?", metavar="TENANT", help="add-key: the key's tenant")
    api.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1 (loopback only)")
    api.add_argument("--port", type=port, default=API_PORT, help=f"default: {API_PORT}")
    api.add_argument(
        "--keys-file",
        metavar="FILE",
        help="tenants' API key hashes (default: $ONWARD_API_KEYS_FILE; none: one local tenant)",
    )
    api.add_argument(
        "--cors-origin",
        action="append",
        type=_web_origin,
        metavar="URL",
        help="a web app's origin allowed to call the API from a browser, e.g. "
        "https://app.example.com (repeatable; default: $ONWARD_API_CORS_ORIGINS, "
        "comma-separated; none: pages of other origins are refused)",
    )
    api.add_argument("--max-runs", type=int, metavar="N", help="open runs per tenant")
    api.add_argument(
        "--max-cost-per-day", type=float, metavar="USD", help="cost per tenant over 24 hours"
    )


def _web_origin(text: str) -> str:
    from onward.starter.api.origins import web_origin

    try:
        return web_origin(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _cors_origins(args: argparse.Namespace) -> list[str]:
    """``--cors-origin``, else ``ONWARD_API_CORS_ORIGINS`` (comma-separated), checked."""
    if args.cors_origin:
        return list(args.cors_origin)
    listed = os.environ.get("ONWARD_API_CORS_ORIGINS", "")
    try:
        return [_web_origin(item) for item in listed.split(",") if item.strip()]
    except argparse.ArgumentTypeError as err:
        raise CliError(f"ONWARD_API_CORS_ORIGINS: {err}") from None


def _api_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from onward.api_keys import ApiKeys, ApiKeysError

    keys_file = args.keys_file or os.environ.get("ONWARD_API_KEYS_FILE")
    if args.action == "add-key":
        if not args.tenant or not keys_file:
            raise CliError("usage: onward api add-key TENANT (with ONWARD_API_KEYS_FILE set)")
        try:
            key = ApiKeys.add(Path(keys_file), args.tenant)
        except ApiKeysError as err:
            raise CliError(str(err)) from err
        say(key)  # the only stdout line, so scripts can capture it
        note(f"stored its hash for tenant {args.tenant} in {keys_file}; the key is shown once")
        return EXIT_OK
    if args.tenant:
        raise CliError(f"unexpected argument {args.tenant!r}")
    from onward.starter.api.origins import LOOPBACK_HOSTS  # the gate's own list

    try:
        keys = ApiKeys.load(Path(keys_file)) if keys_file else None
    except ApiKeysError as err:
        raise CliError(str(err)) from err
    if keys is None and args.host not in LOOPBACK_HOSTS:
        raise CliError(
            "with no API keys (ONWARD_API_KEYS_FILE) the API listens on loopback only; "
            "make keys with: onward api add-key TENANT"
        )
    return _serve_api(args, keys)


def _serve_api(args: argparse.Namespace, keys: Any) -> int:
    import uvicorn

    from onward.client import OnwardClient
    from onward.plugin import ensure_search_attributes
    from onward.starter.api import ApiSettings, Limits, api_app
    from onward.telemetry import configure_telemetry

    address = _address(args)
    # Traced as the CLI is (OTEL_*, ONWARD_TRACE_FILE): a run it starts has a client span.
    telemetry = configure_telemetry(os.environ, service_name="onward-api", set_global=False)

    async def connect() -> OnwardClient:
        client: OnwardClient = await _connect(args, address, telemetry.interceptors)
        # Runs are tagged with their tenant when they start: the attribute must exist.
        await ensure_search_attributes(client.temporal, client.namespace)
        return client

    limits = Limits(max_runs=args.max_runs, max_cost_usd_per_day=args.max_cost_per_day)
    try:
        settings = ApiSettings(
            keys=keys, limits=limits, connect=connect, cors_origins=_cors_origins(args)
        )
    except ValueError as err:
        raise CliError(str(err)) from err
    app = api_app(settings)
    tenants = "one local tenant (no keys file)" if keys is None else "tenants from the keys file"
    say(f"Onward API on http://{args.host}:{args.port} ({tenants}); OpenAPI at /openapi.json")
    # Open event streams end on Ctrl-C after this long; clients resume with Last-Event-ID.
    try:
        uvicorn.run(
            app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=3
        )
    finally:
        telemetry.shutdown()
    return EXIT_OK


# -- end api ----------------------------------------------------------------------


# -- dispatch -------------------------------------------------------------------


def _address(args: argparse.Namespace) -> str | None:
    """``--address``; else envconfig's (``TEMPORAL_ADDRESS``, the profile); else the dev
    server ``onward dev`` started from this ``ONWARD_HOME``; else None (envconfig's default)."""
    return str(args.address) if args.address else devserver.followed_address()


async def _connect(args: argparse.Namespace, address: str | None, interceptors: Any) -> Any:
    from onward.client import OnwardClient
    from onward.connection import DEFAULT_ADDRESS, configured_address
    from onward.errors import ConnectionFailed

    try:
        return await OnwardClient.connect(
            address,
            args.namespace,
            args.task_queue or _task_queue(),
            interceptors=interceptors,
        )
    except ConnectionFailed as err:
        if isinstance(err.__cause__, ValueError):
            raise
        where = address or err.address or configured_address() or DEFAULT_ADDRESS
        # Still a ConnectionFailed: `--json` names the error class the README lists.
        raise ConnectionFailed(
            f"cannot reach Temporal at {where}; start it with 'onward dev'", where
        ) from err


def _task_queue() -> str:
    from onward.connection import task_queue

    return task_queue()


def _client_command(args: argparse.Namespace) -> int:
    from onward.starter import commands
    from onward.telemetry import configure_telemetry

    name = "list_" if args.command == "list" else args.command.replace("-", "_")
    command = getattr(commands, name)
    commands.check_input(args)  # before connecting (and before telemetry to shut down)
    # A shell's OTEL settings may be meant for other programs: a warning, not a refusal.
    telemetry = configure_telemetry(
        os.environ, service_name="onward-cli", set_global=False, strict=False
    )
    address = _address(args)

    async def connected() -> int:
        client = await _connect(args, address, telemetry.interceptors)
        result: int = await command(client, args)
        return result

    try:
        return run_interruptibly(connected())
    except KeyboardInterrupt:
        following = commands.Following.run_id
        if following:
            message = (
                f"stopped following {following}; the run goes on. "
                f"Follow it again with: onward watch {following}"
            )
        else:
            message = "interrupted"
        print(f"\nonward: {message}", file=sys.stderr)
        if getattr(args, "json", False):  # one document, also when interrupted
            error = {"type": "Interrupted", "message": message, "exit_code": EXIT_INTERRUPTED}
            emit_json({"error": {**error, **({"run_id": following} if following else {})}})
        return EXIT_INTERRUPTED
    finally:
        telemetry.shutdown()  # flush spans before main() ends with os._exit


def _worker_command(args: argparse.Namespace, extra: list[str]) -> int:
    from onward import worker  # the worker's whole wiring: imported only when asked for

    forwarded = list(extra)
    if args.task_queue:
        forwarded = ["--task-queue", args.task_queue, *forwarded]
    address = _address(args)  # the worker follows `onward dev --port` like every command
    if address:
        os.environ["TEMPORAL_ADDRESS"] = address
    if args.namespace:
        os.environ["TEMPORAL_NAMESPACE"] = args.namespace
    try:
        return worker.main(forwarded)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _dev_command(args: argparse.Namespace) -> int:
    server = DevServer.recorded(state_dir(), args.port, args.ui_port)
    if args.action == "stop":
        pid = devserver.stop(server)
        if args.json:
            emit_json({"stopped": pid is not None, "pid": pid})
        else:
            say(f"stopped the dev server (pid {pid})" if pid else "no dev server of onward running")
        return EXIT_OK
    if args.action == "status":
        found = devserver.find_running(server)
        ours = found if found is not None and found.pid is not None else None
        other = found.server.address if found is not None and ours is None else None
        if args.json:
            emit_json(
                {
                    "running": ours is not None,
                    "pid": ours.pid if ours else None,
                    "address": ours.server.address if ours else None,
                    "ui_url": ours.server.ui_url if ours else None,
                    "other_server": other,
                }
            )
        elif ours is None:
            say(f"no dev server of onward running (state in {server.home})")
            if other is not None:
                say(f"a Temporal server answers at {other}: {devserver.owner_of(server.port)}")
        else:
            say(f"dev server running at {ours.server.address} (pid {ours.pid})")
            say(f"Web UI: {ours.server.ui_url}")
        return EXIT_OK if ours else EXIT_FAILED
    if args.foreground:
        say(f"Temporal dev server at {server.address}, Web UI {server.ui_url}")
        return devserver.run_foreground(server)
    running = devserver.ensure_running(server)
    if args.json:
        emit_json(
            {
                "running": True,
                "started": running.started_now,
                "pid": running.pid,
                "address": running.server.address,
                "ui_url": running.server.ui_url,
            }
        )
    else:
        how = "started" if running.started_now else "already running"
        owner = f", pid {running.pid}" if running.pid else f" ({devserver.owner_of(server.port)})"
        say(f"Temporal dev server {how} at {running.server.address}{owner}")
        if not running.pid:
            # Not this ONWARD_HOME's: its Web UI port is unknown, and `onward dev stop`
            # here leaves it alone.
            say("it is not this ONWARD_HOME's server: stop it where it was started")
            return EXIT_OK
        say(f"Web UI: {running.server.ui_url}")
        if running.server.port != devserver.DEFAULT_PORT:
            say(
                f"onward commands (and onward worker) run with this ONWARD_HOME "
                f"({server.home}) use it; "
                f"elsewhere: export TEMPORAL_ADDRESS={running.server.address}"
            )
        say("stop it with: onward dev stop")
    return EXIT_OK


def _demo_command(args: argparse.Namespace) -> int:
    from onward.connection import task_queue
    from onward.starter.demo import run_demo

    server = DevServer.recorded(state_dir(), args.port, args.ui_port)
    return run_demo(server, args.task_queue or task_queue())


def port(text: str) -> int:
    """A TCP port for argparse: 1 to 65535 (a bind past it ended in a traceback)."""
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{number} is not a port (1 to 65535)")
    return number


def _ui_origin(text: str) -> str:
    """A Web UI origin for argparse (see :func:`onward.starter.codec_server.ui_origin`)."""
    from onward.starter.codec_server import ui_origin

    try:
        return ui_origin(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _codec_server_command(args: argparse.Namespace) -> int:
    import uvicorn

    from onward.encryption import EncryptionError, codec_from_env
    from onward.starter.api.origins import LOOPBACK_HOSTS
    from onward.starter.codec_server import codec_app, ui_origins

    try:
        codec = codec_from_env(os.environ)
    except EncryptionError as err:
        raise CliError(str(err)) from err
    if codec is None:
        raise CliError(
            "ONWARD_ENCRYPTION_KEYS is not set: the codec server decodes with the same keys "
            "as the workers"
        )
    # Default: the Web UI of the dev server `onward dev` runs from this ONWARD_HOME.
    origins = args.ui_origin or ui_origins(devserver.recorded_running(state_dir()))
    say(f"codec server on http://{args.host}:{args.port} for {', '.join(origins)}")
    if args.host not in LOOPBACK_HOSTS:
        note(
            f"onward: note: {args.host} is not loopback, and the codec server has no "
            "authentication of its own: whoever reaches it can decrypt the runs' payloads "
            "(put your own authentication in front of it)"
        )
    say(f"in the Web UI set the codec endpoint to http://{args.host}:{args.port}")
    app = codec_app(codec, origins, loopback_only=args.host in LOOPBACK_HOSTS)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return EXIT_OK


def _report_error(err: OnwardError, json: bool) -> int:
    """``onward: <message>`` on stderr; with ``--json`` also one JSON error document on stdout."""
    code = exit_code_of(err)
    message = str(err)
    if json:
        emit_json({"error": {"type": type(err).__name__, "message": message, "exit_code": code}})
    print(f"onward: {message}", file=sys.stderr)
    return code


def _dash_led_joined(argv: Sequence[str]) -> list[str]:
    """``--page-token -AsU...`` as ``--page-token=-AsU...``.

    argparse reads a value beginning with ``-`` as an option of its own ("expected one
    argument"), and one page token in 64 begins so: the next page's token, as a page
    printed it, must work pasted after its flag. A value that reads as a flag
    (``--page-token --json``: the token left out) stays a flag.
    """
    joined = list(argv)
    for index in range(len(joined) - 2, -1, -1):
        flag, value = joined[index], joined[index + 1]
        if flag in DASH_LED_VALUES and value.startswith("-") and not _FLAG.fullmatch(value):
            joined[index : index + 2] = [f"{flag}={value}"]
    return joined


def run_cli(argv: Sequence[str]) -> int:
    """Run one ``onward`` command and return its exit code (no exit, no traceback)."""
    parser = build_parser()
    argv = _dash_led_joined(argv)
    try:
        args, extra = parser.parse_known_args(argv)
        if extra and args.command != "worker":
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else EXIT_USAGE
        if code != EXIT_OK and "--json" in argv and "worker" not in argv:
            # argparse has said what is wrong on stderr; --json still gets its one document.
            message = exit.message if isinstance(exit, UsageError) else "bad usage"
            emit_json({"error": {"type": "UsageError", "message": message, "exit_code": code}})
        return code
    try:
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        if args.command == "worker":
            return _worker_command(args, extra)
        if args.command == "dev":
            return _dev_command(args)
        if args.command == "demo":
            return _demo_command(args)
        if args.command == "codec-server":
            return _codec_server_command(args)
        if args.command == "api":
            return _api_command(args)
        return _client_command(args)
    except OnwardError as err:
        return _report_error(err, bool(getattr(args, "json", False)))
    except KeyboardInterrupt:
        print("\nonward: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `onward list | head`: the reader left; that is not an error of ours.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except SystemExit as exit:  # argparse inside `onward worker`
        return exit.code if isinstance(exit.code, int) else EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of the ``onward`` script.

    Ends with ``os._exit``: the Temporal client's native threads can crash a
    normal interpreter exit (temporalio/sdk-python#300), after all output is
    flushed.
    """
    code = run_cli(sys.argv[1:] if argv is None else argv)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
