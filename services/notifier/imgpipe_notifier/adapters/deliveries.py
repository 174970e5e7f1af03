"""Webhook deliveries in MongoDB: the retry schedule (who is due when) and every attempt, which the status
API shows (its reader, and the indexes, are in imgpipe_runtime.documents)."""

from collections.abc import Callable
from datetime import datetime, timedelta

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from imgpipe_bus import Letter
from imgpipe_runtime.documents import DELIVERIES

PENDING, RETRYING, DELIVERED, GONE, FAILED = "pending", "retrying", "delivered", "gone", "failed"
OPEN = [PENDING, RETRYING]


class DeliveryLog:
    def __init__(self, db: AsyncDatabase) -> None:
        self._deliveries = db[DELIVERIES]

    async def open(
        self, webhook_id: str, request_id: str, url: str, body: bytes, letter: Letter, now: datetime, lease_s: float
    ) -> dict | None:
        """Records a new delivery, leased to the caller for its first attempt; None if it exists already."""
        delivery = {
            "_id": webhook_id,
            "request_id": request_id,
            "url": url,
            "body": body,
            "letter": letter.to_document(),
            "state": PENDING,
            "attempts": [],
            "next_attempt_at": now + timedelta(seconds=lease_s),
            "created_at": now,
            "updated_at": now,
        }
        try:
            await self._deliveries.insert_one(delivery)
        except DuplicateKeyError:
            return None
        return delivery

    async def claim_due(
        self, clock: Callable[[], datetime], lease_s: float, limit: int
    ) -> list[tuple[dict, datetime]]:
        """Up to ``limit`` open deliveries whose next attempt is due, each leased to the caller, with the
        time of its claim. Each claim reads ``clock`` anew: its lease runs from when it was taken, not
        from when the caller started, so a slow pass never holds a lease that has already run out."""
        claimed = []
        while len(claimed) < limit:
            now = clock()
            delivery = await self._deliveries.find_one_and_update(
                {"state": {"$in": OPEN}, "next_attempt_at": {"$lte": now}},
                {"$set": {"next_attempt_at": now + timedelta(seconds=lease_s)}},
                sort=[("next_attempt_at", 1)],
                return_document=ReturnDocument.AFTER,
            )
            if delivery is None:
                break
            claimed.append((delivery, now))
        return claimed

    async def record(
        self, webhook_id: str, outcome: int | str, state: str, now: datetime, next_attempt_at: datetime | None = None
    ) -> None:
        await self._deliveries.update_one(
            {"_id": webhook_id},
            {
                "$set": {"state": state, "next_attempt_at": next_attempt_at, "updated_at": now},
                "$push": {"attempts": {"at": now, "outcome": outcome}},
            },
        )
