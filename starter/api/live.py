"""``GET /v1/runs/{id}/ws``: a run's events and its controls on one WebSocket.

The server sends the same events as ``/events`` as JSON messages
``{"id", "event", "data"}`` (ids work as Last-Event-ID: reconnect with
``?after=<id>``), and closes the socket with code 1000 after ``result``.
The client may send controls at any time, ``{"type": "pause" | "resume" |
"cancel" | "steer" | "extend-budget" | "approve" | "reject", ...body}`` with
the body the HTTP endpoint takes (and an optional ``ref`` it gets back); each
is answered ``{"type": "ack", "control", "ref", "data"}`` (the HTTP answer)
or ``{"type": "error", "control", "ref", "status", "error": {"type",
"message", "problems"}}`` (the HTTP status and error body), and the socket
stays open. A control is a text message of at most 1 MiB, as an HTTP body
(413 ``BodyTooLarge`` over it; a binary message is a 422).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect
from temporalio.service import RPCError

from onward.client import OnwardClient
from onward.errors import InvalidInput, OnwardError
from onward.starter.api.controls import SpendLeft, apply_control, control_body
from onward.starter.api.errors import INTERNAL_ERROR, ApiProblem, parse_json, status_of
from onward.starter.api.events import RunEvent

__all__ = [
    "CLOSE_ENDED",
    "CLOSE_INTERNAL_ERROR",
    "CLOSE_NOT_FOUND",
    "CLOSE_TRY_AGAIN",
    "CLOSE_UNAUTHORIZED",
    "serve_socket",
]

CLOSE_ENDED = 1000
"""Close code after the ``result`` event."""
CLOSE_UNAUTHORIZED = 4401
"""Close code of a missing or unknown API key (the HTTP 401)."""
CLOSE_NOT_FOUND = 4404
"""Close code of an unknown run, or another tenant's (the HTTP 404)."""
CLOSE_INTERNAL_ERROR = 1011
"""Close code when the server failed (the HTTP 500), or the event stream was cut short."""
CLOSE_TRY_AGAIN = 1013
"""Close code when Temporal, a worker or the store cannot be reached (the HTTP 503):
the standard "try again later", which clients may retry; 1008 (policy) says not to."""

log = logging.getLogger("onward.api")


def error_message(err: OnwardError) -> dict[str, Any]:
    """The ``error`` part of a message, as the HTTP error body has it."""
    problems = [
        {
            "loc": list(item.get("loc", ())),
            "msg": item.get("msg", ""),
            "type": item.get("type") or "value_error",
        }
        for item in (err.problems if isinstance(err, InvalidInput) else [])
    ]
    error_type = getattr(err, "error_type", type(err).__name__)
    return {"type": error_type, "message": str(err), "problems": problems}


class _Session:
    """One socket: events out, controls in; sends never interleave."""

    def __init__(
        self,
        websocket: WebSocket,
        client: OnwardClient,
        run_id: str,
        spend_left: SpendLeft,
        max_message_bytes: int,
    ) -> None:
        self.websocket = websocket
        self.client = client
        self.run_id = run_id
        self.spend_left = spend_left
        self.max_message_bytes = max_message_bytes
        self._sending = asyncio.Lock()

    async def send(self, message: dict[str, Any]) -> None:
        async with self._sending:
            await self.websocket.send_text(json.dumps(message))

    async def forward(self, events: AsyncIterator[RunEvent]) -> None:
        """Send the run's events; close after ``result``, or when they end without one."""
        try:
            async for item in events:
                await self.send({"id": item.id, "event": item.event, "data": item.data})
                if item.event == "result":
                    await self.websocket.close(CLOSE_ENDED)
                    return
            ended = not (await self.client.info(self.run_id)).running
        except (OnwardError, RPCError) as err:
            await self._interrupted(err)
            return
        if ended:  # ?after= named the result or a later id: nothing more comes, as over SSE
            await self.websocket.close(CLOSE_ENDED)
        else:
            await self._interrupted("the run's history ended early")

    async def _interrupted(self, why: object) -> None:
        # The client reconnects with ?after=<last id>; nothing is lost by ending here.
        log.warning("websocket event stream ended early: %s", why)
        await self.websocket.close(
            CLOSE_INTERNAL_ERROR, "event stream interrupted; reconnect with ?after="
        )

    def _decoded(self, frame: str | bytes) -> object:
        """A control message's JSON, held to the HTTP body limit."""
        size = len(frame) if isinstance(frame, bytes) else len(frame.encode())
        if size > self.max_message_bytes:
            raise ApiProblem(
                413, "BodyTooLarge", f"the message is over {self.max_message_bytes} bytes"
            )
        if isinstance(frame, bytes):
            why = "a control is a JSON text message, not a binary one"
            raise InvalidInput(why, [{"loc": (), "msg": why, "type": "json_type"}])
        return parse_json(frame, "the message")

    async def control(self, frame: str | bytes) -> None:
        """Apply one control message and answer it; an error is answered too, never raised."""
        kind: str | None = None
        ref: object = None
        try:
            message = self._decoded(frame)
            if not isinstance(message, dict):
                why = "a control message is a JSON object with a 'type'"
                raise InvalidInput(why, [{"loc": (), "msg": why, "type": "model_type"}])
            ref = message.pop("ref", None)
            kind = message.pop("type", None)
            if not isinstance(kind, str):
                raise InvalidInput.at(
                    ("type",), "missing; say which control (pause, resume, ...)", "missing"
                )
            body = control_body(kind, message)
            answer = await apply_control(self.client, self.run_id, kind, body, self.spend_left)
        except OnwardError as err:
            await self._refuse(kind, ref, status_of(err), error_message(err))
            return
        except Exception:
            # As the HTTP API's 500: logged, answered, and the socket goes on.
            log.exception("unexpected error answering a control of run %s", self.run_id)
            error = {"type": "InternalError", "message": INTERNAL_ERROR, "problems": []}
            await self._refuse(kind, ref, 500, error)
            return
        await self.send(
            {"type": "ack", "control": kind, "ref": ref, "data": answer.model_dump(mode="json")}
        )

    async def _refuse(
        self, kind: str | None, ref: object, status: int, error: dict[str, Any]
    ) -> None:
        """Answer a control with the HTTP status and error body it would have had."""
        await self.send(
            {"type": "error", "control": kind, "ref": ref, "status": status, "error": error}
        )

    async def receive(self) -> None:
        """Read controls until the client goes."""
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            await self.control(text if text is not None else message.get("bytes") or b"")


async def serve_socket(
    websocket: WebSocket,
    client: OnwardClient,
    run_id: str,
    events: AsyncIterator[RunEvent],
    spend_left: SpendLeft,
    max_message_bytes: int,
) -> None:
    """Run an accepted socket until the run's result was sent or the client went.

    A control message over ``max_message_bytes`` is refused (413) as an HTTP body is.
    """
    session = _Session(websocket, client, run_id, spend_left, max_message_bytes)
    forwarding = asyncio.create_task(session.forward(events))
    receiving = asyncio.create_task(session.receive())
    try:
        await asyncio.wait({forwarding, receiving}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (forwarding, receiving):
            task.cancel()
        for task in (forwarding, receiving):
            try:
                await task
            except (asyncio.CancelledError, WebSocketDisconnect, OnwardError, RPCError):
                pass  # cancelled here, or the client went, or Temporal did (forward closed)
            except Exception as err:
                if isinstance(err, RuntimeError) and not isinstance(err, RecursionError):
                    continue  # starlette's "already closed": an answer raced the close
                # What no one expected ends this socket, with a close code, and is logged.
                log.exception("websocket of run %s failed", run_id)
                with contextlib.suppress(RuntimeError, WebSocketDisconnect):  # closed already
                    await websocket.close(CLOSE_INTERNAL_ERROR, INTERNAL_ERROR)
