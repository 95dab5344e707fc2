"""One dev server, one fake model server and every system's worker, started together."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from bench.processes import Process, dev_server_pid
from bench.systems import REPO, RunOutcome, System, outcome
from bench.workload import Task
from onward.connection import DATA_CONVERTER
from onward.tuning import dev_server_args

__all__ = ["Harness", "harness"]


@dataclass
class Harness:
    """Everything a measurement needs: the client, the systems and their running workers."""

    client: Client
    address: str
    model_url: str
    systems: list[System]
    workers: dict[str, Process]
    queue_prefix: str
    logs: Path
    server_pid: int | None = None
    """The dev server's process, whose CPU the throughput figures include (None: not found)."""
    model_pid: int | None = None
    """The fake model server's process, whose CPU the throughput figures include."""
    http: httpx.AsyncClient = field(default_factory=httpx.AsyncClient)

    def queue(self, system: System) -> str:
        return system.task_queue(self.queue_prefix)

    async def start(self, system: System, task: Task) -> WorkflowHandle[Any, Any]:
        """Start one run of ``task`` on ``system``."""
        return await system.start(self.client, self.queue(system), task)

    async def run(self, system: System, task: Task, timeout_s: float = 600) -> RunOutcome:
        """Start one run of ``task`` and wait for its result."""
        return await self.finish(await self.start(system, task), task, timeout_s)

    async def finish(
        self, handle: WorkflowHandle[Any, Any], task: Task, timeout_s: float = 600
    ) -> RunOutcome:
        """Wait for a run's result; a run still going after ``timeout_s`` is terminated."""
        try:
            result = await asyncio.wait_for(handle.result(), timeout_s)
        except TimeoutError:
            with contextlib.suppress(RPCError):
                await handle.terminate("bench: timed out")
            return RunOutcome(False, 0, f"timed out after {timeout_s:.0f} s")
        except Exception as err:  # noqa: BLE001 - a failed run is a figure, not a crash
            return RunOutcome(False, 0, str(err.__cause__ or err))
        return outcome(result, task)

    async def ledger(self) -> dict[str, dict[str, Any]]:
        """What the fake server billed, per model name."""
        answer = await self.http.get(f"{self.model_url.removesuffix('/v1')}/bench/ledger")
        result: dict[str, dict[str, Any]] = answer.raise_for_status().json()
        return result

    async def bill(self, run: str) -> dict[str, Any]:
        """What the fake server billed for one run."""
        answer = await self.http.get(f"{self.model_url.removesuffix('/v1')}/bench/bills/{run}")
        result: dict[str, Any] = answer.raise_for_status().json()
        return result

    async def calls(self, run: str) -> list[dict[str, Any]]:
        """The model calls the fake server got for one run (step, start, end)."""
        answer = await self.http.get(f"{self.model_url.removesuffix('/v1')}/bench/runs/{run}")
        result: list[dict[str, Any]] = answer.raise_for_status().json()
        return result

    def restart_worker(self, system: System) -> Process:
        """A new worker process for ``system`` (the old one must be gone)."""
        process = system.worker(self.address, self.queue_prefix, self.logs)
        process.start()
        self.workers[system.name] = process
        return process


def _temporal_cli() -> str:
    return str(Path(sys.executable).parent / "temporal")


@contextlib.asynccontextmanager
async def harness(
    make_systems: Callable[[str], list[System]], logs: Path, server_args: Sequence[str] = ()
) -> AsyncIterator[Harness]:
    """Start the fake model server, the dev server (in memory, free ports) and all workers.

    ``make_systems`` gets the fake server's base URL (``http://127.0.0.1:N/v1``);
    ``server_args`` go to ``temporal server start-dev`` (``--db-filename``, say).
    """
    shutil.rmtree(logs, ignore_errors=True)  # this run's logs only
    logs.mkdir(parents=True)
    fake = Process(
        name="fake-model",
        argv=[sys.executable, "-m", "bench.fake_openai"],
        log=logs / "fake-model.log",
        ready_text="fake model server on port",
        cwd=REPO,
    )
    fake.start()
    workers: dict[str, Process] = {}
    try:
        await fake.wait_ready()
        port = fake.output().rsplit("port", 1)[1].split()[0]
        model_url = f"http://127.0.0.1:{port}/v1"
        async with await WorkflowEnvironment.start_local(
            dev_server_existing_path=_temporal_cli(),
            data_converter=DATA_CONVERTER,
            dev_server_log_level="error",
            # The embedded dev server's settings (onward dev), the same for every system.
            dev_server_extra_args=[*dev_server_args(), *server_args],
        ) as env:
            address = env.client.service_client.config.target_host
            prefix = f"bench-{uuid.uuid4().hex[:6]}"
            server = dev_server_pid(int(address.rsplit(":", 1)[1]))
            bench = Harness(
                env.client, address, model_url, [], workers, prefix, logs, server, fake.pid
            )
            try:
                for system in make_systems(model_url):
                    bench.systems.append(system)
                    bench.restart_worker(system)
                started = time.monotonic()
                for process in workers.values():
                    await process.wait_ready(timeout_s=120)
                names = ", ".join(workers)
                print(f"  workers ready in {time.monotonic() - started:.1f} s: {names}")
                yield bench
            finally:
                for process in workers.values():
                    process.stop()
                await bench.http.aclose()
    finally:
        fake.stop()


def dump(path: Path, data: Any) -> None:
    """Write JSON, readable."""
    path.write_text(json.dumps(data, indent=2) + "\n")
