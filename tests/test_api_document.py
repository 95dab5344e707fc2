"""What clients get is what ``/openapi.json`` says: statuses, bodies (by jsonschema), headers."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import jsonschema

from api_server import serving
from conftest import RunningWorker
from onward.api_keys import ApiKeys
from onward.client import OnwardClient
from onward.starter.api import ApiSettings, Limits, api_app

HEADERS = ("location", "link", "retry-after")
"""The headers a client acts on, which the document must describe where they are sent."""
SLOW = {"prompt": "p", "script": [{"text": "slow", "delay_s": 30}]}


def operation(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    """The document's operation for a request's method and path."""
    for template, operations in document["paths"].items():
        pattern = re.sub(r"\{\w+\}", "[^/]+", template)
        if re.fullmatch(pattern, path) and method.lower() in operations:
            found: dict[str, Any] = operations[method.lower()]
            return found
    raise AssertionError(f"{method} {path} is not in the document")


def conforms(document: dict[str, Any], answer: httpx.Response) -> None:
    """Assert ``answer`` is one its operation describes: status, JSON body, headers."""
    request = answer.request
    where = f"{request.method} {request.url.path} -> {answer.status_code}"
    responses = operation(document, request.method, request.url.path)["responses"]
    assert str(answer.status_code) in responses, f"{where}: status not documented"
    response = responses[str(answer.status_code)]
    schema = response["content"]["application/json"]["schema"]
    try:
        jsonschema.validate(answer.json(), {**schema, "components": document["components"]})
    except jsonschema.ValidationError as err:
        raise AssertionError(f"{where}: {err.message}") from None
    described = {name.lower() for name in response.get("headers", {})}
    sent = {name for name in HEADERS if name in answer.headers}
    assert sent <= described, f"{where}: {sent - described} not described"


@asynccontextmanager
async def api(
    worker: RunningWorker, keys_file: Path, task_queue: str | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    onward = OnwardClient(worker.client, task_queue=task_queue or worker.task_queue)
    settings = ApiSettings(keys=ApiKeys.load(keys_file), limits=Limits(max_runs=2))
    async with (
        serving(api_app(settings, onward)) as base,
        httpx.AsyncClient(base_url=base, timeout=60) as http,
    ):
        yield http


async def test_answers_and_their_headers_are_the_documents(
    worker: RunningWorker, tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys.json"
    key = ApiKeys.add(keys_file, f"documented-{uuid.uuid4().hex[:8]}")
    auth = {"Authorization": f"Bearer {key}"}
    async with api(worker, keys_file) as http:
        document = (await http.get("/openapi.json")).json()
        sessions = [await http.post("/v1/sessions", json={}, headers=auth) for _ in range(2)]
        assert [s.status_code for s in sessions] == [201, 201]
        answers = [await http.post("/v1/runs", json=SLOW, headers=auth) for _ in range(3)]
        assert [a.status_code for a in answers] == [202, 202, 429]  # Location; Retry-After
        assert "location" in answers[0].headers and "retry-after" in answers[2].headers
        run = answers[0].json()["status_url"]
        session = sessions[0].json()["status_url"]
        answers += sessions
        for path in ("/v1/runs", "/v1/sessions"):
            page = await http.get(path, params={"limit": 1}, headers=auth)
            assert "link" in page.headers, page.text
            answers.append(page)
        answers += [
            await http.get(run, headers=auth),
            await http.get(f"{run}/steps", headers=auth),
            await http.get(f"{run}/result", headers=auth),  # 409: running
            await http.post(f"{run}/approve", headers=auth),  # 409: nothing waits
            await http.post(f"{run}/steer", json={"message": " "}, headers=auth),  # 422
            await http.get("/v1/runs/nope", headers=auth),  # 404
            await http.get("/v1/runs", headers={"Authorization": "Bearer nope"}),  # 401
            await http.get(session, headers=auth),
            await http.get(f"{session}/history", headers=auth),
            await http.post("/v1/runs", content=b"x" * (2**20 + 1), headers=auth),  # 413
        ]
        for answer in answers:
            conforms(document, answer)
        for created in answers[:2]:
            cancelled = await http.post(f"{created.json()['status_url']}/cancel", headers=auth)
            assert cancelled.status_code == 200
    # No worker polls the task queue of this one's sessions: 503, with Retry-After.
    async with api(worker, keys_file, task_queue=f"nobody-{uuid.uuid4().hex[:8]}") as http:
        opened = (await http.post("/v1/sessions", json={}, headers=auth)).json()
        unavailable = await http.get(opened["status_url"], headers=auth)
        assert unavailable.status_code == 503 and "retry-after" in unavailable.headers
        conforms(document, unavailable)


async def test_the_document_is_well_formed_where_fastapi_leaves_it_to_us(
    worker: RunningWorker, tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys.json"
    ApiKeys.add(keys_file, "reader")
    async with api(worker, keys_file) as http:
        document = (await http.get("/openapi.json")).json()
    for path, operations in document["paths"].items():
        for method, described in operations.items():
            # OpenAPI: a parameter is unique by name and location.
            named = [(item["name"], item["in"]) for item in described.get("parameters", [])]
            assert len(named) == len(set(named)), (method, path, named)
            responses = described["responses"]
            for status in ("429", "503"):
                if status in responses:
                    assert "Retry-After" in responses[status]["headers"], (method, path)
    limited = {
        ("post", "/v1/runs"),
        ("post", "/v1/sessions"),
        ("post", "/v1/sessions/{session_id}/messages"),
        ("post", "/v1/schedules/{schedule_id}/trigger"),  # a run the API starts
        ("post", "/v1/runs/{run_id}/fork"),  # a new run too
    }
    with_429 = {
        (method, path)
        for path, operations in document["paths"].items()
        for method, described in operations.items()
        if "429" in described["responses"]
    }
    assert with_429 == limited  # only where a tenant's limits are checked
