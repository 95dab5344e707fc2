"""The floor: a workflow doing what an agent step costs in activities, and nothing else.

Each step is one regular activity (the model call, over HTTP to the same fake
server) and one local activity (the ``record`` tool). It keeps no
conversation, so its history grows linearly: the difference to an agent run
of the same length is the agent's own orchestration.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from bench.bare_activities import BareActivities, ModelCall, read, record
    from bench.workload import Task

__all__ = ["BareSteps"]

MODEL_CALL_TIMEOUT = timedelta(minutes=10)
HEARTBEAT_TIMEOUT = timedelta(seconds=4)
"""Onward's: a dead worker's call is retried as soon as it would be in Onward."""
TOOL_TIMEOUT = timedelta(seconds=5)


@workflow.defn(name="BareSteps")
class BareSteps:
    """One model activity and one local tool activity per step, until the model answers."""

    @workflow.run
    async def run(self, prompt: str) -> str:
        task = Task.parse(prompt)
        for step in range(task.steps + 1):
            turn = await workflow.execute_activity_method(
                BareActivities.model_call,
                ModelCall(prompt, step),
                start_to_close_timeout=MODEL_CALL_TIMEOUT,
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=RetryPolicy(maximum_attempts=5),
            )
            if turn.page is not None:
                await workflow.execute_local_activity(
                    read, turn.page, start_to_close_timeout=TOOL_TIMEOUT
                )
            elif turn.note is not None:
                await workflow.execute_local_activity(
                    record, turn.note, start_to_close_timeout=TOOL_TIMEOUT
                )
            else:
                return turn.text
        return "the model never answered"
