"""quality=auto: the SSIM on luma and the bisection that picks the lowest quality meeting a target."""

import io
import pickle

import numpy as np
import pytest
from PIL import Image, ImageDraw

from imgpipe_image_worker import perceptual
from imgpipe_image_worker.perceptual import MODES, QUALITIES, choose_quality, round_trip, ssim_luma, trial_image
from imgpipe_ops.samples import photo_like_jpeg


def photo(seed: int = 1, width: int = 900, height: int = 600) -> Image.Image:
    return Image.open(io.BytesIO(photo_like_jpeg(width, height, seed=seed, quality=95))).convert("RGB")


def product_shot(side: int = 700) -> Image.Image:
    """Hard edges and text on white: content whose score climbs differently from a photo's."""
    image = Image.new("RGB", (side, side), "white")
    draw = ImageDraw.Draw(image)
    draw.ellipse((side // 5, side // 5, side * 4 // 5, side * 4 // 5), fill=(90, 40, 160), outline="black", width=4)
    draw.text((side // 3, side // 2), "MODEL 541 - 250 ml", fill="black", font_size=side // 20)
    return image


class CountingEncoder:
    """The real round trip, counting the trial encodes and the qualities they were made at."""

    def __init__(self) -> None:
        self.qualities: list[int] = []

    def __call__(self, image: Image.Image, fmt: str, quality: int) -> Image.Image:
        self.qualities.append(quality)
        return round_trip(image, fmt, quality)


def test_an_image_scores_one_against_itself_whatever_its_mode():
    source = photo()
    assert ssim_luma(source, source) == pytest.approx(1.0, abs=1e-6)
    assert ssim_luma(source.convert("L"), source.convert("L")) == pytest.approx(1.0, abs=1e-6)
    translucent = source.convert("RGBA")
    translucent.putalpha(128)
    assert ssim_luma(translucent, translucent.copy()) == pytest.approx(1.0, abs=1e-6)


def test_the_score_of_a_photo_drops_with_every_step_down_in_quality():
    source = photo()
    scores = [ssim_luma(source, round_trip(source, "JPEG", quality)) for quality in (95, 85, 70, 55, 40, 25, 10)]
    assert all(higher > lower for higher, lower in zip(scores, scores[1:], strict=False)), scores
    assert scores[0] < 1.0


def test_the_score_sees_a_difference_only_in_luma_not_in_a_hue_of_equal_brightness():
    grey = Image.new("RGB", (64, 64), (128, 128, 128))
    shifted = Image.new("RGB", (64, 64), (200, 100, 83))  # 0.299 R + 0.587 G + 0.114 B rounds to 128
    assert shifted.convert("L").getpixel((0, 0)) == 128
    noisy = Image.fromarray(np.clip(128 + np.random.default_rng(3).normal(0, 40, (64, 64, 3)), 0, 255).astype(np.uint8))
    assert ssim_luma(grey, shifted) == pytest.approx(1.0)
    assert ssim_luma(grey, noisy) < 0.5


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "AVIF"])
@pytest.mark.parametrize("image", [photo(2), product_shot()], ids=["photo", "product"])
def test_the_chosen_quality_meets_the_target_and_the_step_below_does_not(fmt, image):
    trial = trial_image(image, perceptual.TRIAL_SIDES[fmt])
    if fmt == "JPEG":
        trial = trial.convert("RGB")

    def score(quality: int) -> float:
        return ssim_luma(trial, round_trip(trial, fmt, quality))

    # A target between two middle candidates' scores, so that the answer is neither end of the range.
    target = (score(QUALITIES[14]) + score(QUALITIES[16])) / 2
    chosen = choose_quality(image, fmt, target)
    assert QUALITIES[0] < chosen.quality < QUALITIES[-1]
    assert chosen.score == pytest.approx(score(chosen.quality))
    assert chosen.score >= target
    step_below = QUALITIES[QUALITIES.index(chosen.quality) - 1]
    assert score(step_below) < target


def test_an_easy_target_takes_the_lowest_quality_and_an_unreachable_one_the_highest_with_its_score():
    image = photo(3)
    assert choose_quality(image, "JPEG", 0.01).quality == QUALITIES[0]
    unreachable = choose_quality(image, "JPEG", 1.0)
    assert unreachable.quality == QUALITIES[-1] and unreachable.score < 1.0


def test_every_search_takes_at_most_five_trial_encodes_each_at_a_new_quality():
    image = photo(4, 640, 480)
    for target in np.linspace(0.5, 1.0, 23):
        encoder = CountingEncoder()
        choose_quality(image, "JPEG", float(target), encoder=encoder)
        assert 1 <= len(encoder.qualities) <= 5, (target, encoder.qualities)
        assert len(set(encoder.qualities)) == len(encoder.qualities)


def test_the_trial_encodes_are_made_at_the_reduced_scale():
    sizes = []

    def encoder(image: Image.Image, fmt: str, quality: int) -> Image.Image:
        sizes.append(image.size)
        return round_trip(image, fmt, quality)

    choose_quality(photo(5, 1500, 1000), "WEBP", MODES["auto"]["WEBP"], encoder=encoder)
    side = perceptual.TRIAL_SIDES["WEBP"]
    assert set(sizes) == {(side, round(1000 * side / 1500))}


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "AVIF"])
def test_eco_chooses_no_higher_a_quality_than_good_and_good_no_higher_than_best(fmt):
    for image in (photo(6), product_shot()):
        eco, good, best = (perceptual.quality_for_mode(image, fmt, mode).quality for mode in MODES if mode != "auto")
        assert eco <= good <= best
    assert MODES["auto:eco"][fmt] < MODES["auto:good"][fmt] < MODES["auto:best"][fmt]
    assert MODES["auto"] == MODES["auto:good"]


def test_bad_arguments_are_refused_with_a_clear_error():
    image = photo(7, 64, 64)
    with pytest.raises(ValueError, match="not 'PNG'"):
        choose_quality(image, "PNG", 0.9)
    with pytest.raises(ValueError, match="target"):
        choose_quality(image, "JPEG", 1.5)
    with pytest.raises(ValueError, match="unknown quality mode"):
        perceptual.quality_for_mode(image, "JPEG", "auto:max")
    with pytest.raises(ValueError, match="differ in size"):
        ssim_luma(image, image.resize((32, 32)))
    with pytest.raises(ValueError, match="at least 7"):
        ssim_luma(image.resize((5, 40)), image.resize((5, 40)))


def test_the_search_and_its_answer_travel_to_and_from_a_codec_process():
    choice = choose_quality(photo(8, 300, 200), "JPEG", 0.9)
    assert pickle.loads(pickle.dumps(choice)) == choice
    assert pickle.loads(pickle.dumps(choose_quality)) is choose_quality
