"""Marketplace presets: their rules come from one data file, each with its source, and a check says in words
why an output would be rejected."""

from datetime import date

from PIL import Image, ImageDraw

from imgpipe_image_worker.presets import background
from imgpipe_runtime.presets import Output, check, presets

BEFORE_2027 = date(2026, 12, 8)


def test_every_preset_and_rule_names_where_it_comes_from():
    found = presets()
    assert {"web", "amazon", "google-shopping"} <= set(found)
    for preset in found.values():
        for rule in preset.rules:
            assert rule.source.startswith("https://") and rule.read <= date.today()
    assert "avif" not in found["google-shopping"].formats
    assert found["web"].max_width == 2048 and found["web"].output_format == "auto"


def test_amazon_says_which_size_bytes_format_and_background_it_would_reject():
    amazon = presets()["amazon"]
    ok = Output(2000, 1500, 400_000, "jpeg", background=(255, 255, 255))
    assert check(amazon, ok, main=True, apparel=False, today=BEFORE_2027) == []
    small = Output(640, 480, 50_000, "jpeg", background=(255, 255, 255))
    assert check(amazon, small, main=True, apparel=False, today=BEFORE_2027) == [
        "640×480 is below 1000 px on its longest side"
    ]
    grey = Output(2000, 2000, 12_500_000, "webp", background=(247, 247, 245))
    assert check(amazon, grey, main=True, apparel=False, today=BEFORE_2027) == [
        "WEBP is not accepted (only JPEG)",
        "12.5 MB is more than 10 MB",
        "background is not pure white (measured 247,247,245)",
    ]
    # Only the main image needs the white background.
    assert check(amazon, grey, main=False, apparel=False, today=BEFORE_2027) == [
        "WEBP is not accepted (only JPEG)",
        "12.5 MB is more than 10 MB",
    ]


def test_google_shopping_asks_more_of_apparel_and_more_of_everything_from_its_announced_date():
    google = presets()["google-shopping"]
    thumb = Output(200, 200, 10_000, "png")
    assert check(google, thumb, main=True, apparel=False, today=BEFORE_2027) == []
    assert check(google, thumb, main=True, apparel=True, today=BEFORE_2027) == ["200×200 is below 250×250 (apparel)"]
    assert check(google, thumb, main=True, apparel=False, today=date(2027, 1, 31)) == ["200×200 is below 500×500"]
    assert check(google, Output(900, 900, 10_000, "avif"), main=True, apparel=False, today=BEFORE_2027) == [
        "AVIF is not accepted (only JPEG, PNG, WEBP)"
    ]


def test_a_background_is_pure_white_only_when_its_whole_frame_is():
    product = Image.new("RGB", (300, 200), (255, 255, 255))
    ImageDraw.Draw(product).rectangle((60, 40, 240, 160), fill=(20, 90, 160))
    assert background(product) == (255, 255, 255)
    ImageDraw.Draw(product).point((299, 100), fill=(250, 251, 252))  # one off-white pixel on the edge
    assert background(product) == (250, 251, 252)
    assert background(Image.new("L", (10, 10), 247)) == (247, 247, 247)
