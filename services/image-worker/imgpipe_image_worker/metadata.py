"""What an output keeps of its source's metadata (ImageOptions.metadata), on every path: the re-encoded
image and the source kept as it is because re-encoding would not have made it smaller.

- ``strip`` (default): no EXIF, XMP, IPTC or comment; the ICC profile is kept (it is how the pixels are
  meant to look, not something about the photo).
- ``keep_copyright``: the EXIF Artist and Copyright only (XMP's dc:creator and dc:rights are not kept).
- ``keep``: everything, except GPS (EXIF's GPS directory, XMP's GPS properties) unless ``keep_gps``.

An EXIF orientation is written only where the pixels are not rotated yet (a kept source): dropping it
there would turn the picture. A kept JPEG is rewritten losslessly by mozjpeg (its coding optimised, every
marker but the ICC profile dropped), then given the segments the policy keeps; a kept PNG loses its text
and EXIF chunks, then gets those kept. Other sources with any metadata are never kept as they are: their
re-encoded output is served instead, even where it is larger.
"""

import io
import re
import struct
import zlib
from dataclasses import dataclass, field

import mozjpeg_lossless_optimization as mozjpeg
from PIL import Image

from imgpipe_schemas import ImageOptions

ORIENTATION, ARTIST, COPYRIGHT, GPS_IFD = 0x0112, 0x013B, 0x8298, 0x8825
XMP_JPEG_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
XMP_PNG_KEY = "XML:com.adobe.xmp"
# An XMP property whose name starts with GPS (exif:GPSLatitude, Iptc4xmpExt:GPSLongitude …), as an
# attribute or as an element; and the XMP orientation, which a rotated output must not keep either.
XMP_GPS = re.compile(rb'\s[\w.-]+:GPS\w*="[^"]*"|<([\w.-]+:GPS\w*)\b[^>]*?(?:/>|>.*?</\1\s*>)', re.DOTALL)
XMP_ORIENTATION = re.compile(rb'\stiff:Orientation="[^"]*"|<tiff:Orientation>[^<]*</tiff:Orientation>')
INFO_KEYS = ("exif", "xmp", "comment", XMP_PNG_KEY, "photoshop")
PNG_TEXT = {b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"tIME"}


@dataclass(frozen=True)
class Selected:
    """What the policy keeps of one source, ready to write into an output of any format."""

    exif: Image.Exif
    xmp: bytes | None = None
    comment: bytes | None = None
    iptc: list[bytes] = field(default_factory=list)  # APP13 payloads, for a JPEG output
    had_any: bool = False  # the source carried metadata of some kind
    everything: bool = False  # ``keep``: a kept PNG keeps its text chunks too

    def exif_bytes(self, orientation: int = 1) -> bytes | None:
        """The EXIF to write ("Exif\\0\\0" + TIFF), with ``orientation`` when the pixels still need it."""
        exif = Image.Exif()
        if len(self.exif):
            exif.load(self.exif.tobytes())
        if orientation != 1:
            exif[ORIENTATION] = orientation
        return exif.tobytes() if len(exif) else None


def select(image: Image.Image, options: ImageOptions) -> Selected:
    """What ``image`` (an opened source) keeps under ``options``. Reads headers only, never pixels."""
    source_exif = image.getexif()
    xmp = image.info.get("xmp") or image.info.get(XMP_PNG_KEY)
    if isinstance(xmp, str):
        xmp = xmp.encode()
    iptc = [data for marker, data in getattr(image, "applist", []) if marker == "APP13"]
    had_any = bool(len(source_exif) or xmp or image.info.get("comment") or iptc or _png_text(image))
    kept = Image.Exif()
    if options.metadata == "keep_copyright":
        for tag in (ARTIST, COPYRIGHT):
            if tag in source_exif:
                kept[tag] = source_exif[tag]
        return Selected(kept, had_any=had_any)
    if options.metadata == "strip":
        return Selected(kept, had_any=had_any)
    if len(source_exif):
        kept.load(source_exif.tobytes())
        for ifd in (0x8769, 0xA005):  # Exif and interoperability directories travel whole
            if ifd in source_exif:
                kept.get_ifd(ifd)
        kept.pop(ORIENTATION, None)
        if not options.keep_gps:
            kept.pop(GPS_IFD, None)
    if xmp is not None:
        xmp = XMP_ORIENTATION.sub(b"", xmp)
        if not options.keep_gps:
            xmp = XMP_GPS.sub(b"", xmp)
    return Selected(kept, xmp, image.info.get("comment"), iptc, had_any, everything=True)


def _png_text(image: Image.Image) -> bool:
    return image.format == "PNG" and any(
        key not in ("icc_profile", "dpi", "gamma") for key in getattr(image, "text", {})
    )


def clear(image: Image.Image) -> None:
    """Forgets ``image``'s own metadata, which some encoders would otherwise copy (JPEG its comment)."""
    for key in INFO_KEYS:
        image.info.pop(key, None)


def save_params(selected: Selected, target: str) -> dict:
    """Pillow save parameters that write what was selected into a re-encoded ``target``."""
    params: dict = {}
    if exif := selected.exif_bytes():
        params["exif"] = exif
    if target in ("JPEG", "WEBP", "AVIF") and selected.xmp:
        params["xmp"] = selected.xmp
    if target == "JPEG" and selected.comment:
        params["comment"] = selected.comment
    if target == "PNG" and selected.xmp:
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_itxt(XMP_PNG_KEY, selected.xmp.decode("utf-8", "replace"))
        params["pnginfo"] = info
    return params


def with_iptc(jpeg: bytes, selected: Selected) -> bytes:
    """A re-encoded JPEG given the source's IPTC segments, which Pillow cannot write."""
    return _insert(jpeg, [_segment(0xED, data) for data in selected.iptc]) if selected.iptc else jpeg


def cleaned_source(data: bytes, source_format: str, selected: Selected, orientation: int) -> bytes | None:
    """The source, losslessly, with only what ``selected`` keeps; None when that cannot be done here."""
    if source_format == "JPEG":
        try:
            optimized = mozjpeg.optimize(data, mozjpeg.COPY_MARKERS.ICC)
        except ValueError:
            return None
        segments = []
        if exif := selected.exif_bytes(orientation):
            segments.append(_segment(0xE1, exif))
        if selected.xmp:
            segments.append(_segment(0xE1, XMP_JPEG_HEADER + selected.xmp))
        segments += [_segment(0xED, iptc) for iptc in selected.iptc]
        if selected.comment:
            segments.append(_segment(0xFE, selected.comment))
        return _insert(optimized, segments)
    if source_format == "PNG":
        return _png_cleaned(data, selected, orientation)
    return None if selected.had_any else data


def _segment(marker: int, payload: bytes) -> bytes:
    if len(payload) > 65533:
        return b""  # cannot be one segment; not kept
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def _insert(jpeg: bytes, segments: list[bytes]) -> bytes:
    """``segments`` after the leading APP0 / APP2 (JFIF, ICC) segments of ``jpeg``."""
    position = 2
    while jpeg[position] == 0xFF and jpeg[position + 1] in (0xE0, 0xE2):
        position += 2 + struct.unpack(">H", jpeg[position + 2 : position + 4])[0]
    return jpeg[:position] + b"".join(segments) + jpeg[position:]


def _png_cleaned(data: bytes, selected: Selected, orientation: int) -> bytes:
    """The PNG's chunks without its text, time and EXIF (under ``keep``: without its EXIF and XMP only),
    plus those kept, before its first IDAT."""
    added = []
    if exif := selected.exif_bytes(orientation):
        added.append(_chunk(b"eXIf", exif.removeprefix(b"Exif\x00\x00")))
    if selected.xmp:
        added.append(_chunk(b"iTXt", XMP_PNG_KEY.encode() + b"\x00\x00\x00\x00\x00" + selected.xmp))
    out, position = io.BytesIO(), 8
    out.write(data[:8])
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        end = position + 12 + length
        if kind == b"IDAT" and added:
            out.write(b"".join(added))
            added = []
        dropped = kind in (b"eXIf", b"iTXt") if selected.everything else kind in PNG_TEXT
        if kind == b"iTXt" and selected.everything:
            dropped = data[position + 8 : end - 4].startswith(XMP_PNG_KEY.encode() + b"\x00")
        if not dropped:
            out.write(data[position:end])
        position = end
    return out.getvalue()


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
