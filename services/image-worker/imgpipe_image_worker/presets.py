"""Marketplace presets and the checks of their rules (presets.toml): which of a row's images a marketplace
would reject, and why, in words a catalogue team can act on. Pure: the codec process calls ``check`` with
what it knows of an output (its size, bytes, format and pixels)."""

import tomllib
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from importlib import resources
from typing import Any, cast

from PIL import Image

WHITE = (255, 255, 255)
BORDER_PX = 2  # the frame of pixels a background is measured on


@dataclass(frozen=True)
class Rule:
    check: str
    source: str
    read: date
    value: int = 0
    main_only: bool = False
    apparel_only: bool = False
    since: date | None = None
    why: str = ""


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    formats: tuple[str, ...]
    output_format: str
    max_width: int | None = None
    max_height: int | None = None
    rules: tuple[Rule, ...] = field(default=())


@dataclass(frozen=True)
class Output:
    """What a check needs to know of one output image."""

    width: int
    height: int
    length: int
    format: str  # jpeg, png, webp, avif
    background: tuple[int, int, int] | None = None  # see background(); None: not measured


@cache
def presets() -> dict[str, Preset]:
    data = tomllib.loads(resources.files(__package__).joinpath("presets.toml").read_text())
    return {name: _preset(name, table) for name, table in data.items()}


def _preset(name: str, table: dict[str, Any]) -> Preset:
    rules = tuple(
        Rule(
            check=rule["check"],
            source=rule["source"],
            read=date.fromisoformat(rule["read"]),
            value=rule.get("value", 0),
            main_only=rule.get("main_only", False),
            apparel_only=rule.get("apparel_only", False),
            since=date.fromisoformat(rule["from"]) if "from" in rule else None,
            why=rule.get("why", ""),
        )
        for rule in table.get("rules", [])
    )
    return Preset(
        name,
        table["title"],
        tuple(table["formats"]),
        table["output_format"],
        table.get("max_width"),
        table.get("max_height"),
        rules,
    )


def check(preset: Preset, out: Output, *, main: bool, apparel: bool, today: date) -> list[str]:
    """Why the marketplace would reject this output, one reason per broken rule; empty when none is."""
    problems = []
    if out.format not in preset.formats:
        problems.append(f"{out.format.upper()} is not accepted (only {', '.join(f.upper() for f in preset.formats)})")
    for rule in preset.rules:
        if (rule.main_only and not main) or (rule.apparel_only and not apparel) or (rule.since and today < rule.since):
            continue
        if problem := _broken(rule, out):
            problems.append(problem)
    return problems


def _broken(rule: Rule, out: Output) -> str | None:
    size = f"{out.width}×{out.height}"
    longest = max(out.width, out.height)
    match rule.check:
        case "min_longest_side" if longest < rule.value:
            return f"{size} is below {rule.value} px on its longest side"
        case "max_longest_side" if longest > rule.value:
            return f"{size} is above {rule.value} px on its longest side"
        case "min_size" if min(out.width, out.height) < rule.value:
            return f"{size} is below {rule.value}×{rule.value}" + (" (apparel)" if rule.apparel_only else "")
        case "max_pixels" if out.width * out.height > rule.value:
            return f"{size} is more than {rule.value / 1e6:g} megapixels"
        case "max_bytes" if out.length > rule.value:
            return f"{out.length / 1e6:.1f} MB is more than {rule.value / 1e6:g} MB"
        case "white_background" if out.background is not None and out.background != WHITE:
            return "background is not pure white (measured {},{},{})".format(*out.background)
    return None


def background(image: Image.Image) -> tuple[int, int, int]:
    """The background as a marketplace's check reads it, on the frame of the image's outer pixels: the lowest
    value of each channel there, which is pure white only when every pixel of the frame is."""
    rgb = image.convert("RGB")
    width, height = rgb.size
    frame = min(BORDER_PX, width, height)
    strips = [
        rgb.crop((0, 0, width, frame)),
        rgb.crop((0, height - frame, width, height)),
        rgb.crop((0, 0, frame, height)),
        rgb.crop((width - frame, 0, width, height)),
    ]
    # An RGB image's extrema: one (min, max) per channel.
    lows = [[band[0] for band in cast(tuple[tuple[int, int], ...], strip.getextrema())] for strip in strips]
    red, green, blue = (min(low[channel] for low in lows) for channel in range(3))
    return red, green, blue
