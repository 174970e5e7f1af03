"""The services a local stack runs, once: the stack starts them, its supervisor knows which consume topics."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Service:
    name: str
    # A faust service: it consumes topics (so it cannot outlive the broker's log), and serves /metrics and
    # /healthz on a port of its own.
    consumes: bool


SERVICES = (
    Service("ingest", consumes=False),
    Service("image-worker", consumes=True),
    Service("assembler", consumes=True),
    Service("notifier", consumes=True),
)
CONSUMERS = frozenset(service.name for service in SERVICES if service.consumes)


def service_of(label: str) -> str:
    """The service a process label names: ``image-worker-2`` is a copy of ``image-worker``."""
    return next((s.name for s in SERVICES if label == s.name or label.startswith(f"{s.name}-")), label)
