import io
import struct

import numpy as np
import pillow_heif
import pytest
from PIL import AvifImagePlugin, Image
from pillow_heif import as_plugin

from imgpipe_image_worker import geometry, perceptual
from imgpipe_image_worker.compress import Encoding, ImageRejected, compress
from imgpipe_ops.samples import photo_like_jpeg
from imgpipe_schemas import ImageOptions


def squeeze(data: bytes, quality: int = 50, **policy) -> object:
    return compress(data, Encoding(quality=quality, **policy))


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
    result = squeeze(source, 50)
    assert result.content_type == "image/jpeg" and result.extension == "jpg"
    assert decoded(result.data).format == "JPEG"
    assert decoded(result.data).size == (640, 480)
    assert len(result.data) < len(source) * 0.7


def test_lower_quality_means_fewer_bytes():
    source = photo_like_jpeg(640, 480, seed=2)
    assert len(squeeze(source, 20).data) < len(squeeze(source, 80).data)


def photo(size=(160, 120), seed=5) -> Image.Image:
    return decoded(photo_like_jpeg(*size, seed=seed, quality=98))


def test_png_alpha_is_flattened_onto_white():
    image = photo().convert("RGBA")
    image.paste((0, 0, 0, 0), (80, 0, 160, 120))  # right half transparent
    image.paste((0, 0, 255, 255), (0, 0, 20, 20))
    result = squeeze(encode(image, "PNG"), 90)
    assert not result.kept_source
    out = decoded(result.data)
    assert out.mode == "RGB"
    assert min(out.getpixel((120, 60))) > 240  # transparent → white
    r, g, b = out.getpixel((10, 10))
    assert b > 200 and r < 40  # opaque blue stays blue


def test_palette_cmyk_and_16_bit_grayscale_become_jpeg():
    palette = photo().convert("P")
    cmyk = photo().convert("CMYK")
    gray16 = photo().convert("L").point(lambda v: v * 256, "I").convert("I;16")
    for source in (encode(palette, "PNG"), encode(cmyk, "JPEG", quality=98), encode(gray16, "PNG")):
        result = squeeze(source, 50)
        assert not result.kept_source
        assert decoded(result.data).format == "JPEG"


def test_png_quantisation_of_a_large_image_takes_the_cheap_palette(monkeypatch):
    """Median cut costs about 0.6 s of CPU per megapixel of many colours: above its bound (2 Mpx by
    default) the palette comes from the fast octree, still at most 128 colours for quality 50."""
    methods = []
    quantize = Image.Image.quantize

    def spy(image: Image.Image, *args, **kwargs) -> Image.Image:
        methods.append(kwargs["method"])
        return quantize(image, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "quantize", spy)
    small = encode(photo(), "PNG")
    large = encode(photo().resize((2001, 1000)), "PNG")
    for source in (small, large):
        result = squeeze(source, 50, output_format="png")
        out = decoded(result.data)
        assert not result.kept_source and out.mode == "P" and len(out.getcolors(256)) <= 128
    assert methods == [Image.Quantize.MEDIANCUT, Image.Quantize.FASTOCTREE]
    assert Encoding().median_cut_max_pixels == 2_000_000


def test_webp_and_png_outputs_and_keep():
    source = encode(photo(), "PNG")
    webp = squeeze(source, 50, output_format="webp")
    assert (decoded(webp.data).format, webp.content_type, webp.extension) == ("WEBP", "image/webp", "webp")
    png = squeeze(source, 50, output_format="png")
    assert decoded(png.data).format == "PNG" and len(png.data) < len(source)
    assert len(decoded(png.data).getcolors(256) or []) <= 128  # quality 50 → at most 128 colours
    kept = squeeze(source, 50, output_format="keep")
    assert decoded(kept.data).format == "PNG"


def test_webp_keeps_transparency():
    image = photo().convert("RGBA")
    image.paste((0, 0, 0, 0), (0, 0, 50, 50))
    out = decoded(squeeze(encode(image, "PNG"), 60, output_format="webp").data)
    assert out.mode == "RGBA" and out.getpixel((10, 10))[3] == 0


def test_never_larger_than_the_source():
    tiny = encode(Image.new("RGB", (4, 4), (9, 9, 9)), "PNG")
    result = squeeze(tiny, 50)
    assert result.kept_source and result.data == tiny
    assert (result.content_type, result.extension) == ("image/png", "png")


def test_animated_gif_keeps_its_first_frame():
    frames = [photo(seed=i).convert("P") for i in (1, 2, 3)]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100)
    result = squeeze(out.getvalue(), 50)
    image = decoded(result.data)
    assert image.format == "JPEG" and not getattr(image, "is_animated", False)


@pytest.mark.parametrize("fmt", ["TIFF", "BMP", "WEBP"])
def test_other_readable_formats_become_jpeg(fmt):
    result = squeeze(encode(photo(), fmt), 50)
    assert decoded(result.data).format == "JPEG"


def test_exif_orientation_is_applied_to_the_pixels():
    image = Image.new("RGB", (40, 20), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    out = decoded(squeeze(encode(image, "JPEG", exif=exif), 50).data)
    assert out.size == (20, 40)


def test_icc_profile_is_kept():
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    source = encode(Image.new("RGB", (8, 8), (1, 2, 3)), "JPEG", icc_profile=profile)
    assert decoded(squeeze(source, 50).data).info.get("icc_profile") == profile


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"<html>not an image</html>", "not_an_image"),
        (photo_like_jpeg(200, 200, seed=3)[:600], "undecodable_image"),
    ],
)
def test_bad_input_is_a_clear_per_image_error(data, code):
    with pytest.raises(ImageRejected) as rejected:
        squeeze(data, 50)
    assert rejected.value.code == code


def test_pixel_cap_rejects_decompression_bombs():
    source = encode(Image.new("L", (3000, 3000)), "PNG")
    with pytest.raises(ImageRejected) as rejected:
        squeeze(source, 50, max_pixels=1_000_000)
    assert rejected.value.code == "too_many_pixels"


def test_the_pixel_cap_is_checked_before_any_pixel_is_decoded(monkeypatch):
    source = encode(Image.new("L", (3000, 3000)), "PNG")
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("pixels decoded before the cap was checked"))
    with pytest.raises(ImageRejected) as rejected:
        squeeze(source, 50, max_pixels=1_000_000)
    assert rejected.value.code == "too_many_pixels"


def test_the_pixel_cap_holds_at_the_configured_number_before_decoding():
    """Pillow itself only warns between its limit and twice it."""
    source = encode(Image.new("L", (1100, 1000)), "PNG")
    with pytest.raises(ImageRejected) as rejected:
        squeeze(source, max_pixels=1_000_000)
    assert rejected.value.code == "too_many_pixels" and "1100000 pixels" in str(rejected.value)
    assert squeeze(source, max_pixels=1_100_000).length > 0


@pytest.mark.parametrize("fmt", ["PCX", "TGA", "PPM", "ICO"])
def test_formats_outside_the_documented_sources_are_not_opened(fmt):
    with pytest.raises(ImageRejected) as rejected:
        squeeze(encode(photo((32, 32)), fmt))
    assert rejected.value.code == "not_an_image"


def test_whatever_a_decoder_raises_is_the_images_own_error(monkeypatch):
    def unsupported(self):
        raise NotImplementedError("this variant of the format is not supported")

    source = photo_like_jpeg(64, 64, seed=4)
    monkeypatch.setattr(Image.Image, "load", unsupported)
    with pytest.raises(ImageRejected) as rejected:
        squeeze(source)
    assert rejected.value.code == "undecodable_image" and "NotImplementedError" in str(rejected.value)


def test_a_decoder_out_of_memory_is_the_images_own_error(monkeypatch):
    def exhausted(self):
        raise MemoryError()

    source = photo_like_jpeg(64, 64, seed=4)
    monkeypatch.setattr(Image.Image, "load", exhausted)
    with pytest.raises(ImageRejected) as rejected:
        squeeze(source)
    assert (rejected.value.code, str(rejected.value)) == ("undecodable_image", "decoding the image ran out of memory")


def test_an_image_without_an_orientation_is_not_transposed(monkeypatch):
    from PIL import ImageOps

    monkeypatch.setattr(ImageOps, "exif_transpose", lambda *_: pytest.fail("transposed without an orientation"))
    assert squeeze(photo_like_jpeg(64, 64, seed=4)).content_type == "image/jpeg"


def test_optimize_is_a_setting_that_saves_bytes_of_baseline_jpegs():
    """Progressive output always has per-image tables: the setting is for requests that ask for baseline."""
    source = photo_like_jpeg(400, 300, seed=6)
    baseline = ImageOptions(progressive=False)
    assert squeeze(source, jpeg_optimize=True, options=baseline).length < squeeze(source, options=baseline).length


def shaped(data: bytes, **options) -> object:
    return compress(data, Encoding(options=ImageOptions(**options)))


def stripes(width: int, height: int) -> Image.Image:
    """Red left quarter, green middle half, blue right quarter: shows which part of an image was kept."""
    image = Image.new("RGB", (width, height), (0, 200, 0))
    image.paste((220, 0, 0), (0, 0, width // 4, height))
    image.paste((0, 0, 220), (width - width // 4, 0, width, height))
    return image


def test_contain_fits_the_box_and_keeps_the_aspect_ratio():
    source = photo_like_jpeg(400, 300, seed=7)
    assert decoded(shaped(source, max_width=100).data).size == (100, 75)
    assert decoded(shaped(source, max_height=60).data).size == (80, 60)
    wide = shaped(source, max_width=100, max_height=100)
    assert decoded(wide.data).size == (wide.width, wide.height) == (100, 75)


def test_geometry_never_upscales():
    source = photo_like_jpeg(80, 60, seed=7)
    for options in ({"max_width": 200}, {"max_width": 200, "max_height": 900, "fit": "cover"}):
        assert decoded(shaped(source, **options).data).size == (80, 60)
    tall = encode(stripes(50, 500), "PNG")
    assert decoded(shaped(tall, max_width=100, max_height=100, fit="cover").data).size == (50, 100)


def test_pad_makes_the_exact_box_on_the_background():
    result = shaped(encode(stripes(400, 200), "PNG"), max_width=100, max_height=100, fit="pad", background="ff00ff")
    out = decoded(result.data).convert("RGB")
    assert out.size == (100, 100)
    r, g, b = out.getpixel((50, 5))  # the band above the 100×50 picture
    assert r > 230 and b > 230 and g < 30
    r, g, b = out.getpixel((50, 50))
    assert g > 150 and r < 60 and b < 60


def test_pad_of_a_small_image_centres_it_unscaled():
    out = decoded(shaped(encode(stripes(40, 20), "PNG"), max_width=100, max_height=100, fit="pad").data)
    assert out.size == (100, 100)
    assert min(out.convert("RGB").getpixel((5, 5))) > 240  # white, the default
    assert out.convert("RGB").getpixel((50, 50))[1] > 150  # the picture's green middle, in the middle


def test_cover_fills_the_box_and_crops_the_centre():
    out = decoded(shaped(encode(stripes(400, 100), "PNG"), max_width=100, max_height=100, fit="cover").data)
    assert out.size == (100, 100)
    for x in (2, 50, 97):  # only the green middle is left: the red and blue quarters were cropped
        r, g, b = out.convert("RGB").getpixel((x, 50))
        assert g > 150 and r < 60 and b < 60


def test_the_box_is_in_displayed_terms_for_a_rotated_jpeg():
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 1600×800, displayed 800×1600
    source = encode(decoded(photo_like_jpeg(1600, 800, seed=8)), "JPEG", exif=exif, quality=90)
    assert decoded(shaped(source, max_height=200).data).size == (100, 200)


def test_a_jpeg_is_decoded_at_a_reduced_scale_when_the_box_allows():
    source = photo_like_jpeg(1500, 1500, seed=9, quality=90)
    small = geometry.plan(1500, 1500, ImageOptions(max_width=100))
    with Image.open(io.BytesIO(source)) as image:
        assert geometry.load_reduced(image, small).size == (188, 188)  # 1/8 scale: still covers 100 pixels
    with Image.open(io.BytesIO(source)) as image:
        assert geometry.load_reduced(image, geometry.plan(1500, 1500, ImageOptions(max_width=600))).size == (750, 750)
    with Image.open(io.BytesIO(source)) as image:
        assert geometry.load_reduced(image, None).size == (1500, 1500)
    assert decoded(shaped(source, max_width=100).data).size == (100, 100)


def test_a_resized_image_is_never_replaced_by_its_source():
    """The source is kept when re-encoding does not save bytes, but only if it is what was asked for."""
    tiny = encode(Image.new("RGB", (40, 40), (9, 9, 9)), "PNG")
    assert squeeze(tiny).kept_source
    result = shaped(tiny, max_width=10)
    assert not result.kept_source and decoded(result.data).size == (10, 10)


@pytest.mark.parametrize(
    "options",
    [{"fit": "pad", "max_width": 100}, {"fit": "cover", "max_height": 100}, {"max_width": 0}, {"background": "fff"}],
)
def test_invalid_image_options_are_refused(options):
    with pytest.raises(ValueError):
        ImageOptions(**options)


def test_jpeg_output_is_progressive_unless_baseline_is_asked_for():
    source = photo_like_jpeg(400, 300, seed=10)
    assert decoded(squeeze(source).data).info.get("progressive") == 1
    baseline = decoded(shaped(source, progressive=False).data)
    assert "progressive" not in baseline.info and baseline.format == "JPEG"


def heic(image: Image.Image, **params) -> bytes:
    pillow_heif.register_heif_opener()
    return encode(image, "HEIF", **params)


def claiming(data: bytes, width: int, height: int) -> bytes:
    """``data`` (a HEIC or an AVIF) with a header that claims ``width`` × ``height``: its 'ispe' boxes."""
    lied = bytearray(data)
    position = data.find(b"ispe")
    assert position > 0
    while position != -1:
        lied[position + 8 : position + 16] = struct.pack(">II", width, height)
        position = data.find(b"ispe", position + 4)
    return bytes(lied)


def test_avif_output_decodes_and_its_quality_trades_bytes():
    source = photo_like_jpeg(480, 320, seed=11, quality=95)
    low, high = squeeze(source, 50, output_format="avif"), squeeze(source, 95, output_format="avif")
    assert (low.content_type, low.extension) == ("image/avif", "avif") and not low.kept_source
    image = decoded(low.data)
    assert (image.format, image.size) == ("AVIF", (480, 320))
    assert len(low.data) < len(high.data)


def test_avif_output_keeps_transparency():
    image = photo().convert("RGBA")
    image.paste((0, 0, 0, 0), (0, 0, 50, 50))
    out = decoded(squeeze(encode(image, "PNG"), 60, output_format="avif").data)
    assert out.mode == "RGBA" and out.getpixel((10, 10))[3] == 0


@pytest.mark.parametrize("fmt", ["AVIF", "HEIF"])
def test_avif_and_heic_sources_are_read_and_compressed_to_jpeg(fmt):
    image = photo((320, 256), seed=12)
    source = heic(image, quality=90) if fmt == "HEIF" else encode(image, "AVIF", quality=90)
    result = squeeze(source, 50)
    out = decoded(result.data)
    assert (out.format, out.size) == ("JPEG", (320, 256)) and not result.kept_source
    assert abs(out.getpixel((160, 128))[0] - image.getpixel((160, 128))[0]) < 40  # the same picture


def test_an_avif_source_is_kept_as_avif_and_a_heic_source_never_served_as_it_is():
    image = Image.new("RGB", (64, 64), (20, 120, 200))
    avif = encode(image, "AVIF", quality=50)
    kept = squeeze(avif, 50, output_format="keep")
    assert decoded(kept.data).format == "AVIF"
    # A HEIC smaller than its re-encode would be served as it is, were browsers able to show it.
    small = heic(image, quality=30)
    result = squeeze(small, 95)
    assert not result.kept_source and decoded(result.data).format == "JPEG" and result.length > len(small)
    assert decoded(squeeze(small, 50, output_format="keep").data).format == "JPEG"


@pytest.mark.parametrize("fmt", ["AVIF", "HEIF"])
def test_a_heic_or_avif_claiming_too_many_pixels_is_refused_before_decoding(fmt, monkeypatch):
    """A file of a few hundred bytes whose header claims 12000 × 10000 pixels (120 Mpx, the cap 50 Mpx)."""
    image = Image.new("RGB", (128, 64), (200, 50, 50))
    bomb = claiming(heic(image) if fmt == "HEIF" else encode(image, "AVIF"), 12_000, 10_000)
    assert len(bomb) < 2000
    for reader in (as_plugin.HeifImageFile, AvifImagePlugin.AvifImageFile):
        monkeypatch.setattr(reader, "load", lambda self: pytest.fail("pixels decoded before the cap was checked"))
    with pytest.raises(ImageRejected) as rejected:
        squeeze(bomb, 50)
    assert rejected.value.code == "too_many_pixels" and "120000000 pixels" in str(rejected.value)


def test_the_avif_and_heic_codecs_run_on_one_thread_in_a_codec_process():
    squeeze(photo_like_jpeg(64, 64, seed=13), 50, output_format="avif")
    assert AvifImagePlugin.DEFAULT_MAX_THREADS == 1
    assert pillow_heif.options.DECODE_THREADS == 1


def flat_product_shot(side: int = 600) -> bytes:
    image = Image.new("RGB", (side, side), "white")
    image.paste((90, 40, 160), (side // 4, side // 4, side * 3 // 4, side * 3 // 4))
    return encode(image, "JPEG", quality=98)


def grainy(side: int = 600, seed: int = 3) -> bytes:
    noise = np.random.default_rng(seed).normal(128, 40, (side, side, 3))
    return encode(Image.fromarray(np.clip(noise, 0, 255).astype(np.uint8)), "PNG")


@pytest.mark.parametrize("fmt", ["jpeg", "webp", "avif"])
def test_a_quality_mode_chooses_per_image_and_reports_the_quality_and_its_score(fmt):
    mode = ImageOptions(quality_mode="auto:good")
    easy = squeeze(flat_product_shot(), 50, output_format=fmt, options=mode)
    hard = squeeze(grainy(), 50, output_format=fmt, options=mode)
    for result in (easy, hard):
        assert result.quality in perceptual.QUALITIES and result.score is not None and not result.kept_source
        assert result.score >= perceptual.MODES["auto:good"][fmt.upper()] or result.quality == perceptual.QUALITIES[-1]
    assert easy.quality < hard.quality
    # The encode is at the chosen quality: the same bytes as a fixed-quality encode at it.
    fixed = squeeze(grainy(), hard.quality, output_format=fmt)
    assert (fixed.quality, fixed.score, fixed.data) == (hard.quality, None, hard.data)


def test_a_quality_mode_is_searched_on_the_final_geometry(monkeypatch):
    sizes = []
    choose = perceptual.quality_for_mode

    def spy(image: Image.Image, fmt: str, mode: str, *args) -> perceptual.Choice:
        sizes.append((image.size, fmt, mode))
        return choose(image, fmt, mode, *args)

    monkeypatch.setattr(perceptual, "quality_for_mode", spy)
    options = ImageOptions(max_width=300, quality_mode="auto:eco")
    result = squeeze(photo_like_jpeg(900, 600, seed=14), 50, options=options)
    assert sizes == [((300, 200), "JPEG", "auto:eco")] and (result.width, result.height) == (300, 200)


def test_png_output_takes_the_fixed_quality_whatever_the_mode():
    result = squeeze(flat_product_shot(), 40, output_format="png", options=ImageOptions(quality_mode="auto:best"))
    assert (result.quality, result.score) == (40, None)


def test_format_auto_keeps_the_smallest_of_avif_webp_and_jpeg_at_equal_perceptual_quality():
    source = photo_like_jpeg(600, 400, seed=15, quality=95)
    chosen = squeeze(source, 50, output_format="auto")  # no mode given: auto:good
    good = ImageOptions(quality_mode="auto:good")
    each = {fmt: squeeze(source, 50, output_format=fmt, options=good) for fmt in ("avif", "webp", "jpeg")}
    assert chosen.extension in {"avif", "webp", "jpg"} and not chosen.kept_source
    assert chosen.quality is not None and chosen.score is not None
    for fmt, result in each.items():
        at_its_quality = squeeze(source, result.quality, output_format=fmt)
        assert chosen.length <= at_its_quality.length, fmt
    winner = next(result for result in each.values() if result.extension == chosen.extension)
    assert (winner.quality, winner.data) == (chosen.quality, chosen.data)


def test_format_auto_honours_allowed_formats_and_never_flattens_transparency():
    source = photo_like_jpeg(300, 200, seed=16, quality=95)
    assert squeeze(source, output_format="auto", allowed_formats=("JPEG",)).extension == "jpg"
    assert squeeze(source, output_format="auto", allowed_formats=("WEBP",)).extension == "webp"
    image = photo((300, 200)).convert("RGBA")
    image.paste((0, 0, 0, 0), (0, 0, 100, 100))
    transparent = squeeze(encode(image, "PNG"), output_format="auto", allowed_formats=("JPEG", "WEBP"))
    assert transparent.extension == "webp" and decoded(transparent.data).getpixel((10, 10))[3] == 0
