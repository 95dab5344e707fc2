"""``onward chat`` and ``onward send`` through the real CLI, against a real worker."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.client import Client

from conftest import REPO, RunningWorker, eventually, run_onward
from onward.client import OnwardClient
from onward.contracts import DEFAULT_TASK_QUEUE, SessionReply, StepRecord
from onward.starter.session_commands import _print_reply
from onward.worker import WorkerSettings, build_worker

SCRIPT = [{"text": "hi there"}, {"text": "hello again"}, {"text": "third reply"}]


async def chat(env: dict[str, str], *args: str, lines: str) -> tuple[int, str, str]:
    """``onward chat ARGS`` with ``lines`` on its stdin, to the end."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "onward.starter.cli",
        "chat",
        *args,
        cwd=Path.cwd(),
        env={**os.environ, **env},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(lines.encode()), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def cli_setup(address: str, worker: RunningWorker, tmp_path: Path) -> tuple[dict[str, str], Path]:
    """The CLI's environment for ``worker``, and SCRIPT in a file for ``--script``."""
    env = {
        "TEMPORAL_ADDRESS": address,
        "ONWARD_TASK_QUEUE": worker.task_queue,
        "ONWARD_HOME": str(tmp_path / "home"),
    }
    script = tmp_path / "script.json"
    script.write_text(json.dumps(SCRIPT))
    return env, script


async def test_chat_send_and_close_through_the_cli(
    client: Client, address: str, worker: RunningWorker, tmp_path: Path
) -> None:
    env, script = cli_setup(address, worker, tmp_path)

    code, out, err = await chat(
        env, "--script", str(script), "--system", "be brief", lines="hello\n\nagain\n"
    )
    assert code == 0, err
    first, *replies = out.splitlines()
    assert first.startswith("session ")
    session_id = first.removeprefix("session ")
    assert replies == ["hi there", "hello again"]
    assert f"onward chat {session_id}" in err  # end of input leaves it open
    # A session has no pause, cancel or steer: refused, not sent to be dropped.
    for command in (["pause"], ["cancel"], ["steer", "hurry"], ["extend", "--max-tokens", "9"]):
        refused = await run_onward(command[0], session_id, *command[1:], env=env)
        assert refused.code == 2, (command, refused.stderr)
        assert f"{session_id} is a session" in refused.stderr
    # Nor a run's steps or result: an open session's would wait for days, in silence.
    for reading in ("result", "watch", "steps", "trace"):
        refused = await run_onward(reading, session_id, env=env)
        assert refused.code == 2, (reading, refused.stderr)
        assert f"its messages' runs are {session_id}-m1" in refused.stderr
        assert refused.stdout == "" and "watching" not in refused.stderr  # refused first
    read = await run_onward("steps", f"{session_id}-m1", "--json", env=env)
    assert read.code == 0 and read.json()[0]["text"] == "hi there", read.stderr
    not_a_session = await run_onward("send", f"{session_id}-m1", "hi", env=env)
    assert not_a_session.code == 2 and "is a run, not a session" in not_a_session.stderr

    keyed = ("send", session_id, "one more", "--json", "--idempotency-key", "k1")
    sent = await run_onward(*keyed, env=env)
    assert sent.code == 0, sent.stderr
    reply = sent.json()
    assert reply["reply"] == "third reply"
    assert reply["number"] == 3
    assert reply["status"] == "completed"
    assert reply["usage"]["model_calls"] == 1
    again = await run_onward(*keyed, env=env)  # answered once: the same reply
    assert again.code == 0 and again.json() == reply, again.stderr
    shown = await run_onward("status", session_id, env=env)  # where to check before resending
    assert "turns:  3 answered\n" in shown.stdout, shown.stdout
    assert "reply:  third reply\n" in shown.stdout
    reused = await run_onward("send", session_id, "other", "--idempotency-key", "k1", env=env)
    assert reused.code == 2 and "another message" in reused.stderr, reused.stderr
    plain = await run_onward("send", session_id, "no key", "--json", env=env)  # past the script
    assert plain.code == 0 and plain.json()["number"] == 4, plain.stderr

    code, out, err = await chat(env, session_id, "--model", "openai:gpt-4o", lines="/close\n")
    assert code == 0, err
    assert "4 message(s) so far" in err
    # A new session's settings do not change this one: said, not silently dropped.
    assert f"--model: a new session's settings; {session_id} keeps its own" in err
    result = await OnwardClient(client, task_queue=worker.task_queue).session_result(session_id)
    assert result.turns == 4

    closed = await run_onward("send", session_id, "anyone?", env=env)
    assert closed.code == 1
    assert "closed" in closed.stderr
    code, out, err = await chat(env, session_id, lines="")  # not "stays open"
    assert code == 1 and "closed" in err and "stays open" not in err, err

    unknown = await run_onward("chat", "no-such-session", env=env)
    assert unknown.code == 2
    assert "no-such-session" in unknown.stderr


async def test_send_exits_as_the_messages_run_ended(
    client: Client, address: str, worker: RunningWorker, tmp_path: Path
) -> None:
    env, _ = cli_setup(address, worker, tmp_path)
    api = OnwardClient(client, task_queue=worker.task_queue)
    session_id = await api.open_session({"script": SCRIPT, "budget": {"max_tokens": 1}})
    first = await run_onward("send", session_id, "hello", env=env)
    assert (first.code, first.stdout.strip()) == (0, "hi there"), first.stderr
    used_up = await run_onward("send", session_id, "again", "--json", env=env)
    assert used_up.json()["status"] == "budget_exceeded", used_up.stdout
    assert used_up.code == 3, used_up.stderr  # as `onward run`'s: not a success
    await api.close_session(session_id)


async def test_chat_json_prints_only_json_documents(
    address: str, worker: RunningWorker, tmp_path: Path
) -> None:
    env, script = cli_setup(address, worker, tmp_path)
    code, out, err = await chat(env, "--json", "--script", str(script), lines="hello\nagain\n")
    assert code == 0, err
    replies, decoder, at = [], json.JSONDecoder(), 0
    while out[at:].strip():  # one document per reply, and nothing else
        reply, at = decoder.raw_decode(out, len(out) - len(out[at:].lstrip()))
        replies.append(reply)
    assert [reply["reply"] for reply in replies] == ["hi there", "hello again"]
    session_id = err.splitlines()[0].removeprefix("session ")
    assert [reply["run_id"] for reply in replies] == [f"{session_id}-m1", f"{session_id}-m2"]


async def test_chat_takes_an_output_schema_and_sends_show_the_object(
    address: str, worker: RunningWorker, tmp_path: Path
) -> None:
    # `onward run --output-schema` had no `onward chat` counterpart, though sessions
    # take output_schema: a typed conversation needed the Python API or the HTTP one.
    env, _ = cli_setup(address, worker, tmp_path)
    schema = tmp_path / "city.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"city": {"type": "string"}}}))
    script = tmp_path / "answers.json"
    script.write_text(
        json.dumps(
            [
                {"tool_calls": [{"name": "final_answer", "arguments": {"city": "Tokyo"}}]},
                {"tool_calls": [{"name": "final_answer", "arguments": {"city": "Delhi"}}]},
            ]
        )
    )
    code, out, err = await chat(
        env, "--output-schema", str(schema), "--script", str(script), lines="largest?\n"
    )
    assert code == 0, err
    session_id, reply = out.splitlines()
    assert json.loads(reply) == {"city": "Tokyo"}  # the reply is the object's JSON
    sent = await run_onward("send", session_id.removeprefix("session "), "next?", "--json", env=env)
    assert sent.code == 0, sent.stderr
    assert sent.json()["structured_output"] == {"city": "Delhi"}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"type": "string"}))
    refused, _, err = await chat(env, "--output-schema", str(bad), lines="")
    assert refused == 2 and "output_schema" in err, err


async def test_readme_sessions_python_example_runs_verbatim(
    client: Client, address: str, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Sessions: multi-turn conversations", 1)[1]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    # The example uses the default task queue, `onward`: a worker of this session's server.
    settings = WorkerSettings(task_queue=DEFAULT_TASK_QUEUE, workspace=tmp_path / "ws")
    async with build_worker(client, settings, search_attribute_names=search_attribute_names):
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",  # from the repository root, so this checkout's onward is imported
            example,
            cwd=REPO,
            env={**os.environ, "TEMPORAL_ADDRESS": address},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
    lines = out.decode().splitlines()
    # run_main ends it past the SDK's teardown crash (temporalio/sdk-python#300): exit 0.
    assert process.returncode == 0, (lines, err.decode())
    assert len(lines) == 4, lines
    assert lines[0].startswith("Done. ")  # the scripted model's answer and its tokens
    assert "model_calls=2" in lines[1]
    assert lines[2:] == ["['Done.', 'Done.']", "2"]


async def test_close_ends_a_session_from_the_command_line(
    client: Client, address: str, worker: RunningWorker, tmp_path: Path
) -> None:
    # Only `onward chat` then /close could close one, though every refusal said to.
    env, script = cli_setup(address, worker, tmp_path)
    code, out, err = await chat(env, "--script", str(script), lines="hello\n")
    assert code == 0, err
    session_id = out.splitlines()[0].removeprefix("session ")
    paused = await run_onward("pause", session_id, env=env)
    assert f"or close the session (onward close {session_id})" in paused.stderr

    async def listed_as(status: str) -> bool:
        done = await run_onward("list", "--sessions", "--limit", "100", "--json", env=env)
        assert done.code == 0, done.stderr
        return {"workflow_id": session_id, "status": status}.items() <= next(
            (row for row in done.json() if row["workflow_id"] == session_id), {}
        ).items()

    await eventually(lambda: listed_as("open"))
    runs_only = await run_onward("list", "--sessions", "--status", "running", env=env)
    assert runs_only.code == 2 and "--status and --model are for runs" in runs_only.stderr
    not_a_session = await run_onward("close", f"{session_id}-m1", env=env)
    assert not_a_session.code == 2, not_a_session.stderr
    closing = await run_onward("close", session_id, "--json", env=env)
    assert closing.code == 0, closing.stderr
    assert closing.json() == {"id": session_id, "closing": True}
    result = await OnwardClient(client, task_queue=worker.task_queue).session_result(session_id)
    assert result.turns == 1
    await eventually(lambda: listed_as("completed"))
    again = await run_onward("close", session_id, env=env)
    assert again.code == 1 and "closed" in again.stderr, again.stderr


NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_reply_a_fallback_model_gave_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    # `onward chat` and `send` with --fallback-model: the reply is the output, and stderr
    # says which model failed and which answered, as `onward run` prints under its step.
    failed = "openai:gpt-4o-mini: gave up after 8 attempts: openai: 503 Service Unavailable"
    step = StepRecord(
        step=1, started_at=NOW, text="hi", model="anthropic:claude-x", failed_models=[failed]
    )
    _print_reply(SessionReply(reply="hi", steps=[step]), json=False)
    out, err = capsys.readouterr()
    assert out == "hi\n"
    assert err.splitlines() == [f"↷ failed: {failed}", "↷ answered by anthropic:claude-x"]
    _print_reply(
        SessionReply(reply="hi", steps=[StepRecord(step=1, started_at=NOW, text="hi")]), json=False
    )
    assert capsys.readouterr() == ("hi\n", "")


async def test_chat_refuses_stdin_for_a_file_it_would_read_its_messages_from() -> None:
    done = await run_onward(
        "chat", "--output-schema", "-", env={"TEMPORAL_ADDRESS": "127.0.0.1:9"}, timeout_s=30
    )
    assert done.code == 2, done.stderr
    assert done.stderr.strip() == (
        "onward: --output-schema -: chat reads its messages from stdin; give a file"
    )
