"""``imgpipe prune --older-than 7d [--dry-run]``: deletes finished requests older than that, as the
assembler does by itself after ``IMGPIPE_RETENTION_DAYS`` (see imgpipe_runtime.retention).

It reaches the database and blob store of ``IMGPIPE_MONGO_URL`` and ``IMGPIPE_BLOB_*`` when they are set,
else those of the local stack (``make run``)."""

import argparse
import asyncio
import os
import re
from datetime import UTC, datetime, timedelta

from imgpipe_ops.settings import LocalSettings
from imgpipe_runtime.blobs import open_blob_store
from imgpipe_runtime.documents import ensure_indexes
from imgpipe_runtime.mongo import connect
from imgpipe_runtime.retention import prune
from imgpipe_runtime.settings import BlobSettings, MongoSettings

UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def age(text: str) -> timedelta:
    """``7d``, ``12h``, ``30m``, ``90s``: an argparse type."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([dhms])\s*", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not an age such as 7d, 12h, 30m or 90s")
    return timedelta(**{UNITS[match[2]]: float(match[1])})


def stores() -> tuple[MongoSettings, BlobSettings]:
    if os.environ.get("IMGPIPE_MONGO_URL"):
        return MongoSettings(), BlobSettings()
    local = LocalSettings()
    mongo = MongoSettings(url=f"mongodb://127.0.0.1:{local.local_mongo_port}/?retryWrites=false&journal=true")
    return mongo, BlobSettings(store="directory", dir=(local.data_dir / "blobs").resolve())


async def run_prune(older_than: timedelta, dry_run: bool) -> str:
    mongo, blob_settings = stores()
    db = connect(mongo)
    try:
        await ensure_indexes(db)
        pruned = await prune(db, open_blob_store(blob_settings, db), datetime.now(UTC) - older_than, dry_run=dry_run)
    finally:
        await db.client.close()
    if dry_run:
        listed = "".join(f"\n  {request_id}" for request_id in pruned.request_ids)
        return f"would delete {pruned.requests} finished request(s) older than {older_than}{listed}"
    return (
        f"deleted {pruned.requests} request(s) ({pruned.rows} rows, {pruned.files} files, {pruned.deliveries} "
        f"webhook deliveries), {pruned.idempotency_keys} Idempotency-Key claim(s) and {pruned.tombstones} tombstone(s)"
    )


def command(args: argparse.Namespace) -> int:
    print(asyncio.run(run_prune(args.older_than, args.dry_run)))
    return 0


def add_command(commands) -> None:
    sub = commands.add_parser("prune", help="delete finished requests older than an age, with their rows and files")
    sub.add_argument("--older-than", type=age, required=True, metavar="AGE", help="e.g. 7d, 12h, 30m")
    sub.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    sub.set_defaults(func=command)
