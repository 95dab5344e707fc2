"""Which web pages may call the API: CORS for the origins allowed, a refusal for the rest.

A browser adds ``Origin`` to a request a page makes to another site (and to
every POST); curl, the SDKs and servers send none and are not concerned here.
CORS only keeps an answer from the page: the request itself is made. So a page
of any site the API's user visits could POST to the API (a cancel or an
approve needs no body, so no preflight stops it) or open its WebSocket (not
under CORS at all). :class:`OriginGate` refuses a request a browser sent from a
page whose origin is neither the API's own (its ``/docs``) nor allowed.

With no API keys the API is one tenant on loopback (and the codec server, on
loopback, has no keys at all), and it also answers only requests addressed to a
loopback name: a page whose own host name a DNS
rebinding points at 127.0.0.1 is then its own origin, and only the ``Host`` its
browser sends gives it away.
"""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from onward.starter.api.errors import error_response

__all__ = ["CORS_HEADERS", "OriginGate", "web_origin"]

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
CORS_HEADERS = ["authorization", "content-type", "last-event-id"]
"""Request headers an allowed page may send (its API key, a JSON body, a stream's resume)."""


def web_origin(text: str) -> str:
    """``text`` as a browser sends it in ``Origin`` (``scheme://host[:port]``), or ``*``.

    Raises:
        ValueError: not an origin (a path, a query, no host, another scheme), saying so.
    """
    text = text.strip()
    if text == "*":
        return text
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (
        parts.scheme not in _DEFAULT_PORTS
        or not parts.hostname
        or port == -1
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or "@" in parts.netloc
    ):
        raise ValueError(
            f"{text!r} is not a web origin: http(s)://host[:port], no path "
            "(e.g. https://app.example.com or http://localhost:3000)"
        )
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    # As a browser writes it: lower case, and no port when it is the scheme's own.
    shown_port = "" if port in (None, _DEFAULT_PORTS[parts.scheme]) else f":{port}"
    return f"{parts.scheme}://{host.lower()}{shown_port}"


def _hostname(host: str) -> str:
    """The name in a ``Host`` header, without its port or an IPv6 address's brackets."""
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rpartition(":")[0] if host.count(":") == 1 else host


class OriginGate:
    """Refuses (403) what a page of a foreign origin sends that is more than a read.

    Args:
        allowed: origins whose pages may call the API (``*``: any).
        loopback_only: also refuse a request addressed to a name that is not loopback.
        flag: how the server is told to allow an origin, for the refusal's message.
        own_pages: the server serves pages of its own (the API's ``/docs``), which call
            it from its own origin; a server without any takes none as its own (a page a
            DNS rebinding points at it has the server's host for its origin).
    """

    def __init__(
        self,
        app: ASGIApp,
        allowed: Collection[str],
        loopback_only: bool,
        flag: str = "onward api --cors-origin (ONWARD_API_CORS_ORIGINS)",
        own_pages: bool = True,
    ) -> None:
        self.app = app
        self.allowed = frozenset(allowed)
        self.loopback_only = loopback_only
        self.flag = flag
        self.own_pages = own_pages

    def _refusal(self, scope: Scope) -> str | None:
        headers = Headers(scope=scope)
        host = headers.get("host", "").lower()
        if self.loopback_only and _hostname(host) not in LOOPBACK_HOSTS:
            return (
                f"this server answers only requests to a loopback address (it listens on "
                f"one, with no authentication), not to {host or 'no host'!r}"
            )
        origin = headers.get("origin")
        if origin is None or "*" in self.allowed or origin in self.allowed:
            return None
        if self.own_pages and urlsplit(origin).netloc.lower() == host:  # the API's /docs
            return None
        if scope["type"] == "http" and scope["method"] in _SAFE_METHODS:
            return None  # a read: CORS keeps its answer from the page
        return f"a web page of {origin} may not call this server; allow its origin with {self.flag}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self._refusal(scope) if scope["type"] in ("http", "websocket") else None
        if refusal is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            # Closed before it is accepted: the browser's handshake fails with a 403.
            await send({"type": "websocket.close", "code": 1008, "reason": refusal[:120]})
        else:
            await error_response(403, "OriginNotAllowed", refusal)(scope, receive, send)
