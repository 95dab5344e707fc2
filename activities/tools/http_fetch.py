"""The ``http_fetch`` tool: one HTTP(S) request, its answer as text a model can read.

Safety comes first, because the model chooses the URL:

* Only ``http`` and ``https``; no proxies from the environment (a proxy would
  make the address check meaningless).
* Every hop (the first request and each redirect, followed here by hand) is
  resolved, every resolved address is checked by :mod:`net_guard`, and the
  connection goes to a checked address with the original ``Host`` header and
  TLS server name. A name cannot resolve to something else between the check
  and the connection.
* Bounded work: one deadline for the whole fetch, at most ``max_bytes`` read
  from the network (and decompressed), at most ``max_redirects`` hops.

The allow-list is not read here: the worker reads ``ONWARD_HTTP_ALLOW`` at
startup and passes it to :func:`make_http_fetch`.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import httpx
from pydantic import BaseModel, Field

from onward.activities.tools.context import UncachedResult
from onward.activities.tools.http_body import body_text, read_body
from onward.activities.tools.net_guard import (
    ALLOW_ENV,
    AddressRefused,
    AllowList,
    IPAddress,
    Resolver,
    allowed_addresses,
    pinned_request,
    resolve,
)
from onward.activities.tools.registry import Tool, tool
from onward.errors import ToolError, ToolRetryableError

__all__ = [
    "HTTP_FETCH_TIMEOUT_S",
    "MAX_REDIRECTS",
    "MAX_RESPONSE_BYTES",
    "HttpFetchArgs",
    "Resolver",
    "TransportFactory",
    "make_http_fetch",
]

HTTP_FETCH_TIMEOUT_S = 20.0
"""Deadline of one whole fetch: name lookups, connections, redirects and reading."""

MAX_RESPONSE_BYTES = 1_000_000
"""Read at most this much of a body; the rest is never read (the model sees far less anyway)."""

MAX_REDIRECTS = 5

ACTIVITY_MARGIN_S = 10.0
"""The activity's own timeout exceeds the fetch deadline by this, so ours fires first."""

USER_AGENT = "onward-http-fetch/0.1"

Method = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
TransportFactory = Callable[[], httpx.AsyncBaseTransport]
"""A fresh transport per hop, so no connection is reused under another host's name."""

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_SET_HERE = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_CROSS_ORIGIN = frozenset({"accept", "accept-language", "content-type", "user-agent"})
"""The only request headers that follow a redirect to another origin."""
_ALLOW_HINT = f"; set {ALLOW_ENV} to allow it"


class HttpFetchArgs(BaseModel):
    """Arguments of ``http_fetch``."""

    url: str = Field(min_length=1, description="The http:// or https:// URL to fetch.")
    method: Method = Field(default="GET", description="HTTP method.")
    headers: dict[str, str] = Field(
        default_factory=dict,
        description='Extra request headers, e.g. {"Accept": "application/json"}.',
    )
    body: str | None = Field(
        default=None,
        description="Request body as text; sent as application/json when it is JSON "
        "and no Content-Type header is given.",
    )


def make_http_fetch(
    allow: AllowList | None = None,
    *,
    timeout_s: float = HTTP_FETCH_TIMEOUT_S,
    max_bytes: int = MAX_RESPONSE_BYTES,
    max_redirects: int = MAX_REDIRECTS,
    resolver: Resolver | None = None,
    transport: TransportFactory | None = None,
) -> Tool:
    """The built-in ``http_fetch`` tool for one allow-list (empty: public addresses only).

    Args:
        allow: Exceptions to the address guard, from ``ONWARD_HTTP_ALLOW`` at startup.
        timeout_s: Deadline of one whole fetch.
        max_bytes: Bytes read from the network, and bytes kept after decompression.
        max_redirects: Redirects followed before giving up.
        resolver: Name lookup; default: the event loop's ``getaddrinfo``.
        transport: Makes the httpx transport of each hop; default: a plain HTTP transport.
    """
    fetcher = _Fetcher(
        allow=allow or AllowList(),
        timeout_s=timeout_s,
        max_bytes=max_bytes,
        max_redirects=max_redirects,
        resolver=resolver or resolve,
        transport=transport or httpx.AsyncHTTPTransport,
    )

    async def http_fetch(args: HttpFetchArgs) -> str:
        """Fetch a URL over HTTP or HTTPS: the status line, the content type, then the body.

        HTML comes back as its readable text with the page title first; JSON and other
        text as they are. Redirects are followed. Private and local network addresses
        are refused.
        """
        return await fetcher.fetch(args)

    return tool(builtin=True, timeout_s=timeout_s + ACTIVITY_MARGIN_S)(http_fetch)


@dataclass(frozen=True)
class _Response:
    status: int
    reason: str
    content_type: str
    body: bytes
    truncated: bool
    location: str | None


@dataclass(frozen=True)
class _Fetcher:
    allow: AllowList
    timeout_s: float
    max_bytes: int
    max_redirects: int
    resolver: Resolver
    transport: TransportFactory

    async def fetch(self, args: HttpFetchArgs) -> str:
        url = _parse_url(args.url)
        headers = _request_headers(args.headers, args.body)
        method: str = args.method
        body = args.body
        redirected = False
        try:
            async with asyncio.timeout(self.timeout_s):
                for _ in range(self.max_redirects + 1):
                    addresses = await self._checked_addresses(url, redirected)
                    response = await self._exchange(method, url, headers, body, addresses)
                    if response.status not in _REDIRECT_STATUSES or not response.location:
                        # In a thread: turning a large page into text is CPU work
                        # the event loop (and the heartbeats on it) must not wait for.
                        text = await asyncio.to_thread(
                            _render, response, url if redirected else None, self.max_bytes
                        )
                        # An error status is the model's to read, not the cache's to
                        # reuse: a 503 or 429 kept for a TTL would outlive the outage.
                        return UncachedResult(text) if response.status >= 400 else text
                    target = _redirect_url(url, response.location)
                    if _origin(target) != _origin(url):
                        # Any custom header may carry a credential (X-Api-Key, ...):
                        # another site gets only the ones known to be harmless.
                        headers = {k: v for k, v in headers.items() if k.lower() in _CROSS_ORIGIN}
                    new_method = _redirect_method(response.status, method)
                    if new_method != method:
                        body = None
                        headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
                    method, url, redirected = new_method, target, True
        except TimeoutError as err:
            raise ToolError(
                f"http_fetch: no complete response within {self.timeout_s:g} s ({_shown(url)})"
            ) from err
        raise ToolError(
            f"http_fetch: more than {self.max_redirects} redirects (last: {_shown(url)})"
        )

    async def _checked_addresses(self, url: httpx.URL, redirected: bool) -> list[IPAddress]:
        """The addresses to connect to, all allowed; a ToolError naming the first that is not."""
        host = _host(url)
        port = url.port or _default_port(url)
        try:
            return await allowed_addresses(host, port, self.allow, self.resolver)
        except OSError as err:
            raise ToolError(f"http_fetch: cannot resolve {host}: {err.strerror or err}") from err
        except AddressRefused as err:
            where = f"refused to follow the redirect to {_shown(url)}: " if redirected else ""
            raise ToolError(f"http_fetch: {where}{err}{_ALLOW_HINT}") from err

    async def _exchange(
        self,
        method: str,
        url: httpx.URL,
        headers: Mapping[str, str],
        body: str | None,
        addresses: Sequence[IPAddress],
    ) -> _Response:
        """One request to the first checked address that accepts a connection."""
        host = _host(url)
        last_error: httpx.HTTPError | None = None
        for address in addresses:
            async with httpx.AsyncClient(
                transport=self.transport(),
                trust_env=False,
                follow_redirects=False,
                timeout=self.timeout_s,
                headers={"User-Agent": USER_AGENT, "Accept-Encoding": "gzip, deflate"},
            ) as client:
                try:
                    content = None if body is None else body.encode()
                    request = pinned_request(client, method, url, address, headers, content)
                except (ValueError, httpx.HTTPError) as err:
                    raise ToolError(f"http_fetch: invalid request: {err}") from err
                try:
                    response = await client.send(request, stream=True)
                except httpx.ConnectError as err:
                    last_error = err  # this address refused; the next one may not
                    continue
                except httpx.HTTPError as err:
                    raise _failure(err, method, host, self.timeout_s) from err
                try:
                    content, truncated = await read_body(response, self.max_bytes)
                except httpx.HTTPError as err:
                    raise _failure(err, method, host, self.timeout_s) from err
                finally:
                    await response.aclose()
                return _Response(
                    status=response.status_code,
                    reason=response.reason_phrase,
                    content_type=response.headers.get("content-type", ""),
                    body=content,
                    truncated=truncated,
                    location=response.headers.get("location"),
                )
        assert last_error is not None  # addresses is never empty
        raise _failure(last_error, method, host, self.timeout_s) from last_error


def _parse_url(text: str) -> httpx.URL:
    try:
        url = httpx.URL(text.strip())
    except httpx.InvalidURL as err:
        raise ToolError(f"http_fetch: invalid URL {text!r}: {err}") from err
    _check_scheme(url, "")
    if not url.raw_host:
        raise ToolError(f"http_fetch: the URL {text!r} has no host")
    return url.copy_with(fragment=None)


def _check_scheme(url: httpx.URL, where: str) -> None:
    if url.scheme not in ("http", "https"):
        scheme = f"{url.scheme}:" if url.scheme else "a URL without a scheme"
        raise ToolError(f"http_fetch: {where}only http and https URLs can be fetched, not {scheme}")


def _request_headers(given: Mapping[str, str], body: str | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in given.items():
        if name.strip().lower() in _SET_HERE:
            raise ToolError(f"http_fetch: the {name} header is set by http_fetch; leave it out")
        headers[name] = value
    if body is not None and not any(name.lower() == "content-type" for name in headers):
        headers["Content-Type"] = (
            "application/json" if _is_json(body) else "text/plain; charset=utf-8"
        )
    return headers


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _redirect_url(url: httpx.URL, location: str) -> httpx.URL:
    try:
        target = url.join(location).copy_with(fragment=None)
    except httpx.InvalidURL as err:
        raise ToolError(f"http_fetch: bad redirect location {location!r}: {err}") from err
    _check_scheme(target, f"refused to follow the redirect to {location}: ")
    return target


def _redirect_method(status: int, method: str) -> str:
    """What browsers do: 303 turns into GET, and so do 301/302 after a POST."""
    if status == 303 and method != "HEAD":
        return "GET"
    if status in (301, 302) and method == "POST":
        return "GET"
    return method


def _origin(url: httpx.URL) -> tuple[str, bytes, int]:
    return url.scheme, url.raw_host, url.port or _default_port(url)


def _default_port(url: httpx.URL) -> int:
    return 443 if url.scheme == "https" else 80


def _host(url: httpx.URL) -> str:
    """The host as sent to DNS: IDNA-encoded, an IPv6 address without brackets."""
    return url.raw_host.decode("ascii")


def _shown(url: httpx.URL) -> str:
    """The URL without a password, for messages and the result."""
    return str(url.copy_with(userinfo=b""))


def _render(response: _Response, final_url: httpx.URL | None, max_bytes: int) -> str:
    lines = [
        f"HTTP {response.status} {response.reason}".rstrip(),
        f"Content-Type: {response.content_type or '(none)'}",
    ]
    if final_url is not None:
        lines.append(f"URL: {_shown(final_url)}")
    if response.truncated:
        lines.append(
            f"[truncated: the body is longer than {max_bytes} bytes; only those were read]"
        )
    text = body_text(response.body, response.content_type)
    return "\n".join(lines) + (f"\n\n{text}" if text else "")


def _failure(err: httpx.HTTPError, method: str, host: str, timeout_s: float) -> Exception:
    """The error a failed exchange becomes: retried only when a retry can help."""
    detail = str(err) or type(err).__name__
    if isinstance(err, httpx.TimeoutException):
        return ToolError(f"http_fetch: {host} did not answer within {timeout_s:g} s")
    if _caused_by_tls(err):
        return ToolError(f"http_fetch: TLS with {host} failed: {detail}")
    # Nothing was sent when the connection failed; a dropped answer is only safe to
    # ask again for methods that may be repeated.
    transient = isinstance(err, httpx.ConnectError) or (
        method in _IDEMPOTENT
        and isinstance(err, httpx.ReadError | httpx.WriteError | httpx.RemoteProtocolError)
    )
    if transient:
        return ToolRetryableError(f"http_fetch: cannot reach {host}: {detail}")
    return ToolError(f"http_fetch: request to {host} failed: {detail}")


def _caused_by_tls(err: BaseException) -> bool:
    seen: BaseException | None = err
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
