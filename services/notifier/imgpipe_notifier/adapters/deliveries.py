"""Webhook delivery attempts, recorded in MongoDB so that the status API can show them."""

from datetime import UTC, datetime

from pymongo.asynchronous.database import AsyncDatabase


class DeliveryLog:
    def __init__(self, db: AsyncDatabase) -> None:
        self._deliveries = db["deliveries"]

    async def record(self, webhook_id: str, request_id: str, url: str, outcome: int | str, state: str) -> None:
        now = datetime.now(UTC)
        await self._deliveries.update_one(
            {"_id": webhook_id},
            {
                "$set": {"request_id": request_id, "url": url, "state": state, "updated_at": now},
                "$setOnInsert": {"created_at": now},
                "$inc": {"attempt_count": 1},
                "$push": {"attempts": {"at": now, "outcome": outcome}},
            },
            upsert=True,
        )

    async def state(self, webhook_id: str) -> str | None:
        delivery = await self._deliveries.find_one({"_id": webhook_id}, {"state": 1})
        return delivery["state"] if delivery else None
