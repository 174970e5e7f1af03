"""A completed (or updated) request becomes one signed webhook delivery, attempted at once and then on a
schedule kept in MongoDB: a subscriber that is down for an hour holds no consumer and no offset back."""

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pymongo.errors import PyMongoError

from imgpipe_bus import Consumed, DeadLetterSink, Failure
from imgpipe_notifier import metrics
from imgpipe_notifier.adapters.deliveries import DELIVERED, FAILED, GONE, RETRYING, this_round
from imgpipe_notifier.ports import Deliveries, WebhookPoster
from imgpipe_runtime.logs import about_request
from imgpipe_schemas import RequestCompleted

log = logging.getLogger(__name__)

RECORD_RETRY_S, RECORD_RETRY_MAX_S = 0.1, 5.0


class DeliveryFailed(Exception):
    """The subscriber refused the webhook for good, or every scheduled attempt failed."""


@dataclass(frozen=True)
class Schedule:
    """``delays_s``: the waits between attempts. ``lease_s``: how long an attempt in progress keeps its
    delivery from the others (longer than a webhook's timeout); a notifier that dies mid-attempt leaves
    the delivery to be picked up again after it."""

    delays_s: tuple[float, ...]
    lease_s: float


@dataclass(frozen=True)
class Adapters:
    """What the handlers reach outside with, built once by main.build_app; ``schedule`` is when they
    attempt, ``default_url`` where a completion without a webhook URL of its own is sent (if anywhere)."""

    deliveries: Deliveries
    sender: WebhookPoster
    dead_letters: DeadLetterSink
    schedule: Schedule
    default_url: str | None
    # Deliveries attempted whose outcome is not recorded yet (the database refuses writes): not attempted
    # again meanwhile, though their lease runs out.
    recording: set[str] = field(default_factory=set)


def webhook_body(event: RequestCompleted) -> bytes:
    """The Standard Webhooks payload shape: type, timestamp, data."""
    data = event.model_dump(mode="json", include={"request_id", "status", "output_file_url", "progress"})
    return json.dumps(
        {"type": event.event_type, "timestamp": event.occurred_at.isoformat(), "data": data},
        separators=(",", ":"),
    ).encode()


def retryable(outcome: int | str) -> bool:
    """No answer, 5xx, 408 and 429 are worth another attempt; any other refusal, a destination the
    network policy refuses, or a URL that cannot be parsed, is final."""
    if isinstance(outcome, str):
        return not outcome.startswith(("blocked_address", "invalid_url"))
    return outcome >= 500 or outcome in (408, 429)


async def accept(
    event: RequestCompleted, letter: Consumed, adapters: Adapters, *, now: datetime | None = None
) -> str | None:
    with about_request(event.request_id):
        return await _accept(event, letter, adapters, now=now)


async def _accept(
    event: RequestCompleted, letter: Consumed, adapters: Adapters, *, now: datetime | None = None
) -> str | None:
    """Records the delivery and makes its first attempt; later attempts are deliver_due's. A completion
    delivered again (a redelivered message) finds its delivery recorded and changes nothing. The letter
    is kept with the delivery, to dead-letter the completion if its last attempt fails.

    A completion replayed from the dead-letter topic (``imgpipe dlq replay``) reopens its closed delivery,
    with the same webhook id and body: it is attempted at once, then on the whole schedule again, and its
    attempts are added to the earlier ones."""
    url = event.webhook_url or adapters.default_url
    if not url:
        log.info("request %s completed; no webhook URL to notify", event.request_id)
        return None
    now = now or datetime.now(UTC)
    delivery = await adapters.deliveries.open(
        str(event.event_id), str(event.request_id), url, webhook_body(event), letter, now, adapters.schedule.lease_s
    )
    if delivery is None and letter.replays:
        delivery = await adapters.deliveries.reopen(str(event.event_id), letter, now, adapters.schedule.lease_s)
        if delivery is not None:
            log.info("webhook %s of request %s reopened by replay %d", event.event_id, event.request_id, letter.replays)
    if delivery is None:
        if letter.replays:
            log.info(
                "webhook %s of request %s not reopened by replay %d: delivered, or still on its schedule",
                event.event_id,
                event.request_id,
                letter.replays,
            )
        return None
    return await attempt(delivery, adapters, now=now)


def utc_now() -> datetime:
    return datetime.now(UTC)


async def deliver_due(adapters: Adapters, *, concurrency: int, clock: Callable[[], datetime] = utc_now) -> int:
    """Attempts every delivery whose retry is due, ``concurrency`` at a time; returns how many. A pass
    can last many webhook timeouts, so each delivery is claimed, and its attempt recorded, at the time
    ``clock`` gives when it is claimed."""
    attempted = 0
    while claimed := await adapters.deliveries.claim_due(clock, adapters.schedule.lease_s, concurrency):
        claimed = [(delivery, at) for delivery, at in claimed if delivery["_id"] not in adapters.recording]
        if not claimed:
            break
        outcomes = await asyncio.gather(
            *(attempt(delivery, adapters, now=claimed_at) for delivery, claimed_at in claimed),
            return_exceptions=True,
        )
        for (delivery, _), outcome in zip(claimed, outcomes, strict=True):
            if isinstance(outcome, Exception):
                log.warning(
                    "webhook %s: attempt not recorded (%r); tried again after its lease", delivery["_id"], outcome
                )
        attempted += len(claimed)
    return attempted


async def attempt(delivery: dict, adapters: Adapters, *, now: datetime) -> str:
    with about_request(delivery.get("request_id")):
        return await _attempt(delivery, adapters, now=now)


async def _attempt(delivery: dict, adapters: Adapters, *, now: datetime) -> str:
    """One POST with the delivery's fixed webhook id and body; records the outcome and, if another
    attempt is due, when. The last failure dead-letters the completion event."""
    webhook_id, url, replay = delivery["_id"], delivery["url"], delivery.get("replays", 0)
    earlier = this_round(delivery)
    number = len(earlier) + 1
    started = time.perf_counter()
    outcome = await adapters.sender.post(url, webhook_id, bytes(delivery["body"]))
    seconds = time.perf_counter() - started
    delays = adapters.schedule.delays_s
    if isinstance(outcome, int) and 200 <= outcome < 300:
        state = DELIVERED
        log.info(
            "webhook %s for request %s delivered to %s (attempt %d)", webhook_id, delivery["request_id"], url, number
        )
    elif outcome == 410:
        state = GONE
        log.warning("webhook %s: %s answered 410 Gone; not retried", webhook_id, url)
    elif number > len(delays) or not retryable(outcome):
        state = FAILED
        reason = DeliveryFailed(f"webhook {webhook_id} to {url} failed after {number} attempt(s): {outcome}")
        first = earlier[0]["at"] if earlier else now
        # Before recording: if the dead letter cannot be stored now, the lease runs out and all is tried again.
        await adapters.dead_letters.send(
            Consumed.from_document(delivery["letter"]), Failure("notifier", reason, number, first, now)
        )
        log.error("%s; dead-lettered", reason)
    else:
        next_at = now + timedelta(seconds=delays[number - 1])
        await _record(adapters, webhook_id, replay, outcome, RETRYING, now, next_at)
        log.warning("webhook %s attempt %d to %s: %s; next at %s", webhook_id, number, url, outcome, next_at)
        metrics.attempted(outcome, RETRYING, seconds)
        return RETRYING
    await _record(adapters, webhook_id, replay, outcome, state, now)
    metrics.attempted(outcome, state, seconds)
    return state


async def _record(
    adapters: Adapters, webhook_id: str, replay: int, outcome, state: str, now: datetime, next_at=None
) -> None:
    """Records an attempt already made, waiting out the database: an attempt left unrecorded is made again
    when its lease ends, and a webhook delivered (or dead-lettered) would be sent (or dead-lettered) twice."""
    adapters.recording.add(webhook_id)
    try:
        for tries in itertools.count(1):
            try:
                await adapters.deliveries.record(webhook_id, replay, outcome, state, now, next_at)
                return
            except PyMongoError as exc:
                log.warning("webhook %s: attempt not recorded yet (%r); retrying", webhook_id, exc)
                await asyncio.sleep(min(RECORD_RETRY_S * 2 ** (tries - 1), RECORD_RETRY_MAX_S))
    finally:
        adapters.recording.discard(webhook_id)
