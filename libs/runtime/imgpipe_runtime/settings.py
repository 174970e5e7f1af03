import sys
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class MongoSettings(BaseSettings):
    """MongoDB connection, read from ``IMGPIPE_MONGO_*``."""

    model_config = SettingsConfigDict(env_prefix="IMGPIPE_MONGO_", extra="ignore")

    url: str = Field("mongodb://127.0.0.1:27017/?retryWrites=false", description="MongoDB URL.")
    database: str = Field("imgpipe", description="Database name.")
    timeout_ms: int = Field(5000, ge=100, description="Server selection timeout.")
    max_idle_ms: int = Field(120_000, ge=1000, description="Pooled connections idle longer are closed.")


class LogSettings(BaseSettings):
    """Logging, read from ``IMGPIPE_LOG_*``."""

    model_config = SettingsConfigDict(env_prefix="IMGPIPE_LOG_", extra="ignore")

    level: str = Field("INFO", description="Log level.")
    json_lines: bool = Field(False, alias="IMGPIPE_LOG_JSON", description="One JSON object per line.")
    access: bool = Field(False, description="ingest: one line per HTTP request (method, path, status).")


class PublicUrlSettings(BaseSettings):
    """Where ingest listens and the base of every URL handed out (``IMGPIPE_HOST``, ``IMGPIPE_PORT``,
    ``IMGPIPE_PUBLIC_BASE_URL``); every service that writes URLs reads the same variables."""

    model_config = SettingsConfigDict(env_prefix="IMGPIPE_", extra="ignore")

    host: str = Field("127.0.0.1", description="Where ingest's API listens.")
    port: int = Field(8000, ge=1, le=65535, description="The port ingest's API listens on.")
    public_base_url: str = Field("", description="Defaults to http://HOST:PORT.")

    @model_validator(mode="after")
    def _default_public_base_url(self) -> "PublicUrlSettings":
        if not self.public_base_url:
            self.public_base_url = f"http://{self.host}:{self.port}"
        return self


class BlobSettings(BaseSettings):
    """Where files are stored (``IMGPIPE_BLOB_STORE``, ``IMGPIPE_BLOB_DIR``): ``gridfs`` in the database,
    or ``directory``, which every service that reads or writes files must share (one machine, or a
    shared volume)."""

    model_config = SettingsConfigDict(env_prefix="IMGPIPE_BLOB_", extra="ignore")

    store: Literal["gridfs", "directory"] = Field(
        "gridfs", description="Where files are stored: gridfs (in MongoDB) or directory."
    )
    dir: Path = Field(
        Path("blobs"), description="The directory store's directory; every service must see the same one."
    )


SettingsType = TypeVar("SettingsType", bound=BaseSettings)


def load_settings(settings_class: type[SettingsType], service: str) -> SettingsType:
    """The service's settings from the environment, or a one-line reason per bad setting and exit code 2
    (a service that cannot start says why, not with a stack trace)."""
    try:
        return settings_class()
    except ValidationError as exc:
        # A nested group (IMGPIPE_MONGO_*, IMGPIPE_LOG_*) fails on its own, under its own prefix.
        nested = (field.annotation for field in settings_class.model_fields.values())
        groups: list[type[BaseSettings]] = [
            settings_class,
            *(g for g in nested if isinstance(g, type) and issubclass(g, BaseSettings)),
        ]
        group = next((g for g in groups if g.__name__ == exc.title), settings_class)
        prefix = group.model_config.get("env_prefix", "")
        for error in exc.errors():
            name = (prefix + "_".join(str(part) for part in error["loc"])).upper()
            print(f"{service}: cannot start: {name}: {error['msg']}", file=sys.stderr)
        raise SystemExit(2) from None
