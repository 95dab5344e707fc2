"""A fake OpenAI-compatible Chat Completions server that plays :mod:`bench.workload`.

    python -m bench.fake_openai [--port 0]

Prints ``fake model server on port N`` once it listens on 127.0.0.1. Every
system under test points its OpenAI client here. Each answer is the next
step of the run named in the prompt (the step is the number of tool results
in the conversation, or the ``bench_step`` field the bare workflow sends), and
reports ``usage`` with ``prompt_tokens_details.cached_tokens`` worked out the
way OpenAI's automatic prompt caching does it: prompts of 1,024 tokens or more
are cached in 128-token blocks, and a request is billed the discounted price
for the longest cached prefix it starts with.

Three more routes serve the bench: ``GET /bench/ledger`` (what each model name
was billed), ``GET /bench/bills/<run>`` (what one run was billed) and
``GET /bench/runs/<run>`` (each model call of a run, with its start and end
time on this machine's monotonic clock).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.workload import Task, note_for, page_for, read_answer

__all__ = [
    "CACHE_BLOCK_TOKENS",
    "CACHE_MIN_TOKENS",
    "PRICE_PER_MTOK",
    "Bill",
    "PrefixCache",
    "answer",
    "main",
]

CHARS_PER_TOKEN = 4
CACHE_MIN_TOKENS = 1024
CACHE_BLOCK_TOKENS = 128
PRICE_PER_MTOK = {"input": 2.00, "cached_input": 0.50, "output": 8.00}
"""US dollars per million tokens: OpenAI's list price of gpt-4.1 (cached input: 75 % off)."""


@dataclass
class Bill:
    """What one model name was billed, summed over its requests."""

    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def uncached_cost_usd(self) -> float:
        """The same requests with no prompt cache: every prompt token at the input price."""
        discount = PRICE_PER_MTOK["input"] - PRICE_PER_MTOK["cached_input"]
        return self.cost_usd + self.cached_tokens * discount / 1e6

    def add(self, prompt: int, cached: int, completion: int) -> None:
        self.requests += 1
        self.prompt_tokens += prompt
        self.cached_tokens += cached
        self.completion_tokens += completion
        self.cost_usd += (
            (prompt - cached) * PRICE_PER_MTOK["input"]
            + cached * PRICE_PER_MTOK["cached_input"]
            + completion * PRICE_PER_MTOK["output"]
        ) / 1e6


class PrefixCache:
    """Prompt prefixes seen lately, as a chain of hashes of 128-token blocks."""

    def __init__(self, capacity: int = 2_000_000) -> None:
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._capacity = capacity

    def lookup_and_store(self, namespace: str, text: str) -> int:
        """Cached tokens of this prompt; then remember all of its blocks."""
        tokens = math.ceil(len(text) / CHARS_PER_TOKEN)
        if tokens < CACHE_MIN_TOKENS:
            return 0
        block = CACHE_BLOCK_TOKENS * CHARS_PER_TOKEN
        digest = hashlib.sha1(namespace.encode()).digest()
        cached, still_hitting = 0, True
        for start in range(0, len(text) - block + 1, block):
            digest = hashlib.sha1(digest + text[start : start + block].encode()).digest()
            if still_hitting and digest in self._seen:
                self._seen.move_to_end(digest)
                cached = (start + block) // CHARS_PER_TOKEN
            else:
                still_hitting = False
                self._seen[digest] = None
        while len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        return cached if cached >= CACHE_MIN_TOKENS else 0


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content or "")


def _prompt_text(request: dict[str, Any]) -> str:
    """The prompt as the provider would tokenize it: tool definitions, then the messages."""
    parts = [json.dumps(request.get("tools") or [], sort_keys=True)]
    parts += [json.dumps(m, sort_keys=True) for m in request.get("messages") or []]
    return "\n".join(parts)


def answer(request: dict[str, Any], cache: PrefixCache) -> tuple[dict[str, Any], Task, int]:
    """The completion for ``request``, the run's task, and the step it answered."""
    messages: list[dict[str, Any]] = request.get("messages") or []
    user = next((_text(m.get("content")) for m in messages if m.get("role") == "user"), "")
    task = Task.parse(user)
    step = request.get("bench_step")
    if not isinstance(step, int):
        step = sum(1 for m in messages if m.get("role") == "tool")
    message: dict[str, Any] = {"role": "assistant", "content": None}
    if step < task.steps:
        arguments = {"page": step + 1} if task.kind == "read" else {"note": note_for(step)}
        message["tool_calls"] = [
            {
                "id": f"call_{step}",
                "type": "function",
                "function": {"name": task.tool, "arguments": json.dumps(arguments)},
            }
        ]
    elif task.kind == "read":
        results = [_text(m.get("content")) for m in messages if m.get("role") == "tool"]
        if "bench_step" in request:  # the floor keeps no conversation: as if it had
            results = [page_for(task.steps)] * step
        message["content"] = read_answer(results)
    else:
        message["content"] = f"done after {step} steps"
    model = str(request.get("model", ""))
    prompt_text = _prompt_text(request)
    prompt = math.ceil(len(prompt_text) / CHARS_PER_TOKEN)
    cached = cache.lookup_and_store(model, prompt_text)
    completion = math.ceil(len(json.dumps(message)) / CHARS_PER_TOKEN)
    body = {
        "id": f"chatcmpl-{task.run}-{step}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if "tool_calls" in message else "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
        },
    }
    return body, task, step


@dataclass
class _Call:
    step: int
    start: float
    end: float | None = None


@dataclass
class FakeServer:
    """The server's state: the prefix cache, the bills and every run's calls."""

    cache: PrefixCache = field(default_factory=PrefixCache)
    bills: dict[str, Bill] = field(default_factory=dict)
    """Per model name: per system."""
    run_bills: dict[str, Bill] = field(default_factory=dict)
    """Per run id: what one run cost, whatever else was going on."""
    runs: dict[str, list[_Call]] = field(default_factory=dict)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer requests on one connection until the client closes it (keep-alive)."""
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    return
                method, target, _ = request_line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                raw = await reader.readexactly(length) if length else b""
                status, body = await self._route(method, target.split("?")[0], raw)
                head = (
                    f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\n"
                    f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
                )
                writer.write(head.encode() + body)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # a killed worker's connection: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _route(self, method: str, path: str, raw: bytes) -> tuple[int, bytes]:
        if method == "POST" and path.endswith("/chat/completions"):
            return 200, json.dumps(await self._complete(json.loads(raw))).encode()
        if method == "GET" and path == "/bench/ledger":
            return 200, json.dumps({k: asdict(v) for k, v in self.bills.items()}).encode()
        if method == "GET" and path.startswith("/bench/bills/"):
            bill = self.run_bills.get(path.removeprefix("/bench/bills/"), Bill())
            return 200, json.dumps(asdict(bill)).encode()
        if method == "GET" and path.startswith("/bench/runs/"):
            calls = self.runs.get(path.removeprefix("/bench/runs/"), [])
            return 200, json.dumps([asdict(call) for call in calls]).encode()
        return 404, json.dumps({"error": {"message": f"no route {method} {path}"}}).encode()

    async def _complete(self, request: dict[str, Any]) -> dict[str, Any]:
        body, task, step = answer(request, self.cache)
        calls = self.runs.setdefault(task.run, [])
        call = _Call(step, time.monotonic())
        first_attempt = all(earlier.step != step for earlier in calls)
        calls.append(call)
        if step == task.delay_at and first_attempt:
            await asyncio.sleep(task.delay_ms / 1000)
        usage = body["usage"]
        for bill in (
            self.bills.setdefault(body["model"], Bill()),
            self.run_bills.setdefault(task.run, Bill()),
        ):
            bill.add(
                usage["prompt_tokens"],
                usage["prompt_tokens_details"]["cached_tokens"],
                usage["completion_tokens"],
            )
        call.end = time.monotonic()
        return body


async def main(port: int) -> None:
    """Serve until killed."""
    state = FakeServer()
    server = await asyncio.start_server(state.serve, "127.0.0.1", port, backlog=4096)
    print(f"fake model server on port {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    asyncio.run(main(parser.parse_args().port))
