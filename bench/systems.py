"""The systems under test: how to start each one's worker and each one's runs."""

from __future__ import annotations

import functools
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle

from bench.processes import Process
from bench.workload import READ_TOOL, TOOL_NAME, Task, model_name
from onward.client import OnwardClient
from onward.contracts import AgentInput, AgentResult, ClearToolResults
from onward.workflows import AgentWorkflow

__all__ = ["FLOOR", "PEERS", "RunOutcome", "System", "all_systems", "new_run", "outcome"]

REPO = Path(__file__).resolve().parent.parent
FLOOR = "bare"
PEERS = ("pydantic-ai", "openai-agents")


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended, read from its result."""

    ok: bool
    model_calls: int
    detail: str = ""


Starter = Callable[[Client, str, Task], Awaitable[WorkflowHandle[Any, Any]]]


@dataclass(frozen=True)
class System:
    """One system: its worker command line and how a run of the task is started and read."""

    name: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    start: Starter

    def task_queue(self, prefix: str) -> str:
        return f"{prefix}-{self.name}"

    def worker(self, address: str, queue_prefix: str, logs: Path) -> Process:
        """A worker process for this system (not started)."""
        argv = [
            a.format(address=address, task_queue=self.task_queue(queue_prefix)) for a in self.argv
        ]
        env = {
            k: v.format(address=address, task_queue=self.task_queue(queue_prefix))
            for k, v in self.env
        }
        return Process(
            name=self.name,
            argv=argv,
            log=logs / f"worker-{self.name}.log",
            ready_text="ready",
            env=env,
            cwd=REPO,
        )


def new_run() -> str:
    """A unique run id: no two runs share a prompt, so no cached prefix crosses runs."""
    return uuid.uuid4().hex[:10]


def _start_named(workflow_type: str, system: str) -> Starter:
    async def start(client: Client, task_queue: str, task: Task) -> WorkflowHandle[Any, Any]:
        return await client.start_workflow(
            workflow_type,
            task.prompt,
            id=f"bench-{system}-{task.run}",
            task_queue=task_queue,
            result_type=str,
        )

    return start


CLEARING = ClearToolResults(trigger_tokens=8_000, keep_tool_uses=3, clear_at_least_tokens=4_000)
"""Onward's tool-result clearing in the cost measurement: a page is about 1,000 tokens, so
the prompt stays between about 4,000 and 8,000 tokens and is cleared every four pages."""


async def _start_onward(client: Client, task_queue: str, task: Task) -> WorkflowHandle[Any, Any]:
    agent_input = AgentInput(
        prompt=task.prompt,
        model=f"openai:{model_name('onward')}",
        tools=[TOOL_NAME, READ_TOOL],  # as the peers' agents: the same prompt
        clear_tool_results=CLEARING if task.clear else None,
    )
    # As users start runs: with the first search attribute values, so a run does not
    # upsert them itself (OnwardClient lists the server's attributes once).
    run_id = await _onward_client(client, task_queue).start(
        agent_input, id=f"bench-onward-{task.run}"
    )
    return client.get_workflow_handle_for(AgentWorkflow.run, run_id)


@functools.cache
def _onward_client(client: Client, task_queue: str) -> OnwardClient:
    return OnwardClient(client, task_queue=task_queue)


def outcome(result: Any, task: Task) -> RunOutcome:
    """Whether a finished run did the whole task and gave the task's answer."""
    calls = task.steps + 1
    if isinstance(result, AgentResult):
        # A long run continues as new and keeps only its last steps in full.
        done = result.steps_total if result.steps_total is not None else len(result.steps)
        ok = result.status == "completed" and done == calls and result.output == task.answer
        detail = f"{result.status}: {result.reason}" if result.status != "completed" else ""
        return RunOutcome(ok, done, "" if ok else detail or f"answered {result.output!r}")
    ok = result == task.answer
    return RunOutcome(ok, calls if ok else 0, "" if ok else f"answered {result!r}")


def _module_worker(python: Path | str, module: str, *extra: str) -> tuple[str, ...]:
    """``python -m module`` with the address and task queue every bench worker takes."""
    return (
        str(python),
        "-m",
        module,
        "--address",
        "{address}",
        "--task-queue",
        "{task_queue}",
        *extra,
    )


def all_systems(model_url: str, peers_python: Path | None) -> list[System]:
    """Onward, the floor and, when their venv exists, the two peers."""
    onward_env = (
        ("TEMPORAL_ADDRESS", "{address}"),
        ("ONWARD_TASK_QUEUE", "{task_queue}"),
        ("OPENAI_BASE_URL", model_url),
        ("OPENAI_API_KEY", "bench"),
        ("ONWARD_WORKSPACE", str(REPO / "bench" / "results" / ".workspace")),
    )
    systems = [
        # The real worker, as an operator runs it, with the bench's tool module.
        System(
            name="onward",
            argv=(
                sys.executable,
                "worker.py",
                "--tools",
                "bench.onward_tools",
                "--log-level",
                "WARNING",
            ),
            env=onward_env,
            start=_start_onward,
        ),
        System(
            name=FLOOR,
            argv=_module_worker(sys.executable, "bench.bare_worker", "--model-url", model_url),
            env=(),
            start=_start_named("BareSteps", FLOOR),
        ),
    ]
    if peers_python is not None:
        systems += [
            System(
                name="pydantic-ai",
                argv=_module_worker(peers_python, "bench.peer_pydantic_ai"),
                # Read at import: the workflow sandbox re-imports the module that defines the agent.
                env=(("BENCH_MODEL_URL", model_url),),
                start=_start_named("PydanticAIBench", "pydantic-ai"),
            ),
            System(
                name="openai-agents",
                argv=_module_worker(
                    peers_python, "bench.peer_openai_agents", "--model-url", model_url
                ),
                env=(("OPENAI_AGENTS_DISABLE_TRACING", "1"),),
                start=_start_named("OpenAIAgentsBench", "openai-agents"),
            ),
        ]
    return systems
