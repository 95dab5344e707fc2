"""A workflow author's own workflow fanning out to two sub-agents (test_subagents)."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from onward.contracts import AgentResult, Budget, RunUsage, ScriptTurn
    from onward.delegation import delegate, roll_up

__all__ = ["FanOut", "FanOutResult"]


class FanOutResult(BaseModel):
    """Both sub-agents' results and what they used together."""

    results: list[AgentResult]
    usage: RunUsage


@workflow.defn
class FanOut:
    """Runs two scripted sub-agents at once, each on its own token budget."""

    @workflow.run
    async def run(self, scripts: list[list[ScriptTurn]]) -> FanOutResult:
        """One sub-agent per script; ``max_tokens`` 300 narrows a 1000-token budget."""
        me = workflow.info().workflow_id
        results = await asyncio.gather(
            *(
                delegate(
                    f"part {number}",
                    id=f"{me}-part-{number}",
                    tools=["calculator", "write_file"],
                    budget=Budget(max_tokens=1000),
                    max_tokens=300,
                    tenant="acme",
                    script=script,
                )
                for number, script in enumerate(scripts, start=1)
            )
        )
        usage = RunUsage()
        for result in results:
            roll_up(usage, result.usage)
        return FanOutResult(results=list(results), usage=usage)
