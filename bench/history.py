"""Event history per step: how many events and bytes each step adds to a run's history.

One long run per system, all at once (nothing here is timed). A step starts
where its model-call activity is scheduled; its bytes are the serialized
size of every history event up to the next step's model call. A run that
continues as new is followed along its chain (each run's last event names
the next), so the figures are the whole chain's, step after step: a run's
first step also carries that run's start events.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from temporalio.client import Client, WorkflowHandle

from bench.harness import Harness
from bench.systems import System, new_run
from bench.workload import Task

__all__ = ["History", "history", "steps_of"]


@dataclass
class History:
    """One run's history, step by step, over its whole continue-as-new chain."""

    ended: str
    """``completed``, or why the run stopped early (a Temporal limit, say)."""
    model_calls: int
    step_bytes: list[int] = field(default_factory=list)
    step_events: list[int] = field(default_factory=list)
    runs: int = 1
    """Runs in the chain (1: the run never continued as new)."""
    steps_total: int = 0
    """Steps over the whole chain (``len(step_bytes)``)."""

    def cumulative_bytes(self, step: int) -> int | None:
        """History bytes after ``step`` steps (1-based); None if the run never got there."""
        return sum(self.step_bytes[:step]) if step <= len(self.step_bytes) else None

    def cumulative_events(self, step: int) -> int | None:
        return sum(self.step_events[:step]) if step <= len(self.step_events) else None


def _is_model_call(activity_type: str) -> bool:
    # call_model (Onward), bare_model_call, ..._model_request (pydantic-ai),
    # invoke_model_activity (OpenAI Agents): each system's model activity says "model".
    return "model" in activity_type.lower()


async def steps_of(
    client: Client, handle: WorkflowHandle[object, object]
) -> tuple[list[int], list[int], int]:
    """Bytes and events of each step of a run's history, following continue-as-new.

    Returns the bytes and events per step over the chain, and how many runs it has.
    """
    step_bytes: list[int] = [0]
    step_events: list[int] = [0]
    seen_model_call = False
    runs = 0
    run_id: str | None = handle.first_execution_run_id or handle.run_id
    if run_id is None:
        # A handle by workflow id alone reads the latest run, whose start names the first.
        async for event in handle.fetch_history_events():
            run_id = event.workflow_execution_started_event_attributes.first_execution_run_id
            break
    while True:
        runs += 1
        current = client.get_workflow_handle(handle.id, run_id=run_id)
        run_id = None
        async for event in current.fetch_history_events():
            if event.HasField("activity_task_scheduled_event_attributes") and _is_model_call(
                event.activity_task_scheduled_event_attributes.activity_type.name
            ):
                if seen_model_call:  # the first step also carries the run's start events
                    step_bytes.append(0)
                    step_events.append(0)
                seen_model_call = True
            step_bytes[-1] += event.ByteSize()
            step_events[-1] += 1
            if event.HasField("workflow_execution_continued_as_new_event_attributes"):
                attrs = event.workflow_execution_continued_as_new_event_attributes
                run_id = attrs.new_execution_run_id
        if not run_id:
            return step_bytes, step_events, runs


async def _one(bench: Harness, system: System, steps: int, timeout_s: float) -> History:
    task = Task(new_run(), steps)
    handle = await bench.start(system, task)
    outcome = await bench.finish(handle, task, timeout_s)
    step_bytes, step_events, runs = await steps_of(bench.client, handle)
    ended = (
        "completed" if outcome.ok else f"stopped after {len(step_bytes)} steps: {outcome.detail}"
    )
    megabytes = sum(step_bytes) / 1e6
    print(
        f"    {system.name}: {len(step_bytes)} steps in {runs} run(s), {megabytes:.1f} MB, "
        f"{sum(step_bytes) / len(step_bytes) / 1e3:.1f} KB/step; {ended}"
    )
    return History(ended, len(step_bytes), step_bytes, step_events, runs, len(step_bytes))


async def history(bench: Harness, steps: int, timeout_s: float) -> dict[str, History]:
    """A ``steps``-step run per system, all at once; each run's history measured step by step."""
    results = await asyncio.gather(*(_one(bench, s, steps, timeout_s) for s in bench.systems))
    return {system.name: result for system, result in zip(bench.systems, results, strict=True)}
