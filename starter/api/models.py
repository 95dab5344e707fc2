"""The HTTP API's own bodies; all else it sends is a contract model of :mod:`onward.contracts`.

A run is submitted as an :class:`~onward.contracts.AgentInput` with one more
optional field, ``idempotency_key``; status, steps, results and budgets go out
as the contract models themselves, so ``/openapi.json`` documents the protocol
the workflow speaks.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from onward.contracts import AgentInput, AgentState, CancelRequest, SessionInput, SteerRequest

__all__ = [
    "ApiError",
    "CancelBody",
    "ControlAnswer",
    "ErrorBody",
    "RunCreated",
    "RunRequest",
    "RunSummary",
    "SessionCreated",
    "StateAnswer",
    "SteerBody",
    "session_input",
]


class RunRequest(AgentInput):
    """``POST /v1/runs``: the agent input, plus an optional idempotency key.

    ``tenant`` is set from the API key; a body naming another tenant is refused.
    """

    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="the same key (per tenant) returns the same run instead of a second one",
    )

    def agent_input(self, tenant: str) -> AgentInput:
        """The workflow input of this request, tagged with ``tenant``."""
        fields = self.model_dump(exclude={"idempotency_key"}, exclude_unset=True)
        return AgentInput.model_validate({**fields, "tenant": tenant})


class RunCreated(BaseModel):
    """Answer of ``POST /v1/runs``: where to read the run."""

    id: str
    status_url: str
    events_url: str
    result_url: str
    created: bool = Field(description="False: the idempotency key named an existing run")


class SessionCreated(BaseModel):
    """Answer of ``POST /v1/sessions``: where to talk to the session."""

    id: str
    status_url: str
    messages_url: str
    events_url: str
    close_url: str


def session_input(body: SessionInput, tenant: str) -> SessionInput:
    """The session's workflow input, tagged with ``tenant`` (a body naming another is refused)."""
    fields = body.model_dump(exclude_unset=True)
    return SessionInput.model_validate({**fields, "tenant": tenant})


class RunSummary(BaseModel):
    """One run of ``GET /v1/runs`` (from Temporal's visibility store)."""

    id: str
    status: str
    model: str | None = None
    steps: int | None = None
    tokens: int | None = None
    cost_usd: float | None = None
    start_time: datetime
    close_time: datetime | None = None


class ControlAnswer(BaseModel):
    """Answer of pause, cancel and steer: the signal was delivered to the run."""

    id: str
    accepted: bool = True


class StateAnswer(ControlAnswer):
    """Answer of resume: also the state the run was in (None: no worker said)."""

    state_before: AgentState | None = None


class ApiError(BaseModel):
    """What went wrong, for people (``message``) and for code (``type``)."""

    type: str = Field(description="e.g. RunNotFound, InvalidInput, TooManyRuns")
    message: str
    problems: list[dict[str, object]] = Field(
        default_factory=list, description="per-field problems of a 422"
    )


class ErrorBody(BaseModel):
    """The body of every 4xx and 5xx answer."""

    error: ApiError


class CancelBody(CancelRequest):
    """``POST /v1/runs/{id}/cancel``: the ``cancel`` signal's payload, a typo refused.

    The signal itself stays lenient (a signal that fails to decode is dropped,
    and runs keep replaying the ones they got); the API says what is wrong.
    """

    model_config = ConfigDict(extra="forbid", title="CancelRequest")


class SteerBody(SteerRequest):
    """``POST /v1/runs/{id}/steer``: the ``steer`` signal's payload, a typo refused."""

    model_config = ConfigDict(extra="forbid", title="SteerRequest")
