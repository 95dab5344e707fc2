"""The bench report's throughput verdicts: the ratio of medians, and each round's own."""

from __future__ import annotations

from typing import Any

from bench.report import TIMES, _sequential, _throughput_table


def level(agents: int, steps_per_s: float, each_round: list[float]) -> dict[str, Any]:
    return {
        "agents": agents,
        "steps_per_s": steps_per_s,
        "cpu_ms_per_step": 9.0,
        "peak_rss_mb": 100.0,
        "failed": 0,
        "each_round": each_round,
    }


def test_each_rounds_ratio_is_reported_beside_the_ratio_of_medians() -> None:
    # Onward's median (84.8, round 2) and the floor's (93.7, round 3) come from
    # different rounds.
    runs = {
        "onward": [level(100, 84.8, [97.1, 84.8, 84.2]), level(1000, 78.5, [78.5])],
        "bare": [level(100, 93.7, [100.2, 88.1, 93.7]), level(1000, 76.8, [76.8])],
    }
    lines = _throughput_table(runs, "### t")
    assert (
        "- Onward at 100 agents vs floor: 0.91x, NOT met (target ≥ 0.95); "
        "round by round 0.97x, 0.96x, 0.90x (median 0.96x)"
    ).replace("x", TIMES) in lines
    # One round: nothing to pair beyond the ratio itself.
    assert f"- Onward at 1000 agents vs floor: 1.02{TIMES}, met (target ≥ 0.95)" in lines


def test_results_without_rounds_keep_the_plain_verdict() -> None:
    """latest.json files written before rounds were kept render as they did."""
    runs = {"onward": [level(10, 90.0, [])], "bare": [level(10, 100.0, [])]}
    assert _throughput_table(runs, "### t")[-1] == (
        f"- Onward at 10 agents vs floor: 0.90{TIMES}, NOT met (target ≥ 0.95)"
    )


def test_sequential_verdict_gives_each_rounds_ratio() -> None:
    seq = {
        "onward": {"step_ms": 13.1, "cpu_ms_per_step": 7.0, "failed": 0,
                   "each_round": [12.7, 12.4, 13.1, 13.1, 15.4]},
        "bare": {"step_ms": 12.3, "cpu_ms_per_step": 7.0, "failed": 0,
                 "each_round": [13.2, 12.3, 12.9, 12.2, 12.2]},
    }  # fmt: skip
    lines = _sequential({"sequential": seq})
    assert (
        "- Onward vs floor: NOT met (target ≤ 1.05); "
        "round by round 0.96x, 1.01x, 1.02x, 1.07x, 1.26x (median 1.02x)"
    ).replace("x", TIMES) in lines
