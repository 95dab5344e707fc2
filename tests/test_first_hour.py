"""What a new user meets in the first hour: no silent waits, honest figures.

Each command is a real ``python -m onward.starter.cli`` subprocess against the
session's dev server; runs that must wait for a worker are started on a task
queue no worker polls.
"""

from __future__ import annotations

import asyncio
import re
import signal
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from conftest import (
    UnreachableModel,
    eventually,
    run_onward,
    running_worker,
    spawn_onward,
)
from onward.activities import tool_calls
from onward.client import OnwardClient
from onward.connection import no_poller, task_failing
from onward.contracts import (
    RUN_VERSION,
    AgentStatus,
    Budget,
    ModelRequest,
    ModelResponse,
    RunUsage,
    ToolCall,
)
from onward.errors import NoWorker
from onward.starter.render import money, status_lines, usage_summary
from onward.starter.report import aggregate, report_lines
from onward.starter.trace import Trace
from onward.workflows import AgentWorkflow


@pytest.fixture
async def idle_run(client: Client) -> AsyncIterator[tuple[str, str]]:
    """A run on a task queue no worker polls: (task queue, run id)."""
    task_queue = f"idle-{uuid.uuid4().hex[:8]}"
    api = OnwardClient(client, task_queue=task_queue)
    run_id = await api.start({"prompt": "is anyone there?"})
    yield task_queue, run_id
    await client.get_workflow_handle(run_id).terminate("test over")


def env_for(address: str, task_queue: str) -> dict[str, str]:
    return {"TEMPORAL_ADDRESS": address, "ONWARD_TASK_QUEUE": task_queue}


async def test_commands_say_when_no_worker_polls(address: str, idle_run: tuple[str, str]) -> None:
    task_queue, run_id = idle_run
    env = env_for(address, task_queue)
    extend, status, pause = await asyncio.gather(
        run_onward("extend", run_id, "--max-tokens", "100", env=env, timeout_s=30),
        run_onward("status", run_id, "--json", env=env, timeout_s=30),
        run_onward("pause", run_id, env=env, timeout_s=30),
    )
    hint = f"no worker is polling task queue {task_queue}; start one with `onward worker`"

    assert extend.code == 1
    assert extend.stderr.strip() == f"onward: {hint}"

    assert status.code == 0, status.stderr  # status exits 0 in any state
    assert status.json()["state"] == "running"
    assert hint in status.stderr and "event history" in status.stderr

    assert pause.code == 0
    assert hint in pause.stderr


async def _read_until(stream: asyncio.StreamReader, text: str) -> str:
    seen = ""
    while text not in seen:
        line = await asyncio.wait_for(stream.readline(), 30)
        assert line, f"ended before {text!r}: {seen}"
        seen += line.decode()
    return seen


@pytest.mark.parametrize("command", ["result", "watch"])
async def test_waiting_is_visible_and_ctrl_c_is_clean(
    address: str, idle_run: tuple[str, str], command: str
) -> None:
    task_queue, run_id = idle_run
    process = await spawn_onward(command, run_id, env=env_for(address, task_queue))
    try:
        stream = process.stdout if command == "watch" else process.stderr
        assert stream is not None
        await _read_until(stream, f"no worker is polling task queue {task_queue}")
        process.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 130, err.decode()
    assert "Traceback" not in err.decode()


async def test_retries_show_as_they_happen(
    address: str, client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    async with running_worker(
        client, tmp_path / "ws", search_attribute_names, providers={"scripted": UnreachableModel()}
    ) as worker:
        env = env_for(address, worker.task_queue)
        handle = await worker.start({"prompt": "hello"})
        watching = await spawn_onward("watch", handle.id, env=env)
        try:
            assert watching.stdout is not None
            seen = await _read_until(watching.stdout, "-- retrying call_model")
            assert "cannot reach http://127.0.0.1:9/v1" in seen
            assert re.search(r"attempt \d+ of at most \d+", seen), seen

            async def retrying() -> bool:
                done = await run_onward("status", handle.id, "--json", env=env)
                return bool(done.json().get("retrying"))

            await eventually(retrying)
            human = await run_onward("status", handle.id, env=env)
            assert "retry:  call_model: cannot reach http://127.0.0.1:9/v1" in human.stdout
        finally:
            await handle.terminate("test over")
            await asyncio.wait_for(watching.communicate(), 30)


class FailsFirstAttempts:
    """Each call's first attempt fails; its retry waits until the test has seen it."""

    def __init__(self) -> None:
        self.release = {1: asyncio.Event(), 2: asyncio.Event()}

    async def complete(self, request: ModelRequest) -> ModelResponse:
        if activity.info().attempt == 1:
            raise ApplicationError(f"busy (step {request.step})", type="ProviderBusy")
        await self.release[request.step].wait()
        if request.step == 1:
            call = ToolCall(id="c1", name="calculator", arguments={"expression": "1+1"})
            return ModelResponse(text="adding", tool_calls=[call])
        return ModelResponse(text="2")


async def test_watch_shows_the_retries_of_every_call(
    address: str, client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    model = FailsFirstAttempts()
    async with running_worker(
        client, tmp_path / "ws", search_attribute_names, providers={"scripted": model}
    ) as worker:
        env = env_for(address, worker.task_queue)
        handle = await worker.start({"prompt": "add", "tools": ["calculator"]})
        watching = await spawn_onward("watch", handle.id, env=env)
        try:
            assert watching.stdout is not None
            # Both calls are retried at attempt 2: each retry is shown, not only the first.
            for step in (1, 2):
                seen = await _read_until(watching.stdout, "-- retrying call_model")
                assert f"busy (step {step}), attempt 2" in seen, seen
                model.release[step].set()
            rest, _ = await asyncio.wait_for(watching.communicate(), 30)
        finally:
            if watching.returncode is None:
                watching.kill()
                await watching.wait()
    assert watching.returncode == 0
    assert "-- retrying" not in rest.decode()


async def test_resume_of_a_run_that_is_not_paused_says_so(
    address: str, client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    script = [
        {"text": f"t{n}", "tool_calls": [{"name": "calculator", "arguments": {"expression": "1"}}]}
        for n in range(100)
    ]
    async with running_worker(client, tmp_path / "ws", search_attribute_names) as worker:
        handle = await worker.start({"prompt": "busy", "script": script})
        try:
            done = await run_onward("resume", handle.id, env=env_for(address, worker.task_queue))
        finally:
            await handle.terminate("test over")
    assert done.code == 0, done.stderr
    assert "was not paused" in done.stdout
    assert "it goes on" not in done.stdout


async def query_refused(
    handle: WorkflowHandle[Any, Any], refused: Callable[[RPCError], bool]
) -> bool:
    """Whether the server refuses the run's status query the way ``refused`` recognises."""
    try:
        await handle.query(AgentWorkflow.status, rpc_timeout=timedelta(seconds=1))
    except RPCError as err:
        return refused(err)
    return False


async def test_a_run_whose_workflow_task_keeps_failing_is_said_so_and_read_from_history(
    address: str,
    client: Client,
    tmp_path: Path,
    search_attribute_names: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A worker older than the run (it began on a newer run version) fails its task for good.
    monkeypatch.setattr(tool_calls, "RUN_VERSION", RUN_VERSION + 1)
    async with running_worker(client, tmp_path / "ws", search_attribute_names) as worker:
        api = OnwardClient(client, task_queue=worker.task_queue)
        run_id = await api.start({"prompt": "hello"})
        handle = client.get_workflow_handle(run_id)
        try:
            await eventually(lambda: query_refused(handle, task_failing))
            env = env_for(address, worker.task_queue)
            status = await run_onward("status", run_id, "--json", env=env)
            assert status.code == 0, status.stderr  # read from the history, in any state
            assert status.json()["state"] == "running"
            watching = await spawn_onward("watch", run_id, env=env)
            try:
                assert watching.stdout is not None
                await _read_until(watching.stdout, "keeps failing on the worker")
            finally:
                watching.send_signal(signal.SIGINT)
                await asyncio.wait_for(watching.communicate(), 30)
        finally:
            await handle.terminate("test over")


async def test_resume_before_the_pause_is_reached_says_it_is_withdrawn(
    address: str, client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    call = {"name": "calculator", "arguments": {"expression": "1"}}
    # Long enough for the resume (a CLI process's start) to land while the call runs,
    # on a busy machine too (3 s was not, at a load of 10 on 2 cores).
    script = [{"text": "adding", "tool_calls": [call], "delay_s": 8.0}, {"text": "done"}]
    async with running_worker(client, tmp_path / "ws", search_attribute_names) as worker:
        api = OnwardClient(client, task_queue=worker.task_queue)
        run_id = await api.start({"prompt": "slow", "script": script})
        await api.pause(run_id)  # while its first model call is in flight

        async def pausing() -> bool:
            return (await api.status(run_id)).pausing

        await eventually(pausing)
        done = await run_onward("resume", run_id, env=env_for(address, worker.task_queue))
        assert done.code == 0, done.stderr
        assert "is withdrawn: it goes on" in done.stdout
        assert "nothing changes" not in done.stdout
        assert (await api.result(run_id)).output == "done"


async def test_a_run_whose_worker_stopped_reads_from_history_and_says_no_worker(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    """About 20 s after its last worker stops, the server refuses queries (and may refuse
    updates: "no poller seen recently") while it still lists the worker as a poller for
    up to 75 s: status is read from the history; an update or a session's status is a
    NoWorker, not a Temporal error."""
    script = [{"tool_calls": [{"name": "calculator", "arguments": {"expression": "1+1"}}]}]
    async with running_worker(client, tmp_path / "ws", search_attribute_names) as worker:
        api = OnwardClient(client, task_queue=worker.task_queue)
        run_id = await api.start(
            {"prompt": "add", "script": [*script, {"text": "2"}], "approve_tools": ["calculator"]}
        )
        session_id = await api.open_session({"tools": [], "script": [{"text": "one"}]})
        assert (await api.send_message(session_id, "first")).reply == "one"

        async def waiting() -> bool:
            return (await api.status(run_id)).state == "awaiting_approval"

        await eventually(waiting)
    handle = client.get_workflow_handle(run_id)
    try:
        await eventually(lambda: query_refused(handle, no_poller), timeout_s=90, interval_s=0.5)
        assert await api.has_worker(worker.task_queue)  # still listed: the status asks
        status, source = await api.status_and_source(run_id)
        assert (status.state, source) == ("awaiting_approval", "history")
        steps = await api.step_log(run_id)
        assert (steps.source, steps.unanswered) == ("history", True)
        with pytest.raises(NoWorker, match="nothing was sent"):
            await api.session_status(session_id)
        # Kept or refused (the server's choice at this point): either way NoWorker.
        with pytest.raises(NoWorker):
            await api.approve(run_id)
    finally:
        await handle.terminate("test over")
        await client.get_workflow_handle(session_id).terminate("test over")


# -- figures ---------------------------------------------------------------------------


def test_small_costs_keep_their_digits() -> None:
    assert money(0.000018) == "$0.0000180"
    assert money(0.00014) == "$0.000140"
    assert money(1.25) == "$1.2500"
    assert money(None) == "cost unknown"


def test_unknown_cost_reads_as_unknown() -> None:
    unpriced = RunUsage(steps=1, model_calls=1, cost_usd=0.0, cost_known=False)
    assert "$0" not in usage_summary(unpriced)
    assert "cost unknown" in usage_summary(unpriced)
    partly = RunUsage(steps=2, model_calls=2, cost_usd=0.000018, cost_known=False)
    assert "at least $0.0000180" in usage_summary(partly)

    status = AgentStatus(state="running", step=1, usage=unpriced, budget=Budget())
    assert "cost unknown" in "\n".join(status_lines("r", status))
    assert "cost cost" not in "\n".join(status_lines("r", status))
    small = RunUsage(cost_usd=0.000018)
    priced = AgentStatus(state="running", step=1, usage=small, budget=Budget())
    assert "cost $0.0000180" in "\n".join(status_lines("r", priced))

    trace = Trace(workflow_id="r", status="completed", source="result", usage=unpriced)
    now = datetime.now(UTC)
    head = report_lines(aggregate([trace], now, now))[0]
    assert "cost unknown" in head and "$0" not in head
