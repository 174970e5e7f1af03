"""Standard Webhooks signing and verification (webhook-id, webhook-timestamp, webhook-signature)."""

from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

__all__ = ["LOCAL_WEBHOOK_SECRET", "WebhookVerificationError", "sign_headers", "verify"]

# Only for the embedded local stack; every real deployment sets IMGPIPE_WEBHOOK_SECRET.
LOCAL_WEBHOOK_SECRET = "whsec_aW1ncGlwZS1sb2NhbC1kZXZlbG9wbWVudC1zZWNyZXQ="


def sign_headers(secret: str, message_id: str, body: bytes, now: datetime | None = None) -> dict[str, str]:
    timestamp = (now or datetime.now(UTC)).replace(microsecond=0)
    signature = Webhook(secret).sign(message_id, timestamp, body.decode())
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature,
    }


def verify(secret: str, body: bytes, headers: dict[str, str]) -> object:
    """The parsed JSON body when the signature holds; WebhookVerificationError otherwise."""
    try:
        return Webhook(secret).verify(body, headers)
    except WebhookVerificationError:
        raise
    except (ValueError, TypeError) as exc:
        raise WebhookVerificationError(f"malformed signature headers: {exc}") from exc
