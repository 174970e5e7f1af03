"""Downloads source images over HTTP with timeouts and a byte cap enforced while streaming."""

import asyncio

import aiohttp
from yarl import URL
from imgpipe_runtime.netpolicy import BlockedAddress, GuardedClient, InvalidUrl, NetPolicy, check_literal
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_random_exponential


class FetchFailed(Exception):
    def __init__(self, code: str, message: str, *, transient: bool, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.transient = transient
        self.retry_after_s = retry_after_s


MAX_RETRY_AFTER_S = 30.0


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header in its delay-seconds form, capped; None for dates or garbage."""
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER_S) if value else None
    except ValueError:
        return None


class Downloader:
    def __init__(
        self,
        *,
        max_bytes: int,
        timeout: aiohttp.ClientTimeout,
        policy: NetPolicy,
        max_redirects: int = 5,
        attempts: int = 3,
        backoff_s: float = 0.2,
    ) -> None:
        self._http = GuardedClient(policy, timeout)
        self._policy = policy
        self._max_redirects = max_redirects
        self._max_bytes = max_bytes
        self._attempts = attempts
        self._backoff_s = backoff_s

    async def fetch(self, url: str) -> bytes:
        """The body of ``url``; transient failures are retried with backoff, then FetchFailed."""
        backoff = wait_random_exponential(multiplier=self._backoff_s, max=5)

        def wait(state: RetryCallState) -> float:
            asked = getattr(state.outcome.exception(), "retry_after_s", None)
            return asked if asked is not None else backoff(state)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait,
            retry=retry_if_exception(lambda exc: isinstance(exc, FetchFailed) and exc.transient),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._fetch_once(url)
        raise AssertionError("unreachable")

    async def close(self) -> None:
        await self._http.close()

    async def _fetch_once(self, url: str) -> bytes:
        """Follows redirects itself, so that every hop's destination is checked against the policy."""
        for _ in range(self._max_redirects + 1):
            location = await self._get(url)
            if isinstance(location, bytes):
                return location
            url = location
        raise FetchFailed("too_many_redirects", f"more than {self._max_redirects} redirects", transient=False)

    async def _get(self, url: str) -> bytes | str:
        """The body, or the absolute URL a redirect points to."""
        try:
            check_literal(url, self._policy)
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
                declared = response.content_length
                if declared is not None and declared > self._max_bytes:
                    raise FetchFailed("too_large", f"{declared} bytes declared; the cap is {self._max_bytes}", transient=False)
                body = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    body.extend(chunk)
                    if len(body) > self._max_bytes:
                        raise FetchFailed("too_large", f"more than {self._max_bytes} bytes", transient=False)
                return bytes(body)
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
        except (asyncio.TimeoutError, TimeoutError) as exc:
            raise FetchFailed("timeout", f"{url}: timed out", transient=True) from exc
        except (aiohttp.InvalidURL, ValueError) as exc:  # yarl and the IDNA codec refuse some URLs late
            raise FetchFailed("invalid_url", f"{url}: invalid URL ({exc})", transient=False) from exc
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise FetchFailed("connection_error", f"{url}: {exc.__class__.__name__}: {exc}", transient=True) from exc
