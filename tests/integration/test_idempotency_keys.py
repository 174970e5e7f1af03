"""Idempotency-Key claims against the real database: a key maps to a request that exists or to
nothing, whatever crashed in between, and expires; keys are scoped by owner."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

from imgpipe_ingest.adapters.idempotency import IdempotencyKeys
from imgpipe_runtime.blob_directory import DirectoryBlobStore
from imgpipe_runtime.retention import prune

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


async def test_a_claim_whose_upload_died_before_storing_its_request_is_taken_over_after_its_lease(db):
    keys = IdempotencyKeys(db, ttl_s=3600, lease_s=60)
    await keys.claim("k", "d", "first", NOW)  # then the process is killed: no bind, no release
    in_progress = await keys.claim("k", "d", "second", NOW + timedelta(seconds=30))
    assert (in_progress["request_id"], in_progress["bound"]) == ("first", False)
    taken = await keys.claim("k", "d", "third", NOW + timedelta(seconds=61))
    assert (taken["request_id"], taken["bound"]) == ("third", False)


async def test_a_bound_claim_answers_with_its_request_and_is_never_released(db):
    keys = IdempotencyKeys(db, ttl_s=3600, lease_s=60)
    await keys.claim("k", "d", "first", NOW)
    await keys.bind("k", "first")
    await keys.release("k", "first")  # an error after the request was stored
    again = await keys.claim("k", "d", "second", NOW + timedelta(seconds=600))
    assert (again["request_id"], again["bound"]) == ("first", True)


async def test_a_claim_expires_after_its_time_to_live(db):
    keys = IdempotencyKeys(db, ttl_s=3600, lease_s=60)
    await keys.claim("k", "d", "first", NOW)
    await keys.bind("k", "first")
    later = await keys.claim("k", "other digest", "second", NOW + timedelta(hours=2))
    assert (later["request_id"], later["digest"]) == ("second", "other digest")


async def test_an_unstored_upload_releases_its_key(db):
    keys = IdempotencyKeys(db, ttl_s=3600, lease_s=60)
    await keys.claim("k", "d", "first", NOW)
    await keys.release("k", "first")
    assert (await keys.claim("k", "d", "second", NOW))["request_id"] == "second"


async def test_the_same_key_under_two_owners_is_two_independent_claims(db):
    keys = IdempotencyKeys(db, ttl_s=3600, lease_s=60)
    mine = await keys.claim("k", "d", "mine", NOW, owner="owner-a")
    theirs = await keys.claim("k", "other digest", "theirs", NOW, owner="owner-b")
    unowned = await keys.claim("k", "d", "open", NOW)
    assert [claim["request_id"] for claim in (mine, theirs, unowned)] == ["mine", "theirs", "open"]
    await keys.bind("k", "mine", owner="owner-a")
    await keys.release("k", "theirs", owner="owner-b")
    assert (await keys.claim("k", "d", "again", NOW, owner="owner-a"))["request_id"] == "mine"
    assert (await keys.claim("k", "d", "later", NOW, owner="owner-b"))["request_id"] == "later"
    assert (await keys.claim("k", "d", "also", NOW))["request_id"] == "open"


async def test_an_owned_claim_expires_after_its_time_to_live(db):
    keys = IdempotencyKeys(db, ttl_s=3600, lease_s=60)
    await keys.claim("k", "d", "first", NOW, owner="owner-a")
    await keys.bind("k", "first", owner="owner-a")
    later = await keys.claim("k", "d", "second", NOW + timedelta(hours=2), owner="owner-a")
    assert later["request_id"] == "second"


async def test_a_claim_whose_request_was_stored_but_not_bound_answers_with_that_request(db):
    """Its upload stored the request and died before binding: after the lease, the key names that request."""
    keys = IdempotencyKeys(db, ttl_s=3600, lease_s=60)
    await keys.claim("k", "d", "first", NOW)
    await db["requests"].insert_one({"_id": "first"})
    again = await keys.claim("k", "d", "second", NOW + timedelta(seconds=61))
    assert (again["request_id"], again["bound"]) == ("first", True)
    assert (await keys.claim("k", "d", "third", NOW + timedelta(seconds=600)))["request_id"] == "first"


async def test_a_renewed_claim_is_not_taken_over(db):
    keys = IdempotencyKeys(db, ttl_s=3600, lease_s=60)
    await keys.claim("k", "d", "first", NOW)
    await keys.renew("k", "first", NOW + timedelta(seconds=50))
    assert (await keys.claim("k", "d", "second", NOW + timedelta(seconds=100)))["request_id"] == "first"
    assert (await keys.claim("k", "d", "third", NOW + timedelta(seconds=111)))["request_id"] == "third"


CSV = b"S. No.,Product Name,Input Image Urls\n1,A,http://in/0\n"


def uploader(db, tmp_path, store):
    import io

    from imgpipe_ingest.csv_input import Limits
    from imgpipe_ingest.handlers import UploadOptions, accept_upload
    from imgpipe_runtime.blob_directory import DirectoryBlobStore

    keys = IdempotencyKeys(db, ttl_s=3600, lease_s=60)
    options = UploadOptions(quality=50, output_format="jpeg", idempotency_key="k")

    def upload():
        return accept_upload(
            io.BytesIO(CSV),
            options,
            limits=Limits(),
            store=store,
            blobs=DirectoryBlobStore(tmp_path),
            keys=keys,
            lease_s=60,
        )

    return keys, upload


async def test_an_upload_whose_claim_was_taken_over_while_storing_withdraws_its_request(db, tmp_path):
    import pytest

    from imgpipe_ingest.adapters.requests import RequestStore
    from imgpipe_ingest.handlers import IdempotencyInProgress

    class TakenOverWhileStoring(RequestStore):
        async def insert_request(self, request_id, *args, **kwargs):
            claim = await keys.claim("k", "x", "unused", NOW)  # reads this upload's claim
            # Another upload with the key, once this one's lease ran out, takes the claim over.
            await keys.claim("k", claim["digest"], "other", datetime.now(UTC) + timedelta(seconds=61))
            return await super().insert_request(request_id, *args, **kwargs)

    keys, upload = uploader(db, tmp_path, TakenOverWhileStoring(db))
    with pytest.raises(IdempotencyInProgress):
        await upload()
    assert await db["requests"].count_documents({}) == 0  # withdrawn: the key answers with the other upload
    assert list(tmp_path.iterdir()) == []
    assert (await keys.claim("k", "d", "later", datetime.now(UTC)))["request_id"] == "other"


async def test_an_insert_that_failed_after_writing_leaves_the_key_naming_its_request(db, tmp_path):
    import pytest
    from pymongo.errors import AutoReconnect

    from imgpipe_ingest.adapters.requests import RequestStore

    class LostAfterWriting(RequestStore):
        async def insert_request(self, request_id, *args, **kwargs):
            await super().insert_request(request_id, *args, **kwargs)
            raise AutoReconnect("connection reset after the write")

    keys, upload = uploader(db, tmp_path, LostAfterWriting(db))
    with pytest.raises(AutoReconnect):
        await upload()
    [request] = await db["requests"].find({}).to_list()
    keys, retry = uploader(db, tmp_path, RequestStore(db))
    repeated = await retry()
    assert (repeated.request_id, repeated.repeated) == (request["_id"], True)


async def test_an_expired_claim_is_deleted_by_the_retention_pass_whatever_the_retention(db):
    """Claims never pile up: each carries its expiry, and the next retention pass deletes it once passed."""
    keys = IdempotencyKeys(db, ttl_s=3600, lease_s=60)
    now = datetime.now(UTC)
    await keys.claim("old", "d", "first", now - timedelta(hours=2))
    await keys.claim("live", "d", "second", now)
    stored = await db.idempotency_keys.find_one({"_id": "live"})
    assert abs(stored["expires_at"].replace(tzinfo=UTC) - (now + timedelta(hours=1))) < timedelta(seconds=1)
    pruned = await prune(db, DirectoryBlobStore(Path("/nonexistent")), now - timedelta(days=30))
    assert pruned.idempotency_keys == 1
    assert [claim["_id"] async for claim in db.idempotency_keys.find({})] == ["live"]
