"""Tool-result clearing: older tool results are sent as a short placeholder.

In a tool-heavy run the tool results are most of what every model call is
sent, again and again: a conversation of 40 file reads sends the first one 40
times. A run that asks for it (``clear_tool_results: {"trigger_tokens": N}``)
sends, once the conversation passes ``trigger_tokens`` (estimated), the older
tool results as a one-line placeholder and keeps the last ``keep_tool_uses`` in
full. The transcript in the store keeps every result; only what the model is
sent changes, and the model can call the tool again when it needs one back.
This is what Anthropic's context editing (``clear_tool_uses``) does, for every
provider.

Clearing changes the prompt, so the provider's prompt cache starts again from
the first cleared result. It clears in steps of at least
``clear_at_least_tokens`` and never brings a result back: between two clearings
every call's prompt begins with the one before it, and stays cached.

The rule is a pure function of the conversation: every prefix of it is checked
in order, as if the conversation were sent once per message. So a later, longer
conversation repeats every decision an earlier one made (what was cleared stays
cleared, the same way), whichever worker computes it.
"""

from __future__ import annotations

from collections.abc import Sequence

from onward.compaction import estimate_tokens
from onward.contracts import ClearToolResults, Message

__all__ = ["PLACEHOLDER", "cleared", "placeholder"]

PLACEHOLDER = (
    "[tool result cleared to save context: {chars:,} characters; "
    "call the tool again if it is needed]"
)


def placeholder(message: Message) -> Message:
    """``message`` (a tool result) as the placeholder the model is sent instead."""
    text = PLACEHOLDER.format(chars=len(message.content))
    return message.model_copy(update={"content": text})


def cleared(
    messages: Sequence[Message], policy: ClearToolResults | None
) -> tuple[list[Message], int]:
    """The messages the model is sent, and how many tool results are placeholders."""
    if policy is None:
        return list(messages), 0
    excluded = set(policy.exclude_tools)
    results: list[int] = []  # indices of the tool results that may be cleared, in order
    saving: list[int] = []  # cumulative tokens saved by clearing the first k of them
    tokens = 0  # of the prefix as it would be sent
    done = 0  # results cleared so far (always the first ones)
    for index, message in enumerate(messages):
        tokens += estimate_tokens([message])
        if message.role == "tool" and message.name not in excluded:
            results.append(index)
            gain = estimate_tokens([message]) - estimate_tokens([placeholder(message)])
            saving.append((saving[-1] if saving else 0) + max(gain, 0))
        if tokens <= policy.trigger_tokens:
            continue
        target = len(results) - policy.keep_tool_uses
        if target <= done:
            continue
        gain = saving[target - 1] - (saving[done - 1] if done else 0)
        if gain <= 0 or gain < policy.clear_at_least_tokens:
            continue
        tokens -= gain
        done = target
    if not done:
        return list(messages), 0
    clear = set(results[:done])
    sent = [placeholder(m) if i in clear else m for i, m in enumerate(messages)]
    return sent, done
