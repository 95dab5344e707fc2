"""Tools from MCP servers: the config file, the sessions, and runs calling them.

The server is ``tests/mcp_server.py``, written with the SDK: over stdio as a
child process, and over streamable HTTP with uvicorn on a loopback port.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import mcp_types
import pytest
from mcp.shared import _httpx_utils
from mcp_server import HttpApp
from temporalio.client import Client, WorkflowFailureError

from api_server import serving
from conftest import RunningWorker, run_onward, spawn_onward
from onward.activities.tools import (
    McpConfigError,
    McpServerConfig,
    ToolContext,
    ToolLoadError,
    load_mcp_config,
    parse_mcp_config,
    tool,
)
from onward.activities.tools.mcp_servers import (
    McpArguments,
    McpConnection,
    McpServerError,
    McpServers,
    result_text,
)
from onward.errors import ToolRetryableError
from onward.plugin import OnwardPlugin
from onward.worker import WorkerSettings, build_worker, parse_args

SERVER = str(Path(__file__).with_name("mcp_server.py"))


def stdio(name: str = "calc", **env: str) -> McpServerConfig:
    return McpServerConfig(name=name, command=sys.executable, args=(SERVER,), env=env)


@asynccontextmanager
async def mcp_worker(
    client: Client, tmp_path: Path, names: list[str], servers: Sequence[McpServerConfig]
) -> AsyncIterator[RunningWorker]:
    """A worker whose plugin holds sessions with ``servers`` (as ``onward worker`` has)."""
    task_queue = f"tq-{uuid.uuid4().hex[:12]}"
    settings = WorkerSettings(
        task_queue=task_queue, workspace=tmp_path / "workspace", mcp_servers=tuple(servers)
    )
    async with build_worker(client, settings, search_attribute_names=names):
        yield RunningWorker(client, task_queue, settings.workspace)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def calls(*tool_calls: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """One scripted model turn calling these tools."""
    return {"tool_calls": [{"name": name, "arguments": args} for name, args in tool_calls]}


# ---------------------------------------------------------------------------
# The configuration file
# ---------------------------------------------------------------------------


def test_the_config_file_has_both_transports_and_takes_variables(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "files": {
                        "command": "${PYTHON:-python3}",
                        "args": ["-m", "files_server", "${ROOT}"],
                        "env": {"API_KEY": "${FILES_KEY}"},
                    },
                    "search": {
                        "type": "http",
                        "url": "http://127.0.0.1:8931/mcp",
                        "headers": {"Authorization": "Bearer ${SEARCH_TOKEN}"},
                        "timeout_s": 5,
                        "max_attempts": 2,
                    },
                }
            }
        )
    )
    env = {"ROOT": "/data", "FILES_KEY": "k1", "SEARCH_TOKEN": "t2"}

    files, search = load_mcp_config(path, env)

    assert (files.name, files.command) == ("files", "python3")
    assert files.args == ("-m", "files_server", "/data")
    assert files.env == {"API_KEY": "k1"}
    assert search.url == "http://127.0.0.1:8931/mcp"
    assert search.headers == {"Authorization": "Bearer t2"}
    assert (search.timeout_s, search.max_attempts) == (5, 2)
    assert "t2" not in repr(search) and "k1" not in repr(files)  # secrets stay out of logs


def test_the_readmes_example_config_is_read() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Tools from MCP servers") :]
    document = json.loads(section[section.index("```json") + 7 : section.index("```\n\n")])

    files, search = parse_mcp_config(document, {"SEARCH_TOKEN": "s3cret"})

    assert files.command == "npx" and files.args[-1] == "/srv/docs"
    assert search.headers == {"Authorization": "Bearer s3cret"}


def test_a_server_is_named_in_messages_without_what_may_be_secret() -> None:
    command = McpServerConfig(name="a", command="srv", args=("--key", "s3cret"))
    url = McpServerConfig(name="b", url="https://user:s3cret@h.example:8443/mcp?key=s3cret#x")
    assert command.where == "MCP server 'a' (srv ...)"
    assert url.where == "MCP server 'b' (https://h.example:8443)"
    # Nor in the config's repr (a WorkerSettings logged whole, a traceback's locals).
    assert "s3cret" not in repr(command) and "s3cret" not in repr(url)


def test_a_url_with_no_scheme_is_refused_without_echoing_it() -> None:
    # `"url": "${U}"` with U=mcp.example.com/s/<key>/mcp: the message went to stderr whole.
    document = {"mcpServers": {"hosted": {"url": "${U}"}}}
    with pytest.raises(McpConfigError) as caught:
        parse_mcp_config(document, {"U": "mcp.example.com/s/s3cret/mcp"})
    assert "url does not begin with http:// or https://" in str(caught.value)
    assert "s3cret" not in str(caught.value)


async def test_a_key_in_a_url_path_stays_out_of_the_messages() -> None:
    # As hosted servers give them: https://mcp.example.com/s/<key>/mcp.
    document = {"mcpServers": {"hosted": {"url": "http://127.0.0.1:9/s/${KEY}/mcp"}}}
    [server] = parse_mcp_config(document, {"KEY": "s3cret-in-path"})

    with pytest.raises(McpServerError) as at_start:
        async with McpServers([server]):
            pass
    connection = McpConnection(server)
    with pytest.raises(ToolRetryableError) as in_a_call:  # in the run's history, to the model
        await connection.call("add", {"a": 1, "b": 2})

    assert str(at_start.value).startswith("MCP server 'hosted' (http://127.0.0.1:9): cannot")
    for message in (server.where, str(at_start.value), str(in_a_call.value)):
        assert "s3cret-in-path" not in message, message


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"servers": {}}', 'expected a JSON object with "mcpServers"'),
        ('{"mcpServers": {"a": {}}}', "MCP server 'a' needs either \"command\""),
        ('{"mcpServers": {"a": {"command": "x", "url": "http://h/mcp"}}}', "'url' is not a key"),
        ('{"mcpServers": {"a": {"command": "x", "arg": ["y"]}}}', "unknown key 'arg'"),
        ('{"mcpServers": {"a": {"command": "x", "args": "y"}}}', "'args' must be a list"),
        ('{"mcpServers": {"a": {"url": "ftp://h"}}}', "url does not begin with http://"),
        ('{"mcpServers": {"a": {"type": "sse", "url": "http://h/sse"}}}', "SSE transport"),
        ('{"mcpServers": {"a b": {"command": "x"}}}', "MCP server name 'a b' must be"),
        ('{"mcpServers": {"a": {"command": "${NOPE}"}}}', "${NOPE} is not set"),
        ('{"mcpServers": {"a": {"command": "x", "max_attempts": 0}}}', "at least 1"),
    ],
)
def test_a_bad_config_file_is_refused_saying_where(
    tmp_path: Path, document: str, message: str
) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(document)
    with pytest.raises(McpConfigError, match=r"^MCP config .*mcp\.json: ") as caught:
        load_mcp_config(path, {})
    assert message in str(caught.value)


def test_onward_worker_reads_the_flag_or_the_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.json"
    good.write_text('{"mcpServers": {"calc": {"command": "python3"}}}')
    bad = tmp_path / "bad.json"
    bad.write_text('{"mcpServers": {"calc": {"command": "python3", "url": "http://h"}}}')

    from_variable, _ = parse_args([], {"ONWARD_MCP_CONFIG": str(good)})
    from_flag, _ = parse_args(["--mcp-config", str(good)], {"ONWARD_MCP_CONFIG": str(bad)})
    assert [server.name for server in from_variable.mcp_servers] == ["calc"]
    assert from_flag.mcp_servers == from_variable.mcp_servers  # the flag wins
    assert parse_args([], {})[0].mcp_servers == ()

    with pytest.raises(SystemExit) as exited:
        parse_args(["--mcp-config", str(bad)], {})
    assert exited.value.code == 2
    assert "bad.json: MCP server 'calc'" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# Sessions: tools listed at start, refusals naming the server
# ---------------------------------------------------------------------------


async def test_a_server_with_no_tools_is_said_so_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Started and answering, but offering nothing (a wrong root, a filter): the runs
    # naming its tools would be refused as unknown with no word of why in the log.
    empty = tmp_path / "empty_server.py"
    empty.write_text(
        "from mcp.server.mcpserver import MCPServer\n"
        "MCPServer('empty', log_level='WARNING').run()\n"
    )
    server = McpServerConfig(name="empty", command=sys.executable, args=(str(empty),))
    with caplog.at_level(logging.WARNING, logger="onward.mcp"):
        async with McpServers([server, stdio()]) as tools:
            assert {item.name for item in tools} >= {"calc_add"}
    warned = [record.getMessage() for record in caplog.records if record.name == "onward.mcp"]
    assert warned == [f"{server.where} lists no tools; it offers none"]


async def test_a_servers_tools_are_offered_with_its_schema_and_description() -> None:
    servers = McpServers([stdio()])
    async with servers as tools:
        specs = {item.name: item.spec() for item in tools}
        async with servers:  # a second worker sharing the plugin: the same session
            [pid] = [item for item in tools if item.name == "calc_pid"]
            context = ToolContext(idempotency_key="k", call_id="c", workspace=Path())
            call = pid.fn(McpArguments(), context)
            assert not isinstance(call, str)  # an async function
            server_pid = int(await call)
        os.kill(server_pid, 0)  # still running: one holder left
    with pytest.raises(ProcessLookupError):  # the last to leave ended the process
        os.kill(server_pid, 0)
    assert sorted(specs) == ["calc_add", "calc_divide", "calc_pid", "calc_secret", "calc_wait"]
    add = specs["calc_add"]
    assert add.description.startswith("Add two whole numbers.")
    assert add.parameters["properties"]["a"]["type"] == "integer"
    assert add.parameters["required"] == ["a", "b"]
    assert add.uses_workspace is False


@pytest.mark.parametrize(
    ("server", "message"),
    [
        (
            McpServerConfig(name="gone", command="onward-no-such-mcp-server"),
            "MCP server 'gone' (onward-no-such-mcp-server): cannot connect: FileNotFoundError",
        ),
        (
            McpServerConfig(name="quits", command=sys.executable, args=("-c", "pass")),
            "MCP server 'quits' (",
        ),
        (
            McpServerConfig(name="closed", url="http://127.0.0.1:9/mcp"),
            "MCP server 'closed' (http://127.0.0.1:9): cannot connect: ConnectError",
        ),
    ],
)
async def test_a_server_that_cannot_be_reached_stops_the_start_naming_it(
    server: McpServerConfig, message: str
) -> None:
    servers = McpServers([stdio(), server])
    with pytest.raises(McpServerError) as caught:
        async with servers:
            pass
    assert str(caught.value).startswith(message)


async def test_a_tool_name_no_model_api_takes_is_refused() -> None:
    with pytest.raises(McpServerError) as caught:
        async with McpServers([stdio(MCP_TEST_BAD_NAME="1")]):
            pass
    assert "its tool 'read.file' would be offered as 'calc_read.file', which model APIs refuse" in (
        str(caught.value)
    )
    long_name = "x" * 60
    # calc_add fits in 64 characters as xxx..._add; xxx..._divide does not
    with pytest.raises(McpServerError, match=f"would be offered as '{long_name}_divide'"):
        async with McpServers([stdio(long_name)]):
            pass


async def test_onward_worker_with_an_unreachable_server_exits_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "mcp.json"
    config.write_text('{"mcpServers": {"weather": {"url": "http://127.0.0.1:9/mcp"}}}')
    env = {
        "ONWARD_MCP_CONFIG": str(config),
        "ONWARD_STORE": str(tmp_path / "store"),
        "ONWARD_PAYLOADS": str(tmp_path / "payloads"),
        "TEMPORAL_ADDRESS": "127.0.0.1:9",  # never reached: the MCP server is checked first
    }
    done = await run_onward("worker", env=env, cwd=tmp_path, timeout_s=30)
    assert done.code == 2, done.stderr
    assert done.stderr.strip().endswith(
        "onward worker: MCP server 'weather' (http://127.0.0.1:9): cannot connect: "
        "ConnectError: All connection attempts failed"
    )


async def test_onward_worker_stops_at_once_while_a_server_starts(tmp_path: Path) -> None:
    pid_file = tmp_path / "server.pid"
    config = tmp_path / "mcp.json"
    slow = {"MCP_TEST_PID_FILE": str(pid_file), "MCP_TEST_SLOW_START": "60"}  # npx fetching
    server = {"command": sys.executable, "args": [SERVER], "env": slow}
    config.write_text(json.dumps({"mcpServers": {"slow": server}}))
    env = {
        "ONWARD_STORE": str(tmp_path / "store"),
        "ONWARD_PAYLOADS": str(tmp_path / "payloads"),
        "TEMPORAL_ADDRESS": "127.0.0.1:9",  # never reached: asked to stop first
    }
    worker = await spawn_onward("worker", "--mcp-config", str(config), env=env, cwd=tmp_path)
    try:
        async with asyncio.timeout(30):
            while not (pid_file.exists() and pid_file.read_text()):
                await asyncio.sleep(0.05)
        server_pid = int(pid_file.read_text())
        worker.send_signal(signal.SIGTERM)  # systemctl stop, say, while npx downloads
        _, err = await asyncio.wait_for(worker.communicate(), 10)
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
    # Not after the server's start (or its handshake timeout, 30 s) and then killed by
    # the stop's watchdog, but at once, ending the server's process.
    assert worker.returncode == 0, err.decode()[-2000:]
    with pytest.raises(ProcessLookupError):
        os.kill(server_pid, 0)


async def test_an_mcp_tool_named_like_another_tool_is_refused_naming_both() -> None:
    @tool(name="calc_add")
    def add(a: int, b: int) -> str:
        """A user tool of the same name."""
        return str(a + b)

    plugin = OnwardPlugin(tools=[add], mcp_servers=[stdio()], providers={})
    clash = r"named 'calc_add': one from .*, one from MCP server 'calc'"
    with pytest.raises(ToolLoadError, match=clash):
        async with plugin.mcp_sessions():
            pass


@pytest.mark.parametrize(
    ("servers", "message"),
    [
        (
            # a_b_c twice: server a's tool b_c, server a_b's tool c
            [stdio("a", MCP_TEST_ALSO="b_c"), stdio("a_b", MCP_TEST_ALSO="c")],
            "two tools are named 'a_b_c': one from MCP server 'a', one from MCP server 'a_b'",
        ),
        (
            [stdio("read", MCP_TEST_ALSO="file")],
            "two tools are named 'read_file': the built-in tool, one from MCP server 'read'",
        ),
    ],
)
async def test_an_mcp_tool_whose_name_is_taken_is_refused_saying_how_to_rename_it(
    servers: list[McpServerConfig], message: str
) -> None:
    plugin = OnwardPlugin(mcp_servers=servers, providers={})
    with pytest.raises(ToolLoadError) as caught:
        async with plugin.mcp_sessions():
            pass
    assert str(caught.value).startswith(message), caught.value
    # @tool(name=...) cannot rename an MCP server's tool: its server's name can.
    assert "@tool" not in str(caught.value)
    assert "give the MCP server another name" in str(caught.value)


def test_a_result_is_its_text_blocks_with_other_blocks_named() -> None:
    result = mcp_types.CallToolResult(
        content=[
            mcp_types.TextContent(text="first"),
            mcp_types.ImageContent(data="aGk=", mime_type="image/png"),
            mcp_types.EmbeddedResource(
                resource=mcp_types.TextResourceContents(uri="file:///a.txt", text="inside")
            ),
            mcp_types.ResourceLink(uri="file:///b.bin", name="b"),
            mcp_types.TextContent(text="last"),
        ]
    )
    assert result_text(result).split("\n") == [
        "first",
        "[image (image/png)]",
        "inside",
        "[resource link file:///b.bin]",
        "last",
    ]
    structured = mcp_types.CallToolResult(content=[], structured_content={"temp": 18})
    assert result_text(structured) == '{"temp": 18}'


# ---------------------------------------------------------------------------
# Runs calling MCP tools
# ---------------------------------------------------------------------------


async def test_onward_worker_offers_the_tools_and_ends_the_server_when_it_stops(
    client: Client, address: str, tmp_path: Path
) -> None:
    pid_file = tmp_path / "server.pid"
    config = tmp_path / "mcp.json"
    config.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "calc": {
                        "command": sys.executable,
                        "args": [SERVER],
                        "env": {"MCP_TEST_PID_FILE": "${PID_FILE}"},
                    }
                }
            }
        )
    )
    queue = f"mcp-{uuid.uuid4().hex[:8]}"
    env = {
        "TEMPORAL_ADDRESS": address,
        "ONWARD_TASK_QUEUE": queue,
        "ONWARD_STORE": str(tmp_path / "store"),
        "ONWARD_WORKSPACE": str(tmp_path / "workspace"),
        "PID_FILE": str(pid_file),
    }
    worker = await spawn_onward("worker", "--mcp-config", str(config), env=env, cwd=tmp_path)
    try:
        assert worker.stdout is not None
        line = await asyncio.wait_for(worker.stdout.readline(), 60)
        assert b"onward worker ready" in line, line
        script = [calls(("calc_add", {"a": 20, "b": 22})), {"text": "done"}]
        result = await RunningWorker(client, queue, tmp_path).run(
            {"prompt": "add", "tools": ["calc_add"], "script": script}
        )
        assert result.steps[0].tool_calls[0].result == "42"
        server_pid = int(pid_file.read_text())
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(worker.communicate(), 30)
    assert worker.returncode == 0, err.decode()[-2000:]

    # Ended by the worker as it stopped (waited for), not left to notice its stdin closed.
    with pytest.raises(ProcessLookupError):
        os.kill(server_pid, 0)


async def test_a_call_given_up_while_its_session_opens_leaves_no_server_running(
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "server.pid"
    server = stdio(MCP_TEST_PID_FILE=str(pid_file), MCP_TEST_SLOW_START="3")
    connection = McpConnection(server)
    try:
        call = asyncio.create_task(connection.call("add", {"a": 1, "b": 2}))
        async with asyncio.timeout(20):  # the file is there, empty, before its pid
            while not (pid_file.exists() and pid_file.read_text()):
                await asyncio.sleep(0.05)
        server_pid = int(pid_file.read_text())
        call.cancel()  # its run was cancelled, or the attempt timed out: the activity ends
        with pytest.raises(asyncio.CancelledError):
            await call

        # The session it was opening is closed, not left holding the process after
        # its handshake, beside the one the next call opens.
        async with asyncio.timeout(10):
            while True:
                try:
                    os.kill(server_pid, 0)
                except ProcessLookupError:
                    break
                await asyncio.sleep(0.1)
    finally:
        await connection.close()


async def test_a_run_calls_a_stdio_servers_tools_and_hears_its_errors(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    script = [
        calls(("calc_add", {"a": 2, "b": 40}), ("calc_secret", {})),
        calls(("calc_divide", {"a": 1, "b": 0}), ("calc_add", {"a": "two"})),
        {"text": "done"},
    ]
    tools = ["calc_add", "calc_divide", "calc_secret"]
    server = stdio(MCP_TEST_SECRET="from the config")
    async with mcp_worker(client, tmp_path, search_attribute_names, [server]) as worker:
        result = await worker.run({"prompt": "sum", "tools": tools, "script": script})
        with pytest.raises(WorkflowFailureError) as refused:
            await worker.run({"prompt": "x", "tools": ["calc_nosuch"], "script": script})

    assert result.status == "completed", result.reason
    first, second, _ = result.steps
    assert [(call.result, call.error) for call in first.tool_calls] == [
        ("42", None),
        ("from the config", None),
    ]
    divided, mistyped = second.tool_calls
    assert divided.error == "Error executing tool divide: cannot divide by zero"
    assert mistyped.error is not None and "validation error" in mistyped.error
    assert result.output == "done"
    # A tool the server does not have is refused at the start, as any unknown tool is.
    refusal = str(refused.value.cause)
    assert "calc_nosuch" in refusal and "calc_add" in refusal, refusal


async def test_calls_at_once_share_the_session_and_run_side_by_side(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    # Each run: one turn of four 2 s calls and the server's pid, three runs at once.
    turn = calls(*[("calc_wait", {"seconds": 2})] * 4, ("calc_pid", {}))
    run = {"prompt": "wait", "tools": ["calc_wait", "calc_pid"], "script": [turn, {"text": "ok"}]}
    async with mcp_worker(client, tmp_path, search_attribute_names, [stdio()]) as worker:
        loop = asyncio.get_running_loop()
        began = loop.time()
        results = await asyncio.gather(*(worker.run(run) for _ in range(3)))
        took_s = loop.time() - began

    for result in results:
        assert result.status == "completed", result.reason
        assert [call.result for call in result.steps[0].tool_calls][:4] == ["waited 2 s"] * 4
    pids = {result.steps[0].tool_calls[4].result for result in results}
    assert len(pids) == 1, pids  # one session, one server process, for every run
    # 24 s of calls, not one after another: about 2 s side by side, with 14 s to spare
    # for a loaded machine's runs and workflow tasks.
    assert took_s < 16, took_s


async def test_a_call_past_its_timeout_is_retried_cancelled_on_the_server_and_told(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    cancel_log = tmp_path / "cancelled"
    server = McpServerConfig(
        name="calc",
        command=sys.executable,
        args=(SERVER,),
        env={"MCP_TEST_CANCEL_LOG": str(cancel_log)},
        timeout_s=2,  # calc_add answers well within it, however loaded the machine
        max_attempts=2,
    )
    script = [
        calls(("calc_wait", {"seconds": 60})),
        calls(("calc_add", {"a": 1, "b": 2})),
        {"text": "done"},
    ]
    run = {"prompt": "wait", "tools": ["calc_wait", "calc_add"], "script": script}
    async with mcp_worker(client, tmp_path, search_attribute_names, [server]) as worker:
        handle = await worker.start(run)
        result = await handle.result()
        attempts = [
            event.activity_task_started_event_attributes.attempt
            async for event in handle.fetch_history_events()
            if event.HasField("activity_task_started_event_attributes")
        ]
        # Each attempt's call is cancelled on the server once the worker hears it timed
        # out (its next heartbeat), not left running there for its minute.
        async with asyncio.timeout(15):
            while _lines(cancel_log).count("wait 60") < 2:
                await asyncio.sleep(0.1)

    assert result.status == "completed", result.reason
    waited, added = (step.tool_calls[0] for step in result.steps[:2])
    assert waited.error is not None and "timeout" in waited.error, waited  # the model is told
    assert 2 in attempts, attempts  # tried again, within max_attempts
    assert added.result == "3"  # and the session goes on


async def test_a_killed_server_is_started_again_for_the_next_call(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    script = [calls(("calc_pid", {})), {"text": "done"}]
    async with mcp_worker(client, tmp_path, search_attribute_names, [stdio()]) as worker:
        before = await worker.run({"prompt": "pid", "tools": ["calc_pid"], "script": script})
        first_pid = int(before.steps[0].tool_calls[0].result or "0")
        os.kill(first_pid, signal.SIGKILL)
        handle = await worker.start({"prompt": "pid", "tools": ["calc_pid"], "script": script})
        after = await handle.result()
        attempts = [
            event.activity_task_started_event_attributes.attempt
            async for event in handle.fetch_history_events()
            if event.HasField("activity_task_started_event_attributes")
        ]

    assert after.status == "completed", after.reason
    # The call's last attempt was its second (history records the last one's start):
    # the first found the session closed, the retry opened a new one.
    assert 2 in attempts, attempts
    call = after.steps[0].tool_calls[0]
    assert call.error is None
    assert call.result is not None and int(call.result) != first_pid


async def test_a_run_calls_a_streamable_http_servers_tools_with_its_headers(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    async with serving(HttpApp(token="t0ken")) as base:
        config = tmp_path / "mcp.json"
        config.write_text(
            json.dumps(
                {
                    "mcpServers": {
                        "remote": {
                            "url": f"{base}/mcp",
                            "headers": {"Authorization": "Bearer ${REMOTE_TOKEN}"},
                        }
                    }
                }
            )
        )
        servers = load_mcp_config(config, {"REMOTE_TOKEN": "t0ken"})
        script = [calls(("remote_add", {"a": 1, "b": 2})), {"text": "done"}]
        async with mcp_worker(client, tmp_path, search_attribute_names, servers) as worker:
            result = await worker.run({"prompt": "add", "tools": ["remote_add"], "script": script})

        wrong = load_mcp_config(config, {"REMOTE_TOKEN": "wrong"})
        refused = r"^MCP server 'remote' .*: cannot connect: .*\(HTTP 401\)$"
        with pytest.raises(McpServerError, match=refused):
            async with McpServers(wrong):
                pass

    assert result.status == "completed", result.reason
    assert result.steps[0].tool_calls[0].result == "3"


async def test_the_keys_in_a_servers_url_and_headers_stay_out_of_the_history(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    keys = {"TOKEN": "t0ken-s3cret", "QUERY_KEY": "qu3ry-s3cret", "PATH_KEY": "p4th-s3cret"}
    app = HttpApp(token=keys["TOKEN"], legacy=True)
    down = False

    async def hosted(scope: Any, receive: Any, send: Any) -> None:
        """The server at /s/<key>/mcp, as hosted ones are; every request 404 when down."""
        if scope["type"] == "http" and down:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b"gone"})
            return
        if scope["type"] == "http":
            scope = {**scope, "path": "/mcp", "raw_path": b"/mcp"}
        await app(scope, receive, send)

    script = [calls(("remote_add", {"a": 1, "b": 2})), {"text": "done"}]
    run = {"prompt": "add", "tools": ["remote_add"], "script": script}
    async with serving(hosted) as base:
        entry = {
            "url": base + "/s/${PATH_KEY}/mcp?key=${QUERY_KEY}",
            "headers": {"Authorization": "Bearer ${TOKEN}"},
            "max_attempts": 2,
        }
        servers = parse_mcp_config({"mcpServers": {"remote": entry}}, keys)
        async with mcp_worker(client, tmp_path, search_attribute_names, servers) as worker:
            answered = await worker.start(run)
            assert (await answered.result()).steps[0].tool_calls[0].result == "3"
            down = True  # the session ends, and the retry cannot open another
            failed = await worker.start(run)
            call = (await failed.result()).steps[0].tool_calls[0]

    assert call.error is not None and "MCP server 'remote' (http://127.0.0.1:" in call.error
    histories = [str(event) for h in (answered, failed) async for event in h.fetch_history_events()]
    assert any("cannot connect" in event for event in histories)  # the retry's failure
    for key in keys.values():
        assert not [event for event in histories if key in event], key


async def test_a_session_a_pre_2026_http_server_forgot_is_opened_again() -> None:
    app = HttpApp(token="t", legacy=True)
    async with serving(app) as base:
        headers = {"Authorization": "Bearer t"}
        server = McpServerConfig(name="old", url=f"{base}/mcp", headers=headers)
        connection = McpConnection(server)
        try:
            assert await connection.call("add", {"a": 1, "b": 2}) == "3"
            assert (await connection.session()).protocol_version < "2026"  # a session id
            app.forget_sessions()  # as after the server's restart
            with pytest.raises(ToolRetryableError, match="the session ended during the call"):
                await connection.call("add", {"a": 1, "b": 2})
            assert await connection.call("add", {"a": 2, "b": 2}) == "4"  # the retry
        finally:
            await connection.close()


async def test_a_url_query_with_a_key_stays_out_of_the_workers_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)  # onward worker's level
    async with serving(HttpApp(token="t")) as base:
        headers = {"Authorization": "Bearer t"}
        server = McpServerConfig(name="q", url=f"{base}/mcp?key=s3cret-key", headers=headers)
        connection = McpConnection(server)
        try:
            assert await connection.call("add", {"a": 1, "b": 2}) == "3"
        finally:
            await connection.close()
    # The SDK's HTTP client logs each request's URL at INFO: not with its query.
    assert "s3cret-key" not in caplog.text


async def test_an_http_call_may_take_its_timeout_not_the_sdks_read_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The SDK's HTTP client gives up a response silent for 300 s (here 0.5 s), and
    # with it the session: a tool allowed longer (timeout_s) would never finish.
    monkeypatch.setattr(_httpx_utils, "MCP_DEFAULT_SSE_READ_TIMEOUT", 0.5)
    async with serving(HttpApp(token="t")) as base:
        headers = {"Authorization": "Bearer t"}
        server = McpServerConfig(name="w", url=f"{base}/mcp", headers=headers, timeout_s=5)
        connection = McpConnection(server)
        try:
            assert await connection.call("wait", {"seconds": 1.5}) == "waited 1.5 s"
        finally:
            await connection.close()
