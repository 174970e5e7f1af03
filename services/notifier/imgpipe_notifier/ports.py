"""The notifier's adapters as its handlers see them (adapters/ implements them; tests fake them)."""

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from imgpipe_bus import Consumed

Delivery = dict[str, Any]


class Deliveries(Protocol):
    async def open(
        self, webhook_id: str, request_id: str, url: str, body: bytes, letter: Consumed, now: datetime, lease_s: float
    ) -> Delivery | None: ...

    async def claim_due(
        self, clock: Callable[[], datetime], lease_s: float, limit: int
    ) -> list[tuple[Delivery, datetime]]: ...

    async def reopen(self, webhook_id: str, letter: Consumed, now: datetime, lease_s: float) -> Delivery | None: ...

    async def record(
        self,
        webhook_id: str,
        replay: int,
        outcome: int | str,
        state: str,
        now: datetime,
        next_attempt_at: datetime | None = None,
    ) -> None: ...


class WebhookPoster(Protocol):
    async def post(self, url: str, message_id: str, body: bytes) -> int | str: ...
