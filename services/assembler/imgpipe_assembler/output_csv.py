"""The output CSV: every input column in input row order, plus output URLs and image errors. Pure."""

import csv
import hashlib
import io
from collections.abc import Iterable, Sequence
from typing import IO

from imgpipe_schemas import ImageResult

OUTPUT_URLS = "Output Image Urls"
IMAGE_ERRORS = "Image Errors"


class OutputCsvWriter:
    """Writes the output CSV into ``out`` a row at a time, so that no request's output is ever whole in
    memory; ``digest`` is the SHA-256 of what was written, to tell a rebuilt output from the stored one.

    A failed image keeps its position in ``Output Image Urls`` as an empty entry, so the n-th output URL
    always belongs to the n-th input URL; ``Image Errors`` names each failed image and why. A row's cells
    are stored without trailing empty ones, and padded to the header's width here.
    """

    def __init__(self, columns: Sequence[str], out: IO[bytes]) -> None:
        self._width = len(columns)
        self._out = out
        self._buffer = io.StringIO()
        self._csv = csv.writer(self._buffer, lineterminator="\n")
        self.digest = hashlib.sha256()
        self._csv.writerow([*columns, OUTPUT_URLS, IMAGE_ERRORS])
        self._flush()

    def add(self, cells: Sequence[str], images: Sequence[ImageResult]) -> None:
        """The next row, in input row order, with its images' results in input URL order."""
        urls = ",".join(image.output_url or "" for image in images)
        errors = "; ".join(
            f"image {number} ({image.source_url}): {image.error_code}: {image.error_message}"
            for number, image in enumerate(images, start=1)
            if image.output_url is None
        )
        self._csv.writerow([*cells, *[""] * (self._width - len(cells)), urls, errors])
        self._flush()

    def _flush(self) -> None:
        data = self._buffer.getvalue().encode()
        self._buffer.seek(0)
        self._buffer.truncate()
        self.digest.update(data)
        self._out.write(data)


def build_output_csv(columns: Sequence[str], rows: Iterable[tuple[Sequence[str], Sequence[ImageResult]]]) -> bytes:
    """The whole output of ``rows`` (input cells, image results), already in input row order."""
    out = io.BytesIO()
    writer = OutputCsvWriter(columns, out)
    for cells, images in rows:
        writer.add(cells, images)
    return out.getvalue()
