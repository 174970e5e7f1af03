"""Calibration of the ``quality=auto`` targets and their cost, as reported in docs/perceptual-quality.md.

``python -m imgpipe_ops.quality_calibration [--count 30] [--side 1500]`` generates a varied corpus (no photo
set ships with the project and none may be downloaded), then:

1. anchors: per format, each image's trial SSIM (reduced scale, as the search measures it) at the qualities
   that name the modes (50, 75, 90); a mode's target for a format is the corpus median at its anchor, rounded;
2. per format and mode: the chosen quality, the bytes of the full-size encode at that quality against fixed
   quality 50 and 80, the full-size SSIM of that encode (at the same reduced scale, and at full scale) and the
   CPU time (``time.process_time``) of search plus final encode against one fixed-quality encode.

Encodes run in this one process, one at a time, AVIF with one thread: the CPU figures are per image and core.
"""

import argparse
import io
import statistics
import time
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from imgpipe_image_worker import perceptual
from imgpipe_ops.samples import photo_like_jpeg

ANCHORS = {"auto:eco": 50, "auto:good": 75, "auto:best": 90}
FIXED = (50, 80)


def _fractal(rng: np.random.Generator, side: int, octaves: int = 6) -> np.ndarray:
    """Value noise summed over octaves, amplitude halving per octave: 1/f-like, as natural textures are."""
    total = np.zeros((side, side))
    for octave in range(octaves):
        cells = 2 ** (octave + 2)
        coarse = rng.random((cells, cells)).astype(np.float32)
        layer = Image.fromarray(coarse, "F").resize((side, side), Image.Resampling.BICUBIC)
        total += np.asarray(layer) / 2**octave
    total -= total.min()
    return total / total.max()


def _rgb(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def photo(rng: np.random.Generator, side: int) -> Image.Image:
    """The demo's photo generator: smooth colour fields with sensor grain."""
    data = photo_like_jpeg(side, side, int(rng.integers(1 << 30)), quality=95)
    return Image.open(io.BytesIO(data)).convert("RGB")


def gradient(rng: np.random.Generator, side: int) -> Image.Image:
    """A sky or studio backdrop: smooth two-colour ramps with a radial vignette and faint grain."""
    y, x = np.mgrid[0:side, 0:side] / side
    angle = rng.random() * np.pi
    ramp = (np.cos(angle) * x + np.sin(angle) * y)[..., None]
    start, end = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    vignette = 1 - 0.35 * ((x - 0.5) ** 2 + (y - 0.5) ** 2)[..., None]
    pixels = (start + (end - start) * ramp) * vignette + rng.normal(0, 1.5, (side, side, 3))
    return _rgb(pixels)


def texture(rng: np.random.Generator, side: int) -> Image.Image:
    """Foliage, gravel or fabric: detail at every scale, the hardest content for every encoder."""
    channels = [_fractal(rng, side, octaves=8) for _ in range(3)]
    pixels = np.stack(channels, axis=-1) * 200 + 30 + rng.normal(0, 8, (side, side, 3))
    return _rgb(pixels)


def product(rng: np.random.Generator, side: int) -> Image.Image:
    """A catalogue shot: a shaded object on white, with a label of text and hard edges."""
    image = Image.new("RGB", (side, side), (255, 255, 255))
    shading = _fractal(rng, side, octaves=4)
    colour = rng.integers(40, 220, 3)
    body = _rgb(colour * (0.6 + 0.5 * shading[..., None]))
    mask = Image.new("L", (side, side), 0)
    ImageDraw.Draw(mask).ellipse((side * 0.2, side * 0.15, side * 0.8, side * 0.85), fill=255)
    image.paste(body, mask=mask)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(12, side // 25))
    draw.rectangle((side * 0.3, side * 0.45, side * 0.7, side * 0.6), fill=(250, 250, 245), outline=(0, 0, 0), width=3)
    draw.text((side * 0.32, side * 0.47), f"MODEL {int(rng.integers(100, 999))}", fill=(20, 20, 20), font=font)
    draw.text((side * 0.05, side * 0.9), "100% cotton - 250 ml - EUR 19.99", fill=(60, 60, 60), font=font)
    return image


def landscape(rng: np.random.Generator, side: int) -> Image.Image:
    """Sky over textured ground with a horizon edge, plus grain: a photo's mix of smooth and detailed areas."""
    y = np.mgrid[0:side, 0:side][0] / side
    horizon = 0.4 + 0.1 * _fractal(rng, side, octaves=3)[0]
    sky = np.array([110, 160, 230]) * (0.7 + 0.3 * y[..., None])
    ground = np.array([70, 110, 40]) * (0.5 + _fractal(rng, side)[..., None])
    pixels = np.where((y > horizon[None, :])[..., None], ground, sky) + rng.normal(0, 4, (side, side, 3))
    return _rgb(pixels)


KINDS: dict[str, Callable[[np.random.Generator, int], Image.Image]] = {
    "photo": photo,
    "gradient": gradient,
    "texture": texture,
    "product": product,
    "landscape": landscape,
}


def corpus(count: int, side: int) -> list[tuple[str, Image.Image]]:
    kinds = list(KINDS)
    images = []
    for index in range(count):
        kind = kinds[index % len(kinds)]
        images.append((kind, KINDS[kind](np.random.default_rng(index), side)))
    return images


def anchor_targets(images: list[tuple[str, Image.Image]], fmt: str) -> dict[str, float]:
    """Each mode's target for ``fmt``: the median trial SSIM of the corpus at the mode's anchor quality."""
    targets = {}
    side = perceptual.TRIAL_SIDES[fmt]
    trials = [perceptual.trial_image(image, side) for _, image in images]
    if fmt == "JPEG":
        trials = [trial.convert("RGB") for trial in trials]
    for mode, quality in ANCHORS.items():
        scores = [perceptual.ssim_luma(trial, perceptual.round_trip(trial, fmt, quality)) for trial in trials]
        targets[mode] = statistics.median(scores)
        print(
            f"{fmt} {mode}: q{quality} trial SSIM at {side} px median {targets[mode]:.4f} "
            f"(min {min(scores):.4f}, max {max(scores):.4f})"
        )
    return targets


def _timed(function: Callable, *args: object) -> tuple:
    """The function's result and the CPU time of this process it took."""
    start = time.process_time()
    result = function(*args)
    return result, time.process_time() - start


def measure(images: list[tuple[str, Image.Image]], fmt: str) -> None:
    fixed_bytes = {q: 0 for q in FIXED}
    fixed_cpu = {q: 0.0 for q in FIXED}
    for _, image in images:
        for quality in FIXED:
            data, cpu = _timed(perceptual.encode, image, fmt, quality)
            fixed_bytes[quality] += len(data)
            fixed_cpu[quality] += cpu
    for mode in ("auto:eco", "auto:good", "auto:best"):
        qualities: list[int] = []
        reduced: list[float] = []
        full: list[float] = []
        per_kind: dict[str, list[int]] = {}
        total_bytes, search_cpu, final_cpu, below = 0, 0.0, 0.0, 0
        for kind, image in images:
            choice, cpu = _timed(perceptual.quality_for_mode, image, fmt, mode)
            data, encode_cpu = _timed(perceptual.encode, image, fmt, choice.quality)
            search_cpu += cpu
            final_cpu += encode_cpu
            total_bytes += len(data)
            qualities.append(choice.quality)
            per_kind.setdefault(kind, []).append(choice.quality)
            below += choice.score < perceptual.MODES[mode][fmt]
            decoded = Image.open(io.BytesIO(data))
            reduced.append(perceptual.ssim_luma(image, decoded, scale_to=perceptual.TRIAL_SIDES[fmt]))
            full.append(perceptual.ssim_luma(image, decoded, scale_to=max(image.size)))
        kinds = ", ".join(f"{kind} {statistics.median(q):g}" for kind, q in per_kind.items())
        print(
            f"{fmt} {mode}: median q {statistics.median(qualities):g} ({min(qualities)}–{max(qualities)}; {kinds}); "
            f"target missed by the top quality on {below}; "
            f"bytes vs q50 {total_bytes / fixed_bytes[50]:.2f}, vs q80 {total_bytes / fixed_bytes[80]:.2f}; "
            f"full-size SSIM median {statistics.median(reduced):.4f} at {perceptual.TRIAL_SIDES[fmt]}px, "
            f"{statistics.median(full):.4f} at full scale; "
            f"CPU per image: search {search_cpu / len(images) * 1000:.0f} ms + encode "
            f"{final_cpu / len(images) * 1000:.0f} ms vs fixed q80 {fixed_cpu[80] / len(images) * 1000:.0f} ms "
            f"(q50 {fixed_cpu[50] / len(images) * 1000:.0f} ms): "
            f"{(search_cpu + final_cpu) / fixed_cpu[80]:.2f}× q80"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=30)
    parser.add_argument("--side", type=int, default=1500)
    parser.add_argument("--formats", default="JPEG,WEBP,AVIF")
    parser.add_argument("--anchors-only", action="store_true", help="only the SSIM of the anchor qualities")
    args = parser.parse_args(argv)
    images = corpus(args.count, args.side)
    print(f"{len(images)} images of {args.side}×{args.side}; targets in use: {perceptual.MODES}")
    for fmt in args.formats.split(","):
        anchor_targets(images, fmt)
    if args.anchors_only:
        return
    for fmt in args.formats.split(","):
        measure(images, fmt)


if __name__ == "__main__":
    main()
