"""A real PostgreSQL server for tests: ``initdb``/``pg_ctl`` into a temp dir, on a free port.

Debian's ``postgresql`` package provides the binaries (``.ci/run`` installs it
where missing). ``initdb`` refuses to run as root, so as root the server runs
as the ``postgres`` user in a directory it owns.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["PostgresServer", "pg_binary", "postgres_url"]


def pg_binary(name: str) -> str | None:
    """``initdb``/``pg_ctl`` from Debian's versioned directory (newest first), else PATH."""
    for directory in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        candidate = Path(directory) / name
        if candidate.exists():
            return str(candidate)
    return shutil.which(name)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _as_owner(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


class PostgresServer:
    """A PostgreSQL server of its own (``initdb`` into a temp dir), which a test may stop
    and start again (an outage, a restart) with its data kept."""

    def __init__(self) -> None:
        initdb, pg_ctl = pg_binary("initdb"), pg_binary("pg_ctl")
        if initdb is None or pg_ctl is None:
            pytest.fail("PostgreSQL is not installed: apt-get install postgresql (.ci/run does)")
        self.pg_ctl = pg_ctl
        self.home = Path(tempfile.mkdtemp(prefix="onward-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.home, "postgres")
        self.data, self.port = self.home / "data", _free_port()
        subprocess.run(
            _as_owner([initdb, "-D", str(self.data), "-U", "onward", "--auth=trust", "-E", "UTF8"]),
            check=True,
            capture_output=True,
        )
        self.url = f"postgresql://onward@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        """Start it; tried again a few times (a server stopped at once may still be
        letting go of its shared memory or port when started again)."""
        options = f"-p {self.port} -k {self.home} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = self.home / "log"
        command = [self.pg_ctl, "-D", str(self.data), "-l", str(log), "-w", "-o", options]
        for _ in range(5):
            started = subprocess.run(
                _as_owner([*command, "start"]), check=False, capture_output=True, text=True
            )
            if started.returncode == 0:
                return
            time.sleep(0.5)
        tail = log.read_text()[-2000:] if log.exists() else ""
        raise AssertionError(f"PostgreSQL did not start: {started.stderr}{started.stdout}\n{tail}")

    def stop(self) -> None:
        """Stop at once, dropping every connection (``-m immediate``)."""
        subprocess.run(
            _as_owner([self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop"]),
            check=False,
            capture_output=True,
        )

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The URL of a fresh PostgreSQL server, stopped and removed when the session ends."""
    server = PostgresServer()
    server.start()
    try:
        yield server.url
    finally:
        server.remove()
