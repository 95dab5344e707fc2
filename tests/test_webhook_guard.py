"""The webhook activity's address guard, against a real receiver on loopback.

Host names here resolve through a resolver the test gives (there is no DNS):
a delivery that reaches the receiver at 127.0.0.1 under such a name proves the
POST went to the checked address, not to a second lookup of the name.
"""

from __future__ import annotations

import asyncio
import datetime
import socket
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from api_server import serving
from onward.activities import webhooks
from onward.activities.tools.net_guard import AllowList
from onward.activities.webhooks import WebhookActivities
from onward.contracts import AgentResult, RunUsage, WebhookDelivery


class Resolver:
    """Names to addresses, counting lookups; an unknown name does not resolve."""

    def __init__(self, names: dict[str, list[str]]) -> None:
        self.names = names
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.lookups.append(host)
        if host not in self.names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.names[host]


def hook_app(hosts: list[str]) -> Starlette:
    """Answers a POST to /hook with 204 (noting its Host header); /moved redirects there."""

    async def hook(request: Request) -> Response:
        hosts.append(request.headers["host"])
        return Response(status_code=204)

    async def moved(request: Request) -> Response:
        return Response(status_code=307, headers={"location": "/hook"})

    routes = [Route("/hook", hook, methods=["POST"]), Route("/moved", moved, methods=["POST"])]
    return Starlette(routes=routes)


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[tuple[int, list[str]]]:
    """A receiver on 127.0.0.1: its port and the Host header of every POST it got."""
    hosts: list[str] = []
    async with serving(hook_app(hosts)) as base:
        yield int(base.rsplit(":", 1)[1]), hosts


async def deliver(activities: WebhookActivities, url: str) -> int:
    delivery = WebhookDelivery(
        url=url, run_id="run-1", result=AgentResult(status="completed", usage=RunUsage())
    )
    outcome = await ActivityEnvironment().run(activities.deliver_webhook, delivery)
    return outcome.status_code


async def refused(activities: WebhookActivities, url: str) -> ApplicationError:
    with pytest.raises(ApplicationError) as failed:
        await deliver(activities, url)
    return failed.value


@pytest.mark.parametrize(
    ("url", "names", "reason"),
    [
        ("http://127.0.0.1:{port}/hook", {}, "127.0.0.1 is a loopback address"),
        ("http://[::ffff:127.0.0.1]:{port}/hook", {}, "::ffff:7f00:1 (IPv4 127.0.0.1) is a"),
        (
            "http://hooks.example:{port}/hook",
            {"hooks.example": ["127.0.0.1"]},
            "hooks.example resolves to 127.0.0.1, a loopback address",
        ),
        (
            "http://metadata.example/latest",
            {"metadata.example": ["169.254.169.254"]},
            "169.254.169.254, a link-local address",
        ),
        (
            # Every address must pass: the connection could go to any of them.
            "https://mixed.example/hook",
            {"mixed.example": ["93.184.216.34", "10.1.2.3"]},
            "mixed.example resolves to 10.1.2.3, a private address",
        ),
    ],
)
async def test_a_receiver_at_a_non_public_address_is_refused_for_good(
    receiver: tuple[int, list[str]], url: str, names: dict[str, list[str]], reason: str
) -> None:
    port, hosts = receiver
    activities = WebhookActivities("secret", resolver=Resolver(names))
    error = await refused(activities, url.format(port=port))
    assert reason in error.message
    assert "set ONWARD_WEBHOOK_ALLOW on the worker" in error.message
    assert error.non_retryable and error.type == "WebhookFailed"
    assert hosts == []


@pytest.mark.parametrize(
    "allowed",
    ["127.0.0.1", "127.0.0.0/8", "hooks.example", "127.0.0.1:{port}", "hooks.example:{port}"],
)
async def test_an_allowed_receiver_gets_the_post_at_the_address_that_was_checked(
    receiver: tuple[int, list[str]], allowed: str
) -> None:
    port, hosts = receiver
    resolver = Resolver({"hooks.example": ["127.0.0.1"]})
    allow = AllowList.parse(allowed.format(port=port), "ONWARD_WEBHOOK_ALLOW")
    activities = WebhookActivities("secret", allow=allow, resolver=resolver)
    assert await deliver(activities, f"http://hooks.example:{port}/hook") == 204
    # One lookup, and the receiver saw the name it was addressed by.
    assert resolver.lookups == ["hooks.example"]
    assert hosts == [f"hooks.example:{port}"]


async def test_an_allowed_address_does_not_allow_others_of_the_same_name(
    receiver: tuple[int, list[str]],
) -> None:
    port, hosts = receiver
    resolver = Resolver({"hooks.example": ["127.0.0.1", "10.0.0.7"]})
    activities = WebhookActivities(
        "secret", allow=AllowList.parse("127.0.0.1", "ONWARD_WEBHOOK_ALLOW"), resolver=resolver
    )
    error = await refused(activities, f"http://hooks.example:{port}/hook")
    assert "10.0.0.7, a private address" in error.message
    assert hosts == []


async def test_an_address_allowed_at_one_port_is_refused_at_another(
    receiver: tuple[int, list[str]],
) -> None:
    port, hosts = receiver
    allow = AllowList.parse(f"127.0.0.1:{port + 1}, hooks.example:{port + 1}")
    resolver = Resolver({"hooks.example": ["127.0.0.1"]})
    activities = WebhookActivities("secret", allow=allow, resolver=resolver)
    for url in (f"http://127.0.0.1:{port}/hook", f"http://hooks.example:{port}/hook"):
        error = await refused(activities, url)
        assert "a loopback address" in error.message
    assert hosts == []


async def test_a_name_that_does_not_resolve_is_tried_again() -> None:
    activities = WebhookActivities("secret", resolver=Resolver({}))
    error = await refused(activities, "https://gone.example/hook")
    assert "cannot resolve gone.example" in error.message
    assert not error.non_retryable  # DNS may answer at the next attempt


class Unreachable(httpx.AsyncBaseTransport):
    """The network, except that connecting to ``address`` times out (a dead route)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.network = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == self.address:
            raise httpx.ConnectTimeout("timed out", request=request)
        return await self.network.handle_async_request(request)

    async def aclose(self) -> None:
        await self.network.aclose()


class Stalling(httpx.AsyncBaseTransport):
    """Every connection hangs (a route that drops packets), counting the attempts."""

    def __init__(self) -> None:
        self.attempts: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.attempts.append(request.url.host)
        await asyncio.sleep(60)
        raise AssertionError("unreachable")


async def test_many_unreachable_addresses_fail_the_attempt_within_its_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(webhooks, "WEBHOOK_POST_BUDGET_S", 0.5)
    stalling = Stalling()
    addresses = [f"127.0.0.{n}" for n in range(2, 8)]
    activities = WebhookActivities(
        "secret",
        allow=AllowList.parse("127.0.0.0/8", "ONWARD_WEBHOOK_ALLOW"),
        resolver=Resolver({"hooks.example": addresses}),
        transport=lambda: stalling,
    )
    started = time.monotonic()
    error = await refused(activities, "http://hooks.example:9/hook")
    # Cut off by the budget (not by Temporal's timeout), and retried.
    assert time.monotonic() - started < 5
    assert "no answer within 0.5 s (1 of 6 address(es) tried)" in error.message
    assert not error.non_retryable and stalling.attempts == ["127.0.0.2"]


async def test_a_resolver_that_does_not_answer_fails_the_attempt_within_its_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(webhooks, "WEBHOOK_POST_BUDGET_S", 0.3)

    async def silent(host: str, port: int) -> Sequence[str]:
        await asyncio.sleep(60)
        raise AssertionError("unreachable")

    activities = WebhookActivities("secret", resolver=silent)
    error = await refused(activities, "https://hooks.example/hook")
    assert "no answer from DNS for hooks.example within 0.3 s" in error.message
    assert not error.non_retryable


@pytest.mark.parametrize("first", ["refuses", "times out"])
async def test_an_address_that_cannot_be_reached_gives_way_to_the_next(
    receiver: tuple[int, list[str]], first: str
) -> None:
    port, hosts = receiver
    # Nothing listens on 127.0.0.2 (connection refused); the transport makes it time out.
    resolver = Resolver({"hooks.example": ["127.0.0.2", "127.0.0.1"]})
    activities = WebhookActivities(
        "secret",
        allow=AllowList.parse("127.0.0.0/8", "ONWARD_WEBHOOK_ALLOW"),
        resolver=resolver,
        transport=(lambda: Unreachable("127.0.0.2"))
        if first == "times out"
        else httpx.AsyncHTTPTransport,
    )
    assert await deliver(activities, f"http://hooks.example:{port}/hook") == 204
    assert hosts == [f"hooks.example:{port}"]


async def test_a_redirect_is_not_followed(receiver: tuple[int, list[str]]) -> None:
    port, hosts = receiver
    activities = WebhookActivities("secret", allow=AllowList.parse("127.0.0.1"))
    error = await refused(activities, f"http://127.0.0.1:{port}/moved")
    assert "webhook receiver answered 307" in error.message and error.non_retryable
    assert hosts == []


def private_ca(folder: Path, name: str) -> tuple[Path, Path, Path]:
    """A CA and a certificate it signs for ``name``: (CA file, certificate file, key file)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Onward test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


async def test_https_checks_the_certificate_against_the_name_not_the_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A receiver inside the network, with a private CA's certificate for its name.
    ca, cert, key = private_ca(tmp_path, "hooks.internal")
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    hosts: list[str] = []
    names = {"hooks.internal": ["127.0.0.1"], "other.internal": ["127.0.0.1"]}
    activities = WebhookActivities(
        "secret",
        allow=AllowList.parse("127.0.0.1", "ONWARD_WEBHOOK_ALLOW"),
        resolver=Resolver(names),
    )
    async with serving(hook_app(hosts), ssl_certfile=str(cert), ssl_keyfile=str(key)) as base:
        port = int(base.rsplit(":", 1)[1])
        assert await deliver(activities, f"https://hooks.internal:{port}/hook") == 204
        # The same address under a name its certificate does not carry: refused by TLS.
        error = await refused(activities, f"https://other.internal:{port}/hook")
    assert "CERTIFICATE_VERIFY_FAILED" in error.message or "certificate" in error.message
    assert hosts == [f"hooks.internal:{port}"]


def test_a_bad_allow_entry_names_the_variable_it_came_from() -> None:
    with pytest.raises(ValueError, match=r"ONWARD_WEBHOOK_ALLOW: '\*\.corp' is not an IP"):
        AllowList.from_env({"ONWARD_WEBHOOK_ALLOW": "*.corp"}, "ONWARD_WEBHOOK_ALLOW")
