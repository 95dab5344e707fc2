"""Budget arithmetic (onward.budget) as plain functions: no server needed."""

from __future__ import annotations

import pytest

from onward import budget as budgets
from onward.contracts import Budget, BudgetExtension, RunUsage
from onward.sessions import add_usage


def test_nothing_is_exceeded_without_limits() -> None:
    usage = RunUsage(total_tokens=10**9, tool_calls=10**6, steps=10**6, cost_usd=1e6)
    assert budgets.exceeded(Budget(), usage, 1e9, "model") is None
    assert budgets.remaining_s(Budget(), 5.0) is None


def test_a_limit_is_reached_when_nothing_of_it_is_left() -> None:
    limit = Budget(max_tokens=1000)
    assert budgets.exceeded(limit, RunUsage(total_tokens=999), 0, "model") is None
    found = budgets.exceeded(limit, RunUsage(total_tokens=1000), 0, "model")
    assert found is not None
    assert (found.limit, found.message) == ("max_tokens", "max_tokens: used 1000 of 1000 tokens")


def test_steps_and_tool_calls_only_stop_their_own_kind() -> None:
    steps = Budget(max_steps=2)
    done = RunUsage(steps=2)
    assert budgets.exceeded(steps, done, 0, "tool") is None
    assert getattr(budgets.exceeded(steps, done, 0, "model"), "limit", None) == "max_steps"
    calls = Budget(max_tool_calls=1)
    used = RunUsage(tool_calls=1)
    assert budgets.exceeded(calls, used, 0, "model") is None
    assert getattr(budgets.exceeded(calls, used, 0, "tool"), "limit", None) == "max_tool_calls"


def test_time_comes_first_and_counts_down() -> None:
    both = Budget(max_duration_s=10, max_tokens=1)
    late = budgets.exceeded(both, RunUsage(total_tokens=5), 10.0, "model")
    assert late is not None and late.limit == "max_duration_s"
    assert late.message == "max_duration_s: ran 10.0 s of the 10 s allowed"
    assert budgets.remaining_s(both, 4.0) == 6.0
    assert budgets.remaining_s(both, 12.0) == 0.0
    assert budgets.out_of_time(both, 9.9) is None


def test_an_unknown_cost_stops_a_cost_budget() -> None:
    usage = RunUsage(cost_usd=0.001, cost_known=False)
    found = budgets.exceeded(Budget(max_cost_usd=1.0), usage, 0, "model")
    assert found is not None and found.limit == "max_cost_usd"
    assert found.message == (
        "max_cost_usd: cost unknown (a model with no price was called; the priced calls cost "
        "$0.001000 of $1); set a price with `pricing` or ONWARD_PRICING"
    )
    unpriced = budgets.exceeded(Budget(max_cost_usd=1.0), RunUsage(cost_known=False), 0, "model")
    assert unpriced is not None and unpriced.message == (
        "max_cost_usd: cost unknown (a model with no price was called); set a price with "
        "`pricing` or ONWARD_PRICING"
    )  # not "spent at least $0.000000"
    spent = budgets.exceeded(Budget(max_cost_usd=0.5), RunUsage(cost_usd=0.5), 0, "tool")
    assert spent is not None and spent.message == "max_cost_usd: spent $0.500000 of $0.5"


def test_extensions_raise_limits_and_nothing_else() -> None:
    budget = Budget(max_steps=5, max_tokens=100, on_exceeded="pause")
    raised = budgets.apply_extension(budget, BudgetExtension(max_steps=8))
    assert (raised.max_steps, raised.max_tokens, raised.on_exceeded) == (8, 100, "pause")
    budgets.check_extension(budget, BudgetExtension(max_steps=5))  # unchanged is fine
    with pytest.raises(ValueError, match="max_steps can only be raised"):
        budgets.check_extension(budget, BudgetExtension(max_steps=2))
    with pytest.raises(ValueError, match="name at least one"):
        budgets.check_extension(budget, BudgetExtension())


def test_extending_an_unlimited_limit_says_it_is_unlimited() -> None:
    with pytest.raises(ValueError) as caught:
        budgets.check_extension(Budget(), BudgetExtension(max_tokens=10))
    message = str(caught.value)
    assert "max_tokens is unlimited" in message and "no limit to raise" in message
    assert "can only be raised" not in message


def test_a_sessions_usage_adds_every_figure_of_its_message_runs() -> None:
    # The prompt-cache figures were dropped: a session's usage showed no cached tokens.
    one = RunUsage(
        input_tokens=100,
        output_tokens=10,
        total_tokens=110,
        model_calls=1,
        cost_usd=0.001,
        cached_input_tokens=60,
        cache_write_tokens=20,
        cache_saved_usd=0.0002,
    )
    two = RunUsage(
        input_tokens=50, output_tokens=5, total_tokens=55, model_calls=1, tokens_estimated=True
    )
    total = add_usage(add_usage(RunUsage(), one), two)
    assert (total.input_tokens, total.output_tokens, total.total_tokens) == (150, 15, 165)
    assert (total.cached_input_tokens, total.cache_write_tokens) == (60, 20)
    assert total.cache_saved_usd == 0.0002 and total.tokens_estimated
