from imgpipe_bus.admin import broker_reachable, ensure_topics, topic_names
from imgpipe_bus.codec import PoisonMessage, decode, encode
from imgpipe_bus.dead_letters import Consumed, DeadLetters, Failure, dlq_name, origin_of
from imgpipe_bus.handling import (
    DeadLetterCopy,
    RetryPolicy,
    Stage,
    Unprocessable,
    agent_stage,
    handle_batches,
    handle_each,
)
from imgpipe_bus.health import HealthSettings, serve_health
from imgpipe_bus.ports import DeadLetterSink, Publisher
from imgpipe_bus.producer import EventProducer
from imgpipe_bus.service import run_service
from imgpipe_bus.settings import BusSettings
from imgpipe_bus.stream import ServiceApp, create_app, faust_topic, run_worker

__all__ = [
    "BusSettings",
    "DeadLetterCopy",
    "DeadLetterSink",
    "DeadLetters",
    "EventProducer",
    "Failure",
    "HealthSettings",
    "Consumed",
    "PoisonMessage",
    "Publisher",
    "RetryPolicy",
    "ServiceApp",
    "Stage",
    "Unprocessable",
    "agent_stage",
    "broker_reachable",
    "create_app",
    "decode",
    "dlq_name",
    "encode",
    "ensure_topics",
    "faust_topic",
    "handle_batches",
    "handle_each",
    "origin_of",
    "run_service",
    "run_worker",
    "serve_health",
    "topic_names",
]
