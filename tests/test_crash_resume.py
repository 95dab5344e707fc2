"""A real worker process is killed with SIGKILL mid-run; a new one finishes the run.

Side effects are counted: every `write_file` append of the run must be in the
file exactly once, so no completed tool call ran twice.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from provider_servers import OPENAI_PATH, FakeProvider, Reply, openai_completion
from temporalio.client import Client

from conftest import eventually
from onward.artifacts import workspace_dir
from onward.client import OnwardClient
from onward.contracts import AgentInput
from onward.starter.trace import read_history
from onward.workflows import AgentWorkflow

REPO = Path(__file__).resolve().parent.parent
LINES = 6


class WorkerProcess:
    """``python worker.py`` in its own process, as an operator would run it."""

    def __init__(
        self,
        address: str,
        task_queue: str,
        workspace: Path,
        log: Path,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        # As an operator runs it: without the sandbox the other tests' workers run in.
        env = {k: v for k, v in os.environ.items() if k != "ONWARD_WORKFLOW_SANDBOX"}
        env.update(
            TEMPORAL_ADDRESS=address,
            ONWARD_TASK_QUEUE=task_queue,
            ONWARD_WORKSPACE=str(workspace),
            **(extra_env or {}),
        )
        self.log = log
        self._out = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, str(REPO / "worker.py")],
            cwd=Path.cwd(),  # the tests' scratch directory (conftest)
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    def ready(self) -> bool:
        assert self.process.poll() is None, self.log.read_text()
        return "onward worker ready" in self.log.read_text()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self._out.close()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=20)
        self._out.close()
        return self.process.returncode


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for process in started:
        if process.process.poll() is None:
            process.kill()


async def wait_ready(worker: WorkerProcess) -> None:
    async def ready() -> bool:
        return worker.ready()

    await eventually(ready, timeout_s=30)


async def test_killed_worker_is_replaced_and_no_completed_call_runs_twice(
    client: Client, address: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
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
            "delay_s": 0.7,
        }
        for i in range(1, LINES + 1)
    ] + [{"text": "all lines written"}]

    first = WorkerProcess(address, task_queue, workspace, tmp_path / "worker1.log")
    workers.append(first)
    await wait_ready(first)
    handle = await client.start_workflow(
        AgentWorkflow.run,
        AgentInput.model_validate({"prompt": "write lines", "script": script}),
        id=f"crash-{task_queue}",
        task_queue=task_queue,
    )
    written = workspace_dir(workspace, handle.id) / "lines.txt"

    async def three_lines() -> bool:
        return written.exists() and written.read_text().count("\n") >= 3

    await eventually(three_lines, interval_s=0.02)
    first.kill()  # kill -9, mid-run: the next model call is in flight
    lines_at_kill = written.read_text().count("\n")
    assert lines_at_kill < LINES

    second = WorkerProcess(address, task_queue, workspace, tmp_path / "worker2.log")
    workers.append(second)
    await wait_ready(second)
    ready_at = time.monotonic()

    async def progressed() -> bool:
        return written.read_text().count("\n") > lines_at_kill

    await eventually(progressed, timeout_s=30, interval_s=0.05)
    resumed_after = time.monotonic() - ready_at
    result = await asyncio.wait_for(handle.result(), timeout=60)

    assert result.status == "completed"
    assert written.read_text().splitlines() == [f"line {i}" for i in range(1, LINES + 1)]
    assert len(result.steps) == LINES + 1
    # The in-flight model call is noticed through its 4 s heartbeat timeout and
    # the sticky queue falls back after 1 s: the new worker goes on within seconds.
    assert resumed_after < 20, f"resumed {resumed_after:.1f} s after the new worker started"
    events = [e async for e in handle.fetch_history_events()]
    tool_completions = [
        e
        for e in events
        if e.HasField("activity_task_completed_event_attributes")
        and e.activity_task_completed_event_attributes.scheduled_event_id
        in {
            s.event_id
            for s in events
            if s.HasField("activity_task_scheduled_event_attributes")
            and s.activity_task_scheduled_event_attributes.activity_type.name == "execute_tool"
        }
    ]
    assert len(tool_completions) == LINES
    assert second.stop() == 0  # SIGTERM: graceful shutdown


async def test_a_call_cut_off_with_every_worker_is_not_started_again_past_the_deadline(
    client: Client, address: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    """The only worker dies mid model call and the next starts after the run's deadline.

    Temporal retries the call on the new worker; the worker does not start it (the
    provider is asked once, not paid twice) and the run ends at its deadline.
    """
    task_queue = f"late-{uuid.uuid4().hex[:8]}"
    async with FakeProvider(OPENAI_PATH) as provider:
        provider.script(
            Reply(json=openai_completion("too slow"), delay_s=120),
            openai_completion("an answer got after the deadline"),
        )
        env = {"OPENAI_BASE_URL": f"{provider.url}/v1", "OPENAI_API_KEY": "test-key"}
        first = WorkerProcess(address, task_queue, tmp_path, tmp_path / "w1.log", env)
        workers.append(first)
        await wait_ready(first)
        handle = await client.start_workflow(
            AgentWorkflow.run,
            AgentInput.model_validate(
                {"prompt": "hi", "model": "openai:gpt-4o-mini", "budget": {"max_duration_s": 3}}
            ),
            id=f"late-{task_queue}",
            task_queue=task_queue,
        )
        started = time.monotonic()

        async def asked() -> bool:
            return len(provider.requests) == 1

        await eventually(asked)
        first.kill()

        async def retry_waits_past_deadline() -> bool:
            # Temporal saw the heartbeat stop and scheduled the next attempt; the
            # deadline (3 s after the start) has passed with no worker to read its timer.
            pending = (await handle.describe()).raw_description.pending_activities
            return bool(pending) and pending[0].attempt >= 2 and time.monotonic() - started > 4

        await eventually(retry_waits_past_deadline, timeout_s=30, interval_s=0.1)
        second = WorkerProcess(address, task_queue, tmp_path, tmp_path / "w2.log", env)
        workers.append(second)
        result = await asyncio.wait_for(handle.result(), timeout=60)

    assert result.status == "budget_exceeded", result.reason
    assert result.reason is not None and "max_duration_s" in result.reason
    assert len(provider.requests) == 1  # the retry was not sent
    assert "model call not started: the run's deadline passed" in second.log.read_text()
    # Read from its history (as `onward trace` does), the refused call is no failed step.
    assert (await read_history(handle)).step_log == []


async def test_a_stalled_workers_late_reply_does_not_replace_the_one_the_run_took(
    client: Client, address: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    """A worker frozen mid model call (SIGSTOP: a long pause, a VM stalled) is given
    up by the server, which hands the call to another worker; the run takes that
    worker's reply. Resumed, the frozen worker reads its own late reply: it must
    not write it over the one the run took, or the run's next call finds its
    transcript at odds with its step log (the run failed, TranscriptIncomplete)."""
    task_queue = f"stall-{uuid.uuid4().hex[:8]}"
    store = tmp_path / "store"

    def writing(path: str) -> dict[str, object]:
        args = {"path": path, "content": path}
        return openai_completion(f"writing {path}", tool_calls=[(f"c_{path}", "write_file", args)])

    async with FakeProvider(OPENAI_PATH) as provider:
        provider.script(
            Reply(json=writing("late.txt"), delay_s=3),  # to the worker that stalls
            writing("taken.txt"),  # to the worker that takes over
            openai_completion("done"),
        )
        env = {
            "OPENAI_BASE_URL": f"{provider.url}/v1",
            "OPENAI_API_KEY": "test-key",
            "ONWARD_STORE": str(store),
        }
        stalled = WorkerProcess(address, task_queue, tmp_path / "ws", tmp_path / "w1.log", env)
        workers.append(stalled)
        await wait_ready(stalled)
        onward = OnwardClient(client, task_queue=task_queue)
        run_id = await onward.start(
            {
                "prompt": "write a file",
                "model": "openai:gpt-4o-mini",
                "tools": ["write_file"],
                "approve_tools": ["write_file"],  # holds the run while the stalled one wakes
            }
        )

        async def asked() -> bool:
            return len(provider.requests) == 1

        await eventually(asked, interval_s=0.02)
        stalled.process.send_signal(signal.SIGSTOP)
        try:
            taking_over = WorkerProcess(
                address, task_queue, tmp_path / "ws", tmp_path / "w2.log", env
            )
            workers.append(taking_over)

            async def took_the_other_reply() -> bool:
                return bool((await onward.status(run_id)).pending_approvals)

            await eventually(took_the_other_reply, timeout_s=30)
            (pending,) = (await onward.status(run_id)).pending_approvals
            assert pending.arguments == {"path": "taken.txt", "content": "taken.txt"}

            async def late_reply_sent() -> bool:
                return time.monotonic() - provider.requests[0].at > 3.2

            await eventually(late_reply_sent)
        finally:
            stalled.process.send_signal(signal.SIGCONT)
        transcript = next(iter(store.glob("*/messages.log")), None)

        async def late_reply_handled() -> bool:
            gave_up = "call_model attempt 1 abandoned" in stalled.log.read_text()
            return gave_up or (transcript is not None and "late.txt" in transcript.read_text())

        await eventually(late_reply_handled)
        await onward.approve(run_id)
        result = await asyncio.wait_for(onward.result(run_id), 30)

    assert result.status == "completed", result.reason
    assert result.output == "done"
    # The last call was sent the conversation the run holds: the reply it took.
    sent = provider.requests[-1].json["messages"]
    assert [m["tool_calls"][0]["id"] for m in sent if m.get("tool_calls")] == ["c_taken.txt"]
    assert len(provider.requests) == 3  # a stale attempt asks the model nothing
    assert [p.name for p in (tmp_path / "ws").rglob("*.txt")] == ["taken.txt"]
