"""Fake model providers: real HTTP/1.1 servers on 127.0.0.1, scripted per test.

Each :class:`FakeProvider` listens on a free loopback port, answers its
protocol's one path (``/v1/chat/completions`` or ``/v1/messages``) with the
next scripted :class:`Reply` (status, headers, JSON or raw body, optional
delay), and records every request it got, with its arrival time, so tests
can assert what was sent and when.

The server is a few lines over ``asyncio.start_server``: one request per
connection (``Connection: close``), so no keep-alive state can leak between
scripted replies. It runs on the test's event loop, like the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any

__all__ = [
    "ANTHROPIC_PATH",
    "OPENAI_PATH",
    "FakeProvider",
    "Recorded",
    "Reply",
    "anthropic_message",
    "anthropic_stream",
    "openai_completion",
    "openai_stream",
]

OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"


@dataclass
class Reply:
    """One scripted answer."""

    status: int = 200
    json: Any = None
    body: bytes | None = None
    """Sent as is instead of ``json`` (malformed answers)."""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    """The answer comes this late (a hanging server)."""
    trickle_s: float = 0.0
    """Wait this long before each 8 bytes of the body (a server answering very slowly)."""
    events: list[dict[str, Any]] | None = None
    """Sent as Server-Sent Events instead of a body (a streamed answer), then ``[DONE]``
    for Chat Completions; each event's ``type`` (Messages) is also its ``event:`` line."""
    event_gap_s: float = 0.0
    """Wait this long before each event (tokens arriving over time)."""
    done: bool = True
    """End a Chat Completions stream with ``[DONE]`` (False: it just closes, cut off)."""


@dataclass
class Recorded:
    """One request the server got."""

    method: str
    path: str
    headers: dict[str, str]
    """Lower-case names."""
    raw: bytes
    at: float
    """``time.monotonic()`` when the request had fully arrived."""
    header_lines: list[tuple[str, str]] = field(default_factory=list)
    """Every header line as sent (a name sent twice shows twice)."""

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


class FakeProvider:
    """A scripted provider on a free port; use as ``async with FakeProvider(OPENAI_PATH)``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.requests: list[Recorded] = []
        self._replies: deque[Reply] = deque()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, without a path."""
        return f"http://127.0.0.1:{self.port}"

    def script(self, *replies: Reply | dict[str, Any]) -> None:
        """Queue answers; a dict is a 200 JSON answer."""
        for reply in replies:
            self._replies.append(reply if isinstance(reply, Reply) else Reply(json=reply))

    @property
    def pending(self) -> int:
        """Scripted answers not yet given."""
        return len(self._replies)

    async def __aenter__(self) -> FakeProvider:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._answer(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client gave up (a timeout test): nothing to answer
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request_line = await reader.readline()
        if not request_line:
            return
        method, target, _ = request_line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        lines: list[tuple[str, str]] = []
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
            lines.append((name.strip(), value.strip()))
        length = int(headers.get("content-length", "0"))
        raw = await reader.readexactly(length) if length else b""
        self.requests.append(Recorded(method, target, headers, raw, time.monotonic(), lines))
        reply = self._next(method, target)
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.events is not None:
            await self._stream(writer, reply)
            return
        body = reply.body if reply.body is not None else json.dumps(reply.json).encode()
        head = [f"HTTP/1.1 {reply.status} {_phrase(reply.status)}"]
        extra = {"content-type": "application/json", **reply.headers}
        head += [f"{name}: {value}" for name, value in extra.items()]
        head += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
        if not reply.trickle_s:
            writer.write("\r\n".join(head).encode("latin-1") + body)
            await writer.drain()
            return
        writer.write("\r\n".join(head).encode("latin-1"))
        for start in range(0, len(body), 8):
            await asyncio.sleep(reply.trickle_s)
            writer.write(body[start : start + 8])
            await writer.drain()

    async def _stream(self, writer: asyncio.StreamWriter, reply: Reply) -> None:
        """An SSE answer, event by event; its end is the connection's close."""
        head = [f"HTTP/1.1 {reply.status} {_phrase(reply.status)}"]
        extra = {"content-type": "text/event-stream", **reply.headers}
        head += [f"{name}: {value}" for name, value in extra.items()]
        head += ["Cache-Control: no-cache", "Connection: close", "", ""]
        writer.write("\r\n".join(head).encode("latin-1"))
        await writer.drain()
        assert reply.events is not None
        for event in reply.events:
            if reply.event_gap_s:
                await asyncio.sleep(reply.event_gap_s)
            name = f"event: {event['type']}\n" if "type" in event else ""
            writer.write(f"{name}data: {json.dumps(event)}\n\n".encode())
            await writer.drain()
        if self.path == OPENAI_PATH and reply.done:
            writer.write(b"data: [DONE]\n\n")
            await writer.drain()

    def _next(self, method: str, target: str) -> Reply:
        if method != "POST" or target != self.path:
            return Reply(404, {"error": {"message": f"fake server: no route {method} {target}"}})
        if not self._replies:
            # 400 fails the run at once, so a test that under-scripts fails fast and clearly.
            return Reply(400, {"error": {"message": "fake server: no scripted reply left"}})
        return self._replies.popleft()


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


ToolUse = tuple[str, str, dict[str, Any] | str]
"""``(id, name, arguments)``; a string is sent as the raw arguments text."""


def openai_completion(
    text: str | None = None,
    tool_calls: Iterable[ToolUse] = (),
    usage: tuple[int, int] = (10, 5),
    finish_reason: str | None = None,
    model: str = "gpt-4o-mini-2024-07-18",
) -> dict[str, Any]:
    """A Chat Completions answer."""
    calls = [
        {
            "id": call_id,
            "type": "function",
            "function": {
                "name": name,
                "arguments": args if isinstance(args, str) else json.dumps(args),
            },
        }
        for call_id, name, args in tool_calls
    ]
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": finish_reason or ("tool_calls" if calls else "stop"),
            }
        ],
        "usage": {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": sum(usage),
        },
    }


def anthropic_message(
    text: str | None = None,
    tool_uses: Iterable[tuple[str, str, dict[str, Any]]] = (),
    usage: tuple[int, int] = (10, 5),
    stop_reason: str | None = None,
    model: str = "claude-3-5-haiku-20241022",
) -> dict[str, Any]:
    """A Messages answer."""
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    content += [
        {"type": "tool_use", "id": call_id, "name": name, "input": args}
        for call_id, name, args in tool_uses
    ]
    tool_use = any(block["type"] == "tool_use" for block in content)
    return {
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason or ("tool_use" if tool_use else "end_turn"),
        "stop_sequence": None,
        "usage": {"input_tokens": usage[0], "output_tokens": usage[1]},
    }


def openai_stream(
    pieces: Iterable[str],
    tool_calls: Iterable[ToolUse] = (),
    usage: tuple[int, int] = (10, 5),
    model: str = "gpt-4o-mini-2024-07-18",
) -> list[dict[str, Any]]:
    """A streamed Chat Completions answer: a chunk per text piece, tool call
    arguments in two halves, then the usage chunk ``include_usage`` asks for."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-test",
            "object": "chat.completion.chunk",
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    chunks = [chunk({"role": "assistant", "content": ""})]
    chunks += [chunk({"content": piece}) for piece in pieces]
    calls = list(tool_calls)
    for index, (call_id, name, args) in enumerate(calls):
        text = args if isinstance(args, str) else json.dumps(args)
        half = len(text) // 2
        first = {"index": index, "id": call_id, "type": "function"}
        chunks.append(
            chunk({"tool_calls": [{**first, "function": {"name": name, "arguments": text[:half]}}]})
        )
        chunks.append(
            chunk({"tool_calls": [{"index": index, "function": {"arguments": text[half:]}}]})
        )
    chunks.append(chunk({}, "tool_calls" if calls else "stop"))
    chunks.append(
        {
            "id": "chatcmpl-test",
            "object": "chat.completion.chunk",
            "model": model,
            "choices": [],
            "usage": {
                "prompt_tokens": usage[0],
                "completion_tokens": usage[1],
                "total_tokens": sum(usage),
            },
        }
    )
    return chunks


def anthropic_stream(
    pieces: Iterable[str],
    tool_uses: Iterable[tuple[str, str, dict[str, Any]]] = (),
    usage: tuple[int, int] = (10, 5),
    model: str = "claude-3-5-haiku-20241022",
) -> list[dict[str, Any]]:
    """A streamed Messages answer: ``message_start``, a text block fed piece by piece,
    tool_use blocks with their input JSON in two halves, ``message_delta``, ``message_stop``."""
    start: dict[str, Any] = {
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "usage": {"input_tokens": usage[0], "output_tokens": 1},
    }
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}, {"type": "ping"}]
    events.append(
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    )
    events += [
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
        for piece in pieces
    ]
    events.append({"type": "content_block_stop", "index": 0})
    uses = list(tool_uses)
    for index, (call_id, name, args) in enumerate(uses, start=1):
        block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
        events.append({"type": "content_block_start", "index": index, "content_block": block})
        text = json.dumps(args)
        for part in (text[: len(text) // 2], text[len(text) // 2 :]):
            delta = {"type": "input_json_delta", "partial_json": part}
            events.append({"type": "content_block_delta", "index": index, "delta": delta})
        events.append({"type": "content_block_stop", "index": index})
    stop = "tool_use" if uses else "end_turn"
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": usage[1]},
        }
    )
    events.append({"type": "message_stop"})
    return events
