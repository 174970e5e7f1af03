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
    # The embedded database must answer within this long of each start (it replays its journal first),
    # or it is taken for failed: killed and started again.
    local_database_ready_s: float = Field(120.0, gt=0)
    # Each process's log in <data_dir>/logs is rotated at this size, with this many older files kept.
    local_log_max_bytes: int = Field(10 * 1024 * 1024, ge=4096)
    local_log_backups: int = Field(3, ge=1)
