"""The API's WebSocket, its approve/reject endpoints and its 422s, on a real port."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from api_server import serving
from conftest import RunningWorker, eventually
from onward.api_keys import ApiKeys
from onward.client import OnwardClient
from onward.errors import ConnectionFailed
from onward.starter.api import ApiSettings, api_app

ONE_PLUS_ONE = {"name": "calculator", "arguments": {"expression": "1+1"}}
SLOW_SCRIPT = [
    {"text": f"turn {i}", "tool_calls": [ONE_PLUS_ONE], "delay_s": 0.3} for i in range(30)
]


@pytest_asyncio.fixture
async def base(worker: RunningWorker) -> AsyncIterator[str]:
    client = OnwardClient(worker.client, task_queue=worker.task_queue)
    async with serving(api_app(ApiSettings(), client)) as url:
        yield url


def ws_url(base: str, path: str) -> str:
    return "ws" + base.removeprefix("http") + path


class Socket:
    """A WebSocket client that keeps events and answers apart."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.events: list[dict[str, Any]] = []
        self.answers: list[dict[str, Any]] = []

    async def read_one(self) -> None:
        message = json.loads(await self.connection.recv())
        (self.answers if "type" in message else self.events).append(message)

    async def to_result(self) -> None:
        await self.until(lambda: "result" in self.kinds())

    async def until(self, done: Any, timeout_s: float = 30) -> None:
        async def reading() -> None:
            while not done():
                await self.read_one()

        await asyncio.wait_for(reading(), timeout_s)

    async def control(self, message: dict[str, Any]) -> dict[str, Any]:
        ref = f"r{len(self.answers)}-{message['type']}"
        await self.connection.send(json.dumps({**message, "ref": ref}))
        await self.until(lambda: any(a.get("ref") == ref for a in self.answers))
        return next(a for a in self.answers if a.get("ref") == ref)

    def kinds(self) -> list[str]:
        return [event["event"] for event in self.events]


async def test_websocket_streams_events_and_takes_controls(base: str) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        body = {"prompt": "p", "script": SLOW_SCRIPT, "budget": {"max_steps": 100}}
        created = (await http.post("/v1/runs", json=body)).json()
        url = created["status_url"]
        async with connect(ws_url(base, f"{url}/ws")) as connection:
            socket = Socket(connection)
            await socket.until(lambda: "model" in socket.kinds())

            paused = await socket.control({"type": "pause"})
            assert paused["type"] == "ack" and paused["control"] == "pause"
            assert paused["data"] == {"id": created["id"], "accepted": True}
            await socket.until(
                lambda: any(e["data"].get("state") == "paused" for e in socket.events)
            )
            resumed = await socket.control({"type": "resume"})
            assert resumed["data"]["state_before"] == "paused"
            steered = await socket.control({"type": "steer", "message": "hurry"})
            assert steered["type"] == "ack"

            async def steered_step() -> bool:
                steps = (await http.get(f"{url}/steps")).json()
                return any("hurry" in step["steering"] for step in steps)

            await eventually(steered_step)
            extended = await socket.control({"type": "extend-budget", "max_steps": 200})
            assert extended["data"]["max_steps"] == 200
            # Errors answer the control, and the socket stays open.
            lowered = await socket.control({"type": "extend-budget", "max_steps": 1})
            assert lowered["type"] == "error" and lowered["status"] == 409
            unknown = await socket.control({"type": "explode"})
            assert unknown["status"] == 422 and "unknown control" in unknown["error"]["message"]
            assert [problem["loc"] for problem in unknown["error"]["problems"]] == [["type"]]
            blank = await socket.control({"type": "steer", "message": " "})
            assert [problem["loc"] for problem in blank["error"]["problems"]] == [["message"]]
            bad = await socket.control({"type": "steer", "note": "x"})
            assert bad["status"] == 422 and bad["error"]["type"] == "InvalidInput"
            nothing_waits = await socket.control({"type": "approve"})
            assert nothing_waits["status"] == 409

            cancelled = await socket.control({"type": "cancel", "reason": "enough"})
            assert cancelled["type"] == "ack"
            await socket.until(lambda: "result" in socket.kinds())
            with pytest.raises(ConnectionClosed) as closed:
                await connection.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000

        result = socket.events[-1]
        assert result["event"] == "result" and result["data"]["status"] == "cancelled"
        assert set(result) == {"id", "event", "data"}
        ids = [event["id"] for event in socket.events]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        # The same events as the SSE stream, and ?after= resumes like Last-Event-ID.
        async with connect(ws_url(base, f"{url}/ws?after={ids[2]}")) as again:
            replay = Socket(again)
            await replay.until(lambda: "result" in replay.kinds())
        assert replay.events == socket.events[3:]


async def test_websocket_keeps_tenants_apart(worker: RunningWorker, tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    acme, globex = ApiKeys.add(keys_file, "ws-acme"), ApiKeys.add(keys_file, "ws-globex")
    onward = OnwardClient(worker.client, task_queue=worker.task_queue)
    settings = ApiSettings(keys=ApiKeys.load(keys_file))
    async with serving(api_app(settings, onward)) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            body = {"prompt": "mine", "script": [{"text": "done", "delay_s": 0.5}]}
            auth = {"Authorization": f"Bearer {acme}"}
            created = (await http.post("/v1/runs", json=body, headers=auth)).json()
        path = f"{created['status_url']}/ws"
        for query, code in [("", 4401), ("?api_key=onw_wrong", 4401), (f"?api_key={globex}", 4404)]:
            async with connect(ws_url(base, path + query)) as connection:
                message = json.loads(await connection.recv())
                assert message["type"] == "error"
                with pytest.raises(ConnectionClosed) as closed:
                    await connection.recv()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == code
        # A bad cursor is named as sent: the query's `after`, the header's Last-Event-ID.
        for query, headers, named in [
            (f"?api_key={acme}&after=abc", {}, "after: must be an event id"),
            (f"?api_key={acme}", {"Last-Event-ID": "-5"}, "Last-Event-ID: must be from 0"),
        ]:
            url = ws_url(base, path + query)
            async with connect(url, additional_headers=headers) as connection:
                message = json.loads(await connection.recv())
                assert message["status"] == 422, message
                assert message["error"]["message"].startswith(named), message
        # The key in a header, as the HTTP endpoints take it, or in the query.
        for url, headers in [(path, auth), (f"{path}?api_key={acme}", {})]:
            async with connect(ws_url(base, url), additional_headers=headers) as connection:
                socket = Socket(connection)
                await socket.to_result()
                assert socket.events[-1]["data"]["output"] == "done"


async def test_approve_and_reject_endpoints(base: str) -> None:
    def write(path: str) -> dict[str, Any]:
        call = {"name": "write_file", "arguments": {"path": path, "content": "x"}}
        return {"text": f"writing {path}", "tool_calls": [call]}

    body = {
        "prompt": "write",
        "tools": ["write_file"],
        "approve_tools": ["write_file"],
        "script": [write("a.md"), write("b.md"), {"text": "done"}],
    }
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        created = (await http.post("/v1/runs", json=body)).json()
        url = created["status_url"]
        pending: list[dict[str, Any]] = []

        async def waiting() -> bool:
            status = (await http.get(url)).json()
            pending[:] = status["pending_approvals"]
            return status["state"] == "awaiting_approval" and len(pending) == 1

        await eventually(waiting)
        wrong = await http.post(f"{url}/approve", json={"call_id": "nope"})
        assert wrong.status_code == 409 and wrong.json()["error"]["type"] == "RequestRejected"
        assert "nope" in wrong.json()["error"]["message"]
        extra = await http.post(f"{url}/approve", json={"call_id": "x", "by": "me"})
        assert extra.status_code == 422
        approved = await http.post(
            f"{url}/approve", json={"call_id": pending[0]["call_id"], "note": "ok"}
        )
        assert approved.status_code == 200, approved.text
        assert approved.json() == {
            "call_ids": [pending[0]["call_id"]],
            "decision": "approved",
            "run_id": created["id"],  # the run whose call it was
        }
        # Sent again (its answer lost, or a 503 UpdateNotTaken): the same decision is
        # answered as the first, not refused as no longer waiting; another is refused.
        again = await http.post(
            f"{url}/approve", json={"call_id": pending[0]["call_id"], "note": "ok"}
        )
        assert (again.status_code, again.json()) == (200, approved.json())
        for verdict, note in [("approve", "another note"), ("reject", "ok")]:
            other = await http.post(
                f"{url}/{verdict}", json={"call_id": pending[0]["call_id"], "note": note}
            )
            assert other.status_code == 409, other.text

        await eventually(waiting)
        rejected = await http.post(f"{url}/reject", json={"note": "not b"})
        assert rejected.json() == {
            "call_ids": [pending[0]["call_id"]],
            "decision": "rejected",
            "run_id": created["id"],
        }
        result = (await http.get(created["result_url"], params={"wait": 20})).json()
        assert result["status"] == "completed"
        steps = (await http.get(f"{url}/steps")).json()
        decisions = [call["approval"]["decision"] for s in steps for call in s["tool_calls"]]
        assert decisions == ["approved", "rejected"]
        ended = await http.post(f"{url}/approve")
        assert ended.status_code == 409
        missing = await http.post("/v1/runs/no-such-run/reject")
        assert missing.status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "where"),
    [
        ("GET", "/v1/runs?since=yesterday", "since"),
        ("GET", "/v1/runs?since=0001-01-01T00:00:00%2B14:00", "since"),
        ("GET", "/v1/runs?since=99999-01-01", "since"),
        ("GET", "/v1/runs?since=12021867", "since"),
        ("GET", "/v1/runs?limit=0", "limit"),
        ("GET", "/v1/runs?limit=lots", "limit"),
        ("GET", "/v1/runs?limit=99999999999999999999999", "limit"),
        ("GET", "/v1/runs/r1/result?wait=nan", "wait"),
        ("GET", "/v1/runs/r1/result?wait=1e400", "wait"),
        ("GET", "/v1/runs/r1/result?wait=315360001", "wait"),
        ("GET", "/v1/runs/r1/events?after=-1", "after"),
        ("GET", "/v1/runs/r1/events?after=99999999999999999999999", "after"),
        ("GET", "/v1/runs/r1/events?after=x", "after"),
        ("GET", "/v1/sessions/s1/events?after=99999999999999999999999", "after"),
        ("GET", "/v1/sessions/s1/events?message=99999999999999999999", "message"),
    ],
)
async def test_bad_query_parameters_are_422s(base: str, method: str, path: str, where: str) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        answer = await http.request(method, path)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["type"] == "InvalidInput" and where in error["message"]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"budget": {"max_duration_s": 1e12}}, "budget.max_duration_s"),
        ({"budget": {"max_duration_s": "Infinity"}}, "budget.max_duration_s"),
        ({"approval_timeout_s": 4e8}, "approval_timeout_s"),
    ],
)
async def test_absurd_durations_are_refused(base: str, body: dict[str, Any], where: str) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        answer = await http.post("/v1/runs", json={"prompt": "p", **body})
        assert answer.status_code == 422, answer.text
        assert where in answer.json()["error"]["message"]
        created = (await http.post("/v1/runs", json={"prompt": "p", "script": SLOW_SCRIPT})).json()
        url = created["status_url"]
        extended = await http.post(f"{url}/extend-budget", json={"max_duration_s": 1e12})
        assert extended.status_code == 422 and "max_duration_s" in extended.text
        await http.post(f"{url}/cancel")


async def test_a_websocket_that_cannot_reach_temporal_closes_with_try_again_later(
    worker: RunningWorker,
) -> None:
    class TemporalGone(OnwardClient):
        """Temporal stops answering between the upgrade and the run's lookup."""

        async def info(self, run_id: str) -> Any:
            raise ConnectionFailed("lost connection to Temporal", "127.0.0.1:7233")

    gone = TemporalGone(worker.client, task_queue=worker.task_queue)
    async with (
        serving(api_app(ApiSettings(), gone)) as base,
        connect(ws_url(base, "/v1/runs/agent-x/ws")) as connection,
    ):
        message = json.loads(await connection.recv())
        assert message["status"] == 503 and message["error"]["type"] == "ConnectionFailed"
        with pytest.raises(ConnectionClosed) as closed:
            await connection.recv()
    # 1013, "try again later", as the HTTP 503: not 1008, which says not to retry.
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013


DEEP = b"[" * 100_000 + b"]" * 100_000
"""JSON nested far past the parser's recursion limit (and well under the body limit)."""
NOT_UTF8 = b'{"prompt": "\xff"}'


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param("/v1/runs/r1/pause", DEEP, id="pause-deep"),
        pytest.param("/v1/runs/r1/resume", DEEP, id="resume-deep"),
        pytest.param("/v1/runs", DEEP, id="runs-deep"),
        pytest.param("/v1/runs", NOT_UTF8, id="runs-not-utf8"),
        pytest.param("/v1/sessions", DEEP, id="sessions-deep"),
    ],
)
async def test_a_body_that_cannot_be_decoded_is_a_422(base: str, path: str, body: bytes) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        answer = await http.post(path, content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["type"] == "InvalidInput", error
    assert error["message"].startswith("the body is not valid JSON"), error


async def test_an_artifact_path_too_long_for_the_disk_is_a_404(base: str) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        created = (await http.post("/v1/runs", json={"prompt": "p"})).json()
        answer = await http.get(f"{created['status_url']}/artifacts/" + "a" * 5000)
    assert answer.status_code == 404, answer.text
    assert answer.json()["error"]["type"] == "ArtifactNotFound"


async def test_a_websocket_answers_messages_it_cannot_take_and_stays_open(base: str) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        created = (await http.post("/v1/runs", json={"prompt": "p", "script": SLOW_SCRIPT})).json()
        url = created["status_url"]
        async with connect(ws_url(base, f"{url}/ws")) as connection:
            socket = Socket(connection)
            await connection.send(b"\x00bin")
            await connection.send(DEEP.decode())
            # Over the HTTP body limit (1 MiB), as a POST to /steer would be.
            await connection.send(json.dumps({"type": "steer", "message": "x" * 2_000_000}))
            await socket.until(lambda: len(socket.answers) == 3)
            refused = [(a["type"], a["status"], a["error"]["type"]) for a in socket.answers]
            assert refused == [
                ("error", 422, "InvalidInput"),
                ("error", 422, "InvalidInput"),
                ("error", 413, "BodyTooLarge"),
            ]
            steered = await socket.control({"type": "steer", "message": "hurry"})
            assert steered["type"] == "ack", steered
            steering: list[str] = []

            async def steered_step() -> bool:
                steps = (await http.get(f"{url}/steps")).json()
                steering[:] = [message for step in steps for message in step["steering"]]
                return bool(steering)

            await eventually(steered_step)
            assert steering == ["hurry"]  # not the 2 MB one
            await socket.control({"type": "cancel"})
            await socket.to_result()


async def test_a_websocket_resumed_past_the_result_closes_as_ended(base: str) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        created = (await http.post("/v1/runs", json={"prompt": "p"})).json()
    url = ws_url(base, f"{created['status_url']}/ws")
    async with connect(url) as connection:
        socket = Socket(connection)
        await socket.to_result()
    last = socket.events[-1]["id"]
    for after in (last, last + 1000):
        async with connect(f"{url}?after={after}") as connection:
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(connection.recv(), 30)  # nothing is sent, then 1000
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000, after
