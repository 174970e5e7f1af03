"""Files (uploaded CSVs, output images, output CSVs) in an S3-compatible bucket (AWS S3, SeaweedFS, Garage,
RustFS...), addressed by a path-like name that is the object's key.

Every replica of every service reaches the same bucket, and so does a client: the output URLs handed out
are the bucket's own, presigned for ``IMGPIPE_OUTPUT_URL_TTL`` (or under ``IMGPIPE_S3_PUBLIC_BASE_URL``,
where the operator made the outputs public), so that no image's bytes pass through ingest. The codec
processes of the image-worker write their outputs themselves (S3BlobWriter), like the directory store's.

Through obstore: small, Rust-backed, with a sync API for the codec processes and an async one for the
services, and presigning built in.
"""

import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import IO

import obstore
from obstore.store import S3Store

from imgpipe_runtime.blob_directory import content_type_of
from imgpipe_runtime.settings import S3Settings

READ_BYTES = 1024 * 1024
DELETE_BATCH = 1000  # the most keys one DeleteObjects request takes


@dataclass(frozen=True)
class S3Location:
    """Where the bucket is and how to sign for it: all a process needs to build its own client, so that
    it travels to a codec process as a few strings."""

    bucket: str
    endpoint_url: str = ""
    region: str = "us-east-1"
    access_key_id: str = ""
    secret_access_key: str = ""
    session_token: str = ""

    @classmethod
    def of(cls, settings: S3Settings, *, endpoint_url: str | None = None) -> "S3Location":
        return cls(
            bucket=settings.bucket,
            endpoint_url=settings.endpoint_url if endpoint_url is None else endpoint_url,
            region=settings.region,
            access_key_id=settings.access_key_id,
            secret_access_key=settings.secret_access_key.get_secret_value(),
            session_token=settings.session_token.get_secret_value(),
        )

    def store(self) -> S3Store:
        """This process's client for the bucket: built once per process and location, since a client holds
        its connection pool (a codec process writes many images)."""
        client = _CLIENTS.get(self)
        if client is None:
            config: dict[str, str] = {"region": self.region}
            if self.endpoint_url:
                config["endpoint"] = self.endpoint_url
            if self.access_key_id:  # else obstore's own lookup: AWS_* variables, instance or task role
                config["access_key_id"] = self.access_key_id
                config["secret_access_key"] = self.secret_access_key
            if self.session_token:
                config["session_token"] = self.session_token
            client = S3Store(
                self.bucket,
                config=config,  # type: ignore[arg-type]  # S3Config is a TypedDict of these keys
                client_options={"allow_http": self.endpoint_url.startswith("http://")},
            )
            _CLIENTS[self] = client
        return client


_CLIENTS: dict[S3Location, S3Store] = {}


@dataclass(frozen=True)
class S3BlobWriter:
    """What a codec process writes its output with: picklable, it carries the location, not a client."""

    location: S3Location

    def write(self, name: str, data: bytes, content_type: str) -> None:
        obstore.put(self.location.store(), name, data, attributes={"Content-Type": content_type})


class S3BlobStore:
    def __init__(self, settings: S3Settings) -> None:
        self.location = S3Location.of(settings)
        # Signing needs no network: a URL for clients is signed for the endpoint they reach, which in a
        # private network may differ from the one the services use (compose: seaweedfs:8333 and localhost).
        self._signer = S3Location.of(settings, endpoint_url=settings.presign_endpoint_url or settings.endpoint_url)
        self._url_ttl = settings.url_ttl
        self._public_base_url = settings.public_base_url.rstrip("/")

    @property
    def _store(self) -> S3Store:
        return self.location.store()

    async def put(self, name: str, data: bytes | IO[bytes], content_type: str) -> None:
        """Stores ``data`` (bytes, or a file read from where it stands) under ``name``, replacing what was
        there; a large file goes up in parts, never whole in memory."""
        await obstore.put_async(self._store, name, data, attributes={"Content-Type": content_type})

    async def open(self, name: str) -> "S3Blob | None":
        try:
            meta = await obstore.head_async(self._store, name)
        except FileNotFoundError:
            return None
        return S3Blob(name, content_type_of(name), meta["size"], self._store)

    async def delete_prefix(self, prefix: str) -> int:
        """Deletes the keys under ``prefix`` a listed page at a time (one DeleteObjects request each)."""
        deleted = 0
        async for page in obstore.list(self._store, prefix, chunk_size=DELETE_BATCH):
            keys = [meta["path"] for meta in page]
            await obstore.delete_async(self._store, keys)
            deleted += len(keys)
        return deleted

    def writer(self) -> S3BlobWriter:
        return S3BlobWriter(self.location)

    def url(self, name: str) -> str:
        """The URL a client fetches ``name`` at, straight from the bucket: under the public base URL when
        there is one, else presigned for the output URL lifetime."""
        if self._public_base_url:
            return f"{self._public_base_url}/{urllib.parse.quote(name)}"
        return self.presigned_url(name, self._url_ttl)

    def presigned_url(self, name: str, expires_in: timedelta) -> str:
        """A GET of ``name`` that anyone holding the URL may make until it expires."""
        return obstore.sign(self._signer.store(), "GET", name, expires_in)


@dataclass(frozen=True)
class S3Blob:
    name: str
    content_type: str
    length: int
    store: S3Store

    async def chunks(self) -> AsyncIterator[bytes]:
        """The object's bytes, about a megabyte at a time."""
        result = await obstore.get_async(self.store, self.name)
        async for chunk in result.stream(min_chunk_size=READ_BYTES):
            yield bytes(chunk)
