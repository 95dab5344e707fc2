"""Continue-as-new keeps a run's behaviour: signals, updates and worker kills around switches."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import uuid
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowFailureError
from test_crash_resume import REPO, WorkerProcess, wait_ready, workers

from conftest import activity_running, eventually, running_worker
from onward.artifacts import workspace_dir
from onward.client import OnwardClient
from onward.contracts import (
    AgentInput,
    BudgetExtension,
    CancelRequest,
    Message,
    ModelRequest,
    ModelResponse,
    SteerRequest,
    ToolCall,
    Usage,
)
from onward.starter.follow import StepFinished
from onward.store import open_store
from onward.workflows import AgentWorkflow

__all__ = ["workers"]  # the fixture


class SlowModel:
    """Calls the calculator every step, slowly; remembers what each call was sent."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.sent: dict[int, list[Message]] = {}
        self.calls: list[int] = []

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.calls.append(request.step)
        self.sent[request.step] = request.messages
        await asyncio.sleep(self.delay_s)
        call = ToolCall(id=f"c{request.step}", name="calculator", arguments={"expression": "1+1"})
        return ModelResponse(
            text=f"step {request.step}",
            tool_calls=[call],
            usage=Usage(input_tokens=10, output_tokens=5),
            model=request.model,
        )


async def runs_of(client: Client, workflow_id: str) -> int:
    """How many runs the chain has had so far (continue-as-new switches + 1)."""
    handle = client.get_workflow_handle(workflow_id)
    description = await handle.describe()
    first = description.raw_description.workflow_execution_info.first_run_id
    return 1 if first == description.run_id else 2  # enough to tell "has switched"


async def test_pause_steer_extend_and_cancel_across_switches(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    store = await open_store(str(tmp_path / "store"))
    model = SlowModel(delay_s=0.3)
    agent_input = AgentInput(
        prompt="count",
        tools=["calculator"],
        continue_as_new_after=2,
        budget={"max_tool_calls": 5, "on_exceeded": "pause"},
    )
    workflow_id = f"ctl-{uuid.uuid4().hex[:12]}"
    async with running_worker(
        client,
        tmp_path / "ws",
        search_attribute_names,
        providers={"scripted": model},
        store=store,
    ) as worker:
        await worker.start(agent_input, workflow_id=workflow_id)
        latest = client.get_workflow_handle_for(AgentWorkflow.run, workflow_id)

        async def state_is(state: str, step: int | None = None) -> bool:
            status = await latest.query(AgentWorkflow.status)
            return status.state == state and (step is None or status.step == step)

        async def step_at_least(step: int) -> bool:
            return (await latest.query(AgentWorkflow.status)).step >= step

        # Paused during step 2, the last of the first run: the pause holds in the next run.
        await eventually(lambda: step_at_least(1), interval_s=0.02)
        await latest.signal(AgentWorkflow.pause)
        await eventually(lambda: state_is("paused"))
        await asyncio.sleep(0.5)
        paused_at = (await latest.query(AgentWorkflow.status)).step
        assert len(model.calls) <= paused_at + 1  # nothing started while paused
        await latest.signal(AgentWorkflow.steer, SteerRequest(message="use metric units"))
        await latest.signal(AgentWorkflow.resume)

        # The budget (5 tool calls) stops the 6th: extend it, in whichever run that is.
        await eventually(lambda: state_is("budget_paused"), timeout_s=30)
        status = await latest.query(AgentWorkflow.status)
        assert status.usage.tool_calls == 5 and status.usage.steps >= 5
        budget = await latest.execute_update(
            AgentWorkflow.extend_budget, BudgetExtension(max_tool_calls=50)
        )
        assert budget.max_tool_calls == 50
        await eventually(lambda: step_at_least(9), timeout_s=30)
        await latest.signal(AgentWorkflow.cancel, CancelRequest(reason="enough"))
        result = await latest.result()

    assert result.status == "cancelled" and result.reason == "enough"
    assert await runs_of(client, workflow_id) == 2  # it did switch
    assert result.steps_total is not None and result.steps_total >= 9
    assert result.usage.tool_calls >= 6  # past the first budget: the extension took effect
    # Every model call once, in order, across all the runs.
    assert model.calls == list(range(1, len(model.calls) + 1))
    steered = [
        s for s, msgs in model.sent.items() if any(m.content == "use metric units" for m in msgs)
    ]
    assert steered and steered[0] in (paused_at + 1, paused_at + 2)
    assert all(step >= steered[0] for step in steered)  # and stays in the conversation
    # The store holds the chain's whole log.
    assert result.transcript is not None
    logged = await store.steps(result.transcript)
    assert [s.step for s in logged] == list(range(1, result.steps_total + 1))
    assert [s.steering for s in logged if s.steering] == [["use metric units"]]
    await store.close()


LINES = 24


@pytest.mark.parametrize("kill_at", [(6, 12)])
async def test_kill_9_mid_run_and_at_a_switch(
    client: Client,
    address: str,
    tmp_path: Path,
    workers: list[WorkerProcess],
    monkeypatch: pytest.MonkeyPatch,
    kill_at: tuple[int, int],
) -> None:
    monkeypatch.setenv("ONWARD_STORE", str(tmp_path / "store"))
    task_queue = f"crash-{uuid.uuid4().hex[:8]}"
    workspace = tmp_path / "workspace"
    script = [
        {
            "text": f"writing line {i}",
            "tool_calls": [
                {
                    "name": "write_file",
                    "arguments": {"path": "lines.txt", "content": f"line {i}\n", "append": True},
                }
            ],
            "delay_s": 0.2,
        }
        for i in range(1, LINES + 1)
    ] + [{"text": "all lines written"}]
    agent_input = AgentInput.model_validate(
        {"prompt": "write lines", "script": script, "continue_as_new_after": 4}
    )
    number = 0

    async def start_worker() -> WorkerProcess:
        nonlocal number
        number += 1
        process = WorkerProcess(address, task_queue, workspace, tmp_path / f"w{number}.log")
        workers.append(process)
        await wait_ready(process)
        return process

    current = await start_worker()
    handle = await client.start_workflow(
        AgentWorkflow.run, agent_input, id=f"crash-{task_queue}", task_queue=task_queue
    )
    latest = client.get_workflow_handle_for(AgentWorkflow.run, handle.id)
    for step in kill_at:

        async def reached(step: int = step) -> bool:
            return (await latest.query(AgentWorkflow.status)).step >= step

        await eventually(reached, timeout_s=60, interval_s=0.02)
        current.kill()  # kill -9: mid-run, then just as step 12 closes: the switch
        current = await start_worker()
    result = await asyncio.wait_for(latest.result(), timeout=120)

    assert result.status == "completed", result.reason
    lines = (workspace_dir(workspace, handle.id) / "lines.txt").read_text().splitlines()
    assert lines == [f"line {i}" for i in range(1, LINES + 1)]  # nothing repeated or lost
    assert result.steps_total == LINES + 1 and result.usage.model_calls == LINES + 1
    store = await open_store(str(tmp_path / "store"))
    assert result.transcript is not None
    logged = await store.steps(result.transcript)
    assert [s.step for s in logged] == list(range(1, LINES + 2))
    messages = await store.messages(result.transcript)
    assert len(messages) == 1 + 2 * LINES + 1
    assert [m.content for m in messages if m.role == "assistant"][:3] == [
        "writing line 1",
        "writing line 2",
        "writing line 3",
    ]
    await store.close()
    assert current.stop() == 0


async def test_an_unreachable_postgresql_store_stops_the_worker_start(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(REPO / "worker.py"),
        cwd=Path.cwd(),
        env={**os.environ, "ONWARD_STORE": f"postgresql://onward@127.0.0.1:{port}/onward"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1
    assert b"cannot use the PostgreSQL store" in err
    assert b"Traceback" not in err


async def test_a_native_cancel_still_writes_the_log_to_the_store(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    store = await open_store(str(tmp_path / "store"))
    model = SlowModel(delay_s=0.2)
    agent_input = AgentInput(prompt="count", tools=["calculator"], continue_as_new_after=3)
    async with running_worker(
        client,
        tmp_path / "ws",
        search_attribute_names,
        providers={"scripted": model},
        store=store,
    ) as worker:
        handle = await worker.start(agent_input)
        latest = client.get_workflow_handle_for(AgentWorkflow.run, handle.id)

        async def four_steps() -> bool:
            return (await latest.query(AgentWorkflow.status)).step >= 4

        await eventually(four_steps, timeout_s=30, interval_s=0.02)
        await latest.cancel()
        with pytest.raises(WorkflowFailureError):
            await latest.result()
        status = await latest.query(AgentWorkflow.status)
    assert status.state == "cancelled" and status.transcript is not None
    logged = await store.steps(status.transcript)
    assert [s.step for s in logged] == list(range(1, status.step + 1))
    await store.close()


async def test_watch_status_and_duration_follow_the_chain_across_switches(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    turns = 32
    call = {"name": "calculator", "arguments": {"expression": "1+1"}}
    script = [{"text": f"t{n}", "tool_calls": [call], "delay_s": 0.05} for n in range(turns)]
    agent_input = {
        "prompt": "count",
        "tools": ["calculator"],
        "script": [*script, {"text": "done"}],
        "continue_as_new_after": 4,
    }
    shown: list[int] = []
    async with running_worker(client, tmp_path / "ws", search_attribute_names) as worker:
        api = OnwardClient(client, task_queue=worker.task_queue)
        loop = asyncio.get_running_loop()
        started = loop.time()
        run_id = await api.start(agent_input)
        async for event in api.follow(run_id):
            if not isinstance(event, StepFinished):
                continue
            shown.append(event.record.step)
            if event.record.step == 20:  # a few switches in: the chain's time, not the run's
                duration = (await api.status(run_id)).usage.duration_s
                assert duration >= loop.time() - started - 1.0
        assert await runs_of(client, run_id) == 2  # it did switch
        status = await api.status(run_id)
    # Every step once, in order, though each run answers only its latest ones.
    assert shown == list(range(1, turns + 2))
    assert status.state == "completed"
    assert status.step == status.usage.steps == turns + 1


def calc_turn(n: int) -> dict[str, object]:
    call = {"name": "calculator", "arguments": {"expression": f"{n}+1"}}
    return {"text": f"turn {n}", "tool_calls": [call]}


async def test_a_worker_killed_in_the_switchs_transcript_write_is_replaced_at_once(
    client: Client, address: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    """The write before continue-as-new heartbeats: a worker killed in it is noticed in
    2 s, not after its 60 s start-to-close timeout."""
    task_queue = f"stuck-{uuid.uuid4().hex[:8]}"
    store, workspace = str(tmp_path / "store"), tmp_path / "workspace"
    stuck = await asyncio.create_subprocess_exec(
        sys.executable,
        str(REPO / "tests" / "stuck_store_worker.py"),
        address,
        task_queue,
        store,
        str(workspace),
        cwd=REPO / "tests",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert stuck.stdout is not None
        assert await asyncio.wait_for(stuck.stdout.readline(), 60) == b"ready\n"
        script = [calc_turn(n) for n in range(4)] + [{"text": "done"}]
        handle = await client.start_workflow(
            AgentWorkflow.run,
            AgentInput.model_validate(
                {"prompt": "count", "script": script, "continue_as_new_after": 2}
            ),
            id=f"stuck-{task_queue}",
            task_queue=task_queue,
        )
        await eventually(lambda: activity_running(handle, "write_transcript"), timeout_s=30)
    finally:
        stuck.kill()  # kill -9, in the write
        await stuck.wait()
    replacement = WorkerProcess(
        address, task_queue, workspace, tmp_path / "w2.log", {"ONWARD_STORE": store}
    )
    workers.append(replacement)
    await wait_ready(replacement)
    latest = client.get_workflow_handle_for(AgentWorkflow.run, handle.id)
    result = await asyncio.wait_for(latest.result(), timeout=40)  # before: 60 s and more
    assert (result.status, result.output, result.steps_total) == ("completed", "done", 5)
