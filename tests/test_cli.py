"""The ``onward`` command, run as a real subprocess against the session's dev server.

The worker runs in-process (the ``worker`` fixture, on its own task queue);
each command is a separate ``python -m onward.starter.cli`` process, as a user would
run it, so exit codes, stdout and stderr are the real ones.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from conftest import (
    Completed,
    RunningWorker,
    eventually,
    run_onward,
    running_worker,
    spawn_onward,
)
from onward.client import OnwardClient
from onward.contracts import AgentInput
from onward.workflows import AgentWorkflow

ROOT = Path(__file__).resolve().parent.parent

CALC_SCRIPT: list[dict[str, Any]] = [
    {
        "text": "I need the total first.",
        "tool_calls": [{"name": "calculator", "arguments": {"expression": "17 * 3 + 4"}}],
        "usage": {"input_tokens": 100, "output_tokens": 20},
    },
    {
        "text": "Now save it and check.",
        "tool_calls": [
            {"name": "write_file", "arguments": {"path": "total.txt", "content": "55\n"}},
            {"name": "read_file", "arguments": {"path": "missing.txt"}},
        ],
        "usage": {"input_tokens": 150, "output_tokens": 30},
    },
    {"text": "The total is 55.", "usage": {"input_tokens": 200, "output_tokens": 5}},
]


def slow_script(turns: int, delay_s: float) -> list[dict[str, Any]]:
    """``turns`` calculator turns, each model call taking ``delay_s``, then an answer."""
    script: list[dict[str, Any]] = [
        {
            "text": f"turn {n}",
            "tool_calls": [{"name": "calculator", "arguments": {"expression": f"{n} + {n}"}}],
            "delay_s": delay_s,
        }
        for n in range(1, turns + 1)
    ]
    script.append({"text": "all done"})
    return script


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Onward:
    """Runs ``onward`` against one server and task queue."""

    address: str
    task_queue: str
    home: Path

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "TEMPORAL_ADDRESS": self.address,
            "ONWARD_TASK_QUEUE": self.task_queue,
            "ONWARD_HOME": str(self.home),
            **extra,
        }

    async def __call__(self, *args: str, timeout_s: float = 60, **env: str) -> Completed:
        return await run_onward(*args, env=self.env(**env), timeout_s=timeout_s)

    async def ok_json(self, *args: str) -> Any:
        done = await self(*args, "--json")
        assert done.code == 0, done.stderr
        return done.json()

    async def state(self, workflow_id: str) -> str:
        status = await self.ok_json("status", workflow_id)
        state: str = status["state"]
        return state


@pytest.fixture
def onward(address: str, worker: RunningWorker, tmp_path: Path) -> Onward:
    return Onward(address, worker.task_queue, tmp_path / "home")


@pytest.fixture
def script_file(tmp_path: Path) -> Path:
    path = tmp_path / "script.json"
    path.write_text(json.dumps(CALC_SCRIPT))
    return path


def write_script(tmp_path: Path, script: list[dict[str, Any]]) -> str:
    path = tmp_path / f"script-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps(script))
    return str(path)


async def test_span_settings_for_other_programs_warn_a_command_but_do_not_stop_it(
    onward: Onward,
) -> None:
    # A shell exporting OTEL settings for a gRPC collector: the worker refuses them
    # (its spans would be lost), a command only says it sends none.
    done = await onward(
        "list",
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4317",
        OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
    )
    assert done.code == 0, done.stderr
    assert (
        "OTEL_EXPORTER_OTLP_PROTOCOL='grpc'" in done.stderr and "no spans are sent" in done.stderr
    )


async def test_run_json_prints_only_the_result(
    onward: Onward, script_file: Path, worker: RunningWorker
) -> None:
    done = await onward("run", "Add things up", "--script", str(script_file), "--json")

    assert done.code == 0, done.stderr
    result = done.json()  # the whole of stdout is one JSON document
    assert result["status"] == "completed"
    assert result["output"] == "The total is 55."
    assert [step["step"] for step in result["steps"]] == [1, 2, 3]
    first, second, _ = result["steps"]
    assert [(c["name"], c["result"]) for c in first["tool_calls"]] == [("calculator", "55")]
    write, read = second["tool_calls"]
    assert write["name"] == "write_file" and write["error"] is None
    assert read["name"] == "read_file" and read["error"]
    assert result["usage"]["total_tokens"] == 505
    assert result["usage"]["tool_calls"] == 3
    (written,) = worker.workspace.rglob("total.txt")  # in the run's own workspace
    assert written.read_text() == "55\n"


async def test_run_shows_each_step_and_the_result(onward: Onward, script_file: Path) -> None:
    done = await onward("run", "Add things up", "--script", str(script_file), "--max-steps", "9")

    assert done.code == 0, done.stderr
    out = done.stdout
    assert "step 1  I need the total first." in out
    assert "calculator(17 * 3 + 4) -> 55" in out
    assert "read_file(missing.txt) !! " in out
    assert "step 3  answer: The total is 55." in out
    assert "120 tokens" in out
    assert "status: completed" in out
    assert "output: The total is 55." in out
    assert out.index("step 1") < out.index("step 2") < out.index("status: completed")


async def test_start_status_steps_pause_and_resume(
    onward: Onward, tmp_path: Path, client: Client
) -> None:
    # 12 s in all: still running when `pause` comes, however loaded the machine (each
    # CLI process takes a second or two to start there; 3 s was seen to pass first).
    script = write_script(tmp_path, slow_script(turns=6, delay_s=2.0))
    started = await onward.ok_json(
        "start", "count slowly", "--script", script, "--max-tool-calls", "40"
    )
    workflow_id = started["workflow_id"]
    assert started["run_id"]
    # What the Web UI shows for a run started through onward: its prompt and setup.
    description = await client.get_workflow_handle(workflow_id).describe()
    assert await description.static_summary() == "count slowly"
    details = await description.static_details()
    assert details is not None and "scripted" in details and "40" in details

    paused = await onward("pause", workflow_id)
    assert paused.code == 0, paused.stderr

    async def is_paused() -> bool:
        return await onward.state(workflow_id) == "paused"

    await eventually(is_paused)
    before = await onward.ok_json("status", workflow_id)
    await asyncio.sleep(2.2)  # longer than a turn: a paused run makes no progress
    human = await onward("status", workflow_id)
    assert "state:  paused" in human.stdout
    assert f"steps:  {before['step']}" in human.stdout

    resumed = await onward("resume", workflow_id)
    assert resumed.code == 0, resumed.stderr
    result = await onward.ok_json("result", workflow_id)
    assert result["status"] == "completed"
    assert result["output"] == "all done"
    assert len(result["steps"]) == 7

    steps = await onward("steps", workflow_id)
    assert "calculator(6 + 6) -> 12" in steps.stdout


async def test_cancel_with_a_reason(onward: Onward, tmp_path: Path) -> None:
    # Long enough that it cannot end before the cancel, however loaded the machine
    # (each CLI process takes a second or two to start there); the cancel ends it.
    script = write_script(tmp_path, slow_script(turns=120, delay_s=1.0))
    workflow_id = f"cli-cancel-{uuid.uuid4().hex[:8]}"
    started = await onward("start", "a long job", "--script", script, "--id", workflow_id)
    assert started.code == 0 and started.stdout.strip() == workflow_id

    status = await onward.ok_json("status", workflow_id)
    assert status["state"] == "running"
    assert status["model"] == "scripted"
    assert status["usage"]["tool_calls"] < 120

    cancelled = await onward("cancel", workflow_id, "--reason", "no longer needed")
    assert cancelled.code == 0, cancelled.stderr

    done = await onward("result", workflow_id, "--json")
    assert done.code == 1
    result = done.json()
    assert result["status"] == "cancelled"
    assert result["reason"] == "no longer needed"

    late = await onward("pause", workflow_id)
    assert late.code == 1
    assert f"onward: run {workflow_id} has already ended" in late.stderr


async def test_extend_lets_a_budget_paused_run_finish(onward: Onward, tmp_path: Path) -> None:
    script = write_script(tmp_path, slow_script(turns=2, delay_s=0))
    started = await onward.ok_json(
        "start", "two tools", "--script", script, "--on-exceeded", "pause", "--max-tool-calls", "1"
    )
    workflow_id = started["workflow_id"]

    async def budget_paused() -> bool:
        return await onward.state(workflow_id) == "budget_paused"

    await eventually(budget_paused)
    # Resuming lifts no budget: the command says what will.
    resumed = await onward("resume", workflow_id)
    assert resumed.code == 0, resumed.stderr
    assert f"waits for more budget (onward extend {workflow_id}" in resumed.stdout
    assert await onward.state(workflow_id) == "budget_paused"
    lowered, nothing = await asyncio.gather(
        onward("extend", workflow_id, "--max-tool-calls", "0"),
        onward("extend", workflow_id),
    )
    assert lowered.code == 1
    assert "can only be raised" in lowered.stderr
    assert "Traceback" not in lowered.stderr
    assert nothing.code == 2 and "--max-tool-calls" in nothing.stderr

    budget = await onward.ok_json("extend", workflow_id, "--max-tool-calls", "5")
    assert budget["max_tool_calls"] == 5
    assert budget["on_exceeded"] == "pause"

    done = await onward("result", workflow_id, "--json")
    assert done.code == 0, done.stderr
    assert done.json()["status"] == "completed"


async def test_run_answers_with_the_output_schemas_object(onward: Onward, tmp_path: Path) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text(
        json.dumps({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]})
    )
    answer = {"text": "", "tool_calls": [{"name": "final_answer", "arguments": {"n": 42}}]}
    script = write_script(tmp_path, [answer])
    done = await onward(
        "run", "six times seven", "--script", script, "--output-schema", str(schema)
    )
    assert done.code == 0, done.stderr
    assert '{"n": 42}' in done.stdout
    as_json = await onward.ok_json(
        "run", "again", "--script", script, "--output-schema", str(schema)
    )
    assert as_json["structured_output"] == {"n": 42}
    schema.write_text(json.dumps({"type": "object", "properties": {"n": {"pattern": "a+"}}}))
    refused = await onward("run", "p", "--script", script, "--output-schema", str(schema))
    assert refused.code == 2 and "output_schema" in refused.stderr and "pattern" in refused.stderr


async def test_budget_exceeded_exits_3(onward: Onward, tmp_path: Path) -> None:
    script = write_script(tmp_path, slow_script(turns=3, delay_s=0))
    done = await onward("run", "too much", "--script", script, "--max-tool-calls", "1", "--json")
    assert done.code == 3, done.stderr
    result = done.json()
    assert result["status"] == "budget_exceeded"
    assert result["reason"].startswith("max_tool_calls")


async def test_list_finds_the_run(onward: Onward, script_file: Path) -> None:
    workflow_id = f"cli-list-{uuid.uuid4().hex[:8]}"
    # Two runs at least, whatever else the server holds: a page of one has a next page.
    done, other = await asyncio.gather(
        onward("run", "listed", "--script", str(script_file), "--id", workflow_id),
        onward("run", "listed too", "--script", str(script_file)),
    )
    assert done.code == 0 and other.code == 0, done.stderr + other.stderr

    async def listed() -> bool:
        rows = await onward.ok_json("list", "--status", "completed", "--model", "scripted")
        return any(
            row["workflow_id"] == workflow_id and row["steps"] == 3 and row["tokens"] == 505
            for row in rows
        )

    await eventually(listed)
    everything, table, none = await asyncio.gather(
        onward.ok_json("list", "--limit", "50"),
        onward("list", "--status", "completed"),
        onward.ok_json("list", "--status", "budget_paused", "--model", "nope:none"),
    )
    row = next(row for row in everything if row["workflow_id"] == workflow_id)
    assert (row["status"], row["model"], row["temporal_status"]) == (
        "completed",
        "scripted",
        "completed",
    )
    assert table.stdout.startswith("ID ")
    assert workflow_id in table.stdout
    assert none == []
    idle = await onward("list", "--status", "idle")  # a session's state: no run has it
    assert idle.code == 2 and "invalid choice: 'idle'" in idle.stderr
    # Page by page: the next page's token is on stderr, the rows stay JSON.
    first = await onward("list", "--limit", "1", "--json")
    assert first.code == 0, first.stderr
    token = first.stderr.split("more runs: add --page-token ")[1].split()[0]
    second = await onward.ok_json("list", "--limit", "1", "--page-token", token)
    assert [row["workflow_id"] for row in second] != [row["workflow_id"] for row in first.json()]
    wrong = await onward("list", "--status", "failed", "--page-token", token)  # another list
    assert wrong.code == 2 and "page_token: not a token" in wrong.stderr
    # One token in 64 begins with "-" (base64url): pasted after its flag, it still is the
    # flag's value, not an option argparse cannot place.
    dash_led = await onward("list", "--page-token", "-" + token.lstrip("-"))
    assert dash_led.code == 2 and "page_token: not a token" in dash_led.stderr
    forgotten = await onward("list", "--page-token", "--json")
    assert forgotten.code == 2 and "expected one argument" in forgotten.stderr


async def test_status_of_closed_runs_needs_no_worker(
    address: str, client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    tenant = f"tenant-{uuid.uuid4().hex[:8]}"
    async with running_worker(client, tmp_path / "ws", search_attribute_names) as gone:
        onward = Onward(address, gone.task_queue, tmp_path / "home")
        # A run whose input the workflow cannot decode (no prompt): it fails at once.
        bad = await client.start_workflow(
            "AgentWorkflow",
            {"model": "scripted"},
            id=f"cli-undecodable-{uuid.uuid4().hex[:8]}",
            task_queue=gone.task_queue,
        )
        with pytest.raises(WorkflowFailureError):
            await bad.result()
        script = write_script(tmp_path, CALC_SCRIPT)
        started = await onward.ok_json("start", "add up", "--script", script, "--tenant", tenant)
        await client.get_workflow_handle(started["workflow_id"]).result()

    failed, human, completed, trace, watched = await asyncio.gather(
        onward("status", bad.id, "--json"),
        onward("status", bad.id),
        onward.ok_json("status", started["workflow_id"]),
        onward.ok_json("trace", started["workflow_id"]),
        onward("watch", started["workflow_id"]),
    )
    assert failed.code == 0, failed.stderr
    answer = failed.json()
    assert (answer["state"], answer["step"], answer["model"]) == ("failed", 0, None)
    assert "prompt" in answer["reason"]
    assert "Traceback" not in human.stderr and "state:  failed" in human.stdout
    assert (completed["state"], completed["step"], completed["model"]) == (
        "completed",
        3,
        "scripted",
    )
    assert completed["usage"]["total_tokens"] == 505
    assert completed["last_step"]["text"] == "The total is 55."
    assert trace["tenant"] == tenant
    assert watched.code == 0, watched.stderr
    assert "step 3  answer: The total is 55." in watched.stdout
    assert "status: completed" in watched.stdout


async def test_list_status_matches_what_the_list_shows(
    onward: Onward, client: Client, tmp_path: Path, worker: RunningWorker
) -> None:
    # Never picked up: running, with no published status.
    unpublished = await client.start_workflow(
        AgentWorkflow.run,
        AgentInput(prompt="nobody home"),
        id=f"cli-unpublished-{uuid.uuid4().hex[:8]}",
        task_queue=f"tq-none-{uuid.uuid4().hex[:8]}",
    )
    # Published "running", then terminated through Temporal.
    terminated = await worker.start({"prompt": "slow", "script": slow_script(turns=5, delay_s=1.0)})

    async def stepped() -> bool:
        return bool(await terminated.query(AgentWorkflow.steps))

    await eventually(stepped)
    await terminated.terminate("test")
    # Failed on input it could not decode: no published status either.
    invalid = await client.start_workflow(
        "AgentWorkflow",
        {"model": "scripted"},
        id=f"cli-invalid-{uuid.uuid4().hex[:8]}",
        task_queue=worker.task_queue,
    )
    try:

        async def consistent() -> bool:
            running = {
                r["workflow_id"] for r in await onward.ok_json("list", "--status", "running")
            }
            failed = {r["workflow_id"] for r in await onward.ok_json("list", "--status", "failed")}
            ended = {
                r["workflow_id"] for r in await onward.ok_json("list", "--status", "terminated")
            }
            return (
                unpublished.id in running
                and terminated.id not in running
                and invalid.id in failed
                and terminated.id not in failed
                and terminated.id in ended
                and not {unpublished.id, invalid.id} & ended
            )

        await eventually(consistent)
        everything = await onward.ok_json("list", "--limit", "100")
        shown = {row["workflow_id"]: row["status"] for row in everything}
        assert shown[unpublished.id] == "running"
        assert shown[terminated.id] == "terminated"
        assert shown[invalid.id] == "failed"
    finally:
        await unpublished.terminate("test over")


async def test_interrupted_run_json_names_the_run(
    onward: Onward, tmp_path: Path, client: Client
) -> None:
    # Long enough that it cannot end before the interrupt, however loaded the machine.
    script = write_script(tmp_path, slow_script(turns=200, delay_s=1.0))
    workflow_id = f"cli-interrupt-{uuid.uuid4().hex[:8]}"
    process = await spawn_onward(
        "run", "slow", "--script", script, "--id", workflow_id, "--json", env=onward.env()
    )
    handle = client.get_workflow_handle(workflow_id)
    try:

        async def stepped() -> bool:
            try:
                return bool(await handle.query(AgentWorkflow.steps))
            except RPCError:
                return False

        await eventually(stepped)
        process.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await terminate(handle)
    assert process.returncode == 130, err.decode()
    assert f"onward watch {workflow_id}" in err.decode()
    error = json.loads(out)["error"]  # --json: one document, also when interrupted
    assert (error["type"], error["run_id"], error["exit_code"]) == (
        "Interrupted",
        workflow_id,
        130,
    )


async def test_invalid_input_exits_2_and_starts_nothing(onward: Onward, client: Client) -> None:
    workflow_id = f"cli-invalid-{uuid.uuid4().hex[:8]}"
    done = await onward("run", "hello", "--max-tokens", "-1", "--id", workflow_id, "--json")

    assert done.code == 2
    error = done.json()["error"]  # --json: one document, also for an error
    assert error["type"] == "InvalidInput" and error["exit_code"] == 2
    assert "max_tokens" in done.stderr and "--max-tokens" in done.stderr
    assert "Traceback" not in done.stderr
    with pytest.raises(RPCError) as err:
        await client.get_workflow_handle(workflow_id).describe()
    assert err.value.status == RPCStatusCode.NOT_FOUND


async def test_unknown_tool_fails_the_run_with_its_message(onward: Onward) -> None:
    done = await onward("run", "hello", "--tool", "no_such_tool")
    assert done.code == 1, done.stderr
    assert "status: failed" in done.stdout
    assert "unknown tool(s) 'no_such_tool'" in done.stdout


async def test_bad_usage_with_json_prints_an_error_document(onward: Onward) -> None:
    done = await onward("status", "--json")  # no ID
    assert done.code == 2
    assert done.json()["error"] == {
        "type": "UsageError",
        "message": "the following arguments are required: ID",  # what argparse said
        "exit_code": 2,
    }
    assert "the following arguments are required: ID" in done.stderr


async def test_unknown_id_exits_2(onward: Onward) -> None:
    commands = [("status",), ("result",), ("pause",), ("steps",), ("steer", "hi")]
    done = await asyncio.gather(*(onward(name, "no-such-run", *rest) for name, *rest in commands))
    for name, completed in zip(commands, done, strict=True):
        assert completed.code == 2, name
        assert completed.stderr.strip() == "onward: no run with id no-such-run", name


async def test_unreachable_server_exits_2(tmp_path: Path) -> None:
    closed = f"127.0.0.1:{free_port()}"
    onward = Onward(closed, "nowhere", tmp_path)
    done = await asyncio.gather(onward("status", "some-id"), onward("run", "hello", "--json"))
    for completed in done:
        assert completed.code == 2
        assert completed.stderr.strip() == (
            f"onward: cannot reach Temporal at {closed}; start it with 'onward dev'"
        )
    human, json_mode = done
    assert human.stdout == ""
    assert json_mode.json() == {
        "error": {
            "type": "ConnectionFailed",
            "message": f"cannot reach Temporal at {closed}; start it with 'onward dev'",
            "exit_code": 2,
        }
    }


async def terminate(handle: WorkflowHandle[Any, Any]) -> None:
    """End a test's run; one that already ended is fine."""
    try:
        await handle.terminate("test over")
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[-1].split()[0] == "Z"


async def test_dev_server_in_the_foreground_stops_with_its_server_on_sigterm(
    tmp_path: Path,
) -> None:
    port, ui_port = free_port(), free_port()
    home = tmp_path / "home"
    ports = ("--port", str(port), "--ui-port", str(ui_port))
    foreground = await spawn_onward("dev", "--foreground", *ports, env={"ONWARD_HOME": str(home)})
    server = None
    try:

        async def serving() -> bool:
            status = await run_onward("dev", "status", "--json", env={"ONWARD_HOME": str(home)})
            return status.code == 0 and status.json()["running"] is True

        await eventually(serving, timeout_s=60, interval_s=0.2)
        server = int((home / "dev-server.pid").read_text())
        foreground.send_signal(signal.SIGTERM)  # as a process manager stops it
        await asyncio.wait_for(foreground.wait(), 30)
    finally:
        if foreground.returncode is None:
            foreground.kill()
            await foreground.wait()
        if server is not None and not pid_gone(server):
            os.kill(server, signal.SIGKILL)  # left behind: the test fails below
    assert foreground.returncode == 0
    assert pid_gone(server)  # not left running, nor recorded
    assert not (home / "dev-server.pid").exists()


async def test_dev_server_start_status_stop(tmp_path: Path) -> None:
    port, ui_port = free_port(), free_port()
    onward = Onward(f"127.0.0.1:{port}", "unused", tmp_path / "home")
    ports = ("--port", str(port), "--ui-port", str(ui_port))

    started = await onward("dev", "start", *ports, "--json")
    assert started.code == 0, started.stderr
    info = started.json()
    pid = info["pid"]
    try:
        assert info["started"] is True
        assert info["address"] == f"127.0.0.1:{port}"
        assert info["ui_url"] == f"http://localhost:{ui_port}"
        assert (tmp_path / "home" / "dev-server.pid").read_text().strip() == str(pid)
        assert (tmp_path / "home" / "temporal.db").exists()

        status = await onward("dev", "status", "--json")
        assert status.code == 0
        assert status.json()["running"] is True and status.json()["pid"] == pid

        again = await onward("dev", *ports)
        assert again.code == 0
        assert "already running" in again.stdout and str(pid) in again.stdout

        # Commands follow the server `onward dev` started from this ONWARD_HOME, with no
        # TEMPORAL_ADDRESS: a run started without one is on this server.
        home_only = {
            "ONWARD_HOME": str(tmp_path / "home"),
            "ONWARD_TASK_QUEUE": "unused",
            "TEMPORAL_ADDRESS": "",  # empty is unset for envconfig
        }
        workflow_id = f"cli-dev-{uuid.uuid4().hex[:8]}"
        started = await run_onward("start", "hello", "--id", workflow_id, env=home_only)
        assert started.code == 0, started.stderr
        there = await OnwardClient.connect(f"127.0.0.1:{port}")
        assert (await there.info(workflow_id)).running
        # The Python client too (the README's example, run from the same directory).
        followed = await OnwardClient.connect(environ=home_only)
        assert followed.address == f"127.0.0.1:{port}"
        assert followed.task_queue == "unused"  # ONWARD_TASK_QUEUE, as the CLI: it was onward
        assert (await followed.info(workflow_id)).running
        # `onward worker` follows it too, and finishes the run.
        worker = await spawn_onward(
            "worker", env={**home_only, "ONWARD_WORKSPACE": str(tmp_path / "ws")}
        )
        try:
            result = await asyncio.wait_for(there.result(workflow_id), 60)
            assert result.status == "completed"
        finally:
            worker.send_signal(signal.SIGTERM)
            await asyncio.wait_for(worker.communicate(), 30)

        # Another ONWARD_HOME is told whose server answers on that port.
        other = await run_onward(
            "dev", "status", "--port", str(port), env={"ONWARD_HOME": str(tmp_path / "other")}
        )
        assert other.code == 1
        assert f"ONWARD_HOME={tmp_path / 'home'}" in other.stdout
        reused = await run_onward("dev", *ports, env={"ONWARD_HOME": str(tmp_path / "other")})
        assert reused.code == 0, reused.stderr
        assert f"already running at 127.0.0.1:{port}" in reused.stdout
        assert f"started by onward dev with ONWARD_HOME={tmp_path / 'home'}" in reused.stdout
        # Its `onward dev stop` is the other home's, and its Web UI port is not known here.
        assert "stop it where it was started" in reused.stdout
        assert "onward dev stop" not in reused.stdout and "Web UI" not in reused.stdout
    finally:
        stopped = await onward("dev", "stop")
    assert stopped.code == 0, stopped.stderr
    assert f"pid {pid}" in stopped.stdout
    assert pid_gone(pid)
    assert not (tmp_path / "home" / "dev-server.pid").exists()

    # Whatever else listens on 7233 (another dev server, say), this home has none now.
    after = await onward("dev", "status")
    assert after.code == 1
    assert "no dev server of onward running" in after.stdout
