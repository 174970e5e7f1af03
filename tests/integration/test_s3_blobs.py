"""The S3 blob store against a real S3 server (moto's, in this process): files in and out a chunk at a
time, replaced, deleted by request, written by the codec processes themselves, and handed out as
presigned (or public) URLs that a client fetches without credentials."""

import io
import urllib.parse
from datetime import UTC, datetime, timedelta

import httpx
import obstore
from PIL import Image

from imgpipe_image_worker.adapters.codec_pool import CodecPool
from imgpipe_image_worker.compress import Encoding
from imgpipe_ops.samples import photo_like_jpeg
from imgpipe_runtime import blob_s3
from imgpipe_runtime.blob_s3 import S3BlobStore
from imgpipe_runtime.blobs import file_url, open_blob_store
from imgpipe_runtime.documents import REQUESTS
from imgpipe_runtime.retention import prune
from imgpipe_runtime.settings import BlobSettings


async def read(store: S3BlobStore, name: str) -> bytes:
    blob = await store.open(name)
    assert blob is not None, name
    return b"".join([chunk async for chunk in blob.chunks()])


def keys(store: S3BlobStore) -> set[str]:
    return {meta["path"] for page in obstore.list(store.location.store()) for meta in page}


async def test_a_file_goes_in_and_comes_out_a_chunk_at_a_time(s3_settings):
    store = S3BlobStore(s3_settings)
    big = bytes(range(256)) * (12 * 1024 * 1024 // 256)  # 12 MiB: sent in parts, read in many chunks
    source = io.BytesIO(b"skipped" + big)
    source.seek(len(b"skipped"))  # read from where it stands, as ingest's spooled upload is
    await store.put("r1/input.csv", source, "text/csv")

    blob = await store.open("r1/input.csv")
    assert blob is not None and (blob.length, blob.content_type) == (len(big), "text/csv")
    chunks = [chunk async for chunk in blob.chunks()]
    assert len(chunks) > 1 and b"".join(chunks) == big
    assert await store.open("r1/missing.csv") is None


async def test_a_file_written_again_is_replaced(s3_settings):
    store = S3BlobStore(s3_settings)
    await store.put("r1/output-t.csv", b"first,version\n", "text/csv")
    await store.put("r1/output-t.csv", b"second\n", "text/csv")
    assert await read(store, "r1/output-t.csv") == b"second\n"


async def test_delete_prefix_deletes_one_request_page_by_page(s3_settings, monkeypatch):
    monkeypatch.setattr(blob_s3, "DELETE_BATCH", 2)  # several listed pages and deletes
    store = S3BlobStore(s3_settings)
    mine = ["r1/input.csv", "r1/output-t.csv", *(f"r1/images/{i}-0.jpg" for i in range(5))]
    others = ["r10/input.csv", "r2/images/0-0.jpg"]  # r10 starts with r1, but is another request
    for name in mine + others:
        await store.put(name, name.encode(), "application/octet-stream")

    assert await store.delete_prefix("r1/") == len(mine)
    assert keys(store) == set(others)
    assert await store.delete_prefix("r1/") == 0


async def test_retention_deletes_an_expired_requests_files_from_the_bucket(db, s3_settings):
    store = open_blob_store(BlobSettings(store="s3", s3=s3_settings), db)
    assert isinstance(store, S3BlobStore)
    request_id = "00000000-0000-4000-8000-000000000001"
    finished = datetime(2020, 1, 1, tzinfo=UTC)
    await db[REQUESTS].insert_one(
        {"_id": request_id, "status": "SUCCESS", "created_at": finished, "completed_at": finished}
    )
    await store.put(f"{request_id}/input.csv", b"a\n", "text/csv")
    await store.put(f"{request_id}/images/0-0.jpg", b"jpeg", "image/jpeg")

    pruned = await prune(db, store, datetime(2021, 1, 1, tzinfo=UTC))
    assert pruned.files == 2 and keys(store) == set()


async def test_an_output_url_is_presigned_for_the_ttl_and_fetched_without_credentials(s3_settings):
    settings = s3_settings.model_copy(update={"url_ttl": timedelta(hours=2)})
    store = S3BlobStore(settings)
    await store.put("r1/images/0-0.jpg", b"jpeg bytes", "image/jpeg")

    url = file_url(store, "http://ingest.example", "r1/images/0-0.jpg")
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qs(parts.query)
    assert url.startswith(f"{s3_settings.endpoint_url}/{s3_settings.bucket}/r1/images/0-0.jpg?")
    assert query["X-Amz-Expires"] == ["7200"] and query["X-Amz-Credential"][0].startswith("imgpipe-test/")
    answer = httpx.get(url, timeout=10)
    assert answer.status_code == 200 and answer.content == b"jpeg bytes"
    assert answer.headers["content-type"] == "image/jpeg"


def test_presigned_urls_name_the_endpoint_clients_reach(s3_settings):
    settings = s3_settings.model_copy(update={"presign_endpoint_url": "http://localhost:8333"})
    url = S3BlobStore(settings).url("r1/output-t.csv")
    assert url.startswith(f"http://localhost:8333/{s3_settings.bucket}/r1/output-t.csv?X-Amz-")


def test_a_public_bucket_hands_out_plain_urls(s3_settings):
    settings = s3_settings.model_copy(update={"public_base_url": "https://cdn.example/outputs/"})
    assert S3BlobStore(settings).url("r1/images/0-1 a.jpg") == "https://cdn.example/outputs/r1/images/0-1%20a.jpg"


async def test_the_codec_processes_write_their_outputs_to_the_bucket(s3_settings):
    store = S3BlobStore(s3_settings)
    pool = CodecPool(processes=2, encoding=Encoding(), writer=store.writer())
    try:
        outputs = [
            await pool.compress(photo_like_jpeg(300, 200, seed=i), 50, "jpeg", f"r1/images/{i}-0") for i in range(3)
        ]
    finally:
        pool.close()
    assert all(output.data is None for output in outputs)  # stored by the codec process, not sent back
    for i, output in enumerate(outputs):
        stored = await read(store, f"r1/images/{i}-0.jpg")
        assert len(stored) == output.length and Image.open(io.BytesIO(stored)).size == (300, 200)
