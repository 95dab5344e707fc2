"""Billed tokens and cost of one tool-heavy run per system, from the fake server's bills.

The task is ``read`` (:mod:`bench.workload`): every step reads a ~4 KB page, so
tool results are most of every prompt. The fake server prices cached prompt
prefixes the way OpenAI does (see :mod:`bench.fake_openai`), so a system that
keeps its prompt prefix stable between steps pays less for the same task.
Onward runs it twice: with tool-result clearing (``onward``) and without
(``onward-no-clearing``, its default). A run counts only if its answer is the
task's (the fake model's answer names how many pages it was sent and a digest
of the last one).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from bench.fake_openai import Bill
from bench.harness import Harness
from bench.systems import System, new_run
from bench.workload import Task

__all__ = ["UNCLEARED", "Cost", "cost"]

UNCLEARED = "onward-no-clearing"
"""The figure of Onward without tool-result clearing (its default)."""


@dataclass
class Cost:
    """What one run was billed."""

    ok: bool
    requests: int
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    cost_usd: float

    @property
    def uncached_cost_usd(self) -> float:
        """The same run's bill had its cached prompt tokens cost the full input price."""
        return Bill(
            self.requests,
            self.prompt_tokens,
            self.cached_tokens,
            self.completion_tokens,
            self.cost_usd,
        ).uncached_cost_usd

    @property
    def saved_usd(self) -> float:
        """What the provider's prompt cache took off the bill."""
        return self.uncached_cost_usd - self.cost_usd


async def cost(bench: Harness, steps: int, timeout_s: float) -> dict[str, Cost]:
    """One ``steps``-step run per system, all at once; each run's own bill.

    Billed per run, not per system: a model call still in flight from an
    earlier measurement (a killed worker's) must not land on this bill.
    """

    async def one(system: System, clear: bool) -> Cost:
        task = Task(new_run(), steps, kind="read", clear=clear)
        ok = (await bench.run(system, task, timeout_s)).ok
        bill = await bench.bill(task.run)
        return Cost(ok=ok, **bill)

    runs = {system.name: one(system, clear=True) for system in bench.systems}
    onward = next((s for s in bench.systems if s.name == "onward"), None)
    if onward is not None:
        runs[UNCLEARED] = one(onward, clear=False)
    figures = await asyncio.gather(*runs.values())
    return dict(zip(runs, figures, strict=True))
