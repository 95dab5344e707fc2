"""Worker processes the bench starts, watches (CPU, RSS from /proc) and kills."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Process", "RssSampler", "cpu_s", "dev_server_pid"]

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Process:
    """One subprocess with its output in a log file; ``ready_text`` marks that it serves."""

    name: str
    argv: Sequence[str]
    log: Path
    ready_text: str
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    popen: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    """``time.monotonic()`` just before the process was created."""
    ready_from: int = 0
    """Log offset where this run's output starts (the log is shared by restarts)."""

    def start(self) -> None:
        """Start the process (output appended to the log)."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.ready_from = out.tell()
            self.started_at = time.monotonic()
            self.popen = subprocess.Popen(
                list(self.argv),
                cwd=self.cwd,
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C of the bench reaches the bench only
            )

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} was not started"
        return self.popen.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def wait_ready(self, timeout_s: float = 60.0) -> float:
        """Seconds from start until the ready text appeared in this run's output."""
        assert self.popen is not None
        deadline = time.monotonic() + timeout_s
        while True:
            with self.log.open("rb") as log:
                log.seek(self.ready_from)
                if self.ready_text.encode() in log.read():
                    return time.monotonic() - self.started_at
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited; its log ({self.log}):\n{self.output()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} not ready after {timeout_s} s; see {self.log}")
            await asyncio.sleep(0.02)

    def cpu_s(self) -> float:
        """User + system CPU seconds the process has used so far."""
        return cpu_s(self.pid)

    def rss_mb(self) -> float:
        """Resident memory now, in MB."""
        pages = int(Path(f"/proc/{self.pid}/statm").read_text().split()[1])
        return pages * _PAGE_BYTES / 1e6

    def kill9(self) -> None:
        """``kill -9``, as a crash would."""
        assert self.popen is not None
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not go within 15 s."""
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill9()


class RssSampler:
    """Samples a process's RSS every 50 ms while in use; ``peak_mb`` is the highest seen."""

    def __init__(self, process: Process, interval_s: float = 0.05) -> None:
        self._process = process
        self._interval_s = interval_s
        self.peak_mb = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            self.peak_mb = max(self.peak_mb, self._process.rss_mb())
            await asyncio.sleep(self._interval_s)

    async def __aenter__(self) -> RssSampler:
        self.peak_mb = self._process.rss_mb()
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self.peak_mb = max(self.peak_mb, self._process.rss_mb())


def cpu_s(pid: int) -> float:
    """User + system CPU seconds process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S


def dev_server_pid(port: int) -> int | None:
    """The ``temporal server start-dev`` process listening on ``port``, if it is found."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:  # gone, or not ours to read
            continue
        if "start-dev" in argv and _follows(argv, "--port", str(port)):
            return int(entry.name)
    return None


def _follows(argv: list[str], flag: str, value: str) -> bool:
    return any(a == flag and b == value for a, b in itertools.pairwise(argv))
