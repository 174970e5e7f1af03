"""Standard Webhooks signing and verification (webhook-id, webhook-timestamp, webhook-signature)."""

from datetime import UTC, datetime

from typing import Annotated

from pydantic import AfterValidator, Field
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

__all__ = ["LOCAL_WEBHOOK_SECRET", "WebhookSecrets", "WebhookVerificationError", "secrets_of", "sign_headers", "verify"]

# Only for the embedded local stack; every real deployment sets IMGPIPE_WEBHOOK_SECRET.
LOCAL_WEBHOOK_SECRET = "whsec_aW1ncGlwZS1sb2NhbC1kZXZlbG9wbWVudC1zZWNyZXQ="


def secrets_of(value: str) -> list[str]:
    """``IMGPIPE_WEBHOOK_SECRET`` may hold several secrets, comma- or space-separated, during a rotation."""
    secrets = [part for part in value.replace(",", " ").split() if part]
    if not secrets or not all(secret.startswith("whsec_") for secret in secrets):
        raise ValueError("webhook secrets must be whsec_<base64>, comma-separated")
    return secrets


WebhookSecrets = Annotated[
    str,
    AfterValidator(lambda value: secrets_of(value) and value),
    Field(description="whsec_<base64> secrets, comma-separated while rotating"),
]


def sign_headers(secret: str, message_id: str, body: bytes, now: datetime | None = None) -> dict[str, str]:
    """Signs with every secret in ``secret`` (one signature each, space-separated, as the standard allows)."""
    timestamp = (now or datetime.now(UTC)).replace(microsecond=0)
    signatures = [Webhook(one).sign(message_id, timestamp, body.decode()) for one in secrets_of(secret)]
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": " ".join(signatures),
    }


def verify(secret: str, body: bytes, headers: dict[str, str]) -> object:
    """The parsed JSON body when a signature holds for any secret in ``secret`` and the timestamp is within
    5 minutes; WebhookVerificationError otherwise."""
    failure: Exception | None = None
    for one in secrets_of(secret):
        try:
            return Webhook(one).verify(body, headers)
        except WebhookVerificationError as exc:
            failure = exc
        except (ValueError, TypeError) as exc:
            failure = WebhookVerificationError(f"malformed signature headers: {exc}")
    raise failure
