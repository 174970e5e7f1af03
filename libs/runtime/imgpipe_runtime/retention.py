"""Retention: a finished request, its rows, files, deliveries and publications are deleted once it is older
than the retention period, so that a stack used for months holds what a stack used for one does.

What remains of an expired request is a tombstone (its id, owner and when it expired), so that its status,
rows, page and files answer 410 Gone rather than 404: the client learns that it existed. Tombstones are
deleted in turn a retention period later. A request still PENDING or PROCESSING is never touched, whatever
its age. Idempotency-Key claims older than the period go too.

Every step is idempotent and the tombstone is written last: a pass cut short by a crash is finished by
the next one. The assembler runs a pass periodically (``IMGPIPE_RETENTION_DAYS``); ``imgpipe prune`` runs
one by hand.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from imgpipe_runtime.blobs import BlobStore
from imgpipe_runtime.documents import DELIVERIES, IDEMPOTENCY_KEYS, PUBLICATIONS, REQUESTS, ROWS
from imgpipe_runtime.mongo import Database
from imgpipe_schemas import FINISHED

log = logging.getLogger(__name__)

EXPIRED_AT = "expired_at"
REQUESTS_PER_ROUND = 100


@dataclass
class Pruned:
    requests: int = 0
    rows: int = 0
    files: int = 0
    deliveries: int = 0
    idempotency_keys: int = 0
    tombstones: int = 0
    request_ids: list[str] = field(default_factory=list)


def is_tombstone(request: dict[str, Any]) -> bool:
    """An expired request: only its id, owner and dates are left."""
    return EXPIRED_AT in request


async def prune(db: Database, blobs: BlobStore, before: datetime, *, dry_run: bool = False) -> Pruned:
    """Deletes what finished before ``before``; with ``dry_run``, only finds the requests it would delete."""
    pruned = Pruned()
    requests = db[REQUESTS]
    if dry_run:
        async for request in requests.find({"completed_at": {"$lt": before}}, {"status": 1}):
            if request["status"] in FINISHED:
                pruned.requests += 1
                pruned.request_ids.append(request["_id"])
        return pruned
    seen: set[str] = set()
    while True:
        # completed_at is set only when a request finishes, and removed from its tombstone.
        cursor = requests.find(
            {"completed_at": {"$lt": before}}, {"status": 1, "owner": 1, "created_at": 1, "completed_at": 1}
        )
        batch = [request async for request in cursor.limit(REQUESTS_PER_ROUND) if request["status"] in FINISHED]
        batch = [request for request in batch if request["_id"] not in seen]
        if not batch:
            break
        for request in batch:
            seen.add(request["_id"])
            pruned.request_ids.append(request["_id"])
            pruned.requests += 1
            await _expire(db, blobs, request, pruned)
    pruned.idempotency_keys = (await db[IDEMPOTENCY_KEYS].delete_many({"created_at": {"$lt": before}})).deleted_count
    pruned.idempotency_keys += await expire_claims(db, datetime.now(before.tzinfo))
    pruned.tombstones = (await requests.delete_many({EXPIRED_AT: {"$lt": before}})).deleted_count
    return pruned


async def expire_claims(db: Database, now: datetime) -> int:
    """Deletes the Idempotency-Key claims that expired before ``now``: they answer nothing any more, whatever
    the retention. Returns how many."""
    return (await db[IDEMPOTENCY_KEYS].delete_many({"expires_at": {"$lt": now}})).deleted_count


async def _expire(db: Database, blobs: BlobStore, request: dict[str, Any], pruned: Pruned) -> None:
    request_id = request["_id"]
    pruned.files += await blobs.delete_prefix(f"{request_id}/")
    pruned.rows += (await db[ROWS].delete_many({"request_id": request_id})).deleted_count
    pruned.deliveries += (await db[DELIVERIES].delete_many({"request_id": request_id})).deleted_count
    await db[PUBLICATIONS].delete_many({"request_id": request_id})
    tombstone = {
        "owner": request.get("owner"),
        "created_at": request.get("created_at"),
        "finished_at": request["completed_at"],
        EXPIRED_AT: datetime.now(request["completed_at"].tzinfo),
    }
    await db[REQUESTS].replace_one({"_id": request_id}, tombstone)
    log.info("request %s expired: its rows, files and deliveries were deleted", request_id)
