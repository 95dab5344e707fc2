"""Billed tokens and cost of one tool-heavy run per system, from the fake server's bills.

The fake server prices cached prompt prefixes the way OpenAI does (see
:mod:`bench.fake_openai`), so a system that keeps its prompt prefix stable
between steps pays less for the same task.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from bench.harness import Harness
from bench.systems import System, new_run
from bench.workload import Task, model_name

__all__ = ["Cost", "cost"]


@dataclass
class Cost:
    """What one run was billed."""

    ok: bool
    requests: int
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    cost_usd: float


async def cost(bench: Harness, steps: int, timeout_s: float) -> dict[str, Cost]:
    """One ``steps``-step run per system, all at once; each system's bill for it."""
    before = await bench.ledger()

    async def one(system: System) -> bool:
        return (await bench.run(system, Task(new_run(), steps), timeout_s)).ok

    oks = await asyncio.gather(*(one(s) for s in bench.systems))
    after = await bench.ledger()
    figures: dict[str, Cost] = {}
    for system, ok in zip(bench.systems, oks, strict=True):
        name = model_name(system.name)
        was = before.get(name, {})
        now = after.get(name, {})

        def delta(key: str, was: dict[str, float] = was, now: dict[str, float] = now) -> float:
            return now.get(key, 0) - was.get(key, 0)

        figures[system.name] = Cost(
            ok=ok,
            requests=int(delta("requests")),
            prompt_tokens=int(delta("prompt_tokens")),
            cached_tokens=int(delta("cached_tokens")),
            completion_tokens=int(delta("completion_tokens")),
            cost_usd=delta("cost_usd"),
        )
    return figures
