"""What the JSON-over-HTTP protocols share: the provider skeleton and an answer's common fields.

:class:`HttpModelProvider` holds one :class:`~onward.activities.providers.http.ProviderHttp`
connection and makes every call the same way: fail at once when the key is
missing, POST the protocol's request body, read the answer, and turn an
answer of the wrong shape into a retryable error. A protocol subclass only
says where to POST, how the key is sent, what the body is and how the answer
reads.

The helpers below read what both protocols' JSON has in common (text
content, token usage, the model that answered, the finish reason); they are
plain functions over the decoded JSON, like the protocols' own converters.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx

from onward.activities.providers.errors import ResponseShapeError, api_key_missing
from onward.activities.providers.http import ProviderHttp
from onward.activities.providers.settings import ModelCallSettings
from onward.activities.providers.streaming import AnswerFold, TextSink
from onward.contracts import ModelRequest, ModelResponse, Usage

__all__ = ["HttpModelProvider", "answered_model", "finish_reason", "read_usage", "text_of"]


class HttpModelProvider(ABC):
    """A model provider speaking one JSON-over-HTTP protocol to one base URL.

    Args:
        name: the provider name of ``name:model`` strings, shown in errors.
        base_url: the provider's base URL (:attr:`path` is appended).
        api_key: sent as the protocol's :meth:`auth_headers`; never shown in
            any message.
        api_key_env: the variable the key comes from. When set and the key is
            missing, every call fails non-retryably saying so; None: the
            endpoint needs no key.
        key_required: False: a missing key is not an error, the call is sent
            without one (``OPENAI_BASE_URL`` pointing at a local server).
        settings: timeouts and retry limits.
        headers: extra non-secret headers.
        transport: an httpx transport instead of the network (tests).
    """

    path: ClassVar[str]
    """Where calls are POSTed, relative to the base URL."""
    protocol_headers: ClassVar[Mapping[str, str]] = {}
    """Sent with every call; the endpoint's own ``headers`` may replace them."""
    stream_fields: ClassVar[Mapping[str, Any]] = {"stream": True}
    """Added to the body of a streamed call."""

    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        api_key: str | None,
        api_key_env: str | None,
        settings: ModelCallSettings,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        key_required: bool = True,
    ) -> None:
        self.name = name
        parts = urlsplit(base_url)
        self.server: tuple[str, int] | None = (
            (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
            if parts.hostname
            else None
        )
        """Where calls go, for spans (``server.address``, ``server.port``)."""
        self._api_key = api_key or None
        self._api_key_env = api_key_env
        self._key_required = key_required
        # httpx.Headers: a name replaces one differing only in case (X-API-KEY, x-api-key).
        all_headers = httpx.Headers(self.protocol_headers)
        all_headers.update(headers or {})
        if self._api_key:
            all_headers.update(self.auth_headers(self._api_key))
        self._http = ProviderHttp(
            name,
            base_url,
            headers=all_headers,
            secrets=(self._api_key or "",),
            key_env=api_key_env,
            settings=settings,
            transport=transport,
        )

    @abstractmethod
    def auth_headers(self, api_key: str) -> dict[str, str]:
        """The headers that carry ``api_key`` (they replace any of the same name)."""

    @abstractmethod
    def payload(self, request: ModelRequest, *, model: str) -> dict[str, Any]:
        """The JSON body of one call; ``model`` is the part after ``provider:``."""

    @abstractmethod
    def parse_response(self, data: Mapping[str, Any], request: ModelRequest) -> ModelResponse:
        """The answer to ``request`` as a ``ModelResponse``.

        Raises:
            ResponseShapeError: ``data`` is not shaped like the protocol's answer.
        """

    @abstractmethod
    def new_fold(self) -> AnswerFold:
        """A fold of this protocol's stream events into its plain answer."""

    @property
    def unusable(self) -> str | None:
        """Why every call would be refused here (its key variable is not set); None: usable."""
        if self._api_key_env and self._key_required and not self._api_key:
            return api_key_missing(self.name, self._api_key_env).message
        return None

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Make one call: POST the request's payload to :attr:`path` and parse the answer."""
        if self._api_key_env and self._key_required and not self._api_key:
            raise api_key_missing(self.name, self._api_key_env)
        model = request.model.partition(":")[2]
        payload = self.payload(request, model=model)
        data = await self._http.post_json(self.path, payload, model=model)
        return self._parsed(data, request)

    async def stream(self, request: ModelRequest, on_text: TextSink) -> ModelResponse:
        """Make one streamed call: ``on_text`` gets the text as it comes; the answer is
        the one :meth:`complete` would give."""
        if self._api_key_env and self._key_required and not self._api_key:
            raise api_key_missing(self.name, self._api_key_env)
        model = request.model.partition(":")[2]
        payload = {**self.payload(request, model=model), **self.stream_fields}
        fold = self.new_fold()
        try:
            async for event in self._http.post_stream(self.path, payload, model=model):
                if piece := fold.add(event):
                    on_text(piece)
            data = fold.answer()
        except ResponseShapeError as err:
            raise self._http.bad_shape(str(err)) from None
        return self._parsed(data, request)

    def _parsed(self, data: Mapping[str, Any], request: ModelRequest) -> ModelResponse:
        try:
            return self.parse_response(data, request)
        except ResponseShapeError as err:
            raise self._http.bad_shape(str(err)) from None

    async def aclose(self) -> None:
        """Close the HTTP connection pool (on worker shutdown)."""
        await self._http.aclose()


# -- reading answers ----------------------------------------------------------------


def text_of(content: Any, *, what: str = "content") -> str:
    """Text of a string, null, or a list of ``{"type": "text"}`` parts (other parts are skipped).

    A text part whose ``text`` is not a string counts as empty.

    Raises:
        ResponseShapeError: ``content`` is something else; ``what`` names it in the message.
    """
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            text if isinstance(text := part.get("text"), str) else ""
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    raise ResponseShapeError(f"{what} is a {type(content).__name__}")


def _tokens(usage: Mapping[str, Any], keys: Sequence[str]) -> int:
    return sum(value for key in keys if isinstance(value := usage.get(key), int) and value >= 0)


def _count_at(usage: Mapping[str, Any], path: Sequence[str]) -> int | None:
    """The count at ``path`` (nested keys) of ``usage``; None when absent or malformed."""
    value: Any = usage
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, int) and value >= 0 else None


def read_usage(
    data: Mapping[str, Any],
    *,
    input_keys: Sequence[str],
    output_keys: Sequence[str],
    cached_path: Sequence[str] = (),
    write_path: Sequence[str] = (),
) -> Usage:
    """Token usage from the answer's ``usage`` object.

    Each count is the sum of the fields named; a missing or malformed field
    counts 0, so an answer is never refused for it. An answer without any of
    them (or without ``usage``) gives a usage marked ``estimated``, for the
    model activity to estimate. ``cached_path`` and ``write_path`` lead to the
    prompt-cache reads and writes included in the input count (None when the
    answer has none).
    """
    usage = data.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    if not any(key in usage for key in (*input_keys, *output_keys)):
        return Usage(estimated=True)
    input_tokens = _tokens(usage, input_keys)
    cached = _count_at(usage, cached_path) if cached_path else None
    written = _count_at(usage, write_path) if write_path else None
    if cached is not None:
        cached = min(cached, input_tokens)
    if written is not None:
        written = min(written, input_tokens - (cached or 0))
    return Usage(
        input_tokens=input_tokens,
        output_tokens=_tokens(usage, output_keys),
        cached_input_tokens=cached,
        cache_write_tokens=written,
    )


def answered_model(data: Mapping[str, Any], *, provider: str, fallback_model: str) -> str:
    """``provider:model`` for the model the answer names, else ``fallback_model``."""
    reported = data.get("model")
    return f"{provider}:{reported}" if isinstance(reported, str) and reported else fallback_model


def finish_reason(reason: Any, renames: Mapping[str, str]) -> str | None:
    """The neutral finish reason: a string renamed by ``renames`` or kept; None if not a string."""
    return renames.get(reason, reason) if isinstance(reason, str) else None
