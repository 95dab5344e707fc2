"""Compaction: when a conversation outgrows the model's context, summarise its older turns.

Off unless a run asks for it (``context: {"max_tokens": N, "keep_last_turns":
M}``) or its model's context window is known. The plan keeps the head (system
prompt and the task) and the last ``M`` turns word for word, and replaces the
turns between with one summary made by a model call of its own; the full
transcript stays in the store. Pure functions over messages, so the workflow
and the tests use the same rules.

A turn starts at a user message or an assistant message; tool results belong
to the assistant message that asked for them, so a tool call and its result
are never separated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from onward.contracts import ContextLimit, Message

__all__ = [
    "CHARS_PER_TOKEN",
    "SUMMARY_PREFIX",
    "WINDOW_SHARE",
    "CompactionPlan",
    "absolute_position",
    "apply_summary",
    "compacted",
    "estimate_tokens",
    "limit_for_window",
    "plan_compaction",
    "summary_request",
    "turn_starts",
]

CHARS_PER_TOKEN = 4
WINDOW_SHARE = 0.8
"""A run without its own ``context`` compacts past this share of its model's window:
the estimate is rough, and the answer needs room too."""
"""A rough, provider-neutral estimate; the provider's own count is what budgets use."""
SUMMARY_PREFIX = "[Summary of the earlier conversation]\n"
SUMMARY_INSTRUCTION = (
    "Summarise the conversation above for your own later use: the task, what has been done, "
    "results and facts found (numbers, names, file paths), decisions made and what is left to "
    "do. Be complete but brief. Do not call tools."
)


def estimate_tokens(messages: Sequence[Message]) -> int:
    """Tokens the messages take, estimated from their characters (content and tool calls)."""
    chars = 0
    for message in messages:
        chars += len(message.content)
        for call in message.tool_calls:
            chars += len(call.name) + len(str(call.arguments))
    return chars // CHARS_PER_TOKEN + 4 * len(messages)


def turn_starts(messages: Sequence[Message]) -> list[int]:
    """Indices where a turn starts: each user or assistant message after the head."""
    return [i for i, m in enumerate(messages) if m.role in ("user", "assistant")]


def _head_length(messages: Sequence[Message]) -> int:
    """Leading system messages and the first user message: the task, always kept."""
    index = 0
    while index < len(messages) and messages[index].role == "system":
        index += 1
    if index < len(messages) and messages[index].role == "user":
        index += 1
    return index


@dataclass(frozen=True)
class CompactionPlan:
    """Which messages a compaction summarises and which it keeps word for word."""

    head: list[Message]
    middle: list[Message]
    tail: list[Message]


def plan_compaction(
    messages: Sequence[Message], max_tokens: int, keep_last_turns: int
) -> CompactionPlan | None:
    """A plan when the messages exceed ``max_tokens``; None when they fit or nothing can go.

    Nothing can go when the turns before the last ``keep_last_turns`` are
    already gone (only the head and the kept turns are left).
    """
    if estimate_tokens(messages) <= max_tokens:
        return None
    head = _head_length(messages)
    starts = [i for i in turn_starts(messages) if i >= head]
    if len(starts) <= keep_last_turns:
        return None
    cut = starts[-keep_last_turns] if keep_last_turns > 0 else len(messages)
    middle = list(messages[head:cut])
    if not middle or all(m.content.startswith(SUMMARY_PREFIX) for m in middle):
        return None
    return CompactionPlan(list(messages[:head]), middle, list(messages[cut:]))


def summary_request(plan: CompactionPlan) -> list[Message]:
    """The messages of the model call that writes the summary (tools disabled)."""
    return [*plan.head, *plan.middle, Message(role="user", content=SUMMARY_INSTRUCTION)]


def compacted(plan: CompactionPlan, summary: str) -> list[Message]:
    """What the model is sent instead: the head, the summary, and the kept turns."""
    note = Message(role="user", content=SUMMARY_PREFIX + summary.strip())
    return [*plan.head, note, *plan.tail]


def apply_summary(messages: Sequence[Message], summary: str, covers: int) -> list[Message]:
    """What the model is sent after a compaction: head, summary, the messages from ``covers``."""
    head = _head_length(messages)
    note = Message(role="user", content=SUMMARY_PREFIX + summary.strip())
    return [*messages[:head], note, *messages[max(covers, head) :]]


def absolute_position(view: Sequence[Message], index: int, covers: int | None) -> int:
    """The transcript position of ``view[index]`` (``index`` past the head and any summary).

    ``covers`` is that of the summary ``view`` holds (None: ``view`` is the transcript
    itself), as made by :func:`apply_summary`: the head, one summary, then the
    transcript from ``covers``.
    """
    if covers is None:
        return index
    return covers + (index - _head_length(view) - 1)


def limit_for_window(window: int) -> ContextLimit:
    """The compaction limit of a run whose model accepts ``window`` tokens (its own unset)."""
    return ContextLimit(max_tokens=max(1, int(window * WINDOW_SHARE)))
