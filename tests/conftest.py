"""Real infrastructure for the integration and end-to-end tests.

By default each test module gets its own embedded broker (tansu) and database (secantusd-py) as local
processes, stopped by process id when the module ends. With `-n` (pytest-xdist, as `make test` runs them)
each module runs whole in one worker process, so its infrastructure and stacks are never shared. With
``IMGPIPE_TEST_BACKEND=docker`` the tests run against Apache Kafka and MongoDB in containers started by
testcontainers instead, with the images and Kafka settings of compose.yaml (needs a Docker engine; fails
loudly without one).
"""

import logging
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
from imgpipe_runtime.settings import MongoSettings, S3Settings
from tests.support.infra import BACKEND, Infra, compose_service, kafka_settings
from tests.support.s3 import new_bucket


def pytest_collection_modifyitems(items) -> None:
    """The modules marked long_running first, in their own order: with `-n`, each module runs on one
    worker, handed out in this order, so the longest start at once and the short ones fill in beside them."""
    items.sort(key=lambda item: item.get_closest_marker("long_running") is None)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile``, except that a worker whose only pending test is a single long one is given the
    last module waiting (a short unit-test module) to follow it, rather than the next long one, which would
    wait behind it. (A worker needs one test after the one it runs before it starts it.)"""
    from xdist.scheduler import LoadFileScheduling

    class LongRunningFirst(LoadFileScheduling):
        def _assign_work_unit(self, node) -> None:
            if self._pending_of(self.assigned_work.get(node, {})) == 1 and len(self.workqueue) > 1:
                self.workqueue.move_to_end(next(reversed(self.workqueue)), last=False)
            super()._assign_work_unit(node)

    return LongRunningFirst(config, log) if config.getvalue("dist") == "loadfile" else None


def pytest_terminal_summary(terminalreporter) -> None:
    """The paths of the screenshots tests took (recorded as a "screenshot" property, so that a run with `-n`
    reports them too, from whichever worker took them)."""
    paths = [
        value
        for report in terminalreporter.stats.get("passed", []) + terminalreporter.stats.get("failed", [])
        for name, value in getattr(report, "user_properties", [])
        if name == "screenshot"
    ]
    if paths:
        terminalreporter.section("screenshots")
        for path in paths:
            terminalreporter.write_line(path)


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
        database.kill()  # it holds nothing worth keeping (in memory), and its graceful stop takes 2 s


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


@pytest.fixture
def s3_settings(s3_endpoint) -> S3Settings:
    """A bucket of its own for every test."""
    return S3Settings(
        bucket=new_bucket(s3_endpoint),
        endpoint_url=s3_endpoint,
        access_key_id="imgpipe-test",
        secret_access_key="imgpipe-test-secret",
    )
