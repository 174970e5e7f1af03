"""Which network destinations imgpipe may connect to on a user's behalf (image sources, webhooks).

Only public unicast addresses, unless an allow-list entry names the destination: loopback, private,
link-local (169.254.169.254 included), multicast, reserved, unspecified, and their IPv6 and IPv4-mapped
forms are refused. The check is made on the addresses a host resolves to, and only those checked
addresses are handed to the HTTP client to connect to, so a second DNS answer cannot slip past it.
"""

import asyncio
import ipaddress
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class BlockedAddress(OSError):
    """The destination is not a public address and no allow-list entry names it."""


class InvalidUrl(ValueError):
    """Not an absolute http(s) URL with a host."""


@dataclass(frozen=True)
class NetPolicy:
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    endpoints: frozenset[tuple[str, int]] = field(default_factory=frozenset)

    @classmethod
    def parse(cls, allow: str) -> "NetPolicy":
        """``allow``: comma-separated CIDRs (``10.0.0.0/8``, ``::1/128``, ``127.0.0.1``) or ``host:port``."""
        networks, endpoints = [], set()
        for entry in (part.strip() for part in allow.split(",")):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            host, _, port = entry.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"allow-list entry {entry!r} is neither a CIDR nor host:port")
            endpoints.add((host.strip("[]").lower(), int(port)))
        return cls(tuple(networks), frozenset(endpoints))

    def permits(self, host: str, port: int, address: IPAddress) -> bool:
        if (host.lower(), port) in self.endpoints or (str(address), port) in self.endpoints:
            return True
        if any(address in network for network in self.networks):
            return True
        return is_public(address)

    def check(self, host: str, port: int, address: str) -> None:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if not self.permits(host, port, ip):
            raise BlockedAddress(f"{host}:{port} resolves to {ip}, which is not a public address")


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo or (None, None))[1]
        if embedded is not None:
            return is_public(embedded)
    return address.is_global and not address.is_multicast and not address.is_reserved


def invalid_host(host: str) -> str | None:
    """Why ``host`` can never be looked up (an empty label, a label over 63 characters), or None."""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        return None
    except ValueError:
        pass
    try:
        host.encode("idna")
    except UnicodeError as exc:
        return f"host {host[:100]!r} is not a valid name ({exc})"
    return None


def url_host_port(url: str) -> tuple[str, int]:
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise InvalidUrl(f"{url[:100]!r} is not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not host:
        raise InvalidUrl(f"{url[:100]!r} is not an absolute http(s) URL")
    if reason := invalid_host(host):
        raise InvalidUrl(f"{url[:100]!r}: {reason}")
    return host, port or (443 if parts.scheme == "https" else 80)


def check_literal(url: str, policy: NetPolicy) -> None:
    """The HTTP client connects to an IP-literal host without resolving it: check those here."""
    host, port = url_host_port(url)
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return
    policy.check(host, port, host)


async def check_url(url: str, policy: NetPolicy) -> None:
    """Resolves ``url``'s host and refuses it unless every address it resolves to is permitted."""
    host, port = url_host_port(url)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise BlockedAddress(f"{host} does not resolve: {exc}") from exc
    for *_, sockaddr in infos:
        policy.check(host, port, sockaddr[0])


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that returns only the addresses the policy permits, or raises BlockedAddress."""

    def __init__(self, policy: NetPolicy, resolver: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._resolver = resolver or DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._resolver.resolve(host, port, family)
        permitted = []
        refusal: BlockedAddress | None = None
        for result in results:
            try:
                self._policy.check(host.rstrip("."), port, result["host"])
                permitted.append(result)
            except BlockedAddress as exc:
                refusal = exc
        if not permitted:
            raise refusal or BlockedAddress(f"{host} has no address")
        return permitted

    async def close(self) -> None:
        await self._resolver.close()


def guarded_session(policy: NetPolicy, timeout: aiohttp.ClientTimeout) -> aiohttp.ClientSession:
    """An HTTP client session that can only connect to addresses ``policy`` permits (names resolved by
    GuardedResolver; IP literals must still be checked with check_literal before each request)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(resolver=GuardedResolver(policy)),
        timeout=timeout,
        headers={"User-Agent": "imgpipe/1.0"},
    )
