"""The workspace file tools, their idempotent writes, and the ``execute_tool`` activity."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
from pathlib import Path

import pytest
from pydantic import BaseModel
from temporalio.testing import ActivityEnvironment

from onward.activities.tool_calls import RESULT_CAP_CHARS, ToolActivities
from onward.activities.tools import BUILTIN_TOOLS, Tool, ToolContext, builtin_registry
from onward.activities.tools import workspace as workspace_module
from onward.activities.tools.workspace import (
    LEDGER_DIR,
    ListFilesArgs,
    ReadFileArgs,
    WriteFileArgs,
    list_files,
    read_file,
    write_file,
)
from onward.contracts import ToolOutcome, ToolRequest
from onward.errors import ToolError, WorkspaceError


def context(workspace: Path, key: str = "wf-1/step-1/call-1") -> ToolContext:
    return ToolContext(idempotency_key=key, call_id=key.rsplit("/", 1)[-1], workspace=workspace)


def run(item: Tool, args: BaseModel, ctx: ToolContext) -> str:
    """Call a tool as the activity does: ``fn(args, ctx)``; the file tools are sync."""
    result = item.fn(args, ctx)
    assert isinstance(result, str)
    return result


def write(
    workspace: Path, path: str, content: str, *, append: bool = False, key: str = "wf-1/1/c1"
) -> str:
    args = WriteFileArgs(path=path, content=content, append=append)
    return run(write_file, args, context(workspace, key))


def read(workspace: Path, path: str) -> str:
    return run(read_file, ReadFileArgs(path=path), context(workspace))


def listing(workspace: Path, path: str = ".") -> str:
    return run(list_files, ListFilesArgs(path=path), context(workspace))


# ---------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------


def test_write_then_read(tmp_path: Path) -> None:
    assert write(tmp_path, "notes.txt", "hello world!") == "wrote 12 characters to notes.txt"
    assert read(tmp_path, "notes.txt") == "hello world!"
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "hello world!"


def test_overwrite_replaces_and_append_adds(tmp_path: Path) -> None:
    write(tmp_path, "a.txt", "first\n", key="k1")
    write(tmp_path, "a.txt", "second\n", key="k2")
    assert read(tmp_path, "a.txt") == "second\n"
    assert write(tmp_path, "a.txt", "third\n", append=True, key="k3") == (
        "appended 6 characters to a.txt"
    )
    assert read(tmp_path, "a.txt") == "second\nthird\n"


def test_write_creates_workspace_and_parent_dirs(tmp_path: Path) -> None:
    workspace = tmp_path / "does" / "not" / "exist"
    assert write(workspace, "deep/er/file.md", "# hi") == "wrote 4 characters to deep/er/file.md"
    assert (workspace / "deep" / "er" / "file.md").read_text(encoding="utf-8") == "# hi"


def test_counts_characters_not_bytes(tmp_path: Path) -> None:
    assert write(tmp_path, "u.txt", "héllo ✓") == "wrote 7 characters to u.txt"
    assert read(tmp_path, "u.txt") == "héllo ✓"


def test_read_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match=r"^no such file: missing\.txt$"):
        read(tmp_path, "missing.txt")


def test_read_and_write_a_directory_are_refused(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    with pytest.raises(ToolError, match="'sub' is a directory; use list_files"):
        read(tmp_path, "sub")
    with pytest.raises(ToolError, match="'sub' is a directory"):
        write(tmp_path, "sub", "x")


def test_write_under_a_file_reports_the_os_error(tmp_path: Path) -> None:
    write(tmp_path, "plain", "x", key="k1")
    with pytest.raises(ToolError, match=r"^cannot write 'plain/child\.txt': "):
        write(tmp_path, "plain/child.txt", "y", key="k2")


def test_list_files_sorted_with_dirs_marked_and_ledger_hidden(tmp_path: Path) -> None:
    write(tmp_path, "b.txt", "b", key="k1")
    write(tmp_path, "a.txt", "a", append=True, key="k2")  # appends leave a ledger record
    write(tmp_path, "sub/c.txt", "c", key="k3")
    assert (tmp_path / LEDGER_DIR).is_dir()
    assert listing(tmp_path) == "a.txt\nb.txt\nsub/"
    assert listing(tmp_path, "sub") == "c.txt"
    assert listing(tmp_path, "./sub/../sub") == "c.txt"


def test_list_files_empty_missing_and_not_a_directory(tmp_path: Path) -> None:
    assert listing(tmp_path / "fresh") == "(empty directory)"
    with pytest.raises(ToolError, match=r"^no such directory: nope$"):
        listing(tmp_path, "nope")
    write(tmp_path, "f.txt", "x")
    with pytest.raises(ToolError, match=r"^not a directory: f\.txt"):
        listing(tmp_path, "f.txt")


# ---------------------------------------------------------------------------
# Confinement
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("../x", "path '../x' is outside the workspace"),
        ("a/../../x", "path 'a/../../x' is outside the workspace"),
        ("/etc/passwd", "path '/etc/passwd' is absolute"),
        (LEDGER_DIR, "is reserved"),
        (f"{LEDGER_DIR}/x.json", "is reserved"),
        ("a\x00b", "null byte"),
        ("new\nline.txt", "control character"),  # listed as two files, new and line.txt
        ("tab\there.md", "control character"),
    ],
)
def test_paths_outside_the_workspace_are_refused(path: str, message: str, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    with pytest.raises(WorkspaceError, match=message):
        write(workspace, path, "x")
    with pytest.raises(WorkspaceError, match=message):
        read(workspace, path)
    with pytest.raises(WorkspaceError, match=message):
        listing(workspace, path)
    assert not (tmp_path / "x").exists()


def test_symlink_out_of_the_workspace_is_refused(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret", encoding="utf-8")
    (workspace / "link").symlink_to(outside, target_is_directory=True)
    (workspace / "file-link").symlink_to(outside / "secret.txt")

    with pytest.raises(WorkspaceError, match=r"'link/secret\.txt' is outside the workspace"):
        read(workspace, "link/secret.txt")
    with pytest.raises(WorkspaceError, match="'file-link' is outside the workspace"):
        read(workspace, "file-link")
    with pytest.raises(WorkspaceError, match="outside the workspace"):
        write(workspace, "link/new.txt", "x")
    with pytest.raises(WorkspaceError, match="outside the workspace"):
        listing(workspace, "link")
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text(encoding="utf-8") == "secret"


def test_symlink_inside_the_workspace_is_followed(tmp_path: Path) -> None:
    write(tmp_path, "real/data.txt", "inside")
    (tmp_path / "alias").symlink_to(tmp_path / "real", target_is_directory=True)
    assert read(tmp_path, "alias/data.txt") == "inside"


def test_workspace_reached_through_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "ws").symlink_to(tmp_path / "real", target_is_directory=True)
    write(tmp_path / "ws", "f.txt", "x")
    assert read(tmp_path / "ws", "f.txt") == "x"


# ---------------------------------------------------------------------------
# Idempotency: at-least-once delivery must not write twice
# ---------------------------------------------------------------------------


def test_same_key_appended_twice_writes_once(tmp_path: Path) -> None:
    write(tmp_path, "log.txt", "head\n", key="wf/2/c1")
    first = write(tmp_path, "log.txt", "line\n", append=True, key="wf/3/c1")
    second = write(tmp_path, "log.txt", "line\n", append=True, key="wf/3/c1")
    assert first == second == "appended 5 characters to log.txt"
    assert read(tmp_path, "log.txt") == "head\nline\n"


def test_different_keys_append_twice(tmp_path: Path) -> None:
    write(tmp_path, "log.txt", "line\n", append=True, key="wf/3/c1")
    write(tmp_path, "log.txt", "line\n", append=True, key="wf/4/c1")
    assert read(tmp_path, "log.txt") == "line\nline\n"


def test_done_key_returns_recorded_result_without_writing(tmp_path: Path) -> None:
    write(tmp_path, "f.txt", "v1", key="wf/1/c1")
    write(tmp_path, "f.txt", "v2", key="wf/2/c1")
    # A late retry of the first call must not undo the second one.
    assert write(tmp_path, "f.txt", "v1", key="wf/1/c1") == "wrote 2 characters to f.txt"
    assert read(tmp_path, "f.txt") == "v2"


class WorkerKilled(Exception):
    """Stands in for a worker dying mid-call; the retry runs in a fresh attempt."""


def test_crash_after_append_before_done_leaves_one_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "log.txt", "before\n", append=True, key="wf/1/c1")

    def die(self: object, result: str) -> None:
        raise WorkerKilled

    with monkeypatch.context() as patch:
        patch.setattr(workspace_module._Ledger, "mark_done", die)
        with pytest.raises(WorkerKilled):
            write(tmp_path, "log.txt", "line\n", append=True, key="wf/2/c1")
    assert read(tmp_path, "log.txt") == "before\nline\n"  # the append landed, done did not

    assert write(tmp_path, "log.txt", "line\n", append=True, key="wf/2/c1") == (
        "appended 5 characters to log.txt"
    )
    assert read(tmp_path, "log.txt") == "before\nline\n"
    assert write(tmp_path, "log.txt", "line\n", append=True, key="wf/2/c1")
    assert read(tmp_path, "log.txt") == "before\nline\n"


def test_crash_in_the_middle_of_an_append_leaves_one_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "log.txt", "before\n", append=True, key="wf/1/c1")

    def write_half_then_die(target: Path, data: bytes, mode: str) -> None:
        with target.open(mode) as file:
            file.write(data[: len(data) // 2])
        raise WorkerKilled

    with monkeypatch.context() as patch:
        patch.setattr(workspace_module, "_write_bytes", write_half_then_die)
        with pytest.raises(WorkerKilled):
            write(tmp_path, "log.txt", "a long line\n", append=True, key="wf/2/c1")
    assert read(tmp_path, "log.txt") == "before\na long"  # half of the line

    write(tmp_path, "log.txt", "a long line\n", append=True, key="wf/2/c1")
    assert read(tmp_path, "log.txt") == "before\na long line\n"


def test_a_retry_keeps_what_a_parallel_call_appended_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def die(self: object, result: str) -> None:
        raise WorkerKilled

    with monkeypatch.context() as patch:
        patch.setattr(workspace_module._Ledger, "mark_done", die)
        with pytest.raises(WorkerKilled):
            write(tmp_path, "log.txt", "AAAA\n", append=True, key="wf/1/a")
    write(tmp_path, "log.txt", "BBBB\n", append=True, key="wf/1/b")  # same step, in parallel
    assert write(tmp_path, "log.txt", "AAAA\n", append=True, key="wf/1/a") == (
        "appended 5 characters to log.txt"
    )
    assert read(tmp_path, "log.txt") == "AAAA\nBBBB\n"

    # A half-written copy followed by another call's data is not cut: nothing is lost.
    def write_half_then_die(target: Path, data: bytes, mode: str) -> None:
        with target.open(mode) as file:
            file.write(data[:2])
        raise WorkerKilled

    with monkeypatch.context() as patch:
        patch.setattr(workspace_module, "_write_bytes", write_half_then_die)
        with pytest.raises(WorkerKilled):
            write(tmp_path, "log.txt", "CCCC\n", append=True, key="wf/2/c")
    write(tmp_path, "log.txt", "DDDD\n", append=True, key="wf/2/d")
    write(tmp_path, "log.txt", "CCCC\n", append=True, key="wf/2/c")
    assert read(tmp_path, "log.txt") == "AAAA\nBBBB\nCCDDDD\nCCCC\n"


def test_appends_to_one_file_take_turns(tmp_path: Path) -> None:
    target = tmp_path / "log.txt"
    target.write_text("", encoding="utf-8")
    with target.open("rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        appending = threading.Thread(
            target=write, args=(tmp_path, "log.txt", "line\n"), kwargs={"append": True}
        )
        appending.start()
        appending.join(0.2)
        assert appending.is_alive()  # waits for the lock before measuring the file
        assert target.read_text(encoding="utf-8") == ""
    appending.join(5)
    assert not appending.is_alive()
    assert target.read_text(encoding="utf-8") == "line\n"


def test_crash_before_the_file_existed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def die(self: object, result: str) -> None:
        raise WorkerKilled

    with monkeypatch.context() as patch:
        patch.setattr(workspace_module._Ledger, "mark_done", die)
        with pytest.raises(WorkerKilled):
            write(tmp_path, "new.txt", "only once\n", append=True, key="wf/1/c1")
    write(tmp_path, "new.txt", "only once\n", append=True, key="wf/1/c1")
    assert read(tmp_path, "new.txt") == "only once\n"


def test_ledger_records_intent_then_done(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = "wf/1/c1"
    record = tmp_path / LEDGER_DIR / f"{hashlib.sha256(key.encode()).hexdigest()}.json"
    write(tmp_path, "log.txt", "12345", append=True, key="wf/0/c1")

    def die(self: object, result: str) -> None:
        raise WorkerKilled

    with monkeypatch.context() as patch:
        patch.setattr(workspace_module._Ledger, "mark_done", die)
        with pytest.raises(WorkerKilled):
            write(tmp_path, "log.txt", "abc", append=True, key=key)
    intent = json.loads(record.read_text(encoding="utf-8"))
    assert intent["done"] is False
    assert intent["size_before"] == 5

    write(tmp_path, "log.txt", "abc", append=True, key=key)
    done = json.loads(record.read_text(encoding="utf-8"))
    assert done["done"] is True
    assert done["result"] == "appended 3 characters to log.txt"
    # Atomic writes leave no temp files behind.
    assert sorted(os.listdir(tmp_path / LEDGER_DIR)) == sorted(
        f"{hashlib.sha256(k.encode()).hexdigest()}.json" for k in ("wf/0/c1", key)
    )


def test_failed_append_is_rolled_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "log.txt", "kept\n", append=True, key="wf/1/c1")

    def disk_full(target: Path, data: bytes, mode: str) -> None:
        with target.open(mode) as file:
            file.write(data[:3])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(workspace_module, "_write_bytes", disk_full)
    with pytest.raises(ToolError, match=r"^cannot write 'log\.txt': No space left on device$"):
        write(tmp_path, "log.txt", "lost\n", append=True, key="wf/2/c1")
    assert (tmp_path / "log.txt").read_text(encoding="utf-8") == "kept\n"


def test_file_tools_are_regular_builtin_activities() -> None:
    assert [item.name for item in BUILTIN_TOOLS] == [
        "calculator",
        "write_file",
        "read_file",
        "list_files",
        "remember",
        "recall",
    ]
    for item in (write_file, read_file, list_files):
        assert item.builtin
        assert not item.local
    assert builtin_registry().builtin_names() == sorted(item.name for item in BUILTIN_TOOLS)
    assert write_file.spec().parameters["required"] == ["path", "content"]


# ---------------------------------------------------------------------------
# Through the execute_tool activity
# ---------------------------------------------------------------------------


async def execute(workspace: Path, name: str, **arguments: object) -> ToolOutcome:
    activities = ToolActivities(builtin_registry(), workspace)
    request = ToolRequest(
        name=name, arguments=dict(arguments), call_id="c1", idempotency_key="wf/1/c1"
    )
    return await ActivityEnvironment().run(activities.execute_tool, request)


async def test_activity_runs_a_tool(tmp_path: Path) -> None:
    outcome = await execute(tmp_path, "calculator", expression="6 * 7")
    assert outcome == ToolOutcome(content="42", call_id="c1")


async def test_activity_reports_bad_arguments_by_name(tmp_path: Path) -> None:
    outcome = await execute(tmp_path, "calculator", expression=42)
    assert outcome.error is not None
    assert outcome.error.startswith("invalid arguments for calculator: expression: ")
    missing = await execute(tmp_path, "write_file", path="a.txt")
    assert missing.error == "invalid arguments for write_file: content: Field required"
    assert not (tmp_path / "a.txt").exists()


async def test_activity_turns_tool_errors_into_outcomes(tmp_path: Path) -> None:
    outcome = await execute(tmp_path, "calculator", expression="1 / 0")
    assert outcome == ToolOutcome(error="calculator: division by zero", call_id="c1")
    escape = await execute(tmp_path, "read_file", path="../secret")
    assert escape.error == "path '../secret' is outside the workspace"
    assert escape.content == ""


async def test_activity_reports_unknown_tools(tmp_path: Path) -> None:
    outcome = await execute(tmp_path, "rm_rf")
    assert outcome.error is not None
    assert outcome.error.startswith("unknown tool 'rm_rf' (this worker has: ")
    assert "calculator" in outcome.error


async def test_activity_returns_read_file_whole_up_to_its_own_limit(tmp_path: Path) -> None:
    # read_file stops at MAX_READ_BYTES, well under the activity's cap; the activity
    # returns all of it (through external storage) and the workflow cuts the model's copy.
    limit = workspace_module.MAX_READ_BYTES
    assert limit < RESULT_CAP_CHARS
    (tmp_path / "big.txt").write_text("x" * (limit + 500), encoding="utf-8")
    outcome = await execute(tmp_path, "read_file", path="big.txt")
    assert not outcome.truncated
    assert outcome.content.startswith("x" * limit)
    assert outcome.content.endswith(f"[file is {limit + 500} bytes; showing the first {limit}]")
    (tmp_path / "small.txt").write_text("x" * limit, encoding="utf-8")
    exact = await execute(tmp_path, "read_file", path="small.txt")
    assert exact == ToolOutcome(content="x" * limit, call_id="c1")
