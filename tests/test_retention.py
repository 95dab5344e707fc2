"""Store retention: `onward prune-store` deletes what runs that are over left in the store.

Real runs and a real session on a real worker write the transcripts; the test
then makes them old (file times, ``written_at``) and checks what goes and what
stays: nothing a running run, its root or an open session may still read.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import time
import uuid
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from postgres_server import postgres_url
from psycopg.conninfo import conninfo_to_dict
from temporalio.client import Client

from conftest import eventually, run_onward, running_worker
from onward import retention
from onward.artifacts import RUNS_DIR, workspace_dir
from onward.client import OnwardClient, RunInfo
from onward.contracts import Message
from onward.errors import ConnectionFailed, SettingsError
from onward.retention import NAMES_NO_RUN, PruneInterrupted, prune_store
from onward.store import LocalStore, TranscriptStore, open_store
from onward.store.postgres import PostgresStore

__all__ = ["postgres_url"]  # the fixture, imported for the tests below

OLD = timedelta(days=30)
"""The age pruned in these tests; what they make old is 40 days old."""
HELLO = [Message(role="user", content="hello")]


def make_old(root: Path, *names: str) -> None:
    """Set everything under ``names`` (directories under ``root``) 40 days back."""
    then = time.time() - 40 * 86_400
    for name in names:
        directory = root / name
        for path in directory.rglob("*"):
            os.utime(path, (then, then))
        os.utime(directory, (then, then))


def gone(prefix: str = "gone") -> str:
    """A transcript id of a run Temporal does not know (retention dropped it)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}@{uuid.uuid4()}"


async def test_prune_deletes_what_is_over_and_old_and_keeps_what_runs_need(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    root = tmp_path / "store"
    store = TranscriptStore(LocalStore(root))
    async with running_worker(
        client, tmp_path / "workspace", search_attribute_names, store=store
    ) as worker:
        onward = OnwardClient(client, task_queue=worker.task_queue)
        done = await onward.start({"prompt": "hi", "tools": [], "script": [{"text": "done"}]})
        await onward.result(done)
        waiting = await onward.start(
            {
                "prompt": "add",
                "tools": ["calculator"],
                "approve_tools": ["calculator"],
                "script": [
                    {"tool_calls": [{"name": "calculator", "arguments": {"expression": "1+1"}}]}
                ],
            }
        )
        session = await onward.open_session(
            {"tools": [], "script": [{"text": "hi there"}, {"text": "still here"}]}
        )
        await onward.send_message(session, "hello")

        async def awaiting() -> bool:
            return (await onward.status(waiting)).state == "awaiting_approval"

        await eventually(awaiting)
        written = {path.name for path in root.iterdir()}
        done_t, waiting_t, message_t = (
            _one(written, f"{done}@"),
            _one(written, f"{waiting}@"),
            _one(written, f"{session}-m1@"),
        )
        gone_t, unknown_message_t = gone(), f"{session}-m9@{uuid.uuid4()}"
        hashed_t = "sha256-" + "0" * 64
        for transcript in (gone_t, unknown_message_t, hashed_t):
            await store.write_messages(transcript, 0, HELLO)
        await store.put_cached("tool-cache." + "1" * 64, b'{"result": 1}')
        fresh_t = gone("fresh")
        everything = {path.name for path in root.iterdir()} - {"memory"}
        make_old(root, *everything)
        await store.write_messages(fresh_t, 0, HELLO)  # written now: not old

        planned = await prune_store(onward, store, OLD, dry_run=True)
        assert {path.name for path in root.iterdir()} >= everything | {fresh_t}  # untouched
        report = await prune_store(onward, store, OLD)
        assert report.model_dump(exclude={"dry_run"}) == planned.model_dump(exclude={"dry_run"})

        assert set(report.transcripts) == {done_t, gone_t, "tool-cache." + "1" * 64}
        kept = {item.id: item.reason for item in report.kept}
        specs_t = _one(written, "sha256-")  # the runs' tool specs, which running runs read
        assert kept == {
            waiting_t: f"{waiting} is running",
            message_t: f"{session}, whose {session}-m1 it is, is running",
            unknown_message_t: f"{session}, whose {session}-m9 it is, is running",
            hashed_t: NAMES_NO_RUN,
            specs_t: NAMES_NO_RUN,
        }
        left = {path.name for path in root.iterdir()}
        assert not left & set(report.transcripts)
        assert {waiting_t, message_t, unknown_message_t, hashed_t, fresh_t} <= left
        # What is kept still reads: the next message's run copies the conversation from
        # the first's transcript (it fails if that is gone).
        reply = await onward.send_message(session, "again")
        assert (reply.status, reply.reply) == ("completed", "still here")
        await onward.close_session(session)
        await onward.session_result(session)
        await onward.cancel(waiting, "done")
        await onward.result(waiting)

        # Once the session has closed (and the run ended), theirs go too.
        second_t = _one({path.name for path in root.iterdir()}, f"{session}-m2@")
        make_old(root, waiting_t, message_t, unknown_message_t, second_t)
        later = await prune_store(onward, store, OLD)
        assert set(later.transcripts) == {waiting_t, message_t, unknown_message_t, second_t}
        assert {item.id for item in later.kept} == {hashed_t, specs_t}


def _one(names: set[str], prefix: str) -> str:
    [found] = [name for name in names if name.startswith(prefix)]
    return found


async def test_a_transcript_written_since_it_was_listed_is_not_deleted(tmp_path: Path) -> None:
    backend = LocalStore(tmp_path / "store")
    store = TranscriptStore(backend)
    transcript = gone()
    await store.write_messages(transcript, 0, HELLO)
    make_old(tmp_path / "store", transcript)
    assert await backend.stale_transcripts(OLD) == [transcript]
    await store.write_messages(transcript, 1, HELLO)  # the run wrote again meanwhile
    assert not await backend.delete_transcript(transcript, OLD)
    assert len(await store.messages(transcript)) == 2


async def test_an_append_waiting_while_its_file_is_pruned_writes_a_new_file(
    tmp_path: Path,
) -> None:
    backend = LocalStore(tmp_path / "store")
    transcript = gone()
    await TranscriptStore(backend).write_messages(transcript, 0, HELLO)
    path = tmp_path / "store" / transcript / "messages.log"
    with path.open("rb") as held:  # as a prune holds it
        fcntl.flock(held, fcntl.LOCK_EX)
        appending = asyncio.create_task(
            asyncio.to_thread(LocalStore._append, path, b'1\t{"role": "user"}\n')
        )

        async def opened() -> bool:  # the append has the file open, waiting for the lock
            return _open_count(path) >= 2

        await eventually(opened)
        path.unlink()
        path.parent.rmdir()
    await appending
    assert path.read_bytes() == b'1\t{"role": "user"}\n'  # not lost in the deleted file


def _open_count(path: Path) -> int:
    """How many of this process's file descriptors name ``path``."""
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            count += os.readlink(fd) == str(path)
    return count


async def test_postgresql_prune_waits_for_a_write_under_way_and_keeps_it(
    postgres_url: str,
) -> None:
    store = await open_store(postgres_url)
    backend = store.backend
    assert isinstance(backend, PostgresStore)
    transcript = gone()
    try:
        await store.write_messages(transcript, 0, HELLO)
        async with await psycopg.AsyncConnection.connect(postgres_url) as writer:
            await writer.execute(
                "UPDATE onward_transcript SET written_at = now() - interval '40 days' "
                "WHERE transcript = %s",
                (transcript,),
            )
            await writer.commit()
            # A write under way: it holds the transcript's lock as the store's writes do.
            await writer.execute(
                "SELECT pg_advisory_xact_lock_shared(hashtextextended(%s, 0))",
                (f"onward transcript {transcript}",),
            )
            await writer.execute(
                "INSERT INTO onward_transcript (transcript, kind, position, document) "
                "VALUES (%s, 'messages', 1, '{}'::jsonb)",
                (transcript,),
            )
            deleting = asyncio.create_task(backend.delete_transcript(transcript, OLD))
            await asyncio.sleep(0.3)  # the delete waits for the writer's lock
            assert not deleting.done()
            await writer.commit()
        assert not await deleting  # it saw the new row: written now
        assert len(await backend.read(transcript, "messages")) == 2
        # And the other way round: the store's own write waits for a prune under way.
        async with await psycopg.AsyncConnection.connect(postgres_url) as pruning:
            await pruning.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (f"onward transcript {transcript}",),
            )
            writing = asyncio.create_task(store.write_messages(transcript, 2, HELLO))
            await asyncio.sleep(0.3)
            assert not writing.done()
            await pruning.commit()
        await writing
        assert len(await backend.read(transcript, "messages")) == 3
    finally:
        await store.close()


async def test_postgresql_prunes_transcripts_and_workspaces_of_runs_that_are_gone(
    client: Client, postgres_url: str
) -> None:
    store = await open_store(postgres_url)
    backend = store.backend
    assert isinstance(backend, PostgresStore)
    # A workflow no worker serves is running all the same.
    running = f"running-{uuid.uuid4().hex[:8]}"
    handle = await client.start_workflow("Nobody", id=running, task_queue=f"none-{running}")
    try:
        gone_t, running_t, fresh_t = gone(), f"{running}@{uuid.uuid4()}", gone("fresh")
        gone_w = f"gone-{uuid.uuid4().hex[:8]}"
        for transcript in (gone_t, running_t, fresh_t):
            await store.write_messages(transcript, 0, HELLO)
        for workspace in (gone_w, running):
            await backend.write_file(
                workspace, "notes.md", b"# notes", append=False, call="c1", result="wrote"
            )
        async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
            await conn.execute(
                "UPDATE onward_transcript SET written_at = now() - interval '40 days' "
                "WHERE transcript = ANY(%s)",
                ([gone_t, running_t],),
            )
            await conn.execute(
                "UPDATE onward_file SET written_at = now() - interval '40 days' "
                "WHERE workspace = ANY(%s)",
                ([gone_w, running],),
            )
        onward = OnwardClient(client)
        report = await prune_store(onward, store, OLD)
        assert report.transcripts == [gone_t]
        assert report.workspaces == [gone_w]
        assert {(item.kind, item.id) for item in report.kept} == {
            ("transcript", running_t),
            ("workspace", running),
        }
        assert await store.messages(gone_t) == []
        assert len(await store.messages(running_t)) == len(await store.messages(fresh_t)) == 1
        assert await backend.read_file(gone_w, "notes.md") is None
        assert await backend.read_file(running, "notes.md") == b"# notes"
        # The workspace's call records went with it: the same call id writes again.
        again = await backend.write_file(
            gone_w, "notes.md", b"new", append=False, call="c1", result="wrote again"
        )
        assert again == "wrote again"
        assert not await backend.delete_transcript(fresh_t, OLD)  # written a moment ago
    finally:
        await handle.terminate()
        await store.close()


async def test_run_workspace_directories_go_with_their_runs(client: Client, tmp_path: Path) -> None:
    root = tmp_path / "workspace"
    running = f"running-{uuid.uuid4().hex[:8]}"
    odd = f"a running id/{uuid.uuid4().hex[:8]}"  # no file name: its directory's is hashed
    handles = [
        await client.start_workflow("Nobody", id=workflow_id, task_queue=f"none-{running}")
        for workflow_id in (running, odd)
    ]
    owners = [running, odd, "gone-run", "a gone id/x", "fresh-run"]
    directories = {owner: workspace_dir(root, owner) for owner in owners}
    for directory in directories.values():
        (directory / "out").mkdir(parents=True)
        (directory / "out" / "notes.md").write_text("# notes")
    make_old(root / RUNS_DIR, *(directories[owner].name for owner in owners[:4]))
    store = TranscriptStore(LocalStore(tmp_path / "store"))

    report = await prune_store(OnwardClient(client), store, OLD, workspace_root=root)
    assert report.workspaces == sorted(str(directories[o]) for o in ("gone-run", "a gone id/x"))
    assert {item.id: item.reason for item in report.kept} == {
        str(directories[running]): f"{running} is running",
        str(directories[odd]): f"{odd} is running",
    }
    assert [owner for owner in owners if directories[owner].exists()] == [
        running,
        odd,
        "fresh-run",
    ]
    for handle in handles:
        await handle.terminate()


async def test_a_sub_agent_or_message_keeps_its_transcript_while_an_ancestor_runs(
    client: Client, tmp_path: Path
) -> None:
    running = f"running-{uuid.uuid4().hex[:8]}"
    handle = await client.start_workflow("Nobody", id=running, task_queue=f"none-{running}")
    try:
        store = TranscriptStore(LocalStore(tmp_path / "store"))
        # Runs Temporal has dropped, whose ids name a running parent or session.
        child_t = f"{running}.delegate-2-c1.delegate-1-c9@{uuid.uuid4()}"
        message_child_t = f"{running}-m3.delegate-1-c2@{uuid.uuid4()}"
        orphan_t = f"gone-{uuid.uuid4().hex[:6]}.delegate-1-c1@{uuid.uuid4()}"
        for transcript in (child_t, message_child_t, orphan_t):
            await store.write_messages(transcript, 0, HELLO)
        make_old(tmp_path / "store", child_t, message_child_t, orphan_t)
        report = await prune_store(OnwardClient(client), store, OLD)
        assert report.transcripts == [orphan_t]
        assert {item.id: item.reason for item in report.kept} == {
            child_t: f"{running}, whose {child_t.partition('@')[0]} it is, is running",
            message_child_t: (
                f"{running}, whose {message_child_t.partition('@')[0]} it is, is running"
            ),
        }
    finally:
        await handle.terminate()


async def test_a_namespace_the_server_lacks_prunes_nothing(client: Client, tmp_path: Path) -> None:
    store = TranscriptStore(LocalStore(tmp_path / "store"))
    transcript = gone()
    await store.write_messages(transcript, 0, HELLO)
    make_old(tmp_path / "store", transcript)
    elsewhere = await Client.connect(
        client.service_client.config.target_host,
        namespace="no-such-namespace",
        data_converter=client.data_converter,
    )
    with pytest.raises(SettingsError, match="no-such-namespace"):
        await prune_store(OnwardClient(elsewhere), store, OLD)
    assert (tmp_path / "store" / transcript).exists()
    report = await prune_store(OnwardClient(client), store, OLD, dry_run=True)
    assert report.namespace == client.namespace and report.retention_s is not None


async def test_the_cli_prunes_the_configured_store(
    address: str, tmp_path: Path, client: Client
) -> None:
    root = tmp_path / "store"
    store = TranscriptStore(LocalStore(root))
    transcript = gone()
    await store.write_messages(transcript, 0, HELLO)
    make_old(root, transcript)
    workspace = workspace_dir(tmp_path / "workspace", "gone-run")
    workspace.mkdir(parents=True)
    (workspace / "notes.md").write_text("# notes")
    make_old(workspace.parent, workspace.name)
    env = {
        "TEMPORAL_ADDRESS": address,
        "ONWARD_STORE": str(root),
        "ONWARD_WORKSPACE": str(tmp_path / "workspace"),
        "ONWARD_HOME": str(tmp_path / "home"),
    }
    listed = await run_onward("prune-store", "--older-than", "30d", "--dry-run", "--json", env=env)
    assert listed.code == 0, listed.stderr
    assert listed.json()["transcripts"] == [transcript] and listed.json()["dry_run"]
    assert (root / transcript).exists()
    pruned = await run_onward("prune-store", "--older-than", "4w", env=env)
    assert pruned.code == 0, pruned.stderr
    assert pruned.stdout.startswith("deleted 1 transcript(s) and tool-cache entries and 1 work")
    assert f"(store {root}, runs of namespace default)" in pruned.stdout
    assert not (root / transcript).exists() and not workspace.exists()
    bad = await run_onward("prune-store", "--older-than", "soon", env=env)
    assert bad.code == 2 and "--older-than" in bad.stderr
    minutes = await run_onward("prune-store", "--older-than", "30m", env=env)
    assert minutes.code == 2 and "under a day" in minutes.stderr
    forced = await run_onward("prune-store", "--older-than", "30m", "--force", env=env)
    assert forced.code == 0, forced.stderr
    elsewhere = {**env, "ONWARD_STORE": str(tmp_path / "no-store")}
    missing = await run_onward("prune-store", "--older-than", "30d", env=elsewhere)
    assert missing.code == 2 and "no store at" in missing.stderr


async def test_prune_needs_an_age_of_a_second_at_least(client: Client, tmp_path: Path) -> None:
    store = TranscriptStore(LocalStore(tmp_path / "store"))
    with pytest.raises(ValueError, match="older_than"):
        await prune_store(OnwardClient(client), store, timedelta(milliseconds=500))


async def test_a_worker_reads_a_transcript_written_again_after_a_prune_afresh(
    tmp_path: Path,
) -> None:
    worker, pruner = LocalStore(tmp_path / "store"), LocalStore(tmp_path / "store")
    store = TranscriptStore(worker)
    transcript = gone()
    many = [Message(role="user", content=f"message {n}") for n in range(120)]
    await store.write_messages(transcript, 0, many)
    assert len(await store.messages(transcript)) == 120  # now cached by the worker
    make_old(tmp_path / "store", transcript)
    assert await pruner.delete_transcript(transcript, OLD)
    assert await store.messages(transcript) == []
    await store.write_messages(transcript, 0, HELLO)
    assert await store.messages(transcript) == HELLO
    # Past where the old file ended: read from the new file's start, not mid-line.
    more = [Message(role="user", content=f"new {n:04d}") for n in range(300)]
    await TranscriptStore(pruner).write_messages(transcript, 1, more)
    assert await store.messages(transcript) == [*HELLO, *more]


async def test_a_plain_workspace_is_kept_for_its_running_run_while_visibility_lags(
    client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention, "RUNNING", 'WorkflowId = "listed-by-no-one"')  # lagging
    root = tmp_path / "workspace"
    running = f"running-{uuid.uuid4().hex[:8]}"
    handle = await client.start_workflow("Nobody", id=running, task_queue=f"none-{running}")
    try:
        directory = workspace_dir(root, f"{running}-m2.delegate-1-c1")  # a sub-agent's name
        for path in (workspace_dir(root, running), directory):
            path.mkdir(parents=True)
            (path / "notes.md").write_text("# notes")
        make_old(root / RUNS_DIR, running, directory.name)
        store = TranscriptStore(LocalStore(tmp_path / "store"))
        report = await prune_store(OnwardClient(client), store, OLD, workspace_root=root)
        assert report.workspaces == []
        assert {item.id for item in report.kept} == {
            str(workspace_dir(root, running)),
            str(directory),
        }
    finally:
        await handle.terminate()


class FailingAfter(OnwardClient):
    """A client whose lookups fail (Temporal gone) after the first ``calls``."""

    def __init__(self, client: Client, calls: int) -> None:
        super().__init__(client)
        self.calls = calls

    async def info(self, run_id: str) -> RunInfo:
        self.calls -= 1
        if self.calls < 0:
            raise ConnectionFailed("Temporal went away")
        return await super().info(run_id)


async def test_a_prune_cut_short_says_what_it_deleted(client: Client, tmp_path: Path) -> None:
    store = TranscriptStore(LocalStore(tmp_path / "store"))
    first, second = gone("a-gone"), gone("b-gone")
    for transcript in (first, second):
        await store.write_messages(transcript, 0, HELLO)
    make_old(tmp_path / "store", first, second)
    with pytest.raises(PruneInterrupted, match="after deleting 1 transcript") as stopped:
        await prune_store(FailingAfter(client, calls=1), store, OLD)
    assert stopped.value.report.transcripts == [first]
    assert f"({first}): Temporal went away" in str(stopped.value)
    assert not (tmp_path / "store" / first).exists() and (tmp_path / "store" / second).exists()
    # Nothing deleted yet: the error itself.
    with pytest.raises(ConnectionFailed):
        await prune_store(FailingAfter(client, calls=0), store, OLD)


async def test_the_cli_never_prints_the_store_password(address: str, postgres_url: str) -> None:
    reading = conninfo_to_dict(postgres_url)
    url = (
        f"postgresql:///{reading['dbname']}?host={reading['host']}&port={reading['port']}"
        f"&user={reading['user']}&password=TOPSECRET"  # trust auth takes any password
    )
    env = {"TEMPORAL_ADDRESS": address, "ONWARD_STORE": url}
    listed = await run_onward("prune-store", "--older-than", "30d", "--dry-run", env=env)
    assert listed.code == 0, listed.stderr
    assert "&password=***, runs of namespace" in listed.stdout
    assert "TOPSECRET" not in listed.stdout + listed.stderr
