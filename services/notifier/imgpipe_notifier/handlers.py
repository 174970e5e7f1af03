"""A completed request becomes one signed webhook delivery."""

import json
import logging

from imgpipe_notifier.adapters.webhook import DeliveryFailed, WebhookSender
from imgpipe_schemas import RequestCompleted

log = logging.getLogger(__name__)


def webhook_body(event: RequestCompleted) -> bytes:
    """The Standard Webhooks payload shape: type, timestamp, data."""
    data = event.model_dump(mode="json", include={"request_id", "status", "output_file_url", "progress"})
    return json.dumps(
        {"type": event.event_type, "timestamp": event.occurred_at.isoformat(), "data": data},
        separators=(",", ":"),
    ).encode()


async def notify(event: RequestCompleted, *, sender: WebhookSender, default_url: str | None) -> bool:
    """True when the subscriber acknowledged. The event id is the webhook id, stable across retries."""
    url = event.webhook_url or default_url
    if not url:
        log.info("request %s completed; no webhook URL to notify", event.request_id)
        return False
    try:
        attempts = await sender.send(url, str(event.event_id), webhook_body(event))
    except DeliveryFailed as exc:
        log.error("webhook for request %s not delivered to %s: %s", event.request_id, url, exc)
        return False
    log.info("webhook for request %s delivered to %s after %d attempt(s)", event.request_id, url, attempts)
    return True
