"""OpenTelemetry setup for the worker and the CLI, from the standard ``OTEL_*`` variables.

Called once at startup (never at import). Tracing goes through Temporal's own
``TracingInterceptor`` (as :class:`RunTracingInterceptor`), so workflow spans
are replay-safe and client -> workflow -> activity spans form one trace, also
for a run started without one (the ``temporal`` CLI, the Web UI); the model and
tool activities add GenAI spans under their activity span (see
``activities/telemetry.py``).

- ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) set:
  spans go to OTLP/HTTP (``pip install 'onward[otlp]'``); ``OTEL_TRACES_EXPORTER``
  may say ``otlp``, ``console`` or ``none``; ``OTEL_SDK_DISABLED=true`` turns it all off.
- ``--trace-file PATH`` (``ONWARD_TRACE_FILE``): spans as JSON lines, for local inspection.
- Otherwise tracing is off and costs nothing.
- Message content is recorded only with ``ONWARD_TRACE_CONTENT=1``; without it
  the exporters get spans without their errors' text (:class:`WithoutErrorText`).
- Metrics go through the Temporal SDK's meter; with an OTLP endpoint set they
  are exported there by the Temporal runtime (see :func:`temporal_runtime`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import Decision, Sampler
from opentelemetry.trace import SpanKind, Status, StatusCode
from temporalio import workflow
from temporalio.contrib.opentelemetry import TracingInterceptor, TracingWorkflowInboundInterceptor
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    OpenTelemetryConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)
from temporalio.worker import WorkflowInterceptorClassInput

from onward.errors import SettingsError
from onward.run_telemetry import FAILED_OUTCOMES, RUN_SPAN_EXTERN, RunSpan, run_span_attributes
from onward.tool_telemetry import (
    TOOL_SPAN_EXTERN,
    WorkflowToolSpan,
    bounded_activity_type,
    tool_span_attributes,
)
from onward.tuning import env_flag

if TYPE_CHECKING:
    # Private to the SDK, so for the type checker only: a worker must not fail to start
    # because an upgrade moved it (the span names would then keep their arguments, which
    # the telemetry tests would report).
    from temporalio.contrib.opentelemetry._interceptor import _CompletedWorkflowSpanParams

__all__ = [
    "HISTOGRAM_BUCKETS",
    "WORKER_SERVICE",
    "JsonLinesSpanExporter",
    "RunTracingInterceptor",
    "Telemetry",
    "WithoutErrorText",
    "configure_telemetry",
    "run_trace_id",
    "temporal_runtime",
    "trace_content_enabled",
]

log = logging.getLogger("onward.telemetry")


def trace_content_enabled(environ: Mapping[str, str]) -> bool:
    """Whether spans may carry message content (``ONWARD_TRACE_CONTENT=1``): off by default.

    Raises:
        SettingsError: a value that is neither on nor off (see :func:`~onward.tuning.env_flag`).
    """
    return env_flag(environ, "ONWARD_TRACE_CONTENT")


class JsonLinesSpanExporter(SpanExporter):
    """Writes each finished span as one JSON line (the SDK's own span JSON, compacted)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = path.open("a", encoding="utf-8")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            self._file.write(json.dumps(json.loads(span.to_json())) + "\n")
        self._file.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._file.close()


class WithoutErrorText(SpanExporter):
    """``exporter``, given spans without the text of their errors (content is off).

    A status description and an ``exception`` event's message and stack trace are
    whatever an error said, and errors quote what they were given: a tool's its
    arguments (``path '../notes' is outside the workspace``), a provider's the
    prompt. Without ``ONWARD_TRACE_CONTENT=1`` spans keep that an error happened
    (the status, ``error.type``, ``exception.type``), not its text; the worker's log
    has it.
    """

    def __init__(self, exporter: SpanExporter) -> None:
        self._exporter = exporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._exporter.export([_without_error_text(span) for span in spans])

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._exporter.force_flush(timeout_millis)


def _without_error_text(span: ReadableSpan) -> ReadableSpan:
    exceptions = [event for event in span.events if event.name == "exception"]
    if span.status.description is None and not exceptions:
        return span  # the common case, as it is
    events = [
        Event(
            event.name,
            {"exception.type": (event.attributes or {}).get("exception.type", "")},
            event.timestamp,
        )
        if event.name == "exception"
        else event
        for event in span.events
    ]
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=span.attributes,
        events=events,
        links=span.links,
        kind=span.kind,
        status=Status(span.status.status_code),
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


_SAMPLED_EXTERN = "__onward_run_trace_sampled"
"""The worker-side function a workflow asks whether its own trace is sampled (outside the
sandbox: a sampler may read anything)."""


def _run_ids(workflow_id: str, first_run_id: str) -> tuple[int, int]:
    """The trace id and parent span id of a run started without a trace."""
    digest = hashlib.sha256(f"{workflow_id}\x00{first_run_id}".encode()).digest()
    return int.from_bytes(digest[:16], "big") or 1, int.from_bytes(digest[16:24], "big") or 1


def run_trace_id(workflow_id: str, first_run_id: str) -> str:
    """The trace (32 hex digits) of a run started without one (see :class:`RunTracingInterceptor`).

    ``first_run_id``: the run id of the first run of its chain (continue-as-new keeps it).
    """
    return trace.format_trace_id(_run_ids(workflow_id, first_run_id)[0])


class _RunTraceWorkflowInterceptor(TracingWorkflowInboundInterceptor):
    """Temporal's workflow interceptor, with a trace of the run's own when it came with none."""

    def _load_workflow_context_carrier(self) -> dict[str, list[str] | str] | None:
        given = super()._load_workflow_context_carrier()
        if given:
            return given
        info = workflow.info()
        trace_id, span_id = _run_ids(info.workflow_id, info.first_execution_run_id)
        sampled = workflow.extern_functions()[_SAMPLED_EXTERN](trace_id)
        flags = trace.TraceFlags.SAMPLED if sampled else trace.TraceFlags.DEFAULT
        parent = trace.NonRecordingSpan(
            trace.SpanContext(
                trace_id, span_id, is_remote=True, trace_flags=trace.TraceFlags(flags)
            )
        )
        carrier: dict[str, list[str] | str] = {}
        self.text_map_propagator.inject(carrier, trace.set_span_in_context(parent, Context()))
        self._workflow_context_carrier = carrier
        return carrier


class RunTracingInterceptor(TracingInterceptor):
    """Temporal's ``TracingInterceptor``, giving a run started without a trace one of its own.

    A run started by a client that does not trace (the ``temporal`` CLI, the Web UI,
    a plain SDK client) carries no trace context: Temporal's interceptor then records
    no workflow span and every activity begins a trace of its own. With this one such
    a run's spans are one trace, under a parent that is never recorded, whose ids come
    from the run's workflow id and first run id (:func:`run_trace_id`): the same on
    every worker and replay, and the same across continue-as-new (and a retry's,
    cron's or reset's runs, which keep the first run id). Whether it is sampled is
    the tracer's sampler's decision for a trace of that id without a parent (a
    ``ParentBased`` sampler's root sampler), as for a run a traced client starts.
    """

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[TracingWorkflowInboundInterceptor]:
        super().workflow_interceptor_class(input)  # registers the span-making extern
        input.unsafe_extern_functions[_SAMPLED_EXTERN] = self._samples
        input.unsafe_extern_functions[TOOL_SPAN_EXTERN] = self._tool_span
        input.unsafe_extern_functions[RUN_SPAN_EXTERN] = self._run_span
        return _RunTraceWorkflowInterceptor

    @contextmanager
    def _start_as_current_span(self, name: str, **options: Any) -> Iterator[None]:
        # ``RunActivity:calculator(2+2)``: named by the tool alone (see bounded_activity_type).
        with super()._start_as_current_span(_span_name(name), **options):
            yield

    def _completed_workflow_span(
        self, params: _CompletedWorkflowSpanParams
    ) -> dict[str, Any] | None:
        # ``StartActivity:calculator(2+2)``, recorded for the workflow: likewise.
        renamed = dataclasses.replace(params, name=_span_name(params.name))
        return super()._completed_workflow_span(renamed)

    def _tool_span(self, given: WorkflowToolSpan) -> None:
        # Called from workflow code, in its context: the span's parent is the run's.
        attributes = tool_span_attributes(given.name, given.call_id)
        attributes["onward.workflow_tool"] = True
        span = self.tracer.start_span(
            f"execute_tool {given.name}",
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            start_time=given.start_ns,
        )
        if given.error_type is not None:
            span.set_attribute("error.type", given.error_type)
            span.set_status(Status(StatusCode.ERROR, given.error))
        span.end(end_time=given.end_ns)

    def _run_span(self, run: RunSpan) -> None:
        # Called from workflow code at the run's end, in its context, like _tool_span.
        span = self.tracer.start_span(
            "invoke_agent",
            kind=SpanKind.INTERNAL,
            attributes=run_span_attributes(run),
            start_time=run.start_ns,
        )
        if run.status in FAILED_OUTCOMES:
            span.set_status(Status(StatusCode.ERROR, run.reason))
        span.end(end_time=run.end_ns)

    def _samples(self, trace_id: int) -> bool:
        sampler: Sampler | None = getattr(self.tracer, "sampler", None)
        if sampler is None:  # not the SDK's tracer: let it decide by the parent's flag
            return True
        result = sampler.should_sample(Context(), trace_id, "RunWorkflow")
        return result.decision is Decision.RECORD_AND_SAMPLE


def _span_name(name: str) -> str:
    """A span Temporal's interceptor names after an activity type, named after a bounded one."""
    kind, colon, activity_type = name.partition(":")
    if colon and kind in ("StartActivity", "RunActivity"):
        return f"{kind}:{bounded_activity_type(activity_type)}"
    return name


@dataclass
class Telemetry:
    """What :func:`configure_telemetry` set up; pass ``interceptors`` to clients and workers."""

    provider: TracerProvider | None
    trace_content: bool

    @property
    def interceptors(self) -> list[TracingInterceptor]:
        if self.provider is None:
            return []
        return [RunTracingInterceptor(self.provider.get_tracer("onward"))]

    def shutdown(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()


def _otlp_exporter(environ: Mapping[str, str]) -> SpanExporter | None:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        log.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but the OTLP exporter is not installed: "
            "pip install 'onward[otlp]'"
        )
        return None
    exporter: SpanExporter = OTLPSpanExporter()  # reads the OTEL_EXPORTER_OTLP_* variables
    return exporter


def _check_span_settings(
    environ: Mapping[str, str], wanted: set[str], endpoint: str | None
) -> None:
    """Refuse span settings that would export nothing: an exporter Onward has not, or an
    OTLP protocol other than http/protobuf (the spans would not arrive)."""
    if unknown := sorted(wanted - {"otlp", "console", "none"}):
        raise SettingsError(
            f"OTEL_TRACES_EXPORTER={environ['OTEL_TRACES_EXPORTER']!r}: Onward has no "
            f"{', '.join(unknown)} span exporter (otlp, console or none)"
        )
    if "otlp" not in wanted or not endpoint:
        return
    variable = next(
        (name for name in _TRACES_PROTOCOLS if environ.get(name)), _TRACES_PROTOCOLS[-1]
    )
    protocol = environ.get(variable, "http/protobuf")
    if protocol != "http/protobuf":
        raise SettingsError(
            f"{variable}={protocol!r}: Onward sends spans over OTLP/HTTP (http/protobuf) "
            "only; set OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/protobuf and point "
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT at the collector's HTTP port (4318)"
        )


_TRACES_PROTOCOLS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
"""How spans would be sent: the first of these that is set."""


def configure_telemetry(
    environ: Mapping[str, str],
    *,
    service_name: str,
    trace_file: Path | None = None,
    set_global: bool = True,
    strict: bool = True,
) -> Telemetry:
    """Build the tracer provider the environment asks for (None when tracing is off).

    Args:
        strict: raise for span settings that would export nothing (the worker's and
            the API's start); False logs a warning and sends no spans (a CLI command,
            in a shell whose OTEL settings are meant for other programs).

    Raises:
        SettingsError: ``OTEL_TRACES_EXPORTER`` names an exporter Onward has not, or
            spans are to go over an OTLP protocol other than http/protobuf.
    """
    content = trace_content_enabled(environ)
    if environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return Telemetry(None, content)
    wanted = {
        name.strip()
        for name in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")
        if name.strip()
    }
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    try:
        _check_span_settings(environ, wanted, endpoint)
    except SettingsError as err:
        if strict:
            raise
        log.warning("%s; no spans are sent", err)
        return Telemetry(None, content)
    exporters: list[tuple[SpanExporter, bool]] = []  # (exporter, batch it)
    if "otlp" in wanted and endpoint:
        otlp = _otlp_exporter(environ)
        if otlp is not None:
            exporters.append((otlp, True))
    if "console" in wanted:
        exporters.append((ConsoleSpanExporter(), False))
    file = trace_file
    if file is None and environ.get("ONWARD_TRACE_FILE"):
        file = Path(environ["ONWARD_TRACE_FILE"])
    if file is not None:
        exporters.append((JsonLinesSpanExporter(file), False))
    if not exporters:
        return Telemetry(None, content)
    resource = Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME", service_name)})
    provider = TracerProvider(resource=resource)
    for exporter, batch in exporters:
        if not content:
            exporter = WithoutErrorText(exporter)
        provider.add_span_processor(
            BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
        )
    if set_global:
        trace.set_tracer_provider(provider)
    return Telemetry(provider, content)


_DURATION_BUCKETS = [0.01 * 2**n for n in range(14)]
"""Seconds, 0.01 to 81.92: the GenAI conventions' for ``gen_ai.client.operation.duration``."""

HISTOGRAM_BUCKETS: dict[str, list[float]] = {
    "gen_ai.client.operation.duration": _DURATION_BUCKETS,
    "gen_ai.client.token.usage": [float(4**n) for n in range(14)],  # 1 to 67108864
    "onward.model.cost": [10.0**n for n in range(-7, 2)],  # USD, 1e-7 to 10
    # Tools and steps may take longer than a model call: on to about 11 minutes.
    "onward.tool.duration": [0.001, 0.005, *_DURATION_BUCKETS, 163.84, 327.68, 655.36],
    "onward.step.duration": [*_DURATION_BUCKETS, 163.84, 327.68, 655.36],
}
"""Bucket boundaries of Onward's histograms. The Temporal runtime's default ones
(0.05 to 10) put every token count and every call's cost in one bucket, and every
model call over 10 s in the last."""

WORKER_SERVICE = "onward-worker"
"""The service a worker's spans and metrics name when ``OTEL_SERVICE_NAME`` is not set."""


def temporal_runtime(environ: Mapping[str, str], *, service_name: str = WORKER_SERVICE) -> Runtime:
    """The worker's Temporal runtime: Core's logs through Python logging, metrics over OTLP.

    Core's own console logger writes ANSI colour codes whatever its output is;
    forwarded, its lines share the worker's log format (plain text in a file).
    SDK metrics (ours included) go to ``OTEL_EXPORTER_OTLP_[METRICS_]ENDPOINT`` when set
    (not with ``OTEL_METRICS_EXPORTER=none``), from the service its spans name
    (``OTEL_SERVICE_NAME``, else ``service_name``): Core's own default,
    ``temporal-core-sdk``, would put a worker's metrics and its spans under two services.
    """
    logs = LoggingConfig(
        filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
        forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
    )
    variable = next(
        (name for name in _METRICS_ENDPOINTS if environ.get(name)), _METRICS_ENDPOINTS[-1]
    )
    endpoint = environ.get(variable)
    exporters = {name.strip() for name in environ.get("OTEL_METRICS_EXPORTER", "otlp").split(",")}
    if (
        not endpoint
        or environ.get("OTEL_SDK_DISABLED", "").lower() == "true"
        or "otlp" not in exporters  # "none" (or one the runtime has not): no metrics
    ):
        return Runtime(telemetry=TelemetryConfig(logging=logs))
    # OTLP/HTTP unless the user says grpc (for metrics, or for all signals).
    protocol = next(
        (environ[name] for name in _METRICS_PROTOCOLS if environ.get(name)), "http/protobuf"
    )
    use_http = protocol != "grpc"
    if use_http and not environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"):
        endpoint = endpoint.rstrip("/") + "/v1/metrics"
    metrics = OpenTelemetryConfig(
        url=endpoint,
        headers=_metrics_headers(environ),
        http=use_http,
        durations_as_seconds=True,
        histogram_bucket_overrides=HISTOGRAM_BUCKETS,
    )
    # Core puts its global tags on the exported metrics' resource.
    resource = {"service.name": environ.get("OTEL_SERVICE_NAME") or service_name}
    try:
        return Runtime(
            telemetry=TelemetryConfig(logging=logs, metrics=metrics, global_tags=resource)
        )
    except ValueError as err:  # Core's "Invalid OTel URL: relative URL without a base"
        raise SettingsError(
            f"{variable}={environ.get(variable)!r}: {err} (e.g. http://localhost:4318)"
        ) from None


_METRICS_ENDPOINTS = ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
"""Where SDK metrics go: the first of these that is set."""


def _metrics_headers(environ: Mapping[str, str]) -> dict[str, str] | None:
    """The headers every metrics export sends (a collector's key), as the span exporter's:
    ``OTEL_EXPORTER_OTLP_[METRICS_]HEADERS``, ``name=value`` pairs, comma-separated,
    values URL-encoded. Core does not read these variables itself.

    Raises:
        SettingsError: an entry that is not ``name=value`` (its value is not repeated:
            it may be a secret).
    """
    variable = next((name for name in _METRICS_HEADERS if environ.get(name)), None)
    if variable is None:
        return None
    headers: dict[str, str] = {}
    for entry in environ[variable].split(","):
        name, equals, value = entry.partition("=")
        if not equals or not name.strip():
            raise SettingsError(f"{variable}: an entry is not name=value")
        headers[name.strip().lower()] = urllib.parse.unquote(value.strip())
    return headers


_METRICS_HEADERS = ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS")
"""The headers of metrics exports: the first of these that is set."""

_METRICS_PROTOCOLS = ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
"""How SDK metrics are sent: the first of these that is set."""
