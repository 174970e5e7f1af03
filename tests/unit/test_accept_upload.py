"""What an Idempotency-Key is claimed with, accept_upload's keyed branch against in-memory adapters, and
which files are fetched by URL alone."""

import hashlib
import io
import json
from collections.abc import Awaitable
from dataclasses import replace

import pytest

from imgpipe_ingest.csv_input import CsvRejected, Limits
from imgpipe_ingest.handlers import (
    Accepted,
    IdempotencyConflict,
    UploadOptions,
    accept_upload,
    is_capability_file,
    upload_digest,
)
from imgpipe_schemas import ImageOptions

FILE_DIGEST = hashlib.sha256(b"a,b\n").hexdigest()
OPTIONS = UploadOptions(quality=50, output_format="jpeg", webhook_url="https://hooks.example/h", idempotency_key="k")
REJECTED_CSV = b"S. No.,Product Name,Input Image Urls\n1,,x\n"


class FakeKeys:
    """IdempotencyKeys over a dict of (owner, key): a claim of a claimed key returns the earlier claim."""

    lease_s = 60.0

    def __init__(self, claims: dict[tuple[str | None, str], dict] | None = None) -> None:
        self.claims = claims or {}
        self.claimed: list[tuple[str | None, str]] = []

    async def claim(self, key: str, digest: str, request_id: str, *, owner: str | None = None) -> dict:
        self.claimed.append((owner, key))
        return self.claims.setdefault((owner, key), {"_id": key, "digest": digest, "request_id": request_id})

    async def release(self, key: str, request_id: str, *, owner: str | None = None) -> None:
        if self.claims.get((owner, key), {}).get("request_id") == request_id:
            del self.claims[(owner, key)]


class Untouchable:
    """An adapter the case must not reach."""

    def __getattr__(self, name: str):
        raise AssertionError(f"{name} was called")


def accept(data: bytes, options: UploadOptions, keys) -> Awaitable[Accepted]:
    adapters = {"store": Untouchable(), "blobs": Untouchable()}
    return accept_upload(io.BytesIO(data), options, limits=Limits(), keys=keys, lease_s=60, **adapters)


def test_the_digest_keeps_the_form_keys_were_always_claimed_with():
    chosen = {"webhook_url": "https://hooks.example/h", "quality": 50, "output_format": "jpeg"}
    legacy = hashlib.sha256((FILE_DIGEST + json.dumps(chosen, sort_keys=True)).encode()).hexdigest()
    assert upload_digest(FILE_DIGEST, OPTIONS) == legacy


@pytest.mark.parametrize(
    "changed",
    [
        {"quality": 51},
        {"output_format": "webp"},
        {"webhook_url": None},
        {"webhook_url": "https://hooks.example/other"},
        {"image_options": ImageOptions(max_width=100)},
        {"image_options": ImageOptions(max_width=100, max_height=100, fit="cover")},
        {"image_options": ImageOptions(preset="amazon")},
    ],
)
def test_every_option_but_the_key_is_part_of_the_digest(changed):
    digest = upload_digest(FILE_DIGEST, OPTIONS)
    assert upload_digest(FILE_DIGEST, replace(OPTIONS, **changed)) != digest
    assert upload_digest(FILE_DIGEST, replace(OPTIONS, idempotency_key="other")) == digest
    assert upload_digest(hashlib.sha256(b"other").hexdigest(), OPTIONS) != digest


async def test_the_same_key_and_upload_give_the_earlier_request_and_accept_nothing():
    data = b"S. No.,Product Name,Input Image Urls\n1,Hat,http://a.example/x.jpg\n"
    digest = upload_digest(hashlib.sha256(data).hexdigest(), OPTIONS)
    keys = FakeKeys({(None, "k"): {"_id": "k", "digest": digest, "request_id": "earlier"}})
    assert await accept(data, OPTIONS, keys) == Accepted("earlier", repeated=True)


async def test_the_same_key_with_other_options_is_a_conflict():
    data = b"S. No.,Product Name,Input Image Urls\n1,Hat,http://a.example/x.jpg\n"
    digest = upload_digest(hashlib.sha256(data).hexdigest(), OPTIONS)
    keys = FakeKeys({(None, "k"): {"_id": "k", "digest": digest, "request_id": "earlier"}})
    with pytest.raises(IdempotencyConflict):
        await accept(data, replace(OPTIONS, quality=80), keys)


async def test_a_rejected_upload_releases_its_key_and_one_without_a_key_claims_none():
    keys = FakeKeys()
    with pytest.raises(CsvRejected):
        await accept(REJECTED_CSV, OPTIONS, keys)
    assert keys.claims == {}
    with pytest.raises(CsvRejected):
        await accept(REJECTED_CSV, UploadOptions(quality=50, output_format="jpeg"), Untouchable())
    with pytest.raises(CsvRejected):
        await accept(b"\x00binary", OPTIONS, Untouchable())


async def test_the_same_key_while_its_first_upload_is_still_being_accepted_is_in_progress():
    from imgpipe_ingest.handlers import IdempotencyInProgress

    data = b"S. No.,Product Name,Input Image Urls\n1,Hat,http://a.example/x.jpg\n"
    digest = upload_digest(hashlib.sha256(data).hexdigest(), OPTIONS)
    keys = FakeKeys({(None, "k"): {"_id": "k", "digest": digest, "request_id": "earlier", "bound": False}})
    with pytest.raises(IdempotencyInProgress):
        await accept(data, OPTIONS, keys)


async def test_a_key_claimed_under_one_owner_is_claimed_anew_under_another():
    data = b"S. No.,Product Name,Input Image Urls\n1,Hat,http://a.example/x.jpg\n"
    digest = upload_digest(hashlib.sha256(data).hexdigest(), OPTIONS)
    earlier = {"_id": "k", "digest": digest, "request_id": "earlier"}
    keys = FakeKeys({("owner-a", "k"): earlier})
    assert await accept(data, replace(OPTIONS, owner="owner-a"), keys) == Accepted("earlier", repeated=True)
    with pytest.raises(CsvRejected):  # not the earlier request, nor a conflict: the upload itself is checked
        await accept(REJECTED_CSV, replace(OPTIONS, owner="owner-b"), keys)
    assert keys.claimed == [("owner-a", "k"), ("owner-b", "k")]
    assert keys.claims == {("owner-a", "k"): earlier}  # owner-b's claim was released with its rejected upload


@pytest.mark.parametrize(
    ("name", "capability"),
    [
        ("e6a4edab-0000-4000-8000-000000000000/output-Q2xKy_0aZ.csv", True),
        ("e6a4edab-0000-4000-8000-000000000000/output.csv", False),  # no token: under the key rules
        ("e6a4edab-0000-4000-8000-000000000000/output-.csv", False),
        ("e6a4edab-0000-4000-8000-000000000000/images/0-1.webp", True),
        ("e6a4edab-0000-4000-8000-000000000000/input.csv", False),
        ("e6a4edab-0000-4000-8000-000000000000/INPUT.CSV", False),
        ("e6a4edab-0000-4000-8000-000000000000/images/x/input.csv", False),
        ("e6a4edab-0000-4000-8000-000000000000/OUTPUT.csv", False),
        ("e6a4edab-0000-4000-8000-000000000000", False),
        ("output.csv", False),
    ],
)
def test_only_outputs_are_fetched_by_url_alone(name, capability):
    assert is_capability_file(name) is capability
