"""Per-step orchestration overhead of an Onward run against a bare workflow.

    .venv/bin/python bench/overhead.py [--steps 30] [--rounds 3]

Starts its own dev server (in memory, free port) and an in-process worker,
then times, round by round, a scripted agent run of N steps (zero model
delay, one calculator call a step) and a bare workflow doing the same
activities (one regular + one local activity a step). Prints the median
per-step time of each and their ratio. Figures, not a pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from baseline import BareSteps, noop  # noqa: E402

from onward.connection import DATA_CONVERTER  # noqa: E402
from onward.contracts import AgentInput  # noqa: E402
from onward.worker import WorkerSettings, build_worker  # noqa: E402
from onward.workflows import AgentWorkflow  # noqa: E402


def agent_input(steps: int) -> AgentInput:
    turn = {"tool_calls": [{"name": "calculator", "arguments": {"expression": "1+1"}}]}
    script = [turn] * (steps - 1) + [{"text": "done"}]
    return AgentInput.model_validate({"prompt": "bench", "script": script, "tools": ["calculator"]})


async def main(steps: int, rounds: int) -> None:
    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
        data_converter=DATA_CONVERTER,
        dev_server_log_level="error",
    ) as env:
        client = env.client
        queue = f"bench-{uuid.uuid4().hex[:6]}"
        with tempfile.TemporaryDirectory() as workspace:
            settings = WorkerSettings(task_queue=queue, workspace=Path(workspace))
            agent_worker = build_worker(client, settings)
            bare_worker = Worker(
                client, task_queue=queue + "-bare", workflows=[BareSteps], activities=[noop]
            )
            async with agent_worker, bare_worker:
                onward_s: list[float] = []
                bare_s: list[float] = []
                for round_ in range(rounds + 1):  # round 0 warms up both
                    started = time.perf_counter()
                    result = await client.execute_workflow(
                        AgentWorkflow.run,
                        agent_input(steps),
                        id=f"bench-agent-{uuid.uuid4().hex[:8]}",
                        task_queue=queue,
                    )
                    agent_time = time.perf_counter() - started
                    assert result.status == "completed" and len(result.steps) == steps
                    started = time.perf_counter()
                    await client.execute_workflow(
                        BareSteps.run,
                        steps,
                        id=f"bench-bare-{uuid.uuid4().hex[:8]}",
                        task_queue=queue + "-bare",
                    )
                    bare_time = time.perf_counter() - started
                    if round_:
                        onward_s.append(agent_time / steps)
                        bare_s.append(bare_time / steps)
    onward_ms = statistics.median(onward_s) * 1000
    bare_ms = statistics.median(bare_s) * 1000
    print(f"steps per run: {steps}, rounds: {rounds} (medians, after one warm-up round)")
    print(f"onward agent step  : {onward_ms:7.1f} ms  (model activity + local calculator tool)")
    print(f"bare workflow step : {bare_ms:7.1f} ms  (regular activity + local activity)")
    print(f"overhead ratio     : {onward_ms / bare_ms:7.2f} x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.steps, args.rounds))
