"""One JSON-over-HTTP connection pool to a model provider, shared by every call of a worker.

Calls go through one ``aiohttp.ClientSession`` per provider, created on its
first call (in the worker's event loop) and closed by :meth:`ProviderHttp.aclose`
when the worker shuts down. aiohttp rather than httpx because a model call is
the worker's most frequent I/O: on one POST of a model call and its answer,
aiohttp's client spends about a tenth of the CPU httpx's async client does
(about 0.1 ms against 1 ms on loopback), which a worker running hundreds of
agents pays on every step (``make bench``). An httpx transport may be passed
instead (tests, or a custom transport): httpx then carries the calls.

Nothing here retries on its own: Temporal owns retries, so every failure
becomes one ``ApplicationError`` (see :mod:`onward.activities.providers.errors`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import ssl
import types
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

import aiohttp
import certifi
import httpx
from temporalio.exceptions import ApplicationError

from onward.activities.providers.errors import (
    BAD_PROVIDER_RESPONSE,
    INVALID_REQUEST,
    PROVIDER_CONNECTION_ERROR,
    PROVIDER_TIMEOUT,
    error_for_status,
    error_message_from_body,
    parse_retry_after,
    redact,
    retry_delay,
)
from onward.activities.providers.settings import ModelCallSettings

__all__ = ["CONNECT_RETRY_DELAY", "ProviderHttp"]

_SNIPPET_CHARS = 200
CONNECT_RETRY_DELAY = timedelta(seconds=1)
"""The wait between attempts when no connection could be made (8 attempts: about 7 s)."""

Failure = Literal[
    "connect_timeout", "timeout", "bad_url", "bad_header", "unreachable", "broken", "bad_answer"
]
"""What went wrong, whichever library raised it (see :meth:`ProviderHttp._failures`)."""

Failures = tuple[tuple[type[BaseException] | types.UnionType, Failure], ...]
"""A library's exceptions and the kind of failure each is, the first match counting."""


@dataclass(frozen=True)
class _Answer:
    """An HTTP answer: its status, headers (the library's, looked up in any case) and body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class _Streamed:
    """An HTTP answer whose body is still to come: read whole, or chunk by chunk."""

    status: int
    headers: Mapping[str, str]
    body: Callable[[], Awaitable[bytes]]
    chunks: Callable[[], AsyncIterator[bytes]]


class _Exchange(Protocol):
    """How requests reach the provider: aiohttp, or httpx with a given transport."""

    async def post(self, url: str, body: bytes) -> _Answer: ...

    def stream(
        self, url: str, body: bytes
    ) -> contextlib.AbstractAsyncContextManager[_Streamed]: ...

    async def aclose(self) -> None: ...


class ProviderHttp:
    """POSTs JSON to one provider and returns the decoded JSON answer.

    Args:
        provider: name used at the start of every error message.
        base_url: the provider's base URL; request paths are relative to it.
        headers: sent with every request (auth headers included).
        secrets: texts never to show in an error message (the API key).
        key_env: the variable holding the key, named in 401/403 hints.
        settings: timeouts and the Retry-After cap.
        transport: an httpx transport to send through instead of aiohttp (tests).
    """

    def __init__(
        self,
        provider: str,
        base_url: str,
        *,
        headers: Mapping[str, str],
        secrets: tuple[str, ...],
        key_env: str | None,
        settings: ModelCallSettings,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.provider = provider
        # Messages show the URL without user:password, and never the password.
        self.base_url, credentials = _split_credentials(base_url)
        self._shown_url = self.base_url
        password = urlsplit(base_url).password or ""
        self._secrets = tuple(s for s in (*secrets, password, unquote(password)) if s)
        self._key_env = key_env
        self._settings = settings
        # Names in lower case, so one given in any case replaces ours (HTTP ignores case).
        self._headers = {name.lower(): value for name, value in headers.items()}
        self._headers.setdefault("content-type", "application/json")
        if credentials is not None:
            # user:password in the URL is basic auth (replacing any other Authorization).
            self._headers["authorization"] = _basic_auth(credentials)
        self._carriable = all(_carriable(f"{k}{v}") for k, v in self._headers.items())
        self._transport = transport
        self._exchange: _Exchange | None = None
        self._failure_kinds = (_AiohttpExchange if transport is None else _HttpxExchange).failures

    def _connection(self) -> _Exchange:
        # Opened on first use, not at startup: a worker pays for the providers it calls.
        if self._exchange is None:
            if self._transport is not None:
                self._exchange = _HttpxExchange(self._headers, self._settings, self._transport)
            else:
                self._exchange = _AiohttpExchange(self._headers, self._settings)
        return self._exchange

    def _url(self, path: str) -> str:
        # As httpx joins a base URL and a path: one slash between them.
        return f"{self.base_url.rstrip('/')}/{path.lstrip('/')}"

    async def aclose(self) -> None:
        """Close the connection pool (on worker shutdown); a later call opens a new one."""
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            await exchange.aclose()

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets)

    @staticmethod
    def _body(payload: dict[str, Any]) -> bytes:
        # As httpx sends ``json=``: compact UTF-8, and NaN refused.
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return text.encode()

    async def post_json(self, path: str, payload: dict[str, Any], *, model: str) -> dict[str, Any]:
        """POST ``payload`` to ``path`` and return the JSON object answered.

        Raises:
            ApplicationError: for every failure, typed and marked retryable or
                not as described in :mod:`onward.activities.providers.errors`.
        """
        with self._failures():
            # The libraries' timeouts bound each read; this bounds the whole answer (a trickle).
            async with asyncio.timeout(self._settings.timeout_s):
                answer = await self._connection().post(self._url(path), self._body(payload))
        self._check(answer.status, answer.headers, answer.body, model)
        return self._decode(answer)

    @contextlib.contextmanager
    def _failures(self) -> Iterator[None]:
        """Turn what the HTTP library raises (and the whole-answer timeout) into typed errors."""
        if not self._carriable:
            # Not the header itself: it may be the key, in a form redaction cannot find.
            raise ApplicationError(
                f"{self.provider}: a request header has characters HTTP cannot carry; "
                "check the API key and the endpoint's headers on the worker",
                type=INVALID_REQUEST,
                non_retryable=True,
            )
        no_answer = (
            f"no answer within {self._settings.timeout_s:g} s "
            "(raise ONWARD_MODEL_TIMEOUT_S on the worker to wait longer)"
        )
        try:
            yield
        except Exception as err:
            kinds = self._failure_kinds
            kind = next((kind for raised, kind in kinds if isinstance(err, raised)), None)
            if kind is None and isinstance(err, TimeoutError):
                kind = "timeout"  # the whole-answer timeout
            if kind is None:
                raise
            raise self._error(kind, err, no_answer) from None

    def _error(self, kind: Failure, err: BaseException, no_answer: str) -> ApplicationError:
        name = type(err).__name__
        if kind in ("connect_timeout", "timeout"):
            what = no_answer
            if kind == "connect_timeout":
                what = f"could not connect within {self._settings.connect_timeout_s:g} s"
            return ApplicationError(f"{self.provider}: {what} ({name})", type=PROVIDER_TIMEOUT)
        if kind == "bad_url":
            return ApplicationError(
                f"{self.provider}: the base URL {self._redact(self._shown_url)!r} is not usable "
                f"({self._redact(str(err)) or name}); it must look like https://host/path",
                type=INVALID_REQUEST,
                non_retryable=True,
            )
        if kind == "bad_header":
            # Not str(err): it quotes the offending header, which may be the key.
            return ApplicationError(
                f"{self.provider}: a request header has characters HTTP cannot carry "
                f"({name}); check the API key and the endpoint's headers on the worker",
                type=INVALID_REQUEST,
                non_retryable=True,
            )
        if kind in ("unreachable", "broken"):
            # No connection at all (refused, unknown host) is usually a server that is
            # not running or a wrong address: retried at a short fixed pace, so the run
            # fails in seconds instead of after minutes of backoff meant for rate limits.
            return ApplicationError(
                f"{self.provider}: cannot reach {self._redact(self._shown_url)}: "
                f"{self._redact(str(err)) or name}",
                type=PROVIDER_CONNECTION_ERROR,
                next_retry_delay=CONNECT_RETRY_DELAY if kind == "unreachable" else None,
            )
        # An undecodable body, say: worth another attempt.
        return ApplicationError(
            f"{self.provider}: {name}: {self._redact(str(err))}", type=BAD_PROVIDER_RESPONSE
        )

    def _check(self, status: int, headers: Mapping[str, str], content: bytes, model: str) -> None:
        """Raise the typed error of a redirect or an error status."""
        if 300 <= status < 400 and "location" in headers:
            # An http:// base URL on an https-only host, usually: a person must fix it.
            target = self._redact(headers["location"])
            raise ApplicationError(
                f"{self.provider}: {status} redirect to {target}; "
                "set the provider's base URL to the final address",
                type=INVALID_REQUEST,
                non_retryable=True,
            )
        if status >= 400:
            detail = error_message_from_body(content, self._secrets)
            raise error_for_status(
                self.provider,
                status,
                detail,
                model=model,
                key_env=self._key_env,
                delay=retry_delay(parse_retry_after(headers), self._settings.max_retry_delay_s),
            ) from None

    async def post_stream(
        self, path: str, payload: dict[str, Any], *, model: str
    ) -> AsyncIterator[dict[str, Any]]:
        """POST ``payload`` and yield the JSON object of each Server-Sent Event answered.

        The whole stream is bounded by the call timeout, like one answer;
        ``data: [DONE]`` ends it.

        Raises:
            ApplicationError: as :meth:`post_json`.
        """
        with self._failures():
            async with (
                asyncio.timeout(self._settings.timeout_s),
                self._connection().stream(self._url(path), self._body(payload)) as response,
            ):
                if response.status >= 300:
                    self._check(response.status, response.headers, await response.body(), model)
                async for line in _lines(response.chunks()):
                    if not line.startswith("data:"):
                        continue  # event names, comments, keep-alives
                    data = line.removeprefix("data:").strip()
                    if data == "[DONE]":
                        return
                    try:
                        event = json.loads(data)
                    except ValueError:
                        raise ApplicationError(
                            f"{self.provider}: a streamed event was not valid JSON: "
                            f"{self._redact(data)[:_SNIPPET_CHARS]!r}",
                            type=BAD_PROVIDER_RESPONSE,
                        ) from None
                    if isinstance(event, dict):
                        yield event

    def _decode(self, answer: _Answer) -> dict[str, Any]:
        try:
            data = json.loads(answer.body)
        except ValueError:
            # Redacted before the cut, so a key across the cut is not half shown.
            text = answer.body.decode(errors="replace")
            snippet = self._redact(text)[:_SNIPPET_CHARS]
            raise ApplicationError(
                f"{self.provider}: the answer (HTTP {answer.status}) was not valid JSON: "
                f"{snippet!r}",
                type=BAD_PROVIDER_RESPONSE,
            ) from None
        if not isinstance(data, dict):
            raise ApplicationError(
                f"{self.provider}: expected a JSON object, got {type(data).__name__}",
                type=BAD_PROVIDER_RESPONSE,
            )
        return data

    def bad_shape(self, what: str) -> ApplicationError:
        """The error for a JSON answer that is not shaped like the protocol (retried)."""
        return ApplicationError(
            f"{self.provider}: unexpected response shape: {self._redact(what)}",
            type=BAD_PROVIDER_RESPONSE,
        )


def _split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """``url`` without ``user:password@``, and that user and password (None: not given)."""
    parts = urlsplit(url)
    bare = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    if parts.username is None:
        return bare, None
    return bare, (unquote(parts.username), unquote(parts.password or ""))


def _basic_auth(credentials: tuple[str, str]) -> str:
    """The ``Authorization`` value of HTTP basic auth with this user and password."""
    return "Basic " + base64.b64encode(":".join(credentials).encode()).decode()


def _carriable(text: str) -> bool:
    """Whether HTTP/1.1 can carry ``text`` in a header: printable ASCII (and tabs) only."""
    return text.isascii() and all(c == "\t" or " " <= c < "\x7f" for c in text)


async def _lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """The lines of a byte stream (``\\n`` or ``\\r\\n`` ended), however it is chunked."""
    pending = b""
    async for chunk in chunks:
        pending += chunk
        *whole, pending = pending.split(b"\n")
        for line in whole:
            yield line.removesuffix(b"\r").decode(errors="replace")
    if pending:
        yield pending.removesuffix(b"\r").decode(errors="replace")


# -- aiohttp ------------------------------------------------------------------------


class _AiohttpExchange:
    """One ``aiohttp.ClientSession``, opened in the event loop of the first call."""

    failures: Failures = (
        (aiohttp.ConnectionTimeoutError, "connect_timeout"),
        (aiohttp.ServerTimeoutError, "timeout"),
        (aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError, "bad_url"),
        (aiohttp.ClientConnectorError, "unreachable"),
        # a dropped connection, a cut-off body, a malformed status line
        (aiohttp.ClientError, "broken"),
    )

    def __init__(self, headers: Mapping[str, str], settings: ModelCallSettings) -> None:
        self._headers = dict(headers)
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._routes: dict[str, _Route] = {}

    def _open(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop:
            # A session belongs to one event loop (a provider reused by another is rare:
            # tests, a worker restarted in-process).
            self._loop = loop
            self._routes.clear()
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    sock_connect=self._settings.connect_timeout_s,
                    sock_read=self._settings.timeout_s,
                ),
                # No cap of its own: the worker's --max-concurrent-activities bounds the
                # calls in flight, and each needs a connection (HTTP/1.1). The CA bundle
                # httpx trusts (certifi), whatever the system has.
                connector=aiohttp.TCPConnector(limit=0, ssl=_tls()),
                cookie_jar=aiohttp.DummyCookieJar(),
                # Not trust_env: per request it reads ~/.netrc and looks the proxy up
                # again, each in a thread (6% of a busy worker's CPU per step at 100
                # agents), and httpx sent no .netrc credentials. Each URL's proxy is
                # looked up once (_Route).
                trust_env=False,
            )
        return self._session

    def _route(self, url: str) -> _Route:
        route = self._routes.get(url)
        if route is None:
            route = self._routes[url] = _Route.from_environment(url, self._headers)
        return route

    async def post(self, url: str, body: bytes) -> _Answer:
        route = self._route(url)
        async with self._open().post(
            url, data=body, allow_redirects=False, **route.options
        ) as response:
            return _Answer(response.status, response.headers, await response.read())

    @contextlib.asynccontextmanager
    async def stream(self, url: str, body: bytes) -> AsyncIterator[_Streamed]:
        route = self._route(url)
        async with self._open().post(
            url, data=body, allow_redirects=False, **route.options
        ) as response:
            content = response.content
            yield _Streamed(response.status, response.headers, response.read, content.iter_any)

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


@dataclass(frozen=True)
class _Route:
    """How a session calls one URL: its headers, and the proxy it goes through (if any)."""

    options: dict[str, Any]
    """``headers``, ``proxy`` and ``proxy_headers`` of ``ClientSession.post``."""

    @classmethod
    def from_environment(cls, url: str, headers: Mapping[str, str]) -> _Route:
        """Through ``HTTP_PROXY``/``HTTPS_PROXY`` (or ``ALL_PROXY``) unless ``NO_PROXY`` names
        the host, in either case, as httpx read them.

        ``user:password@`` in the proxy's URL is its basic auth: sent with the request
        itself over plain HTTP, and over HTTPS on the CONNECT that opens the tunnel,
        which carries nothing else (never the provider's key).
        """
        target = urlsplit(url)
        proxies = urllib.request.getproxies()
        named = proxies.get(target.scheme) or proxies.get("all")
        if not named or (target.hostname and urllib.request.proxy_bypass(target.hostname)):
            return cls({"headers": headers})
        proxy, credentials = _split_credentials(named if "://" in named else f"http://{named}")
        auth = {"Proxy-Authorization": _basic_auth(credentials)} if credentials else {}
        if target.scheme == "https":
            return cls({"headers": headers, "proxy": proxy, "proxy_headers": auth})
        return cls({"headers": {**headers, **auth}, "proxy": proxy, "proxy_headers": {}})


@functools.cache
def _tls() -> ssl.SSLContext:
    """Certificate checks against certifi's CA bundle (loaded once per worker)."""
    return ssl.create_default_context(cafile=certifi.where())


# -- httpx (a given transport) ------------------------------------------------------


class _HttpxExchange:
    """An ``httpx.AsyncClient`` over a given transport."""

    failures: Failures = (
        (httpx.ConnectTimeout, "connect_timeout"),
        (httpx.TimeoutException, "timeout"),
        (httpx.UnsupportedProtocol | httpx.InvalidURL, "bad_url"),
        (httpx.LocalProtocolError | UnicodeEncodeError, "bad_header"),
        (httpx.ConnectError, "unreachable"),
        (httpx.TransportError, "broken"),
        (httpx.RequestError, "bad_answer"),  # an undecodable body, say
    )

    def __init__(
        self,
        headers: Mapping[str, str],
        settings: ModelCallSettings,
        transport: httpx.AsyncBaseTransport,
    ) -> None:
        self._client = httpx.AsyncClient(
            headers=dict(headers),
            timeout=httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s),
            transport=transport,
            follow_redirects=False,
        )

    async def post(self, url: str, body: bytes) -> _Answer:
        response = await self._client.post(url, content=body)
        return _Answer(response.status_code, response.headers, response.content)

    @contextlib.asynccontextmanager
    async def stream(self, url: str, body: bytes) -> AsyncIterator[_Streamed]:
        async with self._client.stream("POST", url, content=body) as response:
            status, headers = response.status_code, response.headers
            yield _Streamed(status, headers, response.aread, response.aiter_bytes)

    async def aclose(self) -> None:
        await self._client.aclose()
