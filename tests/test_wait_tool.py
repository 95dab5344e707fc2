"""The `wait` tool is a durable workflow timer: hours long, free, and on time."""

from __future__ import annotations

import time
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from conftest import RunningWorker, running_worker


async def test_a_three_hour_wait_completes_under_time_skipping(
    time_skipping_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    script = [
        {
            "text": "checking back later",
            "tool_calls": [{"name": "wait", "arguments": {"seconds": 3 * 3600}}],
        },
        {"text": "back after three hours"},
    ]
    started = time.monotonic()
    async with running_worker(time_skipping_env.client, tmp_path, []) as worker:
        handle = await worker.start({"prompt": "wait a while", "script": script})
        result = await handle.result()
    assert time.monotonic() - started < 30  # three hours of workflow time, seconds of ours
    assert result.status == "completed"
    assert result.output == "back after three hours"
    call = result.steps[0].tool_calls[0]
    assert (call.name, call.result, call.error) == ("wait", "waited 10800 s", None)
    assert call.duration_ms is not None and call.duration_ms >= 3 * 3600 * 1000
    events = [e async for e in handle.fetch_history_events()]
    assert any(e.HasField("timer_started_event_attributes") for e in events)


async def test_wait_rejects_bad_arguments_and_is_offered_only_when_asked(
    worker: RunningWorker,
) -> None:
    script = [
        {"tool_calls": [{"name": "wait", "arguments": {"seconds": -1}}]},
        {"text": "ok"},
    ]
    result = await worker.run({"prompt": "p", "script": script, "tools": ["wait"]})
    assert result.status == "completed"
    error = result.steps[0].tool_calls[0].error
    assert error is not None and "seconds" in error

    no_wait = await worker.run({"prompt": "p", "script": script, "tools": ["calculator"]})
    error = no_wait.steps[0].tool_calls[0].error
    assert error is not None and "unknown tool 'wait'" in error
