"""``OnwardClient``, the Python API, against the session's dev server and in-process workers."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import (
    Client,
    RPCTimeoutOrCancelledError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.service import RPCError, RPCStatusCode

import onward
from conftest import REPO, RunningWorker, eventually
from onward import (
    AgentInput,
    ConnectionFailed,
    InvalidInput,
    NoWorker,
    OnwardClient,
    OnwardError,
    RequestRejected,
    RunAlreadyExists,
    RunEnded,
    RunNotFound,
    UpdateNotTaken,
)
from onward.client import _unanswered_update
from onward.contracts import DEFAULT_TASK_QUEUE, BudgetExtension
from onward.errors import SettingsError
from onward.starter.errors import CliError
from onward.worker import WorkerSettings, build_worker

ADD_UP: list[dict[str, Any]] = [
    {
        "text": "adding",
        "tool_calls": [{"name": "calculator", "arguments": {"expression": "12.5 + 7.25"}}],
        "usage": {"input_tokens": 10, "output_tokens": 5},
    },
    {"text": "They come to 19.75."},
]


def slow(turns: int) -> list[dict[str, Any]]:
    return [
        {
            "text": f"turn {n}",
            "tool_calls": [{"name": "calculator", "arguments": {"expression": f"{n} + {n}"}}],
            # Under the model call's first heartbeat (0.5 s): a call ending as its beat's
            # request is in flight, with the worker shutting down (a test's end), hangs
            # the SDK's shutdown for good (temporalio 1.35; sdk-rust #1538, fixed there).
            "delay_s": 0.4,
        }
        for n in range(turns)
    ] + [{"text": "done"}]


def run_id() -> str:
    return f"api-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def api(client: Client, worker: RunningWorker) -> OnwardClient:
    return OnwardClient(client, task_queue=worker.task_queue)


def test_the_error_tree_is_one_tree() -> None:
    for error in (ConnectionFailed, InvalidInput, NoWorker, RequestRejected, RunAlreadyExists):
        assert issubclass(error, OnwardError)
    assert issubclass(CliError, OnwardError)
    assert issubclass(UpdateNotTaken, NoWorker)  # a caller catching NoWorker catches it
    # The old import of ConnectionFailed keeps working, and is the same class.
    from onward.connection import ConnectionFailed as Old

    assert Old is ConnectionFailed
    assert onward.OnwardClient is OnwardClient


def test_every_error_the_readme_lists_imports_from_onward() -> None:
    # "Errors (from onward import ...)": ToolError and its kin were only in onward.errors.
    table = (REPO / "README.md").read_text().split("Errors (`from onward import ...`)")[1]
    rows = table.split("\n\n")[1].splitlines()[2:]
    names = {
        name.strip().strip("`")
        for row in rows
        for name in row.split("|")[1].split(",")
        if name.strip().startswith("`")
    }
    names.discard("CliError")  # onward.starter.errors, as the table says
    assert {"ToolError", "ToolRetryableError", "WorkspaceError", "RunNotFound"} <= names
    for name in sorted(names):
        assert issubclass(getattr(onward, name), OnwardError), name
        assert name in onward.__all__


@pytest.mark.parametrize(
    "failure",
    [
        RPCTimeoutOrCancelledError("timed out"),
        RPCError("late", RPCStatusCode.DEADLINE_EXCEEDED, b""),
    ],
)
def test_an_unanswered_update_says_it_may_still_apply(failure: Exception) -> None:
    # The server keeps an update no worker took in time: a worker killed a moment ago
    # still looks like a poller, and the next one applies it.
    expected = "may still apply it: check `onward status r1`"
    with pytest.raises(UpdateNotTaken, match=expected) as kept, _unanswered_update("r1", "approve"):
        raise failure
    assert not kept.value.repeatable
    named_call = _unanswered_update("r1", "approve", repeatable=True)
    with pytest.raises(UpdateNotTaken, match="answered once") as named, named_call:
        raise failure
    assert named.value.repeatable  # the API's 503 says when to send it again
    # Anything else is left to the caller.
    with pytest.raises(RPCError), _unanswered_update("r1", "approve"):
        raise RPCError("gone", RPCStatusCode.NOT_FOUND, b"")


async def test_an_id_started_once_starts_no_second_run_after_the_first_ended(
    api: OnwardClient,
) -> None:
    # Temporal lets a closed run's id start a new run unless told otherwise: an
    # idempotency key's run must stay the only one (the API starts keyed runs once).
    first = await api.start({"prompt": "p", "script": [{"text": "x"}]}, id=run_id(), once=True)
    assert (await api.result(first)).status == "completed"
    with pytest.raises(RunAlreadyExists):
        await api.start({"prompt": "p", "script": [{"text": "x"}]}, id=first, once=True)
    # Without once, an ended run's id may start again, as Temporal allows.
    assert await api.start({"prompt": "p", "script": [{"text": "x"}]}, id=first) == first


async def untaken_update(deadline_s: float) -> None:
    """Waits for an update that is never taken, failing as the SDK's client does."""
    with _unanswered_update("r1", "approve"):
        async with asyncio.timeout(deadline_s):
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError as err:
                raise WorkflowUpdateRPCTimeoutOrCancelledError() from err


async def test_an_update_cancelled_by_its_caller_is_a_cancel_not_a_missing_worker() -> None:
    # The SDK reports a caller's cancel as it reports the server's deadline; approvals
    # and session messages (the same mechanism) must not call it a missing worker.
    with pytest.raises(UpdateNotTaken):
        await untaken_update(0.01)
    sending = asyncio.create_task(untaken_update(30))
    await asyncio.sleep(0.01)
    sending.cancel()  # Ctrl-C, or a caller's own timeout
    with pytest.raises(asyncio.CancelledError):
        await sending


async def test_start_result_status_steps_list_trace_report(api: OnwardClient) -> None:
    since = datetime.now(UTC) - timedelta(seconds=5)
    workflow_id = await api.start({"prompt": "Add up", "script": ADD_UP}, id=run_id())
    result = await api.result(workflow_id)
    assert result.status == "completed" and result.output == "They come to 19.75."

    status = await api.status(workflow_id)
    assert (status.state, status.step) == ("completed", 2)
    steps = await api.steps(workflow_id)
    assert steps[0].tool_calls[0].result == "19.75"
    trace = await api.trace(workflow_id)
    assert trace.status == "completed" and len(trace.steps) == 2

    async def listed() -> bool:
        return workflow_id in [row.workflow_id for row in await api.list(limit=50)]

    await eventually(listed)
    report = await api.report(since)
    assert report.runs >= 1
    # As `onward report --since` takes it, or how long ago: the same runs (it crashed).
    assert (await api.report("1h")).runs >= report.runs
    assert (await api.report(timedelta(hours=1))).runs >= report.runs
    with pytest.raises(InvalidInput, match="since: 'yesterday' is neither a span"):
        await api.report("yesterday")


async def test_typed_errors(api: OnwardClient, client: Client) -> None:
    with pytest.raises(InvalidInput) as invalid:
        await api.start({"prompt": "x", "budget": {"max_tokens": -1}})
    assert invalid.value.problems[0]["loc"] == ("budget", "max_tokens")
    assert "budget.max_tokens" in str(invalid.value)
    # A blank id (an unset variable's) is not a random one.
    with pytest.raises(InvalidInput, match=r"^id: must not be blank"):
        await api.start({"prompt": "x"}, " ")
    with pytest.raises(InvalidInput, match=r"^id: must not be blank"):
        await api.open_session({}, id="")

    with pytest.raises(RunNotFound):
        await api.status("no-such-run")
    config = client.config()
    config["namespace"] = "no-such-namespace"
    elsewhere = OnwardClient(Client(**config))
    # Not "no run with id": the namespace is what is missing.
    with pytest.raises(SettingsError, match="no namespace 'no-such-namespace'"):
        await elsewhere.status("no-such-run")
    with pytest.raises(SettingsError, match="no namespace 'no-such-namespace'"):
        await elsewhere.start({"prompt": "x"})

    agent = AgentInput(prompt="slow", script=slow(40), budget={"max_tool_calls": 50})
    workflow_id = await api.start(agent, id=run_id())
    with pytest.raises(RunAlreadyExists):
        await api.start({"prompt": "again"}, id=workflow_id)

    async def stepped() -> bool:
        return bool(await api.steps(workflow_id))

    await eventually(stepped)
    with pytest.raises(RequestRejected, match="can only be raised"):
        await api.extend_budget(workflow_id, {"max_tool_calls": 0})
    budget = await api.extend_budget(workflow_id, BudgetExtension(max_tool_calls=100))
    assert budget.max_tool_calls == 100

    await api.cancel(workflow_id, "enough")
    assert (await api.result(workflow_id)).reason == "enough"
    with pytest.raises(RunEnded):
        await api.pause(workflow_id)

    # A run on a task queue no worker polls: an update is refused at once.
    idle = OnwardClient(client, task_queue=f"idle-{uuid.uuid4().hex[:8]}")
    waiting = await idle.start({"prompt": "nobody home"})
    try:
        with pytest.raises(NoWorker, match="no worker is polling task queue idle-"):
            await idle.extend_budget(waiting, {"max_tokens": 10})
        status = await idle.status(waiting)  # read from the history, no worker needed
        assert status.state == "running"
    finally:
        await client.get_workflow_handle(waiting).terminate("test over")


async def test_pause_and_resume_report_the_state_before(api: OnwardClient) -> None:
    workflow_id = await api.start({"prompt": "slow", "script": slow(40)}, id=run_id())
    try:

        async def stepped() -> bool:
            return bool(await api.steps(workflow_id))

        await eventually(stepped)
        assert await api.resume(workflow_id) == "running"  # not paused: nothing to resume
        await api.pause(workflow_id)

        async def paused() -> bool:
            return (await api.status(workflow_id)).state == "paused"

        await eventually(paused)
        assert await api.resume(workflow_id) == "paused"
    finally:
        await api.cancel(workflow_id)


async def test_resume_before_a_pause_is_reached_withdraws_it(api: OnwardClient) -> None:
    # One model call in flight for 3 s: a pause sent meanwhile waits for it to end.
    call = {"name": "calculator", "arguments": {"expression": "1 + 1"}}
    script = [{"text": "adding", "tool_calls": [call], "delay_s": 3.0}, {"text": "done"}]
    workflow_id = await api.start({"prompt": "slow", "script": script}, id=run_id())

    async def in_flight() -> bool:
        return bool((await api.status(workflow_id)).step == 0)

    await eventually(in_flight)
    await api.pause(workflow_id)

    async def pausing() -> bool:
        return (await api.status(workflow_id)).pausing

    await eventually(pausing)
    before = await api.resume_status(workflow_id)
    assert before is not None and (before.state, before.pausing) == ("running", True)
    # Withdrawn: the tool call and the next model call start without another resume.
    result = await asyncio.wait_for(api.result(workflow_id), 30)
    assert (result.status, result.output) == ("completed", "done")


async def test_unreachable_server_is_connection_failed() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConnectionFailed) as failed:
        await OnwardClient.connect(f"127.0.0.1:{port}")
    assert failed.value.address == f"127.0.0.1:{port}"


async def test_readme_python_example_runs_verbatim(
    client: Client, address: str, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("### Python API", 1)[1]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    # The example uses the default task queue, `onward`: a worker of this session's server.
    settings = WorkerSettings(task_queue=DEFAULT_TASK_QUEUE, workspace=tmp_path / "ws")
    async with build_worker(client, settings, search_attribute_names=search_attribute_names):
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",  # from the repository root, so this checkout's onward is imported
            example,
            cwd=Path(__file__).parent.parent,
            env={**os.environ, "TEMPORAL_ADDRESS": address},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
    lines = out.decode().splitlines()
    # run_main ends it past the interpreter's teardown, where the SDK's native threads
    # aborted about one run in three (temporalio/sdk-python#300): exit 0, always.
    assert process.returncode == 0, err.decode()
    assert lines[1].startswith("completed ")
    assert lines[2] == "no run with id no-such-run"


@pytest.mark.parametrize(
    "message",
    [
        "workflow execution already completed",
        "workflow update was aborted by closing workflow",  # sent as the run closed
    ],
)
def test_a_request_to_a_run_that_ended_is_run_ended(client: Client, message: str) -> None:
    onward = OnwardClient(client)
    assert isinstance(
        onward._rpc_error(RPCError(message, RPCStatusCode.NOT_FOUND, b""), "r1"), RunEnded
    )
    missing = RPCError("workflow not found for ID: r1", RPCStatusCode.NOT_FOUND, b"")
    assert isinstance(onward._rpc_error(missing, "r1"), RunNotFound)


async def test_a_read_the_connection_dropped_is_sent_again(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # CI saw DescribeTaskQueue answer CANCELLED "operation was canceled", nobody having
    # cancelled it, and `send_message` fail on it: a read is safe to send again.
    service = client.workflow_service
    real = service.describe_task_queue
    calls: list[bool] = []

    async def dropped_first(request: Any, **kwargs: Any) -> Any:
        calls.append(kwargs.get("retry", False))
        if len(calls) == 1:
            raise RPCError("operation was canceled", RPCStatusCode.CANCELLED, b"")
        return await real(request, **kwargs)

    monkeypatch.setattr(service, "describe_task_queue", dropped_first)
    onward_client = OnwardClient(client, task_queue=f"tq-{uuid.uuid4().hex[:8]}")
    assert await onward_client.has_worker() is False  # asked twice, answered
    assert calls == [True, True]  # and the SDK retries what it knows to be transient

    async def always_dropped(request: Any, **kwargs: Any) -> Any:
        calls.append(kwargs.get("retry", False))
        raise RPCError("operation was canceled", RPCStatusCode.CANCELLED, b"")

    calls.clear()
    monkeypatch.setattr(service, "describe_task_queue", always_dropped)
    with pytest.raises(onward.TemporalError, match="CANCELLED"):
        await onward_client.has_worker()
    assert len(calls) == 3  # not forever
