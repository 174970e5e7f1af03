import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
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


# The longest that SigV4 lets a presigned URL live.
MAX_URL_TTL = timedelta(days=7)


class S3Settings(BaseSettings):
    """The bucket of ``IMGPIPE_BLOB_STORE=s3`` (``IMGPIPE_S3_*``) and how long the URLs handed out for its
    files live (``IMGPIPE_OUTPUT_URL_TTL``). Without keys, the client finds its own credentials as AWS's
    tools do (``AWS_*`` variables, an instance or task role)."""

    model_config = SettingsConfigDict(env_prefix="IMGPIPE_S3_", extra="ignore", populate_by_name=True)

    bucket: str = Field("", description="The bucket (it must exist); required with IMGPIPE_BLOB_STORE=s3.")
    endpoint_url: str = Field("", description="An S3-compatible server's URL; empty for AWS S3 in REGION.")
    presign_endpoint_url: str = Field(
        "", description="The endpoint as clients reach it, in presigned URLs; defaults to ENDPOINT_URL."
    )
    region: str = Field("us-east-1", description="The bucket's region (signatures name it).")
    access_key_id: str = Field("", description="The key the services use and sign URLs with; empty: AWS's own lookup.")
    secret_access_key: SecretStr = Field(SecretStr(""), description="Its secret.")
    session_token: SecretStr = Field(SecretStr(""), description="A session token, with temporary keys.")
    public_base_url: str = Field(
        "", description="Where the bucket's outputs are publicly readable: output URLs are not presigned then."
    )
    url_ttl: timedelta = Field(
        MAX_URL_TTL,
        alias="IMGPIPE_OUTPUT_URL_TTL",
        description="How long a presigned output URL works: seconds or an ISO 8601 duration (P7D).",
    )

    @field_validator("url_ttl", mode="before")
    @classmethod
    def _seconds(cls, value: object) -> object:
        """A plain number is seconds (pydantic reads a string only as a duration)."""
        if isinstance(value, str) and value.strip().replace(".", "", 1).isdigit():
            return float(value)
        return value

    @field_validator("url_ttl")
    @classmethod
    def _signable(cls, ttl: timedelta) -> timedelta:
        if not timedelta(seconds=1) <= ttl <= MAX_URL_TTL:
            raise ValueError(f"must be between 1 second and {MAX_URL_TTL.days} days (the most a presigned URL lives)")
        return ttl


class BlobSettings(BaseSettings):
    """Where files are stored (``IMGPIPE_BLOB_STORE``, ``IMGPIPE_BLOB_DIR``): ``gridfs`` in the database,
    ``directory``, which every service that reads or writes files must share (one machine, or a shared
    volume), or ``s3``, a bucket (``IMGPIPE_S3_*``)."""

    model_config = SettingsConfigDict(env_prefix="IMGPIPE_BLOB_", extra="ignore")

    store: Literal["gridfs", "directory", "s3"] = Field(
        "gridfs", description="Where files are stored: gridfs (in MongoDB), directory, or s3 (a bucket)."
    )
    dir: Path = Field(
        Path("blobs"), description="The directory store's directory; every service must see the same one."
    )
    s3: S3Settings = Field(default_factory=S3Settings)

    @model_validator(mode="after")
    def _bucket_named(self) -> "BlobSettings":
        if self.store == "s3" and not self.s3.bucket:
            raise ValueError("IMGPIPE_BLOB_STORE=s3 needs IMGPIPE_S3_BUCKET, the bucket's name")
        return self


SettingsType = TypeVar("SettingsType", bound=BaseSettings)


def load_settings(settings_class: type[SettingsType], service: str) -> SettingsType:
    """The service's settings from the environment, or a one-line reason per bad setting and exit code 2
    (a service that cannot start says why, not with a stack trace)."""
    try:
        return settings_class()
    except ValidationError as exc:
        # A nested group (IMGPIPE_MONGO_*, IMGPIPE_S3_*...) fails on its own, under its own prefix.
        group = next((g for g in _groups(settings_class) if g.__name__ == exc.title), settings_class)
        prefix = group.model_config.get("env_prefix", "")
        for error in exc.errors():
            if not error["loc"]:  # a check of the whole group, whose message names its settings
                print(f"{service}: cannot start: {error['msg']}", file=sys.stderr)
                continue
            name = "_".join(str(part) for part in error["loc"]).upper()
            name = name if name.startswith("IMGPIPE_") else prefix + name  # an alias is the variable's name
            print(f"{service}: cannot start: {name}: {error['msg']}", file=sys.stderr)
        raise SystemExit(2) from None


def _groups(settings_class: type[BaseSettings]) -> Iterator[type[BaseSettings]]:
    """The class and the groups nested in it, at any depth."""
    yield settings_class
    for field in settings_class.model_fields.values():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseSettings):
            yield from _groups(field.annotation)
