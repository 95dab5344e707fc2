"""Providers against real local HTTP servers, and the model activity's attempt limit.

No Temporal server here: each test calls a provider (or the activity, in an
``ActivityEnvironment``) and checks what went over the wire and what was raised.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import socket
import time
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from provider_servers import (
    ANTHROPIC_PATH,
    OPENAI_PATH,
    FakeProvider,
    Reply,
    anthropic_message,
    openai_completion,
)
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.testing import ActivityEnvironment

from onward.activities.model import ModelActivities
from onward.activities.providers import (
    ModelProvider,
    OpenAIChatProvider,
    close_providers,
    providers_from_env,
)
from onward.activities.providers.errors import (
    API_KEY_MISSING,
    AUTHENTICATION_ERROR,
    BAD_PROVIDER_RESPONSE,
    INVALID_REQUEST,
    MODEL_NOT_FOUND,
    PROVIDER_CONNECTION_ERROR,
    PROVIDER_TIMEOUT,
    PROVIDER_UNAVAILABLE,
    RATE_LIMITED,
)
from onward.activities.providers.settings import ModelCallSettings
from onward.contracts import Message, ModelRequest, ModelResponse, ModelSettings, ToolSpec, Usage
from onward.pricing import PricingTable

SECRET = "sk-test-secret-0123456789"

CALC = ToolSpec(
    name="calculator",
    description="Arithmetic.",
    parameters={"type": "object", "properties": {"expression": {"type": "string"}}},
)


def request(model: str, **changes: Any) -> ModelRequest:
    fields: dict[str, Any] = {
        "model": model,
        "messages": [
            Message(role="system", content="Be brief."),
            Message(role="user", content="Hi"),
        ],
        "tools": [CALC],
        "step": 1,
    }
    fields.update(changes)
    return ModelRequest(**fields)


@pytest_asyncio.fixture
async def openai_server() -> AsyncIterator[FakeProvider]:
    async with FakeProvider(OPENAI_PATH) as server:
        yield server


@pytest_asyncio.fixture
async def anthropic_server() -> AsyncIterator[FakeProvider]:
    async with FakeProvider(ANTHROPIC_PATH) as server:
        yield server


class Providers:
    """``providers_from_env`` over an environment, closed at the end of the test."""

    def __init__(self) -> None:
        self.opened: list[dict[str, ModelProvider]] = []

    def __call__(self, environ: Mapping[str, str]) -> dict[str, ModelProvider]:
        providers = providers_from_env(environ)
        self.opened.append(providers)
        return providers


@pytest_asyncio.fixture
async def make_providers() -> AsyncIterator[Providers]:
    made = Providers()
    yield made
    for providers in made.opened:
        await close_providers(providers)


def openai_env(server: FakeProvider, **extra: str) -> dict[str, str]:
    return {"OPENAI_BASE_URL": f"{server.url}/v1", "OPENAI_API_KEY": SECRET, **extra}


def anthropic_env(server: FakeProvider, **extra: str) -> dict[str, str]:
    return {"ANTHROPIC_BASE_URL": server.url, "ANTHROPIC_API_KEY": SECRET, **extra}


def openai_provider(base_url: str, **options: Any) -> OpenAIChatProvider:
    """An OpenAI-protocol provider at ``base_url`` with the test key (close it after)."""
    options.setdefault("api_key", SECRET)
    return OpenAIChatProvider(
        "openai",
        base_url=base_url,
        api_key_env="OPENAI_API_KEY",
        settings=ModelCallSettings(),
        **options,
    )


async def failure(provider: ModelProvider, model_request: ModelRequest) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await provider.complete(model_request)
    assert SECRET not in str(caught.value)
    return caught.value


# -- what is sent ---------------------------------------------------------------------


async def test_openai_sends_key_model_tools_and_settings(
    openai_server: FakeProvider, make_providers: Providers
) -> None:
    openai_server.script(openai_completion("Hello", usage=(12, 3)))
    provider = make_providers(openai_env(openai_server))["openai"]
    settings = ModelSettings(temperature=0, max_output_tokens=64, seed=3)
    response = await provider.complete(request("openai:gpt-4o-mini", settings=settings))

    assert response.text == "Hello"
    assert response.usage == Usage(input_tokens=12, output_tokens=3)
    assert response.finish_reason == "stop"
    (sent,) = openai_server.requests
    assert sent.path == OPENAI_PATH
    assert sent.headers["authorization"] == f"Bearer {SECRET}"
    assert sent.headers["content-type"] == "application/json"
    body = sent.json
    assert body["model"] == "gpt-4o-mini"
    assert body["tools"][0]["function"]["name"] == "calculator"
    assert (body["temperature"], body["max_completion_tokens"], body["seed"]) == (0, 64, 3)


async def test_anthropic_sends_key_version_system_and_max_tokens(
    anthropic_server: FakeProvider, make_providers: Providers
) -> None:
    anthropic_server.script(anthropic_message("Hello", usage=(20, 4)))
    provider = make_providers(anthropic_env(anthropic_server))["anthropic"]
    response = await provider.complete(request("anthropic:claude-3-5-haiku-latest"))

    assert (response.text, response.finish_reason) == ("Hello", "stop")
    assert response.usage == Usage(input_tokens=20, output_tokens=4)
    (sent,) = anthropic_server.requests
    assert sent.path == ANTHROPIC_PATH
    assert sent.headers["x-api-key"] == SECRET
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    body = sent.json
    assert body["model"] == "claude-3-5-haiku-latest"
    assert body["system"] == [
        {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}
    ]
    assert body["max_tokens"] == 4096
    assert body["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral"}}],
        }
    ]
    assert body["tools"][0]["input_schema"] == CALC.parameters


async def test_openai_base_url_alone_needs_no_key(
    openai_server: FakeProvider, make_providers: Providers
) -> None:
    # A local vLLM or LM Studio: OPENAI_BASE_URL set, no OPENAI_API_KEY.
    openai_server.script(openai_completion("local"))
    provider = make_providers({"OPENAI_BASE_URL": f"{openai_server.url}/v1"})["openai"]
    response = await provider.complete(request("openai:qwen2.5-7b"))

    assert response.text == "local"
    (sent,) = openai_server.requests
    assert sent.path == OPENAI_PATH
    assert "authorization" not in sent.headers


async def test_ollama_needs_no_key_and_gets_v1_added(
    openai_server: FakeProvider, make_providers: Providers
) -> None:
    openai_server.script(openai_completion("local"))
    provider = make_providers({"OLLAMA_BASE_URL": openai_server.url})["ollama"]
    settings = ModelSettings(max_output_tokens=10)
    response = await provider.complete(request("ollama:llama3.2", settings=settings))

    assert response.text == "local"
    (sent,) = openai_server.requests
    assert sent.path == OPENAI_PATH
    assert "authorization" not in sent.headers
    assert sent.json["model"] == "llama3.2"
    assert sent.json["max_tokens"] == 10


async def test_named_endpoint_uses_its_key_variable_and_headers(
    tmp_path: Path, openai_server: FakeProvider, make_providers: Providers
) -> None:
    endpoints = tmp_path / "endpoints.json"
    endpoints.write_text(
        json.dumps(
            {
                "openrouter": {
                    "protocol": "openai",
                    "base_url": f"{openai_server.url}/v1",
                    "api_key_env": "OPENROUTER_API_KEY",
                    "headers": {"X-Title": "Onward"},
                }
            }
        )
    )
    environ = {"ONWARD_ENDPOINTS": str(endpoints), "OPENROUTER_API_KEY": f"{SECRET}\n"}
    openai_server.script(openai_completion("routed", model="meta-llama/llama-3.1-8b-instruct"))
    provider = make_providers(environ)["openrouter"]
    response = await provider.complete(request("openrouter:meta-llama/llama-3.1-8b-instruct"))

    assert response.model == "openrouter:meta-llama/llama-3.1-8b-instruct"
    (sent,) = openai_server.requests
    assert sent.headers["authorization"] == f"Bearer {SECRET}"  # stripped of its newline
    assert sent.headers["x-title"] == "Onward"
    assert sent.json["model"] == "meta-llama/llama-3.1-8b-instruct"


# -- failures -------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "variable"), [("openai", "OPENAI_API_KEY"),
                                                 ("anthropic", "ANTHROPIC_API_KEY")])  # fmt: skip
async def test_missing_key_fails_without_a_request(
    openai_server: FakeProvider, make_providers: Providers, name: str, variable: str
) -> None:
    # openai at its default address; a custom OPENAI_BASE_URL needs no key (below)
    environ = {"ANTHROPIC_BASE_URL": openai_server.url}
    provider = make_providers(environ)[name]
    err = await failure(provider, request(f"{name}:some-model"))
    assert err.type == API_KEY_MISSING and err.non_retryable
    assert err.message == (
        f"{name}: {variable} is not set on the worker; set it in the worker's environment "
        "and restart the worker"
    )
    assert openai_server.requests == []


async def test_openai_401_is_actionable_and_never_shows_the_key(
    openai_server: FakeProvider, make_providers: Providers
) -> None:
    echo = f"Incorrect API key provided: {SECRET}. You can find your API key at the dashboard."
    openai_server.script(
        Reply(401, {"error": {"message": echo, "type": "invalid_request_error"}}),
        Reply(401, body=f"unauthorized {SECRET}".encode()),
    )
    provider = make_providers(openai_env(openai_server))["openai"]
    err = await failure(provider, request("openai:gpt-4o-mini"))
    assert err.type == AUTHENTICATION_ERROR and err.non_retryable
    assert err.message == (
        "openai: 401 Unauthorized: Incorrect API key provided: [redacted]. You can find your "
        "API key at the dashboard. (check OPENAI_API_KEY on the worker)"
    )
    err = await failure(provider, request("openai:gpt-4o-mini"))
    assert err.message.startswith("openai: 401 Unauthorized: unauthorized [redacted]")


async def test_anthropic_errors_use_the_anthropic_error_body(
    anthropic_server: FakeProvider, make_providers: Providers
) -> None:
    def error(kind: str, message: str) -> dict[str, Any]:
        return {"type": "error", "error": {"type": kind, "message": message}}

    anthropic_server.script(
        Reply(401, error("authentication_error", "invalid x-api-key")),
        Reply(404, error("not_found_error", "model: claude-nope")),
        Reply(400, error("invalid_request_error", "prompt is too long: 210000 tokens > 200000")),
        Reply(529, error("overloaded_error", "Overloaded")),
    )
    provider = make_providers(anthropic_env(anthropic_server))["anthropic"]
    model_request = request("anthropic:claude-nope")
    err = await failure(provider, model_request)
    assert (err.type, err.non_retryable) == (AUTHENTICATION_ERROR, True)
    assert err.message == (
        "anthropic: 401 Unauthorized: invalid x-api-key (check ANTHROPIC_API_KEY on the worker)"
    )
    err = await failure(provider, model_request)
    assert (err.type, err.non_retryable) == (MODEL_NOT_FOUND, True)
    assert "model: claude-nope" in err.message and "check the model name" in err.message
    err = await failure(provider, model_request)
    assert (err.type, err.non_retryable) == (INVALID_REQUEST, True)
    assert err.message == ("anthropic: 400 Bad Request: prompt is too long: 210000 tokens > 200000")
    err = await failure(provider, model_request)
    assert (err.type, err.non_retryable) == (PROVIDER_UNAVAILABLE, False)


async def test_retry_after_becomes_the_next_retry_delay_capped(
    openai_server: FakeProvider, make_providers: Providers
) -> None:
    rate_limited = {"error": {"message": "Rate limit reached for gpt-4o-mini"}}
    openai_server.script(
        Reply(429, rate_limited, headers={"Retry-After": "2"}),
        Reply(429, rate_limited, headers={"Retry-After": "3600"}),
        Reply(503, {"error": {"message": "busy"}}, headers={"Retry-After": "1"}),
        Reply(429, rate_limited),
    )
    environ = openai_env(openai_server, ONWARD_MODEL_MAX_RETRY_DELAY_S="60")
    provider = make_providers(environ)["openai"]
    model_request = request("openai:gpt-4o-mini")

    err = await failure(provider, model_request)
    assert (err.type, err.non_retryable) == (RATE_LIMITED, False)
    assert err.next_retry_delay == timedelta(seconds=2)
    assert err.message == (
        "openai: 429 Too Many Requests: Rate limit reached for gpt-4o-mini (retrying in 2 s)"
    )
    assert (await failure(provider, model_request)).next_retry_delay == timedelta(seconds=60)
    unavailable = await failure(provider, model_request)
    assert (unavailable.type, unavailable.next_retry_delay) == (
        PROVIDER_UNAVAILABLE,
        timedelta(seconds=1),
    )
    # no header: the retry policy's exponential backoff decides
    assert (await failure(provider, model_request)).next_retry_delay is None


@pytest.mark.parametrize(
    ("reply", "complaint"),
    [
        (Reply(200, body=b"<html>502 Bad Gateway</html>"), "was not valid JSON"),
        (Reply(200, body=b'{"choices": ['), "was not valid JSON"),
        (Reply(200, json=[1, 2]), "expected a JSON object, got list"),
        (Reply(200, json={"object": "chat.completion"}), "unexpected response shape"),
    ],
)
async def test_malformed_answers_are_retried(
    openai_server: FakeProvider, make_providers: Providers, reply: Reply, complaint: str
) -> None:
    openai_server.script(reply)
    provider = make_providers(openai_env(openai_server))["openai"]
    err = await failure(provider, request("openai:gpt-4o-mini"))
    assert (err.type, err.non_retryable) == (BAD_PROVIDER_RESPONSE, False)
    assert complaint in err.message


async def test_a_hanging_server_times_out(
    openai_server: FakeProvider, make_providers: Providers
) -> None:
    openai_server.script(Reply(json=openai_completion("late"), delay_s=5))
    environ = openai_env(openai_server, ONWARD_MODEL_TIMEOUT_S="0.3")
    provider = make_providers(environ)["openai"]
    err = await failure(provider, request("openai:gpt-4o-mini"))
    assert (err.type, err.non_retryable) == (PROVIDER_TIMEOUT, False)
    # (ReadTimeout) or (TimeoutError): whichever of the two equal timeouts fires first
    assert err.message.startswith(
        "openai: no answer within 0.3 s (raise ONWARD_MODEL_TIMEOUT_S on the worker to wait "
        "longer) ("
    )


async def test_a_trickling_answer_times_out_as_a_whole(
    openai_server: FakeProvider, make_providers: Providers
) -> None:
    # every read arrives well within the timeout; the whole answer would take seconds
    openai_server.script(Reply(json=openai_completion("slow"), trickle_s=0.05))
    provider = make_providers(openai_env(openai_server, ONWARD_MODEL_TIMEOUT_S="0.5"))["openai"]
    started = time.monotonic()
    err = await failure(provider, request("openai:gpt-4o-mini"))
    assert time.monotonic() - started < 1.5
    assert (err.type, err.non_retryable) == (PROVIDER_TIMEOUT, False)
    assert err.message.startswith("openai: no answer within 0.5 s")


def free_port() -> int:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_credentials_in_the_base_url_are_never_shown(make_providers: Providers) -> None:
    port = free_port()
    environ = {"OPENAI_BASE_URL": f"http://alice:pw-{SECRET}@127.0.0.1:{port}/v1",
               "OPENAI_API_KEY": "k"}  # fmt: skip
    err = await failure(make_providers(environ)["openai"], request("openai:gpt-4o-mini"))
    assert err.type == PROVIDER_CONNECTION_ERROR
    assert err.message.startswith(f"openai: cannot reach http://127.0.0.1:{port}/v1: ")
    assert "alice" not in err.message


async def test_a_header_http_cannot_carry_is_a_configuration_error_without_the_key(
    openai_server: FakeProvider,
) -> None:
    # a key that bypassed the startup check (providers_from_env refuses it, see
    # test_providers_errors): h11's complaint would quote it, repr-escaped
    provider = openai_provider(f"{openai_server.url}/v1", api_key=f"{SECRET}\nsk-old-key")
    try:
        err = await failure(provider, request("openai:gpt-4o-mini"))
    finally:
        await provider.aclose()
    assert (err.type, err.non_retryable) == (INVALID_REQUEST, True)
    assert "sk-" not in err.message
    assert "characters HTTP cannot carry" in err.message
    assert openai_server.requests == []


async def test_a_non_json_answer_never_shows_part_of_the_key(
    openai_server: FakeProvider, make_providers: Providers
) -> None:
    # the key starts 10 characters before the snippet's cut
    openai_server.script(Reply(200, body=b"x" * 190 + SECRET.encode() + b" tail"))
    err = await failure(make_providers(openai_env(openai_server))["openai"],
                        request("openai:gpt-4o-mini"))  # fmt: skip
    assert err.type == BAD_PROVIDER_RESPONSE
    assert SECRET[:10] not in err.message
    assert "[redacted]" in err.message


async def test_endpoint_headers_replace_protocol_and_auth_headers_whatever_their_case(
    tmp_path: Path, anthropic_server: FakeProvider, make_providers: Providers
) -> None:
    endpoints = tmp_path / "endpoints.json"
    headers = {
        "Anthropic-Version": "2024-01-01",
        "X-API-KEY": "old",
        "Content-Type": "application/json; charset=utf-8",
    }
    config = {"protocol": "anthropic", "base_url": anthropic_server.url,
              "api_key_env": "PROXY_KEY", "headers": headers}  # fmt: skip
    endpoints.write_text(json.dumps({"proxy": config}))
    anthropic_server.script(anthropic_message("hi"))
    provider = make_providers({"ONWARD_ENDPOINTS": str(endpoints), "PROXY_KEY": SECRET})["proxy"]
    await provider.complete(request("proxy:claude-x"))

    (sent,) = anthropic_server.requests
    lines = [(name.lower(), value) for name, value in sent.header_lines]
    assert [value for name, value in lines if name == "x-api-key"] == [SECRET]
    assert [value for name, value in lines if name == "anthropic-version"] == ["2024-01-01"]
    assert [value for name, value in lines if name == "content-type"] == [
        "application/json; charset=utf-8"
    ]


async def test_an_anthropic_base_url_ending_in_v1_is_not_doubled(
    anthropic_server: FakeProvider, make_providers: Providers
) -> None:
    anthropic_server.script(anthropic_message("hi"))
    environ = anthropic_env(anthropic_server, ANTHROPIC_BASE_URL=f"{anthropic_server.url}/v1/")
    await make_providers(environ)["anthropic"].complete(request("anthropic:claude-x"))
    (sent,) = anthropic_server.requests
    assert sent.path == ANTHROPIC_PATH


async def test_connection_refused_is_retried(make_providers: Providers) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    provider = make_providers({"ANTHROPIC_BASE_URL": f"http://127.0.0.1:{port}",
                               "ANTHROPIC_API_KEY": SECRET})["anthropic"]  # fmt: skip
    err = await failure(provider, request("anthropic:claude-x"))
    assert (err.type, err.non_retryable) == (PROVIDER_CONNECTION_ERROR, False)
    assert err.message.startswith(f"anthropic: cannot reach http://127.0.0.1:{port}: ")
    # a fixed short pace, not the retry policy's backoff meant for rate limits
    assert err.next_retry_delay == timedelta(seconds=1)


async def test_a_redirect_is_a_configuration_error(
    openai_server: FakeProvider, make_providers: Providers
) -> None:
    openai_server.script(Reply(301, body=b"", headers={"Location": "https://example.test/v1"}))
    provider = make_providers(openai_env(openai_server))["openai"]
    err = await failure(provider, request("openai:gpt-4o-mini"))
    assert (err.type, err.non_retryable) == (INVALID_REQUEST, True)
    assert "redirect to https://example.test/v1" in err.message


async def test_credentials_in_the_base_url_are_sent_as_basic_auth(
    openai_server: FakeProvider, make_providers: Providers
) -> None:
    # A proxy in front of a local model, say: user:password replaces the key's header.
    openai_server.script(openai_completion("hi"))
    host = openai_server.url.removeprefix("http://")
    environ = {"OPENAI_BASE_URL": f"http://alice:p%40ss@{host}/v1", "OPENAI_API_KEY": SECRET}
    await make_providers(environ)["openai"].complete(request("openai:gpt-4o-mini"))
    (sent,) = openai_server.requests
    auth = [value for name, value in sent.header_lines if name.lower() == "authorization"]
    assert auth == ["Basic " + base64.b64encode(b"alice:p@ss").decode()]


async def test_an_answer_cut_off_mid_body_is_a_connection_error() -> None:
    async def cut_off(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        writer.write(b'Content-Length: 1000\r\n\r\n{"choices": [')
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(cut_off, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    provider = openai_provider(f"http://127.0.0.1:{port}/v1")
    try:
        err = await failure(provider, request("openai:gpt-4o-mini"))
    finally:
        await provider.aclose()
        server.close()
    assert (err.type, err.non_retryable) == (PROVIDER_CONNECTION_ERROR, False)
    assert err.message.startswith(f"openai: cannot reach http://127.0.0.1:{port}/v1: ")
    assert err.next_retry_delay is None  # it was reached: the retry policy's backoff


def basic(pair: bytes) -> bytes:
    return b"Basic " + base64.b64encode(pair)


@contextlib.asynccontextmanager
async def recording_proxy() -> AsyncIterator[tuple[int, list[list[bytes]]]]:
    """A local HTTP proxy answering every request itself; yields its port and each request's
    head (request line, then header lines)."""
    heads: list[list[bytes]] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")[:-2]
        heads.append(head)
        if head[0].startswith(b"CONNECT "):  # a tunnel to an HTTPS endpoint: refused
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        length = next(
            int(line.split(b":", 1)[1])
            for line in head
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        body = json.dumps(openai_completion("via the proxy")).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        writer.write(b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], heads
    finally:
        server.close()


def use_proxy(
    monkeypatch: pytest.MonkeyPatch, variable: str, url: str, no_proxy: str | None = None
) -> None:
    """Name ``url`` in ``variable`` (``HTTP_PROXY``, ``HTTPS_PROXY``), and only ``no_proxy``
    (if given) in ``NO_PROXY``."""
    monkeypatch.setenv(variable, url)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    if no_proxy is not None:
        monkeypatch.setenv("NO_PROXY", no_proxy)


async def test_model_calls_go_through_the_proxy_the_environment_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with recording_proxy() as (port, heads):
        # user:password in the proxy's URL is its basic auth, never sent on to the model.
        use_proxy(monkeypatch, "HTTP_PROXY", f"http://agent:p%40ss@127.0.0.1:{port}")
        provider = openai_provider("http://model.test/v1")
        try:
            first = await provider.complete(request("openai:gpt-4o-mini"))
            second = await provider.complete(request("openai:gpt-4o-mini"))
        finally:
            await provider.aclose()
    assert first.text == second.text == "via the proxy"
    assert [head[0] for head in heads] == [
        b"POST http://model.test/v1/chat/completions HTTP/1.1"
    ] * 2
    proxy_auth = basic(b"agent:p@ss")
    for head in heads:
        headers = {
            name.lower(): value.strip() for name, _, value in (h.partition(b":") for h in head[1:])
        }
        assert headers[b"proxy-authorization"] == proxy_auth
        assert headers[b"authorization"] == f"Bearer {SECRET}".encode()


@pytest.mark.parametrize("credentials", ["agent:secret@", ""])
async def test_the_tunnel_to_an_https_endpoint_carries_the_proxy_s_auth_and_never_the_key(
    credentials: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with recording_proxy() as (port, heads):
        use_proxy(monkeypatch, "HTTPS_PROXY", f"http://{credentials}127.0.0.1:{port}")
        provider = openai_provider("https://model.test/v1")
        try:
            await failure(provider, request("openai:gpt-4o-mini"))
        finally:
            await provider.aclose()
    [connect] = heads
    assert connect[0] == b"CONNECT model.test:443 HTTP/1.1"
    proxy_auth = [line for line in connect if line.lower().startswith(b"proxy-authorization:")]
    assert proxy_auth == (
        [b"Proxy-Authorization: " + basic(b"agent:secret")] if credentials else []
    )
    assert not any(SECRET.encode() in line for line in connect)


async def test_hosts_no_proxy_names_are_called_directly(
    openai_server: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    openai_server.script(openai_completion("directly"))
    async with recording_proxy() as (port, heads):
        use_proxy(monkeypatch, "HTTP_PROXY", f"http://127.0.0.1:{port}", "localhost,127.0.0.1")
        provider = openai_provider(f"{openai_server.url}/v1")
        try:
            response = await provider.complete(request("openai:gpt-4o-mini"))
        finally:
            await provider.aclose()
    assert response.text == "directly"
    assert heads == []
    assert len(openai_server.requests) == 1


async def test_an_httpx_transport_carries_the_calls_when_given() -> None:
    seen: list[httpx.Request] = []

    def answer(sent: httpx.Request) -> httpx.Response:
        seen.append(sent)
        if len(seen) == 1:
            return httpx.Response(200, json=openai_completion("over httpx"))
        if len(seen) == 2:
            return httpx.Response(429, headers={"Retry-After": "2"}, json={})
        raise httpx.ConnectError("refused", request=sent)

    provider = openai_provider("http://model.test/v1", transport=httpx.MockTransport(answer))
    try:
        response = await provider.complete(request("openai:gpt-4o-mini"))
        limited = await failure(provider, request("openai:gpt-4o-mini"))
        refused = await failure(provider, request("openai:gpt-4o-mini"))
    finally:
        await provider.aclose()
    assert response.text == "over httpx"
    assert str(seen[0].url) == "http://model.test/v1/chat/completions"
    assert seen[0].headers["authorization"] == f"Bearer {SECRET}"
    assert json.loads(seen[0].content)["model"] == "gpt-4o-mini"
    assert (limited.type, limited.next_retry_delay) == (RATE_LIMITED, timedelta(seconds=2))
    assert (refused.type, refused.next_retry_delay) == (
        PROVIDER_CONNECTION_ERROR,
        timedelta(seconds=1),
    )


# -- the activity's attempt limit -------------------------------------------------------


class Failing:
    """A provider failing every call with ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def complete(self, request: ModelRequest) -> ModelResponse:
        raise self.error


def activity_env(attempt: int, maximum_attempts: int = 0) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(
        env.info, attempt=attempt, retry_policy=RetryPolicy(maximum_attempts=maximum_attempts)
    )
    return env


async def call(activities: ModelActivities, env: ActivityEnvironment) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await env.run(activities.call_model, request("failing:m"))
    return caught.value


@pytest.mark.parametrize(
    ("attempt", "policy", "gives_up"),
    [
        (7, 8, False),
        (8, 8, True),
        (3, 3, True),  # the run's policy carries the worker's ONWARD_MODEL_MAX_ATTEMPTS
        (30, 0, False),  # an unlimited policy: Temporal keeps retrying
    ],
)
async def test_retryable_errors_give_up_on_the_last_attempt(
    attempt: int, policy: int, gives_up: bool
) -> None:
    limited = ApplicationError(
        "openai: 429 Too Many Requests: slow down", type=RATE_LIMITED,
        next_retry_delay=timedelta(seconds=1),
    )  # fmt: skip
    activities = ModelActivities({"failing": Failing(limited)}, PricingTable({}))
    err = await call(activities, activity_env(attempt, policy))
    assert err.type == RATE_LIMITED  # the cause stays visible to clients
    # expected errors: the SDK logs them without a traceback (the activity logs one line)
    assert err.category == ApplicationErrorCategory.BENIGN
    if gives_up:
        assert err.non_retryable
        assert err.message == (
            f"gave up after {attempt} attempts: openai: 429 Too Many Requests: slow down"
        )
    else:
        assert not err.non_retryable
        assert err.message == limited.message
        assert err.next_retry_delay == timedelta(seconds=1)


async def test_non_retryable_errors_pass_through_and_bugs_end_clearly() -> None:
    denied = ApplicationError("openai: 401", type=AUTHENTICATION_ERROR, non_retryable=True)
    activities = ModelActivities({"failing": Failing(denied)}, PricingTable({}))
    err = await call(activities, activity_env(1, 8))
    assert (err.message, err.type, err.non_retryable) == ("openai: 401", AUTHENTICATION_ERROR, True)

    activities = ModelActivities({"failing": Failing(KeyError("choices"))}, PricingTable({}))
    with pytest.raises(KeyError):  # retried by Temporal like any failure
        await activity_env(1).run(activities.call_model, request("failing:m"))
    err = await call(activities, activity_env(8, 8))
    assert err.non_retryable and err.type == "KeyError"
    assert err.message == "gave up after 8 attempts: KeyError: 'choices'"


async def test_a_base_url_without_scheme_is_a_configuration_error(
    make_providers: Providers,
) -> None:
    provider = make_providers({"OLLAMA_BASE_URL": "localhost:11434"})["ollama"]
    err = await failure(provider, request("ollama:llama3.2"))
    assert (err.type, err.non_retryable) == (INVALID_REQUEST, True)
    assert "the base URL 'localhost:11434/v1' is not usable" in err.message
