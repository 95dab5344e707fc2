"""The conversation of a run, behind one small interface.

The agent loop only appends to a :class:`Conversation`. A run without the
transcript store hands :meth:`Conversation.for_model` (every message) to each
model call; a run with it sends only :meth:`Conversation.since` the store's
count, and lets go of (:meth:`Conversation.forget_before`) what the store holds
and the run no longer reads, so a cached run does not keep its whole
conversation in the worker's memory.
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
        self._forgotten = 0  # messages before ``_messages``, no longer held

    def __len__(self) -> int:
        """Messages added so far, forgotten ones included: the next one's position."""
        return self._forgotten + len(self._messages)

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
        """Every message, to send with the next model call (a run without the store)."""
        return self.since(0)

    def since(self, position: int) -> list[Message]:
        """The messages from ``position`` on.

        Raises:
            ValueError: ``position`` is before a forgotten message's.
        """
        if position < self._forgotten:
            raise ValueError(
                f"message {position} was forgotten (messages before {self._forgotten} are)"
            )
        return self._messages[position - self._forgotten :]

    def held(self) -> list[Message]:
        """The messages not forgotten."""
        return list(self._messages)

    def forget_before(self, position: int) -> None:
        """Let go of the messages before ``position``."""
        drop = max(position - self._forgotten, 0)
        del self._messages[:drop]
        self._forgotten += drop
