"""faust-streaming apps tuned for low per-hop latency."""

import logging
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import faust

from imgpipe_bus.faust_internals import TunedTransport, new_transport
from imgpipe_bus.fetch_wait import AdaptiveFetchWait
from imgpipe_bus.handling import InFlight
from imgpipe_bus.settings import BusSettings
from imgpipe_schemas import Topic

log = logging.getLogger(__name__)


def create_app(name: str, settings: BusSettings, **conf: Any) -> "ServiceApp":
    """A faust app whose consumer waits at most ``settings.fetch_max_wait_ms`` per fetch while
    messages flow, and ``settings.idle_fetch_max_wait_ms`` once idle (see fetch_wait).

    faust hard-codes a 1.5 s fetch wait and silently ignores settings it does not know, so the
    values are applied by the transport classes below, the one place that builds the consumer.
    """
    datadir = Path(tempfile.gettempdir()) / f"imgpipe-faust-{name}"
    app = ServiceApp(
        name,
        broker=settings.faust_broker,
        datadir=str(datadir),
        web_enabled=False,
        topic_allow_declare=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        broker_client_id=f"{settings.client_id}-{name}",
        producer_linger_ms=settings.linger_ms,
        # The in-flight drain in on_stop replaces faust's wait for every buffered message, which would
        # wait forever on the messages a draining worker leaves unstarted.
        stream_wait_empty=False,
        **conf,
    )
    app.fetch_wait = lambda: AdaptiveFetchWait(
        settings.fetch_max_wait_ms, settings.idle_fetch_max_wait_ms, settings.idle_after_s
    )
    app.drain_timeout_s = settings.drain_timeout_s
    return app


def faust_topic(app: faust.App, topic: Topic) -> faust.TopicT:
    return app.topic(topic.name, key_serializer="raw", value_serializer="raw")


class ServiceApp(faust.App):
    """The app every service runs: tuned fetch waits, in-flight tracking and a drain on stop, a start hook
    for the health port, and closers run at shutdown."""

    fetch_wait: Callable[[], AdaptiveFetchWait] = staticmethod(lambda: AdaptiveFetchWait(1500, 1500, 1.0))

    drain_timeout_s: float = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._closers: list[Callable[[], Awaitable[Any]]] = []
        self._starters: list[Callable[[], Awaitable[Any]]] = []
        self.in_flight = InFlight()
        self.first_rebalance_done = False

    def holds(self, topic: Topic, partition: int) -> bool:
        """Whether this member of its consumer group is assigned ``partition`` of ``topic``: between two
        rebalances exactly one member of the group is, which makes it the one to run what must run once
        per group (faust's own on_leader does the same with a topic of its own)."""
        return any(tp.topic == topic.name and tp.partition == partition for tp in self.consumer.assignment())

    def start_with(self, start: Callable[[], Awaitable[Any]]) -> None:
        """Runs ``start`` when the app starts, before its consumer joins the group: for a health port,
        which must answer while the service is still starting."""
        self._starters.append(start)

    async def on_start(self) -> None:
        await super().on_start()
        for start in self._starters:
            await start()

    def on_rebalance_end(self) -> None:
        """faust calls this once a rebalance is over and the streams read again (the worker is ready)."""
        super().on_rebalance_end()
        self.first_rebalance_done = True

    async def on_stop(self) -> None:
        """SIGTERM: no new messages are started, the ones in flight finish, then faust stops and commits
        up to the first message not handled; that one and those after it are delivered again."""
        still_running = await self.in_flight.drain(self.drain_timeout_s)
        log.info("drained in-flight work before stopping (%d still running)", still_running)
        await super().on_stop()

    def close_on_shutdown(self, close: Callable[[], Awaitable[Any]]) -> None:
        """Runs ``close`` once the agents have stopped: for sessions, clients and pools they used."""
        self._closers.append(close)

    async def on_shutdown(self) -> None:
        await super().on_shutdown()
        for close in self._closers:
            try:
                await close()
            except Exception:
                log.exception("error while closing %s", close)

    def _new_transport(self) -> TunedTransport:
        return new_transport(self)


def run_worker(app: faust.App, log_level: str) -> None:
    """Runs the app's agents until SIGTERM or SIGINT, then drains them and exits. Logging stays as configured."""
    worker = faust.Worker(app, loglevel=log_level, quiet=True, override_logging=False)
    worker.spinner = None
    worker.execute_from_commandline()
