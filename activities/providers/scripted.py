"""The scripted model: plays turns written in the run's input, fully offline.

It runs inside the same model activity as real providers, so everything that
works with it (heartbeats, cancellation, budgets, pricing) works with them.
"""

from __future__ import annotations

import asyncio
import json
import math
import re

from onward.activities.providers.streaming import TextSink
from onward.contracts import Message, ModelRequest, ModelResponse, ToolCall, Usage
from onward.steplog import tool_call_id

__all__ = ["ScriptedModel", "estimate_tokens"]

_CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    """A rough token count (4 characters a token), for turns that give no usage."""
    return max(1, math.ceil(len(text) / _CHARS_PER_TOKEN)) if text else 0


def _message_text(message: Message) -> str:
    calls = "".join(json.dumps(call.arguments) + call.name for call in message.tool_calls)
    return message.content + calls


class ScriptedModel:
    """Answers with the turn the workflow hands it in ``request.scripted_turn``."""

    async def stream(self, request: ModelRequest, on_text: TextSink) -> ModelResponse:
        """The same answer, its text given word by word over the turn's ``delay_s``."""
        turn = request.scripted_turn
        delay = turn.delay_s if turn is not None else 0.0
        quick = request.model_copy(
            update={"scripted_turn": turn.model_copy(update={"delay_s": 0.0}) if turn else None}
        )
        response = await self.complete(quick)
        pieces = re.findall(r"\S+\s*|\s+", response.text)
        for piece in pieces:
            if delay:
                await asyncio.sleep(delay / len(pieces))
            on_text(piece)
        if not pieces and delay:
            await asyncio.sleep(delay)
        return response

    async def complete(self, request: ModelRequest) -> ModelResponse:
        turn = request.scripted_turn
        if turn is not None and turn.delay_s:
            await asyncio.sleep(turn.delay_s)
        tool_calls: list[ToolCall] = []
        if turn is None:
            text = _closing_text(request)
        elif request.allow_tools:
            text = turn.text or ""
            tool_calls = [
                ToolCall(
                    id=tool_call_id(request.step, index), name=call.name, arguments=call.arguments
                )
                for index, call in enumerate(turn.tool_calls, start=1)
            ]
        else:
            text = turn.text if turn.text and not turn.tool_calls else _closing_text(request)
        if turn is not None and turn.usage is not None:
            usage = turn.usage
        else:
            prompt = "".join(_message_text(message) for message in request.messages)
            output = text + "".join(json.dumps(call.arguments) for call in tool_calls)
            usage = Usage(
                input_tokens=estimate_tokens(prompt), output_tokens=estimate_tokens(output)
            )
        return ModelResponse(
            text=text,
            tool_calls=tool_calls,
            usage=usage,
            model=request.model,
            finish_reason="tool_calls" if tool_calls else "stop",
        )


def _closing_text(request: ModelRequest) -> str:
    """The final answer when the script has run out: the last tool result, if any."""
    for message in reversed(request.messages):
        if message.role == "tool":
            return f"Done. Last result from {message.name}: {message.content}"
    return "Done."
