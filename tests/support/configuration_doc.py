"""docs/configuration.md's table of settings, rendered from the settings classes' own fields: their
environment variables, defaults and descriptions. ``python -m tests.support.configuration_doc`` (``make
docs``) writes it; tests/unit/test_configuration_doc.py fails while the file and the classes differ."""

import sys
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from imgpipe_assembler.settings import Settings as AssemblerSettings
from imgpipe_bus import HealthSettings
from imgpipe_image_worker.settings import Settings as ImageWorkerSettings
from imgpipe_ingest.settings import Settings as IngestSettings
from imgpipe_notifier.settings import Settings as NotifierSettings
from imgpipe_ops.settings import LocalSettings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
BEGIN = "<!-- The table below is generated from the settings classes: `make docs` writes it. -->"
END = "<!-- End of the generated table. -->"

READERS: list[tuple[str, type[BaseSettings]]] = [
    ("ingest", IngestSettings),
    ("image-worker", ImageWorkerSettings),
    ("assembler", AssemblerSettings),
    ("notifier", NotifierSettings),
    *((service, HealthSettings) for service in ("ingest", "image-worker", "assembler", "notifier")),
    ("`make run`", LocalSettings),
]


@dataclass
class Setting:
    variable: str
    defaults: dict[str, list[str]] = field(default_factory=dict)  # default → the readers that have it
    descriptions: dict[str, list[str]] = field(default_factory=dict)
    readers: list[str] = field(default_factory=list)


def fields_of(model: type[BaseSettings]) -> list[tuple[str, str, str]]:
    """(variable, default, description) of every field of ``model``, its nested settings groups included."""
    prefix = model.model_config.get("env_prefix", "")
    found: list[tuple[str, str, str]] = []
    for name, info in model.model_fields.items():
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseSettings):
            found += fields_of(kind)
        else:
            found.append(((info.alias or f"{prefix}{name}").upper(), _default(info), info.description or ""))
    return found


def settings() -> list[Setting]:
    found: dict[str, Setting] = {}
    for reader, model in READERS:
        for variable, default, description in fields_of(model):
            setting = found.setdefault(variable, Setting(variable))
            setting.defaults.setdefault(default, []).append(reader)
            if description:
                setting.descriptions.setdefault(description, []).append(reader)
            if reader not in setting.readers:
                setting.readers.append(reader)
    return sorted(found.values(), key=lambda s: s.variable)


def render() -> str:
    lines = ["| variable | default | read by | meaning |", "|---|---|---|---|"]
    for s in settings():
        lines.append(f"| `{s.variable}` | {_either(s.defaults)} | {', '.join(s.readers)} | {_either(s.descriptions)} |")
    return "\n".join(lines)


def current(text: str) -> str:
    """``text`` (the doc) with its generated table replaced by the one the classes give now."""
    head, rest = text.split(BEGIN, 1)
    return f"{head}{BEGIN}\n{render()}\n{END}{rest.split(END, 1)[1]}"


def _either(values: dict[str, list[str]]) -> str:
    if len(values) == 1:
        return _cell(next(iter(values)))
    return "; ".join(f"{', '.join(by)}: {_cell(value).removesuffix('.')}" for value, by in values.items())


def _cell(value: str) -> str:
    if value in ("none", "required", "computed") or " " in value:
        return value.replace("|", "\\|")
    return f"`{value}`"


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None and not isinstance(info.default_factory, type):
        return "computed"  # from the machine (say how in its description), or a list
    if info.default_factory is not None:
        value: Any = info.default_factory()  # type: ignore[call-arg, unused-ignore]  # a class, no arguments
    elif info.default is PydanticUndefined:
        return "required"
    else:
        value = info.default
    if value is None or value == "":
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return ",".join(f"{item:g}" if isinstance(item, float) else str(item) for item in value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, timedelta):
        return f"{value.total_seconds():g}"
    if isinstance(value, SecretStr):
        return "none" if not value.get_secret_value() else "set"
    return str(value)


if __name__ == "__main__":
    DOC.write_text(current(DOC.read_text()))
    print(f"wrote {DOC}", file=sys.stderr)
