"""Idempotency-Key claims: one request id per key, remembered with a digest of what was uploaded."""

from datetime import UTC, datetime

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError


class IdempotencyKeys:
    def __init__(self, db: AsyncDatabase) -> None:
        self._keys = db["idempotency_keys"]

    async def claim(self, key: str, digest: str, request_id: str) -> dict:
        """Claims ``key`` for ``request_id``; if it was claimed before, returns that earlier claim instead."""
        claim = {"_id": key, "digest": digest, "request_id": request_id, "created_at": datetime.now(UTC)}
        try:
            await self._keys.insert_one(claim)
            return claim
        except DuplicateKeyError:
            return await self._keys.find_one({"_id": key})

    async def release(self, key: str, request_id: str) -> None:
        await self._keys.delete_one({"_id": key, "request_id": request_id})
