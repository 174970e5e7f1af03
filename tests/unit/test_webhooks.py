import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest

from imgpipe_runtime.webhooks import WebhookVerificationError, generate_secret, secrets_of, sign_headers, verify

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
    old, new = SECRET, "whsec_" + base64.b64encode(b"the next secret, rotated in").decode()
    body = b'{"a":1}'
    headers = sign_headers(f"{old},{new}", "id", body)
    assert len(headers["webhook-signature"].split()) == 2
    assert verify(new, body, headers) == {"a": 1}
    assert verify(old, body, headers) == {"a": 1}
    assert verify(f"{new} {old}", body, sign_headers(old, "id", body)) == {"a": 1}
    with pytest.raises(WebhookVerificationError):
        verify(new, body, sign_headers(old, "id", body))


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "no webhook secret given"),
        ("whsec_", "at least 16 bytes"),
        ("whsec_" + base64.b64encode(b"short").decode(), "at least 16 bytes"),
        ("whsec_not base64!", "not whsec_ followed by base64"),
        ("whsec_aW1ncGlwZS1sb2NhbC1kZXZlbG9wbWVudC1zZWNyZXQ=", "was published"),
        ("plain-secret", "must be whsec_"),
    ],
)
def test_a_secret_that_cannot_sign_or_is_known_is_refused(value, reason):
    with pytest.raises(ValueError, match=reason):
        secrets_of(value)


def test_a_service_without_a_usable_secret_refuses_to_start_and_says_why(monkeypatch, capsys):
    from imgpipe_notifier.settings import Settings
    from imgpipe_runtime.settings import load_settings

    for value in (None, "whsec_"):
        if value is None:
            monkeypatch.delenv("IMGPIPE_WEBHOOK_SECRET", raising=False)
        else:
            monkeypatch.setenv("IMGPIPE_WEBHOOK_SECRET", value)
        with pytest.raises(SystemExit) as exited:
            load_settings(Settings, "notifier")
        assert exited.value.code == 2
        assert "notifier: cannot start: IMGPIPE_WEBHOOK_SECRET:" in capsys.readouterr().err
    monkeypatch.setenv("IMGPIPE_WEBHOOK_SECRET", generate_secret())
    assert load_settings(Settings, "notifier").webhook_secret.startswith("whsec_")


def test_another_base64_spelling_of_a_published_key_is_refused_too():
    """Unused bits of the last base64 character do not change the key."""
    with pytest.raises(ValueError, match="was published"):
        secrets_of("whsec_aW1ncGlwZS1sb2NhbC1kZXZlbG9wbWVudC1zZWNyZXR=")


def test_a_bad_setting_of_a_nested_group_is_named_by_its_own_variable(monkeypatch, capsys):
    from imgpipe_notifier.settings import Settings
    from imgpipe_runtime.settings import load_settings

    monkeypatch.setenv("IMGPIPE_WEBHOOK_SECRET", generate_secret())
    monkeypatch.setenv("IMGPIPE_MONGO_TIMEOUT_MS", "abc")
    with pytest.raises(SystemExit):
        load_settings(Settings, "notifier")
    assert "notifier: cannot start: IMGPIPE_MONGO_TIMEOUT_MS:" in capsys.readouterr().err
