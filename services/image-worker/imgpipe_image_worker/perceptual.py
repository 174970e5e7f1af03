"""Perceptual-quality encoding (``quality=auto``): per image, the lowest encoder quality whose output still
looks like the source, instead of one fixed quality for every image.

"Looks like" is SSIM (Wang et al. 2004) on luma: the eye is far more sensitive to brightness structure than to
colour, and every encoder here subsamples or quantises chroma harder anyway. The score is taken at a reduced
scale (longest side ``TRIAL_SIDES``: 256 px for JPEG and WebP, 512 for AVIF) for cost, and the search encodes
that reduced image too: a handful of small trial encodes cost less than one full-size encode, after which the
caller encodes once at full size.

The search is a bisection over ``QUALITIES``: 31 candidates, so at most 5 trial encodes. Its answer has been
measured to meet the target, and the candidate one step below it has been measured not to, whatever the shape
of score against quality (encoders are not strictly monotonic). When no candidate meets the target the top one
is returned with its score, which is then below the target. The targets of ``MODES`` and how they were
calibrated are in docs/perceptual-quality.md.

Pure and picklable (module-level functions, no I/O): it runs in the worker's codec processes.
"""

import io
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from PIL import Image

# The trial encodes use the full-size encode's settings, or they would measure another encoder.
from imgpipe_image_worker.encoders import SAVE_OPTIONS, flattened, rgb_or_rgba

# SSIM targets per mode and format: each the corpus median of that format at quality 50, 75 and 90 (see
# docs/perceptual-quality.md). Per format, because WebP and AVIF smooth grain that JPEG keeps, and SSIM counts
# grain as structure: one target for all would drive WebP to its top quality on grainy photos.
MODES = {
    "auto:eco": {"JPEG": 0.9834, "WEBP": 0.9821, "AVIF": 0.9891},
    "auto:good": {"JPEG": 0.9900, "WEBP": 0.9860, "AVIF": 0.9913},
    "auto:best": {"JPEG": 0.9961, "WEBP": 0.9935, "AVIF": 0.9933},
}
MODES["auto"] = MODES["auto:good"]
FORMATS = ("JPEG", "WEBP", "AVIF")
QUALITIES = tuple(range(35, 96, 2))
TRIAL_SIDE = 512
# The trial's longest side per format, which its targets were calibrated at. JPEG and WebP at 256 px: for JPEG
# the score is most of the search's cost (its encodes are cheap), and 256 px still tells the three modes
# apart. AVIF at 512 px: at 256 px its q75 and q90 trials score the same (the modes could not be told
# apart), and its search is cheap next to its own full-size encode anyway.
TRIAL_SIDES = {"JPEG": 256, "WEBP": 256, "AVIF": TRIAL_SIDE}

WINDOW = 7  # scikit-image's default: a 7×7 uniform window, sample covariance
COUNT = WINDOW * WINDOW
K1, K2 = 0.01, 0.03
C1, C2 = (K1 * 255) ** 2, (K2 * 255) ** 2


class Choice(NamedTuple):
    quality: int
    score: float  # the trial's SSIM at that quality, at the reduced scale


Encoder = Callable[[Image.Image, str, int], Image.Image]


def encode(image: Image.Image, fmt: str, quality: int) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, quality=quality, **SAVE_OPTIONS[fmt])
    return out.getvalue()


def round_trip(image: Image.Image, fmt: str, quality: int) -> Image.Image:
    """The image as a viewer of its encoding at ``quality`` would see it."""
    decoded = Image.open(io.BytesIO(encode(image, fmt, quality)))
    decoded.load()
    return decoded


def trial_image(image: Image.Image, side: int = TRIAL_SIDE) -> Image.Image:
    """The image the search encodes: at most ``side`` on its longest side, in a mode every format takes
    (RGB, or RGBA where there is transparency; JPEG's trial is flattened onto white as its encode is)."""
    image = rgb_or_rgba(image)
    size = _shrunk_size(image.size, side)
    if size != image.size:
        image = _shrunk(image, size)
    return image


def ssim_luma(a: Image.Image, b: Image.Image, scale_to: int = TRIAL_SIDE) -> float:
    """Mean SSIM of the two images' luma (BT.601, as Pillow's ``L``), both first shrunk to at most
    ``scale_to`` on their longest side. Transparency is flattened onto white: what a page shows."""
    if a.size != b.size:
        raise ValueError(f"the images differ in size: {a.size} and {b.size}")
    return _Reference(a, scale_to).score(b)


def choose_quality(
    image: Image.Image, fmt: str, target: float, encoder: Encoder = round_trip, side: int | None = None
) -> Choice:
    """The lowest quality of ``QUALITIES`` whose trial encode of ``image`` (at most ``side`` on its longest
    side, by default the format's TRIAL_SIDES) scores at least ``target``."""
    if fmt not in FORMATS:
        raise ValueError(f"perceptual quality applies to {', '.join(FORMATS)}, not {fmt!r}")
    if not 0 < target <= 1:
        raise ValueError(f"an SSIM target is in (0, 1], not {target}")
    side = side or TRIAL_SIDES[fmt]
    trial = trial_image(image, side)
    if fmt == "JPEG":
        trial = flattened(trial)
    reference = _Reference(trial, side)
    scores: dict[int, float] = {}
    low, high = 0, len(QUALITIES)  # every index below low fails; high passes, or is past the end
    while low < high:
        middle = (low + high) // 2
        quality = QUALITIES[middle]
        scores[quality] = reference.score(encoder(trial, fmt, quality))
        if scores[quality] >= target:
            high = middle
        else:
            low = middle + 1
    # low was probed unless it is past the end, in which case the top candidate was probed and failed.
    quality = QUALITIES[min(low, len(QUALITIES) - 1)]
    return Choice(quality, scores[quality])


def quality_for_mode(image: Image.Image, fmt: str, mode: str, encoder: Encoder = round_trip) -> Choice:
    if mode not in MODES:
        raise ValueError(f"unknown quality mode {mode!r}; one of {', '.join(MODES)}")
    if fmt not in FORMATS:
        raise ValueError(f"perceptual quality applies to {', '.join(FORMATS)}, not {fmt!r}")
    return choose_quality(image, fmt, MODES[mode][fmt], encoder)


class _Reference:
    """The source's luma and its window sums, computed once and compared with each trial encode.

    Window sums are exact int32 (a window's sum of squares is at most 49 × 255², the spreads below at most
    49² × 255²): only the final ratio is floating point, in float32, which halves the memory traffic of
    float64. It equals scikit-image's ``structural_similarity`` (7×7 uniform window, sample covariance) to 1e-6.
    """

    def __init__(self, image: Image.Image, scale_to: int) -> None:
        self.size = _shrunk_size(image.size, scale_to)
        if min(self.size) < WINDOW:
            raise ValueError(f"SSIM needs at least {WINDOW}×{WINDOW} pixels, not {self.size[0]}×{self.size[1]}")
        self.luma = _luma(image, self.size)
        self.sum = _window_sums(self.luma)
        self.spread = COUNT * _window_sums(self.luma * self.luma) - self.sum * self.sum  # COUNT² × variance
        self.mean_term = (self.sum * self.sum).astype(np.float32) + C1 * COUNT * COUNT

    def score(self, other: Image.Image) -> float:
        luma = _luma(other, self.size)
        other_sum = _window_sums(luma)
        product = self.sum * other_sum
        other_spread = COUNT * _window_sums(luma * luma) - other_sum * other_sum
        co_spread = COUNT * _window_sums(self.luma * luma) - product
        bias = COUNT * (COUNT - 1)  # sample covariance, as scikit-image's default
        luminance = (2 * product.astype(np.float32) + C1 * COUNT * COUNT) / (
            self.mean_term + (other_sum * other_sum).astype(np.float32)
        )
        structure = (2 * co_spread.astype(np.float32) + C2 * bias) / (
            (self.spread + other_spread).astype(np.float32) + C2 * bias
        )
        return float(np.mean(luminance * structure, dtype=np.float64))


def _window_sums(values: np.ndarray) -> np.ndarray:
    """The sum of every full WINDOW×WINDOW window, as WINDOW shifted adds down then across: on a 512×512
    image this is about twice as fast as a summed-area table, whose cumulative sum across rows is slow."""
    height, width = values.shape
    rows = values[: height - WINDOW + 1].copy()
    for shift in range(1, WINDOW):
        rows += values[shift : height - WINDOW + 1 + shift]
    sums = rows[:, : width - WINDOW + 1].copy()
    for shift in range(1, WINDOW):
        sums += rows[:, shift : width - WINDOW + 1 + shift]
    return sums


def _luma(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    if image.mode != "L":
        image = flattened(rgb_or_rgba(image))
    if image.size != size:
        image = _shrunk(image, size)
    return np.asarray(image.convert("L"), dtype=np.int32)


def _shrunk(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``image`` at ``size``: first a box reduction by the whole factor (the cheapest resampling there is, and
    one that averages every pixel), then bilinear for what remains, less than a factor of two."""
    return image.resize(size, Image.Resampling.BILINEAR, reducing_gap=1.0)


def _shrunk_size(size: tuple[int, int], side: int) -> tuple[int, int]:
    scale = side / max(size)
    if scale >= 1:
        return size
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))
