"""Compression under a marketplace preset: format=auto chooses among the formats the preset accepts, and each
output carries why its marketplace would reject it, as the image it is in its row."""

import io
from datetime import date

import pytest
from PIL import Image, ImageDraw

from imgpipe_image_worker import presets
from imgpipe_image_worker.compress import Encoding, Listing, compress
from imgpipe_schemas import ImageOptions

BEFORE_2027 = date(2026, 12, 8)


def product_shot(size: tuple[int, int], background: tuple[int, int, int], fmt: str = "JPEG") -> bytes:
    image = Image.new("RGB", size, background)
    width, height = size
    ImageDraw.Draw(image).ellipse((width // 4, height // 4, 3 * width // 4, 3 * height // 4), fill=(30, 80, 150))
    out = io.BytesIO()
    image.save(out, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return out.getvalue()


def under(preset: str, output_format: str = "jpeg", listing: Listing = Listing(), **options) -> Encoding:
    return Encoding(today=BEFORE_2027).for_request(50, output_format, ImageOptions(preset=preset, **options), listing)


def test_a_small_main_image_on_grey_says_both_why_amazon_would_reject_it():
    out = compress(product_shot((640, 480), (200, 200, 200)), under("amazon"))
    assert out.extension == "jpg"
    assert out.checks is not None and len(out.checks) == 2
    assert out.checks[0] == "640×480 is below 1000 px on its longest side"
    assert out.checks[1] == "background is not pure white (measured 200,200,200)"


def test_a_large_main_image_on_white_passes_and_only_the_main_image_has_its_background_measured(monkeypatch):
    white = product_shot((1200, 900), (255, 255, 255))
    assert compress(white, under("amazon")).checks == []
    grey = product_shot((640, 480), (200, 200, 200))

    def unmeasured(image: Image.Image) -> tuple[int, int, int]:
        raise AssertionError("the background of an image no rule reads was measured")

    monkeypatch.setattr(presets, "background", unmeasured)
    second = compress(grey, under("amazon", listing=Listing(main=False)))
    assert second.checks == ["640×480 is below 1000 px on its longest side"]


def test_without_a_preset_nothing_is_checked():
    assert compress(product_shot((640, 480), (200, 200, 200)), Encoding()).checks is None


def test_google_shopping_checks_apparel_and_the_rules_in_force_on_the_day():
    shot = product_shot((200, 200), (255, 255, 255))
    assert compress(shot, under("google-shopping")).checks == []
    apparel = compress(shot, under("google-shopping", listing=Listing(apparel=True)))
    assert apparel.checks == ["200×200 is below 250×250 (apparel)"]
    later = Encoding(today=date(2027, 1, 31)).for_request(50, "jpeg", ImageOptions(preset="google-shopping"))
    assert compress(shot, later).checks == ["200×200 is below 500×500"]


@pytest.mark.parametrize(
    ("preset", "candidates"), [("web", ("AVIF", "WEBP")), ("google-shopping", ("WEBP", "JPEG")), ("amazon", ("JPEG",))]
)
def test_format_auto_chooses_only_among_the_formats_the_preset_accepts(preset, candidates):
    encoding = under(preset, "auto")
    assert encoding.allowed_formats == candidates
    out = compress(product_shot((300, 200), (255, 255, 255)), encoding)
    assert out.extension.upper().replace("JPG", "JPEG") in candidates
    assert out.checks is not None and not any("not accepted" in problem for problem in out.checks)


def test_a_source_is_kept_as_it_is_only_in_a_format_the_preset_accepts():
    flat_png = product_shot((1200, 900), (255, 255, 255), "PNG")  # a few colours: smaller than any JPEG of it
    assert compress(flat_png, Encoding()).kept_source
    out = compress(flat_png, under("amazon"))
    assert not out.kept_source and out.extension == "jpg" and out.checks == []
