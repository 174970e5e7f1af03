"""Downloads source images over HTTP with timeouts, a byte cap enforced while streaming, and the bytes
reserved from the worker's ByteBudget until the caller has done with them. Every HTTP request first takes
a slot of its host and one of the worker (see shares), so that one host cannot take every connection
and no request waits inside the HTTP client's pool, where its connect timeout would be spent waiting."""

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from yarl import URL

from imgpipe_image_worker.budgets import ByteBudget, Reservation
from imgpipe_image_worker.shares import KeyedSlots
from imgpipe_runtime.netpolicy import (
    BlockedAddress,
    GuardedClient,
    InvalidUrl,
    NetPolicy,
    check_literal,
    url_host_port,
)


class FetchFailed(Exception):
    def __init__(self, code: str, message: str, *, transient: bool, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.transient = transient
        self.retry_after_s = retry_after_s


MAX_RETRY_AFTER_S = 30.0
MAX_BACKOFF_S = 5.0


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header in its delay-seconds form, capped; None for dates or garbage."""
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER_S) if value else None
    except ValueError:
        return None


class Downloader:
    """``bytes_in_flight`` is the worker's one memory budget for source bytes (see budgets); it must hold at
    least one image of ``max_bytes``. ``connections`` HTTP requests are in flight at once, at most
    ``connections_per_host`` of them to one host and port. ``timeout`` applies to each HTTP request once
    it has its slots: give it ``sock_connect`` for the TCP connect, not ``connect``, which in aiohttp
    also counts the wait for the pool."""

    def __init__(
        self,
        *,
        max_bytes: int,
        timeout: aiohttp.ClientTimeout,
        policy: NetPolicy,
        bytes_in_flight: ByteBudget,
        max_redirects: int = 5,
        attempts: int = 3,
        backoff_s: float = 0.2,
        connections: int = 200,
        connections_per_host: int = 100,
    ) -> None:
        if max_bytes > bytes_in_flight.capacity:
            raise ValueError(f"a budget of {bytes_in_flight.capacity} bytes cannot hold one image of {max_bytes}")
        connections_per_host = min(connections_per_host, connections)
        self._http = GuardedClient(policy, timeout, limit=connections, limit_per_host=connections_per_host)
        self._hosts = KeyedSlots(connections_per_host)
        self._connections = asyncio.Semaphore(connections)
        self._policy = policy
        self._max_redirects = max_redirects
        self._max_bytes = max_bytes
        self._budget = bytes_in_flight
        self._attempts = attempts
        self._backoff_s = backoff_s

    @asynccontextmanager
    async def fetch(self, url: str, deadline: float | None = None) -> AsyncIterator[bytes]:
        """The body of ``url``, its bytes reserved from the budget until the block ends. Transient failures
        are retried with backoff (or the Retry-After the source asked for), then FetchFailed.

        ``deadline`` (the event loop's clock) is when the caller stops waiting: a retry whose wait would
        end past it is not waited for, the last failure is raised at once. The caller bounds the attempt
        in flight itself (asyncio.timeout_at), so that every hop and every wait counts against one limit."""
        body, reservation = await self._fetch_with_retries(url, deadline)
        try:
            yield body
        finally:
            reservation.release()

    async def close(self) -> None:
        await self._http.close()

    async def _fetch_with_retries(self, url: str, deadline: float | None) -> tuple[bytes, Reservation]:
        loop = asyncio.get_running_loop()
        for attempt in range(1, self._attempts + 1):
            try:
                return await self._fetch_once(url)
            except FetchFailed as exc:
                if not exc.transient or attempt == self._attempts:
                    raise
                wait = exc.retry_after_s
                if wait is None:
                    wait = random.uniform(0, min(MAX_BACKOFF_S, self._backoff_s * 2 ** (attempt - 1)))
                if deadline is not None and loop.time() + wait >= deadline:
                    raise
                await asyncio.sleep(wait)
        raise AssertionError("unreachable")

    async def _fetch_once(self, url: str) -> tuple[bytes, Reservation]:
        """Follows redirects itself, so that every hop's destination is checked against the policy."""
        for _ in range(self._max_redirects + 1):
            location = await self._get(url)
            if not isinstance(location, str):
                return location
            url = location
        raise FetchFailed("too_many_redirects", f"more than {self._max_redirects} redirects", transient=False)

    async def _get(self, url: str) -> tuple[bytes, Reservation] | str:
        """The body and its reservation, or the absolute URL a redirect points to."""
        try:
            check_literal(url, self._policy)
            # Host first, then the worker: a request waiting for its host's slot holds none of the worker's.
            async with self._hosts.hold(url_host_port(url)), self._connections:
                return await self._request(url)
        except FetchFailed:
            raise
        except BlockedAddress as exc:
            raise FetchFailed("blocked_address", str(exc), transient=False) from exc
        except InvalidUrl as exc:
            raise FetchFailed("invalid_url", str(exc), transient=False) from exc
        except aiohttp.ClientConnectorDNSError as exc:
            if isinstance(exc.os_error, BlockedAddress):
                raise FetchFailed("blocked_address", str(exc.os_error), transient=False) from exc
            raise FetchFailed("dns_error", f"{url}: host not found", transient=False) from exc
        except TimeoutError as exc:
            raise FetchFailed("timeout", f"{url}: timed out", transient=True) from exc
        except (aiohttp.InvalidURL, ValueError) as exc:  # yarl and the IDNA codec refuse some URLs late
            raise FetchFailed("invalid_url", f"{url}: invalid URL ({exc})", transient=False) from exc
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise FetchFailed("connection_error", f"{url}: {exc.__class__.__name__}: {exc}", transient=True) from exc

    async def _request(self, url: str) -> tuple[bytes, Reservation] | str:
        async with self._http.session().get(url, allow_redirects=False) as response:
            if response.status in (301, 302, 303, 307, 308) and "Location" in response.headers:
                return str(response.url.join(URL(response.headers["Location"])))
            if response.status >= 400:
                transient = response.status >= 500 or response.status in (408, 429)
                raise FetchFailed(
                    f"http_{response.status}",
                    f"{url} answered HTTP {response.status}",
                    transient=transient,
                    retry_after_s=retry_after(response.headers.get("Retry-After")) if transient else None,
                )
            return await self._read(response)

    async def _read(self, response: aiohttp.ClientResponse) -> tuple[bytes, Reservation]:
        """Reserves the declared length, or the cap when the length is unknown (none declared, or a
        content encoding that the client decodes), and never holds more than it reserved."""
        declared = response.content_length
        if declared is not None and declared > self._max_bytes:
            raise FetchFailed("too_large", f"{declared} bytes declared; the cap is {self._max_bytes}", transient=False)
        encoded = response.headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity")
        reservation = await self._budget.reserve(self._max_bytes if declared is None or encoded else declared)
        try:
            body = bytearray()
            async for chunk in response.content.iter_chunked(64 * 1024):
                if len(body) + len(chunk) > reservation.amount:
                    if reservation.amount < self._max_bytes:
                        message = f"{response.url}: longer than its Content-Length"
                        raise FetchFailed("connection_error", message, transient=True)
                    raise FetchFailed("too_large", f"more than {self._max_bytes} bytes", transient=False)
                body.extend(chunk)
            reservation.shrink(len(body))
            return bytes(body), reservation
        except BaseException:
            reservation.release()
            raise
