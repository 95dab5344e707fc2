"""Streamed provider calls against real local SSE servers: the same answer, errors typed.

No Temporal server here: each test calls a provider's ``stream`` and checks
the pieces it was given, the answer, and what was raised.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from provider_servers import (
    ANTHROPIC_PATH,
    OPENAI_PATH,
    FakeProvider,
    Reply,
    anthropic_message,
    anthropic_stream,
    openai_completion,
    openai_stream,
)
from temporalio.exceptions import ApplicationError

from onward.activities.providers import close_providers, providers_from_env
from onward.activities.providers.errors import BAD_PROVIDER_RESPONSE, INVALID_REQUEST, RATE_LIMITED
from onward.activities.providers.http_provider import HttpModelProvider
from onward.contracts import Message, ModelRequest, ToolSpec

SECRET = "sk-test-secret-0123456789"
CALC = ToolSpec(
    name="calculator",
    description="Arithmetic.",
    parameters={"type": "object", "properties": {"expression": {"type": "string"}}},
)
PIECES = ["Hel", "lo, ", "wor", "ld"]
CALL = ("call_1", "calculator", {"expression": "6*7"})


def request(model: str) -> ModelRequest:
    return ModelRequest(
        model=model, messages=[Message(role="user", content="Hi")], tools=[CALC], step=3
    )


@pytest_asyncio.fixture(params=["openai", "anthropic"])
async def served(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[str, FakeProvider, HttpModelProvider]]:
    protocol: str = request.param
    path = OPENAI_PATH if protocol == "openai" else ANTHROPIC_PATH
    async with FakeProvider(path) as server:
        environ = (
            {"OPENAI_BASE_URL": f"{server.url}/v1", "OPENAI_API_KEY": SECRET}
            if protocol == "openai"
            else {"ANTHROPIC_BASE_URL": server.url, "ANTHROPIC_API_KEY": SECRET}
        )
        providers = providers_from_env(environ)
        provider = providers[protocol]
        assert isinstance(provider, HttpModelProvider)
        try:
            yield protocol, server, provider
        finally:
            await close_providers(providers)


def model_of(protocol: str) -> str:
    return "openai:gpt-4o-mini" if protocol == "openai" else "anthropic:claude-3-5-haiku-latest"


async def test_a_streamed_answer_equals_the_plain_one(
    served: tuple[str, FakeProvider, HttpModelProvider],
) -> None:
    protocol, server, provider = served
    if protocol == "openai":
        events = openai_stream(PIECES, [CALL], usage=(12, 4))
        plain = openai_completion("".join(PIECES), [CALL], usage=(12, 4))
    else:
        events = anthropic_stream(PIECES, [CALL], usage=(12, 4))
        plain = anthropic_message("".join(PIECES), [CALL], usage=(12, 4))
    server.script(Reply(events=events, event_gap_s=0.01), plain)
    got: list[str] = []
    streamed = await provider.stream(request(model_of(protocol)), got.append)
    whole = await provider.complete(request(model_of(protocol)))

    assert got == PIECES
    assert streamed == whole
    assert streamed.text == "Hello, world"
    assert [(c.name, c.arguments) for c in streamed.tool_calls] == [("calculator", CALL[2])]
    assert (streamed.usage.input_tokens, streamed.usage.output_tokens) == (12, 4)
    assert streamed.finish_reason == "tool_calls"
    first, second = (sent.json for sent in server.requests)
    assert first["stream"] is True and "stream" not in second
    assert first == {**second, **first}  # the same body, plus the stream fields


async def test_stream_errors_are_typed_like_plain_calls(
    served: tuple[str, FakeProvider, HttpModelProvider],
) -> None:
    protocol, server, provider = served
    limited = {"error": {"message": f"slow down {SECRET}"}}
    server.script(
        Reply(429, limited, headers={"retry-after": "2"}),
        Reply(400, {"error": {"message": "bad request"}}),
        Reply(events=[{"type": "error", "error": {"type": "overloaded_error"}}, {"error": {}}]),
        Reply(body=b"", events=[]),
    )
    model = model_of(protocol)
    caught = []
    for _ in range(4):
        with pytest.raises(ApplicationError) as failure:
            await provider.stream(request(model), lambda _: None)
        assert SECRET not in str(failure.value)
        caught.append(failure.value)
    rate, bad, reported, empty = caught
    assert rate.type == RATE_LIMITED and not rate.non_retryable
    assert rate.next_retry_delay is not None and rate.next_retry_delay.total_seconds() == 2
    assert bad.type == INVALID_REQUEST and bad.non_retryable
    assert reported.type == BAD_PROVIDER_RESPONSE and "error" in reported.message
    assert empty.type == BAD_PROVIDER_RESPONSE  # a stream with no answer in it is retried


async def test_a_streamed_answer_reports_cached_prompt_tokens(
    served: tuple[str, FakeProvider, HttpModelProvider],
) -> None:
    protocol, server, provider = served
    if protocol == "openai":
        events = openai_stream(PIECES, usage=(40, 4))
        events[-1]["usage"]["prompt_tokens_details"] = {"cached_tokens": 32}
    else:
        events = anthropic_stream(PIECES, usage=(8, 4))
        events[0]["message"]["usage"]["cache_read_input_tokens"] = 32
    server.script(Reply(events=events))
    response = await provider.stream(request(model_of(protocol)), lambda _: None)
    assert response.usage.cached_input_tokens == 32
    assert response.usage.output_tokens == 4


async def test_an_anthropic_message_delta_with_null_counts_keeps_the_start_counts() -> None:
    """``message_delta`` usage is cumulative, and its input-side counts may be null (the
    SDK's ``MessageDeltaUsage`` has them optional; gateways send them so): null says
    nothing, and must not erase what ``message_start`` reported, which a cost is made of."""
    events = anthropic_stream(PIECES, usage=(8, 4))
    events[0]["message"]["usage"].update(
        cache_creation_input_tokens=100, cache_read_input_tokens=2_000
    )
    events[-2]["usage"].update(
        input_tokens=None, cache_creation_input_tokens=None, cache_read_input_tokens=None
    )
    async with FakeProvider(ANTHROPIC_PATH) as server:
        server.script(Reply(events=events))
        providers = providers_from_env({"ANTHROPIC_BASE_URL": server.url, "ANTHROPIC_API_KEY": "k"})
        provider = providers["anthropic"]
        assert isinstance(provider, HttpModelProvider)
        try:
            response = await provider.stream(request(model_of("anthropic")), lambda _: None)
        finally:
            await close_providers(providers)
    assert response.usage.input_tokens == 8 + 100 + 2_000
    assert (response.usage.cached_input_tokens, response.usage.cache_write_tokens) == (2_000, 100)
    assert response.usage.output_tokens == 4


async def test_a_streamed_tool_call_cut_off_mid_arguments_is_reported_not_retried() -> None:
    """Cut off by max_tokens mid-arguments, as the real API does on every attempt: the
    call gets its text as ``_raw`` (the tool's error for the model), as a plain answer's
    would, instead of a retried bad response."""
    events = anthropic_stream(PIECES, [CALL])
    deltas = [e for e in events if e.get("delta", {}).get("type") == "input_json_delta"]
    deltas[-1]["delta"]["partial_json"] = ""  # the second half never came
    cut = deltas[0]["delta"]["partial_json"]
    for event in events:
        if event["type"] == "message_delta":
            event["delta"]["stop_reason"] = "max_tokens"
    async with FakeProvider(ANTHROPIC_PATH) as server:
        providers = providers_from_env(
            {"ANTHROPIC_BASE_URL": server.url, "ANTHROPIC_API_KEY": SECRET}
        )
        provider = providers["anthropic"]
        assert isinstance(provider, HttpModelProvider)
        try:
            server.script(Reply(events=events))
            answer = await provider.stream(request(model_of("anthropic")), lambda _: None)
        finally:
            await close_providers(providers)
    assert [(c.name, c.arguments) for c in answer.tool_calls] == [("calculator", {"_raw": cut})]


async def test_an_openai_stream_that_stops_before_its_finish_reason_is_retried() -> None:
    """Closed before its last chunks (no finish_reason, no usage, no [DONE]): a cut
    answer, retried as a bad response, not taken as complete and free."""
    events = openai_stream(PIECES)[:-2]
    async with FakeProvider(OPENAI_PATH) as server:
        providers = providers_from_env(
            {"OPENAI_BASE_URL": f"{server.url}/v1", "OPENAI_API_KEY": SECRET}
        )
        provider = providers["openai"]
        assert isinstance(provider, HttpModelProvider)
        try:
            server.script(Reply(events=events, done=False))
            with pytest.raises(ApplicationError) as cut:
                await provider.stream(request(model_of("openai")), lambda _: None)
        finally:
            await close_providers(providers)
    assert cut.value.type == BAD_PROVIDER_RESPONSE and not cut.value.non_retryable
    assert "finish_reason" in cut.value.message
