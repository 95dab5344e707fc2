"""A workspace per run, its files listed in the result, and read back by client and CLI."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from parent_workflow import ParentWorkflow
from slow_end_store import SlowEndStore
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Replayer

from conftest import RunningWorker, run_onward
from onward.artifacts import workspace_dir
from onward.client import OnwardClient
from onward.connection import DATA_CONVERTER
from onward.contracts import DEFAULT_TASK_QUEUE, AgentInput
from onward.errors import InvalidInput, RunNotFound
from onward.starter.calls import CallPairing
from onward.starter.history import REQUEST_TYPES, RESULT_TYPES
from onward.store import open_store
from onward.tuning import WORKFLOW_TASK_TIMEOUT
from onward.worker import WorkerSettings, build_worker
from onward.workflows import AgentWorkflow


def writes(*files: tuple[str, str]) -> list[dict[str, Any]]:
    calls = [
        {"name": "write_file", "arguments": {"path": path, "content": content}}
        for path, content in files
    ]
    return [{"text": "writing", "tool_calls": calls}, {"text": "done"}]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def test_each_run_lists_its_own_files_in_its_result(worker: RunningWorker) -> None:
    first = await worker.start({"prompt": "p", "script": writes(("same.txt", "first run"))})
    second = await worker.start(
        {
            "prompt": "p",
            "script": [
                {
                    "tool_calls": [
                        {"name": "read_file", "arguments": {"path": "same.txt"}},
                        {"name": "write_file", "arguments": {"path": "d/x.md", "content": "x"}},
                    ]
                },
                {"text": "done"},
            ],
        }
    )
    one, two = await first.result(), await second.result()
    assert one.artifacts is not None and two.artifacts is not None
    assert [(a.path, a.size, a.sha256) for a in one.artifacts] == [
        ("same.txt", 9, sha("first run"))
    ]
    # The second run does not see the first run's file, and lists only its own.
    read = two.steps[0].tool_calls[0]
    assert read.error is not None and "no such file" in read.error
    assert [(a.path, a.sha256) for a in two.artifacts] == [("d/x.md", sha("x"))]
    assert (workspace_dir(worker.workspace, first.id) / "same.txt").read_text() == "first run"


async def test_a_run_without_tool_activities_lists_nothing(worker: RunningWorker) -> None:
    result = await worker.run({"prompt": "p", "script": [{"text": "no tools"}]})
    assert result.artifacts is None


async def calls_of(handle: WorkflowHandle[Any, Any]) -> list[tuple[str, str]]:
    """``(activity type, kind)`` of each call in the run's history, in order."""
    pairing = CallPairing(REQUEST_TYPES, RESULT_TYPES)
    async for event in handle.fetch_history_events():
        pairing.add(event)
    return [(call.activity_type, call.trace.kind) for call in pairing.calls]


async def test_a_run_whose_tools_take_no_context_lists_nothing(worker: RunningWorker) -> None:
    # calculator and wait cannot reach the workspace: no list_artifacts activity at the end.
    calls = [
        {"name": "calculator", "arguments": {"expression": "6*7"}},
        {"name": "wait", "arguments": {"seconds": 0.01}},
    ]
    handle = await worker.start(
        {"prompt": "p", "script": [{"text": "sum", "tool_calls": calls}, {"text": "42"}]}
    )
    result = await handle.result()
    assert [call.status for call in result.steps[0].tool_calls] == ["ok", "ok"]
    assert result.artifacts is None
    assert "list_artifacts" not in [kind for kind, _ in await calls_of(handle)]


async def test_a_file_tool_among_others_still_lists_the_files(worker: RunningWorker) -> None:
    calls = [
        {"name": "calculator", "arguments": {"expression": "1+1"}},
        {"name": "write_file", "arguments": {"path": "w.txt", "content": "2"}},
    ]
    handle = await worker.start(
        {"prompt": "p", "script": [{"tool_calls": calls}, {"text": "done"}]}
    )
    result = await handle.result()
    assert result.artifacts is not None and [a.path for a in result.artifacts] == ["w.txt"]
    # The end's write and listing are local activities (no round trip through the server).
    assert (await calls_of(handle))[-2:] == [
        ("write_transcript", "local_activity"),
        ("list_artifacts", "local_activity"),
    ]


async def test_an_end_that_outlasts_its_workflow_task_replays(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    # The end's write takes longer than the workflow task's heartbeat, so the local
    # activities span workflow tasks; the run, queried after it closed (a replay of
    # its whole history by a new worker) and replayed from its history, still replays.
    settings = WorkerSettings(
        task_queue=f"tq-{uuid.uuid4().hex[:12]}",
        workspace=tmp_path / "ws",
        store_url=str(tmp_path / "store"),
    )
    store = SlowEndStore(await open_store(settings.store_url))
    script = writes(("slow.md", "written before a slow end"))
    async with build_worker(
        client, settings, search_attribute_names=search_attribute_names, store=store
    ):
        handle = await client.start_workflow(
            AgentWorkflow.run,
            AgentInput.model_validate({"prompt": "p", "script": script}),
            id=f"slow-end-{uuid.uuid4().hex[:8]}",
            task_queue=settings.task_queue,
            task_timeout=WORKFLOW_TASK_TIMEOUT,
        )
        result = await handle.result()
    assert result.artifacts is not None and [a.path for a in result.artifacts] == ["slow.md"]
    history = await handle.fetch_history()
    kinds = [event.event_type for event in history.events]
    last_model_call = max(
        index
        for index, event in enumerate(history.events)
        if event.HasField("activity_task_completed_event_attributes")
    )
    tasks_at_the_end = kinds[last_model_call:].count(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
    assert tasks_at_the_end >= 2, "the end's local activities did not span a workflow task"
    async with build_worker(client, settings, search_attribute_names=search_attribute_names):
        status = await handle.query(AgentWorkflow.status)
    assert (status.state, status.step) == ("completed", result.usage.steps)
    replayer = Replayer(workflows=[AgentWorkflow], data_converter=DATA_CONVERTER)
    assert (await replayer.replay_workflow(history)).replay_failure is None


async def test_the_client_reads_artifacts_from_the_workspace_root(worker: RunningWorker) -> None:
    handle = await worker.start({"prompt": "p", "script": writes(("r.md", "# report\n"))})
    await handle.result()
    client = OnwardClient(worker.client, task_queue=worker.task_queue)
    root = worker.workspace
    (listed,) = await client.artifacts(handle.id, workspace_root=root)
    assert (listed.path, listed.sha256) == ("r.md", sha("# report\n"))
    assert await client.artifact(handle.id, "r.md", workspace_root=root) == b"# report\n"
    with pytest.raises(InvalidInput, match=r"has no artifact 'nope\.md'"):
        await client.artifact(handle.id, "nope.md", workspace_root=root)
    with pytest.raises(InvalidInput, match="outside the workspace"):
        await client.artifact(handle.id, "../../x", workspace_root=root)
    with pytest.raises(RunNotFound):
        await client.artifacts("no-such-run", workspace_root=root)


async def test_files_kept_elsewhere_are_not_read_as_no_files(
    worker: RunningWorker, address: str, tmp_path: Path
) -> None:
    # A client away from the worker's workspace (another machine, another directory).
    handle = await worker.start({"prompt": "p", "script": writes(("r.md", "x"), ("s.md", "y"))})
    await handle.result()
    client = OnwardClient(worker.client, task_queue=worker.task_queue)
    elsewhere = tmp_path / "elsewhere"
    told = rf"run {handle.id} wrote 2 files \(r\.md, s\.md\), but its workspace is not in "
    with pytest.raises(InvalidInput, match=f"^workspace_root: {told}"):
        await client.artifacts(handle.id, workspace_root=elsewhere)
    with pytest.raises(InvalidInput, match=f"^workspace_root: {told}"):
        await client.artifact(handle.id, "r.md", workspace_root=elsewhere)
    env = {"TEMPORAL_ADDRESS": address, "ONWARD_TASK_QUEUE": worker.task_queue}
    listed = await run_onward("artifacts", handle.id, env=env, cwd=tmp_path)
    assert listed.code == 2
    assert f"{tmp_path}/.onward/workspace on this machine" in listed.stderr
    # A run that wrote nothing has no directory either: it has no artifacts.
    quiet = await worker.start({"prompt": "p", "script": [{"text": "nothing written"}]})
    await quiet.result()
    assert await client.artifacts(quiet.id, workspace_root=elsewhere) == []


async def test_onward_artifacts_lists_and_gets(worker: RunningWorker, address: str) -> None:
    handle = await worker.start({"prompt": "p", "script": writes(("out/a.txt", "alpha"))})
    await handle.result()
    env = {
        "TEMPORAL_ADDRESS": address,
        "ONWARD_TASK_QUEUE": worker.task_queue,
        "ONWARD_WORKSPACE": str(worker.workspace),
    }
    listed = await run_onward("artifacts", handle.id, "--json", env=env)
    assert listed.code == 0, listed.stderr
    assert listed.json() == [{"path": "out/a.txt", "size": 5, "sha256": sha("alpha")}]
    got = await run_onward("artifacts", handle.id, "--get", "out/a.txt", env=env)
    assert (got.code, got.stdout) == (0, "alpha")
    missing = await run_onward("artifacts", handle.id, "--get", "b.txt", env=env)
    assert missing.code == 2
    assert "has no artifact 'b.txt'" in missing.stderr


async def test_readme_long_lived_python_example_runs_verbatim(
    client: Client, address: str, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("## Long-lived agents", 1)[1].split("### From Python", 1)[1]
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
    # A plain interpreter exit can rarely abort in the Temporal SDK's native threads after
    # all output (temporalio/sdk-python#300); that is not the example's doing.
    crashed_at_exit = process.returncode == -signal.SIGABRT and b"Fatal Python error" in err
    assert process.returncode == 0 or (crashed_at_exit and lines), err.decode()
    assert lines == ["completed ['n.md']"]


async def test_a_sub_agent_writes_into_its_parents_workspace(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    settings = WorkerSettings(task_queue=f"tq-{uuid.uuid4().hex[:12]}", workspace=tmp_path)
    parent_id = f"parent-{uuid.uuid4().hex[:8]}"
    child = AgentInput.model_validate({"prompt": "p", "script": writes(("sub.md", "from child"))})
    async with build_worker(
        client,
        settings,
        search_attribute_names=search_attribute_names,
        workflows=[ParentWorkflow],
    ):
        result = await client.execute_workflow(
            ParentWorkflow.run, child, id=parent_id, task_queue=settings.task_queue
        )
    assert result.artifacts is not None
    assert [a.path for a in result.artifacts] == ["sub.md"]
    assert (workspace_dir(tmp_path, parent_id) / "sub.md").read_text() == "from child"
    assert not workspace_dir(tmp_path, f"{parent_id}-sub").exists()
