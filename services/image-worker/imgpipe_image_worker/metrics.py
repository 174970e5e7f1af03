"""The image-worker's Prometheus metrics (served on its health port, see imgpipe_bus.health).

Images are counted as they are reported, once per place in a row: a source that appears several times in
a request is fetched and compressed once, so its bytes and durations are counted once. The error code
label takes the image errors' own codes (``http_404``, ``not_an_image``, ``time_budget_exceeded``, …), a
bounded set; ``ok`` images have an empty one.

``imgpipe_compress_seconds`` runs from handing the source to the codec pool until its output is back:
it includes the wait for a free codec process and, with the directory blob store, the write of the
output, which the codec process does itself. ``imgpipe_store_seconds`` times the writes the worker does
(GridFS).
"""

import time

from prometheus_client import Counter, Histogram

from imgpipe_schemas import ImageResult

IMAGES = Counter(
    "imgpipe_images", "Images reported in row results, by outcome and error code.", ["outcome", "error_code"]
)
ROWS = Counter("imgpipe_rows_processed", "Row results the image-worker published.")
SOURCE_BYTES = Counter("imgpipe_source_bytes", "Bytes of source images downloaded.")
OUTPUT_BYTES = Counter("imgpipe_output_bytes", "Bytes of output images written.")
FETCH_SECONDS = Histogram(
    "imgpipe_fetch_seconds",
    "A source's download, every redirect, retry and wait included, by outcome.",
    ["outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
COMPRESS_SECONDS = Histogram(
    "imgpipe_compress_seconds",
    "A source's compression, from the codec pool's queue to its output, by outcome.",
    ["outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
STORE_SECONDS = Histogram(
    "imgpipe_store_seconds",
    "An output image's write to the blob store by the worker.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
)


def stored(length: int, seconds: float | None) -> None:
    """An output image written: by the worker in ``seconds``, or (None) by the codec process."""
    OUTPUT_BYTES.inc(length)
    if seconds is not None:
        STORE_SECONDS.observe(seconds)


def reported(images: list[ImageResult]) -> None:
    """One published row result."""
    ROWS.inc()
    for image in images:
        if image.output_url:
            IMAGES.labels("ok", "").inc()
        else:
            IMAGES.labels("failed", image.error_code or "unknown").inc()


class StageClock:
    """Times an image's fetch, then its compression: each stage is observed when the next begins, or with
    outcome ``failed`` when the image fails during it."""

    def __init__(self) -> None:
        self._histogram: Histogram | None = FETCH_SECONDS
        self._started = time.perf_counter()

    def fetched(self, length: int) -> None:
        SOURCE_BYTES.inc(length)
        self._next(COMPRESS_SECONDS)

    def compressed(self) -> None:
        self._next(None)

    def failed(self) -> None:
        self._observe("failed")
        self._histogram = None

    def _next(self, histogram: Histogram | None) -> None:
        self._observe("ok")
        self._histogram, self._started = histogram, time.perf_counter()

    def _observe(self, outcome: str) -> None:
        if self._histogram is not None:
            self._histogram.labels(outcome).observe(time.perf_counter() - self._started)
