import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest

from imgpipe_runtime.webhooks import WebhookVerificationError, sign_headers, verify

SECRET = "whsec_" + base64.b64encode(b"a test secret of some length").decode()


def test_signature_is_hmac_sha256_of_id_timestamp_body():
    body = b'{"type":"request.completed"}'
    headers = sign_headers(SECRET, "msg_1", body)
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    expected = hmac.new(key, f"msg_1.{headers['webhook-timestamp']}.".encode() + body, hashlib.sha256).digest()
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-signature"] == "v1," + base64.b64encode(expected).decode()


def test_verify_accepts_a_good_signature_and_returns_the_payload():
    body = json.dumps({"a": 1}).encode()
    assert verify(SECRET, body, sign_headers(SECRET, "id", body)) == {"a": 1}


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h, b: ({**h, "webhook-signature": "v1,AAAA"}, b),
        lambda h, b: (h, b + b" "),
        lambda h, b: ({k: v for k, v in h.items() if k != "webhook-signature"}, b),
        lambda h, b: ({**h, "webhook-signature": "garbage"}, b),
        lambda h, b: (sign_headers(SECRET, "id", b, now=datetime.now(UTC) - timedelta(minutes=6)), b),
    ],
)
def test_verify_rejects_wrong_missing_malformed_or_stale_signatures(tamper):
    body = b'{"a":1}'
    headers, body = tamper(sign_headers(SECRET, "id", body), body)
    with pytest.raises(WebhookVerificationError):
        verify(SECRET, body, headers)


def test_rotation_signs_with_every_secret_and_verifies_with_any():
    old, new = SECRET, "whsec_" + base64.b64encode(b"the next secret").decode()
    body = b'{"a":1}'
    headers = sign_headers(f"{old},{new}", "id", body)
    assert len(headers["webhook-signature"].split()) == 2
    assert verify(new, body, headers) == {"a": 1}
    assert verify(old, body, headers) == {"a": 1}
    assert verify(f"{new} {old}", body, sign_headers(old, "id", body)) == {"a": 1}
    with pytest.raises(WebhookVerificationError):
        verify(new, body, sign_headers(old, "id", body))
