"""InputCheckWorkflow: ask a worker what it would refuse in an agent's input.

A schedule starts its runs later, perhaps every day: a tool or a model provider
its workers lack would fail each one. ``OnwardClient.schedule_create`` runs this
first, on the schedule's task queue: the worker's ``describe_worker`` answers as
it does for a run, and the same rules (:mod:`onward.input_check`) say what a run
would fail on. Nothing else happens: no model call, no store, no search attribute.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from onward import input_check
    from onward.activities.tool_calls import ToolActivities
    from onward.contracts import (
        INPUT_CHECK_WORKFLOW,
        AgentInput,
        InputCheck,
        WorkerDescriptionRequest,
    )
    from onward.tuning import WORKFLOW_SANDBOX
    from onward.workflows.agent import DESCRIBE_WORKER_RETRY, DESCRIBE_WORKER_TIMEOUT

__all__ = ["InputCheckWorkflow"]


@workflow.defn(
    name=INPUT_CHECK_WORKFLOW,
    failure_exception_types=[ValidationError],
    sandboxed=WORKFLOW_SANDBOX,
)
class InputCheckWorkflow:
    """One ``describe_worker`` call, and the problems a run of the input would fail on."""

    @workflow.run
    async def run(self, agent: AgentInput) -> InputCheck:
        """The problems; none: a run of ``agent`` would start on this worker."""
        description = await workflow.execute_local_activity_method(
            ToolActivities.describe_worker,
            WorkerDescriptionRequest(
                tools=input_check.worker_tools_asked(agent.tools, offer_delegate=True),
                model=agent.model,
            ),
            start_to_close_timeout=DESCRIBE_WORKER_TIMEOUT,
            retry_policy=DESCRIBE_WORKER_RETRY,
            summary="describe worker tools",
        )
        return InputCheck(problems=input_check.problems(agent, description))
