"""Real infrastructure for the integration and end-to-end tests.

By default each test module gets its own embedded broker (tansu) and database (secantusd-py) as local
processes, stopped by process id when the module ends. With ``IMGPIPE_TEST_BACKEND=docker`` the tests
run against Apache Kafka and MongoDB in containers started by testcontainers instead, with the images
and Kafka settings of compose.yaml (needs a Docker engine; fails loudly without one).
"""

import logging
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from imgpipe_bus import BusSettings
from imgpipe_ops.processes import (
    broker_process,
    database_process,
    free_port,
    wait_for_broker,
    wait_for_database,
)
from imgpipe_runtime.mongo import connect
from imgpipe_runtime.settings import MongoSettings, S3Settings

BACKEND = os.environ.get("IMGPIPE_TEST_BACKEND", "embedded")
if BACKEND not in ("embedded", "docker"):
    raise pytest.UsageError(f"IMGPIPE_TEST_BACKEND must be 'embedded' or 'docker', not {BACKEND!r}")


@dataclass(frozen=True)
class Infra:
    bootstrap: str
    mongo_url: str
    database_pid: int | None = None  # the embedded database's process, whose CPU a test may measure


COMPOSE_FILE = Path(__file__).parent.parent / "compose.yaml"


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


@pytest.fixture(scope="session")
def docker_infra():
    from testcontainers.community.mongodb import MongoDbContainer
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.docker_client import DockerClient
    from testcontainers.core.waiting_utils import wait_for_logs

    port, host = free_port(), DockerClient().host()
    image, env = kafka_settings(host, port)
    # The hostname that the compose network gives it, which its own settings name.
    kafka = DockerContainer(image, env=env, hostname="kafka").with_bind_ports(port, port)
    with kafka, MongoDbContainer(compose_service("mongodb")["image"]) as mongo:
        wait_for_logs(kafka, "Kafka Server started", timeout=120)
        yield Infra(f"{host}:{port}", mongo.get_connection_url())


@pytest.fixture(scope="module")
def infra(request, tmp_path_factory):
    if BACKEND == "docker":
        yield request.getfixturevalue("docker_infra")
        return
    logs: Path = tmp_path_factory.mktemp("infra-logs")
    kafka_port, mongo_port = free_port(), free_port()
    broker = broker_process(kafka_port, logs / "broker.log").start()
    database = database_process(mongo_port, ":memory:", logs / "database.log").start()
    try:
        bootstrap = f"127.0.0.1:{kafka_port}"
        mongo_url = f"mongodb://127.0.0.1:{mongo_port}/?retryWrites=false"
        wait_for_broker(broker, bootstrap)
        wait_for_database(database, mongo_url)
        yield Infra(bootstrap, mongo_url, database.pid)
    finally:
        broker.stop()
        database.stop()


@pytest.fixture
def bus_settings(infra) -> BusSettings:
    return BusSettings(bootstrap_servers=infra.bootstrap, partitions=4)


@pytest.fixture
def mongo_settings(infra) -> MongoSettings:
    """A database of its own for every test."""
    return MongoSettings(url=infra.mongo_url, database=f"test_{uuid.uuid4().hex[:12]}")


@pytest.fixture
async def db(mongo_settings):
    """A connection to the test's own database, dropped afterwards."""
    database = connect(mongo_settings)
    yield database
    await database.client.drop_database(mongo_settings.database)
    await database.client.close()


@pytest.fixture(scope="module")
def s3_endpoint():
    """An S3 server (moto's) in this process, on a port of its own, for the module's tests."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def new_bucket(endpoint: str) -> str:
    bucket = f"imgpipe-{uuid.uuid4().hex[:12]}"
    response = httpx.put(f"{endpoint}/{bucket}", timeout=10)
    assert response.status_code == 200, response.text
    return bucket


@pytest.fixture
def s3_settings(s3_endpoint) -> S3Settings:
    """A bucket of its own for every test."""
    return S3Settings(
        bucket=new_bucket(s3_endpoint),
        endpoint_url=s3_endpoint,
        access_key_id="imgpipe-test",
        secret_access_key="imgpipe-test-secret",
    )
