"""The conversation of a run, behind one small interface.

The agent loop only appends to a :class:`Conversation` and hands
:meth:`Conversation.for_model` to the model activity. Today the messages live
in workflow state (and so in the event history, through activity inputs); a
later version can keep them in an external store and pass references, without
touching the loop.
"""

from __future__ import annotations

from onward.contracts import Message, ModelResponse, ToolCall, ToolOutcome

__all__ = ["Conversation", "truncate"]


def truncate(text: str, limit: int) -> tuple[str, bool]:
    """Cut ``text`` to ``limit`` characters, saying so at the end."""
    if len(text) <= limit:
        return text, False
    note = f"\n[truncated: showing {limit} of {len(text)} characters]"
    return text[:limit] + note, True


class Conversation:
    """Ordered, provider-neutral messages of one run."""

    def __init__(self) -> None:
        self._messages: list[Message] = []

    def __len__(self) -> int:
        return len(self._messages)

    def add_system(self, text: str) -> None:
        self._messages.append(Message(role="system", content=text))

    def add_user(self, text: str) -> None:
        self._messages.append(Message(role="user", content=text))

    def add_assistant(self, response: ModelResponse) -> None:
        self._messages.append(
            Message(role="assistant", content=response.text, tool_calls=list(response.tool_calls))
        )

    def add_tool_result(
        self, call: ToolCall, outcome: ToolOutcome, limit: int | None = None
    ) -> None:
        """Add a tool's result, cut to the tool's ``limit`` (the step log keeps more)."""
        if outcome.error is not None:
            content, is_error = f"Error: {outcome.error}", True
        else:
            content, is_error = outcome.content, False
        if limit is not None:
            content, _ = truncate(content, limit)
        self._messages.append(
            Message(
                role="tool",
                content=content,
                tool_call_id=call.id,
                name=call.name,
                is_error=is_error,
            )
        )

    def for_model(self) -> list[Message]:
        """The messages to send with the next model call."""
        return list(self._messages)
