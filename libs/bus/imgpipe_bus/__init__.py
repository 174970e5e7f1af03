from imgpipe_bus.admin import broker_reachable, ensure_topics, topic_names
from imgpipe_bus.codec import PoisonMessage, decode, encode
from imgpipe_bus.producer import EventProducer
from imgpipe_bus.settings import BusSettings
from imgpipe_bus.stream import create_app, event_batches, events, faust_topic, run_worker

__all__ = [
    "BusSettings",
    "EventProducer",
    "PoisonMessage",
    "broker_reachable",
    "create_app",
    "decode",
    "encode",
    "ensure_topics",
    "event_batches",
    "events",
    "faust_topic",
    "run_worker",
    "topic_names",
]
