"""The event stream across a worker killed with SIGKILL mid-run: nothing lost, nothing twice."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path

import httpx
from temporalio.client import Client
from test_crash_resume import WorkerProcess, wait_ready, workers  # noqa: F401 - the fixture

from api_server import Sse, read_events, serving
from conftest import eventually
from onward.artifacts import workspace_dir
from onward.client import OnwardClient
from onward.starter.api import ApiSettings, api_app

TURNS = 5


async def test_the_stream_goes_on_across_a_killed_worker(
    client: Client,
    address: str,
    search_attribute_names: list[str],
    tmp_path: Path,
    workers: list[WorkerProcess],  # noqa: F811 - the fixture imported above
) -> None:
    task_queue = f"api-crash-{uuid.uuid4().hex[:8]}"
    workspace = tmp_path / "workspace"
    script = [
        {
            "text": f"line {i}",
            "tool_calls": [
                {
                    "name": "write_file",
                    "arguments": {"path": "l.txt", "content": f"{i}\n", "append": True},
                }
            ],
            "delay_s": 0.7,
        }
        for i in range(1, TURNS + 1)
    ] + [{"text": "done"}]
    first = WorkerProcess(address, task_queue, workspace, tmp_path / "worker1.log")
    workers.append(first)
    await wait_ready(first)
    onward = OnwardClient(client, task_queue=task_queue)
    async with (
        serving(api_app(ApiSettings(), onward)) as base,
        httpx.AsyncClient(base_url=base, timeout=30) as http,
    ):
        created = (await http.post("/v1/runs", json={"prompt": "p", "script": script})).json()
        url = created["events_url"]
        # One client stays connected throughout; another leaves and resumes after the kill.
        whole_task = asyncio.create_task(read_events(http, url))
        before = await read_events(http, url, stop_after=6)
        written = workspace_dir(workspace, created["id"]) / "l.txt"

        async def two_lines() -> bool:
            return written.exists() and written.read_text().count("\n") >= 2

        await eventually(two_lines, interval_s=0.02)
        first.kill()
        second = WorkerProcess(address, task_queue, workspace, tmp_path / "worker2.log")
        workers.append(second)
        await wait_ready(second)
        after = await read_events(http, url, headers={"Last-Event-ID": str(before[-1].id)})
        whole = await asyncio.wait_for(whole_task, 90)
        replayed = await read_events(http, url)

    assert whole == replayed == before + after
    assert whole[-1].event == "result" and whole[-1].data["status"] == "completed"
    ids = [event.id for event in whole]
    assert ids == sorted(set(ids))
    assert [e.data["step"] for e in whole if e.event == "model"] == list(range(1, TURNS + 2))
    assert_each_tool_call_once(whole)
    assert written.read_text().splitlines() == [str(i) for i in range(1, TURNS + 1)]


def assert_each_tool_call_once(events: list[Sse]) -> None:
    starts = Counter(e.data["call_id"] for e in events if e.event == "tool_started")
    results = Counter(e.data["call_id"] for e in events if e.event == "tool_result")
    assert len(starts) == TURNS
    assert set(starts.values()) == set(results.values()) == {1}
    assert starts.keys() == results.keys()
