"""A run's control requests, one table for the HTTP endpoints and the WebSocket.

``POST /v1/runs/{id}/<kind>`` and a WebSocket message ``{"type": "<kind>", ...body}``
both end in :func:`apply_control`, so they take the same bodies and answer
the same models.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal, get_args

from pydantic import BaseModel, ValidationError

from onward.client import OnwardClient
from onward.contracts import ApprovalDecision, BudgetExtension, CancelRequest, SteerRequest
from onward.errors import InvalidInput
from onward.starter.api.models import CancelBody, ControlAnswer, StateAnswer, SteerBody

__all__ = [
    "CONTROL_BODIES",
    "ControlKind",
    "SpendLeft",
    "apply_control",
    "control_body",
    "refuse_extra",
]

ControlKind = Literal["pause", "resume", "cancel", "steer", "extend-budget", "approve", "reject"]

CONTROL_BODIES: dict[str, type[BaseModel] | None] = {
    "pause": None,
    "resume": None,
    "cancel": CancelBody,
    "steer": SteerBody,
    "extend-budget": BudgetExtension,
    "approve": ApprovalDecision,
    "reject": ApprovalDecision,
}
"""The body each control takes (None: none)."""
assert set(CONTROL_BODIES) == set(get_args(ControlKind))


def control_body(kind: str, fields: dict[str, object]) -> BaseModel | None:
    """The typed body of control ``kind`` from a message's other fields.

    Raises:
        InvalidInput: an unknown kind, or fields the control does not take.
    """
    if kind not in CONTROL_BODIES:
        known = ", ".join(CONTROL_BODIES)
        raise InvalidInput.at(("type",), f"unknown control {kind!r} (one of {known})")
    model = CONTROL_BODIES[kind]
    if model is None:
        refuse_extra(kind, fields)
        return None
    try:
        return model.model_validate(fields)
    except ValidationError as err:
        raise InvalidInput.from_validation(err, f"invalid {kind}") from None


def refuse_extra(kind: str, fields: dict[str, object]) -> None:
    """Refuse any field for ``kind``, which takes none: one problem per field, as pydantic's.

    Raises:
        InvalidInput: ``fields`` is not empty.
    """
    if fields:
        names = sorted(fields)
        raise InvalidInput(
            f"{kind}: takes no fields, got {', '.join(names)}",
            [
                {"loc": (name,), "msg": "takes no fields", "type": "extra_forbidden"}
                for name in names
            ],
        )


SpendLeft = Callable[[str], Awaitable[float | None]]
"""What the run's tenant may still spend today beyond what its other open runs may, the
named run aside (None: no ceiling); raises once it is spent."""


async def apply_control(
    client: OnwardClient,
    run_id: str,
    kind: str,
    body: BaseModel | None,
    spend_left: SpendLeft | None = None,
) -> BaseModel:
    """Send control ``kind`` to the run; its answer (what the HTTP endpoint answers).

    ``spend_left``: under a daily spending ceiling, a budget extension may raise the
    run's ``max_cost_usd`` to what it has spent and what its tenant has left, no more.
    """
    if kind == "pause":
        await client.pause(run_id)
        return ControlAnswer(id=run_id)
    if kind == "resume":
        before = await client.resume_status(run_id)
        if before is None:
            return StateAnswer(id=run_id)
        return StateAnswer(id=run_id, state_before=before.state, pausing_before=before.pausing)
    if kind == "cancel":
        reason = body.reason if isinstance(body, CancelRequest) else None
        await client.cancel(run_id, reason)
        return ControlAnswer(id=run_id)
    if kind == "steer":
        assert isinstance(body, SteerRequest)
        await client.steer(run_id, body.message)
        return ControlAnswer(id=run_id)
    if kind == "extend-budget":
        assert isinstance(body, BudgetExtension)
        if body.max_cost_usd is not None and spend_left is not None:
            left = await spend_left(run_id)
            if left is not None:
                spent = (await client.status(run_id)).usage.cost_usd
                if body.max_cost_usd > spent + left:
                    raise InvalidInput.at(
                        ("max_cost_usd",),
                        f"at most {spent + left:.8g} (${spent:.8g} spent, "
                        f"${left:.8g} left of the tenant's daily ceiling)",
                        "less_than_equal",
                    )
        return await client.extend_budget(run_id, body)
    decision = body if isinstance(body, ApprovalDecision) else ApprovalDecision()
    if kind == "approve":
        return await client.approve(run_id, decision.call_id, decision.note)
    if kind == "reject":
        return await client.reject(run_id, decision.call_id, decision.note)
    raise InvalidInput.at(("type",), f"unknown control {kind!r}")
