from pydantic import Field, ValidationInfo, field_validator

from imgpipe_bus import BusSettings
from imgpipe_runtime.cpus import usable_cpus
from imgpipe_runtime.settings import BlobSettings, LogSettings, MongoSettings, PublicUrlSettings


class Settings(PublicUrlSettings):
    worker_concurrency: int = Field(16, ge=1, description="Rows in flight per image-worker process.")
    compress_processes: int = Field(
        default_factory=usable_cpus,
        ge=1,
        description="Codec (Pillow) processes; default: the CPUs the process may use (cgroup quota included).",
    )
    compress_cpu_s: int = Field(
        30, ge=1, description="CPU seconds one image's decoding and encoding may use; past them: too_complex."
    )
    fetch_connect_timeout_s: float = Field(
        5.0, gt=0, description="TCP connect of one HTTP request; the wait for a free connection is not part of it."
    )
    fetch_total_timeout_s: float = Field(30.0, gt=0, description="One HTTP request, from its connect to its last byte.")
    fetch_connections: int = Field(
        200, ge=2, description="HTTP requests in flight per worker process; one request's images get half of them."
    )
    fetch_connections_per_host: int = Field(
        100, ge=1, description="Of those, to one host and port: a slow host cannot take them all."
    )
    fetch_attempts: int = Field(3, ge=1, description="Attempts for a transient download failure.")
    fetch_allow: str = Field("", description="CIDRs or host:port that may be fetched although not public.")
    fetch_max_redirects: int = Field(5, ge=0, description="Redirects followed per image.")
    max_image_bytes: int = Field(25 * 1024 * 1024, ge=1, description="Largest source image, enforced while it streams.")
    max_image_pixels: int = Field(
        50_000_000, ge=1, description="Decompression-bomb guard, checked on the header before any pixel is decoded."
    )
    image_budget_s: float = Field(120.0, gt=0, description="Longest one image's whole fetch and compression take.")
    row_budget_s: float = Field(150.0, gt=0, description="Longest one row takes before its result is sent.")
    download_bytes_in_flight: int = Field(
        256 * 1024 * 1024,
        ge=1,
        validate_default=True,
        description="Source bytes one worker process holds at once, downloading or waiting to be compressed.",
    )
    jpeg_optimize: bool = Field(
        False,
        description="Per-image Huffman tables for baseline JPEGs (progressive ones always have them): "
        "~12 % fewer bytes, ~20 % more encoder CPU.",
    )

    @field_validator("download_bytes_in_flight")
    @classmethod
    def _holds_one_image(cls, budget: int, info: ValidationInfo) -> int:
        """An image the budget could never hold would wait for it forever."""
        cap = info.data.get("max_image_bytes")
        if cap is not None and budget < cap:
            raise ValueError(f"must be at least IMGPIPE_MAX_IMAGE_BYTES ({cap})")
        return budget

    kafka: BusSettings = Field(default_factory=BusSettings)
    mongo: MongoSettings = Field(default_factory=MongoSettings)
    blobs: BlobSettings = Field(default_factory=BlobSettings)
    log: LogSettings = Field(default_factory=LogSettings)
