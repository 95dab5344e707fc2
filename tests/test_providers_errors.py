"""Failure mapping and configuration, as plain functions: no server, no network."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from onward.activities.providers import (
    AnthropicMessagesProvider,
    OpenAIChatProvider,
    ScriptedModel,
    close_providers,
    providers_from_env,
)
from onward.activities.providers.errors import (
    AUTHENTICATION_ERROR,
    INVALID_REQUEST,
    MODEL_NOT_FOUND,
    PROVIDER_TIMEOUT,
    PROVIDER_UNAVAILABLE,
    RATE_LIMITED,
    RETRYABLE_TYPES,
    error_for_status,
    error_message_from_body,
    parse_retry_after,
    redact,
    retry_delay,
)
from onward.activities.providers.settings import ModelCallSettings, load_endpoints

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)

# -- Retry-After ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "1"}, 1.0),
        ({"retry-after": " 2.5 "}, 2.5),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after": "Thu, 02 Jan 2025 03:04:35 GMT"}, 30.0),
        ({"retry-after": "Thu, 02 Jan 2025 03:04:35 -0000"}, 30.0),
        ({"retry-after": "Thu, 02 Jan 2025 03:00:00 GMT"}, 0.0),  # already past
        ({"retry-after-ms": "1500", "retry-after": "1"}, 1.5),  # the longer wait wins
        ({"retry-after-ms": "500", "retry-after": "30"}, 30.0),
        ({"retry-after-ms": "soon", "retry-after": "9"}, 9.0),
        ({"retry-after": "-3"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "tomorrow-ish"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers, now=NOW) == expected


def test_retry_delay_is_capped_and_zero_means_backoff() -> None:
    assert retry_delay(1.0, 300) == timedelta(seconds=1)
    assert retry_delay(3600.0, 300) == timedelta(seconds=300)
    assert retry_delay(0.0, 300) is None
    assert retry_delay(None, 300) is None


# -- status mapping -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_type", "retried"),
    [
        (429, RATE_LIMITED, True),
        (500, PROVIDER_UNAVAILABLE, True),
        (502, PROVIDER_UNAVAILABLE, True),
        (503, PROVIDER_UNAVAILABLE, True),
        (529, PROVIDER_UNAVAILABLE, True),
        (409, PROVIDER_UNAVAILABLE, True),
        (408, PROVIDER_TIMEOUT, True),
        (400, INVALID_REQUEST, False),
        (401, AUTHENTICATION_ERROR, False),
        (403, AUTHENTICATION_ERROR, False),
        (404, MODEL_NOT_FOUND, False),
        (413, INVALID_REQUEST, False),
        (422, INVALID_REQUEST, False),
    ],
)
def test_status_mapping(status: int, error_type: str, retried: bool) -> None:
    err = error_for_status("openai", status, "detail", model="gpt-x", key_env="OPENAI_API_KEY")
    assert err.type == error_type
    assert err.non_retryable is not retried
    assert (error_type in RETRYABLE_TYPES) is retried
    assert err.message.startswith(f"openai: {status} ")
    assert "detail" in err.message


def test_status_messages_say_what_to_do() -> None:
    unauthorized = error_for_status(
        "openai", 401, "Incorrect API key provided", model="m", key_env="OPENAI_API_KEY"
    )
    assert unauthorized.message == (
        "openai: 401 Unauthorized: Incorrect API key provided (check OPENAI_API_KEY on the worker)"
    )
    missing = error_for_status("anthropic", 404, "model: nope", model="nope", key_env=None)
    assert "check the model name 'nope'" in missing.message
    overloaded = error_for_status("anthropic", 529, "Overloaded", model="m", key_env=None)
    assert overloaded.message == "anthropic: 529 Overloaded: Overloaded"


def test_rate_limit_carries_the_delay() -> None:
    delay = timedelta(seconds=2)
    err = error_for_status("openai", 429, "slow down", model="m", key_env=None, delay=delay)
    assert err.next_retry_delay == delay
    assert err.message.endswith("(retrying in 2 s)")
    unavailable = error_for_status("openai", 503, "busy", model="m", key_env=None, delay=delay)
    assert unavailable.next_retry_delay == delay


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"error": {"message": "Rate limit reached", "type": "requests"}}', "Rate limit reached"),
        (b'{"type": "error", "error": {"type": "x", "message": "invalid x-api-key"}}',
         "invalid x-api-key"),
        (b'{"error": "model not found"}', "model not found"),
        (b'{"detail": "context too long"}', "context too long"),
        (b'{"message": "nope"}', "nope"),
        (b"<html>\n<h1>502 Bad Gateway</h1>\n</html>", "502 Bad Gateway"),  # a proxy's page
        (b"<!DOCTYPE HTML><html><head><title>Error</title><style>p{}</style></head>"
         b"<body><p>Message: Unsupported method (&#x27;POST&#x27;).</p></body></html>",
         "Error Message: Unsupported method ('POST')."),
        (b"a < b > c", "a < b > c"),  # text, not a page
        (b"", "(no error message in the response)"),
    ],
)  # fmt: skip
def test_error_message_from_body(body: bytes, message: str) -> None:
    assert error_message_from_body(body) == message


def test_error_message_is_redacted_and_short() -> None:
    body = json.dumps({"error": {"message": "Incorrect API key provided: sk-123abc."}}).encode()
    assert error_message_from_body(body, ("sk-123abc",)) == (
        "Incorrect API key provided: [redacted]."
    )
    long = error_message_from_body(b"x" * 5000)
    assert len(long) <= 501 and long.endswith("…")
    assert redact("a sk b sk", ("sk", "")) == "a [redacted] b [redacted]"


# -- configuration --------------------------------------------------------------------


def test_settings_defaults_and_values() -> None:
    assert ModelCallSettings.from_env({}) == ModelCallSettings(120.0, 10.0, 300.0, 8)
    settings = ModelCallSettings.from_env(
        {
            "ONWARD_MODEL_TIMEOUT_S": "2.5",
            "ONWARD_MODEL_MAX_RETRY_DELAY_S": "60",
            "ONWARD_MODEL_MAX_ATTEMPTS": "3",
        }
    )
    # the connect timeout never exceeds the whole timeout
    assert settings == ModelCallSettings(2.5, 2.5, 60.0, 3)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ONWARD_MODEL_TIMEOUT_S", "soon"),
        ("ONWARD_MODEL_TIMEOUT_S", "0"),
        ("ONWARD_MODEL_TIMEOUT_S", "590"),  # the activity's 10-minute timeout ends it first
        ("ONWARD_MODEL_MAX_ATTEMPTS", "2.5"),
        ("ONWARD_MODEL_MAX_ATTEMPTS", "10000000000"),  # past a retry policy's int32
        ("ONWARD_MODEL_MAX_ATTEMPTS", "many"),
        ("ONWARD_MODEL_MAX_RETRY_DELAY_S", "inf"),
    ],
)
def test_bad_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name) as refused:
        ModelCallSettings.from_env({name: value})
    assert "seconds" not in str(refused.value) or not name.endswith("ATTEMPTS")


def test_endpoints_from_json_and_toml(tmp_path: Path) -> None:
    as_json = tmp_path / "endpoints.json"
    as_json.write_text(
        json.dumps(
            {
                "_comment": "ignored",
                "openrouter": {
                    "protocol": "openai",
                    "base_url": "https://openrouter.ai/api/v1",
                    "api_key_env": "OPENROUTER_API_KEY",
                    "headers": {"X-Title": "Onward"},
                },
            }
        )
    )
    as_toml = tmp_path / "endpoints.toml"
    as_toml.write_text(
        '[claude-proxy]\nprotocol = "anthropic"\nbase_url = "http://127.0.0.1:9"\n'
        '[vllm]\nprotocol = "openai"\nbase_url = "http://gpu:8000/v1"\n'
        'max_tokens_field = "max_completion_tokens"\n'
    )
    from_json = load_endpoints(as_json)
    assert list(from_json) == ["openrouter"]
    assert from_json["openrouter"].api_key_env == "OPENROUTER_API_KEY"
    from_toml = load_endpoints(as_toml)
    assert from_toml["claude-proxy"].protocol == "anthropic"
    assert from_toml["claude-proxy"].api_key_env is None
    assert from_toml["vllm"].max_tokens_field == "max_completion_tokens"


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        ('{"x": {"protocol": "grpc", "base_url": "u"}}', "endpoint 'x'"),
        ('{"x": {"protocol": "openai", "base_url": "u", "api_key": "sk-1"}}', "endpoint 'x'"),
        ('{"scripted": {"protocol": "openai", "base_url": "u"}}', "cannot name an endpoint"),
        ('{"Open Router": {"protocol": "openai", "base_url": "u"}}', "cannot name an endpoint"),
        ('["openai"]', "must map endpoint names"),
        ("{not json", "cannot read"),
    ],
)
def test_bad_endpoints_file_is_a_startup_error(
    tmp_path: Path, content: str, complaint: str
) -> None:
    path = tmp_path / "endpoints.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=complaint):
        load_endpoints(path)
    with pytest.raises(ValueError, match="cannot read"):
        load_endpoints(tmp_path / "missing.json")


async def test_providers_from_env(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.json"
    path.write_text(
        json.dumps({"openrouter": {"protocol": "openai", "base_url": "http://127.0.0.1:9/v1"}})
    )
    providers = providers_from_env({"ONWARD_ENDPOINTS": str(path)})
    try:
        assert sorted(providers) == ["anthropic", "ollama", "openai", "openrouter", "scripted"]
        assert isinstance(providers["scripted"], ScriptedModel)
        assert isinstance(providers["openai"], OpenAIChatProvider)
        assert isinstance(providers["anthropic"], AnthropicMessagesProvider)
        assert isinstance(providers["openrouter"], OpenAIChatProvider)
    finally:
        await close_providers(providers)
    # closing twice, or a provider without connections, is harmless
    await close_providers(providers)
    await close_providers([ScriptedModel()])


@pytest.mark.parametrize("key", ["sk-new-0123456789\nsk-old-0123456789", "sk-0123456789\u00e9"])
def test_a_key_no_header_can_carry_refuses_the_start(key: str) -> None:
    with pytest.raises(ValueError, match="OPENAI_API_KEY contains characters") as caught:
        providers_from_env({"OPENAI_API_KEY": key})
    assert "0123456789" not in str(caught.value)


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"OPENAI_BASE_URL": "https://example.test/v1?api-version=1"}, "OPENAI_BASE_URL"),
        ({"ANTHROPIC_BASE_URL": "https://example.test#x"}, "ANTHROPIC_BASE_URL"),
        ({"OLLAMA_BASE_URL": "http://localhost:11434?"}, "OLLAMA_BASE_URL"),
    ],
)
def test_a_base_url_with_a_query_or_fragment_refuses_the_start(
    environ: dict[str, str], named: str
) -> None:
    with pytest.raises(ValueError, match=f"{named}: a base URL cannot have a query"):
        providers_from_env(environ)


def test_a_named_endpoint_with_a_query_refuses_the_start(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.json"
    config = {"protocol": "openai", "base_url": "https://gw.test/v1?api-version=2024-10-21"}
    path.write_text(json.dumps({"openai": config}))
    with pytest.raises(ValueError, match="ONWARD_ENDPOINTS: endpoint 'openai': a base URL"):
        providers_from_env({"ONWARD_ENDPOINTS": str(path)})
