"""Tenants: API keys, isolation of list, read, stream and control, and per-tenant limits."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from api_server import read_events, serving
from conftest import RunningWorker, eventually
from onward import search_attributes as sa
from onward.api_keys import ApiKeys
from onward.client import OnwardClient
from onward.starter.api import ApiSettings, Limits, api_app


@asynccontextmanager
async def tenants_api(
    worker: RunningWorker, keys_file: Path, limits: Limits | None = None
) -> AsyncIterator[str]:
    onward = OnwardClient(worker.client, task_queue=worker.task_queue)
    settings = ApiSettings(keys=ApiKeys.load(keys_file), limits=limits or Limits())
    async with serving(api_app(settings, onward)) as base:
        yield base


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_a_tenant_sees_and_controls_only_its_own_runs(
    worker: RunningWorker, tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys.json"
    # Tenants of their own: other tests' runs on this server are tenant "acme" too.
    suffix = uuid.uuid4().hex[:8]
    acme = ApiKeys.add(keys_file, f"acme-{suffix}")
    globex = ApiKeys.add(keys_file, f"globex-{suffix}")
    assert acme not in keys_file.read_text()  # only hashes are stored
    async with tenants_api(worker, keys_file) as base, httpx.AsyncClient(base_url=base) as http:
        assert (await http.get("/v1/runs")).status_code == 401
        assert (await http.get("/v1/runs", headers=bearer("onw_wrong"))).status_code == 401
        # The key is checked before the body, also when the body is not JSON.
        broken = await http.post(
            "/v1/runs", content=b'{"bad', headers={"Content-Type": "application/json"}
        )
        assert broken.status_code == 401, broken.text
        script = [{"text": "slow", "delay_s": 1.0}]
        answer = await http.post(
            "/v1/runs", json={"prompt": "mine", "script": script}, headers=bearer(acme)
        )
        assert answer.status_code == 202
        run = answer.json()
        url = run["status_url"]
        for method, path in [
            ("GET", url),
            ("GET", f"{url}/steps"),
            ("GET", f"{url}/result"),
            ("GET", f"{url}/events"),
            ("POST", f"{url}/pause"),
            ("POST", f"{url}/resume"),
            ("POST", f"{url}/cancel"),
        ]:
            other = await http.request(method, path, headers=bearer(globex))
            assert other.status_code == 404, (method, path, other.text)
            assert other.json()["error"]["type"] == "RunNotFound"
        # The same idempotency key in another tenant is another run.
        keyed = {"prompt": "k", "script": [{"text": "x"}], "idempotency_key": "same"}
        first = (await http.post("/v1/runs", json=keyed, headers=bearer(acme))).json()
        second = (await http.post("/v1/runs", json=keyed, headers=bearer(globex))).json()
        assert first["id"] != second["id"]

        async def listed() -> bool:
            mine = (await http.get("/v1/runs", headers=bearer(acme))).json()
            theirs = (await http.get("/v1/runs", headers=bearer(globex))).json()
            return {r["id"] for r in mine} == {run["id"], first["id"]} and {
                r["id"] for r in theirs
            } == {second["id"]}

        await eventually(listed)
        events = await read_events(http, run["events_url"], headers=bearer(acme))
        assert events[-1].event == "result"
        status = (await http.get(url, headers=bearer(acme))).json()
        assert status["state"] == "completed"


async def test_list_filters_by_status_model_and_since(
    worker: RunningWorker, tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys.json"
    key = ApiKeys.add(keys_file, "solo")
    async with tenants_api(worker, keys_file) as base, httpx.AsyncClient(base_url=base) as http:
        created = await http.post(
            "/v1/runs", json={"prompt": "p", "script": [{"text": "x"}]}, headers=bearer(key)
        )
        await http.get(created.json()["result_url"], params={"wait": 20}, headers=bearer(key))

        async def found(params: dict[str, str], expected: int) -> bool:
            rows = (await http.get("/v1/runs", params=params, headers=bearer(key))).json()
            return len(rows) == expected

        await eventually(lambda: found({"status": "completed"}, 1))
        assert await found({"status": "running"}, 0)
        assert await found({"model": "scripted"}, 1)
        assert await found({"model": "openai:gpt-4o"}, 0)
        assert await found({"since": "2000-01-01T00:00:00"}, 1)
        assert await found({"since": "2100-01-01T00:00:00Z"}, 0)
        bad = await http.get("/v1/runs", params={"status": "sleeping"}, headers=bearer(key))
        assert bad.status_code == 422 and "status" in bad.json()["error"]["message"]


async def test_over_the_open_runs_limit_is_429_with_retry_after(
    worker: RunningWorker, tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys.json"
    key, other = ApiKeys.add(keys_file, "small"), ApiKeys.add(keys_file, "other")
    slow = {"prompt": "p", "script": [{"text": "slow", "delay_s": 30}]}
    async with (
        tenants_api(worker, keys_file, Limits(max_runs=1)) as base,
        httpx.AsyncClient(base_url=base) as http,
    ):
        first = await http.post("/v1/runs", json=slow, headers=bearer(key))
        assert first.status_code == 202
        over = await http.post("/v1/runs", json=slow, headers=bearer(key))
        assert over.status_code == 429
        assert int(over.headers["retry-after"]) >= 1
        assert over.json()["error"]["type"] == "TooManyRuns"
        # Another tenant has its own limit.
        theirs = await http.post("/v1/runs", json=slow, headers=bearer(other))
        assert theirs.status_code == 202
        for answer, auth in ((first, bearer(key)), (theirs, bearer(other))):
            cancelled = await http.post(f"{answer.json()['status_url']}/cancel", headers=auth)
            assert cancelled.status_code == 200

        async def admitted() -> bool:
            quick = {"prompt": "p", "script": [{"text": "ok"}]}
            answer = await http.post("/v1/runs", json=quick, headers=bearer(key))
            return answer.status_code == 202

        await eventually(admitted, timeout_s=30, interval_s=0.5)


async def test_over_the_daily_budget_ceiling_is_429(worker: RunningWorker, tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    key = ApiKeys.add(keys_file, "frugal")
    # 1000 input tokens at $1000 per million: $1 a run, against a ceiling of $0.50.
    priced = {
        "prompt": "p",
        "script": [{"text": "ok", "usage": {"input_tokens": 1000, "output_tokens": 0}}],
        "pricing": {"input_per_mtok": 1000, "output_per_mtok": 0},
    }
    async with (
        tenants_api(worker, keys_file, Limits(max_cost_usd_per_day=0.5)) as base,
        httpx.AsyncClient(base_url=base) as http,
    ):
        first = await http.post("/v1/runs", json=priced, headers=bearer(key))
        assert first.status_code == 202
        await http.get(first.json()["result_url"], params={"wait": 20}, headers=bearer(key))
        status = (await http.get(first.json()["status_url"], headers=bearer(key))).json()
        assert status["budget"]["max_cost_usd"] == 0.5  # capped to what the tenant may spend

        async def refused() -> bool:
            answer = await http.post("/v1/runs", json=priced, headers=bearer(key))
            if answer.status_code != 429:
                return False
            assert answer.json()["error"]["type"] == "BudgetCeiling"
            return 3600 < int(answer.headers["retry-after"]) <= 24 * 3600 + 1

        await eventually(refused)


async def test_a_sub_agents_cost_counts_once_against_the_ceiling(
    worker: RunningWorker, tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys.json"
    key = ApiKeys.add(keys_file, "delegating")
    dollar = {"input_tokens": 1000, "output_tokens": 0}  # $1 at the price below
    delegating = {
        "prompt": "p",
        "tools": ["delegate"],
        "script": [
            {
                "tool_calls": [
                    {
                        "name": "delegate",
                        "arguments": {"prompt": "q", "script": [{"text": "a", "usage": dollar}]},
                    }
                ],
                "usage": dollar,
            },
            {"text": "done", "usage": dollar},
        ],
        "pricing": {"input_per_mtok": 1000, "output_per_mtok": 0},
    }
    async with (
        tenants_api(worker, keys_file, Limits(max_cost_usd_per_day=10)) as base,
        httpx.AsyncClient(base_url=base) as http,
    ):
        first = await http.post("/v1/runs", json=delegating, headers=bearer(key))
        assert first.status_code == 202
        await http.get(first.json()["result_url"], params={"wait": 20}, headers=bearer(key))
        status = (await http.get(first.json()["status_url"], headers=bearer(key))).json()
        assert status["usage"]["cost_usd"] == 3.0  # its own $2 and its sub-agent's $1

        async def both_listed() -> bool:
            query = f'{sa.TENANT.name} = "delegating" AND {sa.COST.name} > 0'
            return (await worker.client.count_workflows(query)).count == 2

        await eventually(both_listed)
        second = await http.post("/v1/runs", json={"prompt": "p"}, headers=bearer(key))
        assert second.status_code == 202
        capped = (await http.get(second.json()["status_url"], headers=bearer(key))).json()
        assert capped["budget"]["max_cost_usd"] == 7.0  # $10 less $3, not less $4
