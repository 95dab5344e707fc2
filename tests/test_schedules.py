"""Agents that run periodically: Temporal Schedules through the client and ``onward schedule``."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from greeting_workflow import GreetingWorkflow
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from conftest import RunningWorker, eventually, run_onward, running_worker
from onward import search_attributes as sa
from onward.activities.providers import providers_from_env
from onward.client import OnwardClient
from onward.contracts import AgentInput, ScriptTurn
from onward.errors import InvalidInput, ScheduleNotFound
from onward.schedules import ScheduleRow
from onward.starter.schedule_commands import schedule_lines
from onward.workflows import AgentWorkflow

YEARLY = "0 8 1 1 *"
"""Far enough away that only a trigger starts a run during a test."""


async def finished_run(client: OnwardClient, schedule_id: str) -> str:
    """The workflow id of the schedule's first run, once it has completed."""
    found: list[str] = []

    async def started() -> bool:
        row = await client.schedule(schedule_id)
        found[:] = row.recent_runs or row.running
        return bool(found)

    await eventually(started)
    return found[0]


async def test_a_triggered_schedule_runs_the_agent(worker: RunningWorker) -> None:
    client = OnwardClient(worker.client, task_queue=worker.task_queue)
    schedule_id = await client.schedule_create(
        YEARLY, {"prompt": "daily digest", "script": [{"text": "digest ready"}]}
    )
    try:
        row = await client.schedule(schedule_id)
        assert (row.cron, row.paused, row.prompt, row.model) == (
            [YEARLY],
            False,
            "daily digest",
            "scripted",
        )
        assert row.input == AgentInput(
            prompt="daily digest", script=[ScriptTurn(text="digest ready")]
        )
        assert row.next_runs and not row.recent_runs

        await client.schedule_trigger(schedule_id)
        run_id = await finished_run(client, schedule_id)
        assert run_id.startswith(schedule_id)
        result = await client.result(run_id)
        assert (result.status, result.output) == ("completed", "digest ready")

        await client.schedule_pause(schedule_id, "on holiday")
        paused = await client.schedule(schedule_id)
        assert (paused.paused, paused.note) == (True, "on holiday")

        async def listed() -> bool:
            rows = await client.schedule_list()
            return any(r.schedule_id == schedule_id and r.paused for r in rows)

        await eventually(listed)
    finally:
        await client.schedule_delete(schedule_id)
    with pytest.raises(InvalidInput, match="no schedule with id") as missing:
        await client.schedule(schedule_id)
    assert isinstance(missing.value, ScheduleNotFound)  # typed: the HTTP API's 404
    assert missing.value.schedule_id == schedule_id
    for control in (client.schedule_pause, client.schedule_trigger, client.schedule_memo):
        with pytest.raises(ScheduleNotFound):
            await control(schedule_id)


async def test_bad_schedule_input_is_refused_naming_the_field(client: Client) -> None:
    onward = OnwardClient(client, task_queue="unused")
    with pytest.raises(InvalidInput, match=r"^cron: ") as caught:
        await onward.schedule_create("every tuesday", {"prompt": "p"})
    assert [problem["loc"] for problem in caught.value.problems] == [("cron",)]
    with pytest.raises(InvalidInput, match="prompt"):
        await onward.schedule_create(YEARLY, {"prompt": " "})
    with pytest.raises(InvalidInput, match=r"^id: must not be blank"):
        await onward.schedule_create(YEARLY, {"prompt": "p"}, id="")
    # Its runs are named <id>-<time>: an id that leaves no room is the id's fault.
    with pytest.raises(InvalidInput, match=r"^id: WorkflowId exceeds maximum allowed length"):
        await onward.schedule_create(YEARLY, {"prompt": "p"}, id="x" * 995)
    taken = await onward.schedule_create(YEARLY, {"prompt": "p"})
    try:
        with pytest.raises(InvalidInput, match=f"^id: a schedule {taken} exists already") as twice:
            await onward.schedule_create(YEARLY, {"prompt": "p"}, id=taken)
        assert [problem["loc"] for problem in twice.value.problems] == [("id",)]
    finally:
        await onward.schedule_delete(taken)


async def test_a_scheduled_run_is_its_tenants_from_its_start(
    client: Client, search_attribute_names: list[str]
) -> None:
    # No worker takes it up: the tag is the one it was started with, not the run's own.
    assert sa.TENANT.name in search_attribute_names
    nobody = OnwardClient(client, task_queue=f"nobody-{uuid.uuid4().hex[:8]}")
    tenant = f"acme-{uuid.uuid4().hex[:8]}"
    mine = await nobody.schedule_create(YEARLY, {"prompt": "p", "tenant": tenant})
    theirs = await nobody.schedule_create(YEARLY, {"prompt": "p", "tenant": f"{tenant}-2"})
    untagged = await nobody.schedule_create(YEARLY, {"prompt": "p"})
    run_id = ""
    try:
        assert (await nobody.schedule_memo(mine))["onward"]["tenant"] == tenant
        await nobody.schedule_trigger(mine)
        run_id = await started_run(nobody, mine)
        info = await nobody.info(run_id)
        assert info.running and info.tenant == tenant

        async def listed() -> bool:
            rows = await nobody.schedule_list(tenant=tenant)
            everyone = {row.schedule_id for row in await nobody.schedule_list(limit=1000)}
            return [row.schedule_id for row in rows] == [mine] and {
                mine,
                theirs,
                untagged,
            } <= everyone

        await eventually(listed)
    finally:
        for schedule_id in (mine, theirs, untagged):
            await nobody.schedule_delete(schedule_id)
        with contextlib.suppress(Exception):
            await client.get_workflow_handle(run_id).terminate("test over")


async def test_onward_schedule_commands(worker: RunningWorker, address: str) -> None:
    env = {"TEMPORAL_ADDRESS": address, "ONWARD_TASK_QUEUE": worker.task_queue}
    client = OnwardClient(worker.client, task_queue=worker.task_queue)
    await eventually(client.has_worker)  # so that `create` has a worker to check with
    schedule_id = f"sched-{uuid.uuid4().hex[:8]}"
    created = await run_onward(
        "schedule", "create", "--cron", YEARLY, "--prompt", "hello", "--id", schedule_id,
        "--json", env=env,
    )  # fmt: skip
    assert created.code == 0, created.stderr
    assert created.json() == {"schedule_id": schedule_id, "checked": True}
    twice = await run_onward(
        "schedule", "create", "--cron", YEARLY, "--prompt", "hello", "--id", schedule_id,
        "--json", env=env,
    )  # fmt: skip
    assert twice.code == 2, twice.stderr
    assert twice.json()["error"]["type"] == "InvalidInput"
    assert f"id: a schedule {schedule_id} exists already" in twice.json()["error"]["message"]
    triggered = await run_onward("schedule", "trigger", schedule_id, env=env)
    assert triggered.code == 0, triggered.stderr

    run_id = await finished_run(client, schedule_id)
    handle = worker.client.get_workflow_handle_for(AgentWorkflow.run, run_id)
    assert (await handle.result()).status == "completed"
    shown = await run_onward("schedule", "show", schedule_id, "--json", env=env)
    assert shown.code == 0, shown.stderr
    assert (shown.json()["schedule_id"], shown.json()["recent_runs"]) == (schedule_id, [run_id])
    told = await run_onward("schedule", "show", schedule_id, env=env)
    assert f"  ran:    {run_id}" in told.stdout.splitlines()
    assert "  tools:  (the built-ins)" in told.stdout.splitlines()

    paused = await run_onward("schedule", "pause", schedule_id, env=env)
    assert (paused.code, paused.stdout.strip()) == (0, f"schedule {schedule_id}: paused")
    deleted = await run_onward("schedule", "delete", schedule_id, env=env)
    assert deleted.code == 0, deleted.stderr
    again = await run_onward("schedule", "delete", schedule_id, env=env)
    assert again.code == 2
    assert f"no schedule with id {schedule_id}" in again.stderr
    bad = await run_onward("schedule", "create", "--cron", "nope", "--prompt", "p", env=env)
    assert bad.code == 2 and "cron" in bad.stderr
    blank = await run_onward("schedule", "create", "--cron", YEARLY, "--prompt", " ", env=env)
    assert blank.code == 2
    assert "invalid input: prompt (--prompt): must not be blank" in blank.stderr
    lacking = await run_onward(
        "schedule", "create", "--cron", YEARLY, "--prompt", "p", "--tool", "nosuch", env=env
    )  # fmt: skip
    assert lacking.code == 2
    assert "invalid input: tools: unknown tool(s) 'nosuch'; this worker has: " in lacking.stderr
    unasked = await run_onward(
        "schedule", "create", "--cron", YEARLY, "--prompt", "p", "--tool", "nosuch",
        "--no-check", "--json", env=env,
    )  # fmt: skip
    assert unasked.code == 0, unasked.stderr
    assert unasked.json()["checked"] is False and not unasked.stderr
    await client.schedule_delete(unasked.json()["schedule_id"])
    unchecked = await run_onward(
        "schedule", "create", "--cron", YEARLY, "--prompt", "p", "--json",
        env={**env, "ONWARD_TASK_QUEUE": f"nobody-{uuid.uuid4().hex[:8]}"},
    )  # fmt: skip
    assert unchecked.code == 0, unchecked.stderr
    assert unchecked.json()["checked"] is False
    assert "not checked by a worker: none answered on task queue nobody-" in unchecked.stderr
    await client.schedule_delete(unchecked.json()["schedule_id"])


async def test_a_schedule_takes_an_output_schema_as_onward_run_does(
    worker: RunningWorker, address: str, tmp_path: Path
) -> None:
    env = {"TEMPORAL_ADDRESS": address, "ONWARD_TASK_QUEUE": worker.task_queue}
    schema = tmp_path / "schema.json"
    schema.write_text('{"type": "object", "properties": {"n": {"type": "integer"}}}')
    script = tmp_path / "script.json"
    script.write_text('[{"tool_calls": [{"name": "final_answer", "arguments": {"n": 3}}]}]')
    schedule_id = f"schema-{uuid.uuid4().hex[:8]}"
    created = await run_onward(
        "schedule", "create", "--cron", YEARLY, "--prompt", "count", "--id", schedule_id,
        "--output-schema", str(schema), "--script", str(script), env=env,
    )  # fmt: skip
    assert created.code == 0, created.stderr
    client = OnwardClient(worker.client, task_queue=worker.task_queue)
    try:
        await client.schedule_trigger(schedule_id)
        result = await client.result(await finished_run(client, schedule_id))
        assert (result.status, result.structured_output) == ("completed", {"n": 3})
    finally:
        await client.schedule_delete(schedule_id)


async def test_what_its_workers_lack_is_refused_when_a_schedule_is_made(
    worker: RunningWorker,
) -> None:
    # Refused by a worker of the task queue, as each run would be: not every morning.
    client = OnwardClient(worker.client, task_queue=worker.task_queue)
    await eventually(client.has_worker)  # its first poll: with none, nothing is checked
    refused: dict[str, tuple[dict[str, Any], str]] = {
        "tools": ({"prompt": "p", "tools": ["calculator", "nosuch"]}, "unknown tool(s) 'nosuch'"),
        "model": ({"prompt": "p", "model": "acme:m1"}, "unknown model provider 'acme'"),
        "approve_tools": (
            {"prompt": "p", "tools": ["calculator"], "approve_tools": ["write_file"]},
            "'write_file' not among the run's tools (calculator)",
        ),
        "workspace": ({"prompt": "p", "workspace": "other-run"}, "only a sub-agent"),
    }
    for field, (agent, message) in refused.items():
        schedule_id = f"refused-{field}-{uuid.uuid4().hex[:8]}"
        with pytest.raises(InvalidInput, match=f"^invalid input: {field}: ") as caught:
            await client.schedule_create(YEARLY, agent, schedule_id)
        assert message in str(caught.value)
        assert [problem["loc"] for problem in caught.value.problems] == [(field,)]
        # The very words a run of it fails with.
        with pytest.raises(WorkflowFailureError) as failed:
            await worker.run(agent)
        assert isinstance(failed.value.cause, ApplicationError)
        assert str(caught.value) == f"invalid input: {failed.value.cause.message}"
        with pytest.raises(InvalidInput, match="no schedule with id"):
            await client.schedule(schedule_id)  # nothing was created
    # What it has passes, the workflow's own tools included.
    assert await client.check_input(
        {
            "prompt": "p",
            "tools": ["calculator", "delegate", "wait"],
            "approve_tools": ["delegate", "wait"],
            "output_schema": {"type": "object"},
        }
    )
    # Asked not to check, it is created as it is (and would fail at each time).
    schedule_id = await client.schedule_create(
        YEARLY, {"prompt": "p", "tools": ["nosuch"]}, check=False
    )
    await client.schedule_delete(schedule_id)


async def test_a_provider_its_worker_has_no_key_for_is_refused(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    # Every run would fail at its first model call, each morning.
    providers = providers_from_env({})  # no OPENAI_API_KEY, no ANTHROPIC_API_KEY
    async with running_worker(
        client, tmp_path / "ws", search_attribute_names, providers=providers
    ) as keyless:
        onward = OnwardClient(client, task_queue=keyless.task_queue)
        await eventually(onward.has_worker)
        agent = {"prompt": "p", "model": "openai:gpt-4o-mini"}
        with pytest.raises(InvalidInput) as caught:
            await onward.schedule_create(YEARLY, agent)
        message = "openai: OPENAI_API_KEY is not set on the worker"
        assert str(caught.value).startswith(f"invalid input: model: {message}")
        assert caught.value.problems[0]["loc"] == ("model",)
        result = await keyless.run(agent)  # what a run of it does
        assert result.status == "failed" and message in (result.reason or "")
        assert await onward.check_input({"prompt": "p", "model": "ollama:llama3.2"})
        # With fallback models a run goes on with them: not refused for the first's key;
        # a fallback whose provider the worker has not got is, naming it.
        fallen = {**agent, "fallback_models": ["ollama:llama3.2"]}
        assert await onward.check_input(fallen)
        with pytest.raises(InvalidInput) as caught:
            await onward.check_input({**agent, "fallback_models": ["acme:x"]})
        assert str(caught.value).startswith(
            "invalid input: fallback_models.0: unknown model provider 'acme'"
        )


async def test_with_no_worker_to_ask_a_schedule_is_made_unchecked(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    nobody = OnwardClient(client, task_queue=f"nobody-{uuid.uuid4().hex[:8]}")
    assert await nobody.check_input({"prompt": "p", "tools": ["nosuch"]}) is False
    schedule_id = await nobody.schedule_create(YEARLY, {"prompt": "p", "tools": ["nosuch"]})
    await nobody.schedule_delete(schedule_id)
    # A worker of an Onward without the check polls, but never answers it.
    monkeypatch.setattr("onward.client.INPUT_CHECK_TIMEOUT", timedelta(seconds=2))
    older = OnwardClient(client, task_queue=f"older-{uuid.uuid4().hex[:8]}")
    async with Worker(client, task_queue=older.task_queue, workflows=[GreetingWorkflow]):
        assert await older.check_input({"prompt": "p", "tools": ["nosuch"]}) is False


async def test_a_trigger_starts_a_run_while_the_last_one_still_goes(
    worker: RunningWorker,
) -> None:
    client = OnwardClient(worker.client, task_queue=worker.task_queue)
    slow = {"prompt": "slow", "script": [{"text": "done", "delay_s": 3}]}
    schedule_id = await client.schedule_create(YEARLY, slow)
    try:
        await client.schedule_trigger(schedule_id)
        first = await started_run(client, schedule_id)
        # A run's id is the schedule's and the second it starts: a trigger within the
        # same second would name the same run.
        await asyncio.sleep(1.1)
        assert (await client.info(first)).running  # it has about 2 s to go
        await client.schedule_trigger(schedule_id)

        async def two_runs() -> bool:
            return len((await client.schedule(schedule_id)).recent_runs) == 2

        await eventually(two_runs)
        runs = (await client.schedule(schedule_id)).recent_runs
        for run_id in runs:
            assert (await client.result(run_id)).output == "done"
    finally:
        await client.schedule_delete(schedule_id)


async def test_a_listed_schedule_reads_as_its_description(worker: RunningWorker) -> None:
    # A listing knows no running runs, and is a moment late: each row is described.
    client = OnwardClient(worker.client, task_queue=worker.task_queue)
    slow = {"prompt": "slow", "script": [{"text": "done", "delay_s": 4}]}
    schedule_id = await client.schedule_create("@every 2s", slow)
    try:
        listed: list[ScheduleRow] = []

        async def listed_running() -> bool:
            rows = await client.schedule_list()
            listed[:] = [row for row in rows if row.schedule_id == schedule_id and row.running]
            return bool(listed)

        await eventually(listed_running)
        assert listed[0].running[0].startswith(f"{schedule_id}-")
        await client.schedule_pause(schedule_id, "at once")
        [row] = [row for row in await client.schedule_list() if row.schedule_id == schedule_id]
        assert (row.paused, row.note) == (True, "at once")
    finally:
        await client.schedule_delete(schedule_id)


async def started_run(client: OnwardClient, schedule_id: str) -> str:
    """The workflow id of the schedule's first run, once it has started."""
    found: list[str] = []

    async def started() -> bool:
        found[:] = (await client.schedule(schedule_id)).recent_runs
        return bool(found)

    await eventually(started)
    return found[0]


def test_a_paused_schedule_lists_no_next_run() -> None:
    # It starts nothing while paused: "next: 08:00" read as a promise.
    when = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
    row = ScheduleRow(schedule_id="s", cron=["0 8 * * *"], next_runs=[when], prompt="p")
    assert "  next:   2026-12-06T08:00:00+00:00" in schedule_lines(row)
    paused = schedule_lines(row.model_copy(update={"paused": True}))
    assert paused[0].endswith("paused  ?") and not any("next:" in line for line in paused)
    agent = AgentInput(prompt="p", tools=["calculator"], tenant="acme", memory_scope="alice")
    shown = schedule_lines(
        row.model_copy(update={"recent_runs": ["s-1", "s-2"], "running": ["s-2"], "input": agent}),
        detailed=True,
    )
    assert shown[2:] == [
        "  tools:  calculator",
        "  tenant: acme",
        "  memory: alice",
        "  next:   2026-12-06T08:00:00+00:00",
        "  ran:    s-1",
        "  ran:    s-2",
        "  running: s-2",
    ]
