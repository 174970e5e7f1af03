"""Every use of faust's, mode's and aiokafka's private parts, in one place.

faust hard-codes what the services need to tune (a 1.5 s fetch wait, commits of acknowledged offsets past an
unfinished message, batches that wake up on a timer), and offers no public hook for it. What is patched here
is listed in ``PRIVATE_PARTS``; tests/unit/test_faust_internals.py checks each against the pinned versions,
so an upgrade that removes one fails there, by name, rather than in a running service.
"""

import inspect
from collections.abc import Callable
from typing import Any, Protocol, cast

import aiokafka.consumer.consumer
import aiokafka.consumer.fetcher
import faust
import faust.transport.consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from mode.utils.aiter import aiter

from imgpipe_bus.fetch_wait import AdaptiveFetchWait

# (class, attribute): a method or class attribute, or an attribute its instances set on themselves.
PRIVATE_PARTS: list[tuple[type, str]] = [
    (faust_aiokafka.AIOKafkaConsumerThread, "_create_worker_consumer"),
    (faust_aiokafka.Consumer, "_new_consumer_thread"),
    (faust_aiokafka.Consumer, "_new_offset"),
    (faust.transport.consumer.Consumer, "_acked"),
    (faust.App, "_new_transport"),
    (aiokafka.consumer.consumer.AIOKafkaConsumer, "_fetcher"),
    (aiokafka.consumer.consumer.AIOKafkaConsumer, "_fetch_max_wait_ms"),
    (aiokafka.consumer.fetcher.Fetcher, "_proc_fetch_request"),
    (aiokafka.consumer.fetcher.Fetcher, "_fetch_max_wait_ms"),
    (faust.Stream, "_enable_passive"),
    (faust.Stream, "_processors"),
]


def missing_private_parts() -> list[str]:
    """The private parts this module uses that the installed versions no longer have."""
    return [
        f"{owner.__module__}.{owner.__qualname__}.{name}"
        for owner, name in PRIVATE_PARTS
        if not hasattr(owner, name) and f"self.{name}" not in inspect.getsource(owner)
    ]


class TunedApp(Protocol):
    """What the tuned consumer asks of its app (imgpipe_bus.stream.ServiceApp)."""

    in_flight: Any
    fetch_wait: Callable[[], AdaptiveFetchWait]


def install_fetch_wait(fetcher: Any, wait: AdaptiveFetchWait) -> None:
    """Wraps aiokafka's Fetcher: each fetch's outcome (records or none) sets the wait of the next."""
    fetch = fetcher._proc_fetch_request
    fetcher._fetch_max_wait_ms = wait.busy_ms

    async def fetch_and_adapt(*args: Any, **kwargs: Any) -> bool:
        had_records = bool(await fetch(*args, **kwargs))
        fetcher._fetch_max_wait_ms = wait.observe(had_records)
        return had_records

    fetcher._proc_fetch_request = fetch_and_adapt


class _TunedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait = cast(TunedApp, self.app).fetch_wait()
        consumer._fetch_max_wait_ms = wait.busy_ms
        start = consumer.start

        async def start_then_adapt() -> None:
            await start()
            install_fetch_wait(consumer._fetcher, wait)  # the fetcher exists once the consumer has started

        consumer.start = start_then_adapt
        return consumer


class _TunedConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _TunedConsumerThread:
        return _TunedConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def _new_offset(self, tp: Any) -> int | None:
        """The offset faust would commit, but never past a message that was taken and not handled (see
        InFlight). faust commits the first run of acknowledged offsets, and it acknowledges the messages
        of an agent cancelled at stop as if they were handled; the offsets acknowledged beyond an
        unfinished message are kept for a later commit."""
        lowest = cast(TunedApp, self.app).in_flight.lowest_unfinished(tp)
        acked = self._acked[tp]
        if lowest is None or not acked:
            return super()._new_offset(tp)
        beyond = [offset for offset in acked if offset >= lowest]
        acked[:] = [offset for offset in acked if offset < lowest]
        try:
            return super()._new_offset(tp)
        finally:
            acked.extend(beyond)


class TunedTransport(faust_aiokafka.Transport):
    """The transport whose consumer applies the app's fetch wait and never commits past unfinished work."""

    Consumer = _TunedConsumer


def new_transport(app: faust.App) -> TunedTransport:
    """What faust.App._new_transport returns, tuned."""
    return TunedTransport(app.conf.broker_consumer, app)


def read_passively(stream: Any) -> None:
    """Makes the stream read its channel through its processors, as faust's own take() does."""
    stream._enable_passive(aiter(stream.channel))


def remove_processor(stream: Any, processor: Callable[..., Any]) -> None:
    """faust has add_processor and no way to take one off."""
    stream._processors.remove(processor)
