from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from imgpipe_bus import BusSettings
from imgpipe_runtime.settings import LogSettings, MongoSettings
from imgpipe_runtime.webhooks import WebhookSecrets


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IMGPIPE_", extra="ignore")

    webhook_secret: WebhookSecrets  # required: no default secret can be trusted
    default_webhook_url: str | None = None
    webhook_timeout_s: float = Field(
        10.0, gt=0, description="One attempt, from the wait for a connection to the answer."
    )
    webhook_connect_timeout_s: float = Field(5.0, gt=0, description="The TCP connect of one attempt.")
    webhook_connections_per_host: int = Field(
        8, ge=1, description="Attempts on the wire to one subscriber host at once: a slow one cannot hold them all."
    )
    webhook_retry_schedule_s: Annotated[list[float], NoDecode] = Field(
        default=[5, 30, 120, 600, 1800, 3600],
        description="Delays between attempts, comma-separated seconds; their sum bounds a delivery.",
    )
    webhook_poll_s: float = Field(1.0, gt=0, description="How often due retries are looked for.")
    fetch_allow: str = Field("", description="CIDRs or host:port that webhooks may reach although not public.")
    notifier_concurrency: int = Field(64, ge=1, description="Webhook attempts in flight at once.")

    kafka: BusSettings = Field(default_factory=BusSettings)
    mongo: MongoSettings = Field(default_factory=MongoSettings)
    log: LogSettings = Field(default_factory=LogSettings)

    @field_validator("webhook_retry_schedule_s", mode="before")
    @classmethod
    def _comma_separated(cls, value):
        if isinstance(value, str):
            return [float(part) for part in value.split(",") if part.strip()]
        return value
