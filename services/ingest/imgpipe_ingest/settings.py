from pydantic import Field

from imgpipe_bus import BusSettings
from imgpipe_runtime.settings import BlobSettings, LogSettings, MongoSettings, PublicUrlSettings
from imgpipe_runtime.webhooks import WebhookSecrets
from imgpipe_schemas import DEFAULT_QUALITY
from imgpipe_schemas.events import MAX_IMAGES_PER_ROW


class Settings(PublicUrlSettings):
    webhook_secret: WebhookSecrets  # required: no default secret can be trusted
    api_keys: str = Field(
        "", description="Comma-separated; when set, upload, status and input CSVs need one, and a key sees its own."
    )
    max_upload_bytes: int = Field(20 * 1024 * 1024, ge=1, description="Largest accepted CSV (413 above).")
    max_rows: int = Field(1_000_000, ge=1, description="Most rows in one CSV.")
    max_urls_per_row: int = Field(
        MAX_IMAGES_PER_ROW,
        ge=1,
        le=MAX_IMAGES_PER_ROW,
        description="Most image URLs in one row (the row event's bound at most).",
    )
    fetch_allow: str = Field("", description="CIDRs or host:port that webhooks may reach although not public.")
    default_quality: int = Field(
        DEFAULT_QUALITY, ge=1, le=95, description="Encoder quality of an upload that names none."
    )
    idempotency_ttl_s: float = Field(86_400, gt=0, description="How long an Idempotency-Key is remembered.")
    idempotency_lease_s: float = Field(
        120, gt=0, description="An Idempotency-Key whose upload was never stored is free again after this long."
    )

    accept_lease_s: float = Field(
        60, gt=0, description="An upload whose rows are not being accepted for this long is resumed by any ingest."
    )
    accept_resume_every_s: float = Field(10, gt=0, description="How often ingest looks for acceptances to resume.")
    reuse_port: bool = Field(
        False,
        description=(
            "Share the API's port with the other ingest processes of this machine (SO_REUSEPORT): the kernel "
            "spreads the connections among them."
        ),
    )
    accept_chunk_rows: int = Field(1000, ge=1, description="Rows of an upload stored and published at a time.")

    kafka: BusSettings = Field(default_factory=BusSettings)
    mongo: MongoSettings = Field(default_factory=MongoSettings)
    blobs: BlobSettings = Field(default_factory=BlobSettings)
    log: LogSettings = Field(default_factory=LogSettings)
