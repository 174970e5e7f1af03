"""The output CSV: every input column in input row order, plus output URLs, image errors, image details and
what a marketplace preset's checks found. Pure."""

import csv
import hashlib
import io
from collections.abc import Iterable, Sequence
from typing import IO

from imgpipe_schemas import ImageResult

OUTPUT_URLS = "Output Image Urls"
IMAGE_ERRORS = "Image Errors"
IMAGE_DETAILS = "Image Details"
IMAGE_CHECKS = "Image Checks"


class OutputCsvWriter:
    """Writes the output CSV into ``out`` a row at a time, so that no request's output is ever whole in
    memory; ``digest`` is the SHA-256 of what was written, to tell a rebuilt output from the stored one.

    A failed image keeps its position in ``Output Image Urls`` as an empty entry, so the n-th output URL
    always belongs to the n-th input URL; ``Image Errors`` names each failed image and why. ``Image Details``
    holds, in the same positions as the URLs, each output's ``quality=…;score=…;WxH;bytes`` (details).
    ``Image Checks`` names, for a request with a preset, each reason its marketplace would reject an image
    for (``image 2: 640×480 is below 1000 px on its longest side``); it is empty without a preset. A row's
    cells are stored without trailing empty ones, and padded to the header's width here.
    """

    def __init__(self, columns: Sequence[str], out: IO[bytes]) -> None:
        self._width = len(columns)
        self._out = out
        self._buffer = io.StringIO()
        self._csv = csv.writer(self._buffer, lineterminator="\n")
        self.digest = hashlib.sha256()
        self._csv.writerow([*columns, OUTPUT_URLS, IMAGE_ERRORS, IMAGE_DETAILS, IMAGE_CHECKS])
        self._flush()

    def add(self, cells: Sequence[str], images: Sequence[ImageResult]) -> None:
        """The next row, in input row order, with its images' results in input URL order."""
        urls = ",".join(image.output_url or "" for image in images)
        errors = "; ".join(
            f"image {number} ({image.source_url}): {image.error_code}: {image.error_message}"
            for number, image in enumerate(images, start=1)
            if image.output_url is None
        )
        details_of = ",".join(details(image) if image.ok else "" for image in images)
        checks = "; ".join(
            f"image {number}: {problem}"
            for number, image in enumerate(images, start=1)
            for problem in image.checks or ()
        )
        self._csv.writerow([*cells, *[""] * (self._width - len(cells)), urls, errors, details_of, checks])
        self._flush()

    def _flush(self) -> None:
        data = self._buffer.getvalue().encode()
        self._buffer.seek(0)
        self._buffer.truncate()
        self.digest.update(data)
        self._out.write(data)


def details(image: ImageResult) -> str:
    """``quality=62;score=0.9912;1200x800;48213``: the encoder quality (empty for a source kept as it is),
    the perceptual score when a quality mode chose that quality (else empty), the size in pixels (empty
    for a result stored before sizes were reported) and the output's bytes."""
    quality = "" if image.quality is None else str(image.quality)
    score = "" if image.score is None else f"{image.score:.4f}"
    size = "" if image.width is None or image.height is None else f"{image.width}x{image.height}"
    return f"quality={quality};score={score};{size};{image.bytes_out}"


def build_output_csv(columns: Sequence[str], rows: Iterable[tuple[Sequence[str], Sequence[ImageResult]]]) -> bytes:
    """The whole output of ``rows`` (input cells, image results), already in input row order."""
    out = io.BytesIO()
    writer = OutputCsvWriter(columns, out)
    for cells, images in rows:
        writer.add(cells, images)
    return out.getvalue()
