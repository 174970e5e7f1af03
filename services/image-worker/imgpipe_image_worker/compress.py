"""Image compression. Pure and picklable: it runs in a process pool, bytes in, bytes out (or, given a
blob writer that works from any process, bytes in and a stored file out, so that the output never
travels back to the worker).

Only the documented source formats are opened, and the pixel cap is checked on the header, before any
pixel is decoded. Whatever a decoder raises for one image is that image's error.

Output policy: the requested format at the requested quality (JPEG 50 by default), EXIF rotation
applied to the pixels (only when the image has an orientation to apply: the transpose copies every
pixel), ICC profile kept. JPEG is progressive unless the request asks for baseline: about 9 % fewer
bytes for nearly twice the CPU of a 1500² re-encode (several encoder passes). For baseline, ``optimize``
(Huffman tables per image, which progressive always has) is a setting: about 20 % more encoder CPU for
about 12 % fewer bytes on photos. JPEG has no alpha: transparency is flattened onto white.
PNG has no quality setting: below quality 95 it is quantised to an adaptive palette of
``256 * quality / 100`` colours, which is what "quality" can mean for it. Median cut, the better palette,
costs about 0.6 s of CPU per megapixel of a many-colour image (30 s for 50 Mpx), so above
``median_cut_max_pixels`` the palette comes from the fast octree instead (about 0.01 s per megapixel).
AVIF (libavif in Pillow) is written on one thread per codec process (see encoders). Sources may also be
AVIF and HEIC/HEIF (pillow-heif), their pixel cap checked on the header like every other format's.
``keep`` writes the source's own format where it is JPEG, PNG, WebP or AVIF, else JPEG; ``auto`` encodes
AVIF, WebP and JPEG (those ``allowed_formats`` allows), each at its quality for the request's quality mode,
and keeps the smallest. An animated image keeps
its first frame. Whenever the result would not be smaller than the source, the source bytes are kept instead,
unless the request's geometry (see geometry) changed the image: then the source is not what was asked for.
Either way the output holds only the metadata the request keeps (see metadata).

With a marketplace preset (``options.preset``), ``auto`` chooses only among the formats the preset accepts, a
source is kept as it is only in one of them, and each output is checked against the preset's rules as the
image it is in its row (``Listing``: the main image or another, apparel or not): ``Compressed.checks`` says
why the marketplace would reject it. A rule on the background reads the output's decoded pixels, so the
output is decoded again only when such a rule applies.
"""

import dataclasses
import io
from dataclasses import dataclass
from datetime import date
from typing import Protocol, cast

from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from imgpipe_image_worker import encoders, geometry, metadata, perceptual, presets
from imgpipe_image_worker.encoders import TYPES
from imgpipe_runtime import presets as rules
from imgpipe_schemas import DEFAULT_QUALITY, ImageOptions
from imgpipe_schemas.events import QualityMode

RESIZABLE_MODES = {"RGB", "RGBA", "L", "LA", "CMYK"}
# Sources that may be served as they are when re-encoding would not make them smaller.
SOURCE_TYPES = {
    **TYPES,
    "GIF": ("gif", "image/gif"),
    "TIFF": ("tiff", "image/tiff"),
    "BMP": ("bmp", "image/bmp"),
}
# Every format opened. HEIC is read, never served as it is: browsers other than Safari cannot show it.
OPENED = [*SOURCE_TYPES, "HEIF"]
ORIENTATION = ExifTags.Base.Orientation
MEDIAN_CUT_MAX_PIXELS = 2_000_000
# format=auto: each candidate at its own quality for the request's mode (auto:good when none is given), so
# that the smallest is chosen among outputs of equal perceptual quality.
AUTO_FORMATS = ("AVIF", "WEBP", "JPEG")
AUTO_FORMAT_MODE: QualityMode = "auto:good"


class BlobWriter(Protocol):
    """Stores a file from whatever process holds it (a local directory can; a database client cannot)."""

    def write(self, name: str, data: bytes, content_type: str) -> None: ...


class ImageRejected(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    def __reduce__(self):
        # Raised in a pool process and unpickled in the worker: both arguments must travel.
        return (type(self), (self.code, str(self)))


@dataclass(frozen=True)
class Compressed:
    """The output: its bytes, or None once ``writer`` stored it as ``<stem>.<extension>``."""

    data: bytes | None
    extension: str
    content_type: str
    length: int
    kept_source: bool = False
    width: int | None = None
    height: int | None = None
    quality: int | None = None  # the encoder's; None for a source kept as it is
    score: float | None = None  # the perceptual score, when a quality mode chose the quality
    checks: list[str] | None = None  # with a preset: why its marketplace would reject this output


@dataclass(frozen=True)
class Listing:
    """Where an image stands in its row, which some marketplace rules depend on: the row's first image is
    its main one, and an apparel product's images must be larger on some marketplaces."""

    main: bool = True
    apparel: bool = False


@dataclass(frozen=True)
class Encoding:
    quality: int = DEFAULT_QUALITY
    output_format: str = "jpeg"
    max_pixels: int = 50_000_000
    jpeg_optimize: bool = False
    median_cut_max_pixels: int = MEDIAN_CUT_MAX_PIXELS
    options: ImageOptions = ImageOptions()
    # format=auto's candidates; a preset may narrow them (for_request).
    allowed_formats: tuple[str, ...] = AUTO_FORMATS
    listing: Listing = Listing()
    today: date | None = None  # the day a preset's rules are checked for; None: the day of the encode

    def for_request(
        self, quality: int, output_format: str, options: ImageOptions, listing: Listing = Listing()
    ) -> "Encoding":
        """This service-wide encoding with one request's choices, and the auto candidates its preset accepts."""
        allowed: tuple[str, ...] = AUTO_FORMATS
        if options.preset is not None:
            allowed = rules.auto_formats(rules.presets()[options.preset], AUTO_FORMATS) or ("JPEG",)
        return dataclasses.replace(
            self,
            quality=quality,
            output_format=output_format,
            options=options,
            allowed_formats=allowed,
            listing=listing,
        )


def compress(
    data: bytes, encoding: Encoding = Encoding(), writer: BlobWriter | None = None, stem: str = ""
) -> Compressed:
    out = _encode(data, encoding)
    if writer is not None:
        writer.write(f"{stem}.{out.extension}", cast(bytes, out.data), out.content_type)  # _encode's has its bytes
        return dataclasses.replace(out, data=None)
    return out


def _encode(data: bytes, encoding: Encoding) -> Compressed:
    Image.MAX_IMAGE_PIXELS = None  # the cap below is exact; Pillow's own only warns up to twice its limit
    encoders.set_up_codecs()
    try:
        with Image.open(io.BytesIO(data), formats=OPENED) as opened:
            image: Image.Image = opened
            if image.width * image.height > encoding.max_pixels:
                raise ImageRejected(
                    "too_many_pixels",
                    f"{image.width}×{image.height} is {image.width * image.height} pixels; "
                    f"the cap is {encoding.max_pixels}",
                )
            source_format = image.format
            kept = metadata.select(image, encoding.options)
            orientation = image.getexif().get(ORIENTATION, 1)
            displayed = image.size[::-1] if orientation in geometry.TRANSPOSED else image.size
            shape = geometry.plan(*displayed, encoding.options)
            image = geometry.load_reduced(image, shape, orientation)
            icc_profile = image.info.get("icc_profile")
            if orientation != 1:
                image = ImageOps.exif_transpose(image)
            if shape is not None:
                if image.mode not in RESIZABLE_MODES:
                    image = encoders.rgb_or_rgba(image)
                image = geometry.apply(image, shape)
            metadata.clear(image)
            settings = encoders.Settings(
                encoding.jpeg_optimize, encoding.options.progressive, encoding.median_cut_max_pixels
            )
            candidates = []
            for target in _targets(encoding, source_format, image):
                quality, score = _quality(image, target, encoding)
                params = metadata.save_params(kept, target)
                encoded = encoders.encode(image, target, quality, settings, icc_profile, params)
                if target == "JPEG":
                    encoded = metadata.with_iptc(encoded, kept)
                candidates.append((len(encoded), target, encoded, quality, score))
            _, target, encoded, quality, score = min(candidates, key=lambda candidate: candidate[0])
    except ImageRejected:
        raise
    except MemoryError as exc:  # this image's own, like any decoder failure: never the row's
        raise ImageRejected("undecodable_image", "decoding the image ran out of memory") from exc
    except UnidentifiedImageError as exc:
        raise ImageRejected("not_an_image", "the content is not an image of a supported format") from exc
    except Exception as exc:  # noqa: BLE001 - any decoder or encoder failure is this image's own error
        raise ImageRejected(
            "undecodable_image", f"the image could not be decoded: {exc.__class__.__name__}: {exc}"[:300]
        ) from exc
    width, height = image.size
    preset = rules.presets()[encoding.options.preset] if encoding.options.preset else None
    accepted = preset is None or str(source_format).lower() in preset.formats
    if shape is None and len(encoded) >= len(data) and source_format in SOURCE_TYPES and accepted:
        source = metadata.cleaned_source(data, source_format, kept, orientation)
        if source is not None and len(source) <= len(encoded):
            extension, content_type = SOURCE_TYPES[source_format]
            out = Compressed(source, extension, content_type, len(source), True, width, height)
            return _checked(out, str(source_format), preset, encoding)
    extension, content_type = TYPES[target]
    out = Compressed(encoded, extension, content_type, len(encoded), False, width, height, quality, score)
    return _checked(out, target, preset, encoding)


def _checked(out: Compressed, image_format: str, preset: rules.Preset | None, encoding: Encoding) -> Compressed:
    """``out`` with the problems its marketplace would find in it, when the request has a preset."""
    if preset is None:
        return out
    listing, today = encoding.listing, encoding.today or date.today()
    measured = None
    if rules.needs_background(preset, main=listing.main, apparel=listing.apparel, today=today):
        with Image.open(io.BytesIO(cast(bytes, out.data))) as decoded:  # the pixels a marketplace sees
            measured = presets.background(decoded)
    facts = rules.Output(cast(int, out.width), cast(int, out.height), out.length, image_format.lower(), measured)
    checks = rules.check(preset, facts, main=listing.main, apparel=listing.apparel, today=today)
    return dataclasses.replace(out, checks=checks)


def _quality(image: Image.Image, target: str, encoding: Encoding) -> tuple[int, float | None]:
    """The encoder quality for ``image`` (at its final geometry) and, when a quality mode chose it, its score.
    PNG has no perceptual search: it takes the fixed quality, mode or not."""
    mode = encoding.options.quality_mode
    if mode is None and encoding.output_format == "auto":
        mode = AUTO_FORMAT_MODE
    if mode is None or target not in perceptual.FORMATS:
        return encoding.quality, None
    choice = perceptual.quality_for_mode(image, target, mode)
    return choice.quality, choice.score


def _targets(encoding: Encoding, source_format: str | None, image: Image.Image) -> list[str]:
    """The formats to encode: one, or for ``auto`` each allowed one (all of them encoded, the smallest kept).
    JPEG is not a candidate for an image with transparency, which it would flatten."""
    if encoding.output_format != "auto":
        return [_target(encoding.output_format, source_format)]
    transparent = image.mode in ("RGBA", "LA", "PA", "RGBa") or "transparency" in image.info
    allowed = [fmt for fmt in encoding.allowed_formats if not (transparent and fmt == "JPEG")]
    return allowed or [encoding.allowed_formats[0]]


def _target(output_format: str, source_format: str | None) -> str:
    if output_format == "keep":
        return source_format if source_format in TYPES else "JPEG"
    return output_format.upper()
