"""What each metadata policy leaves in the output, on the re-encoded path and on the kept-source path."""

import io

import pytest
from PIL import Image

from imgpipe_image_worker.compress import Encoding, compress
from imgpipe_ops.samples import photo_like_jpeg
from imgpipe_schemas import ImageOptions
from tests.support.tagged import ARTIST, COPYRIGHT, EXIF_IFD, GPS, IPTC, MAKE, PROFILE, SERIAL, tagged_jpeg


def output(source: bytes, quality: int, output_format: str = "jpeg", **options):
    result = compress(source, Encoding(quality=quality, output_format=output_format, options=ImageOptions(**options)))
    image = Image.open(io.BytesIO(result.data))
    image.load()
    return result, image


# Re-encoding a q95 source at q50 saves bytes; re-encoding a q20 source at q90 does not: its source is kept.
PATHS = {"re-encoded": (95, 50, False), "kept source": (20, 90, True)}


@pytest.fixture(params=list(PATHS))
def path(request):
    source_quality, quality, kept = PATHS[request.param]
    return tagged_jpeg(source_quality), quality, kept


def test_strip_leaves_nothing_but_the_icc_profile(path):
    source, quality, kept = path
    result, image = output(source, quality)
    assert result.kept_source is kept
    assert dict(image.getexif()) == {}
    assert "xmp" not in image.info and "comment" not in image.info
    assert not [marker for marker, _ in image.applist if marker == "APP13"]
    assert b"SN-123456" not in result.data and b"48,51" not in result.data
    assert image.info.get("icc_profile") == PROFILE


def test_keep_copyright_leaves_the_artist_and_copyright_only(path):
    source, quality, kept = path
    result, image = output(source, quality, metadata="keep_copyright")
    assert result.kept_source is kept
    assert dict(image.getexif()) == {ARTIST: "Ann Author", COPYRIGHT: "(c) Ann Author"}
    assert "xmp" not in image.info and "comment" not in image.info
    assert b"SN-123456" not in result.data
    assert image.info.get("icc_profile") == PROFILE


def test_keep_leaves_everything_but_gps(path):
    source, quality, kept = path
    result, image = output(source, quality, metadata="keep")
    assert result.kept_source is kept
    exif = image.getexif()
    assert (exif[MAKE], exif[ARTIST], exif[COPYRIGHT]) == ("Camera Co", "Ann Author", "(c) Ann Author")
    assert exif.get_ifd(EXIF_IFD)[SERIAL] == "SN-123456"
    assert GPS not in exif and not exif.get_ifd(GPS)
    assert b"<dc:title>Shoe</dc:title>" in image.info["xmp"] and b"GPS" not in image.info["xmp"]
    assert image.info["comment"] == b"shot by SN-123456"
    assert [data for marker, data in image.applist if marker == "APP13"] == [IPTC]
    assert image.info.get("icc_profile") == PROFILE


def test_keep_gps_keeps_the_position_too(path):
    source, quality, kept = path
    result, image = output(source, quality, metadata="keep", keep_gps=True)
    assert result.kept_source is kept
    assert image.getexif().get_ifd(GPS)[1] == "N"
    assert b'exif:GPSLatitude="48,51.4N"' in image.info["xmp"]


def test_a_kept_source_keeps_its_orientation_and_a_rotated_output_loses_it():
    """The kept source's pixels are not rotated: without its orientation it would display turned."""
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[COPYRIGHT] = "(c) Ann"
    out = io.BytesIO()
    Image.open(io.BytesIO(photo_like_jpeg(320, 160, seed=3))).save(out, "JPEG", quality=20, exif=exif)
    kept, image = output(out.getvalue(), 90)
    assert kept.kept_source and dict(image.getexif()) == {0x0112: 6}
    encoded, image = output(out.getvalue(), 10, metadata="keep")
    assert not encoded.kept_source and image.size == (160, 320) and dict(image.getexif()) == {COPYRIGHT: "(c) Ann"}


def test_a_kept_png_loses_its_text_and_exif_chunks():
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Author", "Ann")
    exif = Image.Exif()
    exif.get_ifd(GPS)[1] = "N"
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (9, 9, 9)).save(out, "PNG", pnginfo=info, exif=exif)
    result, image = output(out.getvalue(), 50)
    assert result.kept_source and image.format == "PNG"
    assert dict(image.getexif()) == {} and "Author" not in image.info


def test_a_kept_webp_with_metadata_is_replaced_by_its_clean_re_encoding():
    exif = Image.Exif()
    exif[COPYRIGHT] = "(c) Ann"
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (9, 9, 9)).save(out, "WEBP", quality=10, exif=exif)
    result, image = output(out.getvalue(), 95, output_format="webp")
    assert not result.kept_source and dict(image.getexif()) == {}


def test_keep_gps_needs_metadata_keep():
    with pytest.raises(ValueError, match="keep_gps"):
        ImageOptions(keep_gps=True)
