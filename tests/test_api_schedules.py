"""Schedules over HTTP: make, list, show, pause, trigger and delete; tenants and their limits."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from test_api_document import conforms
from test_api_tenants import bearer, loci, two_tenants

from api_server import serving
from conftest import RunningWorker, eventually
from onward.api_keys import ApiKeys
from onward.client import OnwardClient
from onward.starter.api import ApiSettings, Limits, api_app

YEARLY = "0 8 1 1 *"
"""Far enough away that only a trigger starts a run during a test."""
DIGEST = {"prompt": "daily digest", "script": [{"text": "digest ready"}]}


@asynccontextmanager
async def api(
    worker: RunningWorker, keys_file: Path | None = None, limits: Limits | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    onward = OnwardClient(worker.client, task_queue=worker.task_queue)
    keys = None if keys_file is None else ApiKeys.load(keys_file)
    settings = ApiSettings(keys=keys, limits=limits or Limits())
    async with (
        serving(api_app(settings, onward)) as base,
        httpx.AsyncClient(base_url=base, timeout=60) as http,
    ):
        yield http


async def first_run(http: httpx.AsyncClient, url: str, headers: dict[str, str]) -> str:
    """The id of the first run the schedule at ``url`` started."""
    found: list[str] = []

    async def started() -> bool:
        found[:] = (await http.get(url, headers=headers)).json()["recent_runs"]
        return bool(found)

    await eventually(started)
    return found[0]


async def test_a_schedule_is_made_shown_paused_triggered_and_deleted(
    worker: RunningWorker,
) -> None:
    async with api(worker) as http:
        document = (await http.get("/openapi.json")).json()
        answer = await http.post("/v1/schedules", json={"cron": YEARLY, "input": DIGEST})
        assert answer.status_code == 201, answer.text
        made = answer.json()
        schedule_id = made["schedule_id"]
        url = f"/v1/schedules/{schedule_id}"
        assert answer.headers["location"] == url
        assert (made["cron"], made["paused"], made["prompt"]) == ([YEARLY], False, "daily digest")
        assert made["input"]["tenant"] == "default"  # the API key's (here: no keys)
        assert made["next_runs"] and not made["recent_runs"]
        answers = [answer]
        try:
            shown = await http.get(url)
            assert shown.json() == made
            paused = await http.post(f"{url}/pause", json={"note": "on holiday"})
            assert (paused.json()["paused"], paused.json()["note"]) == (True, "on holiday")
            unpaused = await http.post(f"{url}/unpause")  # the note is optional
            assert unpaused.json()["paused"] is False
            answers += [shown, paused, unpaused]

            async def listed() -> bool:
                rows = (await http.get("/v1/schedules")).json()
                return any(row["schedule_id"] == schedule_id for row in rows)

            await eventually(listed)
            answers.append(await http.get("/v1/schedules", params={"limit": 5}))

            triggered = await http.post(f"{url}/trigger")
            assert triggered.json() == {"id": schedule_id, "accepted": True}
            answers.append(triggered)
            run_id = await first_run(http, url, {})
            # The run is the tenant's: read through the run routes.
            result = await http.get(f"/v1/runs/{run_id}/result", params={"wait": 30})
            assert result.status_code == 200, result.text
            assert (result.json()["status"], result.json()["output"]) == (
                "completed",
                "digest ready",
            )
        finally:
            deleted = await http.delete(url)
        assert deleted.json() == {"id": schedule_id, "accepted": True}
        answers.append(deleted)
        for method, path in [
            ("GET", url),
            ("DELETE", url),
            ("POST", f"{url}/pause"),
            ("POST", f"{url}/unpause"),
            ("POST", f"{url}/trigger"),
            ("GET", "/v1/schedules/schedule-nosuch"),
        ]:
            missing = await http.request(method, path)
            assert missing.status_code == 404, (method, path, missing.text)
            assert missing.json()["error"]["type"] == "ScheduleNotFound"
            answers.append(missing)
        for each in answers:
            conforms(document, each)


async def test_a_bad_cron_or_input_is_a_422_naming_the_field(worker: RunningWorker) -> None:
    async with api(worker) as http:
        await eventually(OnwardClient(worker.client, task_queue=worker.task_queue).has_worker)
        document = (await http.get("/openapi.json")).json()
        refused: list[tuple[dict[str, Any], list[object]]] = [
            ({"cron": "every tuesday", "input": DIGEST}, ["body", "cron"]),
            ({"cron": "", "input": DIGEST}, ["body", "cron"]),
            ({"cron": YEARLY, "input": {"script": []}}, ["body", "input", "prompt"]),
            ({"cron": YEARLY, "input": {**DIGEST, "tenant": "x"}}, ["body", "input", "tenant"]),
            (
                {"cron": YEARLY, "input": {**DIGEST, "delegation_depth": 1}},
                ["body", "input", "delegation_depth"],
            ),
            (  # refused by the worker, as each run would be
                {"cron": YEARLY, "input": {**DIGEST, "tools": ["nosuch"]}},
                ["body", "input", "tools"],
            ),
            (
                {"cron": YEARLY, "input": {**DIGEST, "webhook_url": "ftp://x"}},
                ["body", "input", "webhook_url"],
            ),
            ({"cron": YEARLY, "input": DIGEST, "id": "mine"}, ["body", "id"]),
            ({"cron": YEARLY}, ["body", "input"]),
        ]
        for body, where in refused:
            answer = await http.post("/v1/schedules", json=body)
            assert answer.status_code == 422, (body, answer.text)
            assert loci(answer) == [where], (body, answer.text)
            conforms(document, answer)
        assert "cron: " in (await http.post("/v1/schedules", json=refused[0][0])).text
        made = (await http.post("/v1/schedules", json={"cron": YEARLY, "input": DIGEST})).json()
        url = f"/v1/schedules/{made['schedule_id']}"
        try:
            noted = await http.post(f"{url}/pause", json={"reason": "x"})
            assert (noted.status_code, loci(noted)) == (422, [["body", "reason"]])
            bodied = await http.post(f"{url}/trigger", json={"now": True})
            assert (bodied.status_code, loci(bodied)) == (422, [["body", "now"]])
            assert (await http.get(url)).json()["recent_runs"] == []  # nothing was started
        finally:
            await http.delete(url)


async def test_a_tenant_sees_and_controls_only_its_own_schedules(
    worker: RunningWorker, tmp_path: Path
) -> None:
    keys_file, acme, globex = two_tenants(tmp_path)
    async with api(worker, keys_file) as http:
        assert (await http.get("/v1/schedules")).status_code == 401
        body = {"cron": YEARLY, "input": DIGEST, "idempotency_key": "digest"}
        mine = await http.post("/v1/schedules", json=body, headers=bearer(acme))
        theirs = await http.post("/v1/schedules", json=body, headers=bearer(globex))
        assert (mine.status_code, theirs.status_code) == (201, 201)
        mine_id, theirs_id = mine.json()["schedule_id"], theirs.json()["schedule_id"]
        assert mine_id != theirs_id  # one key, two tenants: two schedules
        made_twice: set[str] = set()
        try:
            url = f"/v1/schedules/{mine_id}"
            for method, path in [
                ("GET", url),
                ("POST", f"{url}/pause"),
                ("POST", f"{url}/unpause"),
                ("POST", f"{url}/trigger"),
                ("DELETE", url),
            ]:
                other = await http.request(method, path, headers=bearer(globex))
                assert other.status_code == 404, (method, path, other.text)
                assert other.json()["error"]["type"] == "ScheduleNotFound"
            shown = (await http.get(url, headers=bearer(acme))).json()
            assert shown["paused"] is False and shown["recent_runs"] == []  # nothing done

            async def listed() -> bool:
                acmes = (await http.get("/v1/schedules", headers=bearer(acme))).json()
                globexes = (await http.get("/v1/schedules", headers=bearer(globex))).json()
                return [row["schedule_id"] for row in acmes] == [mine_id] and [
                    row["schedule_id"] for row in globexes
                ] == [theirs_id]

            await eventually(listed)
            # The same request with the key again: the same schedule, not a second.
            again = await http.post("/v1/schedules", json=body, headers=bearer(acme))
            assert (again.status_code, again.json()["schedule_id"]) == (200, mine_id)
            assert again.headers["location"] == url
            changed = {**body, "cron": "0 9 1 1 *"}
            reused = await http.post("/v1/schedules", json=changed, headers=bearer(acme))
            assert reused.status_code == 422
            assert reused.json()["error"]["type"] == "IdempotencyKeyReused"
            assert loci(reused) == [["body", "idempotency_key"]]
            document = (await http.get("/openapi.json")).json()
            for answer in (mine, again, reused):
                conforms(document, answer)
            # Sent twice at once: one makes it, the other answers it.
            twice = {**body, "idempotency_key": "at once"}
            both = await asyncio.gather(
                *(http.post("/v1/schedules", json=twice, headers=bearer(acme)) for _ in range(2))
            )
            assert sorted(answer.status_code for answer in both) == [200, 201], both
            made_twice = {answer.json()["schedule_id"] for answer in both}
            assert len(made_twice) == 1
        finally:
            for made in made_twice:
                await http.delete(f"/v1/schedules/{made}", headers=bearer(acme))
            await http.delete(f"/v1/schedules/{mine_id}", headers=bearer(acme))
            await http.delete(f"/v1/schedules/{theirs_id}", headers=bearer(globex))


async def test_no_schedule_is_made_under_a_daily_ceiling_and_a_trigger_is_checked(
    worker: RunningWorker, tmp_path: Path
) -> None:
    # Temporal starts a schedule's runs at their times, where no ceiling is asked: a cron
    # of every minute would spend a $1 ceiling 1,440 times a day.
    keys_file = tmp_path / "keys.json"
    tenant = f"capped-{uuid.uuid4().hex[:8]}"
    key = ApiKeys.add(keys_file, tenant)
    async with api(worker, keys_file, Limits(max_cost_usd_per_day=1)) as http:
        every_minute = {"cron": "* * * * *", "input": {**DIGEST, "budget": {"max_cost_usd": 1}}}
        refused = await http.post("/v1/schedules", json=every_minute, headers=bearer(key))
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["type"] == "SchedulesNotAllowed"
        assert (await http.get("/v1/schedules", headers=bearer(key))).json() == []
        # One made otherwise (the CLI, Python) for the tenant: a trigger is a new run.
        onward = OnwardClient(worker.client, task_queue=worker.task_queue)
        input = {**DIGEST, "tenant": tenant, "budget": {"max_cost_usd": 1}}
        schedule_id = await onward.schedule_create(YEARLY, input, check=False)
        url = f"/v1/schedules/{schedule_id}"
        try:
            # A run holding $0.50 of it leaves less than a triggered run may spend.
            slow = {"prompt": "slow", "script": [{"text": "x", "delay_s": 30}]}
            holding = await http.post(
                "/v1/runs",
                json={**slow, "budget": {"max_cost_usd": 0.5}},
                headers=bearer(key),
            )
            assert holding.status_code == 202
            refused = await http.post(f"{url}/trigger", headers=bearer(key))
            assert refused.status_code == 429, refused.text
            assert refused.json()["error"]["type"] == "BudgetCeiling"
            assert refused.headers["retry-after"]
            assert (await http.get(url, headers=bearer(key))).json()["recent_runs"] == []
            cancel = f"{holding.json()['status_url']}/cancel"
            assert (await http.post(cancel, headers=bearer(key))).status_code == 200
        finally:
            await onward.schedule_delete(schedule_id)
