"""Resume after ``kill -9``: from a new worker process starting to the next activity done.

Each repeat starts a run whose second model call answers late, kills the
worker with SIGKILL while that call is in flight, starts a new worker process
and measures, on the machine's monotonic clock, from the new process's start
until the retried model call has been answered by the fake server. The new
worker then serves the rest of the bench.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.harness import Harness
from bench.systems import System, new_run
from bench.workload import Task

__all__ = ["Resume", "resume"]

DELAYED_STEP = 1
DELAY_MS = 60_000
"""Long enough that only a retry on the new worker can answer within the measurement."""
WAIT_S = 90.0


@dataclass
class Resume:
    """Resume times of one system, in seconds."""

    resume_s: list[float] = field(default_factory=list)
    worker_ready_s: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    between_s: list[float] = field(default_factory=list)
    """Killed between steps (right after a model call answered): new worker start to
    the next model call's start."""

    @property
    def median_s(self) -> float:
        return statistics.median(self.resume_s) if self.resume_s else float("nan")

    @property
    def between_median_s(self) -> float:
        return statistics.median(self.between_s) if self.between_s else float("nan")


Call = dict[str, Any]
"""One model call as the fake server reports it: ``step``, ``start``, ``end``."""


async def _calls_until(bench: Harness, run: str, found: Callable[[Call], bool], what: str) -> Call:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        for call in await bench.calls(run):
            if found(call):
                return call
        await asyncio.sleep(0.02)
    raise TimeoutError(f"no {what} within {WAIT_S:.0f} s")


async def _once(bench: Harness, system: System, figures: Resume) -> None:
    task = Task(new_run(), steps=3, delay_at=DELAYED_STEP, delay_ms=DELAY_MS)
    handle = await bench.start(system, task)
    await _calls_until(bench, task.run, lambda c: c["step"] == DELAYED_STEP, "delayed model call")
    bench.workers[system.name].kill9()
    killed_at = time.monotonic()
    worker = bench.restart_worker(system)
    figures.worker_ready_s.append(await worker.wait_ready(timeout_s=120))
    retried = await _calls_until(
        bench,
        task.run,
        lambda c: c["step"] == DELAYED_STEP and c["start"] > killed_at and c["end"] is not None,
        "retried model call",
    )
    figures.resume_s.append(retried["end"] - worker.started_at)
    outcome = await bench.finish(handle, task, timeout_s=WAIT_S)
    if not outcome.ok:
        figures.failures.append(outcome.detail)


async def _between(bench: Harness, system: System, figures: Resume) -> None:
    """Kill as soon as step 1's model call has answered: the worker dies between steps."""
    task = Task(new_run(), steps=3)
    handle = await bench.start(system, task)
    await _calls_until(
        bench, task.run, lambda c: c["step"] == 1 and c["end"] is not None, "step 1 answered"
    )
    bench.workers[system.name].kill9()
    killed_at = time.monotonic()
    worker = bench.restart_worker(system)
    await worker.wait_ready(timeout_s=120)
    # The next call the new worker makes (step 2, or step 1 again if its answer was lost).
    following = await _calls_until(
        bench, task.run, lambda c: c["start"] > killed_at, "model call after the kill"
    )
    figures.between_s.append(following["start"] - worker.started_at)
    outcome = await bench.finish(handle, task, timeout_s=WAIT_S)
    if not outcome.ok:
        figures.failures.append(outcome.detail)


async def resume(bench: Harness, repeats: int) -> dict[str, Resume]:
    """``repeats`` kill-and-resume rounds per system, interleaved."""
    figures = {s.name: Resume() for s in bench.systems}
    for repeat in range(repeats):
        for system in bench.systems:
            done = len(figures[system.name].resume_s)
            try:
                await _once(bench, system, figures[system.name])
            except TimeoutError as err:
                figures[system.name].failures.append(str(err))
                worker = bench.workers[system.name]
                if worker.popen is None or worker.popen.poll() is not None:
                    bench.restart_worker(system)
                    await bench.workers[system.name].wait_ready(timeout_s=120)
            times = figures[system.name].resume_s
            said = f"resumed in {times[-1]:.2f} s" if len(times) > done else "failed"
            try:
                await _between(bench, system, figures[system.name])
                said += f"; between steps {figures[system.name].between_s[-1]:.2f} s"
            except TimeoutError as err:
                figures[system.name].failures.append(str(err))
                worker = bench.workers[system.name]
                if worker.popen is None or worker.popen.poll() is not None:
                    bench.restart_worker(system)
                    await bench.workers[system.name].wait_ready(timeout_s=120)
            print(f"    repeat {repeat + 1}/{repeats} {system.name:14s} {said}")
    return figures
