"""Idempotency-Key claims against the real database: a key maps to a request that exists or to
nothing, whatever crashed in between, and expires; keys are scoped by owner."""

from datetime import UTC, datetime, timedelta

from imgpipe_ingest.adapters.idempotency import IdempotencyKeys

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
