"""``onward chat`` and ``onward send``: multi-turn sessions in the terminal.

Thin layers over :class:`~onward.client.OnwardClient`: they read input, call
the client and print its reply models.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from pydantic import ValidationError

from onward.client import OnwardClient
from onward.contracts import SessionInput, SessionReply
from onward.errors import SessionClosed
from onward.starter.errors import EXIT_OK, CliError, exit_code_for
from onward.starter.inputs import budget_fields, invalid_input, load_output_schema, load_script
from onward.starter.output import emit_json, note, say
from onward.starter.render import ANSWER_EXCERPT_CHARS, shorten

__all__ = ["chat", "close", "send", "session_input"]

QUIT = "/quit"
"""Leave ``onward chat``; the session stays open."""
CLOSE = "/close"
"""Close the session and leave ``onward chat``."""


NEW_SESSION_FLAGS = {
    "model": "--model",
    "fallback_models": "--fallback-model",
    "system": "--system",
    "script": "--script",
    "tools": "--tool",
    "approve_tools": "--approve-tool",
    "max_tokens": "--max-tokens",
    "max_tool_calls": "--max-tool-calls",
    "max_duration": "--max-duration",
    "max_cost": "--max-cost",
    "max_steps": "--max-steps",
    "on_exceeded": "--on-exceeded",
    "output_schema": "--output-schema",
    "idle_timeout": "--idle-timeout",
    "tenant": "--tenant",
    "memory_scope": "--memory-scope",
}
"""``chat``'s flags that make a new session's input (each ``args`` name and its flag)."""


def session_input(args: argparse.Namespace) -> SessionInput:
    """A new session's input from ``chat`` flags; :class:`InvalidInput` (exit 2) if invalid."""
    budget = budget_fields(args)
    if args.on_exceeded is not None:
        budget["on_exceeded"] = args.on_exceeded
    data: dict[str, Any] = {"budget": budget}
    fields = ("model", "fallback_models", "system", "tools", "tenant", "memory_scope")
    for field in (*fields, "approve_tools"):
        value = getattr(args, field, None)
        if value is not None:
            data[field] = value
    for flag, path in (("--script", args.script), ("--output-schema", args.output_schema)):
        if path == "-":  # chat reads its messages there
            raise CliError(f"{flag} -: chat reads its messages from stdin; give a file")
    if args.script is not None:
        data["script"] = load_script(args.script)
    if args.output_schema is not None:
        data["output_schema"] = load_output_schema(args.output_schema)
    if args.idle_timeout is not None:
        data["idle_timeout_s"] = args.idle_timeout
    try:
        return SessionInput.model_validate(data)
    except ValidationError as err:
        raise invalid_input(err) from err


def _print_reply(reply: SessionReply, json: bool) -> None:
    if json:
        emit_json(reply.model_dump(mode="json"))
        return
    for step in reply.steps:  # fallback_models: each message begins with the model again
        for failed in step.failed_models or ():
            note(f"↷ failed: {shorten(failed, ANSWER_EXCERPT_CHARS)}")
        if step.failed_models and step.error is None:
            note(f"↷ answered by {step.model}")
    if reply.status != "completed":
        note(f"({reply.status}: {reply.reason})" if reply.reason else f"({reply.status})")
    say(reply.reply)


async def send(client: OnwardClient, args: argparse.Namespace) -> int:
    """``onward send ID MESSAGE``: one message; print the reply once it is answered."""
    reply = await client.send_message(args.id, args.message, idempotency_key=args.idempotency_key)
    _print_reply(reply, args.json)
    return exit_code_for(reply.status)  # as `onward run`'s: 3 for a budget used up, say


async def close(client: OnwardClient, args: argparse.Namespace) -> int:
    """``onward close ID``: close session ``ID`` once the messages already sent are answered."""
    await client.close_session(args.id)  # InvalidInput for a run's id, SessionClosed if closed
    if args.json:
        emit_json({"id": args.id, "closing": True})
    else:
        say(f"session {args.id} closes once the messages sent to it are answered")
    return EXIT_OK


async def chat(client: OnwardClient, args: argparse.Namespace) -> int:
    """``onward chat [ID]``: a new session (its id printed first), or the session ``ID`` again.

    Each line read is a message; its reply is printed. End of input or ``/quit``
    leaves the session open; ``/close`` closes it.
    """
    if args.id is None:
        checked: SessionInput | None = getattr(args, "session_input", None)  # check_input's
        session_id = await client.open_session(checked or session_input(args))
        # With --json stdout holds only the replies (each run_id is <session id>-m<N>).
        (note if args.json else say)(f"session {session_id}")
    else:
        session_id = args.id
        if not (await client.info(session_id)).running:  # RunNotFound for an unknown id
            raise SessionClosed(session_id)  # not "stays open" at the end of its input
        status = await client.session_status(session_id)
        note(f"session {session_id} · {status.turns or 0} message(s) so far")
        given = [flag for name, flag in NEW_SESSION_FLAGS.items() if getattr(args, name, None)]
        if given:  # `chat ID --model X` read as switching the model, and did nothing
            note(f"{', '.join(given)}: a new session's settings; {session_id} keeps its own")
    interactive = sys.stdin.isatty()
    loop = asyncio.get_running_loop()
    while True:
        if interactive:
            print("> ", end="", flush=True)
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line or line.strip() == QUIT:
            note(f"session {session_id} stays open; go on with: onward chat {session_id}")
            return EXIT_OK
        text = line.strip()
        if text == CLOSE:
            await client.close_session(session_id)
            note(f"session {session_id} closed")
            return EXIT_OK
        if text:
            _print_reply(await client.send_message(session_id, text), args.json)
