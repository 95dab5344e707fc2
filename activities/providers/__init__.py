"""Model providers: one provider-neutral interface, two wire protocols.

A run's ``model`` is ``provider:model``. The worker builds its providers once,
at startup, from its own environment with :func:`providers_from_env`, and
closes them on shutdown with :func:`close_providers`:

* ``scripted``: the offline scripted model (always present).
* ``openai``: Chat Completions at ``OPENAI_BASE_URL`` (default
  ``https://api.openai.com/v1``) with ``OPENAI_API_KEY``. Any compatible
  server works (vLLM, LM Studio, a gateway); with ``OPENAI_BASE_URL`` set,
  the key is optional (a local server needs none).
* ``anthropic``: Messages at ``ANTHROPIC_BASE_URL`` (default
  ``https://api.anthropic.com``; a trailing ``/v1`` is dropped) with
  ``ANTHROPIC_API_KEY``.
* ``ollama``: Chat Completions at ``OLLAMA_BASE_URL`` (default
  ``http://localhost:11434/v1``; ``/v1`` is added when missing), no key.
* Named endpoints from the ``ONWARD_ENDPOINTS`` file (see
  :mod:`onward.activities.providers.settings`), e.g. ``openrouter``; a name there
  replaces a built-in of the same name.

``openai`` and ``anthropic`` exist even without a key, so a run naming them
fails at once with ``ApiKeyMissing`` ("OPENAI_API_KEY is not set on the
worker") instead of "provider not configured" (``openai`` only at its
default address). Error types are listed in
:mod:`onward.activities.providers.errors`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

import httpx

from onward.activities.providers.anthropic_messages import AnthropicMessagesProvider
from onward.activities.providers.base import ModelProvider
from onward.activities.providers.openai_chat import OpenAIChatProvider
from onward.activities.providers.scripted import ScriptedModel
from onward.activities.providers.settings import EndpointConfig, ModelCallSettings, load_endpoints

__all__ = [
    "ANTHROPIC_DEFAULT_BASE_URL",
    "OLLAMA_DEFAULT_BASE_URL",
    "OPENAI_DEFAULT_BASE_URL",
    "AnthropicMessagesProvider",
    "ClosableProvider",
    "EndpointConfig",
    "ModelCallSettings",
    "ModelProvider",
    "OpenAIChatProvider",
    "ScriptedModel",
    "close_providers",
    "providers_from_env",
]

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
ANTHROPIC_DEFAULT_BASE_URL = "https://api.anthropic.com"
OLLAMA_DEFAULT_BASE_URL = "http://localhost:11434/v1"


@runtime_checkable
class ClosableProvider(Protocol):
    """A provider holding a connection pool, closed on worker shutdown."""

    async def aclose(self) -> None:
        """Release the provider's connections."""
        ...


def _ollama_url(value: str | None) -> str:
    url = (value or OLLAMA_DEFAULT_BASE_URL).rstrip("/")
    # Ollama's own docs give the server address (http://localhost:11434); its
    # OpenAI-compatible API lives under /v1.
    return url if url.endswith("/v1") else url + "/v1"


def _key(environ: Mapping[str, str], name: str | None) -> str | None:
    if name is None:
        return None
    # A key pasted from a file often ends in a newline, which no header accepts.
    key = (environ.get(name) or "").strip() or None
    # Checked here, at startup: httpx's complaint about a bad header quotes the
    # header, key included, in a form redaction cannot find.
    if key is not None and any(not ("!" <= c <= "~") for c in key):
        raise ValueError(
            f"{name} contains characters an HTTP header cannot carry (a line break or "
            "non-ASCII); set it to the key alone"
        )
    return key


_BASE_URL_VARIABLES = {
    "openai": "OPENAI_BASE_URL",
    "anthropic": "ANTHROPIC_BASE_URL",
    "ollama": "OLLAMA_BASE_URL",
}


def _checked_base_url(config: EndpointConfig, where: str) -> str:
    """The base URL to use; ``where`` names its source in the error."""
    url = config.base_url
    # Request paths are appended to the URL's path: a query or fragment would end up
    # before them (…/v1?api-version=x/chat/completions).
    if "?" in url or "#" in url:
        raise ValueError(
            f"{where}: a base URL cannot have a query or fragment ('?…', '#…'); "
            "give the address alone, e.g. https://host/v1"
        )
    if config.protocol == "anthropic":
        # The protocol's path already starts with v1/ (a base URL copied from
        # OpenAI-style docs often ends in /v1 too).
        url = url.rstrip("/")
        url = url.removesuffix("/v1") if urlsplit(url).path.endswith("/v1") else url
    return url


def _builtin_endpoints(environ: Mapping[str, str]) -> dict[str, EndpointConfig]:
    """``openai``, ``anthropic`` and ``ollama``, as if named in ``ONWARD_ENDPOINTS``."""
    return {
        "openai": EndpointConfig(
            protocol="openai",
            base_url=environ.get("OPENAI_BASE_URL") or OPENAI_DEFAULT_BASE_URL,
            api_key_env="OPENAI_API_KEY",
            max_tokens_field="max_completion_tokens",
        ),
        "anthropic": EndpointConfig(
            protocol="anthropic",
            base_url=environ.get("ANTHROPIC_BASE_URL") or ANTHROPIC_DEFAULT_BASE_URL,
            api_key_env="ANTHROPIC_API_KEY",
        ),
        "ollama": EndpointConfig(
            protocol="openai",
            base_url=_ollama_url(environ.get("OLLAMA_BASE_URL")),
            max_tokens_field="max_tokens",
        ),
    }


def _endpoint_provider(
    name: str,
    config: EndpointConfig,
    environ: Mapping[str, str],
    settings: ModelCallSettings,
    transport: httpx.AsyncBaseTransport | None,
    where: str,
    key_required: bool = True,
) -> ModelProvider:
    api_key = _key(environ, config.api_key_env)
    base_url = _checked_base_url(config, where)
    if config.protocol == "anthropic":
        return AnthropicMessagesProvider(
            name,
            base_url=base_url,
            api_key=api_key,
            api_key_env=config.api_key_env,
            settings=settings,
            headers=config.headers,
            transport=transport,
        )
    return OpenAIChatProvider(
        name,
        base_url=base_url,
        api_key=api_key,
        api_key_env=config.api_key_env,
        settings=settings,
        max_tokens_field=config.max_tokens_field,
        headers=config.headers,
        transport=transport,
        key_required=key_required,
    )


def providers_from_env(
    environ: Mapping[str, str], *, transport: httpx.AsyncBaseTransport | None = None
) -> dict[str, ModelProvider]:
    """Every provider this worker offers, configured from ``environ``.

    Args:
        environ: the worker's environment (``os.environ``), read only here.
        transport: an httpx transport for every provider instead of the
            network (tests).

    Raises:
        ValueError: a bad ``ONWARD_MODEL_*`` value, ``ONWARD_ENDPOINTS`` file,
            base URL (with a query or fragment) or key (with a line break or
            non-ASCII characters), so the worker refuses to start instead of
            failing runs.
    """
    settings = ModelCallSettings.from_env(environ)
    endpoints_file = environ.get("ONWARD_ENDPOINTS")
    named = load_endpoints(Path(endpoints_file)) if endpoints_file else {}
    # a named endpoint replaces a built-in of the same name
    endpoints = {**_builtin_endpoints(environ), **named}
    providers: dict[str, ModelProvider] = {"scripted": ScriptedModel()}
    for name, config in endpoints.items():
        where = (
            f"ONWARD_ENDPOINTS: endpoint {name!r}" if name in named else _BASE_URL_VARIABLES[name]
        )
        # A custom OPENAI_BASE_URL is often a local server (vLLM, LM Studio) without auth.
        keyless = name == "openai" and name not in named and bool(environ.get("OPENAI_BASE_URL"))
        providers[name] = _endpoint_provider(
            name, config, environ, settings, transport, where, key_required=not keyless
        )
    return providers


async def close_providers(providers: Iterable[object] | Mapping[str, object]) -> None:
    """Close every provider that holds connections (call on worker shutdown)."""
    items = providers.values() if isinstance(providers, Mapping) else providers
    for provider in items:
        if isinstance(provider, ClosableProvider):
            await provider.aclose()
