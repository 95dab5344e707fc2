"""Budget arithmetic: plain functions over plain data, called from the workflow.

Nothing here reads a clock: the workflow passes the elapsed time in, so the
same functions serve the deterministic workflow and the unit tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from onward.contracts import Budget, BudgetExtension, BudgetLimit, RunUsage

__all__ = [
    "CallKind",
    "Exceeded",
    "apply_extension",
    "check_extension",
    "exceeded",
    "out_of_time",
    "remaining_s",
    "require_a_limit",
]

CallKind = Literal["model", "tool"]
"""What is about to start; step and tool-call limits only apply to their own kind."""

_LIMITS: tuple[BudgetLimit, ...] = (
    "max_tokens",
    "max_tool_calls",
    "max_duration_s",
    "max_cost_usd",
    "max_steps",
)


@dataclass(frozen=True)
class Exceeded:
    """A limit that stops the next call: which one (typed), and why (for people)."""

    limit: BudgetLimit
    detail: str
    """What was used of it: ``used 300 of 200 tokens``."""

    @property
    def message(self) -> str:
        """``max_tokens: used 300 of 200 tokens``: the run's reason, as people read it."""
        return f"{self.limit}: {self.detail}"


def exceeded(
    budget: Budget, usage: RunUsage, elapsed_s: float, before: CallKind
) -> Exceeded | None:
    """Return the limit that stops the next call of kind ``before``, or None if it may start.

    A limit is reached when nothing of it is left: ``max_tokens=1000`` stops a
    run that has used 1000 tokens, because the next model call would go over.
    """
    late = out_of_time(budget, elapsed_s)
    if late is not None:
        return late
    if budget.max_tokens is not None and usage.total_tokens >= budget.max_tokens:
        return Exceeded("max_tokens", f"used {usage.total_tokens} of {budget.max_tokens} tokens")
    if budget.max_cost_usd is not None:
        if not usage.cost_known:
            # A cost budget cannot be kept blind: stop rather than spend without a figure.
            priced = (
                f"; the priced calls cost ${usage.cost_usd:.6f} of ${budget.max_cost_usd:g}"
                if usage.cost_usd
                else ""
            )
            if usage.tokens_estimated:
                return Exceeded(
                    "max_cost_usd",
                    f"cost unknown (an answer reported no token usage{priced}); a cost "
                    "budget needs a provider that reports it (streamed Chat Completions: "
                    "stream_options.include_usage)",
                )
            return Exceeded(
                "max_cost_usd",
                f"cost unknown (a model with no price was called{priced}); set a price "
                "with `pricing` or ONWARD_PRICING",
            )
        if usage.cost_usd >= budget.max_cost_usd:
            return Exceeded(
                "max_cost_usd", f"spent ${usage.cost_usd:.6f} of ${budget.max_cost_usd:g}"
            )
    if before == "model" and budget.max_steps is not None and usage.steps >= budget.max_steps:
        return Exceeded("max_steps", f"{usage.steps} of {budget.max_steps} steps done")
    if (
        before == "tool"
        and budget.max_tool_calls is not None
        and usage.tool_calls >= budget.max_tool_calls
    ):
        return Exceeded(
            "max_tool_calls", f"made {usage.tool_calls} of {budget.max_tool_calls} tool calls"
        )
    return None


def out_of_time(budget: Budget, elapsed_s: float) -> Exceeded | None:
    """Return the wall-time limit when the run is out of time, or None while time is left."""
    if budget.max_duration_s is not None and elapsed_s >= budget.max_duration_s:
        return Exceeded(
            "max_duration_s", f"ran {elapsed_s:.1f} s of the {budget.max_duration_s:g} s allowed"
        )
    return None


def remaining_s(budget: Budget, elapsed_s: float) -> float | None:
    """Seconds left before the wall-time limit, or None when there is none."""
    if budget.max_duration_s is None:
        return None
    return max(budget.max_duration_s - elapsed_s, 0.0)


def require_a_limit(extension: BudgetExtension) -> None:
    """Raise ValueError unless ``extension`` names at least one limit."""
    if not extension.model_dump(exclude_none=True):
        raise ValueError(f"extend_budget: name at least one of {', '.join(_LIMITS)}")


def check_extension(budget: Budget, extension: BudgetExtension) -> None:
    """Raise ValueError unless ``extension`` names at least one limit and lowers none."""
    require_a_limit(extension)
    given = extension.model_dump(exclude_none=True)
    for name, new in given.items():
        current = getattr(budget, name)
        if current is None:
            raise ValueError(f"extend_budget: {name} is unlimited; there is no limit to raise")
        if new < current:
            raise ValueError(
                f"extend_budget: {name} can only be raised (it is {current:g}, got {new:g})"
            )


def apply_extension(budget: Budget, extension: BudgetExtension) -> Budget:
    """Return ``budget`` with the limits named in ``extension`` replaced."""
    return budget.model_copy(update=extension.model_dump(exclude_none=True))
