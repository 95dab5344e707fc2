"""Budget arithmetic: plain functions over plain data, called from the workflow.

Nothing here reads a clock: the workflow passes the elapsed time in, so the
same functions serve the deterministic workflow and the unit tests.
"""

from __future__ import annotations

from typing import Literal

from onward.contracts import Budget, BudgetExtension, RunUsage

__all__ = [
    "CallKind",
    "apply_extension",
    "check_extension",
    "exceeded",
    "out_of_time",
    "remaining_s",
]

CallKind = Literal["model", "tool"]
"""What is about to start; step and tool-call limits only apply to their own kind."""

_LIMITS = ("max_tokens", "max_tool_calls", "max_duration_s", "max_cost_usd", "max_steps")


def exceeded(budget: Budget, usage: RunUsage, elapsed_s: float, before: CallKind) -> str | None:
    """Return why the next call of kind ``before`` may not start, or None if it may.

    A limit is reached when nothing of it is left: ``max_tokens=1000`` stops a
    run that has used 1000 tokens, because the next model call would go over.
    """
    late = out_of_time(budget, elapsed_s)
    if late is not None:
        return late
    if budget.max_tokens is not None and usage.total_tokens >= budget.max_tokens:
        return f"max_tokens: used {usage.total_tokens} of {budget.max_tokens} tokens"
    if budget.max_cost_usd is not None:
        if not usage.cost_known:
            # A cost budget cannot be kept blind: stop rather than spend without a figure.
            return (
                f"max_cost_usd: cost unknown (the model has no price; spent at least "
                f"${usage.cost_usd:.6f} of ${budget.max_cost_usd:g}); set a price with "
                "`pricing` or ONWARD_PRICING"
            )
        if usage.cost_usd >= budget.max_cost_usd:
            return f"max_cost_usd: spent ${usage.cost_usd:.6f} of ${budget.max_cost_usd:g}"
    if before == "model" and budget.max_steps is not None and usage.steps >= budget.max_steps:
        return f"max_steps: {usage.steps} of {budget.max_steps} steps done"
    if (
        before == "tool"
        and budget.max_tool_calls is not None
        and usage.tool_calls >= budget.max_tool_calls
    ):
        return f"max_tool_calls: made {usage.tool_calls} of {budget.max_tool_calls} tool calls"
    return None


def limit_name(reason: str | None) -> str | None:
    """The limit a reason from :func:`exceeded` names (``max_tokens``), or None."""
    return reason.split(":", 1)[0] if reason else None


def out_of_time(budget: Budget, elapsed_s: float) -> str | None:
    """Return why the run is out of wall time, or None while time is left."""
    if budget.max_duration_s is not None and elapsed_s >= budget.max_duration_s:
        return f"max_duration_s: ran {elapsed_s:.1f} s of the {budget.max_duration_s:g} s allowed"
    return None


def remaining_s(budget: Budget, elapsed_s: float) -> float | None:
    """Seconds left before the wall-time limit, or None when there is none."""
    if budget.max_duration_s is None:
        return None
    return max(budget.max_duration_s - elapsed_s, 0.0)


def check_extension(budget: Budget, extension: BudgetExtension) -> None:
    """Raise ValueError unless ``extension`` names at least one limit and lowers none."""
    given = extension.model_dump(exclude_none=True)
    if not given:
        raise ValueError(f"extend_budget: name at least one of {', '.join(_LIMITS)}")
    for name, new in given.items():
        current = getattr(budget, name)
        if current is None:
            raise ValueError(f"extend_budget: {name} is unlimited; it can only be raised")
        if new < current:
            raise ValueError(
                f"extend_budget: {name} can only be raised (it is {current:g}, got {new:g})"
            )


def apply_extension(budget: Budget, extension: BudgetExtension) -> Budget:
    """Return ``budget`` with the limits named in ``extension`` replaced."""
    return budget.model_copy(update=extension.model_dump(exclude_none=True))
