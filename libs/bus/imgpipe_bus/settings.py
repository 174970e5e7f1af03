from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class BusSettings(BaseSettings):
    """Kafka connection and tuning, read from ``IMGPIPE_KAFKA_*``."""

    model_config = SettingsConfigDict(env_prefix="IMGPIPE_KAFKA_", extra="ignore")

    bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated.")
    partitions: int = Field(
        4,
        ge=1,
        description=(
            "Partitions of the rows topics (imgpipe.rows.submitted, imgpipe.rows.processed): the most image "
            "workers, and assemblers, that work at once."
        ),
    )
    request_partitions: int = Field(
        3, ge=1, description="Partitions of the requests topics (imgpipe.requests.*): one event per request."
    )
    dead_letter_partitions: int = Field(
        1, ge=1, description="Partitions of every dead-letter topic (*.dlq): only what failed goes there."
    )
    replication_factor: int = Field(1, ge=1, description="Copies of every partition of a topic created at start-up.")
    min_insync_replicas: int | None = Field(
        None,
        ge=1,
        description=(
            "Copies that must hold a message before the broker acknowledges it (the topics' min.insync.replicas, "
            "set when they are created); unset: the broker's default."
        ),
    )
    fetch_max_wait_ms: int = Field(
        10, ge=0, description="How long the broker may hold a fetch while messages flow: the latency of a hop."
    )
    idle_fetch_max_wait_ms: int = Field(
        1000, ge=0, description="The same once a consumer has seen nothing for idle_after_s: the idle wake-up rate."
    )
    idle_after_s: float = Field(5.0, ge=0, description="How long without messages before a consumer counts as idle.")
    linger_ms: int = Field(5, ge=0, description="How long a producer waits to batch messages.")
    max_message_bytes: int = Field(
        1_000_000,
        ge=1000,
        description="The largest message a producer sends (the broker's limit, Kafka's default 1 MB).",
    )
    delivery_timeout_s: float = Field(15.0, gt=0, description="A message not acknowledged by then fails.")
    session_timeout_s: float = Field(6.0, gt=0, description="Consumer group session timeout.")
    heartbeat_interval_s: float = Field(1.0, gt=0, description="Consumer group heartbeat interval.")
    client_id: str = Field("imgpipe", description="Prefix of every Kafka client id (the service's name follows).")
    probe_timeout_s: float = Field(
        2.0,
        gt=0,
        description=(
            "How long a read of one offset waits for the broker (a row not read by then is looked at again later)."
        ),
    )
    drain_timeout_s: float = Field(30.0, ge=0, description="On SIGTERM, how long work in flight may take to finish.")

    @field_validator("min_insync_replicas")
    @classmethod
    def _no_more_than_the_copies(cls, value: int | None, info: ValidationInfo) -> int | None:
        copies = info.data.get("replication_factor")
        if value is not None and copies is not None and value > copies:
            raise ValueError(
                f"{value} is more than IMGPIPE_KAFKA_REPLICATION_FACTOR ({copies}): no write could be acknowledged"
            )
        return value

    @property
    def faust_broker(self) -> str:
        return ";".join(f"kafka://{server}" for server in self.bootstrap_servers.split(","))
