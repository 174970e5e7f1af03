"""Ingest's adapters as its handlers see them (adapters/ implements them; tests fake them)."""

from datetime import datetime
from typing import Any, Protocol

from imgpipe_ingest.csv_input import CsvSummary
from imgpipe_schemas import ImageOptions, Progress

Document = dict[str, Any]


class Requests(Protocol):
    async def insert_request(
        self,
        request_id: str,
        upload: CsvSummary,
        *,
        input_file: str,
        webhook_url: str | None,
        quality: int,
        output_format: str,
        image_options: ImageOptions | None = None,
        owner: str | None = None,
        accept_lease_until: datetime | None = None,
    ) -> Document: ...

    async def delete_request(self, request_id: str) -> None: ...

    async def get(self, request_id: str) -> Document | None: ...

    async def progress(self, request: Document) -> Progress: ...

    async def rows(
        self, request: Document, *, offset: int, limit: int, failed_only: bool
    ) -> tuple[list[Document], bool]: ...

    async def webhook_deliveries(self, request_id: str) -> list[Document]: ...


class IdempotencyClaims(Protocol):
    lease_s: float  # how long a claim whose upload is not stored yet holds

    async def claim(
        self, key: str, digest: str, request_id: str, now: datetime | None = None, *, owner: str | None = None
    ) -> Document: ...

    async def bind(self, key: str, request_id: str, *, owner: str | None = None) -> bool: ...

    async def renew(
        self, key: str, request_id: str, now: datetime | None = None, *, owner: str | None = None
    ) -> None: ...

    async def release(self, key: str, request_id: str, *, owner: str | None = None) -> None: ...
