"""How a failed model call becomes a Temporal ``ApplicationError``.

Providers never retry by themselves: they raise one ``ApplicationError`` whose
``type`` says what went wrong and whose ``non_retryable`` flag tells Temporal
whether another attempt can help. The model activity's retry policy does the
rest, and the activity gives up after ``ONWARD_MODEL_MAX_ATTEMPTS`` attempts.

Error types a user may see (``ApplicationError.type``):

Retried (another attempt may succeed):

* ``RateLimited``: HTTP 429. The wait before the next attempt is the
  provider's ``Retry-After`` (seconds or an HTTP date; OpenAI's
  ``retry-after-ms`` too; the longer of the two), capped at
  ``ONWARD_MODEL_MAX_RETRY_DELAY_S``;
  without the header, the retry policy's exponential backoff.
* ``ProviderUnavailable``: HTTP 5xx (Anthropic's 529 "overloaded" too) and
  409 Conflict; honours ``Retry-After`` like ``RateLimited``.
* ``ProviderTimeout``: no answer within ``ONWARD_MODEL_TIMEOUT_S`` (or no
  connection within the connect timeout), or HTTP 408.
* ``ProviderConnectionError``: the connection failed or broke. When no
  connection could be made at all (refused, unknown host), attempts come
  1 s apart instead of the backoff: a server that is not running fails the
  run in seconds.
* ``BadProviderResponse``: the answer was not JSON or not shaped like the
  protocol says (a flaky proxy, say).

Not retried (a person has to act):

* ``ApiKeyMissing``: the provider's key variable is not set on the worker.
* ``AuthenticationError``: HTTP 401 or 403: the key is wrong or lacks access.
* ``ModelNotFound``: HTTP 404: unknown model name, or a wrong base URL.
* ``InvalidRequest``: any other 4xx, e.g. 400 when the conversation is longer
  than the model's context. The provider's own message is included.

Any retried type becomes non-retryable on the last allowed attempt, with the
message ``gave up after N attempts: <last error>`` (see
:mod:`onward.activities.model`).

Messages never contain an API key: every text taken from a response is passed
through :func:`redact` first.
"""

from __future__ import annotations

import email.utils
import html
import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any

from temporalio.exceptions import ApplicationError

__all__ = [
    "API_KEY_MISSING",
    "AUTHENTICATION_ERROR",
    "BAD_PROVIDER_RESPONSE",
    "INVALID_REQUEST",
    "MODEL_NOT_FOUND",
    "PROVIDER_CONNECTION_ERROR",
    "PROVIDER_ERROR_TYPES",
    "PROVIDER_TIMEOUT",
    "PROVIDER_UNAVAILABLE",
    "RATE_LIMITED",
    "RETRYABLE_TYPES",
    "ResponseShapeError",
    "api_key_missing",
    "error_for_status",
    "error_message_from_body",
    "parse_retry_after",
    "redact",
    "retry_delay",
]

RATE_LIMITED = "RateLimited"
PROVIDER_UNAVAILABLE = "ProviderUnavailable"
PROVIDER_TIMEOUT = "ProviderTimeout"
PROVIDER_CONNECTION_ERROR = "ProviderConnectionError"
BAD_PROVIDER_RESPONSE = "BadProviderResponse"
API_KEY_MISSING = "ApiKeyMissing"
AUTHENTICATION_ERROR = "AuthenticationError"
MODEL_NOT_FOUND = "ModelNotFound"
INVALID_REQUEST = "InvalidRequest"

RETRYABLE_TYPES = frozenset(
    {
        RATE_LIMITED,
        PROVIDER_UNAVAILABLE,
        PROVIDER_TIMEOUT,
        PROVIDER_CONNECTION_ERROR,
        BAD_PROVIDER_RESPONSE,
    }
)
"""The error types Temporal retries."""

PROVIDER_ERROR_TYPES = RETRYABLE_TYPES | {
    API_KEY_MISSING,
    AUTHENTICATION_ERROR,
    MODEL_NOT_FOUND,
    INVALID_REQUEST,
}
"""Every type above: the provider (or its configuration) failed the call, not Onward.
A run with ``fallback_models`` tries the next model after one of these."""

_REDACTED = "[redacted]"
_MAX_DETAIL_CHARS = 500
"""Provider messages longer than this are cut: a whole HTML error page helps nobody."""


class ResponseShapeError(ValueError):
    """A provider's JSON answer is not shaped like its protocol (raised by the converters)."""


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every occurrence of a secret replaced, for messages and logs."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, _REDACTED)
    return text


def error_message_from_body(body: bytes, secrets: tuple[str, ...] = ()) -> str:
    """The provider's own explanation from an error body, redacted and shortened.

    Understands OpenAI (``{"error": {"message": ...}}``), Anthropic
    (``{"type": "error", "error": {"message": ...}}``) and the common
    ``{"message": ...}`` / ``{"detail": ...}`` shapes of compatible servers;
    anything else is shown as text.
    """
    text = body.decode("utf-8", errors="replace")
    try:
        data: Any = json.loads(text)
    except ValueError:
        data = None
    message: Any = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            message = error.get("message")
        elif isinstance(error, str):
            message = error
        message = message or data.get("message") or data.get("detail")
    if not isinstance(message, str):
        message = _html_text(text) if message is None else json.dumps(message)
    message = " ".join(redact(message, secrets).split())
    if len(message) > _MAX_DETAIL_CHARS:
        message = message[:_MAX_DETAIL_CHARS] + "…"
    return message or "(no error message in the response)"


_TAG = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]*>", re.IGNORECASE | re.DOTALL)


def _html_text(text: str) -> str:
    """The words of an HTML page (a proxy's or a server's error page), else ``text``."""
    if not text.lstrip()[:15].lower().startswith(("<!doctype html", "<html")):
        return text
    return html.unescape(_TAG.sub(" ", text))


def parse_retry_after(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds the provider asks us to wait, from ``retry-after-ms`` and ``Retry-After``.

    ``Retry-After`` may be a number of seconds or an HTTP date. When both
    headers are usable the longer wait wins: waiting less than either asks
    only earns another 429. Header names must be lower case. Returns None
    when there is no usable header.
    """
    waits = [
        wait
        for wait in (_retry_after_ms(headers.get("retry-after-ms")),
                     _retry_after(headers.get("retry-after"), now))
        if wait is not None
    ]  # fmt: skip
    return max(waits, default=None)


def _retry_after_ms(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw) / 1000
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _retry_after(raw: str | None, now: datetime | None) -> float | None:
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC in RFC 5322
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def retry_delay(retry_after_s: float | None, max_delay_s: float) -> timedelta | None:
    """The ``next_retry_delay`` to ask Temporal for: Retry-After, capped; None without one.

    None (and a zero Retry-After) leaves the wait to the retry policy's
    exponential backoff, so a provider saying "now" cannot cause a hot loop.
    """
    if retry_after_s is None or retry_after_s <= 0:
        return None
    return timedelta(seconds=min(retry_after_s, max_delay_s))


def api_key_missing(provider: str, key_env: str) -> ApplicationError:
    """The error for a call to a provider whose key variable is not set on the worker."""
    return ApplicationError(
        f"{provider}: {key_env} is not set on the worker; set it in the worker's "
        "environment and restart the worker",
        type=API_KEY_MISSING,
        non_retryable=True,
    )


def _status_text(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Overloaded" if status == 529 else f"{status} Error"


def error_for_status(
    provider: str,
    status: int,
    detail: str,
    *,
    model: str,
    key_env: str | None,
    delay: timedelta | None = None,
) -> ApplicationError:
    """The error for an HTTP error answer, with a hint a user can act on.

    Args:
        provider: name shown first in the message (``openai``, ``openrouter``...).
        status: the HTTP status code (400 or more).
        detail: the provider's explanation, already redacted.
        model: the model name sent, for the 404 hint.
        key_env: the variable holding the key, for the 401/403 hint.
        delay: ``next_retry_delay`` for retried statuses (from Retry-After).
    """
    head = f"{provider}: {_status_text(status)}: {detail}"
    key_hint = f"check {key_env} on the worker" if key_env else "check the endpoint's API key"
    if status == 429:
        wait = f" (retrying in {delay.total_seconds():g} s)" if delay else ""
        return ApplicationError(head + wait, type=RATE_LIMITED, next_retry_delay=delay)
    if status >= 500 or status == 409:
        return ApplicationError(head, type=PROVIDER_UNAVAILABLE, next_retry_delay=delay)
    if status == 408:
        return ApplicationError(head, type=PROVIDER_TIMEOUT, next_retry_delay=delay)
    if status == 401:
        return ApplicationError(
            f"{head} ({key_hint})", type=AUTHENTICATION_ERROR, non_retryable=True
        )
    if status == 403:
        return ApplicationError(
            f"{head} (the key has no access to this model or endpoint; {key_hint})",
            type=AUTHENTICATION_ERROR,
            non_retryable=True,
        )
    if status == 404:
        return ApplicationError(
            f"{head} (check the model name {model!r} and the provider's base URL)",
            type=MODEL_NOT_FOUND,
            non_retryable=True,
        )
    return ApplicationError(head, type=INVALID_REQUEST, non_retryable=True)
