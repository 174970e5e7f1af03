"""Writing one image in one format at one quality, and the per-process set-up of the codecs that read and
write AVIF and HEIC. Pure: it runs in the codec processes.

AVIF's encoder and decoder (libavif, inside Pillow) and HEIC's decoder (libheif, inside pillow-heif) start
as many threads as the machine has cores unless told otherwise. The worker already runs one codec process
per core, each one image at a time: more threads per process would only contend with the other processes
for the same cores (and count against each process's CPU limit), so every codec here runs on one thread.
"""

import functools
import io
from dataclasses import dataclass

import pillow_heif
from PIL import AvifImagePlugin, Image

JPEG_MODES = {"RGB", "L", "CMYK"}
TYPES = {
    "JPEG": ("jpg", "image/jpeg"),
    "PNG": ("png", "image/png"),
    "WEBP": ("webp", "image/webp"),
    "AVIF": ("avif", "image/avif"),
}
# One thread per codec process (see above): the worker's processes are already one per core.
CODEC_THREADS = 1
# The encoder settings of each lossy format, beside its quality: what quality=auto's trial encodes use too.
SAVE_OPTIONS: dict[str, dict[str, int]] = {"JPEG": {}, "WEBP": {"method": 4}, "AVIF": {"max_threads": CODEC_THREADS}}
WHITE = (255, 255, 255)


@dataclass(frozen=True)
class Settings:
    """What an encode needs besides the image, its format and its quality."""

    jpeg_optimize: bool = False
    progressive: bool = True
    median_cut_max_pixels: int = 2_000_000


@functools.cache
def set_up_codecs() -> None:
    """Registers the HEIC reader and caps every codec at ``CODEC_THREADS``; once per process, on its first
    image, so that importing this module changes nothing."""
    pillow_heif.register_heif_opener(thumbnails=False, decode_threads=CODEC_THREADS)
    AvifImagePlugin.DEFAULT_MAX_THREADS = CODEC_THREADS


def encode(
    image: Image.Image, target: str, quality: int, settings: Settings, icc_profile: bytes | None, kept: dict
) -> bytes:
    """``image`` as ``target`` (a key of TYPES) at ``quality``. ``kept``: the save parameters that write
    the metadata the request keeps (metadata.save_params)."""
    out = io.BytesIO()
    if target == "JPEG":
        jpeg_compatible(image).save(
            out,
            "JPEG",
            quality=quality,
            optimize=settings.jpeg_optimize,
            progressive=settings.progressive,
            icc_profile=icc_profile,
            **kept,
        )
    elif target == "WEBP":
        rgb_or_rgba(image).save(out, "WEBP", quality=quality, icc_profile=icc_profile, **SAVE_OPTIONS["WEBP"], **kept)
    elif target == "AVIF":
        rgb_or_rgba(image).save(out, "AVIF", quality=quality, icc_profile=icc_profile, **SAVE_OPTIONS["AVIF"], **kept)
    else:
        image = rgb_or_rgba(image)
        if quality < 95:
            colours = max(2, round(256 * quality / 100))
            # Median cut cannot take alpha, and its cost grows with the pixels and the colours.
            cheap = image.mode == "RGBA" or image.width * image.height > settings.median_cut_max_pixels
            method = Image.Quantize.FASTOCTREE if cheap else Image.Quantize.MEDIANCUT
            image = image.quantize(colors=colours, method=method)
        image.save(out, "PNG", optimize=True, icc_profile=icc_profile, **kept)
    return out.getvalue()


def rgb_or_rgba(image: Image.Image) -> Image.Image:
    if image.mode in ("RGB", "RGBA"):
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        return image.convert("I").point(lambda value: value / 256).convert("RGB")
    has_alpha = image.mode in ("LA", "PA", "RGBa") or "transparency" in image.info
    return image.convert("RGBA" if has_alpha else "RGB")


def jpeg_compatible(image: Image.Image) -> Image.Image:
    """JPEG has no alpha: transparency is flattened onto white."""
    if image.mode in JPEG_MODES:
        return image
    return flattened(rgb_or_rgba(image))


def flattened(image: Image.Image) -> Image.Image:
    """An RGBA image on white, as a page without transparency shows it; any other image as it is."""
    if image.mode != "RGBA":
        return image
    flat = Image.new("RGB", image.size, WHITE)
    flat.paste(image, mask=image.getchannel("A"))
    return flat
