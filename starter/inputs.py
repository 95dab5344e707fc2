"""From command-line flags to contract models, validated before anything starts.

Validation runs here, client-side, with the same pydantic models the workflow
uses, so bad input is reported with the field (and flag) it concerns and no
run is ever started with it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from onward.contracts import AgentInput, BudgetExtension
from onward.errors import InvalidInput, named_problem
from onward.starter.errors import CliError

__all__ = [
    "BUDGET_FLAGS",
    "agent_input",
    "budget_extension",
    "budget_fields",
    "invalid_input",
    "load_script",
]

BUDGET_FLAGS: dict[str, str] = {
    "max_tokens": "--max-tokens",
    "max_tool_calls": "--max-tool-calls",
    "max_duration_s": "--max-duration",
    "max_cost_usd": "--max-cost",
    "max_steps": "--max-steps",
    "on_exceeded": "--on-exceeded",
}
"""Budget field -> the flag that sets it, to name flags in error messages."""

_FLAGS: dict[str, str] = {
    "model": "--model",
    "fallback_models": "--fallback-model",
    "system": "--system",
    "script": "--script",
    "tools": "--tool",
    "tenant": "--tenant",
    "memory_scope": "--memory-scope",
}


def _flag_for(location: tuple[str | int, ...], prompt_flag: str) -> str | None:
    if not location:
        return None
    if location[0] == "budget":
        return BUDGET_FLAGS.get(str(location[1])) if len(location) > 1 else None
    if location[0] == "prompt":
        return prompt_flag
    return _FLAGS.get(str(location[0]))


def invalid_input(
    err: ValidationError, what: str = "invalid input", prompt_flag: str = "PROMPT"
) -> InvalidInput:
    """One line per problem, each naming the field and, where there is one, its flag.

    ``prompt_flag``: how the command takes the prompt (``schedule create``: ``--prompt``).
    """
    problems = []
    for error in err.errors():
        location, message = named_problem(error["loc"], str(error["msg"]))
        field = ".".join(str(part) for part in location) or "input"
        flag = _flag_for(location, prompt_flag)
        where = f"{field} ({flag})" if flag else field
        given = error.get("input")
        if isinstance(given, int | float | str) and not isinstance(given, bool):
            message += f" (got {given!r})"
        problems.append(f"{where}: {message}")
    details = [dict(item) for item in err.errors(include_url=False)]
    return InvalidInput(f"{what}: " + "; ".join(problems), details)


def load_script(path: str) -> Any:
    """The scripted model's turns from a JSON file (``-`` reads stdin)."""
    script = _load_json("--script", path)
    if not isinstance(script, list):
        raise CliError(f"--script {path}: expected a JSON list of turns")
    return script


def load_output_schema(path: str) -> Any:
    """``output_schema`` from a JSON file (``-`` reads stdin)."""
    schema = _load_json("--output-schema", path)
    if not isinstance(schema, dict):
        raise CliError(f"--output-schema {path}: expected a JSON Schema object")
    return schema


def _load_json(flag: str, path: str) -> Any:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise CliError(f"{flag} {path}: cannot read it ({err.strerror})") from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise CliError(f"{flag} {path}: not valid JSON ({err})") from err


def budget_fields(args: argparse.Namespace) -> dict[str, Any]:
    values = {
        "max_tokens": args.max_tokens,
        "max_tool_calls": args.max_tool_calls,
        "max_duration_s": args.max_duration,
        "max_cost_usd": args.max_cost,
        "max_steps": args.max_steps,
    }
    return {name: value for name, value in values.items() if value is not None}


def agent_input(args: argparse.Namespace, prompt_flag: str = "PROMPT") -> AgentInput:
    """The run's input from ``run``/``start`` flags; :class:`InvalidInput` (exit 2) if invalid.

    ``prompt_flag``: how the command takes the prompt, to name it in errors.
    """
    budget = budget_fields(args)
    if args.on_exceeded is not None:
        budget["on_exceeded"] = args.on_exceeded
    data: dict[str, Any] = {"prompt": args.prompt, "budget": budget}
    if args.model is not None:
        data["model"] = args.model
    if getattr(args, "fallback_models", None):
        data["fallback_models"] = args.fallback_models
    if args.system is not None:
        data["system"] = args.system
    if args.tools is not None:
        data["tools"] = args.tools
    if args.script is not None:
        data["script"] = load_script(args.script)
    if args.tenant is not None:
        data["tenant"] = args.tenant
    if getattr(args, "memory_scope", None) is not None:
        data["memory_scope"] = args.memory_scope
    if getattr(args, "approve_tools", None):  # human approval
        data["approve_tools"] = args.approve_tools
    if getattr(args, "output_schema", None) is not None:
        data["output_schema"] = load_output_schema(args.output_schema)
    try:
        return AgentInput.model_validate(data)
    except ValidationError as err:
        raise invalid_input(err, prompt_flag=prompt_flag) from err


def budget_extension(args: argparse.Namespace) -> BudgetExtension:
    """The new limits from ``extend`` flags; at least one must be given."""
    fields = budget_fields(args)
    if not fields:
        flags = ", ".join(flag for name, flag in BUDGET_FLAGS.items() if name != "on_exceeded")
        raise CliError(f"extend: give at least one of {flags}")
    try:
        return BudgetExtension.model_validate(fields)
    except ValidationError as err:
        raise invalid_input(err, "invalid budget extension") from err
