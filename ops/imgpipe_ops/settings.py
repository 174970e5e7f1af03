from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class LocalSettings(BaseSettings):
    """The embedded local stack of ``imgpipe run`` (``IMGPIPE_*``)."""

    model_config = SettingsConfigDict(env_prefix="IMGPIPE_", extra="ignore")

    port: int = Field(8000, ge=1, le=65535)
    local_kafka_port: int = Field(19092, ge=1, le=65535)
    local_mongo_port: int = Field(27018, ge=1, le=65535)
    data_dir: Path = Path(".imgpipe")
    image_workers: int = Field(1, ge=1)
    kafka_partitions: int = Field(4, ge=1)
