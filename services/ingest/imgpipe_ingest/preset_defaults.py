"""A marketplace preset's defaults applied to an upload's choices. Pure.

A preset sets the output format and the geometry box (presets.toml); whatever the request set itself
overrides them, one option at a time. An explicit format the preset's marketplace does not accept is a
contradiction, refused rather than resolved: ``auto`` is always accepted, since with a preset it chooses
only among the preset's formats."""

from typing import Any, cast

from imgpipe_runtime.presets import presets
from imgpipe_schemas.events import OutputFormat, PresetName


class PresetConflict(ValueError):
    """``field``: the form field that contradicts the preset."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def with_preset(
    preset: PresetName | None, output_format: OutputFormat | None, chosen: dict[str, Any]
) -> tuple[OutputFormat | None, dict[str, Any]]:
    """The format and the image options (``chosen``: the form's, None where it set nothing) with the preset's
    defaults where the request set nothing. Raises PresetConflict."""
    if preset is None:
        return output_format, chosen
    defaults = presets()[preset]
    if output_format is not None and output_format != "auto" and output_format not in defaults.formats:
        accepted = ", ".join([*defaults.formats, "auto"])
        raise PresetConflict("format", f"format={output_format} is not accepted by preset={preset} (only {accepted})")
    box = {"max_width": defaults.max_width, "max_height": defaults.max_height}
    shaped = {**chosen, "preset": preset}
    for name, value in box.items():
        if shaped.get(name) is None:
            shaped[name] = value
    return output_format or cast(OutputFormat, defaults.output_format), shaped
