"""Serving the HTTP API (and small HTTP receivers) on free local ports for the API tests."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from starlette.types import ASGIApp

from conftest import eventually


@asynccontextmanager
async def serving(app: ASGIApp, **options: Any) -> AsyncIterator[str]:
    """Run ``app`` with uvicorn on a free port of 127.0.0.1; yield its base URL.

    ``options`` go to ``uvicorn.Config``: ``ssl_certfile`` and ``ssl_keyfile`` serve HTTPS.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1, **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))

    async def started() -> bool:
        if task.done():
            task.result()  # raise what stopped it
        return server.started

    try:
        await eventually(started)
        yield f"{'https' if options.get('ssl_certfile') else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@dataclass(frozen=True)
class Sse:
    """One Server-Sent Event as a client parses it."""

    id: int
    event: str
    data: Any


async def read_events(
    http: httpx.AsyncClient,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    stop_after: int | None = None,
) -> list[Sse]:
    """Read an event stream to its ``result`` event, or until ``stop_after`` events."""
    found: list[Sse] = []
    async with http.stream("GET", url, headers=headers, timeout=60) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        async for line in response.aiter_lines():
            if line:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
                continue
            if "event" in fields:
                found.append(Sse(int(fields["id"]), fields["event"], json.loads(fields["data"])))
                if found[-1].event == "result" or len(found) == stop_after:
                    break
            fields = {}
    return found
