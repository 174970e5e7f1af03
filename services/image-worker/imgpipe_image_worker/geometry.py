"""Resizing to a request's box (imgpipe_schemas.ImageOptions): never up, aspect ratio kept.

A JPEG is decoded at a reduced scale when the box allows (libjpeg's DCT scaling, 1/2, 1/4 or 1/8, through
``Image.draft``): decoding a 1500² photo at 1/8 costs a fraction of decoding it whole, so a thumbnail costs
less CPU than re-encoding the photo at full size. The decoded image is never smaller than the output
needs; the exact size comes from one Lanczos resize of that (with ``reducing_gap``: cheap box reductions
first, for sources that cannot be drafted).
"""

import math
from dataclasses import dataclass

from PIL import Image

from imgpipe_schemas import ImageOptions

# EXIF orientations whose display swaps width and height.
TRANSPOSED = {5, 6, 7, 8}
REDUCING_GAP = 3.0


@dataclass(frozen=True)
class Plan:
    """For a displayed (oriented) image: take ``crop`` (fractions of its width and height), resize that
    to ``size``, and centre it on a ``canvas`` of ``background`` when there is one (pad).
    ``whole`` is the size the whole image would be at the output's scale: the least it must be decoded at."""

    size: tuple[int, int]
    crop: tuple[float, float, float, float]
    whole: tuple[int, int]
    canvas: tuple[int, int] | None = None
    background: str = "ffffff"


def plan(width: int, height: int, options: ImageOptions) -> Plan | None:
    """What to do with a ``width`` × ``height`` image (as displayed); None when it is fine as it is."""
    if not options.resizes:
        return None
    box_w = options.max_width or math.inf
    box_h = options.max_height or math.inf
    if options.fit == "cover":
        scale = min(1.0, max(box_w / width, box_h / height))
        whole = (max(1, round(width * scale)), max(1, round(height * scale)))
        size = (min(int(box_w), whole[0]), min(int(box_h), whole[1]))
        crop_w, crop_h = size[0] / whole[0], size[1] / whole[1]
        crop = ((1 - crop_w) / 2, (1 - crop_h) / 2, (1 + crop_w) / 2, (1 + crop_h) / 2)
    else:
        scale = min(1.0, box_w / width, box_h / height)
        whole = size = (max(1, round(width * scale)), max(1, round(height * scale)))
        crop = (0.0, 0.0, 1.0, 1.0)
    canvas = (int(box_w), int(box_h)) if options.fit == "pad" else None
    if size == (width, height) and canvas in (None, size):
        return None
    return Plan(size=size, crop=crop, whole=whole, canvas=canvas, background=options.background)


def load_reduced(image: Image.Image, shape: Plan | None, orientation: int = 1) -> Image.Image:
    """Loads ``image``'s pixels, a JPEG's at the smallest DCT scale that still covers ``shape.whole``
    (``orientation`` is its EXIF orientation: the box is in displayed terms, the decoder's in stored ones)."""
    if shape is not None and image.format == "JPEG":
        need = shape.whole[::-1] if orientation in TRANSPOSED else shape.whole
        image.draft(image.mode, need)
    image.load()
    return image


def apply(image: Image.Image, shape: Plan) -> Image.Image:
    """``image`` (displayed, possibly decoded at a reduced scale) cropped, resized and padded by ``shape``."""
    width, height = image.size
    left, top, right, bottom = shape.crop
    box = (left * width, top * height, right * width, bottom * height)
    resized = image.resize(shape.size, Image.Resampling.LANCZOS, box=box, reducing_gap=REDUCING_GAP)
    if shape.canvas is None:
        return resized
    if resized.mode not in ("RGB", "RGBA"):
        resized = resized.convert("RGBA" if "A" in resized.mode else "RGB")
    colour = tuple(int(shape.background[i : i + 2], 16) for i in (0, 2, 4))
    canvas = Image.new(resized.mode, shape.canvas, colour + ((255,) if resized.mode == "RGBA" else ()))
    offset = ((shape.canvas[0] - shape.size[0]) // 2, (shape.canvas[1] - shape.size[1]) // 2)
    canvas.paste(resized, offset)
    canvas.info = resized.info
    return canvas
