from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class LocalSettings(BaseSettings):
    """The embedded local stack of ``imgpipe run`` (``IMGPIPE_*``)."""

    model_config = SettingsConfigDict(env_prefix="IMGPIPE_", extra="ignore")

    port: int = Field(8000, ge=1, le=65535, description="The port ingest's API listens on.")
    local_kafka_port: int = Field(19092, ge=1, le=65535, description="Port of the embedded broker.")
    local_mongo_port: int = Field(27018, ge=1, le=65535, description="Port of the embedded database.")
    data_dir: Path = Field(Path(".imgpipe"), description="The embedded database's files, the files store and the logs.")
    image_workers: int = Field(1, ge=1, description="Image-worker processes.")
    kafka_partitions: int = Field(
        4,
        ge=1,
        description=(
            "Partitions of the rows topics (imgpipe.rows.submitted, imgpipe.rows.processed): the most image "
            "workers, and assemblers, that work at once."
        ),
    )
    local_database_ready_s: float = Field(
        120.0,
        gt=0,
        description=(
            "How long the embedded database may take to answer after a start (it replays its journal first) "
            "before it is taken for failed: killed and started again."
        ),
    )
    local_log_max_bytes: int = Field(
        10 * 1024 * 1024, ge=4096, description="Each process's log in <data_dir>/logs is rotated at this size."
    )
    local_log_backups: int = Field(3, ge=1, description="Older log files kept per process.")
