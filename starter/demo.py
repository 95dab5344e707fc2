"""``onward demo`` (what ``make demo`` runs): a whole agent run, offline, in one command.

It makes sure the dev server runs (reusing one that does), starts a worker
process, runs an example agent with the scripted model while printing each
step live, then stops the worker and leaves the server up for the Web UI.
Ctrl-C at any point stops the worker, and the server too if this demo started
it, so nothing is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from onward.client import OnwardClient
from onward.contracts import AgentInput
from onward.starter.commands import follow_run, print_outcome
from onward.starter.devserver import (
    DEFAULT_PORT,
    DevServer,
    Running,
    ensure_running,
    owner_of,
    stop,
)
from onward.starter.errors import EXIT_INTERRUPTED, CliError, exit_code_for
from onward.starter.interrupt import run_interruptibly
from onward.starter.output import say
from onward.tuning import SHUTDOWN_MARGIN_S, WorkerTuning

__all__ = ["DEMO_PROMPT", "DEMO_SCRIPT", "demo_input", "run_demo"]

WORKER_READY_LINE = "onward worker ready"
WORKER_READY_TIMEOUT_S = 60.0
"""A cold worker start (imports, connect, search attributes) takes a few seconds."""
WORKER_STOP_MARGIN_S = 5.0
"""Waited beyond the longest the worker takes to stop by itself (its shutdown timeout,
then :data:`~onward.tuning.SHUTDOWN_MARGIN_S`), so it is not killed before it says why."""
CANCEL_TIMEOUT_S = 3.0

DEMO_PROMPT = "Plan a budget for a 3-day trip to Lisbon."
_TURN_DELAY_S = 0.4
"""Each scripted model call takes this long, so the steps appear one by one."""
_PLAN = (
    "# Lisbon, 3 days\n\n"
    "- hotel: 3 nights x $120 = $360\n"
    "- food: 3 days x $45 = $135\n"
    "- transport and sights: 2 x $35 + $60 = $130\n\n"
    "**total: $625**\n"
)
DEMO_SCRIPT: list[dict[str, Any]] = [
    {
        "text": "First the big items: three hotel nights and three days of food.",
        "tool_calls": [
            {"name": "calculator", "arguments": {"expression": "3 * 120"}},
            {"name": "calculator", "arguments": {"expression": "3 * 45"}},
        ],
        "usage": {"input_tokens": 220, "output_tokens": 48},
        "delay_s": _TURN_DELAY_S,
    },
    {
        "text": "Now two day passes plus sights, then the total.",
        "tool_calls": [
            {"name": "calculator", "arguments": {"expression": "2 * 35 + 60"}},
            {"name": "calculator", "arguments": {"expression": "360 + 135 + 130"}},
        ],
        "usage": {"input_tokens": 310, "output_tokens": 52},
        "delay_s": _TURN_DELAY_S,
    },
    {
        "text": "I will save the plan to a file.",
        "tool_calls": [
            {"name": "write_file", "arguments": {"path": "trip-budget.md", "content": _PLAN}}
        ],
        "usage": {"input_tokens": 405, "output_tokens": 90},
        "delay_s": _TURN_DELAY_S,
    },
    {
        "text": "Let me check the saved file reads back as written.",
        "tool_calls": [{"name": "read_file", "arguments": {"path": "trip-budget.md"}}],
        "usage": {"input_tokens": 520, "output_tokens": 24},
        "delay_s": _TURN_DELAY_S,
    },
    {
        "text": (
            "A 3-day Lisbon trip comes to about $625: hotel $360, food $135, "
            "transport and sights $130. The plan is saved in trip-budget.md."
        ),
        "usage": {"input_tokens": 640, "output_tokens": 45},
        "delay_s": _TURN_DELAY_S,
    },
]


def demo_input() -> AgentInput:
    """The example run: the scripted model, three tools and a budget it stays within."""
    return AgentInput.model_validate(
        {
            "prompt": DEMO_PROMPT,
            "model": "scripted",
            "script": DEMO_SCRIPT,
            "tools": ["calculator", "write_file", "read_file"],
            "budget": {"max_tool_calls": 20, "max_steps": 10, "max_cost_usd": 0.05},
        }
    )


def _worker_env(server: DevServer, task_queue: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TEMPORAL_")}
    env["TEMPORAL_ADDRESS"] = server.address
    env["ONWARD_TASK_QUEUE"] = task_queue
    env.setdefault("ONWARD_WORKSPACE", str(server.home / "workspace"))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_worker(server: DevServer, task_queue: str) -> tuple[subprocess.Popen[bytes], Path]:
    """A worker process in its own process group, its output in ``demo-worker.log``."""
    log_path = server.home / "demo-worker.log"
    server.home.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-P", "-m", "onward", "worker"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_worker_env(server, task_queue),
            start_new_session=True,
        )
    return process, log_path


def wait_worker_ready(process: subprocess.Popen[bytes], log_path: Path) -> None:
    """Return once the worker has printed its ready line."""
    deadline = time.monotonic() + WORKER_READY_TIMEOUT_S
    while True:
        text = log_path.read_text(errors="replace") if log_path.exists() else ""
        if WORKER_READY_LINE in text:
            return
        if process.poll() is not None:
            tail = "\n".join(text.splitlines()[-15:])
            raise CliError(f"the worker exited with code {process.returncode}:\n{tail}")
        if time.monotonic() > deadline:
            raise CliError(f"the worker was not ready within {WORKER_READY_TIMEOUT_S:g} s")
        time.sleep(0.1)


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the worker's process group, wait for its graceful exit, kill if it hangs."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=_worker_stop_timeout_s())
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


async def _run_example(
    server: DevServer, task_queue: str, workflow_id: str, ours: bool = True
) -> int:
    client = await OnwardClient.connect(server.address, task_queue=task_queue)
    await client.start(demo_input(), workflow_id)
    say(f"agent run {workflow_id}: {DEMO_PROMPT!r}")
    say()
    outcome = await follow_run(client, workflow_id, say, say)
    print_outcome(outcome)
    namespace = client.namespace
    say()
    link = f"{server.ui_url}/namespaces/{namespace}/workflows/{workflow_id}"
    say(f"See this run in the Web UI: {link}")
    say()
    say("Next, in two terminals: a worker, then an agent run of your own:")
    say("  .venv/bin/onward worker")
    say(
        '  .venv/bin/onward run "What is 17 * 3 + 4? Save it to total.txt" '
        "--script examples/demo_script.json"
    )
    if server.port != DEFAULT_PORT:
        say(f"(run here they use this server; elsewhere set TEMPORAL_ADDRESS={server.address})")
    if ours:
        say("The dev server keeps running. To stop it:")
        say("  make stop")
    else:  # another ONWARD_HOME's, or not Onward's: `make stop` here would not stop it
        say("The dev server keeps running; it is not this ONWARD_HOME's: stop it where it was")
        say("started.")
    return exit_code_for(outcome.result.status)


async def _cancel(server: DevServer, workflow_id: str) -> None:
    """Cancel the example run and give the worker a moment to close it."""
    client = await OnwardClient.connect(server.address)
    await asyncio.wait_for(client.cancel(workflow_id, "demo interrupted"), CANCEL_TIMEOUT_S)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.result(workflow_id), CANCEL_TIMEOUT_S)


def _say_server(running: Running) -> None:
    server = running.server
    if running.started_now:
        how = f"started (pid {running.pid}, log {server.log_file})"
    elif running.pid is not None:
        how = f"already running (pid {running.pid})"
    else:
        how = f"already serving ({owner_of(server.port)})"
    say(f"Temporal dev server at {server.address} {how}")
    say(f"Web UI: {server.ui_url}")


def run_demo(server: DevServer, task_queue: str) -> int:
    """The whole demo; returns the exit code of the example run."""
    running = ensure_running(server)
    server = running.server
    worker: subprocess.Popen[bytes] | None = None
    workflow_id = f"demo-{datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}"
    finished = interrupted = False
    try:
        _say_server(running)
        worker, log_path = start_worker(server, task_queue)
        wait_worker_ready(worker, log_path)
        say(f"worker started (pid {worker.pid}, task queue {task_queue!r}, log {log_path})")
        ours = running.pid is not None  # started, or found, by this ONWARD_HOME
        code = run_interruptibly(_run_example(server, task_queue, workflow_id, ours))
        finished = True
        return code
    except KeyboardInterrupt:
        interrupted = True
        print("\nonward: demo interrupted; cleaning up", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    finally:
        if worker is not None:
            if not finished and worker.poll() is None:
                # Best effort: leave no half-done run waiting for the next worker.
                with contextlib.suppress(Exception):
                    asyncio.run(_cancel(server, workflow_id))
            stop_worker(worker)
        if interrupted and running.started_now:
            stop(server, running.process)


def _worker_stop_timeout_s() -> float:
    """How long the demo's worker, given this environment, may take to stop."""
    try:
        shutdown = WorkerTuning.from_env(os.environ).shutdown_timeout_s
    except ValueError:  # the worker refused the setting and runs no more
        shutdown = WorkerTuning.shutdown_timeout_s
    return shutdown + SHUTDOWN_MARGIN_S + WORKER_STOP_MARGIN_S
