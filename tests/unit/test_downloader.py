import pytest

from imgpipe_image_worker.adapters.downloader import retry_after


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("2", 2.0), ("0.5", 0.5), ("3600", 30.0), ("-1", 0.0), (None, None), ("Wed, 21 Oct 2015 07:28:00 GMT", None)],
)
def test_retry_after_seconds_are_honoured_within_a_cap(header, seconds):
    assert retry_after(header) == seconds
