"""Marketplace presets and the checks of their rules (presets.toml): what a preset sets for a request, and
which of a row's images a marketplace would reject, and why, in words a catalogue team can act on. Pure:
ingest reads a preset's defaults from here, and the image worker's codec processes call ``check`` with what
they know of an output (its size, bytes, format and background, see imgpipe_image_worker.presets)."""

import tomllib
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from importlib import resources
from typing import Any

WHITE = (255, 255, 255)


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


def auto_formats(preset: Preset, candidates: tuple[str, ...]) -> tuple[str, ...]:
    """The candidates of format=auto (upper-case Pillow names, in their order) that the preset accepts."""
    return tuple(name for name in candidates if name.lower() in preset.formats)


def needs_background(preset: Preset, *, main: bool, apparel: bool, today: date) -> bool:
    """Whether a rule that applies to this image reads its background: measuring it decodes the output."""
    return any(rule.check == "white_background" and _applies(rule, main, apparel, today) for rule in preset.rules)


def _applies(rule: Rule, main: bool, apparel: bool, today: date) -> bool:
    in_force = rule.since is None or today >= rule.since
    return (main or not rule.main_only) and (apparel or not rule.apparel_only) and in_force


def check(preset: Preset, out: Output, *, main: bool, apparel: bool, today: date) -> list[str]:
    """Why the marketplace would reject this output, one reason per broken rule; empty when none is."""
    problems = []
    if out.format not in preset.formats:
        problems.append(f"{out.format.upper()} is not accepted (only {', '.join(f.upper() for f in preset.formats)})")
    for rule in preset.rules:
        if _applies(rule, main, apparel, today) and (problem := _broken(rule, out)):
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
