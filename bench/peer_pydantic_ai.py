"""Peer 1: pydantic-ai's Temporal durability, doing the bench's task (bench venv only).

    bench/.venv-peers/bin/python -m bench.peer_pydantic_ai --address A --task-queue Q --model-url U

The agent is the documented one: an ``Agent`` with the ``TemporalDurability``
capability (the successor of ``TemporalAgent``), registered on a workflow
through ``__pydantic_ai_agents__`` and ``PydanticAIPlugin``. The model call and
the tool each run as an activity, as the library does by default.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from datetime import timedelta

from pydantic_ai import Agent
from pydantic_ai.durable_exec.temporal import PydanticAIPlugin, TemporalDurability
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider
from pydantic_ai.usage import UsageLimits
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.workflow import ActivityConfig

from bench.workload import model_name, page_for, record_result

__all__ = ["PydanticAIBench", "main"]

MODEL_URL = os.environ.get("BENCH_MODEL_URL", "http://127.0.0.1:9/v1")
"""Read at import: the workflow sandbox re-imports this module and must build the same agent."""
HEARTBEAT_TIMEOUT = timedelta(seconds=4)
"""Onward's (the library's default is 30 s): resume compares orchestration, not settings."""
STICKY_QUEUE_TIMEOUT = timedelta(seconds=1)


async def record(note: str) -> str:
    """Record a note about the task.

    Args:
        note: The note.
    """
    return record_result(note)


async def read(page: int) -> str:
    """Read one page of the report.

    Args:
        page: The page number.
    """
    return page_for(page)


agent = Agent(
    OpenAIChatModel(
        model_name("pydantic-ai"), provider=OpenAIProvider(base_url=MODEL_URL, api_key="bench")
    ),
    name="bench",
    tools=[record, read],
    capabilities=[
        TemporalDurability(
            model_activity_config=ActivityConfig(
                start_to_close_timeout=timedelta(minutes=10), heartbeat_timeout=HEARTBEAT_TIMEOUT
            )
        )
    ],
)


@workflow.defn(name="PydanticAIBench")
class PydanticAIBench:
    """Runs the agent on the prompt; every model request and tool call is an activity."""

    __pydantic_ai_agents__ = (agent,)

    @workflow.run
    async def run(self, prompt: str) -> str:
        result = await agent.run(prompt, usage_limits=UsageLimits(request_limit=None))
        return str(result.output)


async def main(address: str, task_queue: str) -> None:
    """Poll ``task_queue`` until killed."""
    client = await Client.connect(address, plugins=[PydanticAIPlugin()])
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[PydanticAIBench],
        sticky_queue_schedule_to_start_timeout=STICKY_QUEUE_TIMEOUT,
    )
    async with worker:
        print(f"bench worker ready (pid {os.getpid()})", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", required=True)
    args = parser.parse_args()
    asyncio.run(main(args.address, args.task_queue))
