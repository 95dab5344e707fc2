"""A bare workflow doing what an agent step costs in activities, and nothing else.

Each step is one regular activity (the model call) and one local activity
(a fast tool such as calculator), so the difference to an Onward run of the
same length is Onward's own orchestration overhead.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

TIMEOUT = timedelta(seconds=30)


@activity.defn
async def noop(step: int) -> int:
    return step


@workflow.defn
class BareSteps:
    @workflow.run
    async def run(self, steps: int) -> int:
        total = 0
        for step in range(steps):
            total += await workflow.execute_activity(noop, step, start_to_close_timeout=TIMEOUT)
            total += await workflow.execute_local_activity(
                noop, step, start_to_close_timeout=TIMEOUT
            )
        return total
