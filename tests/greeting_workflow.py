"""A user's own workflow, in its own module as Temporal apps keep them (test_plugin)."""

from __future__ import annotations

from temporalio import workflow

__all__ = ["GreetingWorkflow"]


@workflow.defn
class GreetingWorkflow:
    """The application's own workflow, which ``OnwardPlugin`` must leave working."""

    @workflow.run
    async def run(self, name: str) -> str:
        """Greet ``name``."""
        return f"hello {name}"
