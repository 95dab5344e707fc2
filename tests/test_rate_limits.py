"""Rate limits of model calls shared by every worker of a store (``ONWARD_RATE_LIMITS``)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from postgres_server import PostgresServer, pg_binary, postgres_url
from provider_servers import OPENAI_PATH, FakeProvider, Reply, openai_completion
from pydantic import ValidationError
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from test_crash_resume import WorkerProcess, wait_ready, workers  # noqa: F401 - the fixture
from test_unbounded import OutageModel

from conftest import RunningWorker, eventually, run_onward
from onward.activities.model import ModelActivities
from onward.activities.providers.errors import RATE_LIMITED
from onward.activities.providers.scripted import ScriptedModel
from onward.activities.rate_limits import (
    InProcessSchedules,
    RateLimit,
    RateLimits,
    check_providers,
    load_rate_limits,
)
from onward.contracts import (
    AgentInput,
    AgentResult,
    Budget,
    Message,
    ModelRequest,
    ModelResponse,
    Usage,
)
from onward.errors import DEADLINE_PASSED, StoreError
from onward.plugin import OnwardPlugin
from onward.pricing import PricingTable
from onward.starter.render import step_lines
from onward.store import TranscriptStore, open_store
from onward.store.base import RateBackend
from onward.store.local import LocalStore
from onward.store.postgres import PostgresStore
from onward.worker import WorkerSettings, build_worker, parse_args
from onward.workflows import AgentWorkflow

__all__ = ["postgres_url"]  # the fixture, imported for the tests below

needs_postgres = pytest.mark.skipif(
    pg_binary("initdb") is None, reason="PostgreSQL (initdb) not installed"
)


def request(model: str = "openai:gpt-4o-mini", chars: int = 40) -> ModelRequest:
    return ModelRequest(model=model, messages=[Message(role="user", content="x" * chars)], step=1)


class FrozenClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


# -- the file ---------------------------------------------------------------------------


def test_limits_are_read_from_json_or_toml(tmp_path: Path) -> None:
    as_json = tmp_path / "limits.json"
    as_json.write_text(
        json.dumps(
            {
                "_comment": "org limits",
                "openai": {"requests_per_minute": 500, "tokens_per_minute": 200_000},
                "anthropic:claude-sonnet-4-5": {"requests_per_minute": 50},
            }
        )
    )
    as_toml = tmp_path / "limits.toml"
    as_toml.write_text(
        "[openai]\nrequests_per_minute = 500\ntokens_per_minute = 200000\n\n"
        '["anthropic:claude-sonnet-4-5"]\nrequests_per_minute = 50\n'
    )
    expected = {
        "openai": RateLimit(requests_per_minute=500, tokens_per_minute=200_000),
        "anthropic:claude-sonnet-4-5": RateLimit(requests_per_minute=50),
    }
    assert load_rate_limits(as_json) == expected
    assert load_rate_limits(as_toml) == expected
    as_upper = tmp_path / "LIMITS.TOML"
    as_upper.write_text(as_toml.read_text())
    assert load_rate_limits(as_upper) == expected


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ('["openai"]', "must map providers or models to limits"),
        ('{"openai": {}}', "'openai': limit: Value error, give requests_per_minute"),
        ('{"openai": {"requests_per_minute": 0}}', "'openai': requests_per_minute:"),
        ('{"openai": {"requests_per_minute": -5}}', "greater than 0"),
        ('{"openai": {"rpm": 5}}', "'openai': rpm: Extra inputs are not permitted"),
        ('{"openai": {"requests_per_minute": "many"}}', "requests_per_minute"),
        ('{"openai": {"requests_per_minute": true}}', "requests_per_minute"),
        ('{"openai": {"requests_per_minute": "500"}}', "requests_per_minute"),
        ('{"openai": {"tokens_per_minute": 1e999}}', "tokens_per_minute: Input should be a finite"),
        ('{" openai": {"requests_per_minute": 5}}', "names no provider or model"),
        ('{"openai:": {"requests_per_minute": 5}}', "names no provider or model"),
        ("{not json", "cannot read"),
    ],
)
def test_a_bad_file_is_refused_naming_the_file_and_the_limit(
    tmp_path: Path, content: str, says: str
) -> None:
    path = tmp_path / "limits.json"
    path.write_text(content)
    with pytest.raises(ValueError, match="ONWARD_RATE_LIMITS") as refused:
        load_rate_limits(path)
    assert says in str(refused.value)
    assert str(path) in str(refused.value)


def test_a_limit_for_a_provider_the_worker_lacks_is_refused() -> None:
    limits = {"opnai": RateLimit(requests_per_minute=5)}
    with pytest.raises(ValueError, match=r"'opnai'.*does not have.*openai, scripted"):
        check_providers(limits, ["scripted", "openai"])
    check_providers({"openai:gpt-4.1": RateLimit(requests_per_minute=5)}, ["openai"])


# -- the schedules ----------------------------------------------------------------------


@pytest_asyncio.fixture(
    params=["in-process", "local", pytest.param("postgres", marks=needs_postgres)]
)
async def schedules(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RateBackend]:
    if request.param == "in-process":
        yield InProcessSchedules()
    elif request.param == "local":
        yield LocalStore(tmp_path / "store")
    else:
        store = await PostgresStore.open(request.getfixturevalue("postgres_url"))
        try:
            yield store
        finally:
            await store.close()


async def test_a_schedule_moves_on_by_each_cost_and_back(schedules: RateBackend) -> None:
    """What every backend does: a new key starts at now; each advance adds to the later
    of the schedule and now; a hold puts it at least that far ahead."""
    key = f"test-{uuid.uuid4().hex}"
    assert await schedules.advance(key, 10.0) == pytest.approx(10.0, abs=0.5)
    assert await schedules.advance(key, 10.0) == pytest.approx(20.0, abs=0.5)
    assert await schedules.advance(key, -5.0) == pytest.approx(15.0, abs=0.5)
    assert await schedules.advance(key, 0.0, 100.0) == pytest.approx(100.0, abs=0.5)
    assert await schedules.advance(key, 0.0, 50.0) == pytest.approx(100.0, abs=0.5)
    # Paid off long ago (given back): a schedule never runs behind the clock.
    assert await schedules.advance(key, -500.0) == pytest.approx(0.0, abs=0.5)
    assert await schedules.advance(key, 1.0) == pytest.approx(1.0, abs=0.5)
    # Further ahead than an hour (a clock set back) counts as an hour ahead.
    await schedules.advance(key, 10_000.0)
    assert await schedules.advance(key, 0.0) == pytest.approx(3_600.0, abs=1.0)


async def test_concurrent_advances_each_count(schedules: RateBackend) -> None:
    key = f"test-{uuid.uuid4().hex}"
    await asyncio.gather(*(schedules.advance(key, 1.0) for _ in range(40)))
    assert await schedules.advance(key, 0.0) == pytest.approx(40.0, abs=1.0)


async def test_prune_store_leaves_the_schedules_alone(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    await store.advance("openai#requests", 1.0)
    assert await store.stale_transcripts(timedelta(seconds=-60)) == []


# -- turns ------------------------------------------------------------------------------


async def test_calls_are_spaced_at_the_limits_rate() -> None:
    clock = FrozenClock()
    schedules = InProcessSchedules(clock)
    limits = RateLimits({"openai": RateLimit(requests_per_minute=60)}, schedules)
    turn = await limits.take(request())
    assert turn.waited_s == 0  # the first goes at once
    # The next one, at the same moment, waits a second (60 a minute).
    loop = asyncio.get_running_loop()
    started = loop.time()
    turn = await limits.take(request())
    assert turn.waited_s == pytest.approx(1.0)
    assert loop.time() - started >= 0.95
    # Another model of another provider is under no limit.
    assert (await limits.take(request("anthropic:claude-haiku-4-5"))).waited_s == 0


async def test_a_call_is_under_its_models_limit_and_its_providers() -> None:
    clock = FrozenClock()
    schedules = InProcessSchedules(clock)
    limits = RateLimits(
        {
            "openai": RateLimit(requests_per_minute=600),
            "openai:gpt-4.1": RateLimit(requests_per_minute=6),
        },
        schedules,
    )
    assert set(limits.under("openai:gpt-4.1")) == {"openai:gpt-4.1", "openai"}
    assert set(limits.under("openai:gpt-4o-mini")) == {"openai"}
    await limits.take(request("openai:gpt-4.1"))
    assert await schedules.advance("openai:gpt-4.1#requests", 0) == pytest.approx(10.0)
    assert await schedules.advance("openai#requests", 0) == pytest.approx(0.1)


async def test_tokens_are_estimated_before_the_call_and_settled_by_its_usage() -> None:
    clock = FrozenClock()
    schedules = InProcessSchedules(clock)
    limits = RateLimits({"openai": RateLimit(tokens_per_minute=60_000)}, schedules)  # 1,000/s
    turn = await limits.take(request(chars=4_000))  # about 1,000 tokens
    estimated = await schedules.advance("openai#tokens", 0)
    assert 0.9 < estimated < 1.2
    await turn.settle(Usage(input_tokens=2_500, output_tokens=500))
    assert await schedules.advance("openai#tokens", 0) == pytest.approx(3.0)


async def test_a_429_holds_back_every_call_under_the_limit() -> None:
    clock = FrozenClock()
    schedules = InProcessSchedules(clock)
    limits = RateLimits({"openai": RateLimit(requests_per_minute=6_000)}, schedules)
    turn = await limits.take(request())
    refused = ApplicationError("429", type=RATE_LIMITED, next_retry_delay=timedelta(seconds=7))
    await turn.refused(refused)
    assert await schedules.advance("openai#requests", 0) == pytest.approx(7.0)
    # Another failure (a 500, say) holds nothing back.
    await (await limits.take(request("openai:other"))).refused(ApplicationError("boom"))


class Unreported:
    """A provider whose answers report no usage (an OpenAI-compatible server that omits it)."""

    async def complete(self, request: ModelRequest) -> ModelResponse:
        return ModelResponse(text="y" * 40_000, model=request.model, usage=Usage(estimated=True))


async def test_an_answer_with_no_usage_counts_its_estimate_against_the_tokens_limit() -> None:
    """A 40,000-character answer (about 10,000 tokens) from a provider that reports no
    usage: the tokens limit counts it as the step does, estimated (it counted the
    prompt's estimate alone, and the next call went at once)."""
    clock = FrozenClock()
    schedules = InProcessSchedules(clock)
    limits = RateLimits({"quiet": RateLimit(tokens_per_minute=600_000)}, schedules)  # 10,000/s
    activities = ModelActivities({"quiet": Unreported()}, PricingTable({}), rate_limits=limits)
    response = await ActivityEnvironment().run(activities.call_model, request("quiet:model"))
    assert response.usage.estimated and response.usage.output_tokens == 10_000
    assert await schedules.advance("quiet#tokens", 0) == pytest.approx(1.0, abs=0.01)


class StoreGoesAway(InProcessSchedules):
    """Schedules whose store cannot be reached once ``away`` is set."""

    away = False

    async def advance(self, key: str, add_s: float, hold_s: float = 0.0) -> float:
        if self.away:
            raise StoreError("cannot keep the rate limit in the PostgreSQL store: gone")
        return await super().advance(key, add_s, hold_s)


async def test_a_store_away_after_the_call_does_not_fail_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The answer is paid for (or the provider's 429 is what to retry on): the store
    going away before the schedules are settled is logged, not raised."""
    schedules = StoreGoesAway()
    limits = RateLimits({"openai": RateLimit(tokens_per_minute=60_000)}, schedules)
    turn = await limits.take(request())
    schedules.away = True
    await turn.settle(Usage(input_tokens=2_500, output_tokens=500))
    await turn.refused(
        ApplicationError("429", type=RATE_LIMITED, next_retry_delay=timedelta(seconds=7))
    )
    logged = [record.getMessage() for record in caplog.records]
    assert any("cannot correct the tokens to the usage" in line for line in logged), logged
    assert any("cannot hold the other calls back" in line for line in logged), logged


async def test_a_turn_further_than_the_attempt_can_wait_is_kept_for_the_next_attempt() -> None:
    """The attempt fails (RateLimited) but keeps its place, in its last heartbeat; the
    next, started just before the turn, waits for that place instead of taking another
    at the end of the queue (given back, every such call was told the same time)."""
    clock = FrozenClock()
    schedules = InProcessSchedules(clock)
    limits = RateLimits(
        {"openai": RateLimit(requests_per_minute=60)}, schedules, call_timeout_s=120
    )
    await schedules.advance("openai#requests", 900.0)  # fifteen minutes of calls before it
    environment = ActivityEnvironment()
    environment.info = dataclasses.replace(
        environment.info,
        started_time=datetime.now(UTC),
        start_to_close_timeout=timedelta(minutes=10),
    )
    beats: list[tuple[object, ...]] = []
    environment.on_heartbeat = lambda *details: beats.append(details)
    with pytest.raises(ApplicationError) as failed:
        await environment.run(limits.take, request())
    assert failed.value.type == RATE_LIMITED
    assert not failed.value.non_retryable
    assert failed.value.next_retry_delay == timedelta(seconds=895)  # 5 s before the turn
    assert (
        "900 s away, more than this attempt can wait (450 s); kept for the next attempt, "
        "in 895 s" in failed.value.message
    )
    assert await schedules.advance("openai#requests", 0) == pytest.approx(901.0)  # kept

    # The next attempt, with that heartbeat, when the turn is 0.3 s away: it waits for
    # it and takes no other (15 minutes waited in all, so says its step).
    (kept,) = beats[-1]
    assert isinstance(kept, dict)
    turn_at, since = kept["rate_limit_turn_at"]
    shift = time.time() + 0.3 - turn_at
    kept["rate_limit_turn_at"] = [turn_at + shift, since + shift]
    environment.info = dataclasses.replace(
        environment.info, attempt=2, started_time=datetime.now(UTC), heartbeat_details=[kept]
    )
    beats.clear()
    turn = await environment.run(limits.take, request())
    assert turn.waited_s == pytest.approx(900.0, abs=0.2)
    assert await schedules.advance("openai#requests", 0) == pytest.approx(901.0)
    # Used: a later attempt (after a 500, say) takes a turn of its own.
    assert beats[-1] == ({"model": "openai:gpt-4o-mini", "rate_limit_turn_at": None},)


async def test_a_turn_too_far_for_the_last_attempt_is_given_back_and_said_so() -> None:
    """ONWARD_MODEL_MAX_ATTEMPTS=1: no next attempt comes to take the place kept for it."""
    clock = FrozenClock()
    schedules = InProcessSchedules(clock)
    limits = RateLimits({"openai": RateLimit(requests_per_minute=60)}, schedules)
    await schedules.advance("openai#requests", 900.0)
    environment = ActivityEnvironment()
    environment.info = dataclasses.replace(
        environment.info,
        started_time=datetime.now(UTC),
        start_to_close_timeout=timedelta(minutes=10),
        retry_policy=RetryPolicy(maximum_attempts=1),
    )
    with pytest.raises(ApplicationError) as failed:
        await environment.run(limits.take, request())
    assert failed.value.type == RATE_LIMITED
    assert "than this attempt, the call's last (ONWARD_MODEL_MAX_ATTEMPTS), can wait (450 s)" in (
        failed.value.message
    )
    assert "kept" not in failed.value.message
    assert await schedules.advance("openai#requests", 0) == pytest.approx(900.0)  # given back


async def test_a_call_cancelled_while_waiting_gives_its_place_back() -> None:
    """A run cancelled (or out of time) while its call waits: the call is not sent, so
    the calls after it do not wait for it."""
    schedules = InProcessSchedules()
    limits = RateLimits({"openai": RateLimit(requests_per_minute=60)}, schedules)
    await limits.take(request())  # goes at once: the next waits a second
    waiting = asyncio.create_task(limits.take(request()))
    await asyncio.sleep(0.2)
    assert await schedules.advance("openai#requests", 0) == pytest.approx(1.8, abs=0.1)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    # Only the call that went is left to pay off, not the cancelled one too.
    assert await schedules.advance("openai#requests", 0) == pytest.approx(0.8, abs=0.1)


async def test_a_turn_after_the_runs_deadline_is_refused_at_once_and_given_back() -> None:
    schedules = InProcessSchedules()
    limits = RateLimits({"openai": RateLimit(requests_per_minute=6)}, schedules)  # 10 s apart
    await limits.take(request())
    late = request().model_copy(update={"not_after": datetime.now(UTC) + timedelta(seconds=3)})
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ApplicationError) as refused:
        await limits.take(late)
    assert loop.time() - started < 1.0  # not waited for until the deadline
    assert refused.value.type == DEADLINE_PASSED
    assert refused.value.non_retryable
    assert re.search(
        r"not started: its turn under the shared rate limit \(openai: 6 requests/min\) "
        r"comes 7\.\d s after the run's deadline",
        refused.value.message,
    ), refused.value.message
    assert await schedules.advance("openai#requests", 0) == pytest.approx(10.0, abs=0.5)
    # A turn before the deadline is waited for as usual.
    schedules = InProcessSchedules()
    limits = RateLimits({"openai": RateLimit(requests_per_minute=120)}, schedules)
    await limits.take(request())
    assert (await limits.take(late)).waited_s == pytest.approx(0.5, abs=0.1)


# -- workers sharing a store ------------------------------------------------------------


def answer(text: str) -> Reply:
    return Reply(json=openai_completion(text))


async def started_workers(
    address: str,
    tmp_path: Path,
    workers: list[WorkerProcess],  # noqa: F811 - the fixture imported above
    *,
    store: str,
    limits: dict[str, dict[str, float]],
    openai: FakeProvider,
    env: dict[str, str] | None = None,
) -> list[str]:
    """Two worker processes, each on its own task queue, sharing ``store`` and ``limits``,
    calling ``openai``."""
    path = tmp_path / "limits.json"
    path.write_text(json.dumps(limits))
    queues = [f"rate-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for index, queue in enumerate(queues):
        workers.append(
            WorkerProcess(
                address,
                queue,
                tmp_path / "workspace",
                tmp_path / f"worker-{index}.log",
                {
                    "ONWARD_STORE": store,
                    "ONWARD_RATE_LIMITS": str(path),
                    "OPENAI_API_KEY": "test-key",
                    "OPENAI_BASE_URL": f"{openai.url}/v1",
                    **(env or {}),
                },
            )
        )
    await asyncio.gather(*(wait_ready(worker) for worker in workers))
    return queues


async def run_on(client: Client, queue: str, prompt: str) -> AgentResult:
    handle = await client.start_workflow(
        AgentWorkflow.run,
        AgentInput(prompt=prompt, model="openai:gpt-4o-mini"),
        id=f"rate-{uuid.uuid4().hex[:12]}",
        task_queue=queue,
    )
    result = await handle.result()
    assert result.status == "completed", result
    return result


@pytest.mark.parametrize("backend", ["local", pytest.param("postgres", marks=needs_postgres)])
async def test_workers_sharing_a_store_share_the_limit(
    client: Client,
    address: str,
    tmp_path: Path,
    workers: list[WorkerProcess],  # noqa: F811 - the fixture imported above
    backend: str,
    request: pytest.FixtureRequest,
) -> None:
    """Two worker processes, six calls at once, 120 requests a minute between them: the
    provider sees one call every half second, not six at once."""
    store = (
        str(tmp_path / "store") if backend == "local" else request.getfixturevalue("postgres_url")
    )
    async with FakeProvider(OPENAI_PATH) as server:
        server.script(*(answer(f"answer {i}") for i in range(6)))
        queues = await started_workers(
            address,
            tmp_path,
            workers,
            store=store,
            limits={"openai": {"requests_per_minute": 120}},
            openai=server,
        )
        results = await asyncio.gather(
            *(run_on(client, queues[i % 2], f"question {i}") for i in range(6))
        )
        assert sorted(r.output or "" for r in results) == [f"answer {i}" for i in range(6)]
        arrivals = [recorded.at for recorded in server.requests]
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert len(arrivals) == 6
    # 0.5 s apart at the limiter; the network and a busy machine may bring two closer.
    assert min(gaps) > 0.35, gaps
    assert arrivals[-1] - arrivals[0] > 2.3, gaps
    # Each step says how long of it was the wait: 0, 0.5, 1, ... 2.5 s give or take.
    waits = sorted(result.steps[0].rate_limit_wait_ms for result in results)
    waited = max(results, key=lambda result: result.steps[0].rate_limit_wait_ms).steps[0]
    assert " waiting for the rate limit) · " in step_lines(waited)[-1]
    unwaited = min(results, key=lambda result: result.steps[0].rate_limit_wait_ms).steps[0]
    if not unwaited.rate_limit_wait_ms:
        assert "rate limit" not in step_lines(unwaited)[-1]
    assert waits[0] < 300 and waits[-1] > 2_000, waits
    assert all(
        step.duration_ms and step.duration_ms >= wait
        for step, wait in (
            (result.steps[0], result.steps[0].rate_limit_wait_ms) for result in results
        )
    )


async def test_a_429_on_one_worker_holds_back_the_others(
    client: Client,
    address: str,
    tmp_path: Path,
    workers: list[WorkerProcess],  # noqa: F811 - the fixture imported above
) -> None:
    """The provider says wait 2 s to one worker's call: the other worker's call, started
    meanwhile, waits too instead of hitting the provider at once."""
    async with FakeProvider(OPENAI_PATH) as server:
        server.script(
            Reply(429, {"error": {"message": "slow down"}}, headers={"retry-after": "2"}),
            answer("first"),
            answer("second"),
        )
        queues = await started_workers(
            address,
            tmp_path,
            workers,
            store=str(tmp_path / "store"),
            limits={"openai": {"requests_per_minute": 6_000}},
            openai=server,
        )
        first = asyncio.create_task(run_on(client, queues[0], "first"))

        async def refused() -> bool:
            return len(server.requests) >= 1

        await eventually(refused)
        refused_at = server.requests[0].at
        second = await run_on(client, queues[1], "second")
        assert {(await first).output, second.output} == {"first", "second"}
        assert second.steps[0].rate_limit_wait_ms > 1_500  # held back, and said so
        later = [recorded.at - refused_at for recorded in server.requests[1:]]
    assert len(later) == 2
    assert min(later) > 1.8, later  # neither worker called before the 2 s were up


async def test_calls_queued_further_than_an_attempt_can_wait_all_go_in_order(
    client: Client,
    address: str,
    tmp_path: Path,
    workers: list[WorkerProcess],  # noqa: F811 - the fixture imported above
) -> None:
    """Eight runs at once under 30 requests a minute, with attempts that can wait 5 s
    (ONWARD_MODEL_TIMEOUT_S=565) and two attempts a call: the calls 2 s apart, in
    order, every run completed. Each turn given back, every later call was told to
    come back at the same time, one or two of them went then, the rest failed again,
    and with their attempts used up five of the eight runs failed."""
    async with FakeProvider(OPENAI_PATH) as server:
        server.script(*(answer(f"answer {i}") for i in range(8)))
        queues = await started_workers(
            address,
            tmp_path,
            workers,
            store=str(tmp_path / "store"),
            limits={"openai": {"requests_per_minute": 30}},
            openai=server,
            env={"ONWARD_MODEL_TIMEOUT_S": "565", "ONWARD_MODEL_MAX_ATTEMPTS": "2"},
        )
        results = await asyncio.gather(
            *(run_on(client, queues[i % 2], f"question {i}") for i in range(8))
        )
        arrivals = [recorded.at for recorded in server.requests]
    assert sorted(r.output or "" for r in results) == [f"answer {i}" for i in range(8)]
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert len(arrivals) == 8
    assert min(gaps) > 1.7, gaps
    assert arrivals[-1] - arrivals[0] < 16, gaps  # no call waited past its turn
    # A call's step counts its whole wait, over both attempts: 0, 2, 4, ... 14 s.
    waits = sorted(result.steps[0].rate_limit_wait_ms for result in results)
    assert waits[0] < 500 and 13_000 < waits[-1] < 15_500, waits


async def test_a_call_waiting_on_a_worker_killed_keeps_its_place_on_the_next(
    client: Client,
    address: str,
    tmp_path: Path,
    workers: list[WorkerProcess],  # noqa: F811 - the fixture imported above
) -> None:
    """kill -9 of the worker whose call waits its turn (12 requests a minute, 5 s
    apart): the next attempt, on another worker, waits for the same place. It took
    another before, at the end of the queue: the call went 5 s late, and the dead
    attempt's place held every later call back 5 s more."""
    async with FakeProvider(OPENAI_PATH) as server:
        server.script(answer("first"), answer("second"))
        queue = f"rate-{uuid.uuid4().hex[:8]}"
        limits = tmp_path / "limits.json"
        limits.write_text('{"openai": {"requests_per_minute": 12}}')
        env = {
            "ONWARD_STORE": str(tmp_path / "store"),
            "ONWARD_RATE_LIMITS": str(limits),
            "OPENAI_API_KEY": "test-key",
            "OPENAI_BASE_URL": f"{server.url}/v1",
        }
        workspace = tmp_path / "workspace"
        workers.append(WorkerProcess(address, queue, workspace, tmp_path / "w0.log", env))
        await wait_ready(workers[0])
        await run_on(client, queue, "first")
        second = asyncio.create_task(run_on(client, queue, "second"))

        async def waiting() -> bool:  # its place kept in a heartbeat the server has
            return "waits 4." in workers[0].log.read_text()

        await eventually(waiting)
        await asyncio.sleep(2.0)
        workers[0].kill()
        workers.append(WorkerProcess(address, queue, workspace, tmp_path / "w1.log", env))
        result = await second
        arrivals = [recorded.at for recorded in server.requests]
        schedules = LocalStore(tmp_path / "store")
        paid_off = time.monotonic() + await schedules.advance("openai#requests", 0)
    assert result.output == "second"
    assert 4.5 < arrivals[1] - arrivals[0] < 7.0, arrivals  # at its place (10 s before)
    # Two calls' 10 s from the first, not three calls' 15 s.
    assert 9.5 < paid_off - arrivals[0] < 11.0, paid_off - arrivals[0]


async def test_a_run_cancelled_or_out_of_time_while_its_call_waits_holds_no_one_back(
    client: Client,
    address: str,
    tmp_path: Path,
    workers: list[WorkerProcess],  # noqa: F811 - the fixture imported above
) -> None:
    """Real workers, 6 requests a minute (10 s apart), one call gone: a run with 2 s
    left, whose turn is 10 s away, and a run cancelled while its call waits, send
    nothing, and leave the limit's schedule where the first call left it (they each
    kept their place before: the next call waited 10 s more for each)."""
    store = tmp_path / "store"
    async with FakeProvider(OPENAI_PATH) as server:
        server.script(answer("first"))
        queues = await started_workers(
            address,
            tmp_path,
            workers,
            store=str(store),
            limits={"openai": {"requests_per_minute": 6}},
            openai=server,
        )
        schedules = LocalStore(store)
        loop = asyncio.get_running_loop()

        async def paid_off_at() -> float:
            return loop.time() + await schedules.advance("openai#requests", 0)

        await run_on(client, queues[0], "first")
        first_paid_off = await paid_off_at()

        late = await client.start_workflow(
            AgentWorkflow.run,
            AgentInput(prompt="late", model="openai:gpt-4o-mini", budget=Budget(max_duration_s=2)),
            id=f"rate-{uuid.uuid4().hex[:12]}",
            task_queue=queues[1],
        )
        assert (await late.result()).status == "budget_exceeded"
        assert await paid_off_at() < first_paid_off + 0.5

        waiting = await client.start_workflow(
            AgentWorkflow.run,
            AgentInput(prompt="cancelled", model="openai:gpt-4o-mini"),
            id=f"rate-{uuid.uuid4().hex[:12]}",
            task_queue=queues[0],
        )

        async def waits() -> bool:
            return await paid_off_at() > first_paid_off + 9

        await eventually(waits)
        await waiting.signal("cancel")
        assert (await waiting.result()).status == "cancelled"

        async def given_back() -> bool:
            return await paid_off_at() < first_paid_off + 0.5

        await eventually(given_back, timeout_s=3)
        assert len(server.requests) == 1


class CountedOutageModel(OutageModel):
    """:class:`OutageModel`, reporting the answer's usage (so the tokens limit is settled)."""

    async def complete(self, request: ModelRequest) -> ModelResponse:
        response = await super().complete(request)
        return response.model_copy(update={"usage": Usage(input_tokens=12, output_tokens=3)})


@needs_postgres
async def test_a_paid_reply_survives_a_postgresql_outage_under_a_rate_limit(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    """The answer's usage is settled in the store after the call: with PostgreSQL away
    then, the attempt failed and the next one asked the model again (a second paid
    answer), where the reply itself waits for the store to come back."""
    server = PostgresServer()
    server.start()
    try:
        store = await open_store(server.url)
        model = CountedOutageModel(server)
        settings = WorkerSettings(
            task_queue=f"rate-{uuid.uuid4().hex[:8]}",
            workspace=tmp_path / "ws",
            rate_limits={"scripted": RateLimit(requests_per_minute=6_000, tokens_per_minute=1e6)},
        )
        async with build_worker(
            client,
            settings,
            search_attribute_names=search_attribute_names,
            providers={"scripted": model},
            store=store,
        ):
            result = await RunningWorker(client, settings.task_queue, settings.workspace).run(
                AgentInput(prompt="two and two?")
            )
        assert result.status == "completed", result.reason
        assert result.output == "four"
        assert model.calls == 1 and result.usage.model_calls == 1
        await store.close()
    finally:
        server.remove()


def test_onward_worker_reads_the_flag_or_the_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.json"
    good.write_text('{"openai": {"requests_per_minute": 500}}')
    bad = tmp_path / "bad.json"
    bad.write_text('{"openai": {"rpm": 500}}')

    from_variable, _ = parse_args([], {"ONWARD_RATE_LIMITS": str(good)})
    from_flag, _ = parse_args(["--rate-limits", str(good)], {"ONWARD_RATE_LIMITS": str(bad)})
    assert from_variable.rate_limits == {"openai": RateLimit(requests_per_minute=500)}
    assert from_flag.rate_limits == from_variable.rate_limits  # the flag wins
    assert parse_args([], {})[0].rate_limits == {}

    with pytest.raises(SystemExit) as exited:
        parse_args(["--rate-limits", str(bad)], {})
    assert exited.value.code == 2
    assert "bad.json: 'openai': rpm: Extra inputs are not permitted" in capsys.readouterr().err


async def test_a_worker_with_a_limit_for_a_provider_it_lacks_does_not_start(
    tmp_path: Path,
) -> None:
    limits = tmp_path / "limits.json"
    limits.write_text('{"opnai": {"requests_per_minute": 5}}')
    # Refused before connecting: no Temporal server is needed to hear it.
    stopped = await run_onward(
        "worker",
        "--rate-limits",
        str(limits),
        env={"TEMPORAL_ADDRESS": "127.0.0.1:9", "ONWARD_STORE": str(tmp_path / "store")},
        cwd=tmp_path,
    )
    assert stopped.code == 2
    assert "the limit 'opnai' is for provider 'opnai', which this worker does not have" in (
        stopped.stderr
    )


def test_the_plugin_takes_limits_as_objects_or_their_fields(tmp_path: Path) -> None:
    store = TranscriptStore(LocalStore(tmp_path / "store"))
    plugin = OnwardPlugin(
        providers={"openai": ScriptedModel()},
        store=store,
        rate_limits={"openai": {"requests_per_minute": 500}},
    )
    assert plugin.rate_limits.limits == {"openai": RateLimit(requests_per_minute=500)}
    with pytest.raises(ValidationError, match="requests_per_minute"):
        OnwardPlugin(
            providers={"openai": ScriptedModel()},
            store=store,
            rate_limits={"openai": {"requests_per_minute": -1}},
        )
