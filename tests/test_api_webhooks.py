"""Webhooks: the signed result reaches a real local receiver; a failing one never holds a run."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from temporalio.client import Client, WorkflowFailureError

from api_server import read_events, serving
from conftest import RunningWorker, activity_running, eventually, running_worker
from onward.client import OnwardClient
from onward.starter.api import ApiSettings, api_app
from onward.webhooks import verify

SECRET = "whsec-test-secret"


@dataclass
class Receiver:
    """A webhook receiver that answers ``statuses`` in turn (the last one from then on)."""

    statuses: list[int]
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def endpoint(self, request: Request) -> Response:
        self.got.append((dict(request.headers), await request.body()))
        status = self.statuses[min(len(self.got), len(self.statuses)) - 1]
        return Response(status_code=status)


def verified_by_the_readme_recipe(header: str, body: bytes, secret: str) -> bool:
    """The verification example of the README, as a receiver would write it."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    signed = fields["t"].encode() + b"." + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    fresh = abs(time.time() - int(fields["t"])) < 300
    return fresh and hmac.compare_digest(expected, fields["v1"])


@pytest_asyncio.fixture
async def signing_worker(
    client: Client,
    tmp_path: Path,
    search_attribute_names: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[RunningWorker]:
    monkeypatch.setenv("ONWARD_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("ONWARD_WEBHOOK_ALLOW", "127.0.0.1")  # the receivers are local
    async with running_worker(client, tmp_path / "ws", search_attribute_names) as running:
        yield running


@asynccontextmanager
async def api_of(worker: RunningWorker) -> AsyncIterator[httpx.AsyncClient]:
    onward = OnwardClient(worker.client, task_queue=worker.task_queue)
    async with (
        serving(api_app(ApiSettings(), onward)) as base,
        httpx.AsyncClient(base_url=base, timeout=30) as http,
    ):
        yield http


@pytest_asyncio.fixture
async def api(signing_worker: RunningWorker) -> AsyncIterator[httpx.AsyncClient]:
    async with api_of(signing_worker) as http:
        yield http


async def submit_with_webhook(api: httpx.AsyncClient, receiver: Receiver) -> tuple[str, str]:
    app = Starlette(routes=[Route("/hook", receiver.endpoint, methods=["POST"])])
    async with serving(app) as hook_base:
        body = {
            "prompt": "p",
            "script": [{"text": "the answer"}],
            "webhook_url": f"{hook_base}/hook",
        }
        created = (await api.post("/v1/runs", json=body)).json()
        result = await api.get(created["result_url"], params={"wait": 60})
        assert result.status_code == 200
        return created["id"], result.json()["status"]


async def test_the_result_is_delivered_signed(api: httpx.AsyncClient) -> None:
    receiver = Receiver([200])
    run_id, status = await submit_with_webhook(api, receiver)
    assert status == "completed"
    assert len(receiver.got) == 1
    headers, body = receiver.got[0]
    document = json.loads(body)
    assert document["id"] == run_id
    assert document["result"]["output"] == "the answer"
    signature = headers["onward-signature"]
    assert verify(signature, body, SECRET, time.time())
    assert verified_by_the_readme_recipe(signature, body, SECRET)
    assert not verify(signature, body + b" ", SECRET, time.time())
    assert not verified_by_the_readme_recipe(signature, body, "another secret")


async def test_a_failing_receiver_is_retried_with_the_same_delivery_id(
    api: httpx.AsyncClient,
) -> None:
    receiver = Receiver([500, 503, 200])
    run_id, status = await submit_with_webhook(api, receiver)
    assert status == "completed"
    assert len(receiver.got) == 3
    events = await read_events(api, f"/v1/runs/{run_id}/events")
    webhook = [e.data for e in events if e.event == "webhook"]
    assert webhook == [{"delivered": True, "attempts": 3, "status_code": 200, "error": None}]
    assert events[-1].event == "result"
    deliveries = {headers["onward-delivery"] for headers, _ in receiver.got}
    assert len(deliveries) == 1
    # In the signed body too: a replay cannot pass as a new delivery by its header.
    assert {json.loads(body)["delivery"] for _, body in receiver.got} == deliveries
    assert all(verify(h["onward-signature"], b, SECRET, time.time()) for h, b in receiver.got)


async def test_a_refusing_receiver_does_not_fail_the_run(api: httpx.AsyncClient) -> None:
    receiver = Receiver([404])
    run_id, status = await submit_with_webhook(api, receiver)
    assert status == "completed"
    assert len(receiver.got) == 1  # a 404 is final: not retried
    events = await read_events(api, f"/v1/runs/{run_id}/events")
    (webhook,) = [e.data for e in events if e.event == "webhook"]
    assert webhook["delivered"] is False and "404" in webhook["error"]
    assert webhook["status_code"] == 404  # what the receiver answered, as for a delivery

    async def closed() -> bool:
        return bool((await api.get(f"/v1/runs/{run_id}")).json()["state"] == "completed")

    await eventually(closed)


async def test_a_worker_without_the_secret_sends_nothing_and_the_run_completes(
    worker: RunningWorker,
) -> None:
    receiver = Receiver([200])
    async with api_of(worker) as http:
        _, status = await submit_with_webhook(http, receiver)
    assert status == "completed"
    assert receiver.got == []


async def test_a_receiver_inside_the_workers_network_is_refused_unless_allowed(
    client: Client,
    tmp_path: Path,
    search_attribute_names: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A client of the API chooses the URL: the worker must not POST to its own
    # loopback (or private network, or cloud metadata) for it.
    monkeypatch.setenv("ONWARD_WEBHOOK_SECRET", SECRET)
    monkeypatch.delenv("ONWARD_WEBHOOK_ALLOW", raising=False)
    receiver = Receiver([200])
    async with (
        running_worker(client, tmp_path / "ws", search_attribute_names) as worker,
        api_of(worker) as http,
    ):
        run_id, status = await submit_with_webhook(http, receiver)
        events = await read_events(http, f"/v1/runs/{run_id}/events")
    assert status == "completed"
    assert receiver.got == []
    (webhook,) = [e.data for e in events if e.event == "webhook"]
    assert webhook["delivered"] is False and webhook["attempts"] == 1  # final, not retried
    assert webhook["status_code"] is None  # nothing answered
    assert "127.0.0.1 is a loopback address" in webhook["error"]
    assert "ONWARD_WEBHOOK_ALLOW" in webhook["error"]


async def test_a_natively_cancelled_run_still_delivers_its_result(
    signing_worker: RunningWorker,
) -> None:
    # The README promises a delivery for a cancelled run; `temporal workflow cancel`
    # (or the Web UI's) ends a run as cancelled too, not only the cancel signal.
    receiver = Receiver([200])
    app = Starlette(routes=[Route("/hook", receiver.endpoint, methods=["POST"])])
    async with serving(app) as hook_base:
        script = [{"text": "slow", "delay_s": 60}]
        handle = await signing_worker.start(
            {"prompt": "p", "script": script, "webhook_url": f"{hook_base}/hook"}
        )
        await eventually(lambda: activity_running(handle, "call_model"))
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()

        async def delivered() -> bool:
            return len(receiver.got) == 1

        await eventually(delivered)
    headers, body = receiver.got[0]
    assert json.loads(body)["result"]["status"] == "cancelled"
    assert verify(headers["onward-signature"], body, SECRET, time.time())


async def test_a_run_failed_for_input_only_the_worker_checks_still_delivers(
    signing_worker: RunningWorker,
) -> None:
    # Tools are checked by the worker, not by the API: such a run fails after it
    # started, and its webhook must hear of it like any failed run's.
    receiver = Receiver([200])
    app = Starlette(routes=[Route("/hook", receiver.endpoint, methods=["POST"])])
    async with serving(app) as hook_base:
        handle = await signing_worker.start(
            {"prompt": "p", "tools": ["no_such_tool"], "webhook_url": f"{hook_base}/hook"}
        )
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    assert len(receiver.got) == 1
    result = json.loads(receiver.got[0][1])["result"]
    assert result["status"] == "failed"
    assert result["reason"] == "invalid input: unknown tools"


async def test_a_webhook_url_with_a_malformed_port_is_refused_and_never_retried(
    api: httpx.AsyncClient, signing_worker: RunningWorker
) -> None:
    # Accepted, it was tried 5 times ("Invalid port: '45157:42009'"), holding the
    # run's close some 15 s for a URL no attempt could reach.
    bad = "http://127.0.0.1:45157:42009/hook"
    refused = await api.post("/v1/runs", json={"prompt": "p", "webhook_url": bad})
    assert refused.status_code == 422 and "webhook_url" in refused.text, refused.text
    # A run started without the API (the temporal CLI, say): one final attempt.
    handle = await signing_worker.start(
        {"prompt": "p", "script": [{"text": "ok"}], "webhook_url": bad}
    )
    assert (await asyncio.wait_for(handle.result(), 30)).status == "completed"
    history = [event async for event in handle.fetch_history_events()]
    attempts = [
        e.activity_task_started_event_attributes.attempt
        for e in history
        if e.HasField("activity_task_started_event_attributes")
    ]
    failures = [
        e.activity_task_failed_event_attributes.failure.message
        for e in history
        if e.HasField("activity_task_failed_event_attributes")
    ]
    assert attempts == [1, 1]  # the model call, and the one delivery attempt
    assert len(failures) == 1 and "45157:42009" in failures[0]


async def test_a_new_run_under_a_closed_runs_id_is_a_new_delivery(
    signing_worker: RunningWorker,
) -> None:
    # A closed run's id may start another run (`onward start --id daily` each day):
    # a receiver that drops repeats by `delivery`, as the README says to, must not
    # drop the second run's result as a repeat of the first's.
    receiver = Receiver([200])
    app = Starlette(routes=[Route("/hook", receiver.endpoint, methods=["POST"])])
    async with serving(app) as hook_base:
        agent = {"prompt": "p", "script": [{"text": "ok"}], "webhook_url": f"{hook_base}/hook"}
        for _ in range(2):
            handle = await signing_worker.start(agent, workflow_id="daily-report")
            assert (await handle.result()).status == "completed"
    bodies = [json.loads(body) for _, body in receiver.got]
    assert [body["id"] for body in bodies] == ["daily-report", "daily-report"]
    assert len({body["delivery"] for body in bodies}) == 2
    assert len({headers["onward-delivery"] for headers, _ in receiver.got}) == 2
