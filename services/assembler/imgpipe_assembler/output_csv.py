"""The output CSV: every input column in input row order, plus output URLs and image errors. Pure."""

import csv
import io
from collections.abc import Iterable, Sequence

from imgpipe_schemas import ImageResult

OUTPUT_URLS = "Output Image Urls"
IMAGE_ERRORS = "Image Errors"


def build_output_csv(columns: Sequence[str], rows: Iterable[tuple[Sequence[str], Sequence[ImageResult]]]) -> bytes:
    """``rows`` are (input cells, image results in input URL order), already in input row order. A row's
    cells are stored without trailing empty ones, and padded to the header's width here.

    A failed image keeps its position in ``Output Image Urls`` as an empty entry, so the n-th output
    URL always belongs to the n-th input URL; ``Image Errors`` names each failed image and why.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*columns, OUTPUT_URLS, IMAGE_ERRORS])
    for cells, images in rows:
        urls = ",".join(image.output_url or "" for image in images)
        errors = "; ".join(
            f"image {number} ({image.source_url}): {image.error_code}: {image.error_message}"
            for number, image in enumerate(images, start=1)
            if image.output_url is None
        )
        writer.writerow([*cells, *[""] * (len(columns) - len(cells)), urls, errors])
    return out.getvalue().encode()
