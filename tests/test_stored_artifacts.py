"""Run workspaces kept in PostgreSQL: written on a worker, read from anywhere else."""

from __future__ import annotations

import hashlib
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from postgres_server import postgres_url
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from api_server import serving
from conftest import eventually, run_onward, running_worker
from onward.activities.tool_calls import ToolActivities
from onward.activities.tools import ToolContext, builtin_registry
from onward.activities.tools.stored_files import (
    list_stored,
    normalize_path,
    read_stored,
    write_stored,
)
from onward.activities.tools.workspace import (
    ListFilesArgs,
    ReadFileArgs,
    WriteFileArgs,
    list_files,
    read_file,
    write_file,
)
from onward.client import OnwardClient
from onward.contracts import AgentInput, AgentResult, ArtifactsRequest, ToolOutcome, ToolRequest
from onward.errors import InvalidInput, OnwardError, StoreError, ToolError, WorkspaceError
from onward.starter.api import ApiSettings, api_app
from onward.starter.api.tenants import DEFAULT_TENANT
from onward.store import FileBackend, TranscriptStore, open_store
from onward.worker import WorkerSettings, build_worker
from onward.workflows import AgentWorkflow

__all__ = ["postgres_url"]  # the fixture, imported for the tests below


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest_asyncio.fixture
async def pg_store(postgres_url: str) -> AsyncIterator[TranscriptStore]:
    opened = await open_store(postgres_url)
    try:
        yield opened
    finally:
        await opened.close()


def files_of(store: TranscriptStore) -> FileBackend:
    assert store.files is not None
    return store.files


# ---------------------------------------------------------------------------
# The file tools on the store answer as the directory tools do
# ---------------------------------------------------------------------------

Op = WriteFileArgs | ReadFileArgs | ListFilesArgs
SCRIPT: list[Op] = [
    ListFilesArgs(),
    WriteFileArgs(path="notes/a.md", content="alpha\n"),
    WriteFileArgs(path="notes/a.md", content="beta\n", append=True),
    WriteFileArgs(path="./top.txt", content="héllo"),
    WriteFileArgs(path="notes/deep/../b.md", content="b"),
    ReadFileArgs(path="notes/a.md"),
    ReadFileArgs(path="top.txt"),
    ReadFileArgs(path="missing.md"),
    ReadFileArgs(path="notes"),
    WriteFileArgs(path="notes", content="x"),
    WriteFileArgs(path="top.txt/inner", content="x"),
    ListFilesArgs(),
    ListFilesArgs(path="notes"),
    ListFilesArgs(path="top.txt"),
    ListFilesArgs(path="nowhere"),
]


async def test_stored_file_tools_answer_like_the_directory_tools(
    pg_store: TranscriptStore, tmp_path: Path
) -> None:
    files, workspace = files_of(pg_store), f"run-{uuid.uuid4().hex[:8]}"
    local, stored = [], []
    for number, op in enumerate(SCRIPT):
        key = f"wf/1/call-{number}"
        ctx = ToolContext(idempotency_key=key, call_id=str(number), workspace=tmp_path)
        local.append(_local_call(op, ctx))
        stored.append(await _stored_call(files, workspace, op, key))
    assert stored == local
    assert "alpha\nbeta\n" in stored
    assert "a.md\nb.md\ndeep/" not in stored  # nothing was written under deep/


def _local_call(op: Op, ctx: ToolContext) -> str:
    try:
        if isinstance(op, WriteFileArgs):
            return str(write_file.fn(op, ctx))
        if isinstance(op, ReadFileArgs):
            return str(read_file.fn(op, ctx))
        return str(list_files.fn(op, ctx))
    except ToolError as err:
        return f"error: {_without_os_detail(str(err))}"


async def _stored_call(files: FileBackend, workspace: str, op: Op, key: str) -> str:
    try:
        if isinstance(op, WriteFileArgs):
            return await write_stored(files, workspace, op, key)
        if isinstance(op, ReadFileArgs):
            return await read_stored(files, workspace, op)
        return await list_stored(files, workspace, op)
    except ToolError as err:
        return f"error: {_without_os_detail(str(err))}"


def _without_os_detail(message: str) -> str:
    # The directory tool reports the OS's words for a file in the way; the store its own.
    return message.split(":", 1)[0] if message.startswith("cannot write") else message


async def test_a_retried_append_writes_once_and_answers_the_same(
    pg_store: TranscriptStore,
) -> None:
    files, workspace = files_of(pg_store), f"run-{uuid.uuid4().hex[:8]}"
    args = WriteFileArgs(path="log.txt", content="one line\n", append=True)
    first = await write_stored(files, workspace, args, "wf/1/c1")
    again = await write_stored(files, workspace, args, "wf/1/c1")  # the same call, retried
    other = await write_stored(files, workspace, args, "wf/2/c1")  # another call
    assert first == again == other == "appended 9 characters to log.txt"
    assert await files.read_file(workspace, "log.txt") == b"one line\none line\n"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/etc/passwd", "is absolute"),
        ("../x", "outside the workspace"),
        ("a/../../x", "outside the workspace"),
        (".onward-ledger/x.json", "reserved"),
        ("new\nline.txt", "control character"),
    ],
)
def test_paths_leaving_the_stored_workspace_are_refused(path: str, message: str) -> None:
    with pytest.raises(WorkspaceError, match=message):
        normalize_path(path)


# ---------------------------------------------------------------------------
# Through a worker and a client on "another machine"
# ---------------------------------------------------------------------------


async def test_artifacts_written_on_a_worker_are_read_by_a_client_without_its_disk(
    client: Client,
    tmp_path: Path,
    search_attribute_names: list[str],
    pg_store: TranscriptStore,
    postgres_url: str,
    address: str,
) -> None:
    script = [
        {
            "text": "writing",
            "tool_calls": [
                {"name": "write_file", "arguments": {"path": "report.md", "content": "# Q3\n"}},
                {"name": "write_file", "arguments": {"path": "data/n.csv", "content": "a,1\n"}},
            ],
        },
        {
            "tool_calls": [
                {
                    "name": "write_file",
                    "arguments": {"path": "data/n.csv", "content": "b,2\n", "append": True},
                },
                {"name": "list_files", "arguments": {"path": "data"}},
            ]
        },
        {"tool_calls": [{"name": "read_file", "arguments": {"path": "data/n.csv"}}]},
        {"text": "done"},
    ]
    worker_disk = tmp_path / "worker-machine"
    async with running_worker(
        client, worker_disk, search_attribute_names, store=pg_store
    ) as worker:
        # The API's tenant (no keys: "default"), tagged, so the API below may read it.
        run = {"prompt": "p", "script": script, "tenant": DEFAULT_TENANT}
        run_id = await OnwardClient(client, task_queue=worker.task_queue).start(
            run, tag_tenant=True
        )
        handle = client.get_workflow_handle(run_id, result_type=AgentResult)
        result = await handle.result()
    assert result.status == "completed"
    assert [call.result for step in result.steps[1:3] for call in step.tool_calls] == [
        "appended 4 characters to data/n.csv",
        "n.csv",
        "a,1\nb,2\n",
    ]
    expected = [
        ("data/n.csv", 8, sha(b"a,1\nb,2\n")),
        ("report.md", 5, sha(b"# Q3\n")),
    ]
    assert [(a.path, a.size, a.sha256) for a in result.artifacts or []] == expected
    # Nothing went to the worker's disk: the files are in the database.
    assert not any(path.is_file() for path in worker_disk.rglob("*"))

    # A client elsewhere: another workspace root, the store's URL.
    elsewhere = tmp_path / "client-machine"
    reader = OnwardClient(client, task_queue=worker.task_queue, store=postgres_url)
    try:
        listed = await reader.artifacts(handle.id, workspace_root=elsewhere)
        assert [(a.path, a.size, a.sha256) for a in listed] == expected
        assert await reader.artifact(handle.id, "data/n.csv") == b"a,1\nb,2\n"
        with pytest.raises(InvalidInput, match=r"has no artifact 'nope\.md'"):
            await reader.artifact(handle.id, "nope.md")
        with pytest.raises(InvalidInput, match="outside the workspace"):
            await reader.artifact(handle.id, "../x")
    finally:
        await reader.aclose()

    # The CLI, connected by ONWARD_STORE.
    env = {
        "TEMPORAL_ADDRESS": address,
        "ONWARD_TASK_QUEUE": worker.task_queue,
        "ONWARD_WORKSPACE": str(elsewhere),
        "ONWARD_STORE": postgres_url,
    }
    shown = await run_onward("artifacts", handle.id, "--json", env=env)
    assert shown.code == 0, shown.stderr
    assert [(a["path"], a["size"], a["sha256"]) for a in shown.json()] == expected
    got = await run_onward("artifacts", handle.id, "--get", "report.md", env=env)
    assert (got.code, got.stdout) == (0, "# Q3\n"), got.stderr

    # The HTTP API, its client reading the same store.
    api_client = OnwardClient(client, task_queue=worker.task_queue, store=pg_store)
    async with (
        serving(api_app(ApiSettings(), api_client)) as base,
        httpx.AsyncClient(base_url=base, timeout=30) as http,
    ):
        answer = await http.get(f"/v1/runs/{handle.id}/artifacts")
        assert answer.status_code == 200, answer.text
        assert [(a["path"], a["size"], a["sha256"]) for a in answer.json()] == expected
        one = await http.get(f"/v1/runs/{handle.id}/artifacts/data/n.csv")
        assert (one.status_code, one.content) == (200, b"a,1\nb,2\n")
        assert one.headers["content-type"] == "application/octet-stream"
        missing = await http.get(f"/v1/runs/{handle.id}/artifacts/nope.md")
        assert missing.status_code == 404, missing.text
        assert (await http.get("/v1/runs/no-such-run/artifacts")).status_code == 404


async def test_an_unreachable_store_is_an_onward_error(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens once the socket closes
    async with running_worker(client, tmp_path, search_attribute_names) as worker:
        handle = await worker.start(
            AgentInput.model_validate({"prompt": "p", "script": [{"text": "done"}]})
        )
        await handle.result()
    url = f"postgresql://onward@127.0.0.1:{port}/postgres?connect_timeout=2"
    reader = OnwardClient(client, task_queue=worker.task_queue, store=url)
    with pytest.raises(StoreError, match="cannot use the PostgreSQL store") as caught:
        await reader.artifacts(handle.id)
    assert isinstance(caught.value, OnwardError)


async def test_the_activity_uses_the_store_for_runs_with_a_workspace_key_only(
    pg_store: TranscriptStore, tmp_path: Path
) -> None:
    activities = ToolActivities(builtin_registry(), tmp_path, store=pg_store)
    key = f"run-{uuid.uuid4().hex[:8]}"

    async def write(workspace: str | None, path: str) -> ToolOutcome:
        request = ToolRequest(
            name="write_file",
            arguments={"path": path, "content": "x"},
            call_id="c1",
            idempotency_key=f"{key}/1/{path}",
            workspace=workspace,
        )
        outcome: ToolOutcome = await ActivityEnvironment().run(activities.execute_tool, request)
        return outcome

    assert (await write(key, "kept.md")).content == "wrote 1 character to kept.md"
    assert await files_of(pg_store).read_file(key, "kept.md") == b"x"
    assert not (tmp_path / "runs").exists()
    # A run begun before per-run workspaces keeps the worker's root on disk.
    assert (await write(None, "old.md")).content == "wrote 1 character to old.md"
    assert (tmp_path / "old.md").read_text() == "x"
    listed = await ActivityEnvironment().run(
        activities.list_artifacts, ArtifactsRequest(workspace=key)
    )
    assert [a.path for a in listed] == ["kept.md"]


async def test_memory_tools_refuse_runs_without_a_memory_scope(tmp_path: Path) -> None:
    store = await open_store(str(tmp_path / "store"))
    activities = ToolActivities(builtin_registry(), tmp_path, store=store)
    request = ToolRequest(
        name="recall", arguments={"query": "x"}, call_id="c1", idempotency_key="wf/1/c1"
    )
    outcome = await ActivityEnvironment().run(activities.execute_tool, request)
    assert outcome.error is not None and "memory is not available" in outcome.error
    scoped = request.model_copy(update={"tenant": "t", "memory_scope": "shared"})
    outcome = await ActivityEnvironment().run(activities.execute_tool, scoped)
    assert outcome == ToolOutcome(content="nothing remembered matches 'x'", call_id="c1")
    await store.close()


async def test_a_run_moving_to_a_worker_on_another_disk_keeps_its_files(
    client: Client, tmp_path: Path, search_attribute_names: list[str], postgres_url: str
) -> None:
    task_queue = f"tq-{uuid.uuid4().hex[:12]}"
    script = [
        {
            "text": "writing",
            "tool_calls": [
                {"name": "write_file", "arguments": {"path": "plan.md", "content": "step 1"}}
            ],
        },
        {
            # The model call that asks for the read is slow: the first worker stops
            # meanwhile, and the read runs on the second.
            "text": "reading",
            "tool_calls": [{"name": "read_file", "arguments": {"path": "plan.md"}}],
            "delay_s": 2,
        },
        {"text": "done"},
    ]

    async def machine(name: str) -> tuple[TranscriptStore, Worker]:
        store = await open_store(postgres_url)
        settings = WorkerSettings(task_queue=task_queue, workspace=tmp_path / name)
        built = build_worker(
            client, settings, search_attribute_names=search_attribute_names, store=store
        )
        return store, built

    first_store, first = await machine("first")
    async with first:
        handle = await client.start_workflow(
            AgentWorkflow.run,
            AgentInput.model_validate({"prompt": "p", "script": script}),
            id=f"moving-{uuid.uuid4().hex[:8]}",
            task_queue=task_queue,
        )

        async def wrote() -> bool:
            status = await handle.query(AgentWorkflow.status)
            return status.step >= 2  # step 1 (the write) closed

        await eventually(wrote)
    await first_store.close()
    second_store, second = await machine("second")
    async with second:
        result = await handle.result()
    await second_store.close()
    assert result.status == "completed"
    (read,) = result.steps[1].tool_calls
    assert (read.result, read.error) == ("step 1", None)
    assert [a.path for a in result.artifacts or []] == ["plan.md"]
    for disk in ("first", "second"):
        assert not any(path.is_file() for path in (tmp_path / disk).rglob("*"))
