"""Which backend the integration and end-to-end tests run against, and compose.yaml's settings for the
containers of the Docker backend: shared by the fixtures of tests/conftest.py and the tests that read them."""

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

BACKEND = os.environ.get("IMGPIPE_TEST_BACKEND", "embedded")
if BACKEND not in ("embedded", "docker"):
    raise pytest.UsageError(f"IMGPIPE_TEST_BACKEND must be 'embedded' or 'docker', not {BACKEND!r}")


@dataclass(frozen=True)
class Infra:
    bootstrap: str
    mongo_url: str
    database_pid: int | None = None  # the embedded database's process, whose CPU a test may measure


COMPOSE_FILE = Path(__file__).parent.parent.parent / "compose.yaml"


def compose_service(name: str) -> dict:
    import yaml

    return yaml.safe_load(COMPOSE_FILE.read_text())["services"][name]


def interpolate(value: object, env: dict[str, str] | None = None) -> str:
    """A compose.yaml value as compose sees it given ``env``: ``${NAME:-default}``, ``${NAME:?message}``,
    ``${NAME}``."""

    def substitute(match: re.Match) -> str:
        name, operator, word = match.group(1), match.group(2), match.group(3)
        if (env or {}).get(name):
            return (env or {})[name]
        if operator == ":-":
            return word
        raise KeyError(f"{name}: {word}" if operator == ":?" else name)

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", substitute, str(value))


def kafka_settings(host: str, port: int) -> tuple[str, dict[str, str]]:
    """The image and settings of compose.yaml's Kafka, its HOST listener on ``port``, advertised as ``host``."""
    kafka = compose_service("kafka")
    env = {
        **{name: interpolate(value) for name, value in kafka["environment"].items()},
        "KAFKA_LISTENERS": f"PLAINTEXT://:9092,CONTROLLER://:9093,HOST://:{port}",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://kafka:9092,HOST://{host}:{port}",
    }
    return kafka["image"], env
