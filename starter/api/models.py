"""The HTTP API's own bodies; all else it sends is a contract model of :mod:`onward.contracts`.

A run is submitted as an :class:`~onward.contracts.AgentInput` with one more
optional field, ``idempotency_key``; status, steps, results and budgets go out
as the contract models themselves, so ``/openapi.json`` documents the protocol
the workflow speaks.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from onward.contracts import (
    MAX_FALLBACK_MODELS,
    AgentInput,
    AgentState,
    Budget,
    CancelRequest,
    SessionInput,
    SteerRequest,
)
from onward.errors import InvalidInput
from onward.webhooks import url_problem

__all__ = [
    "ApiError",
    "CancelBody",
    "ControlAnswer",
    "ErrorBody",
    "Problem",
    "RunCreated",
    "RunRequest",
    "RunSummary",
    "ScheduleNote",
    "ScheduleRequest",
    "ScheduledInput",
    "SessionCreated",
    "StateAnswer",
    "SteerBody",
    "check_client_input",
    "scheduled_input",
    "session_input",
]

SET_BY_ONWARD = {
    "carry": "set by the workflow itself when it continues as new",
    "conversation": "set by a session for each message's run",
    "delegation_depth": "set by the delegate tool",
    "workspace": "named only by a sub-agent, which the delegate tool starts",
}
"""Input fields Onward sets itself. From a client they would reach past its own run: into
another run's transcript (``carry``, ``conversation``) or files (``workspace``), or round
its budget (``carry``)."""


def check_client_input(
    body: AgentInput | SessionInput,
    tenant: str,
    kind: str,
    spend_capped: bool,
    at: tuple[str, ...] = ("body",),
) -> None:
    """Refuse what an API client may not set in a run's or session's input.

    Its tenant is its API key's; the fields Onward sets itself are not its to set;
    and where the API caps what a tenant spends a day (``spend_capped``), its own
    ``pricing`` would make its runs cost what it says (nothing, say): prices are
    then the workers' pricing table's.

    Raises:
        InvalidInput: naming the field, under ``at`` (where the request carries the input).
    """
    if body.tenant is not None and body.tenant != tenant:
        raise InvalidInput.at(
            (*at, "tenant"), f"{kind}s belong to the API key's tenant; leave it out"
        )
    fields = type(body).model_fields
    for name, why in SET_BY_ONWARD.items():
        if name in fields and getattr(body, name) != fields[name].default:
            raise InvalidInput.at((*at, name), f"{why}, not by clients")
    if spend_capped and body.pricing is not None:
        raise InvalidInput.at(
            (*at, "pricing"),
            "this API caps what a tenant spends a day; runs are priced by the "
            "workers' pricing table, so leave it out",
        )


def _digest(request: BaseModel) -> str:
    """SHA-256 of ``request`` as canonical JSON, its ``idempotency_key`` and the fields at
    their defaults left out (see :meth:`RunRequest.digest`)."""
    fields = request.model_dump(mode="json", exclude={"idempotency_key"}, exclude_defaults=True)
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _postable(value: str | None) -> str | None:
    """A webhook URL a client may give (checked here, not in AgentInput: a run begun
    with another must replay as it ran)."""
    problem = None if value is None else url_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


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

    _webhook_url = field_validator("webhook_url")(_postable)

    def agent_input(self, tenant: str) -> AgentInput:
        """The workflow input of this request, tagged with ``tenant``."""
        fields = self.model_dump(exclude={"idempotency_key"}, exclude_unset=True)
        return AgentInput.model_validate({**fields, "tenant": tenant})

    def digest(self) -> str:
        """SHA-256 of the request (the key aside): what a repeat of it must match.

        Fields at their defaults are left out, sent or not, so a retry that
        spells out a default is the same request, and an Onward that adds a
        field with a default still recognises a request sent before.
        """
        return _digest(self)


class ForkRequest(BaseModel):
    """``POST /v1/runs/{id}/fork``: go on from the run's conversation at the end of a step."""

    model_config = ConfigDict(extra="forbid")

    at_step: int = Field(ge=1, description="the last step of the run taken over")
    prompt: str = Field(min_length=1, description="the user message the new run goes on with")
    model: str | None = Field(default=None, max_length=200, description="instead of the run's")
    fallback_models: list[str] | None = Field(
        default=None, max_length=MAX_FALLBACK_MODELS, description="instead of the run's"
    )
    budget: Budget | None = Field(
        default=None, description="limits to change; those left out stay the run's"
    )

    def changes(self) -> dict[str, Any]:
        """The fields given, as :meth:`OnwardClient.fork_input` takes them."""
        changes: dict[str, Any] = {}
        if self.model is not None:
            changes["model"] = self.model
        if self.fallback_models is not None:
            changes["fallback_models"] = self.fallback_models
        if self.budget is not None:
            changes["budget"] = self.budget.model_dump(exclude_unset=True)
        return changes


class ScheduledInput(AgentInput):
    """The agent input each run of a schedule starts with, as ``POST /v1/runs`` takes it.

    ``tenant`` is set from the API key; a body naming another tenant is refused.
    """

    _webhook_url = field_validator("webhook_url")(_postable)


class ScheduleRequest(BaseModel):
    """``POST /v1/schedules``: start a run of ``input`` at each time of ``cron``."""

    model_config = ConfigDict(extra="forbid")

    cron: str = Field(
        min_length=1,
        max_length=500,
        description='a cron expression, in UTC ("0 8 * * *": 08:00 daily), or Temporal\'s '
        '"@every 1h"; one Temporal refuses is a 422 at ["body", "cron"]',
    )
    input: ScheduledInput = Field(description="what each run is started with")
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="the same key (per tenant) returns the same schedule instead of a second one",
    )

    def digest(self) -> str:
        """SHA-256 of the request (the key aside), fields at their defaults left out, as
        :meth:`RunRequest.digest`: what a repeat of it must match."""
        return _digest(self)


def scheduled_input(body: ScheduledInput, tenant: str) -> AgentInput:
    """The workflow input of a schedule's runs, tagged with ``tenant``."""
    fields = body.model_dump(exclude_unset=True)
    return AgentInput.model_validate({**fields, "tenant": tenant})


class ScheduleNote(BaseModel):
    """``POST /v1/schedules/{id}/pause`` and ``/unpause``: why, shown with the schedule."""

    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, max_length=1000)


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
    pausing_before: bool | None = Field(
        default=None,
        description="true: the run was running with a pause not reached yet (calls in "
        "flight), and that pause is withdrawn (None: no worker said)",
    )


class Problem(BaseModel):
    """One problem of a 422, in pydantic's form (its input left out: it may be a secret)."""

    loc: list[str | int] = Field(
        description='where: ["body", "prompt"], ["query", "since"], ["header", '
        '"last-event-id"], ["path", "run_id"]; ["body"] for the body as a whole'
    )
    msg: str = Field(description="what is wrong")
    type: str = Field(description="its kind: missing, extra_forbidden, value_error ...")


class ApiError(BaseModel):
    """What went wrong, for people (``message``) and for code (``type``)."""

    type: str = Field(description="e.g. RunNotFound, InvalidInput, TooManyRuns")
    message: str
    problems: list[Problem] = Field(
        default_factory=list, description="a 422's problems, one per field (or the body)"
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
