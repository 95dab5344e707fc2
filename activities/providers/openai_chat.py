"""The OpenAI Chat Completions protocol: OpenAI, Ollama, vLLM, LM Studio, OpenRouter...

``POST {base_url}/chat/completions``. The converters are plain functions over
the contracts' messages, so they are unit-tested without a server; the
provider class only adds the HTTP call.

Conventions, where the protocol leaves a choice:

* Tool errors: Chat Completions has no error flag on tool messages, so an
  error result is sent as content starting with ``"Error: "`` (the agent's
  conversation already writes them so); reading wire messages back, that
  prefix marks ``is_error``.
* Malformed tool-call arguments (not JSON, or not a JSON object) do not fail
  the call: they become ``{"_raw": "<the text the model sent>"}``, so the
  tool rejects them and the model is told, and the step log shows what it
  sent. Empty arguments (some servers send ``""``) are ``{}``.
* ``max_output_tokens`` is sent as ``max_completion_tokens`` for the
  ``openai`` preset (what OpenAI's reasoning models require) and as
  ``max_tokens`` for Ollama and named endpoints (what most compatible servers
  read); an endpoint can choose with ``max_tokens_field``.
* ``allow_tools=False`` sends no tools at all; ``parallel_tool_calls`` is
  only sent with tools (OpenAI rejects it otherwise).
* Tool calls without an id (some local servers) get ``call_<step>_<n>``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import httpx

from onward.activities.providers.errors import ResponseShapeError
from onward.activities.providers.http_provider import (
    HttpModelProvider,
    answered_model,
    finish_reason,
    read_usage,
    text_of,
)
from onward.activities.providers.settings import ModelCallSettings
from onward.contracts import Message, ModelRequest, ModelResponse, ToolCall, ToolSpec
from onward.steplog import tool_call_id

__all__ = [
    "ERROR_PREFIX",
    "MaxTokensField",
    "OpenAIChatProvider",
    "from_openai_messages",
    "openai_payload",
    "parse_arguments",
    "parse_openai_response",
    "to_openai_messages",
    "to_openai_tools",
]

ERROR_PREFIX = "Error: "
"""How a tool error result starts on the wire."""

MaxTokensField = Literal["max_tokens", "max_completion_tokens"]

_FINISH_REASONS = {"function_call": "tool_calls"}
"""Legacy names mapped to today's; everything else passes through unchanged."""


# -- messages -------------------------------------------------------------------


def _wire_tool_call(call: ToolCall) -> dict[str, Any]:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
    }


def to_openai_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """The conversation as Chat Completions ``messages``."""
    wire: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "assistant":
            item: dict[str, Any] = {"role": "assistant", "content": message.content}
            if message.tool_calls:
                # null, not "", next to tool calls: what OpenAI itself answers.
                item["content"] = message.content or None
                item["tool_calls"] = [_wire_tool_call(call) for call in message.tool_calls]
            wire.append(item)
        elif message.role == "tool":
            content = message.content
            if message.is_error and not content.startswith(ERROR_PREFIX):
                content = ERROR_PREFIX + content
            wire.append({"role": "tool", "tool_call_id": message.tool_call_id, "content": content})
        else:
            wire.append({"role": message.role, "content": message.content})
    return wire


def _text(content: Any) -> str:
    """Text of a message content: a string, null, or a list of ``{"type": "text"}`` parts."""
    return text_of(content, what="message content")


def parse_arguments(raw: Any) -> dict[str, Any]:
    """Tool-call arguments from the wire; never raises (see the module docstring)."""
    if isinstance(raw, dict):
        return raw
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    if not isinstance(raw, str):
        return {"_raw": json.dumps(raw)}
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {"_raw": raw}
    return parsed if isinstance(parsed, dict) else {"_raw": raw}


def _tool_calls(raw: Any, step: int) -> list[ToolCall]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ResponseShapeError("tool_calls is not a list")
    calls: list[ToolCall] = []
    for index, item in enumerate(raw, start=1):
        function = item.get("function") if isinstance(item, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise ResponseShapeError(f"tool_calls[{index - 1}] has no function name")
        call_id = item.get("id") or tool_call_id(step, index)
        calls.append(
            ToolCall(
                id=str(call_id),
                name=function["name"],
                arguments=parse_arguments(function.get("arguments")),
            )
        )
    return calls


def from_openai_messages(wire: Sequence[Mapping[str, Any]]) -> list[Message]:
    """Chat Completions ``messages`` back as the conversation (inverse of the above)."""
    names: dict[str, str] = {}
    messages: list[Message] = []
    for item in wire:
        role = item.get("role")
        if role == "assistant":
            calls = _tool_calls(item.get("tool_calls"), step=0)
            names.update((call.id, call.name) for call in calls)
            messages.append(
                Message(role="assistant", content=_text(item.get("content")), tool_calls=calls)
            )
        elif role == "tool":
            content = _text(item.get("content"))
            call_id = item.get("tool_call_id")
            messages.append(
                Message(
                    role="tool",
                    content=content,
                    tool_call_id=call_id,
                    name=names.get(call_id or ""),
                    is_error=content.startswith(ERROR_PREFIX),
                )
            )
        elif role in ("system", "developer", "user"):
            kind: Literal["system", "user"] = "user" if role == "user" else "system"
            messages.append(Message(role=kind, content=_text(item.get("content"))))
        else:
            raise ResponseShapeError(f"unknown message role {role!r}")
    return messages


# -- request and response ---------------------------------------------------------


def to_openai_tools(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    """Function tools from the worker's tool specs."""
    return [
        {
            "type": "function",
            "function": {
                "name": spec.name,
                "description": spec.description,
                "parameters": spec.parameters,
            },
        }
        for spec in tools
    ]


def openai_payload(
    request: ModelRequest, *, model: str, max_tokens_field: MaxTokensField
) -> dict[str, Any]:
    """The JSON body of one Chat Completions call."""
    payload: dict[str, Any] = {"model": model, "messages": to_openai_messages(request.messages)}
    settings = request.settings
    if request.allow_tools and request.tools:
        payload["tools"] = to_openai_tools(request.tools)
        if settings is not None and settings.parallel_tool_calls is not None:
            payload["parallel_tool_calls"] = settings.parallel_tool_calls
    if settings is not None:
        if settings.temperature is not None:
            payload["temperature"] = settings.temperature
        if settings.max_output_tokens is not None:
            payload[max_tokens_field] = settings.max_output_tokens
        if settings.stop:
            payload["stop"] = settings.stop
        if settings.seed is not None:
            payload["seed"] = settings.seed
    return payload


def parse_openai_response(
    data: Mapping[str, Any], *, provider: str, step: int, fallback_model: str
) -> ModelResponse:
    """A ``ModelResponse`` from a Chat Completions answer.

    Raises:
        ResponseShapeError: there is no ``choices[0].message``.
    """
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ResponseShapeError("no choices in the answer")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise ResponseShapeError("choices[0] has no message")
    return ModelResponse(
        text=_text(message.get("content")),
        tool_calls=_tool_calls(message.get("tool_calls"), step),
        usage=read_usage(
            data,
            input_keys=("prompt_tokens",),
            output_keys=("completion_tokens",),
            cached_path=("prompt_tokens_details", "cached_tokens"),
        ),
        model=answered_model(data, provider=provider, fallback_model=fallback_model),
        finish_reason=finish_reason(choice.get("finish_reason"), _FINISH_REASONS),
    )


# -- the provider -----------------------------------------------------------------


class OpenAIChatProvider(HttpModelProvider):
    """A model provider speaking Chat Completions to one base URL.

    The key is sent as ``Authorization: Bearer``; endpoints without auth
    (Ollama, a local vLLM) have no ``api_key_env``. The other arguments are
    those of :class:`HttpModelProvider`.

    Args:
        base_url: e.g. ``https://api.openai.com/v1`` (``/chat/completions`` is appended).
        max_tokens_field: the field ``max_output_tokens`` is sent as.
    """

    path = "chat/completions"

    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        api_key: str | None,
        api_key_env: str | None,
        settings: ModelCallSettings,
        max_tokens_field: MaxTokensField = "max_tokens",
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        key_required: bool = True,
    ) -> None:
        super().__init__(
            name,
            base_url=base_url,
            api_key=api_key,
            api_key_env=api_key_env,
            settings=settings,
            headers=headers,
            transport=transport,
            key_required=key_required,
        )
        self._max_tokens_field: MaxTokensField = max_tokens_field

    def auth_headers(self, api_key: str) -> dict[str, str]:
        """``Authorization: Bearer <key>``."""
        return {"Authorization": f"Bearer {api_key}"}

    def payload(self, request: ModelRequest, *, model: str) -> dict[str, Any]:
        """See :func:`openai_payload`."""
        return openai_payload(request, model=model, max_tokens_field=self._max_tokens_field)

    def parse_response(self, data: Mapping[str, Any], request: ModelRequest) -> ModelResponse:
        """See :func:`parse_openai_response`."""
        return parse_openai_response(
            data, provider=self.name, step=request.step, fallback_model=request.model
        )
