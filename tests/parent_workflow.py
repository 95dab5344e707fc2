"""A workflow that runs an agent as its child: a sub-agent (test_artifacts)."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from onward.contracts import AgentInput, AgentResult
    from onward.workflows import AgentWorkflow

__all__ = ["ParentWorkflow"]


@workflow.defn
class ParentWorkflow:
    """Runs ``child`` as a child workflow and returns its result."""

    @workflow.run
    async def run(self, child: AgentInput) -> AgentResult:
        """Start the sub-agent and wait for it."""
        return await workflow.execute_child_workflow(
            AgentWorkflow.run, child, id=f"{workflow.info().workflow_id}-sub"
        )
