"""Streamed answers: each protocol's events, folded back into the answer a plain call gets.

A streamed call yields text as it comes, and at its end the folded answer
is parsed by the same ``parse_response`` as an unstreamed one, so a run
records the same ``ModelResponse`` whether it streamed or not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from onward.activities.providers.errors import ResponseShapeError

__all__ = ["AnswerFold", "AnthropicFold", "OpenAIFold", "TextSink"]

TextSink = Callable[[str], None]
"""Takes each piece of the answer's text as it arrives."""


class AnswerFold(Protocol):
    """Folds one protocol's stream events into its unstreamed answer."""

    def add(self, event: Mapping[str, Any]) -> str:
        """Take one event; the text it adds ("" for none).

        Raises:
            ResponseShapeError: the stream reports an error.
        """
        ...

    def answer(self) -> dict[str, Any]:
        """The JSON a plain call would have answered."""
        ...


@dataclass
class _ToolCallParts:
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class OpenAIFold:
    """Chat Completions chunks (``stream_options.include_usage``) into a completion."""

    model: str | None = None
    text: str = ""
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    _calls: dict[int, _ToolCallParts] = field(default_factory=dict)
    _chosen: bool = False

    def add(self, event: Mapping[str, Any]) -> str:
        if isinstance(event.get("error"), dict):
            raise ResponseShapeError(f"the stream reported an error: {event['error']}")
        if isinstance(model := event.get("model"), str) and model:
            self.model = model
        if isinstance(usage := event.get("usage"), dict):
            self.usage = usage
        choices = event.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return ""
        choice = choices[0]
        self._chosen = True
        if isinstance(reason := choice.get("finish_reason"), str):
            self.finish_reason = reason
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            return ""
        for part in delta.get("tool_calls") or []:
            if not isinstance(part, dict):
                continue
            call = self._calls.setdefault(int(part.get("index") or 0), _ToolCallParts())
            call.id = part.get("id") or call.id
            found = part.get("function")
            function: dict[str, Any] = found if isinstance(found, dict) else {}
            call.name = function.get("name") or call.name
            call.arguments += function.get("arguments") or ""
        piece = delta.get("content")
        if isinstance(piece, str):
            self.text += piece
            return piece
        return ""

    def answer(self) -> dict[str, Any]:
        if not self._chosen:
            raise ResponseShapeError("the stream ended without a choice")
        if self.finish_reason is None:
            # Its last chunk never came (a cut connection): the text may stop mid-word,
            # and the usage chunk after it is missing too, so it would cost nothing.
            raise ResponseShapeError("the stream ended before its finish_reason")
        message: dict[str, Any] = {"role": "assistant", "content": self.text}
        if self._calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments or "{}"},
                }
                for _, call in sorted(self._calls.items())
            ]
        answer: dict[str, Any] = {
            "choices": [{"index": 0, "message": message, "finish_reason": self.finish_reason}],
        }
        if self.model:
            answer["model"] = self.model
        if self.usage is not None:
            answer["usage"] = self.usage
        return answer


@dataclass
class AnthropicFold:
    """Messages stream events (``message_start`` ... ``message_stop``) into a message."""

    message: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)
    _blocks: dict[int, dict[str, Any]] = field(default_factory=dict)
    _json: dict[int, str] = field(default_factory=dict)
    _stopped: bool = False

    def add(self, event: Mapping[str, Any]) -> str:
        kind = event.get("type")
        if kind == "error":
            raise ResponseShapeError(f"the stream reported an error: {event.get('error')}")
        if kind == "message_start" and isinstance(event.get("message"), dict):
            self.message = dict(event["message"])
            if isinstance(self.message.get("usage"), dict):
                self._count(self.message["usage"])
        elif kind == "content_block_start" and isinstance(event.get("content_block"), dict):
            self._blocks[int(event.get("index") or 0)] = dict(event["content_block"])
        elif kind == "content_block_delta" and isinstance(event.get("delta"), dict):
            index = int(event.get("index") or 0)
            delta = event["delta"]
            block = self._blocks.setdefault(index, {"type": "text", "text": ""})
            if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
                block["text"] = block.get("text", "") + delta["text"]
                text: str = delta["text"]
                return text
            if delta.get("type") == "input_json_delta":
                self._json[index] = self._json.get(index, "") + (delta.get("partial_json") or "")
        elif kind == "message_stop":
            self._stopped = True
        elif kind == "message_delta":
            if isinstance(event.get("delta"), dict):
                self.message.update(event["delta"])
            if isinstance(event.get("usage"), dict):
                self._count(event["usage"])
        return ""

    def _count(self, usage: Mapping[str, Any]) -> None:
        """Take cumulative counts; a null one says nothing (``message_delta``'s input-side
        counts are optional), so it keeps what ``message_start`` reported."""
        self.usage.update((key, value) for key, value in usage.items() if value is not None)

    def answer(self) -> dict[str, Any]:
        if not self._stopped:
            raise ResponseShapeError("the stream ended before message_stop")
        content = []
        for index, block in sorted(self._blocks.items()):
            if block.get("type") == "tool_use" and index in self._json:
                # As sent: arguments that are not JSON (cut off by max_tokens, say) reach
                # the call as ``_raw``, the model's tool error, as a plain answer's would.
                block = {**block, "input": self._json[index] or "{}"}
            content.append(block)
        return {**self.message, "content": content, "usage": self.usage}
