"""Webhook deliveries in MongoDB: the retry schedule (who is due when) and every attempt, which the status
API shows (its reader, and the indexes, are in imgpipe_runtime.documents).

A delivery's ``replays`` is the replay count of the completion it was last opened by (see
``imgpipe dlq replay``); each attempt records the ``replay`` it belongs to, so that a replayed delivery
starts its retry schedule again while keeping the earlier attempts."""

from collections.abc import Callable
from datetime import datetime, timedelta

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from imgpipe_bus import Consumed
from imgpipe_runtime.documents import DELIVERIES

PENDING, RETRYING, DELIVERED, GONE, FAILED = "pending", "retrying", "delivered", "gone", "failed"
OPEN = [PENDING, RETRYING]
REOPENABLE = [FAILED, GONE]


class DeliveryLog:
    def __init__(self, db: AsyncDatabase) -> None:
        self._deliveries = db[DELIVERIES]

    async def open(
        self, webhook_id: str, request_id: str, url: str, body: bytes, letter: Consumed, now: datetime, lease_s: float
    ) -> dict | None:
        """Records a new delivery, leased to the caller for its first attempt; None if it exists already."""
        delivery = {
            "_id": webhook_id,
            "request_id": request_id,
            "url": url,
            "body": body,
            "letter": letter.to_document(),
            "replays": letter.replays,
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

    async def claim_due(self, clock: Callable[[], datetime], lease_s: float, limit: int) -> list[tuple[dict, datetime]]:
        """Up to ``limit`` open deliveries whose next attempt is due, each leased to the caller, with the
        time of its claim. Each claim reads ``clock`` anew: its lease runs from when it was taken, not
        from when the caller started, so a slow pass never holds a lease that has already run out."""
        claimed: list[tuple[dict, datetime]] = []
        while len(claimed) < limit:
            now = clock()
            delivery = await self._deliveries.find_one(
                {"state": {"$in": OPEN}, "next_attempt_at": {"$lte": now}}, sort=[("next_attempt_at", 1)]
            )
            if delivery is None:
                break
            # Taken only if no other notifier took it since the read (a compare-and-set, not
            # find_one_and_update, which the embedded database serves with a scan).
            lease = now + timedelta(seconds=lease_s)
            taken = await self._deliveries.update_one(
                {"_id": delivery["_id"], "state": delivery["state"], "next_attempt_at": delivery["next_attempt_at"]},
                {"$set": {"next_attempt_at": lease}},
            )
            if taken.modified_count:
                claimed.append(({**delivery, "next_attempt_at": lease}, now))
        return claimed

    async def reopen(self, webhook_id: str, letter: Consumed, now: datetime, lease_s: float) -> dict | None:
        """The failed (or gone) delivery of a completion replayed ``letter.replays`` times, opened again and
        leased to the caller; None when it is still open, was delivered (a subscriber that answered 2xx has
        it), or has already been reopened by this replay (the replayed message delivered twice)."""
        reopened = await self._deliveries.update_one(
            # replays missing or below this replay's count, without a top-level $or (see documents.INDEXES)
            {"_id": webhook_id, "state": {"$in": REOPENABLE}, "replays": {"$not": {"$gte": letter.replays}}},
            {
                "$set": {
                    "state": PENDING,
                    "letter": letter.to_document(),
                    "replays": letter.replays,
                    "next_attempt_at": now + timedelta(seconds=lease_s),
                    "updated_at": now,
                }
            },
        )
        return await self._deliveries.find_one({"_id": webhook_id}) if reopened.modified_count else None

    async def record(
        self,
        webhook_id: str,
        replay: int,
        outcome: int | str,
        state: str,
        now: datetime,
        next_attempt_at: datetime | None = None,
    ) -> None:
        await self._deliveries.update_one(
            {"_id": webhook_id},
            {
                "$set": {"state": state, "next_attempt_at": next_attempt_at, "updated_at": now},
                "$push": {"attempts": {"at": now, "outcome": outcome, "replay": replay}},
            },
        )


def this_round(delivery: dict) -> list[dict]:
    """The attempts made since the delivery was last opened (by its completion or a replay of it)."""
    replays = delivery.get("replays", 0)
    return [attempt for attempt in delivery["attempts"] if attempt.get("replay", 0) == replays]
