"""GenAI spans and metrics for model and tool calls.

Spans follow the OpenTelemetry GenAI semantic conventions (``chat {model}``
and ``execute_tool {name}``) and sit under the activity span that Temporal's
``TracingInterceptor`` opens, so one run is one trace. Metrics go through the
Temporal SDK's meter (``activity.metric_meter()``), which the worker's runtime
exports. Message content is recorded only when the worker opts in
(``ONWARD_TRACE_CONTENT=1``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from temporalio import activity
from temporalio.common import MetricMeter
from temporalio.exceptions import ApplicationError
from temporalio.runtime import Runtime

from onward.contracts import (
    Message,
    ModelRequest,
    ModelResponse,
    ToolCall,
    ToolOutcome,
    ToolRequest,
    provider_of,
)
from onward.tool_telemetry import bounded_activity_type, record_tool_call, tool_span_attributes

__all__ = ["ActivityTelemetry", "ChatRecorder", "error_type", "input_messages", "output_messages"]


def _meter() -> MetricMeter:
    if not activity.in_activity():
        return MetricMeter.noop
    info = activity.info()
    bounded = bounded_activity_type(info.activity_type)
    if bounded == info.activity_type:
        return activity.metric_meter()
    # A local tool call's type holds its arguments (``calculator(2+2)``): one label
    # value per call. The SDK's activity meter has it as ``activity_type``, and a label
    # added again does not replace it in an OTLP export (the first one stays): start
    # from the runtime's meter and label as the SDK does, with the tool's name.
    try:
        runtime = activity.client().service_client.config.runtime or Runtime.default()
    except RuntimeError:  # no client (a test's ActivityEnvironment): the SDK's meter
        return activity.metric_meter()
    return runtime.metric_meter.with_additional_attributes(
        {"namespace": info.namespace, "task_queue": info.task_queue, "activity_type": bounded}
    )


def error_type(error: BaseException) -> str:
    """A failure's ``error.type``: an ``ApplicationError``'s own type (``RateLimited``,
    ``AuthenticationError``), else the exception's class name.

    Every provider failure is an ``ApplicationError``: by its class name a rate limit,
    an outage and a bad key would all read alike on spans and metrics.
    """
    if isinstance(error, ApplicationError) and error.type:
        return error.type
    return type(error).__name__


Part = dict[str, Any]
"""One message part of the GenAI conventions' message JSON (``type`` and its fields)."""


def _tool_call_part(call: ToolCall) -> Part:
    return {"type": "tool_call", "id": call.id, "name": call.name, "arguments": call.arguments}


def input_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """``gen_ai.input.messages``: each message as ``{role, parts}`` (GenAI conventions).

    Text is a ``text`` part, a tool call the model asked for a ``tool_call`` part, and
    a tool's result a ``tool_call_response`` part naming the call it answers.
    """
    converted: list[dict[str, Any]] = []
    for message in messages:
        parts: list[Part] = []
        if message.role == "tool":
            parts.append(
                {
                    "type": "tool_call_response",
                    "id": message.tool_call_id,
                    "response": message.content,
                }
            )
        elif message.content:
            parts.append({"type": "text", "content": message.content})
        parts += [_tool_call_part(call) for call in message.tool_calls]
        converted.append({"role": message.role, "parts": parts})
    return converted


_FINISH_REASONS = {"tool_calls": "tool_call"}
"""Onward's finish reasons (Chat Completions' names) where the conventions name them otherwise."""


def output_messages(response: ModelResponse) -> list[dict[str, Any]]:
    """``gen_ai.output.messages``: the answer as one assistant message with its finish reason."""
    parts: list[Part] = [{"type": "text", "content": response.text}] if response.text else []
    parts += [_tool_call_part(call) for call in response.tool_calls]
    reason = response.finish_reason or ("tool_calls" if response.tool_calls else "stop")
    return [
        {"role": "assistant", "parts": parts, "finish_reason": _FINISH_REASONS.get(reason, reason)}
    ]


def _model_name(model: str) -> str:
    return model.partition(":")[2] or model


@dataclass
class ChatRecorder:
    """Handed to the body of :meth:`ActivityTelemetry.chat`: record the answer on the span."""

    span: trace.Span
    content: bool
    response: ModelResponse | None = field(default=None)
    provider: str = ""
    """The call's provider: a response naming the model as Onward does (``openai:x``)
    is recorded by the provider's name alone, like ``gen_ai.request.model``."""

    def record(self, response: ModelResponse) -> None:
        self.response = response
        span = self.span
        answered = (response.model or "").removeprefix(f"{self.provider}:")
        span.set_attribute("gen_ai.response.model", answered)
        span.set_attribute("gen_ai.usage.input_tokens", response.usage.input_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", response.usage.output_tokens)
        if response.usage.estimated:  # the answer reported none: the counts are Onward's guess
            span.set_attribute("onward.usage.estimated", True)
        # OpenTelemetry GenAI conventions (experimental): included in input_tokens.
        if response.usage.cached_input_tokens is not None:
            span.set_attribute(
                "gen_ai.usage.cache_read.input_tokens", response.usage.cached_input_tokens
            )
        if response.usage.cache_write_tokens is not None:
            span.set_attribute(
                "gen_ai.usage.cache_creation.input_tokens", response.usage.cache_write_tokens
            )
        if response.finish_reason:
            span.set_attribute("gen_ai.response.finish_reasons", [response.finish_reason])
        if response.cost_usd is not None:
            span.set_attribute("onward.cost_usd", response.cost_usd)
        if self.content:
            span.set_attribute("gen_ai.output.messages", json.dumps(output_messages(response)))


class ActivityTelemetry:
    """Opens GenAI spans and records metrics; created once per worker."""

    def __init__(self, tracer: Tracer | None = None, trace_content: bool = False) -> None:
        self._tracer = tracer
        self._content = trace_content

    @property
    def tracer(self) -> Tracer:
        # Taken once, at the first span: a tracer got before the process's provider is
        # set is a proxy that follows it once it is (asking again each call cost a
        # tracer object and an environment lookup per tool call).
        if self._tracer is None:
            self._tracer = trace.get_tracer("onward")
        return self._tracer

    @contextmanager
    def chat(
        self, request: ModelRequest, server: tuple[str, int] | None = None
    ) -> Iterator[ChatRecorder]:
        """A ``chat`` span around one model call, and its metrics; ``server``: the host
        and port the call goes to (None: no server, the scripted model)."""
        provider = provider_of(request.model)
        model = _model_name(request.model)
        attributes: dict[str, str | int | float | bool] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": model,
            "onward.step": request.step,
        }
        if server is not None:
            attributes["server.address"], attributes["server.port"] = server
        settings = request.settings
        if settings is not None:
            if settings.temperature is not None:
                attributes["gen_ai.request.temperature"] = settings.temperature
            if settings.max_output_tokens is not None:
                attributes["gen_ai.request.max_tokens"] = settings.max_output_tokens
            if settings.seed is not None:
                attributes["gen_ai.request.seed"] = settings.seed
        if activity.in_activity():
            attributes["onward.workflow_id"] = activity.info().workflow_id or ""
        started = time.monotonic()
        with self.tracer.start_as_current_span(
            f"chat {model}", kind=SpanKind.CLIENT, attributes=attributes
        ) as span:
            if self._content:
                messages = input_messages(request.messages)
                span.set_attribute("gen_ai.input.messages", json.dumps(messages))
            recorder = ChatRecorder(span, self._content, provider=provider)
            try:
                yield recorder
            except Exception as err:
                span.set_attribute("error.type", error_type(err))
                self._record_chat_metrics(provider, model, None, time.monotonic() - started, err)
                raise
            self._record_chat_metrics(
                provider, model, recorder.response, time.monotonic() - started, None
            )

    def _record_chat_metrics(
        self,
        provider: str,
        model: str,
        response: ModelResponse | None,
        seconds: float,
        error: BaseException | None,
    ) -> None:
        meter = _meter()
        base: dict[str, str | int | float | bool] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": model,
        }
        if error is not None:
            base["error.type"] = error_type(error)
        meter.create_histogram_float(
            "gen_ai.client.operation.duration", "Duration of model calls", "s"
        ).record(seconds, base)
        meter.create_counter("onward.model.calls", "Model calls made", "{call}").add(1, base)
        if response is None:
            return
        tokens = meter.create_histogram(
            "gen_ai.client.token.usage", "Tokens per model call", "{token}"
        )
        counted = base | {"onward.usage.estimated": True} if response.usage.estimated else base
        tokens.record(response.usage.input_tokens, counted | {"gen_ai.token.type": "input"})
        tokens.record(response.usage.output_tokens, counted | {"gen_ai.token.type": "output"})
        if response.cost_usd is not None:
            meter.create_histogram_float("onward.model.cost", "Cost of model calls", "USD").record(
                response.cost_usd, base
            )

    @contextmanager
    def tool(self, request: ToolRequest) -> Iterator[list[ToolOutcome]]:
        """An ``execute_tool`` span around one tool call; append the outcome to the yielded list."""
        attributes = tool_span_attributes(request.name, request.call_id)
        if self._content:
            attributes["gen_ai.tool.call.arguments"] = json.dumps(request.arguments)
        outcomes: list[ToolOutcome] = []
        started = time.monotonic()
        with self.tracer.start_as_current_span(
            f"execute_tool {request.name}", kind=SpanKind.INTERNAL, attributes=attributes
        ) as span:
            try:
                yield outcomes
            except BaseException as err:  # raised, not returned: a retry, a timeout, a cancel
                span.set_attribute("error.type", error_type(err))
                raise
            finally:
                outcome = outcomes[0] if outcomes else None
                failed = outcome is None or outcome.error is not None
                if outcome is not None and outcome.error is not None:
                    span.set_attribute("error.type", "ToolError")
                    span.set_status(Status(StatusCode.ERROR, outcome.error))
                elif outcome is not None and self._content:
                    span.set_attribute("gen_ai.tool.call.result", outcome.content)
                record_tool_call(_meter(), request.name, time.monotonic() - started, failed)
