"""The ``invoke_agent`` span of a run: from its start to its end, with its outcome.

The workflow cannot open a span (workflow code may replay), so at its end it
hands a :class:`RunSpan` to the worker through the extern function
:data:`RUN_SPAN_EXTERN` (registered by ``onward.telemetry.RunTracingInterceptor``),
once, not while replaying. Light on purpose: the workflow imports it, and
importing it loads no OpenTelemetry SDK.
"""

from __future__ import annotations

from dataclasses import dataclass

from onward.contracts import provider_of

__all__ = ["FAILED_OUTCOMES", "RUN_SPAN_EXTERN", "RunSpan", "run_span_attributes"]

RUN_SPAN_EXTERN = "__onward_run_span"
"""The worker-side function that records a run's ``invoke_agent`` span."""

FAILED_OUTCOMES = frozenset({"failed", "budget_exceeded"})
"""The outcomes whose span has status ERROR, with the outcome as ``error.type``.
A cancelled run did what it was asked."""


@dataclass(frozen=True)
class RunSpan:
    """A run (its whole continue-as-new chain) that ended: when, how, and what it used."""

    workflow_id: str
    model: str
    start_ns: int
    end_ns: int
    status: str
    """The run's outcome: ``completed``, ``failed``, ``budget_exceeded``, ``cancelled``."""
    reason: str | None
    steps: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    """None: unknown (a model with no price)."""
    conversation_id: str | None = None
    """The session a session's message run answers in (``gen_ai.conversation.id``)."""


def run_span_attributes(run: RunSpan) -> dict[str, str | int | float | bool]:
    """An ``invoke_agent`` span's attributes (OpenTelemetry GenAI conventions, and Onward's)."""
    model = run.model
    attributes: dict[str, str | int | float | bool] = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.provider.name": provider_of(model),
        "gen_ai.request.model": model.partition(":")[2] or model,
        "gen_ai.usage.input_tokens": run.input_tokens,
        "gen_ai.usage.output_tokens": run.output_tokens,
        "onward.workflow_id": run.workflow_id,
        "onward.status": run.status,
        "onward.steps": run.steps,
    }
    if run.cost_usd is not None:
        attributes["onward.cost_usd"] = run.cost_usd
    if run.conversation_id is not None:
        attributes["gen_ai.conversation.id"] = run.conversation_id
    if run.status in FAILED_OUTCOMES:
        attributes["error.type"] = run.status
    return attributes
