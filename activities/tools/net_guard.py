"""Which network addresses the worker connects to for others, and the allow-list that widens it.

Neither a model (``http_fetch``) nor a client of the HTTP API (a run's
``webhook_url``) may use the worker as a way into its own network (SSRF): the
loopback interface, private ranges, link-local addresses (where cloud metadata
services such as ``169.254.169.254`` answer), carrier-grade NAT and every other
non-public range are refused. IPv6 forms that carry an IPv4 address
(``::ffff:127.0.0.1``, 6to4, NAT64) are judged by that IPv4 address.

The check runs on the addresses a host name *resolves to*, and the caller then
connects to exactly those addresses, so a name that resolves to a public
address when checked and to ``127.0.0.1`` when connecting (DNS rebinding) gets
nowhere (:func:`pinned_request` builds such a request). Everything here is pure
except :func:`resolve`.

``ONWARD_HTTP_ALLOW`` (``http_fetch``) and ``ONWARD_WEBHOOK_ALLOW`` (webhooks)
list exceptions, comma-separated: exact IP addresses (``127.0.0.1`` allows
that address only), CIDR ranges (``10.20.0.0/16``) and host names
(``wiki.internal`` allows that name, whatever it resolves to).
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)
from typing import Any

import httpx

__all__ = [
    "ALLOW_ENV",
    "AddressRefused",
    "AllowList",
    "IPAddress",
    "Resolver",
    "allowed_addresses",
    "blocked_reason",
    "parse_ip",
    "pinned_request",
    "refusal",
    "resolve",
    "unmap",
]

ALLOW_ENV = "ONWARD_HTTP_ALLOW"
"""Environment variable the worker reads the allow-list from, at startup."""

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""``(host, port) -> addresses``; injectable so tests never depend on real DNS."""

_V4_BLOCKS: tuple[tuple[IPv4Network, str], ...] = tuple(
    (IPv4Network(cidr), reason)
    for cidr, reason in (
        # Connecting to 0.0.0.0 reaches the local host on Linux.
        ("0.0.0.0/8", "an unspecified ('this network') address"),
        ("127.0.0.0/8", "a loopback address"),
        ("10.0.0.0/8", "a private address"),
        ("172.16.0.0/12", "a private address"),
        ("192.168.0.0/16", "a private address"),
        ("169.254.0.0/16", "a link-local address (where cloud metadata services answer)"),
        ("100.64.0.0/10", "a shared (carrier-grade NAT) address"),
        ("224.0.0.0/4", "a multicast address"),
        ("255.255.255.255/32", "a broadcast address"),
        ("240.0.0.0/4", "a reserved address"),
    )
)
_V6_BLOCKS: tuple[tuple[IPv6Network, str], ...] = tuple(
    (IPv6Network(cidr), reason)
    for cidr, reason in (
        ("::1/128", "a loopback address"),
        ("::/128", "an unspecified address"),
        ("fc00::/7", "a private (unique local) address"),
        ("fe80::/10", "a link-local address"),
        ("fec0::/10", "a site-local address"),
        ("ff00::/8", "a multicast address"),
    )
)
_NAT64 = IPv6Network("64:ff9b::/96")
"""Well-known NAT64 prefix: the last 32 bits are the IPv4 address actually reached."""

_HOST_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?$")


def parse_ip(text: str) -> IPAddress | None:
    """The address if ``text`` is an IP literal (brackets allowed), else None."""
    try:
        return ip_address(text.removeprefix("[").removesuffix("]"))
    except ValueError:
        return None


def unmap(address: IPAddress) -> IPAddress:
    """``::ffff:a.b.c.d`` is IPv4 ``a.b.c.d`` on the wire: check and connect to that."""
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def blocked_reason(address: IPAddress) -> str | None:
    """Why ``address`` is not public (``"a loopback address"``), or None when it is."""
    address = unmap(address)
    if isinstance(address, IPv4Address):
        for network, reason in _V4_BLOCKS:
            if address in network:
                return reason
        return None if address.is_global else "a reserved (non-public) address"
    for v6_network, reason in _V6_BLOCKS:
        if address in v6_network:
            return reason
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        inner = blocked_reason(embedded)
        return None if inner is None else f"a form of {embedded}, {inner}"
    # Python counts some reserved ranges (the IPv4-compatible ::/96, say) as global.
    if not address.is_global or address.is_reserved:
        return "a reserved (non-public) address"
    return None


def _embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return IPv4Address(int(address) & 0xFFFFFFFF)
    return None


@dataclass(frozen=True)
class AllowList:
    """Addresses, ranges and host names a guarded connection may reach despite the guard.

    Empty by default: only public addresses. Build it once at worker startup
    with :meth:`from_env` and hand it to ``make_http_fetch`` (``ONWARD_HTTP_ALLOW``)
    or the webhook activities (``ONWARD_WEBHOOK_ALLOW``). An entry with a port
    (``127.0.0.1:8080``, ``[::1]:8080``, ``hooks.internal:443``) allows that
    port only; without one, every port.
    """

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = field(default_factory=frozenset)
    network_ports: tuple[tuple[IPNetwork, int], ...] = ()
    """Ranges (and addresses) allowed at one port each."""
    host_ports: frozenset[tuple[str, int]] = field(default_factory=frozenset)
    """Host names allowed at one port each."""

    @classmethod
    def parse(cls, text: str | None, setting: str = ALLOW_ENV) -> AllowList:
        """Parse ``"127.0.0.1, 10.20.0.0/16, wiki.internal, [::1]:8080, hooks.internal:443"``.

        Raises:
            ValueError: an entry is none of an IP address, a CIDR range or a host
                name (each with a port or not); the message names ``setting``,
                where the text came from.
        """
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        network_ports: list[tuple[IPNetwork, int]] = []
        host_ports: set[tuple[str, int]] = set()
        for raw in (text or "").split(","):
            entry = raw.strip()
            if not entry:
                continue
            target, port = _split_port(entry, setting)
            allowed = _allowed_target(target)
            if allowed is None:
                raise ValueError(
                    f"{setting}: {entry!r} is not an IP address, a CIDR range or a host name "
                    "(with a port or not)"
                )
            if isinstance(allowed, str):
                if port is None:
                    hosts.add(allowed)
                else:
                    host_ports.add((allowed, port))
            elif port is None:
                networks.append(allowed)
            else:
                network_ports.append((allowed, port))
        return cls(
            networks=tuple(networks),
            hosts=frozenset(hosts),
            network_ports=tuple(network_ports),
            host_ports=frozenset(host_ports),
        )

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, variable: str = ALLOW_ENV
    ) -> AllowList:
        """The allow-list in ``variable`` (``ONWARD_HTTP_ALLOW``); call it at startup."""
        env = os.environ if environ is None else environ
        return cls.parse(env.get(variable), variable)

    def allows_host(self, host: str, port: int | None = None) -> bool:
        """True when ``host`` is a listed host name, at ``port`` if the entry names one
        (an IP literal never matches here)."""
        name = host.lower().rstrip(".")
        return name in self.hosts or (port is not None and (name, port) in self.host_ports)

    def allows_address(self, address: IPAddress, port: int | None = None) -> bool:
        """True when ``address`` is in a listed address or range, at ``port`` if the
        entry names one."""
        address = unmap(address)
        if any(address in network for network in self.networks):
            return True
        return port is not None and any(
            address in network and port == allowed for network, allowed in self.network_ports
        )


def _split_port(entry: str, setting: str) -> tuple[str, int | None]:
    """``entry`` without its port, and the port (None: none given)."""
    if entry.startswith("["):  # [IPv6]:port, [IPv6/len]:port, or [IPv6]
        inside, bracket, rest = entry[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"{setting}: {entry!r}: an IPv6 entry is [address]:port")
        return inside, _port(rest[1:], entry, setting) if rest else None
    target, _, port = entry.partition(":")
    if entry.count(":") != 1 or not port.isdigit():  # no port, a bare IPv6 address or range,
        return entry, None  # or no entry at all ("http://x"), which the caller refuses
    return target, _port(port, entry, setting)


def _port(text: str, entry: str, setting: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65_536:
        raise ValueError(f"{setting}: {entry!r}: the port must be a number from 1 to 65535")
    return int(text)


def _allowed_target(target: str) -> IPNetwork | str | None:
    """An address or range as a network, a host name lowered, or None: neither.

    A zone id (``fe80::1%eth0``) is refused: the guard matches addresses without
    one, so it would allow the address on every interface (and ``%eth0:80``, meant
    as a port, would be taken as part of the zone).
    """
    if "%" in target:
        return None
    single = parse_ip(target)
    if single is not None:
        return ip_network(unmap(single))
    try:
        # strict=False: "192.168.1.10/24" means that address's /24, as people write it.
        return ip_network(target, strict=False)
    except ValueError:
        pass
    name = target.lower().rstrip(".")
    if "/" in target or re.fullmatch(r"[0-9.]+", name) or not _HOST_NAME.match(name):
        return None
    return name


def refusal(
    host: str, addresses: Iterable[IPAddress], allow: AllowList, port: int | None = None
) -> str | None:
    """Why connecting to ``host`` at ``addresses`` (on ``port``) is refused, or None
    when it is allowed.

    Every address must pass, not just one: the connection may go to any of them.
    """
    if allow.allows_host(host, port):
        return None
    literal = parse_ip(host)
    for address in addresses:
        reason = blocked_reason(address)
        if reason is None or allow.allows_address(address, port):
            continue
        target = unmap(address)
        shown = str(address) if target == address else f"{address} (IPv4 {target})"
        if literal is not None:
            return f"{shown} is {reason}"
        return f"{host} resolves to {shown}, {reason}"
    return None


async def resolve(host: str, port: int) -> Sequence[str]:
    """Addresses of ``host`` in the resolver's order, without repeats.

    Through the event loop's ``getaddrinfo`` (a thread), so a slow DNS server
    does not block the worker.
    """
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class AddressRefused(Exception):
    """The guard does not let the worker connect to a host; ``str()`` says why."""


async def allowed_addresses(
    host: str, port: int, allow: AllowList, resolver: Resolver = resolve
) -> list[IPAddress]:
    """Where to connect for ``host``: every address it resolves to, each one allowed.

    ``host`` is as sent to DNS (IDNA-encoded, an IPv6 address without
    brackets); an IP literal is its own address. The addresses come back in the
    resolver's order, IPv4-mapped forms as IPv4, without repeats: connect to
    these, not to the name, or the name could resolve elsewhere in between.

    Raises:
        OSError: the name does not resolve, or resolves to no address.
        AddressRefused: an address is neither public nor allowed.
    """
    literal = parse_ip(host)
    if literal is not None:
        addresses = [literal]
    else:
        parsed = [parse_ip(item) for item in await resolver(host, port)]
        addresses = [item for item in parsed if item is not None]
        if not addresses:
            raise OSError("no addresses")
    reason = refusal(host, addresses, allow, port)
    if reason is not None:
        raise AddressRefused(reason)
    return list(dict.fromkeys(unmap(item) for item in addresses))


def pinned_request(
    client: httpx.AsyncClient,
    method: str,
    url: httpx.URL,
    address: IPAddress,
    headers: Mapping[str, str],
    content: bytes | None = None,
) -> httpx.Request:
    """``method url`` sent to ``address``, one of :func:`allowed_addresses`.

    The request's URL names the checked address, so that is where httpx
    connects; ``Host`` and, over HTTPS, the TLS server name and certificate
    check keep the URL's own name. Send it with a client of its own: a pooled
    connection is keyed by the address and could carry another name's request.

    Raises:
        ValueError, httpx.HTTPError: the request cannot be built.
    """
    host = url.raw_host.decode("ascii")
    tls_name: dict[str, Any] = {}
    if url.scheme == "https" and parse_ip(host) is None:
        tls_name["sni_hostname"] = host
    return client.build_request(
        method,
        url.copy_with(host=str(address)),
        headers={**headers, "Host": url.netloc.decode("ascii")},
        content=content,
        extensions=tls_name,
    )
