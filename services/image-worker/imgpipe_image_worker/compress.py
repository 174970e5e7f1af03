"""Image compression. Pure and picklable: it runs in a process pool, bytes in, bytes out."""

import io
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

JPEG_MODES = {"RGB", "L", "CMYK"}


class ImageRejected(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Compressed:
    data: bytes
    extension: str
    content_type: str


def compress(data: bytes, quality: int = 50, max_pixels: int = 50_000_000) -> Compressed:
    """Re-encodes ``data`` as JPEG at ``quality``: EXIF rotation applied, alpha flattened onto white,
    ICC profile kept."""
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            icc_profile = image.info.get("icc_profile")
            image = ImageOps.exif_transpose(image) or image
            image = _jpeg_compatible(image)
            out = io.BytesIO()
            image.save(out, "JPEG", quality=quality, optimize=True, icc_profile=icc_profile)
    except Image.DecompressionBombError as exc:
        raise ImageRejected("too_many_pixels", str(exc)) from exc
    except UnidentifiedImageError as exc:
        raise ImageRejected("not_an_image", "the content is not an image Pillow can read") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected("undecodable_image", f"the image could not be decoded: {exc}") from exc
    return Compressed(out.getvalue(), "jpg", "image/jpeg")


def _jpeg_compatible(image: Image.Image) -> Image.Image:
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "RGBa"):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        return image.convert("I").point(lambda value: value / 256).convert("L")
    if image.mode not in JPEG_MODES:
        return image.convert("RGB")
    return image
