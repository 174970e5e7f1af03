"""GET /api/files/{name}: output CSVs, input CSVs and images, from the blob store: a file of the
directory store is sent as a file (no copy through the application), a GridFS one is streamed, and one in
a bucket is a redirect (307) to a presigned URL of it, so that its bytes never pass through ingest.

Outputs are fetched by URL alone (handlers.is_capability_file); an input CSV needs its uploader's API key."""

from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse

from imgpipe_ingest import handlers
from imgpipe_ingest.auth import authenticate
from imgpipe_ingest.deps import Blobs, Store
from imgpipe_ingest.envelope import ClientError, errors
from imgpipe_runtime.blob_directory import FileBlob
from imgpipe_runtime.blob_s3 import S3BlobStore

router = APIRouter()
OUTPUT_MAX_AGE_S = 300
# An input CSV's presigned URL is for the caller just authenticated, who follows it at once.
INPUT_URL_TTL = timedelta(minutes=5)


@router.get(
    "/api/files/{name:path}",
    summary="An output CSV or image; an input CSV with its uploader's API key",
    response_class=Response,
    responses={
        200: {"description": "The file", "content": {"text/csv": {}, "image/*": {}}},
        307: {"description": "Where the file is, in the S3 store: a presigned URL of the bucket"},
        **errors(401, 404, 410, 503, e401="An input CSV without a valid API key (only while IMGPIPE_API_KEYS is set)"),
    },
    openapi_extra={"security": [{}, {"HTTPBearer": []}, {"APIKeyHeader": []}]},  # a key for input CSVs only
)
async def files(name: str, request: Request, blobs: Blobs, store: Store) -> Response:
    keyed = not handlers.is_capability_file(name)
    # An output's URL is its capability: whoever holds it may learn that its request expired.
    owner = authenticate(request) if keyed else None
    if keyed and not await handlers.owned_file_visible(name, owner=owner, store=store):
        if expired := await handlers.expired_file(name, owner=owner, store=store):
            raise ClientError(410, f"{name}: {expired}")
        raise ClientError(404, f"no file named {name}")
    blob = await blobs.open(name)
    if blob is None:
        if not keyed and (expired := await handlers.expired_file(name, owner=None, store=store)):
            raise ClientError(410, f"{name}: {expired}")
        raise ClientError(404, f"no file named {name}")
    if isinstance(blobs, S3BlobStore):
        # An output goes where its own URLs go (public or presigned for IMGPIPE_OUTPUT_URL_TTL); an input CSV
        # never to a public URL. Not cached: the answer is a signature with an expiry of its own.
        target = blobs.presigned_url(name, INPUT_URL_TTL) if keyed else blobs.url(name)
        return RedirectResponse(target, status_code=307, headers={"Cache-Control": "private, no-store"})
    # Never sniffed: a file's type is the one it is stored with, whatever its bytes look like.
    headers = {"Content-Length": str(blob.length), "X-Content-Type-Options": "nosniff"}
    if keyed:  # no shared cache may answer another caller with it
        headers["Cache-Control"] = "private, no-store"
    else:
        # An output is rewritten when a replayed row changes it: cached for minutes, never as immutable.
        headers["Cache-Control"] = f"public, max-age={OUTPUT_MAX_AGE_S}"
    if isinstance(blob, FileBlob):  # FileResponse measures the file it sends (it may have been replaced)
        headers.pop("Content-Length")
        return FileResponse(blob.path, media_type=blob.content_type, headers=headers)
    return StreamingResponse(blob.chunks(), media_type=blob.content_type, headers=headers)
