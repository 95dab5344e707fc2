"""The HTTP API's sessions end to end: uvicorn, a real worker, a real dev server, tenants."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx

from api_server import read_events, serving
from conftest import RunningWorker, eventually
from onward.api_keys import ApiKeys
from onward.client import OnwardClient
from onward.starter.api import ApiSettings, api_app
from onward.starter.api.sessions import EVENTS_PER_MESSAGE

SCRIPT = [{"text": "first reply", "delay_s": 0.3}, {"text": "second reply"}]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_open_talk_stream_and_close_a_session(worker: RunningWorker) -> None:
    client = OnwardClient(worker.client, task_queue=worker.task_queue)
    async with (
        serving(api_app(ApiSettings(), client)) as base,
        httpx.AsyncClient(base_url=base, timeout=60) as http,
    ):
        answer = await http.post(
            "/v1/sessions", json={"system": "be brief", "tools": [], "script": SCRIPT}
        )
        assert answer.status_code == 201, answer.text
        created = answer.json()
        session_url = created["status_url"]
        assert answer.headers["location"] == session_url
        assert (await http.get(session_url)).json()["state"] == "idle"

        # The stream opened before the first message follows that message's run.
        streaming = asyncio.create_task(read_events(http, created["events_url"]))
        first = await http.post(created["messages_url"], json={"message": "hello"})
        assert first.status_code == 200, first.text
        reply = first.json()
        assert reply["reply"] == "first reply"
        assert reply["number"] == 1
        events = await asyncio.wait_for(streaming, 30)
        assert [event.event for event in events].count("model") == 1
        assert events[-1].event == "result"
        assert events[-1].data["output"] == "first reply"
        assert {event.data["message"] for event in events} == {1}

        second = await http.post(created["messages_url"], json={"message": "again"})
        assert second.json()["reply"] == "second reply"
        later = await read_events(http, f"{created['events_url']}?message=2")
        assert later[-1].data["output"] == "second reply"
        assert all(event.id > 2 * EVENTS_PER_MESSAGE for event in later)
        # Resuming after an event of message 1 goes on into message 2, nothing repeated.
        resumed = await read_events(
            http, created["events_url"], headers={"Last-Event-ID": str(events[-2].id)}
        )
        assert [event.id for event in resumed] == [events[-1].id]

        # A session is no run of the run routes, nor a message's run a session.
        assert (await http.get(f"/v1/runs/{created['id']}")).status_code == 404
        assert (await http.post(f"/v1/runs/{created['id']}/pause")).status_code == 404
        message_run = f"{created['id']}-m1"
        assert (await http.get(f"/v1/runs/{message_run}")).status_code == 200
        assert (await http.get(f"/v1/sessions/{message_run}/history")).status_code == 404
        # An id below 10^9 is no session event's: refused, not waited for forever.
        for where, asked in (
            ("after", {"params": {"after": 5}}),
            ("Last-Event-ID", {"headers": {"Last-Event-ID": "5"}}),
        ):
            early = await http.get(created["events_url"], **asked)
            assert early.status_code == 422, early.text
            assert early.json()["error"]["message"].startswith(f"{where}: not an event id")

        turns = (await http.get(f"{session_url}/history")).json()
        assert [(turn["message"], turn["reply"]) for turn in turns] == [
            ("hello", "first reply"),
            ("again", "second reply"),
        ]
        status = (await http.get(session_url)).json()
        assert status["state"] == "idle"
        assert status["turns"] == 2
        assert status["usage"]["model_calls"] == 2

        blank = await http.post(created["messages_url"], json={"message": " "})
        assert blank.status_code == 422
        unknown_field = await http.post("/v1/sessions", json={"prompt": "no"})
        assert unknown_field.status_code == 422

        # A reason was dropped unsaid (the session closes with its own): refused instead.
        with_reason = await http.post(created["close_url"], json={"reason": "done"})
        assert with_reason.status_code == 422
        assert with_reason.json()["error"]["message"] == "close: takes no fields, got reason"
        assert (await http.get(created["status_url"])).json()["state"] == "idle"
        closed = await http.post(created["close_url"])
        assert closed.status_code == 200
        result = await client.session_result(created["id"])
        assert result.turns == 2
        too_late = await http.post(created["messages_url"], json={"message": "hello?"})
        assert too_late.status_code == 409
        assert too_late.json()["error"]["type"] == "SessionClosed"
        again = await http.post(created["close_url"])  # was "run ... has already ended"
        assert again.status_code == 409 and again.json()["error"]["type"] == "SessionClosed"


async def test_a_tenant_reaches_only_its_own_sessions(
    worker: RunningWorker, tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys.json"
    acme = ApiKeys.add(keys_file, "initech")  # tenants of their own: other tests list theirs
    globex = ApiKeys.add(keys_file, "hooli")
    client = OnwardClient(worker.client, task_queue=worker.task_queue)
    settings = ApiSettings(keys=ApiKeys.load(keys_file))
    async with (
        serving(api_app(settings, client)) as base,
        httpx.AsyncClient(base_url=base, timeout=60) as http,
    ):
        assert (await http.post("/v1/sessions", json={})).status_code == 401
        created = (await http.post("/v1/sessions", json={"tools": []}, headers=bearer(acme))).json()
        url = created["status_url"]
        for method, path, body in [
            ("GET", url, None),
            ("GET", created["events_url"], None),
            ("POST", created["messages_url"], {"message": "hi"}),
            ("POST", created["close_url"], None),
        ]:
            other = await http.request(method, path, json=body, headers=bearer(globex))
            assert other.status_code == 404, (method, path, other.text)
        named = await http.post("/v1/sessions", json={"tenant": "initech"}, headers=bearer(globex))
        assert named.status_code == 422
        assert "tenant" in named.json()["error"]["message"]
        mine = await http.post(
            created["messages_url"], json={"message": "hi"}, headers=bearer(acme)
        )
        assert mine.status_code == 200, mine.text
        assert (await http.get(url, headers=bearer(acme))).json()["turns"] == 1
        await http.post(created["close_url"], headers=bearer(acme))


async def test_a_tenant_lists_its_sessions_page_by_page(
    worker: RunningWorker, tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys.json"
    suffix = uuid.uuid4().hex[:8]
    acme, globex = ApiKeys.add(keys_file, f"a-{suffix}"), ApiKeys.add(keys_file, f"g-{suffix}")
    client = OnwardClient(worker.client, task_queue=worker.task_queue)
    settings = ApiSettings(keys=ApiKeys.load(keys_file))
    async with (
        serving(api_app(settings, client)) as base,
        httpx.AsyncClient(base_url=base, timeout=60) as http,
    ):
        opened = [
            (await http.post("/v1/sessions", json={}, headers=bearer(acme))).json()
            for _ in range(3)
        ]
        theirs = (await http.post("/v1/sessions", json={}, headers=bearer(globex))).json()
        closed = opened[0]
        assert (await http.post(closed["close_url"], headers=bearer(acme))).status_code == 200

        async def listed(query: str, key: str = acme) -> list[tuple[str, str]]:
            answer = await http.get(f"/v1/sessions{query}", headers=bearer(key))
            assert answer.status_code == 200, answer.text
            return [(row["id"], row["status"]) for row in answer.json()]

        async def settled() -> bool:
            return len(await listed("?open=false")) == 1 and len(await listed("")) == 3

        await eventually(settled)
        everything = await listed("")
        assert sorted(everything[:2]) == sorted((s["id"], "open") for s in opened[1:])
        assert everything[2] == (closed["id"], "completed")  # open ones first
        assert await listed("?open=true") == everything[:2]
        assert await listed("", globex) == [(theirs["id"], "open")]
        first = await http.get("/v1/sessions?limit=2", headers=bearer(acme))
        rest = await http.get(first.links["next"]["url"], headers=bearer(acme))
        assert [row["id"] for row in first.json() + rest.json()] == [i for i, _ in everything]
        assert "next" not in rest.links
        for session in [*opened[1:], theirs]:
            key = globex if session is theirs else acme
            await http.post(session["close_url"], headers=bearer(key))


async def test_a_session_without_a_worker_answers_503_at_once(worker: RunningWorker) -> None:
    # A task queue no worker polls: status and history say so instead of waiting.
    idle = OnwardClient(worker.client, task_queue=f"{worker.task_queue}-nobody")
    async with (
        serving(api_app(ApiSettings(), idle)) as base,
        # Well under the ~30 s the server holds a query no worker takes.
        httpx.AsyncClient(base_url=base, timeout=15) as http,
    ):
        created = (await http.post("/v1/sessions", json={"tools": [], "script": SCRIPT})).json()
        for path in (created["status_url"], f"{created['status_url']}/history"):
            answer = await http.get(path)
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"]["type"] == "NoWorker"
            assert answer.headers["retry-after"] == "5"
        await idle.temporal.get_workflow_handle(created["id"]).terminate("test over")


async def test_a_sessions_waiting_call_is_approved_and_rejected_by_the_session_id(
    worker: RunningWorker,
) -> None:
    def writes(path: str) -> dict[str, object]:
        call = {"name": "write_file", "arguments": {"path": path, "content": "x"}}
        return {"text": f"saving {path}", "tool_calls": [call]}

    script = [writes("a.md"), {"text": "saved"}, writes("b.md"), {"text": "not saved"}]
    client = OnwardClient(worker.client, task_queue=worker.task_queue)
    async with (
        serving(api_app(ApiSettings(), client)) as base,
        httpx.AsyncClient(base_url=base, timeout=60) as http,
    ):
        body = {"tools": ["write_file"], "approve_tools": ["write_file"], "script": script}
        created = (await http.post("/v1/sessions", json=body)).json()
        url = created["status_url"]

        async def waiting() -> bool:
            return bool((await http.get(url)).json()["state"] == "awaiting_approval")

        for message, verdict, reply in (
            ("save a", "approve", "saved"),
            ("save b", "reject", "not saved"),
        ):
            sending = asyncio.create_task(
                http.post(created["messages_url"], json={"message": message})
            )
            await eventually(waiting)
            decided = await http.post(f"{url}/{verdict}", json={"note": "as asked"})
            assert decided.status_code == 200, decided.text
            assert decided.json()["decision"] == verdict.removesuffix("e") + "ed"
            assert (await sending).json()["reply"] == reply
        # Nothing waits now: a 409, as for a run.
        idle = await http.post(f"{url}/approve")
        assert idle.status_code == 409, idle.text
        # Another tenant's (or a missing) session is a 404.
        assert (await http.post("/v1/sessions/session-nope/approve")).status_code == 404
        await http.post(created["close_url"])


async def test_a_sub_agents_waiting_call_is_approved_by_the_session_id(
    worker: RunningWorker,
) -> None:
    # The message's run delegates; its sub-agent's write waits for approval.
    write = {"name": "write_file", "arguments": {"path": "sub.md", "content": "s"}}
    child = [{"text": "writing", "tool_calls": [write]}, {"text": "written"}]
    handing = {"name": "delegate", "arguments": {"prompt": "write it", "script": child}}
    script = [{"text": "handing it over", "tool_calls": [handing]}, {"text": "done"}]
    client = OnwardClient(worker.client, task_queue=worker.task_queue)
    async with (
        serving(api_app(ApiSettings(), client)) as base,
        httpx.AsyncClient(base_url=base, timeout=60) as http,
    ):
        body = {
            "tools": ["write_file", "delegate"],
            "approve_tools": ["write_file"],
            "script": script,
        }
        created = (await http.post("/v1/sessions", json=body)).json()
        url = created["status_url"]
        sending = asyncio.create_task(
            http.post(created["messages_url"], json={"message": "delegate a write"})
        )

        async def waiting() -> bool:
            pending = (await http.get(url)).json()["pending_approvals"]
            return bool(pending) and ".delegate-" in (pending[0]["run_id"] or "")

        await eventually(waiting)
        decided = await http.post(f"{url}/approve")
        assert decided.status_code == 200, decided.text
        assert decided.json()["decision"] == "approved"
        assert (await sending).json()["reply"] == "done"
        await http.post(created["close_url"])


async def test_a_keyed_message_posted_twice_is_answered_once(worker: RunningWorker) -> None:
    client = OnwardClient(worker.client, task_queue=worker.task_queue)
    async with (
        serving(api_app(ApiSettings(), client)) as base,
        httpx.AsyncClient(base_url=base, timeout=60) as http,
    ):
        created = (await http.post("/v1/sessions", json={"tools": [], "script": SCRIPT})).json()
        body = {"message": "hello", "idempotency_key": "retry-me"}
        first, again = [await http.post(created["messages_url"], json=body) for _ in range(2)]
        assert first.status_code == again.status_code == 200, again.text
        assert again.json() == first.json()
        assert first.json()["reply"] == "first reply"

        other = await http.post(
            created["messages_url"], json={"message": "another", "idempotency_key": "retry-me"}
        )
        assert other.status_code == 422, other.text
        assert other.json()["error"]["type"] == "IdempotencyKeyReused"
        turns = (await http.get(f"{created['status_url']}/history")).json()
        assert [(turn["message"], turn["idempotency_key"]) for turn in turns] == [
            ("hello", "retry-me")
        ]
        # The next message gets the script's next reply: nothing was answered twice.
        second = await http.post(created["messages_url"], json={"message": "again"})
        assert second.json()["reply"] == "second reply"
