"""Tenants: API keys, isolation of list, read, stream and control, and per-tenant limits."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from api_server import read_events, serving
from conftest import RunningWorker, eventually
from onward import search_attributes as sa
from onward.api_keys import ApiKeys
from onward.client import OnwardClient
from onward.starter.api import ApiSettings, Limits, api_app
from onward.starter.listing import _token_text, run_query


@asynccontextmanager
async def tenants_api(
    worker: RunningWorker, keys_file: Path, limits: Limits | None = None
) -> AsyncIterator[str]:
    onward = OnwardClient(worker.client, task_queue=worker.task_queue)
    settings = ApiSettings(keys=ApiKeys.load(keys_file), limits=limits or Limits())
    async with serving(api_app(settings, onward)) as base:
        yield base


def two_tenants(tmp_path: Path) -> tuple[Path, str, str]:
    """A keys file with a key each for two tenants of their own (other tests' runs on
    this server are tenant "acme" too), and the two keys."""
    keys_file = tmp_path / "keys.json"
    suffix = uuid.uuid4().hex[:8]
    acme = ApiKeys.add(keys_file, f"acme-{suffix}")
    globex = ApiKeys.add(keys_file, f"globex-{suffix}")
    return keys_file, acme, globex


def key_tenant(keys_file: Path, key: str) -> str:
    tenant = ApiKeys.load(keys_file).tenant_for(key)
    assert tenant is not None
    return tenant


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def loci(answer: httpx.Response) -> list[list[object]]:
    """Where each problem of a 422 is (``["body", "pricing"]``)."""
    return [problem["loc"] for problem in answer.json()["error"]["problems"]]


async def test_a_tenant_sees_and_controls_only_its_own_runs(
    worker: RunningWorker, tmp_path: Path
) -> None:
    keys_file, acme, globex = two_tenants(tmp_path)
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
            ("GET", f"{url}/export"),
            ("POST", f"{url}/fork"),
            ("POST", f"{url}/pause"),
            ("POST", f"{url}/resume"),
            ("POST", f"{url}/cancel"),
        ]:
            body = {"at_step": 1, "prompt": "theirs"} if path.endswith("/fork") else None
            other = await http.request(method, path, headers=bearer(globex), json=body)
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


async def test_the_key_is_checked_before_a_body_that_cannot_be_decoded(
    worker: RunningWorker, tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys.json"
    key = ApiKeys.add(keys_file, f"acme-{uuid.uuid4().hex[:8]}")
    json_type = {"Content-Type": "application/json"}
    # Bytes that are not UTF-8, and nesting past the parser's recursion limit.
    bodies = [b'{"prompt": "\xff"}', b"[" * 100_000 + b"]" * 100_000]
    async with tenants_api(worker, keys_file) as base, httpx.AsyncClient(base_url=base) as http:
        for body in bodies:
            anonymous = await http.post("/v1/runs", content=body, headers=json_type)
            assert anonymous.status_code == 401, anonymous.text
            known = await http.post("/v1/runs", content=body, headers=json_type | bearer(key))
            assert known.status_code == 422, known.text
            assert known.json()["error"]["type"] == "InvalidInput"


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


async def test_the_list_pages_through_every_run_of_the_tenant(
    worker: RunningWorker, tmp_path: Path
) -> None:
    keys_file, acme, globex = two_tenants(tmp_path)
    async with tenants_api(worker, keys_file) as base, httpx.AsyncClient(base_url=base) as http:
        ids = set()
        for number in range(5):
            body = {"prompt": f"p{number}", "script": [{"text": "x"}]}
            ids.add((await http.post("/v1/runs", json=body, headers=bearer(acme))).json()["id"])
        await http.post("/v1/runs", json={"prompt": "theirs"}, headers=bearer(globex))

        async def listed() -> bool:
            # Ended: a run that ends between two pages moves from the running ones
            # (listed first) to the ended ones, and is seen twice or not at all.
            rows = (await http.get("/v1/runs", params={"limit": 10}, headers=bearer(acme))).json()
            return {row["id"] for row in rows if row["status"] == "completed"} == ids

        await eventually(listed)
        pages: list[list[str]] = []
        links: list[str] = []
        url: str | None = "/v1/runs?limit=2"
        while url is not None:
            answer = await http.get(url, headers=bearer(acme))
            assert answer.status_code == 200, answer.text
            pages.append([row["id"] for row in answer.json()])
            url = answer.links.get("next", {}).get("url")
            links += [url] if url else []
        # Two, two, one, and never a run twice or another tenant's.
        assert [len(page) for page in pages] == [2, 2, 1]
        assert sorted(id_ for page in pages for id_ in page) == sorted(ids)
        # A token is refused before Temporal sees it (it retries one it cannot read for
        # seconds): made up, or given for another tenant's (or another filter's) list.
        # One made up to pass the check (it is no secret) is refused by Temporal, then here.
        query = run_query(tenant=key_tenant(keys_file, acme))
        made_up = _token_text(query, b'{"CloseTime":"x"}')
        for token, key in [
            ("bm90IGEgdG9rZW4", acme),
            (links[0].rpartition("=")[2], globex),
            (made_up, acme),
        ]:
            began = time.monotonic()
            refused = await http.get(
                "/v1/runs", params={"page_token": token}, headers=bearer(key), timeout=60
            )
            assert refused.status_code == 422, refused.text
            # At once: not after the SDK's retries of what Temporal answered (~6 s).
            assert time.monotonic() - began < 3, token
            assert refused.json()["error"]["message"].startswith("page_token: not a token")
            assert loci(refused) == [["query", "page_token"]]


async def test_a_page_that_ends_the_list_links_to_no_next_page(
    worker: RunningWorker, tmp_path: Path
) -> None:
    # Temporal gives a token whenever a page is full, so a list of four paged by two
    # linked to a third page, empty: "more runs" that were none (sessions likewise).
    keys_file, acme, _ = two_tenants(tmp_path)
    async with tenants_api(worker, keys_file) as base, httpx.AsyncClient(base_url=base) as http:
        ids = set()
        for number in range(4):
            body = {"prompt": f"p{number}", "script": [{"text": "x"}]}
            ids.add((await http.post("/v1/runs", json=body, headers=bearer(acme))).json()["id"])

        async def listed() -> bool:
            rows = (await http.get("/v1/runs", params={"limit": 10}, headers=bearer(acme))).json()
            return {row["id"] for row in rows} == ids

        await eventually(listed)
        first = await http.get("/v1/runs?limit=2", headers=bearer(acme))
        second = await http.get(first.links["next"]["url"], headers=bearer(acme))
        assert len(first.json()) == len(second.json()) == 2
        assert "next" not in second.links, second.headers["link"]
        whole = await http.get("/v1/runs?limit=4", headers=bearer(acme))
        assert len(whole.json()) == 4 and "link" not in whole.headers


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
    # A million input tokens at the workers' $1 per million: $1 a run, against $0.50.
    priced = {
        "prompt": "p",
        "script": [{"text": "ok", "usage": {"input_tokens": 1_000_000, "output_tokens": 0}}],
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


async def test_a_small_ceiling_reads_in_its_significant_digits(
    worker: RunningWorker, tmp_path: Path
) -> None:
    # The refusal said "spent $0.0001 ..., its ceiling is $0.0001" (four decimals),
    # a ceiling of $0.00002 "$0.0000": small figures lost their digits.
    keys_file = tmp_path / "keys.json"
    key = ApiKeys.add(keys_file, f"tiny-{uuid.uuid4().hex[:8]}")
    # 100 input tokens at the workers' $1 per million: $0.0001, against $0.00005.
    priced = {
        "prompt": "p",
        "script": [{"text": "ok", "usage": {"input_tokens": 100, "output_tokens": 0}}],
    }
    async with (
        tenants_api(worker, keys_file, Limits(max_cost_usd_per_day=0.00005)) as base,
        httpx.AsyncClient(base_url=base) as http,
    ):
        first = await http.post("/v1/runs", json=priced, headers=bearer(key))
        assert first.status_code == 202
        await http.get(first.json()["result_url"], params={"wait": 20}, headers=bearer(key))
        message = ""

        async def refused() -> bool:
            nonlocal message
            answer = await http.post("/v1/runs", json=priced, headers=bearer(key))
            message = answer.json()["error"]["message"] if answer.status_code == 429 else ""
            return "in the last 24 h" in message

        await eventually(refused)
        assert message.endswith("spent $0.000100 in the last 24 h, its ceiling is $0.0000500")


async def test_open_runs_hold_what_they_may_spend_under_the_ceiling(
    worker: RunningWorker, tmp_path: Path
) -> None:
    # Each run was capped to what the tenant had left when it started, and runs that
    # overlapped each got all of it: two $0.30 runs under $0.50 spent $0.60.
    keys_file = tmp_path / "keys.json"
    key = ApiKeys.add(keys_file, f"overlap-{uuid.uuid4().hex[:8]}")
    slow = {"prompt": "p", "script": [{"text": "slow", "delay_s": 30}]}
    async with (
        tenants_api(worker, keys_file, Limits(max_cost_usd_per_day=1)) as base,
        httpx.AsyncClient(base_url=base, timeout=60) as http,
    ):
        first = await http.post(
            "/v1/runs", json={**slow, "budget": {"max_cost_usd": 0.4}}, headers=bearer(key)
        )
        assert first.status_code == 202, first.text
        second = await http.post("/v1/runs", json=slow, headers=bearer(key))
        assert second.status_code == 202, second.text
        status = (await http.get(second.json()["status_url"], headers=bearer(key))).json()
        assert status["budget"]["max_cost_usd"] == pytest.approx(0.6)  # $1 less the $0.40 held
        third = await http.post("/v1/runs", json=slow, headers=bearer(key))
        assert third.status_code == 429, third.text
        assert third.json()["error"]["message"] == (
            f"tenant {key_tenant(keys_file, key)!r} spent $0 in the last 24 h and its "
            "open runs may spend $1.0000 more; its ceiling is $1.0000"
        )
        # What a run may spend is not held back from its own extension.
        extended = await http.post(
            f"{first.json()['status_url']}/extend-budget",
            json={"max_cost_usd": 0.4},
            headers=bearer(key),
        )
        assert extended.status_code == 200, extended.text
        for run in (first, second):
            await http.post(f"{run.json()['status_url']}/cancel", headers=bearer(key))


async def test_a_sub_agents_cost_counts_once_against_the_ceiling(
    worker: RunningWorker, tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys.json"
    key = ApiKeys.add(keys_file, "delegating")
    dollar = {"input_tokens": 1_000_000, "output_tokens": 0}  # $1 at the workers' price
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


async def test_input_onward_sets_itself_is_refused(worker: RunningWorker, tmp_path: Path) -> None:
    """A client could reach another run's transcript or files, or round its budget."""
    keys_file = tmp_path / "keys.json"
    key = ApiKeys.add(keys_file, "curious")
    carry = {
        "transcript": "someone-else@0190",
        "messages": 0,
        "steps_total": 0,
        "usage": {},
        "budget": {"max_tool_calls": 100},
        "started_at": "2026-01-01T00:00:00Z",
    }
    forged = {
        "carry": carry,
        "conversation": {"transcript": "someone-else@0190", "messages": 2},
        "delegation_depth": 1,
        "workspace": "someone-else",
    }
    async with tenants_api(worker, keys_file) as base, httpx.AsyncClient(base_url=base) as http:
        for name, value in forged.items():
            body = {"prompt": "p", "budget": {"max_tool_calls": 1}, name: value}
            answer = await http.post("/v1/runs", json=body, headers=bearer(key))
            assert answer.status_code == 422, (name, answer.text)
            assert answer.json()["error"]["message"].startswith(f"{name}: "), answer.text
            assert loci(answer) == [["body", name]]
        session_carry = {
            "usage": {},
            "turns": 0,
            "started_at": "2026-01-01T00:00:00Z",
            "last_active": "2026-01-01T00:00:00Z",
        }
        session = await http.post(
            "/v1/sessions", json={"carry": session_carry}, headers=bearer(key)
        )
        assert session.status_code == 422, session.text
        assert session.json()["error"]["message"].startswith("carry: "), session.text
        assert loci(session) == [["body", "carry"]]
        assert not [run async for run in worker.client.list_workflows('OnwardTenant = "curious"')]


async def test_under_a_spending_ceiling_runs_are_priced_by_the_workers(
    worker: RunningWorker, tmp_path: Path
) -> None:
    """A run's own pricing (nothing a token, say) would spend past the ceiling unseen."""
    keys_file = tmp_path / "keys.json"
    key = ApiKeys.add(keys_file, "thrifty")
    free = {"prompt": "p", "pricing": {"input_per_mtok": 0, "output_per_mtok": 0}}
    async with (
        tenants_api(worker, keys_file, Limits(max_cost_usd_per_day=1)) as base,
        httpx.AsyncClient(base_url=base) as http,
    ):
        for path, body in [("/v1/runs", free), ("/v1/sessions", {"pricing": free["pricing"]})]:
            answer = await http.post(path, json=body, headers=bearer(key))
            assert answer.status_code == 422, answer.text
            assert answer.json()["error"]["message"].startswith("pricing: ")
            assert loci(answer) == [["body", "pricing"]]
    # Without a ceiling a tenant's prices only price its own runs.
    async with tenants_api(worker, keys_file) as base, httpx.AsyncClient(base_url=base) as http:
        answer = await http.post("/v1/runs", json=free, headers=bearer(key))
        assert answer.status_code == 202, answer.text


async def test_a_session_message_counts_against_the_open_runs_limit(
    worker: RunningWorker, tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys.json"
    key = ApiKeys.add(keys_file, f"chatty-{uuid.uuid4().hex[:8]}")
    slow = {"prompt": "p", "script": [{"text": "slow", "delay_s": 30}]}
    async with (
        tenants_api(worker, keys_file, Limits(max_runs=1)) as base,
        httpx.AsyncClient(base_url=base, timeout=60) as http,
    ):
        session = await http.post("/v1/sessions", json={"tools": []}, headers=bearer(key))
        assert session.status_code == 201, session.text
        run = await http.post("/v1/runs", json=slow, headers=bearer(key))
        assert run.status_code == 202
        message = {"message": "hi"}
        over = await http.post(session.json()["messages_url"], json=message, headers=bearer(key))
        assert over.status_code == 429, over.text
        assert over.json()["error"]["type"] == "TooManyRuns"
        await http.post(f"{run.json()['status_url']}/cancel", headers=bearer(key))

        async def answered() -> bool:
            url = session.json()["messages_url"]
            return (await http.post(url, json=message, headers=bearer(key))).status_code == 200

        await eventually(answered, timeout_s=30, interval_s=0.5)
        await http.post(session.json()["close_url"], headers=bearer(key))


async def test_a_budget_extension_stays_under_the_daily_ceiling(
    worker: RunningWorker, tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys.json"
    key = ApiKeys.add(keys_file, f"extending-{uuid.uuid4().hex[:8]}")
    dollar = {"input_tokens": 1_000_000, "output_tokens": 0}  # $1 at the workers' price
    body = {
        "prompt": "p",
        "budget": {"max_cost_usd": 1, "on_exceeded": "pause"},
        "script": [
            {  # $2: over its $1, so it pauses before its next call
                "tool_calls": [{"name": "calculator", "arguments": {"expression": "1+1"}}],
                "usage": {**dollar, "input_tokens": 2_000_000},
            },
            {"text": "two", "usage": dollar},
        ],
    }
    async with (
        tenants_api(worker, keys_file, Limits(max_cost_usd_per_day=10)) as base,
        httpx.AsyncClient(base_url=base, timeout=60) as http,
    ):
        run = (await http.post("/v1/runs", json=body, headers=bearer(key))).json()

        async def paused() -> bool:
            status = (await http.get(run["status_url"], headers=bearer(key))).json()
            return bool(status["state"] == "budget_paused")

        await eventually(paused)
        url = f"{run['status_url']}/extend-budget"
        over = await http.post(url, json={"max_cost_usd": 100}, headers=bearer(key))
        assert over.status_code == 422, over.text
        assert over.json()["error"]["message"].startswith("max_cost_usd: at most 10 ")
        assert loci(over) == [["body", "max_cost_usd"]]
        within = await http.post(url, json={"max_cost_usd": 5}, headers=bearer(key))
        assert within.status_code == 200 and within.json()["max_cost_usd"] == 5
        done = await http.get(run["result_url"], params={"wait": 30}, headers=bearer(key))
        assert done.json()["status"] == "completed"


async def test_messages_sent_at_once_to_two_sessions_take_one_slot(
    worker: RunningWorker, tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys.json"
    key = ApiKeys.add(keys_file, f"eager-{uuid.uuid4().hex[:8]}")
    slow = {"tools": [], "script": [{"text": "slowly", "delay_s": 3}]}
    async with (
        tenants_api(worker, keys_file, Limits(max_runs=1)) as base,
        httpx.AsyncClient(base_url=base, timeout=60) as http,
    ):
        opened = [
            (await http.post("/v1/sessions", json=slow, headers=bearer(key))).json()
            for _ in range(2)
        ]
        answers = await asyncio.gather(
            *(
                http.post(each["messages_url"], json={"message": "hi"}, headers=bearer(key))
                for each in opened
            )
        )
        assert sorted(answer.status_code for answer in answers) == [200, 429]
        for each in opened:
            await http.post(each["close_url"], headers=bearer(key))


async def test_a_repeated_keyed_message_gets_its_reply_past_the_open_runs_limit(
    worker: RunningWorker, tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys.json"
    key = ApiKeys.add(keys_file, f"retrying-{uuid.uuid4().hex[:8]}")
    slow = {"prompt": "p", "script": [{"text": "slow", "delay_s": 30}]}
    async with (
        tenants_api(worker, keys_file, Limits(max_runs=1)) as base,
        httpx.AsyncClient(base_url=base, timeout=60) as http,
    ):
        session = await http.post(
            "/v1/sessions", json={"tools": [], "script": [{"text": "paid"}]}, headers=bearer(key)
        )
        url = session.json()["messages_url"]
        message = {"message": "hi", "idempotency_key": "once"}
        first = await http.post(url, json=message, headers=bearer(key))
        assert first.status_code == 200, first.text

        run = await http.post("/v1/runs", json=slow, headers=bearer(key))
        assert run.status_code == 202, run.text  # the tenant's one open run
        again = await http.post(url, json=message, headers=bearer(key))
        assert again.status_code == 200, again.text
        assert again.json() == first.json()
        new = await http.post(url, json={**message, "idempotency_key": "new"}, headers=bearer(key))
        assert new.status_code == 429, new.text
        await http.post(f"{run.json()['status_url']}/cancel", headers=bearer(key))
        await http.post(session.json()["close_url"], headers=bearer(key))


async def test_a_session_at_the_open_runs_limit_takes_one_message_after_another(
    worker: RunningWorker, tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys.json"
    key = ApiKeys.add(keys_file, f"talker-{uuid.uuid4().hex[:8]}")
    async with (
        tenants_api(worker, keys_file, Limits(max_runs=1)) as base,
        httpx.AsyncClient(base_url=base, timeout=60) as http,
    ):
        session = await http.post(
            "/v1/sessions",
            json={"tools": [], "script": [{"text": "one"}, {"text": "two"}]},
            headers=bearer(key),
        )
        url = session.json()["messages_url"]
        first = await http.post(url, json={"message": "hi"}, headers=bearer(key))
        assert first.status_code == 200, first.text
        # Answered: the session is idle and runs nothing, so the next message goes in.
        second = await http.post(url, json={"message": "again"}, headers=bearer(key))
        assert second.status_code == 200, second.text
        assert second.json()["reply"] == "two"
        await http.post(session.json()["close_url"], headers=bearer(key))


async def test_an_event_stream_takes_its_key_in_the_url_for_a_browser(
    worker: RunningWorker, tmp_path: Path
) -> None:
    # A browser's EventSource cannot send an Authorization header: with keys on, a web
    # app could not read a stream at all (the WebSocket already took ?api_key=).
    keys_file, acme, globex = two_tenants(tmp_path)
    async with tenants_api(worker, keys_file) as base, httpx.AsyncClient(base_url=base) as http:
        body = {"prompt": "p", "script": [{"text": "done"}]}
        run = (await http.post("/v1/runs", json=body, headers=bearer(acme))).json()
        events = run["events_url"]
        streamed = await http.get(events, params={"api_key": acme}, timeout=30)
        assert streamed.status_code == 200, streamed.text
        assert "event: result" in streamed.text
        assert (await http.get(events)).status_code == 401
        other = await http.get(events, params={"api_key": globex})
        assert other.status_code == 404  # another tenant's key: no such run for it
        # Elsewhere a key in the URL is not taken (it would end up in logs for nothing).
        status = await http.get(run["status_url"], params={"api_key": acme})
        assert status.status_code == 401
