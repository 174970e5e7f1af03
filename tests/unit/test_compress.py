import io

import pytest
from PIL import Image

from imgpipe_image_worker.compress import ImageRejected, compress
from imgpipe_ops.samples import photo_like_jpeg


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_photo_is_reencoded_as_a_smaller_jpeg_at_quality_50():
    source = photo_like_jpeg(640, 480, seed=1)
    result = compress(source, 50)
    assert result.content_type == "image/jpeg" and result.extension == "jpg"
    assert decoded(result.data).format == "JPEG"
    assert decoded(result.data).size == (640, 480)
    assert len(result.data) < len(source) * 0.7


def test_lower_quality_means_fewer_bytes():
    source = photo_like_jpeg(640, 480, seed=2)
    assert len(compress(source, 20).data) < len(compress(source, 80).data)


def test_png_alpha_is_flattened_onto_white():
    image = Image.new("RGBA", (20, 10), (255, 0, 0, 0))
    image.paste((0, 0, 255, 255), (0, 0, 10, 10))
    out = decoded(compress(encode(image, "PNG"), 90).data)
    assert out.mode == "RGB"
    r, g, b = out.getpixel((15, 5))
    assert min(r, g, b) > 240  # transparent → white
    r, g, b = out.getpixel((3, 5))
    assert b > 200 and r < 40  # opaque blue stays blue


def test_palette_cmyk_and_16_bit_grayscale_become_jpeg():
    palette = Image.new("RGB", (16, 16), (10, 200, 30)).convert("P")
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))
    gray16 = Image.new("I;16", (16, 16), 40000)
    for source in (encode(palette, "PNG"), encode(cmyk, "JPEG"), encode(gray16, "PNG")):
        assert decoded(compress(source, 50).data).format == "JPEG"


def test_exif_orientation_is_applied_to_the_pixels():
    image = Image.new("RGB", (40, 20), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    out = decoded(compress(encode(image, "JPEG", exif=exif), 50).data)
    assert out.size == (20, 40)


def test_icc_profile_is_kept():
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    source = encode(Image.new("RGB", (8, 8), (1, 2, 3)), "JPEG", icc_profile=profile)
    assert decoded(compress(source, 50).data).info.get("icc_profile") == profile


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"<html>not an image</html>", "not_an_image"),
        (photo_like_jpeg(200, 200, seed=3)[:600], "undecodable_image"),
    ],
)
def test_bad_input_is_a_clear_per_image_error(data, code):
    with pytest.raises(ImageRejected) as rejected:
        compress(data, 50)
    assert rejected.value.code == code


def test_pixel_cap_rejects_decompression_bombs():
    source = encode(Image.new("L", (3000, 3000)), "PNG")
    with pytest.raises(ImageRejected) as rejected:
        compress(source, 50, max_pixels=1_000_000)
    assert rejected.value.code == "too_many_pixels"
