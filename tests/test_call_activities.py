"""What a worker does with one call before and while it runs: refuse it, heartbeat it,
give it up when the server has."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.activity import ActivityCancellationDetails
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.testing import ActivityEnvironment

from onward.activities.heartbeat import ATTEMPT_ABANDONED
from onward.activities.model import ModelActivities
from onward.activities.tool_calls import ToolActivities
from onward.activities.tools import builtin_registry, register_tools, tool
from onward.contracts import Message, ModelRequest, ModelResponse, ToolRequest
from onward.errors import DEADLINE_PASSED
from onward.pricing import PricingTable


class Slow:
    """A provider answering after ``delay_s``; counts its calls."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.calls = 0

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        await asyncio.sleep(self.delay_s)
        return ModelResponse(text="hi", model=request.model)


def model_request(**changes: object) -> ModelRequest:
    return ModelRequest.model_validate(
        {"model": "slow:m", "messages": [Message(role="user", content="Hi")], "step": 1} | changes
    )


def heartbeats_of(env: ActivityEnvironment) -> list[float]:
    beats: list[float] = []
    env.on_heartbeat = lambda *details: beats.append(asyncio.get_running_loop().time())
    return beats


@pytest.mark.parametrize(
    ("before_s", "delay_s", "least", "most"),
    [(0, 0.05, 0, 0), (0, 1.3, 2, 3), (0.45, 0.25, 1, 1)],
)
async def test_a_call_heartbeats_only_once_its_attempt_has_run_a_while(
    before_s: float, delay_s: float, least: int, most: int
) -> None:
    # A fast call sends no heartbeat (the SDK sends a first beat at once: one more
    # request to the server for each model call); a long one beats every 0.5 s, the
    # first 0.5 s into the attempt, however long the activity took to begin the call
    # (``before_s``: reading the conversation from the store, say).
    env = ActivityEnvironment()
    started = datetime.now(UTC) - timedelta(seconds=before_s)
    env.info = dataclasses.replace(env.info, started_time=started)
    beats = heartbeats_of(env)
    provider = Slow(delay_s)
    activities = ModelActivities({"slow": provider}, PricingTable({}))

    response = await env.run(activities.call_model, model_request())

    assert response.text == "hi"
    assert least <= len(beats) <= most, beats


async def test_a_model_call_past_its_runs_deadline_is_not_made() -> None:
    provider = Slow(0)
    activities = ModelActivities({"slow": provider}, PricingTable({}))
    late = model_request(not_after=datetime.now(UTC) - timedelta(seconds=3))

    with pytest.raises(ApplicationError) as refused:
        await ActivityEnvironment().run(activities.call_model, late)

    assert refused.value.type == DEADLINE_PASSED and refused.value.non_retryable
    assert "deadline passed 3." in refused.value.message
    assert provider.calls == 0
    in_time = model_request(not_after=datetime.now(UTC) + timedelta(seconds=30))
    assert (await ActivityEnvironment().run(activities.call_model, in_time)).text == "hi"


async def test_a_tool_call_past_its_runs_deadline_is_not_run(tmp_path: Path) -> None:
    activities = ToolActivities(builtin_registry(), tmp_path)
    call = {
        "name": "write_file",
        "arguments": {"path": "a.txt", "content": "a"},
        "call_id": "c1",
        "idempotency_key": "run/1/c1",
        "workspace": "run",
    }
    late = ToolRequest.model_validate(call | {"not_after": datetime.now(UTC)})

    with pytest.raises(ApplicationError) as refused:
        await ActivityEnvironment().run(activities.execute_tool, late)

    assert refused.value.type == DEADLINE_PASSED
    assert not list(tmp_path.rglob("a.txt"))  # nothing written
    done = await ActivityEnvironment().run(activities.execute_tool, ToolRequest(**call))
    assert done.error is None and list(tmp_path.rglob("a.txt"))


async def cancelled_mid_call(
    details: ActivityCancellationDetails, attempt: int = 1
) -> BaseException:
    """What a model call raises when cancelled with ``details`` while the provider answers."""
    env = ActivityEnvironment()
    policy = RetryPolicy(maximum_attempts=attempt)  # ``attempt`` is the last
    env.info = dataclasses.replace(env.info, attempt=attempt, retry_policy=policy)
    provider = Slow(30)
    activities = ModelActivities({"slow": provider}, PricingTable({}))
    call = asyncio.ensure_future(env.run(activities.call_model, model_request()))
    while provider.calls == 0:
        await asyncio.sleep(0.01)
    env.cancel(details)
    with pytest.raises(BaseException) as raised:
        await call
    return raised.value


GIVEN_UP = [
    (ActivityCancellationDetails(timed_out=True), "it timed out (retried if attempts remain)"),
    (
        ActivityCancellationDetails(not_found=True),
        "the server no longer has it (its run ended, or it timed out)",
    ),
]


@pytest.mark.parametrize(("details", "why"), GIVEN_UP)
async def test_an_attempt_the_server_gave_up_ends_as_a_benign_error(
    details: ActivityCancellationDetails, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Temporal ignores the attempt's outcome; the SDK would log the cancellation
    # as an activity failure with a traceback. One line instead.
    caplog.set_level(logging.INFO)
    # The last attempt too: not turned into the call's giving up.
    raised = await cancelled_mid_call(details, attempt=3)

    assert isinstance(raised, ApplicationError), raised
    assert raised.type == ATTEMPT_ABANDONED
    assert raised.category == ApplicationErrorCategory.BENIGN
    assert raised.message == f"attempt 3 abandoned: {why}"
    (line,) = [r for r in caplog.records if "abandoned" in r.getMessage()]
    assert line.exc_info is None


async def test_a_tool_attempt_the_server_gave_up_is_not_the_tools_error(tmp_path: Path) -> None:
    started = asyncio.Event()

    @tool()
    async def slow() -> str:
        """Take a while."""
        started.set()
        await asyncio.sleep(30)
        return "done"

    registry = builtin_registry()
    register_tools(registry, [slow])
    env = ActivityEnvironment()
    request = ToolRequest(name="slow", arguments={}, call_id="c1", idempotency_key="run/1/c1")
    call = asyncio.ensure_future(env.run(ToolActivities(registry, tmp_path).execute_tool, request))
    await started.wait()
    env.cancel(ActivityCancellationDetails(not_found=True))

    with pytest.raises(ApplicationError) as raised:  # not a ToolOutcome with an error
        await call
    assert raised.value.type == ATTEMPT_ABANDONED


@pytest.mark.parametrize(
    "details",
    [
        ActivityCancellationDetails(cancel_requested=True),
        ActivityCancellationDetails(worker_shutdown=True),
        ActivityCancellationDetails(paused=True),
        ActivityCancellationDetails(reset=True),
    ],
)
async def test_other_cancels_stay_cancels(details: ActivityCancellationDetails) -> None:
    raised = await cancelled_mid_call(details)
    assert isinstance(raised, asyncio.CancelledError), raised
