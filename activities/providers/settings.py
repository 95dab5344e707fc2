"""Worker-side configuration of model calls: timeouts, retry limits, named endpoints.

Everything is read from the worker's environment once, at startup (see
:func:`onward.activities.providers.providers_from_env`), never at import and never
from workflow input, so keys and endpoints stay out of workflow history.

Variables:

* ``ONWARD_MODEL_TIMEOUT_S`` (default 120, below 590): longest wait for a
  whole answer, and for each read, write and pool wait of the HTTP client.
  It must end before the model activity's 10-minute start-to-close timeout.
* ``ONWARD_MODEL_CONNECT_TIMEOUT_S`` (default 10, never above the timeout).
* ``ONWARD_MODEL_MAX_RETRY_DELAY_S`` (default 300): cap on a ``Retry-After``.
* ``ONWARD_MODEL_MAX_ATTEMPTS`` (default 8): attempts of one model call
  before the run fails; the only setting that decides it (runs take it from
  ``describe_worker`` into the model activity's retry policy).
* ``ONWARD_ENDPOINTS``: a JSON or TOML file of named endpoints, e.g.
  ``{"openrouter": {"protocol": "openai", "base_url":
  "https://openrouter.ai/api/v1", "api_key_env": "OPENROUTER_API_KEY"}}``
  makes ``openrouter:meta-llama/llama-3.1-8b-instruct`` work.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from onward.tuning import MAX_TUNING_VALUE

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_S",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_MAX_RETRY_DELAY_S",
    "DEFAULT_TIMEOUT_S",
    "MAX_TIMEOUT_S",
    "EndpointConfig",
    "ModelCallSettings",
    "load_endpoints",
    "read_settings_file",
]

DEFAULT_TIMEOUT_S = 120.0
"""A long answer from a large model takes a minute or two; longer usually means stuck."""
MAX_TIMEOUT_S = 590.0
"""ONWARD_MODEL_TIMEOUT_S must be below this: the model activity's start-to-close
timeout is 10 minutes, and a call should fail as ours (ProviderTimeout) before it."""
DEFAULT_CONNECT_TIMEOUT_S = 10.0
DEFAULT_MAX_RETRY_DELAY_S = 300.0
"""Same as the workflow retry policy's maximum interval (5 minutes)."""
DEFAULT_MAX_ATTEMPTS = 8
"""Attempts of one model call unless ``ONWARD_MODEL_MAX_ATTEMPTS`` says otherwise."""
_ENDPOINT_NAME = re.compile(r"[a-z][a-z0-9_-]*")
"""What a model string's provider part may be (``openrouter``, ``claude-proxy``)."""


def _number(
    environ: Mapping[str, str], name: str, default: float, unit: str = "a number of seconds"
) -> float:
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected {unit}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}={raw!r}: must be greater than 0")
    return value


@dataclass(frozen=True)
class ModelCallSettings:
    """Timeouts and retry limits of every model call this worker makes."""

    timeout_s: float = DEFAULT_TIMEOUT_S
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    max_retry_delay_s: float = DEFAULT_MAX_RETRY_DELAY_S
    max_attempts: int = DEFAULT_MAX_ATTEMPTS

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ModelCallSettings:
        """Read the ``ONWARD_MODEL_*`` variables; a bad value is an error naming it."""
        timeout = _number(environ, "ONWARD_MODEL_TIMEOUT_S", DEFAULT_TIMEOUT_S)
        if timeout >= MAX_TIMEOUT_S:
            raise ValueError(
                f"ONWARD_MODEL_TIMEOUT_S={timeout:g}: must be below {MAX_TIMEOUT_S:g} "
                "(the model activity's start-to-close timeout is 10 minutes)"
            )
        connect = _number(environ, "ONWARD_MODEL_CONNECT_TIMEOUT_S", DEFAULT_CONNECT_TIMEOUT_S)
        attempts = _number(
            environ, "ONWARD_MODEL_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS, "a whole number"
        )
        if attempts != int(attempts):
            raise ValueError(f"ONWARD_MODEL_MAX_ATTEMPTS={attempts:g}: expected a whole number")
        if attempts > MAX_TUNING_VALUE:
            # A retry policy's maximum_attempts is an int32: more fails every workflow task.
            raise ValueError(f"ONWARD_MODEL_MAX_ATTEMPTS={attempts:g}: at most {MAX_TUNING_VALUE}")
        return cls(
            timeout_s=timeout,
            connect_timeout_s=min(connect, timeout),
            max_retry_delay_s=_number(
                environ, "ONWARD_MODEL_MAX_RETRY_DELAY_S", DEFAULT_MAX_RETRY_DELAY_S
            ),
            max_attempts=int(attempts),
        )


class EndpointConfig(BaseModel):
    """One named endpoint of the ``ONWARD_ENDPOINTS`` file."""

    model_config = ConfigDict(extra="forbid")

    protocol: Literal["openai", "anthropic"]
    base_url: str = Field(min_length=1)
    api_key_env: str | None = Field(
        default=None, description="variable holding the key; None: send no key (local servers)"
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="extra, non-secret headers (OpenRouter's X-Title...)"
    )
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = Field(
        default="max_tokens",
        description="openai protocol only: the field max_output_tokens is sent as",
    )


def read_settings_file(path: Path, variable: str, what: str) -> dict[str, Any]:
    """The entries of a worker's JSON or TOML settings file (``.toml`` by suffix), but
    its ``_`` keys ("_comment", as in pricing.json).

    Raises:
        ValueError: the file is missing, unreadable or no mapping (of ``what``); the
            message names ``variable`` and the file, so the worker stops at its start.
    """
    try:
        text = path.read_text(encoding="utf-8")
        raw = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (OSError, ValueError) as err:
        raise ValueError(f"{variable}: cannot read {path}: {err}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{variable}: {path} must map {what}")
    return {name: value for name, value in raw.items() if not name.startswith("_")}


def load_endpoints(path: Path) -> dict[str, EndpointConfig]:
    """Read a named-endpoints file (``.toml`` by suffix, JSON otherwise).

    Raises:
        ValueError: the file is missing, unreadable or invalid; the message
            names the file and the endpoint, so the worker fails at startup.
    """
    raw = read_settings_file(path, "ONWARD_ENDPOINTS", "endpoint names to settings")
    endpoints: dict[str, EndpointConfig] = {}
    for name, config in raw.items():
        if name == "scripted" or not _ENDPOINT_NAME.fullmatch(name):
            raise ValueError(
                f"ONWARD_ENDPOINTS: {path}: {name!r} cannot name an endpoint "
                "(lower-case letters, digits, '-' and '_', not 'scripted')"
            )
        try:
            endpoints[name] = EndpointConfig.model_validate(config)
        except ValidationError as err:
            raise ValueError(f"ONWARD_ENDPOINTS: {path}: endpoint {name!r}: {err}") from None
    return endpoints
