"""Per-step time of one agent at a time, and throughput with many agents at once.

Rounds are interleaved (A, B, C, A, B, C), so every system sees the same
machine load; figures are medians over rounds, compared as ratios.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from bench.harness import Harness
from bench.processes import RssSampler, cpu_s
from bench.systems import RunOutcome, System, new_run
from bench.workload import Task

__all__ = ["Sequential", "Throughput", "sequential", "throughput"]

START_CONCURRENCY = 100
"""Workflow starts in flight at once (a client's, not a worker's, limit)."""


@dataclass
class Sequential:
    """One agent at a time: median per-step wall time and worker CPU per step."""

    step_ms: float
    cpu_ms_per_step: float
    rounds: int
    failed: int
    each_round: list[float] = field(default_factory=list)
    """Per-step milliseconds of each measured round, in the rounds' order (see
    :attr:`Throughput.each_round`)."""


@dataclass
class Throughput:
    """``agents`` runs in flight at once on one worker (a round, or the median of rounds)."""

    agents: int
    steps_per_s: float
    wall_s: float
    cpu_ms_per_step: float
    peak_rss_mb: float
    failed: int
    failure: str = ""
    rounds: int = 1
    server_cpu_ms_per_step: float | None = None
    """The dev server's CPU per step meanwhile: it serves every system alike, so this is
    what the system asks of Temporal (work left over from the batch before included)."""
    client_cpu_ms_per_step: float | None = None
    """The bench process's CPU per step meanwhile: starting the runs and reading their
    results through the system's client (the bench's own bookkeeping included)."""
    model_cpu_ms_per_step: float | None = None
    """The fake model server's CPU per step meanwhile: it answers every system alike, so
    this is what the system's requests cost to read (a whole conversation, or a step)."""
    each_round: list[float] = field(default_factory=list)
    """Steps per second of each round, in the rounds' order (the report pairs them: a
    round's systems run back to back, under the same load)."""


def in_turn(systems: Sequence[System], round_: int) -> list[System]:
    """The systems in round ``round_``'s order: as listed, then reversed (A B C D, D C B A).

    A batch leaves the dev server work to finish (and garbage to collect) that the
    next system's batch pays for; in a fixed order each system always follows the
    same one (Onward the heaviest peer, the floor Onward). Alternating balances it.
    """
    return list(systems) if round_ % 2 == 0 else list(reversed(systems))


async def sequential(bench: Harness, steps: int, rounds: int) -> dict[str, Sequential]:
    """Per-step time of a ``steps``-step run, median over ``rounds`` after one warm-up round."""
    step_s: dict[str, list[float]] = {s.name: [] for s in bench.systems}
    cpu_s: dict[str, list[float]] = {s.name: [] for s in bench.systems}
    failed = dict.fromkeys(step_s, 0)
    for round_ in range(rounds + 1):
        said = []
        for system in in_turn(bench.systems, round_):
            worker = bench.workers[system.name]
            task = Task(new_run(), steps)
            cpu_before, started = worker.cpu_s(), time.perf_counter()
            outcome = await bench.run(system, task)
            wall = time.perf_counter() - started
            calls = task.steps + 1
            if not outcome.ok:
                failed[system.name] += 1
                print(f"    {system.name}: run failed: {outcome.detail}")
            elif round_:  # round 0 warms up every worker (imports, caches)
                step_s[system.name].append(wall / calls)
                cpu_s[system.name].append((worker.cpu_s() - cpu_before) / calls)
            said.append(f"{system.name} {wall / calls * 1000:.1f}")
        label = "warm-up" if not round_ else f"round {round_}/{rounds}"
        print(f"    {label}: {', '.join(said)} ms/step")
    return {
        name: Sequential(
            step_ms=statistics.median(values) * 1000 if values else float("nan"),
            cpu_ms_per_step=statistics.median(cpu_s[name]) * 1000 if values else float("nan"),
            rounds=len(values),
            failed=failed[name],
            each_round=[value * 1000 for value in values],
        )
        for name, values in step_s.items()
    }


async def _many(
    bench: Harness, system_name: str, agents: int, steps: int, runs: int, timeout_s: float
) -> Throughput:
    """``runs`` runs, ``agents`` of them in flight at any time (a new one starts as one ends)."""
    system = next(s for s in bench.systems if s.name == system_name)
    worker = bench.workers[system.name]
    tasks = [Task(new_run(), steps) for _ in range(runs)]
    in_flight = asyncio.Semaphore(agents)
    gate = asyncio.Semaphore(START_CONCURRENCY)

    async def one(task: Task) -> RunOutcome:
        async with in_flight:
            async with gate:
                handle = await bench.start(system, task)
            return await bench.finish(handle, task, timeout_s)

    server, model = bench.server_pid, bench.model_pid
    cpu_before, client_before = worker.cpu_s(), time.process_time()
    server_before = cpu_s(server) if server is not None else 0.0
    model_before = cpu_s(model) if model is not None else 0.0
    async with RssSampler(worker) as rss:
        started = time.perf_counter()
        outcomes = await asyncio.gather(*(one(task) for task in tasks))
        wall = time.perf_counter() - started
    client_s = time.process_time() - client_before
    done = sum(o.model_calls for o in outcomes if o.ok)
    bad = [o for o in outcomes if not o.ok]
    server_ms = model_ms = None
    if server is not None:
        server_ms = (cpu_s(server) - server_before) / max(done, 1) * 1000
    if model is not None:
        model_ms = (cpu_s(model) - model_before) / max(done, 1) * 1000
    return Throughput(
        agents=agents,
        steps_per_s=done / wall,
        wall_s=wall,
        cpu_ms_per_step=(worker.cpu_s() - cpu_before) / max(done, 1) * 1000,
        peak_rss_mb=rss.peak_mb,
        failed=len(bad),
        failure=bad[0].detail if bad else "",
        server_cpu_ms_per_step=server_ms,
        client_cpu_ms_per_step=client_s / max(done, 1) * 1000,
        model_cpu_ms_per_step=model_ms,
    )


def _median(rounds: list[Throughput]) -> Throughput:
    """The rounds' median figures (peak RSS: the highest of any round; failures: all)."""
    return Throughput(
        agents=rounds[0].agents,
        steps_per_s=statistics.median(r.steps_per_s for r in rounds),
        wall_s=statistics.median(r.wall_s for r in rounds),
        cpu_ms_per_step=statistics.median(r.cpu_ms_per_step for r in rounds),
        peak_rss_mb=max(r.peak_rss_mb for r in rounds),
        failed=sum(r.failed for r in rounds),
        failure=next((r.failure for r in rounds if r.failure), ""),
        rounds=len(rounds),
        server_cpu_ms_per_step=_median_of(r.server_cpu_ms_per_step for r in rounds),
        client_cpu_ms_per_step=_median_of(r.client_cpu_ms_per_step for r in rounds),
        model_cpu_ms_per_step=_median_of(r.model_cpu_ms_per_step for r in rounds),
        each_round=[r.steps_per_s for r in rounds],
    )


def _ms_text(label: str, value: float | None) -> str:
    return "" if value is None else f"{label} {value:4.2f} ms/step"


def _median_of(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


async def throughput(
    bench: Harness, levels: list[int], steps: int, rounds: int, min_steps: int, timeout_s: float
) -> dict[str, list[Throughput]]:
    """Sustained steps per second with each number of agents in flight, systems interleaved.

    Each round runs at least ``min_steps`` steps (and at least one run per
    agent), keeping ``agents`` runs in flight: a level's figure is the load it
    sustains, not mostly the first and last seconds of one batch. A level gets
    up to ``rounds`` rounds, as many as it takes to run ``rounds * min_steps``
    steps (1,000 agents run that in one round), interleaved, and the median is kept.
    """
    figures: dict[str, list[Throughput]] = {s.name: [] for s in bench.systems}
    for agents in levels:
        runs = max(agents, -(-min_steps // (steps + 1)))
        level_rounds = max(1, min(rounds, -(-rounds * min_steps // (runs * (steps + 1)))))
        measured: dict[str, list[Throughput]] = {s.name: [] for s in bench.systems}
        for round_ in range(level_rounds):
            said = []
            for system in in_turn(bench.systems, round_):
                result = await _many(bench, system.name, agents, steps, runs, timeout_s)
                measured[system.name].append(result)
                said.append(f"{system.name} {result.steps_per_s:.1f}")
            count = f"round {round_ + 1}/{level_rounds}"
            print(f"    {agents:5d} agents, {count}: {', '.join(said)} steps/s")
        for name, results in measured.items():
            result = _median(results)
            figures[name].append(result)
            note = f", {result.failed} failed ({result.failure})" if result.failed else ""
            server = result.server_cpu_ms_per_step
            print(
                f"    {agents:5d} agents  {name:14s} {result.steps_per_s:7.1f} steps/s  "
                f"cpu {result.cpu_ms_per_step:5.1f} ms/step  peak RSS {result.peak_rss_mb:6.0f} MB"
                + ("" if server is None else f"  dev server cpu {server:5.1f} ms/step")
                + f"  client cpu {result.client_cpu_ms_per_step:4.2f} ms/step"
                + _ms_text("  model cpu", result.model_cpu_ms_per_step)
                + note
            )
    return figures
