"""Standard Webhooks signing and verification (webhook-id, webhook-timestamp, webhook-signature)."""

import base64
import binascii
import os
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, Field
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

__all__ = ["WebhookSecrets", "WebhookVerificationError", "generate_secret", "secrets_of", "sign_headers", "verify"]

MIN_KEY_BYTES = 16
# Secrets that were published (an earlier local-development default): anyone could sign with them.
PUBLISHED_KEYS = frozenset({base64.b64decode("aW1ncGlwZS1sb2NhbC1kZXZlbG9wbWVudC1zZWNyZXQ=")})


def generate_secret() -> str:
    """A fresh secret, as the local stack makes one for each run."""
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def secrets_of(value: str) -> list[str]:
    """``IMGPIPE_WEBHOOK_SECRET`` may hold several secrets, comma- or space-separated, during a rotation.
    Each must be ``whsec_`` and the base64 of at least 16 bytes, and not a published one: a secret that
    cannot sign would turn every delivery into a dead letter, one that anybody knows proves nothing."""
    secrets = [part for part in value.replace(",", " ").split() if part]
    if not secrets:
        raise ValueError("no webhook secret given: set IMGPIPE_WEBHOOK_SECRET to whsec_<base64 of 16+ bytes>")
    for secret in secrets:
        if not secret.startswith("whsec_"):
            raise ValueError("webhook secrets must be whsec_<base64>, comma-separated")
        try:
            key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except binascii.Error as exc:
            raise ValueError("a webhook secret is not whsec_ followed by base64") from exc
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"a webhook secret must hold at least {MIN_KEY_BYTES} bytes; one holds {len(key)}")
        if key in PUBLISHED_KEYS:  # compared as bytes: base64 has several spellings of one key
            raise ValueError("that webhook secret was published and proves nothing: generate a new one")
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
    failure: WebhookVerificationError | None = None
    for one in secrets_of(secret):
        try:
            return Webhook(one).verify(body, headers)
        except WebhookVerificationError as exc:
            failure = exc
        except (ValueError, TypeError) as exc:
            failure = WebhookVerificationError(f"malformed signature headers: {exc}")
    raise failure or WebhookVerificationError("no secret to verify with")
