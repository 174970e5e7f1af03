"""Which network destinations imgpipe may connect to on a user's behalf (image sources, webhooks).

Only public unicast addresses, unless an allow-list entry names the destination: loopback, private,
link-local (169.254.169.254 included), multicast, reserved, unspecified, and their IPv6 and IPv4-mapped
forms are refused. The check is made on the addresses a host resolves to, and only those checked
addresses are handed to the HTTP client to connect to, so a second DNS answer cannot slip past it.

The host judged is the host the HTTP client connects to, after its own parsing and IDNA (UTS-46)
normalisation: ``http://１２７．０．０．１/`` and ``http://127。0。0。1/`` are the IPv4 literal 127.0.0.1 to
aiohttp, which connects to a literal without asking any resolver, so the connector itself checks
literals (GuardedConnector) and the upload-time checks read the host through yarl as aiohttp does.
"""

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from aiohttp.tracing import Trace
from yarl import URL

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


def ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def invalid_host(host: str) -> str | None:
    """Why ``host`` can never be looked up (an empty label, a label over 63 characters), or None."""
    if ip_literal(host) is not None:
        return None
    try:
        host.encode("idna")
    except UnicodeError as exc:
        return f"host {host[:100]!r} is not a valid name ({exc})"
    return None


def _read_url(url: str) -> tuple[str, int] | str:
    try:
        parsed = URL(url)
        host, port = parsed.host, parsed.port
    except ValueError as exc:  # UnicodeError (IDNA) is a ValueError
        return f"malformed URL ({str(exc)[:200]})"
    if parsed.scheme not in ("http", "https"):
        return "not an http(s) URL"
    if not host:
        return "URL has no host"
    if reason := invalid_host(host):
        return reason
    return host, port or (443 if parsed.scheme == "https" else 80)


def url_problem(url: str) -> str | None:
    """Why ``url`` is not an absolute http(s) URL with a host that can be looked up, or None."""
    read = _read_url(url)
    return read if isinstance(read, str) else None


def url_host_port(url: str) -> tuple[str, int]:
    """The host and port the HTTP client will connect to for ``url`` (yarl's parsing, as aiohttp's), or
    InvalidUrl: the one reading of a URL that every policy check uses."""
    read = _read_url(url)
    if isinstance(read, str):
        raise InvalidUrl(f"{url[:100]!r}: {read}")
    return read


def check_literal(url: str, policy: NetPolicy) -> None:
    """Refuses ``url`` when the client would connect to a non-permitted IP literal; names are the resolver's."""
    host, port = url_host_port(url)
    if ip_literal(host) is not None:
        policy.check(host, port, host)


async def check_url(url: str, policy: NetPolicy) -> None:
    """Resolves ``url``'s host and refuses it unless every address it resolves to is permitted."""
    host, port = url_host_port(url)
    if ip_literal(host) is not None:
        policy.check(host, port, host)
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise BlockedAddress(f"{host} does not resolve: {exc}") from exc
    for *_, sockaddr in infos:
        policy.check(host, port, str(sockaddr[0]))


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that returns only the addresses the policy permits, or raises BlockedAddress."""

    def __init__(self, policy: NetPolicy, resolver: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._resolver = resolver or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
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


class GuardedConnector(aiohttp.TCPConnector):
    """A connector that judges every host it is about to connect to: names through GuardedResolver, and
    IP literals (which aiohttp never hands to a resolver) here, on the host string it really uses."""

    def __init__(self, policy: NetPolicy, **kwargs: Any) -> None:
        super().__init__(resolver=GuardedResolver(policy), **kwargs)
        self._policy = policy

    async def _resolve_host(self, host: str, port: int, traces: Sequence[Trace] | None = None) -> list[ResolveResult]:
        if ip_literal(host) is not None:
            self._policy.check(host, port, host)
        elif ":" in host:  # aiohttp takes it for an IPv6 literal and asks no resolver: refuse what we cannot read
            raise BlockedAddress(f"{host[:100]} is not an address that can be checked")
        return await super()._resolve_host(host, port, traces=traces)


def guarded_session(policy: NetPolicy, timeout: aiohttp.ClientTimeout, **pool: int) -> aiohttp.ClientSession:
    """An HTTP client session that can only connect to addresses ``policy`` permits, on every request
    and every redirect hop, whatever the URL's spelling. ``pool``: the connector's ``limit`` and
    ``limit_per_host``."""
    return aiohttp.ClientSession(
        connector=GuardedConnector(policy, **pool),
        timeout=timeout,
        headers={"User-Agent": "imgpipe/1.0"},
    )


class GuardedClient:
    """An adapter's one guarded session, opened on first use: an aiohttp session belongs to the event loop it
    was created in, and an adapter is built before its service's loop runs."""

    def __init__(self, policy: NetPolicy, timeout: aiohttp.ClientTimeout, **pool: int) -> None:
        self._policy = policy
        self._timeout = timeout
        self._pool = pool
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = guarded_session(self._policy, self._timeout, **self._pool)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
