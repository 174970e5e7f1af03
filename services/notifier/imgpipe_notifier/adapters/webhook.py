"""POSTs signed webhooks over HTTP: one attempt per call; the retry schedule is the handler's.

One subscriber host gets at most ``connections_per_host`` attempts on the wire at once: a subscriber that
accepts and never answers holds only those, and its other attempts wait for them inside their own
timeout. The pool has no limit across hosts (the notifier's concurrency bounds the attempts in flight),
so another subscriber's attempt never waits for a connection behind it. Give ``timeout`` a
``sock_connect`` for the TCP connect, not ``connect``, which in aiohttp also counts the wait for the pool.
"""

import aiohttp

from imgpipe_runtime.netpolicy import BlockedAddress, GuardedClient, InvalidUrl, NetPolicy, check_literal
from imgpipe_runtime.webhooks import sign_headers


class WebhookSender:
    def __init__(
        self, *, secret: str, timeout: aiohttp.ClientTimeout, policy: NetPolicy, connections_per_host: int = 8
    ) -> None:
        self._secret = secret
        self._policy = policy
        self._http = GuardedClient(policy, timeout, limit=0, limit_per_host=connections_per_host)

    async def close(self) -> None:
        await self._http.close()

    async def post(self, url: str, message_id: str, body: bytes) -> int | str:
        """The HTTP status of the subscriber's answer, or a short description of why there was none."""
        headers = {"Content-Type": "application/json", **sign_headers(self._secret, message_id, body)}
        try:
            check_literal(url, self._policy)
            async with self._http.session().post(url, data=body, headers=headers, allow_redirects=False) as response:
                return response.status
        except BlockedAddress as exc:
            return f"blocked_address: {exc}"
        except InvalidUrl as exc:
            return f"invalid_url: {exc}"
        except aiohttp.ClientConnectorDNSError as exc:
            return (
                f"blocked_address: {exc.os_error}" if isinstance(exc.os_error, BlockedAddress) else f"dns_error: {exc}"
            )
        except TimeoutError:
            return "timeout"
        except (aiohttp.ClientError, ConnectionError) as exc:
            return f"{exc.__class__.__name__}: {exc}"[:300]
        except ValueError as exc:  # yarl and the IDNA codec refuse some URLs late
            return f"invalid_url: {exc}"[:300]
