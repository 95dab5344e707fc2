"""Peer 2: the OpenAI Agents SDK with Temporal's plugin, doing the bench's task (bench venv only).

    bench/.venv-peers/bin/python -m bench.peer_openai_agents --address A --task-queue Q

The model call is the plugin's activity (Chat Completions, the protocol the
fake server speaks); each tool is an activity through
``activity_as_tool``, so a step costs two activities as in pydantic-ai.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from datetime import timedelta

from agents import Agent, Runner, set_tracing_disabled
from agents.models.openai_provider import OpenAIProvider
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.openai_agents import ModelActivityParameters, OpenAIAgentsPlugin
from temporalio.openai_agents import workflow as agents_workflow
from temporalio.worker import Worker

from bench.workload import READ_TOOL, TOOL_NAME, model_name, page_for, record_result

__all__ = ["OpenAIAgentsBench", "main"]

HEARTBEAT_TIMEOUT = timedelta(seconds=4)
"""Onward's (the plugin sets none by default): resume compares orchestration, not settings."""
STICKY_QUEUE_TIMEOUT = timedelta(seconds=1)
TOOL_TIMEOUT = timedelta(seconds=5)
MAX_TURNS = 100_000


@activity.defn(name=TOOL_NAME)
async def record(note: str) -> str:
    """Record a note about the task.

    Args:
        note: The note.
    """
    return record_result(note)


@activity.defn(name=READ_TOOL)
async def read(page: int) -> str:
    """Read one page of the report.

    Args:
        page: The page number.
    """
    return page_for(page)


@workflow.defn(name="OpenAIAgentsBench")
class OpenAIAgentsBench:
    """Runs the agent on the prompt with the plugin's durable model calls."""

    @workflow.run
    async def run(self, prompt: str) -> str:
        agent = Agent(
            name="bench",
            model=model_name("openai-agents"),
            tools=[
                agents_workflow.activity_as_tool(tool, start_to_close_timeout=TOOL_TIMEOUT)
                for tool in (record, read)
            ],
        )
        result = await Runner.run(agent, prompt, max_turns=MAX_TURNS)
        return str(result.final_output)


async def main(address: str, task_queue: str, model_url: str) -> None:
    """Poll ``task_queue`` until killed."""
    set_tracing_disabled(True)  # no trace export to OpenAI from a benchmark
    plugin = OpenAIAgentsPlugin(
        model_params=ModelActivityParameters(
            start_to_close_timeout=timedelta(minutes=10), heartbeat_timeout=HEARTBEAT_TIMEOUT
        ),
        model_provider=OpenAIProvider(base_url=model_url, api_key="bench", use_responses=False),
    )
    client = await Client.connect(address, plugins=[plugin])
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[OpenAIAgentsBench],
        activities=[record, read],
        sticky_queue_schedule_to_start_timeout=STICKY_QUEUE_TIMEOUT,
    )
    async with worker:
        print(f"bench worker ready (pid {os.getpid()})", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--model-url", required=True)
    args = parser.parse_args()
    asyncio.run(main(args.address, args.task_queue, args.model_url))
