"""POSTs signed webhooks over HTTP, retrying transient failures with exponential backoff and jitter."""

import asyncio
import logging

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from imgpipe_runtime.webhooks import sign_headers

log = logging.getLogger(__name__)


class DeliveryFailed(Exception):
    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class WebhookSender:
    def __init__(self, *, secret: str, timeout: aiohttp.ClientTimeout, attempts: int, backoff_s: float) -> None:
        self._secret = secret
        self._timeout = timeout
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers={"User-Agent": "imgpipe/1.0"})
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(self, url: str, message_id: str, body: bytes) -> int:
        """Delivers ``body`` with the same ``webhook-id`` on every attempt; returns the attempts it took."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_random_exponential(multiplier=self._backoff_s, max=30),
            retry=retry_if_exception(lambda exc: isinstance(exc, DeliveryFailed) and exc.transient),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await self._post(url, message_id, body)
                return attempt.retry_state.attempt_number
        raise AssertionError("unreachable")

    async def _post(self, url: str, message_id: str, body: bytes) -> None:
        headers = {"Content-Type": "application/json", **sign_headers(self._secret, message_id, body)}
        try:
            async with self._client().post(url, data=body, headers=headers, allow_redirects=False) as response:
                if 200 <= response.status < 300:
                    return
                transient = response.status >= 500 or response.status in (408, 429)
                raise DeliveryFailed(f"{url} answered HTTP {response.status}", transient=transient)
        except (asyncio.TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
            raise DeliveryFailed(f"{url}: {exc.__class__.__name__}: {exc}", transient=True) from exc
