from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from imgpipe_bus import BusSettings
from imgpipe_runtime.settings import LogSettings
from imgpipe_runtime.webhooks import LOCAL_WEBHOOK_SECRET


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IMGPIPE_", extra="ignore")

    webhook_secret: str = Field(LOCAL_WEBHOOK_SECRET, pattern=r"^whsec_")
    default_webhook_url: str | None = None
    webhook_timeout_s: float = Field(10.0, gt=0)
    webhook_attempts: int = Field(5, ge=1)
    webhook_backoff_s: float = Field(0.5, ge=0)
    notifier_concurrency: int = Field(16, ge=1)

    kafka: BusSettings = Field(default_factory=BusSettings)
    log: LogSettings = Field(default_factory=LogSettings)
