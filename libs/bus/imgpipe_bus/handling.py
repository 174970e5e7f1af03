"""The consume loop every agent shares: decode, handle with retries, dead-letter what cannot be handled.

A message is acknowledged (and its offset later committed) only once it was handled or dead-lettered,
so a crash at any point means it is delivered again, never lost.

What a handler gets and gives back:

- ``handle_each`` calls ``handler(event, letter)`` for every message: the decoded event, and the message
  as a Consumed (plain data, which a handler may keep to dead-letter the message itself later). Every
  handler gets both, so that its signature never depends on how it is registered.
- The handler returns ``DeadLetterCopy(reason)`` when it handled the event but wants a copy of the message
  in the dead-letter topic, to be replayed once the cause is fixed; anything else it returns means
  handled. Raising is a failure, retried per the stage's RetryPolicy; raising Unprocessable dead-letters
  the message at once.
- ``handle_batches`` calls ``handler(events)`` with the decoded events of a batch; what it returns is ignored.
  With ``with_letters`` it calls ``handler(events, letters=letters)``, the messages as Letters in the same
  order, for a handler that records where its events were (their partition and offset).
"""

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import faust
from confluent_kafka import KafkaException

from imgpipe_bus.batches import take_batches
from imgpipe_bus.codec import PoisonMessage, decode
from imgpipe_bus.dead_letters import Consumed, DeadLetters, Failure
from imgpipe_schemas import Event, Topic

if TYPE_CHECKING:
    from imgpipe_bus.stream import ServiceApp

log = logging.getLogger(__name__)


class Unprocessable(Exception):
    """Raised by a handler for a message that retrying cannot help: it is dead-lettered at once."""


@dataclass(frozen=True)
class DeadLetterCopy:
    """Returned by a handle_each handler that handled its event but wants a copy of the message dead-lettered.
    ``reason`` is an exception because its class and text become the letter's ``dlq.exception.class`` and
    ``dlq.exception.message`` headers, which the dlq tooling filters on; it is never raised."""

    reason: Exception


def is_broker_outage(exc: BaseException) -> bool:
    return isinstance(exc, KafkaException)


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` bounds failures of the handler itself; a failure that ``is_outage`` (the broker, the
    database or the file store unreachable or unable to write) is waited out with capped backoff instead,
    so that it dead-letters nothing."""

    attempts: int = 3
    backoff_s: float = 0.2
    max_backoff_s: float = 5.0
    is_outage: Callable[[BaseException], bool] = is_broker_outage

    def delay(self, failures: int) -> float:
        return random.uniform(0, min(self.max_backoff_s, self.backoff_s * 2 ** (failures - 1)))


class InFlight:
    """The messages being handled, so that a stopping worker can let them finish first (drain), and so
    that no offset is committed past a message that was not handled.

    faust acknowledges a message whenever its stream lets go of it: also when the agent holding it is
    cancelled at stop, so the final commit would cover messages that were parked by the drain or cut
    short by its timeout. A message stays ``unfinished`` from the moment it is taken until it has been
    handled; the consumer (imgpipe_bus.stream) never commits a partition past its lowest unfinished
    offset, whatever faust acknowledged.
    """

    def __init__(self) -> None:
        self.count = 0
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._unfinished: dict[Any, list[int]] = {}

    @contextlib.asynccontextmanager
    async def track(self, messages: Sequence[Any]) -> AsyncIterator[None]:
        """Around the handling of ``messages`` (faust messages): they stay unfinished unless the block
        ends normally."""
        for message in messages:
            self._unfinished.setdefault(message.tp, []).append(message.offset)
        if self.draining:
            # Stopping: the messages stay unfinished; they are delivered again after the restart.
            await asyncio.Event().wait()
        self.count += 1
        self._idle.clear()
        try:
            yield
        finally:
            self.count -= 1
            if not self.count:
                self._idle.set()
        for message in messages:
            self._unfinished[message.tp].remove(message.offset)

    def lowest_unfinished(self, tp: Any) -> int | None:
        """The offset below which every message of partition ``tp`` taken so far was handled."""
        offsets = self._unfinished.get(tp)
        return min(offsets) if offsets else None

    async def drain(self, timeout_s: float) -> int:
        """Stops new work and waits for the work in flight; returns how many were still running at the end."""
        self.draining = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        return self.count


@dataclass(frozen=True)
class Stage:
    """``dead_letter_poison`` is False for a stage that reads another stage's topic: the owner of the
    topic dead-letters an undecodable message once, the others log and skip it."""

    name: str
    topic: Topic
    dead_letters: DeadLetters
    policy: RetryPolicy = RetryPolicy()
    in_flight: InFlight = field(default_factory=InFlight)
    dead_letter_poison: bool = True


async def handle_each(
    stream: faust.StreamT[Any],
    stage: Stage,
    handler: Callable[[Event, Consumed], Awaitable[Any]],
    about: Callable[[Event], contextlib.AbstractContextManager[Any]] | None = None,
) -> None:
    """One message at a time, ``handler(event, letter)``; a DeadLetterCopy it returns dead-letters a copy of
    the message with that reason, as one attempt. ``about(event)`` is entered around the handling of each
    event, retries and dead-lettering included: the service's way to tag every line logged about it."""
    async for item in stream.events():
        async with stage.in_flight.track([item.message]):
            event = await _decode_or_dead_letter(stage, item.message)
            if event is None:
                continue
            returned: list[Any] = []

            # Bound now, per message: the call runs later, and again on each retry.
            async def call(
                event: Event = event,
                letter: Consumed = Consumed.of(item.message),  # noqa: B008
                returned: list[Any] = returned,
            ) -> None:
                returned.append(await handler(event, letter))

            with about(event) if about else contextlib.nullcontext():
                await _handle(stage, [item.message], call)
                if returned and isinstance(returned[-1], DeadLetterCopy):
                    now = datetime.now(UTC)
                    await _dead_letter(stage, item.message, Failure(stage.name, returned[-1].reason, 1, now, now))


async def handle_batches(
    stream: faust.StreamT[Any],
    stage: Stage,
    handler: Callable[..., Awaitable[Any]],
    max_events: int,
    within_s: float,
    *,
    with_letters: bool = False,
) -> None:
    """Like handle_each, a batch at a time; a batch that keeps failing is retried event by event, so only
    the events that fail alone are dead-lettered."""
    if with_letters:
        call = handler
    else:

        async def call(events: Sequence[Event], letters: Sequence[Consumed]) -> Any:
            return await handler(events)

    async for batch in take_batches(stream, max_events, within_s):
        async with stage.in_flight.track([item.message for item in batch]):
            await _handle_batch(stage, call, batch)


async def _handle_batch(stage: Stage, handler: Callable[..., Awaitable[Any]], batch: Sequence[Any]) -> None:
    decoded: list[tuple[Any, Event]] = []
    for item in batch:
        if (event := await _decode_or_dead_letter(stage, item.message)) is not None:
            decoded.append((item.message, event))
    if not decoded:
        return
    events = [event for _, event in decoded]
    letters = [Consumed.of(message) for message, _ in decoded]
    if await _attempt(stage, lambda: handler(events, letters=letters)):
        return
    for (message, event), letter in zip(decoded, letters, strict=True):
        await _handle(stage, [message], functools.partial(handler, [event], letters=[letter]))


async def _decode_or_dead_letter(stage: Stage, message: Any) -> Event | None:
    try:
        return decode(stage.topic, message.value)
    except PoisonMessage as exc:
        if not stage.dead_letter_poison:
            log.warning(
                "poison message at %s[%s]@%s skipped: %s", message.topic, message.partition, message.offset, exc
            )
            return None
        now = datetime.now(UTC)
        log.error(
            "poison message at %s[%s]@%s dead-lettered: %s", message.topic, message.partition, message.offset, exc
        )
        await _dead_letter(stage, message, Failure(stage.name, exc, 1, now, now))
        return None


async def _handle(stage: Stage, messages: list[Any], call: Callable[[], Awaitable[Any]]) -> None:
    failure = await _attempt(stage, call, give_up=True)
    if isinstance(failure, Failure):
        for message in messages:
            log.error(
                "message at %s[%s]@%s dead-lettered after %d attempts: %r",
                message.topic,
                message.partition,
                message.offset,
                failure.attempts,
                failure.exception,
            )
            await _dead_letter(stage, message, failure)


async def _attempt(stage: Stage, call: Callable[[], Awaitable[Any]], give_up: bool = False) -> bool | Failure:
    """True once ``call`` succeeds. After ``policy.attempts`` handler failures: the Failure if
    ``give_up``, else False. Infrastructure outages are waited out."""
    policy = stage.policy
    failures = outages = 0
    first: datetime | None = None
    while True:
        try:
            await call()
            return True
        except asyncio.CancelledError:
            raise
        except Unprocessable as exc:
            now = datetime.now(UTC)
            return Failure(stage.name, exc, failures + 1, first or now, now) if give_up else False
        except Exception as exc:  # noqa: BLE001 - a handler's failure, whatever it is: retried, then dead-lettered
            if policy.is_outage(exc):
                outages += 1
                log.warning("%s: infrastructure unavailable (%r); retrying", stage.name, exc)
                await asyncio.sleep(policy.delay(min(outages, 10)))
                continue
            failures += 1
            now = datetime.now(UTC)
            first = first or now
            if failures >= policy.attempts:
                return Failure(stage.name, exc, failures, first, now) if give_up else False
            log.warning("%s: attempt %d failed: %r", stage.name, failures, exc)
            await asyncio.sleep(policy.delay(failures))


async def _dead_letter(stage: Stage, message: Any, failure: Failure) -> None:
    """Retries until the dead letter is stored: acknowledging the message without it would lose it."""
    tries = 0
    while True:
        try:
            await stage.dead_letters.send(message, failure)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - acknowledging the message without its letter would lose it
            tries += 1
            log.warning("%s: dead letter not stored yet (%r); retrying", stage.name, exc)
            await asyncio.sleep(stage.policy.delay(min(tries, 10)))


def agent_stage(
    app: "ServiceApp",
    topic: Topic,
    producer: Any,
    outages: Callable[[BaseException], bool] = lambda exc: False,
    *,
    owns_topic: bool = True,
) -> Stage:
    """The stage of an app's agent over ``topic``: named and dead-lettered after the app's consumer group;
    a failure that ``outages`` recognises (imgpipe_runtime.mongo.OUTAGES: the database or the file store)
    is waited out like a broker outage. Only the topic's owner dead-letters poison messages."""
    return Stage(
        app.conf.id,
        topic,
        DeadLetters(producer, group=app.conf.id),
        RetryPolicy(is_outage=lambda exc: is_broker_outage(exc) or outages(exc)),
        app.in_flight,
        dead_letter_poison=owns_topic,
    )
