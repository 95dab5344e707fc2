"""Structured output: a run with ``output_schema`` answers by calling ``final_answer``.

The schema becomes the parameters of one more tool, ``final_answer``, so every
provider that takes tools (and the scripted model) can give a typed answer,
the way pydantic-ai's output tools and the OpenAI Agents SDK's ``output_type``
do. A call whose arguments match the schema ends the run: they are the run's
``structured_output`` (and its ``output``, as JSON text). A call that does not
match is a tool error the model reads and can correct; an answer in plain text
is met with a reminder, up to :data:`TEXT_ANSWERS_ALLOWED` times.

Validation is JSON Schema (2020-12) by ``jsonschema``: pure, so the workflow
runs it, and the same on every replay.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from onward import steplog
from onward.contracts import ToolCall, ToolCallStatus, ToolOutcome, ToolSpec

__all__ = [
    "FINAL_ANSWER",
    "TEXT_ANSWERS_ALLOWED",
    "answer_outcome",
    "answer_problem",
    "answer_reason",
    "answer_reminder",
    "answer_spec",
    "answer_text",
    "schema_problem",
    "taken_answer",
]

FINAL_ANSWER = "final_answer"
MAX_SCHEMA_DEPTH = 32
MAX_ANSWER_DEPTH = 64
"""Deeper schemas and answers are refused: the validator recurses a few frames a level,
and a RecursionError in the workflow would fail its task again and again."""
TEXT_ANSWERS_ALLOWED = 2
"""Plain-text answers met with a reminder; the next one fails the run."""
_ERRORS_SHOWN = 5
_RAW_ARGUMENTS = "_raw"
"""The one key of the arguments a provider could not parse as JSON: their text."""
_RAW_SHOWN = 200


_UNCHECKED: dict[str, type] = {"pattern": str, "patternProperties": dict}
"""Keywords refused: a regular expression the workflow matched could stall it for good
(a pattern that backtracks), and a workflow task that times out is retried forever.
Each with what it holds as a keyword: a property, say, named ``pattern`` holds a schema.
Every place the validator reads as a schema is checked against the meta-schema (the
root, and what a reference points to), so a keyword there holds what it should."""
_REFERENCES = frozenset({"$ref", "$dynamicRef"})
_BASES = frozenset({"$id", "$anchor", "$dynamicAnchor"})


def schema_problem(schema: dict[str, Any]) -> str | None:
    """Why ``schema`` cannot be ``output_schema`` (not JSON Schema, not an object, not
    checkable in the workflow), or None."""
    if _depth(schema) > MAX_SCHEMA_DEPTH:
        return f"nested deeper than {MAX_SCHEMA_DEPTH} levels"
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as err:
        where = "/".join(str(part) for part in err.absolute_path)
        return f"not a valid JSON Schema{f' at {where}' if where else ''}: {err.message}"
    if schema.get("type") != "object":
        return 'the answer is a tool call\'s arguments: the schema needs "type": "object"'
    return _unchecked(schema, schema, "")


def _depth(value: Any) -> int:
    """How deep JSON ``value`` nests, counted without recursion (it may nest very deep)."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        node, depth = pending.pop()
        deepest = max(deepest, depth)
        children = (
            node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        )
        pending += [(child, depth + 1) for child in children]
    return deepest


def _unchecked(root: dict[str, Any], node: Any, where: str) -> str | None:
    """The first keyword under ``node`` the workflow will not check, said why; or None."""
    if isinstance(node, list):
        return next(
            (
                found
                for i, item in enumerate(node)
                if (found := _unchecked(root, item, f"{where}/{i}"))
            ),
            None,
        )
    if not isinstance(node, dict):
        return None
    for key, value in node.items():
        at = f"{where}/{key}"
        if key in _UNCHECKED and _is_keyword(key, value):
            return (
                f"{at}: {key} is not supported (a regular expression checked in the "
                "workflow could stall it); check the text in your own code"
            )
        if key in _BASES and isinstance(value, str):
            return f"{at}: {key} is not supported; refer to $defs with #/$defs/..."
        if key in _REFERENCES and isinstance(value, str) and not _resolves(root, value):
            return (
                f"{at}: {value!r} does not resolve within the schema (only #/... references "
                "are followed: the workflow fetches nothing)"
            )
        found = _unchecked(root, value, at)
        if found:
            return found
    return None


def _is_keyword(key: str, value: Any) -> bool:
    """Whether ``key`` holds what the keyword would (a property's schema is not a pattern)."""
    if not isinstance(value, _UNCHECKED[key]):
        return False
    # patternProperties maps patterns to schemas; a schema has some values of other kinds.
    return not isinstance(value, dict) or all(isinstance(v, dict | bool) for v in value.values())


def _resolves(root: dict[str, Any], reference: str) -> bool:
    """Whether ``reference`` is a JSON pointer (``#``, ``#/$defs/x``) into ``root`` to
    a valid schema: the validator reads what it points to as one, unchecked so far (a
    ``minimum`` of text inside a ``const``, say, would raise TypeError in the workflow)."""
    if reference == "#":
        return True
    if not reference.startswith("#/"):
        return False
    node: Any = root
    # Unquoted before it is split, as the validator's resolver (referencing) does.
    for part in unquote(reference[2:]).split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    if not isinstance(node, dict | bool):
        return False
    try:
        Draft202012Validator.check_schema(node)
    except SchemaError:
        return False
    return True


def answer_spec(schema: dict[str, Any]) -> ToolSpec:
    """The ``final_answer`` tool offered to the model: its parameters are ``schema``."""
    return ToolSpec(
        name=FINAL_ANSWER,
        description=(
            "Give your final answer: call this once you are done, with arguments that "
            "match its schema. The run ends with them; answer in no other way."
        ),
        parameters=schema,
        uses_workspace=False,
    )


def answer_problem(schema: dict[str, Any], arguments: dict[str, Any]) -> str | None:
    """Why ``arguments`` do not match ``schema``, for the model to correct; None: they do."""
    if set(arguments) == {_RAW_ARGUMENTS}:
        # What the model sent was no JSON object (cut off at the output token limit, say):
        # the provider passed its text on; checked as an object, it could even match.
        raw = str(arguments[_RAW_ARGUMENTS])[:_RAW_SHOWN]
        return (
            f"{FINAL_ANSWER}: the arguments were not valid JSON: {raw!r}; call "
            f"{FINAL_ANSWER} again with one JSON object that matches its schema."
        )
    if _depth(arguments) > MAX_ANSWER_DEPTH:  # the validator recurses as deep
        return f"{FINAL_ANSWER}: the answer nests deeper than {MAX_ANSWER_DEPTH} levels"
    errors = sorted(
        Draft202012Validator(schema).iter_errors(arguments), key=lambda err: list(err.path)
    )
    if not errors:
        return None
    lines = [
        f"{'/'.join(str(part) for part in err.absolute_path) or '(the arguments)'}: {err.message}"
        for err in errors[:_ERRORS_SHOWN]
    ]
    more = f" (and {len(errors) - _ERRORS_SHOWN} more)" if len(errors) > _ERRORS_SHOWN else ""
    return (
        f"{FINAL_ANSWER}: the answer does not match the schema{more}: "
        + "; ".join(lines)
        + f". Call {FINAL_ANSWER} again with arguments that match it."
    )


def taken_answer(schema: dict[str, Any], calls: Sequence[ToolCall]) -> ToolCall | None:
    """The turn's call that ends the run: its first ``final_answer`` call that matches."""
    return next(
        (
            call
            for call in calls
            if call.name == FINAL_ANSWER and answer_problem(schema, call.arguments) is None
        ),
        None,
    )


def answer_outcome(
    schema: dict[str, Any], call: ToolCall, taken: ToolCall | None
) -> tuple[ToolOutcome, ToolCallStatus] | None:
    """``call``'s outcome in a turn whose answer is ``taken`` (:func:`taken_answer`), as the
    workflow records it and the history's reader tells it: the answer's is ok, the other
    calls beside it are not run; a ``final_answer`` when none was taken is its mismatch
    error. None: any other call, which runs as the tools do."""
    if taken is not None:
        if call.id == taken.id:
            return ToolOutcome(content="answer taken"), "ok"
        return steplog.not_run("the run ended with its final answer"), "not_run"
    if call.name != FINAL_ANSWER:
        return None
    return ToolOutcome(error=answer_problem(schema, call.arguments)), "error"


def answer_reason(finish_reason: str | None) -> str | None:
    """The run's reason when it ends with a taken answer whose model call ended with
    ``finish_reason``: why the answer may not be whole, or None.

    An answer cut off at the output token limit is never taken: its arguments are
    no whole JSON object (the provider passes their text on, which is refused). So
    a taken answer is whole at ``length``: the model was cut off after it (in a call
    beside it, not run). A provider that withheld content (``content_filter``) may
    have withheld it inside the answer: that is still said.
    """
    if finish_reason == "length":
        return None
    return steplog.cut_short(finish_reason)


def answer_reminder() -> str:
    """What the model is told after an answer in plain text."""
    return (
        f"Answer by calling the {FINAL_ANSWER} tool with arguments that match its schema; "
        "an answer in plain text is not taken."
    )


def answer_text(arguments: dict[str, Any]) -> str:
    """The run's ``output``: the structured answer as JSON text."""
    return json.dumps(arguments, ensure_ascii=False)
