"""The bench's fake OpenAI-compatible server: the script it plays and what it bills.

Cost figures in bench/results rest on this arithmetic, so it is checked over
real HTTP on loopback, the way every system under test talks to it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest_asyncio

from bench.fake_openai import CACHE_BLOCK_TOKENS, CACHE_MIN_TOKENS, PRICE_PER_MTOK, FakeServer
from bench.workload import (
    NOTE_CHARS,
    PAGE_CHARS,
    READ_TOOL,
    TOOL_NAME,
    Task,
    note_for,
    page_for,
    record_result,
)


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[httpx.AsyncClient]:
    state = FakeServer()
    server = await asyncio.start_server(state.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        yield http


async def complete(http: httpx.AsyncClient, model: str, messages: list[dict[str, Any]]) -> Any:
    answer = await http.post("/v1/chat/completions", json={"model": model, "messages": messages})
    return answer.raise_for_status().json()


async def play(http: httpx.AsyncClient, model: str, task: Task) -> list[Any]:
    """Run the task as an agent would: send the conversation back with each tool result."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": task.prompt}]
    answers = []
    while True:
        answer = await complete(http, model, messages)
        answers.append(answer)
        message = answer["choices"][0]["message"]
        messages.append(message)
        if not message.get("tool_calls"):
            return answers
        call = message["tool_calls"][0]
        arguments = json.loads(call["function"]["arguments"])
        result = page_for(arguments["page"]) if "page" in arguments else None
        content = result or record_result(arguments["note"])
        messages.append({"role": "tool", "tool_call_id": call["id"], "content": content})


async def test_plays_the_task_then_answers(fake: httpx.AsyncClient) -> None:
    answers = await play(fake, "bench-a", Task("r1", steps=3))

    calls = [a["choices"][0]["message"].get("tool_calls") for a in answers]
    assert [c[0]["function"]["name"] if c else None for c in calls] == [TOOL_NAME] * 3 + [None]
    notes = [json.loads(c[0]["function"]["arguments"])["note"] for c in calls[:3] if c]
    assert notes == [note_for(0), note_for(1), note_for(2)]
    assert all(len(note) == NOTE_CHARS for note in notes)
    assert answers[-1]["choices"][0]["message"]["content"] == "done after 3 steps"


async def test_bills_cached_prefixes_like_openai(fake: httpx.AsyncClient) -> None:
    answers = await play(fake, "bench-a", Task("r2", steps=6))
    usage = [a["usage"] for a in answers]
    cached = [u["prompt_tokens_details"]["cached_tokens"] for u in usage]

    # A prompt under 1,024 tokens is never cached; once the conversation has grown,
    # each call finds the previous call's prompt as a prefix, in 128-token blocks.
    assert cached[0] == 0
    assert all(c == 0 or c >= CACHE_MIN_TOKENS for c in cached)
    assert all(c % CACHE_BLOCK_TOKENS == 0 for c in cached)
    assert cached[-1] > CACHE_MIN_TOKENS
    assert all(c <= u["prompt_tokens"] for c, u in zip(cached, usage, strict=True))
    # Each call's cached prefix ends within one block of the previous call's whole prompt.
    for before, now in itertools.pairwise(usage):
        if now["prompt_tokens_details"]["cached_tokens"]:
            missed = before["prompt_tokens"] - now["prompt_tokens_details"]["cached_tokens"]
            assert 0 <= missed <= CACHE_BLOCK_TOKENS

    ledger = (await fake.get("/bench/ledger")).json()["bench-a"]
    prompt = sum(u["prompt_tokens"] for u in usage)
    completion = sum(u["completion_tokens"] for u in usage)
    expected = (
        (prompt - sum(cached)) * PRICE_PER_MTOK["input"]
        + sum(cached) * PRICE_PER_MTOK["cached_input"]
        + completion * PRICE_PER_MTOK["output"]
    ) / 1e6
    assert ledger["requests"] == 7
    assert ledger["cached_tokens"] == sum(cached)
    assert abs(ledger["cost_usd"] - expected) < 1e-12
    await play(fake, "bench-a", Task("r2b", steps=2))  # another run of the same system
    assert (await fake.get("/bench/bills/r2")).json() == ledger


async def test_caches_are_per_model_and_prefixes_differ_per_run(fake: httpx.AsyncClient) -> None:
    def long_prompt(run: str) -> list[dict[str, Any]]:
        return [{"role": "user", "content": Task(run, steps=0).prompt + " " + "x" * 8000}]

    async def cached(model: str, run: str) -> int:
        answer = await complete(fake, model, long_prompt(run))
        return int(answer["usage"]["prompt_tokens_details"]["cached_tokens"])

    assert await cached("bench-a", "r3") == 0
    assert await cached("bench-b", "r3") == 0  # another system: another cache
    assert await cached("bench-a", "r4") == 0  # another run: the prefix differs from its start
    assert await cached("bench-a", "r3") >= CACHE_MIN_TOKENS


async def test_records_each_call_of_a_run_and_delays_only_the_first_attempt(
    fake: httpx.AsyncClient,
) -> None:
    task = Task("r5", steps=1, delay_at=0, delay_ms=300)
    messages = [{"role": "user", "content": task.prompt}]
    await complete(fake, "bench-a", messages)
    await complete(fake, "bench-a", messages)  # a retry of the same step

    calls = (await fake.get("/bench/runs/r5")).json()
    assert [c["step"] for c in calls] == [0, 0]
    assert calls[0]["end"] - calls[0]["start"] >= 0.3
    assert calls[1]["end"] - calls[1]["start"] < 0.3


async def test_the_read_task_answer_depends_on_the_pages_the_model_was_sent(
    fake: httpx.AsyncClient,
) -> None:
    task = Task("r6", steps=3, kind="read")
    answers = await play(fake, "bench-a", task)
    calls = [a["choices"][0]["message"].get("tool_calls") for a in answers]
    assert [json.loads(c[0]["function"]["arguments"]) for c in calls[:3] if c] == [
        {"page": 1},
        {"page": 2},
        {"page": 3},
    ]
    assert {c[0]["function"]["name"] for c in calls[:3] if c} == {READ_TOOL}
    assert len(page_for(1)) == PAGE_CHARS
    assert answers[-1]["choices"][0]["message"]["content"] == task.answer

    def conversation(results: list[str]) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = [{"role": "user", "content": task.prompt}]
        for number, content in enumerate(results):
            function = {"name": READ_TOOL, "arguments": "{}"}
            call = {"id": f"c{number}", "type": "function", "function": function}
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
            messages.append({"role": "tool", "tool_call_id": f"c{number}", "content": content})
        return messages

    async def final(results: list[str]) -> str:
        answer = await complete(fake, "bench-b", conversation(results))
        return str(answer["choices"][0]["message"]["content"])

    # Older pages sent as placeholders: the same answer. The last page lost: another.
    assert await final(["[cleared]", "[cleared]", page_for(3)]) == task.answer
    assert await final([page_for(1), page_for(2), "[cleared]"]) != task.answer
    assert await final([page_for(1), page_for(3)]) != task.answer
