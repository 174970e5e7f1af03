"""Idempotency-Key claims: one request id per key, remembered with a digest of what was uploaded.

A claim is made before the request is stored and bound to it once it is: a bound claim always names a
request that exists. An unbound claim is an upload still being stored (which renews its lease while it
works), or one whose ingest died (or lost its database) before it could store the request or release the
key: after ``lease_s`` without renewal the next upload with that key takes it over, unless the request it
names was stored after all (then the claim is bound to it, and that request is the answer). An upload
whose claim was taken over learns so when it binds (bind returns False). Every claim expires after ``ttl_s``,
and the assembler's retention pass deletes it within the hour after that.

Keys are scoped by owner (the API key's digest, see imgpipe_ingest.auth): two owners using the same key
make two independent claims. A key without an owner (no API keys configured) is stored under the key itself,
as keys always were.
"""

from datetime import UTC, datetime, timedelta

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from imgpipe_runtime.documents import IDEMPOTENCY_KEYS, REQUESTS


class IdempotencyKeys:
    def __init__(self, db: AsyncDatabase, ttl_s: float = 86_400, lease_s: float = 120) -> None:
        self._keys = db[IDEMPOTENCY_KEYS]
        self._requests = db[REQUESTS]
        self.lease_s = lease_s
        self._ttl = timedelta(seconds=ttl_s)
        self._lease = timedelta(seconds=lease_s)

    async def claim(
        self, key: str, digest: str, request_id: str, now: datetime | None = None, *, owner: str | None = None
    ) -> dict:
        """Claims ``key`` for ``request_id``; if a live claim exists, returns it instead. A claim whose
        lease or time to live has run out is replaced, atomically, so two uploads never both take it."""
        now = now or datetime.now(UTC)
        key = _scoped(key, owner)
        claim = {
            "_id": key,
            "digest": digest,
            "request_id": request_id,
            "created_at": now,
            "leased_at": now,
            "bound": False,
            "expires_at": now + self._ttl,  # retention deletes it after that (imgpipe_runtime.retention)
        }
        for _ in range(3):
            try:
                await self._keys.insert_one(claim)
                return claim
            except DuplicateKeyError:
                existing = await self._keys.find_one({"_id": key})
            if existing is None:
                continue  # released meanwhile
            age = now - existing["created_at"]
            leased = now - existing.get("leased_at", existing["created_at"])
            if age <= self._ttl and (existing.get("bound", True) or leased <= self._lease):
                return existing
            if age <= self._ttl and await self._requests.find_one({"_id": existing["request_id"]}, {"_id": 1}):
                # Its upload stored the request, then failed to bind it: it is the answer.
                await self._keys.update_one(
                    {"_id": key, "request_id": existing["request_id"]}, {"$set": {"bound": True}}
                )
                return {**existing, "bound": True}
            taken = await self._keys.update_one(
                {"_id": key, "request_id": existing["request_id"]},
                {"$set": {k: v for k, v in claim.items() if k != "_id"}},
            )
            if taken.modified_count:
                return claim
        return await self._keys.find_one({"_id": key}) or claim

    async def bind(self, key: str, request_id: str, *, owner: str | None = None) -> bool:
        """The request is stored: from now on the key answers with it, whatever happens next. False when
        the claim is no longer this upload's (it was taken over after its lease ran out)."""
        bound = await self._keys.update_one(
            {"_id": _scoped(key, owner), "request_id": request_id}, {"$set": {"bound": True}}
        )
        return bool(bound.matched_count)

    async def renew(self, key: str, request_id: str, now: datetime | None = None, *, owner: str | None = None) -> None:
        """The upload is still being stored: its claim stays its own for another lease."""
        await self._keys.update_one(
            {"_id": _scoped(key, owner), "request_id": request_id, "bound": False},
            {"$set": {"leased_at": now or datetime.now(UTC)}},
        )

    async def release(self, key: str, request_id: str, *, owner: str | None = None) -> None:
        """Frees the key of an upload that failed before its request was stored."""
        await self._keys.delete_one({"_id": _scoped(key, owner), "request_id": request_id, "bound": False})


def _scoped(key: str, owner: str | None) -> str:
    return key if owner is None else f"{owner}:{key}"
