"""Real infrastructure for the integration and end-to-end tests.

By default each test module gets its own embedded broker (tansu) and database (secantusd-py) as local
processes, stopped by process id when the module ends. With ``IMGPIPE_TEST_BACKEND=docker`` the tests
run against Apache Kafka and MongoDB in containers started by testcontainers instead, with the images
and Kafka settings of compose.yaml (needs a Docker engine; fails loudly without one).
"""

import uuid
from pathlib import Path

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
from imgpipe_runtime.settings import MongoSettings
from tests.support.infra import BACKEND, Infra, compose_service, kafka_settings


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
