"""A completed (or updated) request becomes one signed webhook delivery, retried on a schedule."""

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence

from imgpipe_bus import Unprocessable
from imgpipe_notifier.adapters.deliveries import DeliveryLog
from imgpipe_notifier.adapters.webhook import WebhookSender
from imgpipe_schemas import RequestCompleted

log = logging.getLogger(__name__)

DELIVERED, RETRYING, GONE, FAILED = "delivered", "retrying", "gone", "failed"


class DeliveryFailed(Unprocessable):
    """The subscriber refused the webhook for good, or every scheduled attempt failed."""


def webhook_body(event: RequestCompleted) -> bytes:
    """The Standard Webhooks payload shape: type, timestamp, data."""
    data = event.model_dump(mode="json", include={"request_id", "status", "output_file_url", "progress"})
    return json.dumps(
        {"type": event.event_type, "timestamp": event.occurred_at.isoformat(), "data": data},
        separators=(",", ":"),
    ).encode()


def retryable(outcome: int | str) -> bool:
    """No answer, 5xx, 408 and 429 are worth another attempt; any other refusal, or a destination the
    network policy refuses, is final."""
    if isinstance(outcome, str):
        return not outcome.startswith("blocked_address")
    return outcome >= 500 or outcome in (408, 429)


async def notify(
    event: RequestCompleted,
    *,
    sender: WebhookSender,
    deliveries: DeliveryLog,
    default_url: str | None,
    schedule_s: Sequence[float],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> str | None:
    """Delivers with the event id as ``webhook-id`` on every attempt: first at once, then after each delay
    of ``schedule_s``. 2xx is delivered, 410 means the subscriber is gone (no more attempts); anything else
    that remains after the schedule raises DeliveryFailed (the message is dead-lettered)."""
    url = event.webhook_url or default_url
    if not url:
        log.info("request %s completed; no webhook URL to notify", event.request_id)
        return None
    webhook_id, request_id = str(event.event_id), str(event.request_id)
    if await deliveries.state(webhook_id) in (DELIVERED, GONE):
        return None  # a redelivered completion that was already handled
    body = webhook_body(event)
    for attempt, delay in enumerate([0.0, *schedule_s], start=1):
        await sleep(delay)
        outcome = await sender.post(url, webhook_id, body)
        if isinstance(outcome, int) and 200 <= outcome < 300:
            await deliveries.record(webhook_id, request_id, url, outcome, DELIVERED)
            log.info("webhook %s for request %s delivered to %s (attempt %d)", webhook_id, request_id, url, attempt)
            return DELIVERED
        if outcome == 410:
            await deliveries.record(webhook_id, request_id, url, outcome, GONE)
            log.warning("webhook %s: %s answered 410 Gone; not retried", webhook_id, url)
            return GONE
        final = attempt > len(schedule_s) or not retryable(outcome)
        await deliveries.record(webhook_id, request_id, url, outcome, FAILED if final else RETRYING)
        if final:
            raise DeliveryFailed(f"webhook {webhook_id} to {url} failed after {attempt} attempt(s): {outcome}")
        log.warning("webhook %s attempt %d to %s: %s; retrying", webhook_id, attempt, url, outcome)
    raise AssertionError("unreachable")
