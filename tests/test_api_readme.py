"""The README's curl lines, run as written against the served API (a plain curl client)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from api_server import serving
from conftest import RunningWorker, eventually
from onward.client import OnwardClient
from onward.starter.api import ApiSettings, api_app

README = Path(__file__).resolve().parent.parent / "README.md"


def curl_flow(heading: str = "### Submit, stream, result") -> str:
    """The first bash block under ``heading`` in the README's HTTP API section."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index(heading) :]
    found = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert found, f"no bash block under {heading!r}"
    return found.group(1)


async def run_flow(worker: RunningWorker, heading: str) -> str:
    """Run the block under ``heading`` with bash against the served API; its output."""
    onward = OnwardClient(worker.client, task_queue=worker.task_queue)
    async with serving(api_app(ApiSettings(), onward)) as base:
        process = await asyncio.create_subprocess_exec(
            "bash",
            "-euo",
            "pipefail",
            "-c",
            curl_flow(heading),
            env={**os.environ, "API": base},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode()


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
async def test_the_readme_curl_flow_submits_streams_and_gets_the_result(
    worker: RunningWorker,
) -> None:
    onward = OnwardClient(worker.client, task_queue=worker.task_queue)
    async with serving(api_app(ApiSettings(), onward)) as base:
        process = await asyncio.create_subprocess_exec(
            "bash",
            "-euo",
            "pipefail",
            "-c",
            curl_flow(),
            env={**os.environ, "API": base},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    text = out.decode()
    events = re.findall(r"^event: (\w+)$", text, re.MULTILINE)
    assert events[-1] == "result"
    assert {"model", "tool_started", "tool_result"} <= set(events)
    result = json.loads(text.rsplit("\n\n", 1)[-1].strip().splitlines()[-1])
    assert result["status"] == "completed"
    assert result["output"] == "17 * 3 + 4 = 55"


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
async def test_the_readme_token_streaming_block_shows_tokens_before_the_message(
    worker: RunningWorker,
) -> None:
    text = await run_flow(worker, "### Token streaming")
    events = re.findall(r"^event: (\w+)$", text, re.MULTILINE)
    assert events[-1] == "result"
    assert events.count("token") >= 2
    assert events.index("token") < events.index("model")
    tokens = re.findall(r"^event: token\ndata: (.*)$", text, re.MULTILINE)
    streamed = "".join(json.loads(data)["text"] for data in tokens)
    assert streamed == "hello there, streamed word by word"


def session_flow() -> str:
    """The bash block under "Sessions over HTTP" in the README's HTTP API section."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Sessions over HTTP") :]
    found = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert found, "no bash block under 'Sessions over HTTP'"
    return found.group(1)


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
async def test_the_readme_session_curl_lines_talk_and_close(worker: RunningWorker) -> None:
    onward = OnwardClient(worker.client, task_queue=worker.task_queue)
    async with serving(api_app(ApiSettings(), onward)) as base:
        process = await asyncio.create_subprocess_exec(
            "bash",
            "-euo",
            "pipefail",
            "-c",
            session_flow(),
            env={**os.environ, "API": base},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    reply, status, closed = _documents(out.decode())
    assert reply["number"] == 1 and reply["status"] == "completed"
    assert status["state"] == "idle" and status["turns"] == 1
    assert closed["accepted"] is True


def _documents(text: str) -> list[dict[str, object]]:
    """The JSON documents curl printed back to back."""
    decoder = json.JSONDecoder()
    found: list[dict[str, object]] = []
    index = 0
    while index < len(text):
        if text[index].isspace():
            index += 1
            continue
        document, index = decoder.raw_decode(text, index)
        found.append(document)
    return found


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
async def test_the_readme_schedule_curl_lines_trigger_pause_and_delete(
    worker: RunningWorker,
) -> None:
    out = await run_flow(worker, "### Schedules over HTTP")
    triggered, paused, deleted = _documents(out)
    schedule_id = paused["schedule_id"]
    assert triggered == {"id": schedule_id, "accepted": True}
    assert (paused["paused"], paused["note"], paused["cron"]) == (True, "on holiday", ["0 8 * * *"])
    assert deleted == {"id": schedule_id, "accepted": True}
    # The run the trigger started goes on, and completes.
    query = f'TemporalScheduledById = "{schedule_id}"'
    found: list[str] = []

    async def started() -> bool:
        found[:] = [run.id async for run in worker.client.list_workflows(query)]
        return bool(found)

    await eventually(started)
    onward = OnwardClient(worker.client, task_queue=worker.task_queue)
    assert found[0].startswith(f"{schedule_id}-")
    assert (await onward.result(found[0])).output == "All quiet."
