from pydantic import Field

from imgpipe_bus import BusSettings
from imgpipe_runtime.settings import BlobSettings, LogSettings, MongoSettings, PublicUrlSettings


class Settings(PublicUrlSettings):
    assembler_batch_size: int = Field(200, ge=1, description="Row results written to MongoDB in one round trip.")
    assembler_batch_wait_s: float = Field(
        0.02, ge=0, description="How long a batch of row results waits for more after its first one."
    )
    reconcile_interval_s: float = Field(10.0, gt=0, description="How often the reconciler looks for stalled requests.")
    reconcile_stall_s: float = Field(60.0, gt=0, description="No progress for this long means a request stalled.")
    reconcile_max_rounds: int = Field(5, ge=0, description="Re-drives before missing rows are marked failed.")
    default_webhook_url: str | None = Field(
        None, description="The notifier's: where a completion without a webhook URL is sent, so one is expected."
    )
    retention_days: float = Field(
        30,
        ge=0,
        description="Finished requests older than this are deleted, with their rows and files (0: kept for ever).",
    )
    retention_interval_s: float = Field(3600, gt=0, description="How often the assembler deletes expired requests.")

    kafka: BusSettings = Field(default_factory=BusSettings)
    mongo: MongoSettings = Field(default_factory=MongoSettings)
    blobs: BlobSettings = Field(default_factory=BlobSettings)
    log: LogSettings = Field(default_factory=LogSettings)
