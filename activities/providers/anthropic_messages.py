"""The Anthropic Messages protocol (``POST {base_url}/v1/messages``).

The converters are plain functions over the contracts' messages, unit-tested
without a server; the provider class only adds the HTTP call.

How the conversation maps:

* System messages become the top-level ``system`` (a string, or a list of
  text blocks when there are several).
* Assistant messages become a text block (when there is text) followed by
  ``tool_use`` blocks; tool results become ``tool_result`` blocks, with
  ``is_error: true`` for errors, in a user message. Adjacent messages of the
  same wire role are merged into one (consecutive tool results, and a user
  message after them, share one user message, tool results first), because
  the protocol wants user and assistant to alternate.
* Empty text is left out: the API rejects empty text blocks, and an
  assistant message with neither text nor tool calls is dropped.
* ``allow_tools=False`` with tool blocks in the history: the API rejects
  tool blocks without tool definitions, so the tools used so far are
  declared (placeholders when their specs were not sent) with
  ``tool_choice: {"type": "none"}``.
* ``max_tokens`` is required: ``max_output_tokens``, else
  :data:`DEFAULT_MAX_TOKENS`. ``stop`` becomes ``stop_sequences``;
  ``parallel_tool_calls=False`` becomes ``disable_parallel_tool_use``;
  ``seed`` has no Anthropic equivalent and is not sent.
* Prompt caching (``cache_prompt``, on by default): ``cache_control``
  breakpoints on the last tool, the system (then sent as a list of blocks),
  the last message and the one before the last turn, at most four.
* Usage: input tokens include cache writes and reads
  (``cache_creation_input_tokens``, ``cache_read_input_tokens``), which are
  also kept as ``cache_write_tokens`` and ``cached_input_tokens``.
* Stop reasons: ``end_turn`` and ``stop_sequence`` -> ``stop``,
  ``tool_use`` -> ``tool_calls``, ``max_tokens`` -> ``length``,
  ``refusal`` -> ``content_filter``; others pass through.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from onward.activities.providers.errors import ResponseShapeError
from onward.activities.providers.http_provider import (
    HttpModelProvider,
    answered_model,
    finish_reason,
    read_usage,
    text_of,
)
from onward.activities.providers.openai_chat import parse_arguments
from onward.contracts import Message, ModelRequest, ModelResponse, ToolCall, ToolSpec

__all__ = [
    "ANTHROPIC_VERSION",
    "CACHE_CONTROL",
    "DEFAULT_MAX_TOKENS",
    "AnthropicMessagesProvider",
    "anthropic_payload",
    "from_anthropic_messages",
    "mark_cache_breakpoints",
    "parse_anthropic_response",
    "to_anthropic_messages",
    "to_anthropic_tools",
]

ANTHROPIC_VERSION = "2023-06-01"
CACHE_CONTROL = {"type": "ephemeral"}
"""The prompt-cache breakpoint sent on the stable prefix (5-minute cache)."""
DEFAULT_MAX_TOKENS = 4096
"""Sent when the run's settings give no ``max_output_tokens`` (the API requires one)."""

_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "refusal": "content_filter",
}
_PLACEHOLDER_DESCRIPTION = "Not available for this answer."

Blocks = list[dict[str, Any]]


# -- messages -------------------------------------------------------------------


def _blocks_of(message: Message) -> tuple[str, Blocks]:
    """The wire role and content blocks of one (non-system) message."""
    if message.role == "tool":
        block: dict[str, Any] = {
            "type": "tool_result",
            "tool_use_id": message.tool_call_id,
            "content": message.content,
        }
        if message.is_error:
            block["is_error"] = True
        return "user", [block]
    blocks: Blocks = [{"type": "text", "text": message.content}] if message.content else []
    for call in message.tool_calls:
        blocks.append(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
        )
    return message.role, blocks


def to_anthropic_messages(
    messages: Sequence[Message],
) -> tuple[str | Blocks | None, list[dict[str, Any]]]:
    """The conversation as ``(system, messages)`` of a Messages call."""
    system = [message.content for message in messages if message.role == "system"]
    wire: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue
        role, blocks = _blocks_of(message)
        if not blocks:
            continue
        if wire and wire[-1]["role"] == role:
            wire[-1]["content"].extend(blocks)
        else:
            wire.append({"role": role, "content": blocks})
    top: str | Blocks | None = None
    if len(system) == 1:
        top = system[0]
    elif system:
        top = [{"type": "text", "text": text} for text in system]
    return top, wire


def _tool_call(block: Mapping[str, Any]) -> ToolCall:
    if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
        raise ResponseShapeError("a tool_use block has no id or name")
    return ToolCall(
        id=block["id"], name=block["name"], arguments=parse_arguments(block.get("input"))
    )


def from_anthropic_messages(
    system: str | Sequence[Mapping[str, Any]] | None, wire: Sequence[Mapping[str, Any]]
) -> list[Message]:
    """``(system, messages)`` of a Messages call back as the conversation."""
    messages: list[Message] = []
    if isinstance(system, str):
        messages.append(Message(role="system", content=system))
    elif system:
        messages.extend(Message(role="system", content=text_of([block])) for block in system)
    names: dict[str, str] = {}
    for item in wire:
        role, content = item.get("role"), item.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        if not isinstance(content, list):
            raise ResponseShapeError("message content is not a list of blocks")
        if role == "assistant":
            calls = [_tool_call(block) for block in content if block.get("type") == "tool_use"]
            names.update((call.id, call.name) for call in calls)
            messages.append(Message(role="assistant", content=text_of(content), tool_calls=calls))
        elif role == "user":
            for block in content:
                if block.get("type") == "tool_result":
                    call_id = block.get("tool_use_id")
                    messages.append(
                        Message(
                            role="tool",
                            content=text_of(block.get("content")),
                            tool_call_id=call_id,
                            name=names.get(call_id or ""),
                            is_error=bool(block.get("is_error", False)),
                        )
                    )
                elif block.get("type") == "text":
                    messages.append(Message(role="user", content=block.get("text", "")))
        else:
            raise ResponseShapeError(f"unknown message role {role!r}")
    return messages


# -- request and response ---------------------------------------------------------


def to_anthropic_tools(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    """Tool definitions from the worker's tool specs."""
    return [
        {"name": spec.name, "description": spec.description, "input_schema": spec.parameters}
        for spec in tools
    ]


def _tools_in_history(messages: Sequence[Message]) -> list[str]:
    names: dict[str, None] = {}  # a dict keeps first-seen order
    for message in messages:
        for call in message.tool_calls:
            names[call.name] = None
        if message.role == "tool" and message.name:
            names[message.name] = None
    return list(names)


def anthropic_payload(request: ModelRequest, *, model: str) -> dict[str, Any]:
    """The JSON body of one Messages call."""
    settings = request.settings
    system, wire = to_anthropic_messages(request.messages)
    max_tokens = settings.max_output_tokens if settings else None
    payload: dict[str, Any] = {
        "model": model,
        "max_tokens": max_tokens or DEFAULT_MAX_TOKENS,
        "messages": wire,
    }
    if system is not None:
        payload["system"] = system
    if request.allow_tools:
        if request.tools:
            payload["tools"] = to_anthropic_tools(request.tools)
            if settings is not None and settings.parallel_tool_calls is False:
                payload["tool_choice"] = {"type": "auto", "disable_parallel_tool_use": True}
    else:
        tools = to_anthropic_tools(request.tools)
        declared = {spec.name for spec in request.tools}
        tools += [
            {
                "name": name,
                "description": _PLACEHOLDER_DESCRIPTION,
                "input_schema": {"type": "object"},
            }
            for name in _tools_in_history(request.messages)
            if name not in declared
        ]
        if tools:
            payload["tools"] = tools
            payload["tool_choice"] = {"type": "none"}
    if settings is not None:
        if settings.temperature is not None:
            payload["temperature"] = settings.temperature
        if settings.stop:
            payload["stop_sequences"] = settings.stop
    if settings is None or settings.cache_prompt:
        mark_cache_breakpoints(payload)
    return payload


def mark_cache_breakpoints(payload: dict[str, Any]) -> None:
    """Put ``cache_control`` breakpoints on the stable prefix of a Messages call (in place).

    The prompt is cached in the order tools, system, messages, so the marks
    go on the last tool, the last system block (the system becomes a list of
    blocks), the last block of the last message (this call's prefix, which
    the next call starts with), and the last block of the message before the
    last turn (the prefix the previous call wrote): four, the API's maximum.
    """
    if payload.get("tools"):
        payload["tools"][-1]["cache_control"] = dict(CACHE_CONTROL)
    system = payload.get("system")
    if isinstance(system, str):
        system = payload["system"] = [{"type": "text", "text": system}]
    if system:
        system[-1]["cache_control"] = dict(CACHE_CONTROL)
    wire: list[dict[str, Any]] = payload["messages"]
    for index in (len(wire) - 1, len(wire) - 3):
        if index >= 0 and wire[index]["content"]:
            wire[index]["content"][-1]["cache_control"] = dict(CACHE_CONTROL)


def parse_anthropic_response(
    data: Mapping[str, Any], *, provider: str, fallback_model: str
) -> ModelResponse:
    """A ``ModelResponse`` from a Messages answer.

    Raises:
        ResponseShapeError: ``content`` is missing or not a list of blocks.
    """
    content = data.get("content")
    if not isinstance(content, list) or not all(isinstance(block, dict) for block in content):
        raise ResponseShapeError("no content blocks in the answer")
    return ModelResponse(
        text=text_of(content),
        tool_calls=[_tool_call(block) for block in content if block.get("type") == "tool_use"],
        usage=read_usage(
            data,
            input_keys=("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"),
            output_keys=("output_tokens",),
            cached_path=("cache_read_input_tokens",),
            write_path=("cache_creation_input_tokens",),
        ),
        model=answered_model(data, provider=provider, fallback_model=fallback_model),
        finish_reason=finish_reason(data.get("stop_reason"), _STOP_REASONS),
    )


# -- the provider -----------------------------------------------------------------


class AnthropicMessagesProvider(HttpModelProvider):
    """A model provider speaking the Anthropic Messages protocol to one base URL.

    The key is sent as ``x-api-key``, and every call sends
    ``anthropic-version``. The arguments are those of :class:`HttpModelProvider`;
    ``base_url`` is e.g. ``https://api.anthropic.com`` (``/v1/messages`` is
    appended), and ``headers`` may add ``anthropic-beta``, say.
    """

    path = "v1/messages"
    protocol_headers: ClassVar[Mapping[str, str]] = {"anthropic-version": ANTHROPIC_VERSION}

    def auth_headers(self, api_key: str) -> dict[str, str]:
        """``x-api-key: <key>``."""
        return {"x-api-key": api_key}

    def payload(self, request: ModelRequest, *, model: str) -> dict[str, Any]:
        """See :func:`anthropic_payload`."""
        return anthropic_payload(request, model=model)

    def parse_response(self, data: Mapping[str, Any], request: ModelRequest) -> ModelResponse:
        """See :func:`parse_anthropic_response`."""
        return parse_anthropic_response(data, provider=self.name, fallback_model=request.model)
