"""The worker as operators run it: started before its server, riding out a server restart."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError

from conftest import activity_running, eventually, run_onward, running_worker, temporal_cli
from onward import search_attributes as sa
from onward.client import OnwardClient
from onward.connection import DATA_CONVERTER
from onward.contracts import AgentInput
from onward.plugin import ensure_search_attributes
from onward.tuning import dev_server_args
from onward.workflows import AgentWorkflow

REPO = Path(__file__).resolve().parent.parent


def spawn(
    args: list[str],
    log: Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    **options: Any,
) -> subprocess.Popen[bytes]:
    """Start ``args`` with its output appended to ``log`` (the child keeps its own fd)."""
    with log.open("ab") as out:
        return subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env, **options
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DevServer:
    """A `temporal server start-dev` process with a SQLite file, so it can restart with its data."""

    def __init__(self, port: int, db: Path, log: Path, *extra: str) -> None:
        self.port, self.db, self.log, self.extra = port, db, log, extra
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it and wait for its port; again with new side ports if one was taken.

        A free port is only free when asked: another process (a connection's
        ephemeral port, say) can take the HTTP or metrics port before the server
        binds it, and the server then exits at once.
        """
        for _ in range(5):
            self.process = spawn(
                [
                    temporal_cli(), "server", "start-dev", "--headless",
                    "--ip", "127.0.0.1", "--port", str(self.port),
                    "--http-port", str(free_port()), "--metrics-port", str(free_port()),
                    "--db-filename", str(self.db), "--log-level", "error", *self.extra,
                ],
                self.log,
            )  # fmt: skip
            if self._listening():
                return
        raise AssertionError(f"the dev server did not start: {self.log.read_text()[-2000:]}")

    def _listening(self, timeout_s: float = 30.0) -> bool:
        """True once the server takes connections; False if it exited first."""
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while self.process.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return True
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"no dev server on port {self.port}") from None
                time.sleep(0.1)
        return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)


def worker_env(address: str, tmp_path: Path, queue: str, **extra: str) -> dict[str, str]:
    """This process's environment for a worker of ``address`` on task queue ``queue``."""
    env = dict(os.environ)
    env.update(
        TEMPORAL_ADDRESS=address,
        ONWARD_TASK_QUEUE=queue,
        ONWARD_WORKSPACE=str(tmp_path / "workspace"),
        **extra,
    )
    return env


async def says_ready(
    worker: subprocess.Popen[bytes], log: Path, timeout_s: float = 30.0, interval_s: float = 0.1
) -> None:
    """Wait until the worker process logs that it is ready; fail at once if it exits."""

    async def ready() -> bool:
        assert worker.poll() is None, log.read_text()
        return "onward worker ready" in log.read_text()

    await eventually(ready, timeout_s=timeout_s, interval_s=interval_s)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


async def connect(port: int, timeout_s: float = 60.0) -> Client:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await Client.connect(f"127.0.0.1:{port}", data_converter=DATA_CONVERTER)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def result_across_restarts(
    server: DevServer, processes: list[subprocess.Popen[bytes]], workflow_id: str
) -> Any:
    """The run's result, starting the server again whenever it died on its own meanwhile.

    Once in CI a restarted dev server took connections and then went away
    (its log was lost with the run): the client gave up on the result while
    the worker went on waiting. A server that comes back again is one more
    restart the worker must ride out; the server's log says why it went.
    """
    for _ in range(3):
        assert server.process is not None
        if server.process.poll() is not None:
            print(f"the dev server exited on its own:\n{server.log.read_text()[-2000:]}")
            server.start()
            processes.append(server.process)
        try:
            client = await connect(server.port)
            return await asyncio.wait_for(client.get_workflow_handle(workflow_id).result(), 90)
        except (RPCError, RuntimeError) as err:
            try:
                server.process.wait(timeout=5)  # one going away may not have exited yet
            except subprocess.TimeoutExpired:
                raise err from None  # it is up: the client's error is the test's
    raise AssertionError(f"the dev server kept exiting: {server.log.read_text()[-2000:]}")


async def test_worker_waits_for_its_server_and_rides_out_a_restart(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    port = free_port()
    server = DevServer(port, tmp_path / "temporal.db", tmp_path / "server.log")
    task_queue = f"restart-{uuid.uuid4().hex[:8]}"
    worker_log = tmp_path / "worker.log"
    env = worker_env(f"127.0.0.1:{port}", tmp_path, task_queue)
    worker = spawn([sys.executable, str(REPO / "worker.py")], worker_log, cwd=Path.cwd(), env=env)
    processes.append(worker)

    async def waiting_for_server() -> bool:
        return "cannot reach Temporal" in worker_log.read_text()

    await eventually(waiting_for_server)  # the worker started first, and waits
    server.start()
    assert server.process is not None
    processes.append(server.process)

    await says_ready(worker, worker_log, timeout_s=60)
    client = await connect(port)
    turns = [
        {
            "text": f"step {i}",
            "tool_calls": [{"name": "calculator", "arguments": {"expression": f"{i}*{i}"}}],
            "delay_s": 0.5,
        }
        for i in range(1, 9)
    ]
    handle = await client.start_workflow(
        AgentWorkflow.run,
        AgentInput.model_validate({"prompt": "keep going", "script": [*turns, {"text": "done"}]}),
        id=f"restart-{task_queue}",
        task_queue=task_queue,
    )

    async def two_steps() -> bool:
        return (await handle.query(AgentWorkflow.status)).step >= 2

    await eventually(two_steps)
    server.stop()  # the server goes away mid-run...
    await asyncio.sleep(1.0)
    server.start()  # ...and comes back with its data
    processes.append(server.process)
    result = await result_across_restarts(server, processes, handle.id)
    assert result["status"] == "completed"
    assert len(result["steps"]) == 9
    assert worker.poll() is None  # the same worker process finished the run

    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0  # graceful shutdown
    server.stop()


async def test_worker_says_ready_once_its_search_attributes_are_registered(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    """A client that lists them when the worker says ready finds them: it starts runs with
    their first values, which saves each run an upsert. The worker said ready first (its
    worker registered them when it began to run), and such a client cached none."""
    port = free_port()
    server = DevServer(port, tmp_path / "temporal.db", tmp_path / "server.log")
    server.start()  # new: Onward's attributes are not registered on it
    assert server.process is not None
    processes.append(server.process)
    log = tmp_path / "worker.log"
    queue = f"ready-{uuid.uuid4().hex[:8]}"
    # INFO: the registration's line
    env = worker_env(f"127.0.0.1:{port}", tmp_path, queue, ONWARD_LOG_LEVEL="INFO")
    worker = spawn([sys.executable, str(REPO / "worker.py")], log, cwd=Path.cwd(), env=env)
    processes.append(worker)

    await says_ready(worker, log, timeout_s=60, interval_s=0.02)
    client = await connect(port)
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    assert {key.name for key in sa.ALL} <= set(listed.custom_attributes)
    text = log.read_text()
    assert "registered search attributes" in text, text
    assert text.index("registered search attributes") < text.index("onward worker ready"), text
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    server.stop()


async def test_a_run_starts_while_the_servers_attributes_are_not_usable_yet(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    """A server that caches its search attributes (as a cluster does) refuses them for a
    while after they are registered: a client that listed them starts its run without
    them (the run upserts them itself) instead of failing the start."""
    port = free_port()
    cached = "system.forceSearchAttributesCacheRefreshOnRead=false"  # the dev server's: true
    log = tmp_path / "server.log"
    server = DevServer(port, tmp_path / "t.db", log, "--dynamic-config-value", cached)
    server.start()
    assert server.process is not None
    processes.append(server.process)
    client = await connect(port)
    assert await ensure_search_attributes(client, client.namespace) == sorted(
        key.name for key in sa.ALL
    )
    onward = OnwardClient(client, task_queue=f"cached-{uuid.uuid4().hex[:8]}")
    run_id = await onward.start(AgentInput(prompt="p", model="scripted", tenant="acme"))
    started = (await client.get_workflow_handle(run_id).fetch_history()).events[0]
    attributes = started.workflow_execution_started_event_attributes.search_attributes
    assert dict(attributes.indexed_fields) == {}  # refused: started without them
    await client.get_workflow_handle(run_id).terminate("test over")
    server.stop()


async def test_the_embedded_servers_runs_carry_onwards_attributes_from_its_first_run(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    """`onward dev`'s server registers Onward's attributes as it creates its database and
    caches them, as a cluster does (see onward.tuning): a run started before any worker
    registered them starts with them, and its upsert at the end is taken."""
    port = free_port()
    server = DevServer(port, tmp_path / "t.db", tmp_path / "server.log", *dev_server_args())
    server.start()
    assert server.process is not None
    processes.append(server.process)
    client = await connect(port)
    names = sorted(key.name for key in sa.ALL)
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    assert set(names) <= set(listed.custom_attributes)  # before any worker ran
    async with running_worker(client, tmp_path / "workspace", names) as worker:
        onward = OnwardClient(client, task_queue=worker.task_queue)
        run_id = await onward.start(AgentInput(prompt="p", model="scripted", tenant="acme"))
        handle = client.get_workflow_handle_for(AgentWorkflow.run, run_id)
        assert (await handle.result()).status == "completed"
    started = (await handle.fetch_history()).events[0]
    attributes = started.workflow_execution_started_event_attributes.search_attributes
    assert sorted(attributes.indexed_fields) == names
    shown = (await handle.describe()).typed_search_attributes
    assert shown.get(sa.STATUS) == "completed"
    assert shown.get(sa.STEPS) == 1
    # Cached: an attribute registered now is not taken at once (start-dev's own
    # setting takes it within milliseconds). A slow machine may ask late: taken then.
    probe = SearchAttributeKey.for_keyword("OnwardCacheProbe")
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=client.namespace,
            search_attributes={probe.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD},
        )
    )
    registered = time.monotonic()
    try:
        await client.start_workflow(
            "NoSuchWorkflow",
            id=f"probe-{uuid.uuid4().hex[:8]}",
            task_queue="nobody-polls",
            search_attributes=TypedSearchAttributes([SearchAttributePair(probe, "x")]),
        )
    except RPCError as err:
        assert "OnwardCacheProbe" in str(err), err
    else:
        assert time.monotonic() - registered > 1.0, "taken at once: no cache"
    server.stop()


async def test_worker_stops_on_sigterm_while_waiting_for_its_server(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    log = tmp_path / "worker.log"
    env = dict(os.environ)
    env.update(TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}", ONWARD_WORKSPACE=str(tmp_path))
    worker = spawn([sys.executable, str(REPO / "worker.py")], log, cwd=Path.cwd(), env=env)
    processes.append(worker)

    async def waiting() -> bool:
        return "cannot reach Temporal" in log.read_text()

    await eventually(waiting)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0, log.read_text()


async def test_a_signal_the_worker_inherited_as_ignored_stays_ignored(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    """As under `nohup` or `&` in a script: Ctrl-C is not the worker's; SIGTERM still is."""
    log = tmp_path / "worker.log"
    env = worker_env(f"127.0.0.1:{free_port()}", tmp_path, "ignored")  # nothing listens there
    ignore_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)  # noqa: E731
    worker = spawn(
        [sys.executable, str(REPO / "worker.py")], log, REPO, env, preexec_fn=ignore_sigint
    )
    processes.append(worker)
    await eventually(lambda: asyncio.sleep(0, "cannot reach Temporal" in log.read_text()))
    worker.send_signal(signal.SIGINT)
    with pytest.raises(subprocess.TimeoutExpired):
        worker.wait(timeout=1.0)  # still waiting for its server
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0, log.read_text()


async def test_an_unreachable_model_fails_fast_with_one_plain_log_line_per_attempt(
    client: Client, address: str, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    log = tmp_path / "worker.log"  # a file, not a terminal: no colour codes
    task_queue = f"refused-{uuid.uuid4().hex[:8]}"
    nowhere = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    env = worker_env(
        address, tmp_path, task_queue, OPENAI_BASE_URL=nowhere, OPENAI_API_KEY="test-key"
    )
    env.pop("ONWARD_MODEL_MAX_ATTEMPTS", None)
    worker = spawn([sys.executable, str(REPO / "worker.py")], log, cwd=Path.cwd(), env=env)
    processes.append(worker)

    await says_ready(worker, log)
    started = time.monotonic()
    result = await client.execute_workflow(
        AgentWorkflow.run,
        AgentInput(prompt="hi", model="openai:gpt-4o-mini"),
        id=f"refused-{task_queue}",
        task_queue=task_queue,
    )
    elapsed = time.monotonic() - started

    assert result.status == "failed"
    assert result.reason is not None and "gave up after 8 attempts: openai: cannot reach" in (
        result.reason
    )
    assert elapsed < 30, elapsed  # the backoff meant for rate limits took 127 s
    # Not its exit code: the SDK's teardown sometimes aborts after a graceful shutdown
    # (seen on main too), which is not what this test is about.
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=30)
    text = log.read_text()
    assert "Traceback" not in text, text
    assert "\x1b[" not in text, text
    retries = [line for line in text.splitlines() if "model call attempt" in line]
    assert len(retries) == 7, text
    assert all("failed, retrying: openai: cannot reach" in line for line in retries)
    assert sum("gave up after 8 attempts" in line for line in text.splitlines()) == 1, text


async def test_worker_help_is_plain_text() -> None:
    done = await run_onward("worker", "--help", env={})
    assert done.code == 0, done.stderr
    assert "ONWARD_TASK_QUEUE (default: onward)" in done.stdout
    assert "``" not in done.stdout  # reST markup read as literal backticks


async def test_tool_modules_are_found_in_the_current_directory_without_shadowing(
    address: str, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    name = f"mytools_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        "import iniconfig\n\nfrom onward.activities.tools import tool\n\n\n"
        "@tool\ndef here(text: str) -> str:\n"
        '    """Echo.\n\n    Args:\n        text: what to echo.\n    """\n'
        "    return text\n"
    )
    # A folder named like an installed package (pytest's iniconfig) the tool module imports.
    (tmp_path / "iniconfig").mkdir()
    (tmp_path / "iniconfig" / "__init__.py").write_text('raise ImportError("decoy")\n')
    log = tmp_path / "worker.log"
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    env.update(
        TEMPORAL_ADDRESS=address,
        ONWARD_TASK_QUEUE=f"cwd-{uuid.uuid4().hex[:8]}",
        ONWARD_WORKSPACE=str(tmp_path / "workspace"),
        PYTHONPATH=str(REPO),  # this checkout's onward; -P keeps the current directory out
    )
    args = [sys.executable, "-P", "-m", "onward", "worker", "--tools", name]
    worker = spawn(args, log, cwd=tmp_path, env=env)
    processes.append(worker)

    await says_ready(worker, log)
    assert "here" in log.read_text().split("tools: ")[1].splitlines()[0]
    if platform.libc_ver()[0] == "glibc":  # `onward worker` limits its own malloc arenas
        assert "malloc arenas: at most 2" in log.read_text()
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=30)


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ({"TEMPORAL_NAMESPACE": "no-such-namespace"}, "namespace 'no-such-namespace'"),
        ({"TEMPORAL_PROFILE": "nowhere"}, "TEMPORAL_PROFILE"),
        ({"ONWARD_PRICING": "/no/such/pricing.json"}, "(ONWARD_PRICING)"),
        ({"ONWARD_MODEL_MAX_ATTEMPTS": "0"}, "ONWARD_MODEL_MAX_ATTEMPTS"),
        ({"ONWARD_STORE": "mysql://u:secret@db/onward"}, "ONWARD_STORE: mysql://"),
        ({"ONWARD_PAYLOAD_THRESHOLD": "-1"}, "ONWARD_PAYLOAD_THRESHOLD"),
        ({"ONWARD_ENCRYPTION_KEYS": "k:c2VjcmV0"}, "ONWARD_ENCRYPTION_KEYS key 'k' has 6 bytes"),
        ({"ONWARD_TRACE_FILE": "/proc/no/such/spans.jsonl"}, "ONWARD_TRACE_FILE"),
        ({"ONWARD_LOG_LEVEL": "chatty"}, "ONWARD_LOG_LEVEL"),
        ({"ONWARD_STICKY_TIMEOUT": "inf"}, "ONWARD_STICKY_TIMEOUT"),
        ({"ONWARD_MAX_CACHED_WORKFLOWS": "99999999999999999999"}, "ONWARD_MAX_CACHED_WORKFLOWS"),
        ({"ONWARD_MODEL_MAX_ATTEMPTS": "10000000000"}, "ONWARD_MODEL_MAX_ATTEMPTS"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "not-a-url"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
        # Spans that would go nowhere: said at start, not lost in silence.
        ({"OTEL_TRACES_EXPORTER": "otlp,jaeger"}, "Onward has no jaeger span exporter"),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            },
            "OTEL_EXPORTER_OTLP_PROTOCOL='grpc': Onward sends spans over OTLP/HTTP",
        ),
        # A directory the worker cannot write to: said at start, not by every run's failure.
        ({"ONWARD_STORE": "/etc/passwd/store"}, "ONWARD_STORE: cannot write to /etc/passwd"),
        ({"ONWARD_PAYLOADS": "/etc/passwd/p"}, "ONWARD_PAYLOADS: cannot write to /etc/passwd"),
        ({"ONWARD_PAYLOADS": "s3:/bucket/p"}, "ONWARD_PAYLOADS='s3:/bucket/p' is no payload"),
        ({"ONWARD_PAYLOADS": "gs://bucket/p"}, "ONWARD_PAYLOADS='gs://bucket/p' is no payload"),
        # An on/off setting that is neither: not off in silence.
        ({"ONWARD_TRACE_CONTENT": "2"}, "ONWARD_TRACE_CONTENT='2'"),
        ({"ONWARD_TASK_QUEUE": "  "}, "ONWARD_TASK_QUEUE='  '"),
        ({"ONWARD_WORKFLOW_SANDBOX": "enabled"}, "ONWARD_WORKFLOW_SANDBOX='enabled'"),
    ],
)
async def test_a_bad_setting_stops_the_worker_at_once_in_one_line(
    address: str, tmp_path: Path, setting: dict[str, str], named: str
) -> None:
    base = {
        "TEMPORAL_ADDRESS": address,
        "TEMPORAL_CONFIG_FILE": str(tmp_path / "absent.toml"),
        "ONWARD_TASK_QUEUE": f"bad-{uuid.uuid4().hex[:8]}",
        "ONWARD_WORKSPACE": str(tmp_path / "ws"),
        "ONWARD_STORE": str(tmp_path / "store"),
        "ONWARD_PAYLOADS": str(tmp_path / "payloads"),
    }
    here = tmp_path / "cwd"
    here.mkdir()
    stopped = await run_onward("worker", env={**base, **setting}, timeout_s=30, cwd=here)
    assert stopped.code == 2, stopped.stderr
    assert named in stopped.stderr
    assert "Traceback" not in stopped.stderr and "secret" not in stopped.stderr
    assert "onward worker ready" not in stopped.stdout
    assert list(here.iterdir()) == []  # nothing made of the bad setting (no ./mysql:/u:secret@db)


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ({"ONWARD_ENCRYPTION_KEYS": "no-colon"}, "ONWARD_ENCRYPTION_KEYS entry 1"),
        ({"ONWARD_PAYLOAD_THRESHOLD": "lots"}, "ONWARD_PAYLOAD_THRESHOLD"),
        ({"ONWARD_MODEL_MAX_ATTEMPTS": "0"}, "ONWARD_MODEL_MAX_ATTEMPTS"),
    ],
)
async def test_python_worker_py_is_onward_worker(
    tmp_path: Path, setting: dict[str, str], named: str
) -> None:
    # Settings read on import (keys, payload threshold) too: one line, exit 2.
    env = {**os.environ, "TEMPORAL_CONFIG_FILE": str(tmp_path / "absent.toml"), **setting}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(REPO / "worker.py"),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2, err
    last = err.decode().strip().splitlines()[-1]
    assert last.startswith("onward") and named in last, err
    assert b"Traceback" not in err


STUCK_TOOLS = '''
import time

from onward.activities.tools import tool


@tool(timeout_s=600)
def stuck(seconds: int) -> str:
    """Block this thread.

    Args:
        seconds: How long.
    """
    time.sleep(seconds)
    return "woke"
'''


@pytest.mark.parametrize("signals", [1, 2])
async def test_a_worker_that_cannot_stop_exits_after_its_shutdown_timeout(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]], signals: int
) -> None:
    """A tool blocking its thread ignores the cancel the SDK sends at the shutdown timeout,
    and the SDK's worker waits for it: the process exits anyway, a margin later, or at
    once when asked a second time."""
    port = free_port()
    server = DevServer(port, tmp_path / "temporal.db", tmp_path / "server.log")
    server.start()
    assert server.process is not None
    processes.append(server.process)
    (tmp_path / "stuck_tools.py").write_text(STUCK_TOOLS, encoding="utf-8")
    queue = f"stuck-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "worker.log"
    extra = {"ONWARD_SHUTDOWN_TIMEOUT": "1", "PYTHONPATH": str(tmp_path)}
    env = worker_env(f"127.0.0.1:{port}", tmp_path, queue, **extra)
    argv = [sys.executable, str(REPO / "worker.py"), "--tools", "stuck_tools"]
    worker = spawn(argv, log, cwd=Path.cwd(), env=env)
    processes.append(worker)
    await says_ready(worker, log, timeout_s=60)
    client = await connect(port)
    script = [
        {"tool_calls": [{"name": "stuck", "arguments": {"seconds": 600}}]},
        {"text": "done"},
    ]
    run = AgentInput(prompt="p", model="scripted", tools=["stuck"], script=script)
    run_id = await OnwardClient(client, task_queue=queue).start(run)
    handle = client.get_workflow_handle(run_id)
    await eventually(lambda: activity_running(handle, "execute_tool"), timeout_s=30)

    worker.send_signal(signal.SIGTERM)
    asked = time.monotonic()
    if signals == 2:
        await asyncio.sleep(0.5)
        worker.send_signal(signal.SIGINT)  # Ctrl-C
    try:
        code = worker.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the worker did not exit:\n{log.read_text()}")
    took = time.monotonic() - asked
    assert code == 1, log.read_text()
    if signals == 1:
        assert "did not stop within 6 s; exiting anyway" in log.read_text()
        assert 6 <= took < 20, took  # 1 s for the calls, then the margin (5 s)
    else:
        assert "asked twice to stop; exiting anyway" in log.read_text()
        assert took < 5, took
    await handle.terminate("test over")
    server.stop()


async def test_run_events_while_temporal_is_down_answer_503_not_an_empty_stream(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    # The API knew the run's tenant from an earlier request, so it asked Temporal nothing
    # before answering 200: the stream then ended at once, empty, and an EventSource
    # reconnected every second to the same empty answer, never seeing an error.
    import websockets.asyncio.client
    import websockets.exceptions

    from api_server import serving
    from onward.starter.api import ApiSettings, api_app

    port = free_port()
    server = DevServer(port, tmp_path / "temporal.db", tmp_path / "server.log")
    server.start()
    assert server.process is not None
    processes.append(server.process)
    client = await connect(port)
    await ensure_search_attributes(client, client.namespace)  # as `onward api` does
    onward = OnwardClient(client, task_queue=f"gone-{uuid.uuid4().hex[:8]}")
    async with (
        serving(api_app(ApiSettings(), onward)) as base,
        httpx.AsyncClient(base_url=base, timeout=120) as http,
    ):
        created = await http.post("/v1/runs", json={"prompt": "p"})
        assert created.status_code == 202, created.text
        status = await http.get(created.json()["status_url"])  # the tenant is known now
        assert status.status_code == 200, status.text
        server.stop()
        answer = await http.get(f"{created.json()['status_url']}/events")
        # Its WebSocket likewise: an error message and 1013, not a close 1011 ("failed").
        socket_url = "ws" + base.removeprefix("http") + created.json()["status_url"] + "/ws"
        async with websockets.asyncio.client.connect(socket_url) as socket:
            message = json.loads(await socket.recv())
            with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                await socket.recv()
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["type"] == "ConnectionFailed"
    assert "Retry-After" in answer.headers
    assert message["status"] == 503 and message["error"]["type"] == "ConnectionFailed"
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
