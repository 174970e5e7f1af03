"""The Kubernetes manifests under deploy/kubernetes: each overlay rendered (tests/unit/kustomize.py) and every
object validated offline, the Kubernetes kinds against the API's own schemas (kubernetes-validate, strict:
an unknown field fails), KEDA's ScaledObject against a schema of its required fields; then the facts the
services need: their real ports and probes, grace periods above the drain, the image worker's CPUs, a
disruption budget each, and the autoscaler bounded by the rows topic's partitions."""

import json
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest

from imgpipe_assembler.main import METRICS_PORT as ASSEMBLER_METRICS_PORT
from imgpipe_image_worker.main import METRICS_PORT as IMAGE_WORKER_METRICS_PORT
from imgpipe_ingest.main import METRICS_PORT as INGEST_METRICS_PORT
from imgpipe_notifier.main import METRICS_PORT as NOTIFIER_METRICS_PORT
from imgpipe_schemas.topics import IMAGE_WORKER_GROUP, ROWS_SUBMITTED
from tests.support.kustomize import render

KUBERNETES = Path(__file__).parents[2] / "deploy" / "kubernetes"
OVERLAYS = ("local", "production")
KUBERNETES_VERSION = "1.37.0"
METRICS_PORTS = {
    "ingest": INGEST_METRICS_PORT,
    "image-worker": IMAGE_WORKER_METRICS_PORT,
    "assembler": ASSEMBLER_METRICS_PORT,
    "notifier": NOTIFIER_METRICS_PORT,
}
CUSTOM_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): json.loads(
        (Path(__file__).parent / "keda_scaledobject.schema.json").read_text()
    )
}


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request) -> tuple[str, list[dict]]:
    return request.param, render(KUBERNETES / "overlays" / request.param)


def find(objects: list[dict], kind: str, name: str) -> dict:
    [found] = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def config(objects: list[dict]) -> dict[str, str]:
    return find(objects, "ConfigMap", "imgpipe-config")["data"]


def imgpipe_container(objects: list[dict], name: str) -> dict:
    [container] = find(objects, "Deployment", name)["spec"]["template"]["spec"]["containers"]
    assert container["name"] == "imgpipe"
    return container


def env_value(container: dict, name: str) -> str | None:
    return next((e.get("value") for e in container.get("env", []) if e["name"] == name), None)


def validate(obj: dict) -> None:
    schema = CUSTOM_SCHEMAS.get((obj["apiVersion"], obj["kind"]))
    if schema is not None:
        jsonschema.validate(obj, schema)
    else:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_every_object_of_every_overlay_is_valid(overlay):
    name, objects = overlay
    assert objects
    for obj in objects:
        validate(obj)  # a kind with no schema at all raises SchemaNotFoundError: nothing is skipped


def test_an_unknown_field_or_a_missing_required_one_fails_validation(overlay):
    _, objects = overlay
    deployment = find(objects, "Deployment", "ingest")
    typo = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(typo)
    scaled = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "image-worker"},
        "spec": {"scaleTargetRef": {"name": "image-worker"}, "triggers": [{"type": "kafka", "metadata": {}}]},
    }
    with pytest.raises(jsonschema.ValidationError, match="bootstrapServers"):
        validate(scaled)


def test_the_four_services_run_with_their_real_ports_and_probes(overlay):
    _, objects = overlay
    for name, metrics_port in METRICS_PORTS.items():
        container = imgpipe_container(objects, name)
        assert container["args"] == [name]
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        assert ports["metrics"] == metrics_port == int(env_value(container, "IMGPIPE_METRICS_PORT"))
        readiness, liveness = container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]
        if name == "ingest":
            # ingest's /healthz is on its API port, and the Service sends requests there.
            assert ports["http"] == int(env_value(container, "IMGPIPE_PORT")) == 8000
            assert (readiness["path"], readiness["port"]) == ("/healthz", "http")
            assert liveness["port"] == "http"
            service = find(objects, "Service", "ingest")["spec"]
            assert service["selector"] == find(objects, "Deployment", "ingest")["spec"]["selector"]["matchLabels"]
            assert [p["targetPort"] for p in service["ports"]] == ["http"]
        else:
            assert (readiness["path"], readiness["port"]) == ("/healthz", "metrics")
            assert (liveness["path"], liveness["port"]) == ("/metrics", "metrics")
        # Liveness never asks /healthz: an outage of Kafka or MongoDB is waited out, not restarted.
        assert liveness["path"] != "/healthz"
        assert config(objects)["IMGPIPE_METRICS_HOST"] == "0.0.0.0"


def test_every_pod_may_drain_before_it_is_killed(overlay):
    _, objects = overlay
    drain = float(config(objects)["IMGPIPE_KAFKA_DRAIN_TIMEOUT_S"])
    for name in METRICS_PORTS:
        pod = find(objects, "Deployment", name)["spec"]["template"]["spec"]
        [container] = pod["containers"]
        pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
        waits = float(pre_stop[1]) if pre_stop[:1] == ["sleep"] else 0.0
        assert pod["terminationGracePeriodSeconds"] >= waits + drain + 5, name


def test_the_image_worker_requests_one_core_per_codec_process(overlay):
    _, objects = overlay
    container = imgpipe_container(objects, "image-worker")
    processes = int(env_value(container, "IMGPIPE_COMPRESS_PROCESSES"))
    resources = container["resources"]
    assert float(resources["requests"]["cpu"]) == float(resources["limits"]["cpu"]) == processes


def test_every_service_has_a_disruption_budget_over_its_own_pods(overlay):
    _, objects = overlay
    for name in METRICS_PORTS:
        budget = find(objects, "PodDisruptionBudget", name)["spec"]
        pod_labels = find(objects, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert budget["selector"]["matchLabels"].items() <= pod_labels.items()
        assert budget["maxUnavailable"] == 1  # a node drain goes on even where a service has one replica


def test_no_secret_is_in_the_manifests_only_references_to_them(overlay):
    _, objects = overlay
    assert not [o for o in objects if o["kind"] == "Secret"]
    for name in ("ingest", "notifier"):
        [secret] = [e for e in imgpipe_container(objects, name)["env"] if e["name"] == "IMGPIPE_WEBHOOK_SECRET"]
        assert secret["valueFrom"]["secretKeyRef"] == {"name": "imgpipe-secrets", "key": "IMGPIPE_WEBHOOK_SECRET"}


def test_every_object_is_in_the_overlays_namespace_with_its_image(overlay):
    name, objects = overlay
    assert {o["metadata"]["namespace"] for o in objects} == {"imgpipe"}
    images = {imgpipe_container(objects, service)["image"] for service in METRICS_PORTS}
    assert images == ({"imgpipe:latest"} if name == "local" else {"registry.example.com/imgpipe:1.0.0"})


def test_production_scales_image_workers_on_their_lag_up_to_the_rows_partitions():
    objects = render(KUBERNETES / "overlays" / "production")
    settings = config(objects)
    scaled = find(objects, "ScaledObject", "image-worker")["spec"]
    assert scaled["scaleTargetRef"]["name"] == "image-worker"
    assert scaled["maxReplicaCount"] == int(settings["IMGPIPE_KAFKA_PARTITIONS"])
    assert scaled["minReplicaCount"] >= 1
    [trigger] = scaled["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == IMAGE_WORKER_GROUP
    assert trigger["metadata"]["topic"] == ROWS_SUBMITTED.name
    assert trigger["metadata"]["bootstrapServers"] == settings["IMGPIPE_KAFKA_BOOTSTRAP_SERVERS"]
    # KEDA owns the image workers' replicas: the Deployment names none that an apply would reset.
    assert "replicas" not in find(objects, "Deployment", "image-worker")["spec"]


def test_production_reaches_the_operators_kafka_and_mongodb_with_copies_to_spare():
    objects = render(KUBERNETES / "overlays" / "production")
    settings = config(objects)
    assert settings["IMGPIPE_KAFKA_BOOTSTRAP_SERVERS"] == "imgpipe-kafka-bootstrap:9092"  # Strimzi's Service
    assert int(settings["IMGPIPE_KAFKA_REPLICATION_FACTOR"]) == 3
    assert int(settings["IMGPIPE_KAFKA_MIN_INSYNC_REPLICAS"]) == 2
    for name in METRICS_PORTS:
        [url] = [e for e in imgpipe_container(objects, name)["env"] if e["name"] == "IMGPIPE_MONGO_URL"]
        assert url["valueFrom"]["secretKeyRef"] == {
            "name": "imgpipe-mongodb-admin-imgpipe",  # the MongoDB community operator's <resource>-<db>-<user>
            "key": "connectionString.standard",
        }
    assert not [o for o in objects if o["kind"] in ("Kafka", "MongoDBCommunity")]  # the operators' own


def test_local_runs_kafka_and_a_mongodb_replica_set_beside_one_replica_of_each_service():
    objects = render(KUBERNETES / "overlays" / "local")
    settings = config(objects)
    assert settings["IMGPIPE_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert "replicaSet=rs0" in settings["IMGPIPE_MONGO_URL"] and "retryWrites=true" in settings["IMGPIPE_MONGO_URL"]
    assert find(objects, "Service", "kafka")["spec"]["publishNotReadyAddresses"] is True
    mongodb = find(objects, "Deployment", "mongodb")["spec"]["template"]["spec"]["containers"][0]
    assert mongodb["args"] == ["--replSet", "rs0"]
    script = mongodb["readinessProbe"]["exec"]["command"][-1]
    assert script.startswith("try { rs.status() } catch (e) { rs.initiate(") and 'host: "mongodb:27017"' in script
    for name in METRICS_PORTS:
        assert find(objects, "Deployment", name)["spec"]["replicas"] == 1
    assert not [o for o in objects if o["kind"] == "ScaledObject"]
