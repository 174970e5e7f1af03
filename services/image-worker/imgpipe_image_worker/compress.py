"""Image compression. Pure and picklable: it runs in a process pool, bytes in, bytes out.

Output policy: the requested format at the requested quality (JPEG 50 by default), EXIF rotation
applied to the pixels, ICC profile kept. JPEG has no alpha: transparency is flattened onto white.
PNG has no quality setting: below quality 95 it is quantised to an adaptive palette of
``256 * quality / 100`` colours, which is what "quality" can mean for it. ``keep`` writes the
source's own format where it is JPEG, PNG or WebP, else JPEG. An animated image keeps its first frame.
Whenever the result would not be smaller than the source, the source bytes are kept instead.
"""

import io
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

FORMATS = ("jpeg", "webp", "png", "keep")
JPEG_MODES = {"RGB", "L", "CMYK"}
TYPES = {"JPEG": ("jpg", "image/jpeg"), "PNG": ("png", "image/png"), "WEBP": ("webp", "image/webp")}
SOURCE_TYPES = {
    **TYPES,
    "GIF": ("gif", "image/gif"),
    "TIFF": ("tiff", "image/tiff"),
    "BMP": ("bmp", "image/bmp"),
}


class ImageRejected(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    def __reduce__(self):
        # Raised in a pool process and unpickled in the worker: both arguments must travel.
        return (type(self), (self.code, str(self)))


@dataclass(frozen=True)
class Compressed:
    data: bytes
    extension: str
    content_type: str
    kept_source: bool = False


def compress(data: bytes, quality: int = 50, max_pixels: int = 50_000_000, output_format: str = "jpeg") -> Compressed:
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with Image.open(io.BytesIO(data)) as image:
            source_format = image.format
            image.load()
            icc_profile = image.info.get("icc_profile")
            image = ImageOps.exif_transpose(image) or image
            target = _target(output_format, source_format)
            out = io.BytesIO()
            _save(image, out, target, quality, icc_profile)
    except Image.DecompressionBombError as exc:
        raise ImageRejected("too_many_pixels", str(exc)) from exc
    except UnidentifiedImageError as exc:
        raise ImageRejected("not_an_image", "the content is not an image Pillow can read") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageRejected("undecodable_image", f"the image could not be decoded: {exc}") from exc
    if out.tell() >= len(data) and source_format in SOURCE_TYPES:
        extension, content_type = SOURCE_TYPES[source_format]
        return Compressed(data, extension, content_type, kept_source=True)
    extension, content_type = TYPES[target]
    return Compressed(out.getvalue(), extension, content_type)


def _target(output_format: str, source_format: str | None) -> str:
    if output_format == "keep":
        return source_format if source_format in TYPES else "JPEG"
    return output_format.upper()


def _save(image: Image.Image, out: io.BytesIO, target: str, quality: int, icc_profile: bytes | None) -> None:
    if target == "JPEG":
        _jpeg_compatible(image).save(out, "JPEG", quality=quality, optimize=True, icc_profile=icc_profile)
    elif target == "WEBP":
        _rgb_or_rgba(image).save(out, "WEBP", quality=quality, method=4, icc_profile=icc_profile)
    else:
        image = _rgb_or_rgba(image)
        if quality < 95:
            colours = max(2, round(256 * quality / 100))
            method = Image.Quantize.FASTOCTREE if image.mode == "RGBA" else Image.Quantize.MEDIANCUT
            image = image.quantize(colors=colours, method=method)
        image.save(out, "PNG", optimize=True, icc_profile=icc_profile)


def _rgb_or_rgba(image: Image.Image) -> Image.Image:
    if image.mode in ("RGB", "RGBA"):
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        return image.convert("I").point(lambda value: value / 256).convert("RGB")
    has_alpha = image.mode in ("LA", "PA", "RGBa") or "transparency" in image.info
    return image.convert("RGBA" if has_alpha else "RGB")


def _jpeg_compatible(image: Image.Image) -> Image.Image:
    if image.mode in JPEG_MODES:
        return image
    image = _rgb_or_rgba(image)
    if image.mode == "RGBA":
        flat = Image.new("RGB", image.size, (255, 255, 255))
        flat.paste(image, mask=image.getchannel("A"))
        return flat
    return image
