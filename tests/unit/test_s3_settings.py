"""The S3 store's settings: a bucket is required with IMGPIPE_BLOB_STORE=s3, the output URL lifetime is
seconds or an ISO 8601 duration within what a presigned URL allows, and a bad value stops a service with
the variable's own name."""

from datetime import timedelta

import pytest

from imgpipe_runtime.settings import BlobSettings, S3Settings, load_settings


@pytest.mark.parametrize(
    ("value", "ttl"), [("3600", timedelta(hours=1)), ("PT90M", timedelta(minutes=90)), ("P7D", timedelta(days=7))]
)
def test_the_output_url_lifetime_is_seconds_or_a_duration(monkeypatch, value, ttl):
    monkeypatch.setenv("IMGPIPE_OUTPUT_URL_TTL", value)
    assert S3Settings().url_ttl == ttl


@pytest.mark.parametrize("value", ["0", "P8D", "soon"])
def test_a_lifetime_no_presigned_url_can_have_stops_the_service_naming_the_variable(monkeypatch, capsys, value):
    monkeypatch.setenv("IMGPIPE_OUTPUT_URL_TTL", value)
    with pytest.raises(SystemExit) as stopped:
        load_settings(BlobSettings, "ingest")
    assert stopped.value.code == 2
    assert capsys.readouterr().err.startswith("ingest: cannot start: IMGPIPE_OUTPUT_URL_TTL: ")


def test_the_s3_store_without_a_bucket_stops_the_service_saying_which_setting_is_missing(monkeypatch, capsys):
    monkeypatch.setenv("IMGPIPE_BLOB_STORE", "s3")
    monkeypatch.delenv("IMGPIPE_S3_BUCKET", raising=False)
    with pytest.raises(SystemExit):
        load_settings(BlobSettings, "assembler")
    assert "IMGPIPE_BLOB_STORE=s3 needs IMGPIPE_S3_BUCKET" in capsys.readouterr().err
    monkeypatch.setenv("IMGPIPE_S3_BUCKET", "outputs")
    assert load_settings(BlobSettings, "assembler").s3.bucket == "outputs"
