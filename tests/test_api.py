"""The HTTP API end to end: uvicorn on a free port, a real worker, a real dev server."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.service import RPCError, RPCStatusCode

from api_server import read_events, serving
from conftest import RunningWorker, eventually
from onward.client import OnwardClient
from onward.starter.api import DEFAULT_TENANT, ApiSettings, api_app, idempotent_run_id
from onward.starter.api.events import CHAIN_EVENTS

ONE_PLUS_ONE = {"name": "calculator", "arguments": {"expression": "1+1"}}
CALC_SCRIPT: list[dict[str, Any]] = [
    {
        "text": "add first",
        "tool_calls": [{"name": "calculator", "arguments": {"expression": "17*3"}}],
    },
    {
        "text": "write it down",
        "tool_calls": [
            {"name": "write_file", "arguments": {"path": "n.txt", "content": "51"}},
            {"name": "calculator", "arguments": {"expression": "51+4"}},
        ],
    },
    {"text": "55"},
]


@pytest_asyncio.fixture
async def api(worker: RunningWorker) -> AsyncIterator[httpx.AsyncClient]:
    client = OnwardClient(worker.client, task_queue=worker.task_queue)
    async with (
        serving(api_app(ApiSettings(), client)) as base,
        httpx.AsyncClient(base_url=base, timeout=30) as http,
    ):
        yield http


async def test_submit_stream_and_result(api: httpx.AsyncClient) -> None:
    answer = await api.post("/v1/runs", json={"prompt": "17*3+4", "script": CALC_SCRIPT})
    assert answer.status_code == 202, answer.text
    created = answer.json()
    assert created["status_url"] == f"/v1/runs/{created['id']}"
    assert answer.headers["location"] == created["status_url"]

    events = await read_events(api, created["events_url"])
    kinds = [event.event for event in events]
    assert kinds[-1] == "result"
    assert kinds.count("model") == 3
    assert kinds.count("tool_started") == kinds.count("tool_result") == 3
    assert "state" in kinds
    ids = [event.id for event in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    decisions = [event.data for event in events if event.event == "model"]
    assert [d["step"] for d in decisions] == [1, 2, 3]
    assert decisions[0]["tool_calls"][0]["name"] == "calculator"
    asked = {call["id"]: call["arguments"] for d in decisions for call in d["tool_calls"]}
    started = {e.data["call_id"]: e.data["arguments"] for e in events if e.event == "tool_started"}
    assert started == asked  # local tools' too, whose history does not hold them
    results = {e.data["name"]: e.data for e in events if e.event == "tool_result"}
    assert results["write_file"]["error"] is None
    # A tool's start comes before its result, and after the decision that asked for it.
    first_start = kinds.index("tool_started")
    assert kinds.index("model") < first_start < kinds.index("tool_result")
    assert events[-1].data["status"] == "completed"
    assert events[-1].data["output"] == "55"

    result = await api.get(f"/v1/runs/{created['id']}/result")
    assert result.status_code == 200
    assert result.json() == events[-1].data
    status = (await api.get(created["status_url"])).json()
    assert status["state"] == "completed" and status["step"] == 3
    assert status["usage"]["tool_calls"] == 3 and "budget" in status
    steps = (await api.get(f"/v1/runs/{created['id']}/steps")).json()
    assert [s["step"] for s in steps] == [1, 2, 3]


async def test_resuming_with_last_event_id_loses_and_repeats_nothing(
    api: httpx.AsyncClient,
) -> None:
    script = [{**turn, "delay_s": 0.2} for turn in CALC_SCRIPT]
    created = (await api.post("/v1/runs", json={"prompt": "p", "script": script})).json()
    first = await read_events(api, created["events_url"], stop_after=4)
    assert len(first) == 4 and first[-1].event != "result"
    rest = await read_events(
        api, created["events_url"], headers={"Last-Event-ID": str(first[-1].id)}
    )
    whole = await read_events(api, created["events_url"])  # the run has ended: all of it
    assert first + rest == whole
    # The same with the query parameter browsers' EventSource cannot send as a header.
    again = await read_events(api, f"{created['events_url']}?after={first[1].id}")
    assert again == whole[2:]


async def test_the_events_of_a_run_that_continues_as_new_follow_its_chain(
    api: httpx.AsyncClient,
) -> None:
    """Three executions: every step streams live, ids go on increasing, and a reader
    resumes in whichever execution its Last-Event-ID names, or reads it all again."""
    script = [{**turn, "delay_s": 0.2} for turn in CALC_SCRIPT]
    body = {"prompt": "p", "script": script, "continue_as_new_after": 1}
    created = (await api.post("/v1/runs", json=body)).json()
    live = await read_events(api, created["events_url"])
    assert [e.data["step"] for e in live if e.event == "model"] == [1, 2, 3]
    finished = sorted((e.data["step"], e.data["name"]) for e in live if e.event == "tool_result")
    assert finished == [(1, "calculator"), (2, "calculator"), (2, "write_file")]
    ids = [event.id for event in live]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert live[-1].event == "result" and live[-1].data["output"] == "55"
    assert live[-1].id > 2 * CHAIN_EVENTS  # the third execution's

    whole = await read_events(api, created["events_url"])  # ended: from the first execution
    assert whole == live
    second = next(i for i, e in enumerate(live) if e.id > CHAIN_EVENTS)
    resumed = await read_events(api, f"{created['events_url']}?after={live[second].id}")
    assert resumed == live[second + 1 :]
    # Resumed at an execution's very start, exactly what came after too: not a
    # "state" the whole read never sent (the execution's started event's status).
    for k in (1, 2):
        at_start = await read_events(api, f"{created['events_url']}?after={k * CHAIN_EVENTS}")
        assert at_start == [event for event in live if event.id > k * CHAIN_EVENTS]


async def test_a_chain_whose_first_execution_is_gone_streams_what_is_kept(
    api: httpx.AsyncClient, worker: RunningWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the namespace's retention a chain's early executions are deleted: the
    stream goes on from what the server keeps, with its ids, not an endless retry.
    (The dev server keeps a chain's executions for its retention, a day: the first
    one's history answers NOT_FOUND here as Temporal does once it is deleted.)"""
    script = [{**turn, "delay_s": 0.1} for turn in CALC_SCRIPT]
    body = {"prompt": "p", "script": script, "continue_as_new_after": 1}
    created = (await api.post("/v1/runs", json=body)).json()
    whole = await read_events(api, created["events_url"])
    temporal = worker.client
    described = (await temporal.get_workflow_handle(created["id"]).describe()).raw_description
    first_run = described.workflow_execution_info.first_run_id
    handle_of = temporal.get_workflow_handle

    def purged(workflow_id: str, *, run_id: str | None = None, **options: Any) -> Any:
        handle = handle_of(workflow_id, run_id=run_id, **options)
        if run_id == first_run:

            async def gone(*_: Any, **__: Any) -> AsyncIterator[Any]:
                raise RPCError("workflow execution not found", RPCStatusCode.NOT_FOUND, b"")
                yield  # an async generator, as the SDK's

            setattr(handle, "fetch_history_events", gone)  # noqa: B010
        return handle

    monkeypatch.setattr(temporal, "get_workflow_handle", purged)
    kept = await read_events(api, created["events_url"])
    assert kept[-1] == whole[-1]  # the same result, with its id
    assert kept[0].id > CHAIN_EVENTS  # the first execution's events are gone
    assert (kept[0].event, kept[0].data) == ("state", {"state": "running"})  # where it is
    assert kept[1:] == [event for event in whole if event.id > kept[0].id]


async def test_result_is_409_while_running_and_waits_with_wait(api: httpx.AsyncClient) -> None:
    script = [{"text": "slow", "delay_s": 1.5}]
    created = (await api.post("/v1/runs", json={"prompt": "p", "script": script})).json()
    early = await api.get(created["result_url"])
    assert early.status_code == 409
    assert early.json()["error"]["type"] == "RunStillRunning"
    waited = await api.get(created["result_url"], params={"wait": 20})
    assert waited.status_code == 200
    assert waited.json()["output"] == "slow"


async def test_the_same_idempotency_key_gives_the_same_run(api: httpx.AsyncClient) -> None:
    body = {"prompt": "once", "script": [{"text": "done", "delay_s": 0.5}], "idempotency_key": "k1"}
    first = await api.post("/v1/runs", json=body)
    second = await api.post("/v1/runs", json=body)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert first.json()["created"] is True and second.json()["created"] is False
    await api.get(first.json()["result_url"], params={"wait": 20})
    # Still the same run after it ended; another key is another run.
    third = await api.post("/v1/runs", json=body)
    assert third.json()["id"] == first.json()["id"] and third.json()["created"] is False
    other = await api.post("/v1/runs", json={**body, "idempotency_key": "k2"})
    assert other.json()["id"] != first.json()["id"]
    # The same fields in another order, or with defaults spelled out, are the same request.
    reordered = dict(reversed(list(body.items())))
    assert (await api.post("/v1/runs", json=reordered)).json()["id"] == first.json()["id"]
    spelled_out = {**body, "model": "scripted", "stream": False, "webhook_url": None}
    assert (await api.post("/v1/runs", json=spelled_out)).json()["id"] == first.json()["id"]


async def test_an_idempotency_key_sent_with_another_request_is_refused(
    api: httpx.AsyncClient, worker: RunningWorker
) -> None:
    body = {"prompt": "pay invoice 17", "script": [{"text": "paid"}], "idempotency_key": "k-17"}
    first = await api.post("/v1/runs", json=body)
    assert first.status_code == 202
    # A client bug reusing the key must not be told its other request is that run.
    for changed in ({"prompt": "pay invoice 18"}, {"budget": {"max_steps": 3}}):
        reused = await api.post("/v1/runs", json={**body, **changed})
        assert reused.status_code == 422
        error = reused.json()["error"]
        assert error["type"] == "IdempotencyKeyReused"
        assert first.json()["id"] in error["message"]
    again = await api.post("/v1/runs", json=body)
    assert again.status_code == 202 and again.json()["created"] is False
    # A run started with the key before requests were kept is still the key's run.
    onward = OnwardClient(worker.client, task_queue=worker.task_queue)
    old_id = idempotent_run_id(DEFAULT_TENANT, "k-old")
    old_input = {"prompt": "p", "script": [{"text": "x"}], "tenant": DEFAULT_TENANT}
    await onward.start(old_input, old_id, tag_tenant=True)
    old = await api.post("/v1/runs", json={**body, "idempotency_key": "k-old"})
    assert old.status_code == 202 and old.json()["created"] is False
    assert old.json()["id"] == old_id


async def test_controls_pause_resume_steer_extend_cancel(api: httpx.AsyncClient) -> None:
    script = [
        {"text": f"turn {i}", "tool_calls": [ONE_PLUS_ONE], "delay_s": 0.3} for i in range(30)
    ]
    body = {"prompt": "p", "script": script, "budget": {"max_steps": 100}}
    created = (await api.post("/v1/runs", json=body)).json()
    url = created["status_url"]
    assert (await api.post(f"{url}/pause")).status_code == 200

    async def paused() -> bool:
        return bool((await api.get(url)).json()["state"] == "paused")

    await eventually(paused)
    resumed = await api.post(f"{url}/resume")
    assert resumed.json()["state_before"] == "paused"
    assert resumed.json()["pausing_before"] is False
    assert (await api.post(f"{url}/steer", json={"message": "hurry"})).status_code == 200

    async def steered() -> bool:
        steps = (await api.get(f"{url}/steps")).json()
        return any("hurry" in step["steering"] for step in steps)

    await eventually(steered)
    extended = await api.post(f"{url}/extend-budget", json={"max_steps": 200})
    assert extended.status_code == 200 and extended.json()["max_steps"] == 200
    lowered = await api.post(f"{url}/extend-budget", json={"max_steps": 1})
    assert lowered.status_code == 409 and "raised" in lowered.json()["error"]["message"]
    assert (await api.post(f"{url}/cancel", json={"reason": "enough"})).status_code == 200
    result = (await api.get(created["result_url"], params={"wait": 20})).json()
    assert result["status"] == "cancelled" and result["reason"] == "enough"
    ended = await api.post(f"{url}/pause")
    assert ended.status_code == 409 and ended.json()["error"]["type"] == "RunEnded"


@pytest.mark.parametrize(
    ("path", "body", "where"),
    [
        ("cancel", {"reson": "typo"}, "reson"),
        ("steer", {"message": "hurry", "extra": 1}, "extra"),
        ("pause", {"x": 1}, "pause: takes no fields, got x"),
        ("resume", [1], "resume: takes no body"),
        ("extend-budget", {}, "name at least one of max_tokens"),
    ],
)
async def test_a_control_with_a_bad_body_is_a_422_and_changes_nothing(
    api: httpx.AsyncClient, path: str, body: Any, where: str
) -> None:
    script = [{"text": "slow", "delay_s": 0.5}, {"text": "done"}]
    created = (await api.post("/v1/runs", json={"prompt": "p", "script": script})).json()
    answer = await api.post(f"{created['status_url']}/{path}", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["type"] == "InvalidInput"
    assert where in answer.json()["error"]["message"]
    result = (await api.get(created["result_url"], params={"wait": 20})).json()
    assert (result["status"], result["output"]) == ("completed", "slow")


async def test_an_empty_control_body_is_no_body(api: httpx.AsyncClient) -> None:
    created = (
        await api.post("/v1/runs", json={"prompt": "p", "script": [{"text": "x", "delay_s": 1}]})
    ).json()
    bodies: list[dict[str, Any] | None] = [{}, None]
    for body in bodies:
        paused = await api.post(f"{created['status_url']}/pause", json=body)
        assert paused.status_code == 200, paused.text
    assert (await api.post(f"{created['status_url']}/resume", content=b"")).status_code == 200


async def test_a_negative_last_event_id_is_a_422(api: httpx.AsyncClient) -> None:
    created = (await api.post("/v1/runs", json={"prompt": "p", "script": [{"text": "x"}]})).json()
    answer = await api.get(created["events_url"], headers={"Last-Event-ID": "-5"})
    assert answer.status_code == 422
    assert "Last-Event-ID: must be from 0" in answer.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "p", "model": "gpt-4o"}, "model"),
        ({"prompt": "p", "budget": {"max_tokens": -1}}, "budget.max_tokens"),
        ({"prompt": "p", "webhook_url": "ftp://x"}, "webhook_url"),
        ({"prompt": "p", "colour": "red"}, "colour"),
        ({"prompt": "p", "tenant": "someone-else"}, "tenant"),
    ],
)
async def test_bad_input_is_a_clear_422(
    api: httpx.AsyncClient, body: dict[str, Any], where: str
) -> None:
    answer = await api.post("/v1/runs", json=body)
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["type"] == "InvalidInput"
    assert where in error["message"]
    assert "Traceback" not in answer.text


async def test_unknown_run_is_404_and_huge_bodies_413(api: httpx.AsyncClient) -> None:
    missing = await api.get("/v1/runs/agent-nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "RunNotFound"
    huge = await api.post("/v1/runs", json={"prompt": "x" * 2_000_000})
    assert huge.status_code == 413
    assert huge.json()["error"]["type"] == "BodyTooLarge"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
        for _ in range(40):
            yield b"x" * 65536

    chunked = await api.post("/v1/runs", content=chunks())
    assert chunked.status_code == 413 and chunked.json()["error"]["type"] == "BodyTooLarge"
    not_json = await api.post(
        "/v1/runs", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert not_json.status_code == 422
    error = not_json.json()["error"]
    assert error["message"].startswith("the body is not valid JSON at character 1")
    assert error["problems"] == [{"loc": ["body"], "msg": error["message"], "type": "json_invalid"}]


async def test_openapi_schemas_come_from_the_contracts(api: httpx.AsyncClient) -> None:
    document = (await api.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    for name in ("RunRequest", "AgentStatus", "AgentResult", "StepRecord", "Budget"):
        assert name in schemas
    assert "webhook_url" in schemas["RunRequest"]["properties"]
    # What Onward sets for itself, and the API refuses, is not offered to clients.
    internal = {"carry", "conversation", "delegation_depth", "workspace"}
    assert not internal & set(schemas["RunRequest"]["properties"])
    assert "carry" not in schemas["SessionInput"]["properties"]
    # Nor the schemas only those fields used: a generated client has no class for them.
    assert not {"AgentCarry", "SessionCarry", "WorkflowStreamState"} & set(schemas)
    assert "ToolSpec" not in schemas  # a carried run's tools, not a client's
    # A 422's problems are typed, so a client can show each by its field.
    problems = schemas["ApiError"]["properties"]["problems"]["items"]
    assert problems == {"$ref": "#/components/schemas/Problem"}
    assert set(schemas["Problem"]["required"]) == {"loc", "msg", "type"}
    referenced = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(document)))
    assert referenced == set(schemas)  # every schema used, every reference resolved
    assert "/v1/runs/{run_id}/events" in document["paths"]
    # The WebSocket, which FastAPI leaves out, is described as the GET that opens it.
    socket = document["paths"]["/v1/runs/{run_id}/ws"]["get"]
    assert list(socket["responses"]) == ["101"]
    assert {"run_id", "after", "api_key"} <= {item["name"] for item in socket["parameters"]}
    assert '"type": "pause"' in socket["description"]
    # No keys file: no key is asked for (the keys-file case is fuzzed with one).
    assert "securitySchemes" not in document["components"]
    assert all("security" not in op for path in document["paths"].values() for op in path.values())


async def test_the_same_key_sent_twice_at_once_starts_one_run(api: httpx.AsyncClient) -> None:
    body = {"prompt": "once", "script": [{"text": "x"}], "idempotency_key": "together"}
    answers = await asyncio.gather(*(api.post("/v1/runs", json=body) for _ in range(4)))
    assert {answer.status_code for answer in answers} == {202}
    assert len({answer.json()["id"] for answer in answers}) == 1
    assert sum(answer.json()["created"] for answer in answers) == 1
    # Another request under one key at the same moment: whichever started, the other is a 422.
    bodies = [{**body, "idempotency_key": "race"}] * 3 + [{**body, "prompt": "another"}]
    bodies[3]["idempotency_key"] = "race"
    raced = await asyncio.gather(*(api.post("/v1/runs", json=b) for b in bodies))
    won = next(i for i, answer in enumerate(raced) if answer.status_code == 202)
    for sent, answer in zip(bodies, raced, strict=True):
        assert answer.status_code == (202 if sent == bodies[won] else 422), answer.text
    assert sum(answer.status_code == 202 and answer.json()["created"] for answer in raced) == 1


async def test_budget_warnings_and_state_changes_are_streamed(api: httpx.AsyncClient) -> None:
    turn = {
        "text": "again",
        "tool_calls": [ONE_PLUS_ONE],
        "usage": {"input_tokens": 400, "output_tokens": 100},
        "delay_s": 0.3,
    }
    body = {"prompt": "p", "script": [turn] * 10, "budget": {"max_tokens": 1200}}
    created = (await api.post("/v1/runs", json=body)).json()
    url = created["status_url"]
    await api.post(f"{url}/pause")

    async def paused() -> bool:
        return bool((await api.get(url)).json()["state"] == "paused")

    await eventually(paused)
    await api.post(f"{url}/resume")
    events = await read_events(api, created["events_url"])
    kinds = [event.event for event in events]
    states = [event.data["state"] for event in events if event.event == "state"]
    assert states[:3] == ["running", "paused", "running"]
    assert states[-1] == "budget_exceeded"
    (warning,) = [event for event in events if event.event == "budget_warning"]
    assert warning.data == {"limit": "max_tokens", "used": 1000, "max": 1200}
    # Sent with the decision that crossed 80 %: the second one (500 tokens each).
    assert kinds[kinds.index("budget_warning") - 1] == "model"
    assert [e.data["step"] for e in events if e.event == "model"][:2] == [1, 2]
    assert events[kinds.index("budget_warning") - 1].data["step"] == 2
    assert events[-1].data["status"] == "budget_exceeded"


async def test_a_run_terminated_through_temporal_still_streams_a_result(
    api: httpx.AsyncClient, worker: RunningWorker
) -> None:
    body = {"prompt": "p", "script": [{"text": "slow", "delay_s": 30}]}
    created = (await api.post("/v1/runs", json=body)).json()
    await worker.client.get_workflow_handle(created["id"]).terminate(reason="operator said so")
    events = await read_events(api, created["events_url"])
    assert events[-1].event == "result"
    assert events[-1].data["status"] == "terminated"  # as its status says
    # Its final state, which the run could not publish, comes before its result.
    assert (events[-2].event, events[-2].data) == ("state", {"state": "terminated"})
    assert (await api.get(created["status_url"])).json()["state"] == "terminated"
    assert "operator said so" in events[-1].data["reason"]
    result = await api.get(created["result_url"])
    assert result.json() == events[-1].data


async def test_every_422_names_where_the_problem_is(api: httpx.AsyncClient) -> None:
    # A client shows problems by field: each 422 has one per problem, its loc where
    # FastAPI puts its own ("body", "query", "path", "header" first), never none.
    created = (await api.post("/v1/runs", json={"prompt": "p", "script": [{"text": "x"}]})).json()
    url = created["status_url"]
    assert (await api.get(created["result_url"], params={"wait": 20})).status_code == 200
    keyed = {"prompt": "p", "idempotency_key": f"k-{created['id']}", "script": [{"text": "x"}]}
    assert (await api.post("/v1/runs", json=keyed)).status_code == 202
    session = (await api.post("/v1/sessions", json={"script": [{"text": "a"}]})).json()
    said = {"message": "hi", "idempotency_key": "m1"}
    assert (await api.post(session["messages_url"], json=said)).status_code == 200
    cases: list[tuple[str, str, dict[str, Any], list[list[object]]]] = [
        ("POST", "/v1/runs", {"json": {"prompt": "p", "tenant": "other"}}, [["body", "tenant"]]),
        ("POST", "/v1/runs", {"json": {"prompt": "p", "workspace": "w"}}, [["body", "workspace"]]),
        ("POST", "/v1/runs", {"json": {**keyed, "prompt": "q"}}, [["body", "idempotency_key"]]),
        # A check of several fields: at the field it names first.
        (
            "POST",
            "/v1/runs",
            {"json": {"prompt": "p", "fallback_models": ["scripted"]}},
            [["body", "fallback_models", 0]],
        ),
        (
            "POST",
            "/v1/runs",
            {"json": {"prompt": "p", "model": "openai:m", "script": [{"text": "x"}]}},
            [["body", "script"]],
        ),
        (
            "GET",
            "/v1/runs",
            {"params": {"page_token": "bm90IGEgdG9rZW4"}},
            [["query", "page_token"]],
        ),
        (
            "GET",
            f"{url}/events",
            {"headers": {"Last-Event-ID": "x"}},
            [["header", "last-event-id"]],
        ),
        ("GET", f"{url}/artifacts/..%2F..%2Fetc%2Fpasswd", {}, [["path", "path"]]),
        ("POST", f"{url}/pause", {"json": {"b": 1, "a": 2}}, [["body", "a"], ["body", "b"]]),
        ("POST", f"{url}/resume", {"json": [1]}, [["body"]]),
        ("POST", f"{url}/pause", {"content": b"{x"}, [["body"]]),
        ("POST", f"{url}/steer", {"json": {"message": "  "}}, [["body", "message"]]),
        ("POST", f"{url}/extend-budget", {"json": {}}, [["body"]]),
        ("GET", "/v1/sessions", {"params": {"page_token": "bm90"}}, [["query", "page_token"]]),
        ("GET", session["events_url"], {"params": {"after": 5}}, [["query", "after"]]),
        ("POST", session["close_url"], {"json": {"reason": "x"}}, [["body", "reason"]]),
        (
            "POST",
            session["messages_url"],
            {"json": {**said, "message": "other"}},
            [["body", "idempotency_key"]],
        ),
    ]
    for method, path, request, where in cases:
        answer = await api.request(method, path, **request)
        assert answer.status_code == 422, (path, answer.text)
        error = answer.json()["error"]
        assert [problem["loc"] for problem in error["problems"]] == where, (path, error)
        assert all(problem["msg"] and problem["type"] for problem in error["problems"])


async def test_a_run_is_exported_whole(api: httpx.AsyncClient) -> None:
    created = (await api.post("/v1/runs", json={"prompt": "17*3+4", "script": CALC_SCRIPT})).json()
    result = await api.get(f"{created['result_url']}?wait=30")
    assert result.status_code == 200, result.text
    answer = await api.get(f"{created['status_url']}/export")
    assert answer.status_code == 200, answer.text
    exported = answer.json()
    assert exported["onward_export"] == 1 and exported["workflow_id"] == created["id"]
    assert exported["input"]["prompt"] == "17*3+4"
    assert exported["result"]["output"] == "55"
    assert [step["text"] for step in exported["steps"]] == ["add first", "write it down", "55"]
    assert [m["role"] for m in exported["messages"]][:3] == ["user", "assistant", "tool"]
    events = exported["histories"][0]["history"]["events"]
    assert events[-1]["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED"
    missing = await api.get("/v1/runs/no-such-run/export")
    assert missing.status_code == 404


async def test_a_fork_goes_on_from_a_step_of_the_tenants_run(api: httpx.AsyncClient) -> None:
    created = (await api.post("/v1/runs", json={"prompt": "17*3+4", "script": CALC_SCRIPT})).json()
    assert (await api.get(f"{created['result_url']}?wait=30")).status_code == 200
    fork = await api.post(
        f"{created['status_url']}/fork",
        json={"at_step": 2, "prompt": "say it in words", "budget": {"max_steps": 4}},
    )
    assert fork.status_code == 202, fork.text
    forked = fork.json()
    assert forked["id"] != created["id"] and forked["created"] is True
    assert fork.headers["location"] == forked["status_url"]
    result = (await api.get(f"{forked['result_url']}?wait=30")).json()
    # The rest of the script: its third turn, after the two steps taken over.
    assert [step["text"] for step in result["steps"]] == ["55"]
    exported = (await api.get(f"{forked['status_url']}/export")).json()
    assert exported["input"]["budget"]["max_steps"] == 4
    contents = [m["content"] for m in exported["messages"]]
    assert contents[0] == "17*3+4" and "say it in words" in contents
    # A step the run did not finish: located in the body.
    refused = await api.post(
        f"{created['status_url']}/fork", json={"at_step": 9, "prompt": "again"}
    )
    assert refused.status_code == 422, refused.text
    assert [p["loc"] for p in refused.json()["error"]["problems"]] == [["body", "at_step"]]
    missing = await api.post("/v1/runs/no-such-run/fork", json={"at_step": 1, "prompt": "x"})
    assert missing.status_code == 404
