"""``http_fetch`` against a real HTTP server on 127.0.0.1, and its address guard.

No test sends a packet anywhere but the loopback interface: addresses outside
it are either refused by the guard (which is the point) or reached only
through ``httpx.MockTransport`` with an injected resolver.
"""

from __future__ import annotations

import asyncio
import gzip
import inspect
import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from temporalio.testing import ActivityEnvironment

from onward.activities.tool_calls import ToolActivities
from onward.activities.tools import AllowList, Tool, ToolContext, ToolRegistry, builtin_registry
from onward.activities.tools import http_fetch as http_fetch_module
from onward.activities.tools.http_body import body_text
from onward.activities.tools.http_fetch import (
    HTTP_FETCH_TIMEOUT_S,
    MAX_RESPONSE_BYTES,
    make_http_fetch,
)
from onward.activities.tools.net_guard import blocked_reason, refusal
from onward.contracts import ToolRequest
from onward.errors import ToolError, ToolRetryableError

PAGE = b"""<!doctype html>
<html><head><title>  Onward   docs </title>
<style>body { color: red }</style>
<script>var secret = "do not show";</script></head>
<body><h1>Durable agents</h1>
<p>Crash-proof   loops,
   budgets &amp; control.</p>
<ul><li>one</li><li>two</li></ul>
<noscript>enable js</noscript>
</body></html>"""

DATA = {"name": "onward", "items": [1, 2, 3]}
SLOW_S = 10.0


class Handler(BaseHTTPRequestHandler):
    """Routes of the test server; ``?to=`` and ``?status=`` drive redirects."""

    server: LocalServer

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        route = getattr(self, "route_" + parts.path.strip("/").replace(".", "_"), None)
        if route is None:
            self.reply(404, "text/plain", b"no such page")
        else:
            route(query)

    do_POST = do_GET
    do_HEAD = do_GET

    def reply(self, status: int, content_type: str, body: bytes, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def route_page_html(self, query: dict[str, str]) -> None:
        self.reply(200, "text/html; charset=utf-8", PAGE)

    def route_data_json(self, query: dict[str, str]) -> None:
        self.reply(200, "application/json", json.dumps(DATA).encode())

    def route_image_png(self, query: dict[str, str]) -> None:
        self.reply(200, "image/png", b"\x89PNG\r\n\x1a\n" + bytes(100))

    def route_gzip(self, query: dict[str, str]) -> None:
        size = int(query.get("size", "0"))
        body = gzip.compress(b"z" * size if size else b"compressed hello")
        self.reply(200, "text/plain", body, Content_Encoding="gzip")

    def route_echo(self, query: dict[str, str]) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        echoed = {
            "method": self.command,
            "host": self.headers.get("Host"),
            "content_type": self.headers.get("Content-Type"),
            "body": self.rfile.read(length).decode(),
        }
        self.reply(200, "application/json", json.dumps(echoed).encode())

    def route_redirect(self, query: dict[str, str]) -> None:
        self.reply(int(query.get("status", "302")), "text/plain", b"moved", Location=query["to"])

    def route_loop(self, query: dict[str, str]) -> None:
        self.reply(302, "text/plain", b"again", Location="/loop")

    def route_endless(self, query: dict[str, str]) -> None:
        # No Content-Length: the body ends only when the client stops reading.
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        chunk = b"x" * 65536
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline and not self.server.stopping.is_set():
                self.wfile.write(chunk)
        except OSError:
            return  # the client hung up, as it should

    def route_slow(self, query: dict[str, str]) -> None:
        self.server.stopping.wait(SLOW_S)
        self.reply(200, "text/plain", b"finally")

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests assert on what the client sees."""


class LocalServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.stopping = threading.Event()

    def handle_error(self, request: object, client_address: object) -> None:
        """A client hanging up mid-body is expected here, not an error."""


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """Base URL of the test server, ``http://127.0.0.1:<free port>``."""
    httpd = LocalServer()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.stopping.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def port(server: str) -> int:
    return int(server.rsplit(":", 1)[1])


LOOPBACK = AllowList.parse("127.0.0.1")
CTX = ToolContext(idempotency_key="wf/1/c1", call_id="c1", workspace=Path())


async def fetch(item: Tool, url: str, **arguments: Any) -> str:
    """Call the tool as the activity does, with validated arguments."""
    args = item.args_model.model_validate({"url": url, **arguments})
    result = item.fn(args, CTX)
    if inspect.isawaitable(result):
        result = await result
    assert isinstance(result, str)
    return result


def head_and_body(result: str) -> tuple[list[str], str]:
    head, _, body = result.partition("\n\n")
    return head.splitlines(), body


@dataclass
class Tripwire:
    """A resolver and transport that record any use: the guard must refuse before either."""

    calls: list[str] = field(default_factory=list)

    async def resolve(self, host: str, port: int) -> Sequence[str]:
        self.calls.append(f"resolve {host}")
        return ["127.0.0.1"]

    def transport(self) -> httpx.AsyncBaseTransport:
        self.calls.append("transport")
        return httpx.MockTransport(lambda request: httpx.Response(500))

    def tool(self, allow: AllowList | None = None) -> Tool:
        return make_http_fetch(allow, resolver=self.resolve, transport=self.transport)


# ---------------------------------------------------------------------------
# The guard on the local server
# ---------------------------------------------------------------------------


async def test_loopback_is_refused_without_allow(server: str) -> None:
    with pytest.raises(ToolError) as refused:
        await fetch(make_http_fetch(), f"{server}/page.html")
    assert str(refused.value) == (
        "http_fetch: 127.0.0.1 is a loopback address; set ONWARD_HTTP_ALLOW to allow it"
    )


async def test_allow_list_admits_loopback_and_html_becomes_text(server: str) -> None:
    result = await fetch(make_http_fetch(LOOPBACK), f"{server}/page.html")
    assert result == (
        "HTTP 200 OK\n"
        "Content-Type: text/html; charset=utf-8\n"
        "\n"
        "Title: Onward docs\n"
        "\n"
        "Durable agents\n"
        "Crash-proof loops, budgets & control.\n"
        "one\n"
        "two"
    )
    assert "secret" not in result and "color" not in result and "enable js" not in result


async def test_json_and_text_pass_through_binary_does_not(server: str) -> None:
    item = make_http_fetch(LOOPBACK)
    head, body = head_and_body(await fetch(item, f"{server}/data.json"))
    assert head == ["HTTP 200 OK", "Content-Type: application/json"]
    assert json.loads(body) == DATA
    head, body = head_and_body(await fetch(item, f"{server}/missing"))
    assert head == ["HTTP 404 Not Found", "Content-Type: text/plain"]
    assert body == "no such page"
    _, body = head_and_body(await fetch(item, f"{server}/image.png"))
    assert body == "[108 bytes of image/png not shown: not text]"
    assert await fetch(item, f"{server}/data.json", method="HEAD") == (
        "HTTP 200 OK\nContent-Type: application/json"
    )


async def test_post_sends_json_body_and_original_host(server: str, port: int) -> None:
    item = make_http_fetch(AllowList.parse("localhost"))
    url = f"http://localhost:{port}/echo"
    _, body = head_and_body(await fetch(item, url, method="POST", body='{"a": 1}'))
    assert json.loads(body) == {
        "method": "POST",
        "host": f"localhost:{port}",
        "content_type": "application/json",
        "body": '{"a": 1}',
    }
    with pytest.raises(ToolError, match=r"^http_fetch: the Host header is set by http_fetch"):
        await fetch(item, url, headers={"Host": "evil.example"})


async def test_redirects_are_followed_and_rechecked(server: str) -> None:
    item = make_http_fetch(LOOPBACK)
    head, body = head_and_body(await fetch(item, f"{server}/redirect?to=/data.json"))
    assert head == ["HTTP 200 OK", "Content-Type: application/json", f"URL: {server}/data.json"]
    assert json.loads(body) == DATA

    # 303 after a POST turns into a GET without the body, as browsers do.
    _, body = head_and_body(
        await fetch(item, f"{server}/redirect?status=303&to=/echo", method="POST", body="x")
    )
    assert json.loads(body)["method"] == "GET" and json.loads(body)["body"] == ""


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("http://127.0.0.2:{port}/", "127.0.0.2 is a loopback address"),
        ("http://[::1]:{port}/", "::1 is a loopback address"),
        (
            "http://169.254.169.254/latest/meta-data/",
            "169.254.169.254 is a link-local address (where cloud metadata services answer)",
        ),
        ("http://10.0.0.7/", "10.0.0.7 is a private address"),
    ],
)
async def test_redirect_to_a_disallowed_address_is_refused(
    server: str, port: int, target: str, reason: str
) -> None:
    target = target.format(port=port)
    with pytest.raises(ToolError) as refused:
        await fetch(make_http_fetch(LOOPBACK), f"{server}/redirect?to={target}")
    assert str(refused.value) == (
        f"http_fetch: refused to follow the redirect to {target}: {reason}; "
        "set ONWARD_HTTP_ALLOW to allow it"
    )


async def test_redirect_to_another_scheme_and_redirect_loops(server: str) -> None:
    item = make_http_fetch(LOOPBACK)
    with pytest.raises(ToolError, match=r"only http and https URLs can be fetched, not file:"):
        await fetch(item, f"{server}/redirect?to=file:///etc/passwd")
    with pytest.raises(ToolError, match=r"^http_fetch: more than 5 redirects \(last: "):
        await fetch(item, f"{server}/loop")


async def test_a_name_resolving_to_loopback_is_refused(port: int) -> None:
    for allow in (AllowList(), AllowList.parse("127.0.0.2")):
        with pytest.raises(ToolError) as refused:
            await fetch(make_http_fetch(allow), f"http://localhost:{port}/page.html")
        assert str(refused.value) in {
            f"http_fetch: localhost resolves to {address}, a loopback address; "
            "set ONWARD_HTTP_ALLOW to allow it"
            for address in ("127.0.0.1", "::1")
        }
    # A host name entry allows that name, whatever it resolves to.
    result = await fetch(make_http_fetch(AllowList.parse("LocalHost")), f"http://localhost:{port}/")
    assert result.startswith("HTTP 404 Not Found\n")


async def test_ipv4_mapped_ipv6_is_judged_as_ipv4(port: int) -> None:
    url = f"http://[::ffff:127.0.0.1]:{port}/data.json"
    with pytest.raises(ToolError) as refused:
        await fetch(make_http_fetch(), url)
    assert str(refused.value) == (
        "http_fetch: ::ffff:7f00:1 (IPv4 127.0.0.1) is a loopback address; "
        "set ONWARD_HTTP_ALLOW to allow it"
    )
    # Allowed as 127.0.0.1, it connects to 127.0.0.1: the address that was checked.
    result = await fetch(make_http_fetch(LOOPBACK), url)
    assert result.startswith("HTTP 200 OK\nContent-Type: application/json")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://10.1.2.3/", "10.1.2.3 is a private address"),
        ("http://192.168.0.1:8080/admin", "192.168.0.1 is a private address"),
        ("https://172.16.5.4/", "172.16.5.4 is a private address"),
        (
            "http://169.254.169.254/latest/meta-data/iam/",
            "169.254.169.254 is a link-local address (where cloud metadata services answer)",
        ),
        ("http://100.64.0.1/", "100.64.0.1 is a shared (carrier-grade NAT) address"),
        ("http://0.0.0.0:8080/", "0.0.0.0 is an unspecified ('this network') address"),
        ("http://[::]/", ":: is an unspecified address"),
        ("http://[fd00::1]/", "fd00::1 is a private (unique local) address"),
        ("http://[fe80::1]/", "fe80::1 is a link-local address"),
        ("http://224.0.0.1/", "224.0.0.1 is a multicast address"),
        ("http://192.0.2.1/", "192.0.2.1 is a reserved (non-public) address"),
        (
            "http://[::ffff:a9fe:a9fe]/",
            "::ffff:a9fe:a9fe (IPv4 169.254.169.254) is a link-local address "
            "(where cloud metadata services answer)",
        ),
        ("http://[2002:a00:1::]/", "2002:a00:1:: is a form of 10.0.0.1, a private address"),
    ],
)
async def test_private_addresses_are_refused_before_any_connection(url: str, message: str) -> None:
    tripwire = Tripwire()
    with pytest.raises(ToolError) as refused:
        await fetch(tripwire.tool(), url)
    assert str(refused.value) == f"http_fetch: {message}; set ONWARD_HTTP_ALLOW to allow it"
    assert tripwire.calls == []


async def test_every_resolved_address_is_checked() -> None:
    tripwire = Tripwire()
    answers = {"intranet.example": ["10.9.8.7"], "mixed.example": ["93.184.216.34", "127.0.0.1"]}

    async def resolver(host: str, port: int) -> Sequence[str]:
        return answers[host]

    item = make_http_fetch(resolver=resolver, transport=tripwire.transport)
    with pytest.raises(
        ToolError, match=r"^http_fetch: intranet\.example resolves to 10\.9\.8\.7, a"
    ):
        await fetch(item, "http://intranet.example/")
    with pytest.raises(ToolError, match=r"^http_fetch: mixed\.example resolves to 127\.0\.0\.1, a"):
        await fetch(item, "http://mixed.example/")
    assert tripwire.calls == []

    async def no_such_host(host: str, port: int) -> Sequence[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(ToolError, match=r"^http_fetch: cannot resolve nowhere\.example: Name or"):
        await fetch(make_http_fetch(resolver=no_such_host), "http://nowhere.example/")


# ---------------------------------------------------------------------------
# Connecting to the checked address (mock transport: nothing leaves the process)
# ---------------------------------------------------------------------------


@dataclass
class PublicWeb:
    """A fake internet: names resolve once to a public address, then "rebind" to loopback."""

    lookups: list[str] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    routes: dict[str, httpx.Response] = field(default_factory=dict)

    async def resolve(self, host: str, port: int) -> Sequence[str]:
        self.lookups.append(host)
        return ["93.184.216.34"] if len(self.lookups) == 1 else ["127.0.0.1"]

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.routes.get(request.url.path) or httpx.Response(
            200, headers={"Content-Type": "text/plain"}, text="public hello"
        )

    def tool(self) -> Tool:
        return make_http_fetch(
            resolver=self.resolve, transport=lambda: httpx.MockTransport(self.handle)
        )


async def test_connects_to_the_checked_address_with_the_original_name() -> None:
    web = PublicWeb()
    result = await fetch(web.tool(), "https://public.example/path?q=1#frag")
    assert result == "HTTP 200 OK\nContent-Type: text/plain\n\npublic hello"
    (request,) = web.requests
    assert str(request.url) == "https://93.184.216.34/path?q=1"
    assert request.headers["host"] == "public.example"
    assert request.extensions["sni_hostname"] == "public.example"
    assert web.lookups == ["public.example"]


async def test_redirect_hop_is_resolved_and_checked_again() -> None:
    web = PublicWeb()
    web.routes["/start"] = httpx.Response(302, headers={"Location": "http://rebound.example/x"})
    with pytest.raises(ToolError) as refused:
        await fetch(web.tool(), "http://public.example/start")
    assert str(refused.value) == (
        "http_fetch: refused to follow the redirect to http://rebound.example/x: "
        "rebound.example resolves to 127.0.0.1, a loopback address; "
        "set ONWARD_HTTP_ALLOW to allow it"
    )
    assert len(web.requests) == 1
    assert web.lookups == ["public.example", "rebound.example"]


async def test_credentials_do_not_follow_a_redirect_to_another_site() -> None:
    web = PublicWeb()
    web.resolve = _always_public  # type: ignore[method-assign]
    web.routes["/start"] = httpx.Response(307, headers={"Location": "https://other.example/"})
    await fetch(
        web.tool(),
        "https://public.example/start",
        headers={"Authorization": "Bearer s3cret", "Accept": "text/plain"},
    )
    first, second = web.requests
    assert first.headers["authorization"] == "Bearer s3cret"
    assert "authorization" not in second.headers
    assert second.headers["accept"] == "text/plain"
    assert second.headers["host"] == "other.example"


async def test_only_harmless_headers_follow_a_redirect_to_another_site() -> None:
    web = PublicWeb()
    web.resolve = _always_public  # type: ignore[method-assign]
    web.routes["/start"] = httpx.Response(307, headers={"Location": "https://other.example/"})
    sent = {
        "X-Api-Key": "k3y",
        "Accept": "text/plain",
        "Accept-Language": "de",
        "Content-Type": "text/plain",
        "User-Agent": "mine",
    }
    await fetch(web.tool(), "https://public.example/start", method="PUT", headers=sent, body="x")
    first, second = web.requests
    assert first.headers["x-api-key"] == "k3y"
    assert "x-api-key" not in second.headers
    assert {name: second.headers[name] for name in sent if name != "X-Api-Key"} == {
        "Accept": "text/plain",
        "Accept-Language": "de",
        "Content-Type": "text/plain",
        "User-Agent": "mine",
    }


async def _always_public(host: str, port: int) -> Sequence[str]:
    return ["93.184.216.34"]


# ---------------------------------------------------------------------------
# Limits
# ---------------------------------------------------------------------------


async def test_body_beyond_the_limit_is_not_read(server: str) -> None:
    result = await fetch(make_http_fetch(LOOPBACK), f"{server}/endless")
    head, body = head_and_body(result)
    assert head == [
        "HTTP 200 OK",
        "Content-Type: text/plain",
        "[truncated: the body is longer than 1000000 bytes; only those were read]",
    ]
    assert body == "x" * 1_000_000


async def test_decompression_is_bounded_too(server: str) -> None:
    item = make_http_fetch(LOOPBACK, max_bytes=50_000)
    assert (await fetch(item, f"{server}/gzip")).endswith("\n\ncompressed hello")
    head, body = head_and_body(await fetch(item, f"{server}/gzip?size=5000000"))
    assert head[-1] == "[truncated: the body is longer than 50000 bytes; only those were read]"
    assert body == "z" * 50_000


async def test_rendering_runs_off_the_event_loop(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    render = http_fetch_module._render

    def slow_render(*args: Any) -> str:
        time.sleep(0.5)  # a page that takes long to turn into text
        return render(*args)

    monkeypatch.setattr(http_fetch_module, "_render", slow_render)
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    ticking = asyncio.create_task(ticker())
    try:
        result = await fetch(make_http_fetch(LOOPBACK), f"{server}/page.html")
    finally:
        ticking.cancel()
    assert result.startswith("HTTP 200 OK")
    # Heartbeats run on the same loop: it must not stall while the page is rendered.
    gaps = [later - earlier for earlier, later in itertools.pairwise(ticks)]
    assert gaps and max(gaps) < 0.25


def test_pathological_html_and_charsets_are_cheap() -> None:
    started = time.monotonic()
    # Unterminated tags: CPython's parser alone takes about 16 s on this.
    assert body_text(b"<a " * 10_000, "text/html").startswith("<a <a <a")
    assert time.monotonic() - started < 2
    assert body_text(b"<p>1 < 2</p> and 3 < 4 <b", "text/html") == "1 < 2\nand 3 < 4 <b"
    # Host-name codecs are quadratic (and idna cannot replace errors): UTF-8 instead.
    for charset in ("punycode", "IDNA"):
        assert body_text("héllo".encode(), f"text/plain; charset={charset}") == "héllo"


async def test_timeout(server: str) -> None:
    item = make_http_fetch(LOOPBACK, timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(ToolError) as timed_out:
        await fetch(item, f"{server}/slow")
    assert str(timed_out.value) == f"http_fetch: no complete response within 0.3 s ({server}/slow)"
    assert time.monotonic() - started < SLOW_S / 2


async def test_connection_refused_is_retryable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with pytest.raises(ToolRetryableError, match=r"^http_fetch: cannot reach 127\.0\.0\.1: "):
        await fetch(make_http_fetch(LOOPBACK), f"http://127.0.0.1:{closed_port}/")


async def test_bad_urls() -> None:
    item = make_http_fetch()
    with pytest.raises(ToolError, match=r"only http and https URLs can be fetched, not ftp:"):
        await fetch(item, "ftp://example.com/file")
    with pytest.raises(ToolError, match=r"not a URL without a scheme"):
        await fetch(item, "example.com/page")


# ---------------------------------------------------------------------------
# Through the activity, and as a built-in
# ---------------------------------------------------------------------------


async def test_activity_reports_refusals_and_truncates(server: str) -> None:
    activities = ToolActivities(ToolRegistry.of([make_http_fetch(LOOPBACK)]), Path())

    async def execute(**arguments: Any) -> Any:
        request = ToolRequest(
            name="http_fetch", arguments=arguments, call_id="c1", idempotency_key="wf/1/c1"
        )
        return await ActivityEnvironment().run(activities.execute_tool, request)

    refused = await execute(url="http://169.254.169.254/latest/meta-data/")
    assert refused.error is not None and refused.error.startswith("http_fetch: 169.254.169.254 is")
    invalid = await execute(url=f"{server}/", method="TRACE")
    assert invalid.error is not None
    assert invalid.error.startswith("invalid arguments for http_fetch: method: Input should be")
    big = await execute(url=f"{server}/endless")
    # http_fetch cuts the body itself; the activity returns all it read (the workflow
    # cuts the model's copy, external storage keeps it out of the history).
    assert not big.truncated and big.error is None
    assert big.content.startswith("HTTP 200 OK\nContent-Type: text/plain\n[truncated: ")
    assert len(big.content) > MAX_RESPONSE_BYTES


def test_is_a_regular_builtin_when_the_worker_passes_its_allow_list() -> None:
    assert builtin_registry().get("http_fetch") is None
    registry = builtin_registry(http_allow=AllowList())
    item = registry.get("http_fetch")
    assert item is not None
    assert item.builtin and not item.local
    assert item.timeout_s > HTTP_FETCH_TIMEOUT_S
    assert "http_fetch" in registry.builtin_names()
    schema = item.spec().parameters
    assert schema["required"] == ["url"]
    assert schema["properties"]["method"]["default"] == "GET"


# ---------------------------------------------------------------------------
# The allow-list and the address rules, as pure functions
# ---------------------------------------------------------------------------


def test_allow_list_parsing() -> None:
    allow = AllowList.parse(" 127.0.0.1, 10.20.0.0/16 ,[::1], Wiki.Internal., 192.168.1.9/24,")
    assert [str(network) for network in allow.networks] == [
        "127.0.0.1/32",
        "10.20.0.0/16",
        "::1/128",
        "192.168.1.0/24",
    ]
    assert allow.hosts == frozenset({"wiki.internal"})
    assert allow.allows_host("WIKI.internal.") and not allow.allows_host("127.0.0.1")
    assert allow.allows_address(ip_address("10.20.3.4"))
    assert not allow.allows_address(ip_address("127.0.0.2"))
    assert allow.allows_address(ip_address("::ffff:127.0.0.1"))
    assert AllowList.parse(None) == AllowList() == AllowList.parse(" , ")
    assert AllowList.from_env({"ONWARD_HTTP_ALLOW": "localhost"}).hosts == {"localhost"}
    assert AllowList.from_env({}) == AllowList()
    for bad in ("10.0.0.0/33", "*.corp", "300.1.2.3", "http://x"):
        with pytest.raises(ValueError, match=r"^ONWARD_HTTP_ALLOW: .* is not an IP address"):
            AllowList.parse(bad)


def test_address_rules() -> None:
    public = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "64:ff9b::808:808"]
    for text in public:
        assert blocked_reason(ip_address(text)) is None, text
    blocked = {
        "127.255.0.1": "a loopback address",
        "172.31.255.255": "a private address",
        "100.127.0.1": "a shared (carrier-grade NAT) address",
        "255.255.255.255": "a broadcast address",
        "240.0.0.1": "a reserved address",
        "198.18.0.1": "a reserved (non-public) address",
        "::7f00:1": "a reserved (non-public) address",
        "64:ff9b::a9fe:a9fe": "a form of 169.254.169.254, a link-local address "
        "(where cloud metadata services answer)",
        "ff02::1": "a multicast address",
        "fec0::1": "a site-local address",
    }
    for text, reason in blocked.items():
        assert blocked_reason(ip_address(text)) == reason, text
    addresses = [ip_address("93.184.216.34"), ip_address("10.0.0.1")]
    assert refusal("site.example", addresses, AllowList()) == (
        "site.example resolves to 10.0.0.1, a private address"
    )
    assert refusal("site.example", addresses, AllowList.parse("10.0.0.0/8")) is None
    assert refusal("site.example", addresses, AllowList.parse("site.example")) is None


def test_an_allow_entry_with_a_port_allows_that_port_only() -> None:
    allow = AllowList.parse("127.0.0.1:8080, [::1]:9000, 10.0.0.0/8:443, hooks.internal:8443")
    assert allow.networks == () and allow.hosts == frozenset()
    loopback, v6, private = ip_address("127.0.0.1"), ip_address("::1"), ip_address("10.1.2.3")
    assert allow.allows_address(loopback, 8080) and not allow.allows_address(loopback, 7233)
    assert not allow.allows_address(loopback)  # a port unknown is no port allowed
    assert allow.allows_address(v6, 9000) and not allow.allows_address(v6, 8080)
    assert allow.allows_address(private, 443) and not allow.allows_address(private, 80)
    assert allow.allows_address(ip_address("::ffff:127.0.0.1"), 8080)
    assert allow.allows_host("Hooks.Internal.", 8443) and not allow.allows_host("hooks.internal")
    assert refusal("hooks.internal", [loopback], allow, 8443) is None
    assert refusal("127.0.0.1", [loopback], allow, 8080) is None
    assert refusal("127.0.0.1", [loopback], allow, 7233) == "127.0.0.1 is a loopback address"
    for bad, why in (
        ("127.0.0.1:0", "port must be a number from 1 to 65535"),
        ("host:70000", "port must be a number from 1 to 65535"),
        ("[::1]x", r"an IPv6 entry is \[address\]:port"),
        ("[::1]:http", "port must be a number"),
        ("[::1", r"an IPv6 entry is \[address\]:port"),
        ("fe80::1%eth0:80", "is not an IP address"),  # a zone id, not a port
        ("[fe80::1%eth0]:80", "is not an IP address"),
    ):
        with pytest.raises(ValueError, match=f"^ONWARD_HTTP_ALLOW: .*{why}"):
            AllowList.parse(bad)
