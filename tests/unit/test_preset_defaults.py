"""A preset's defaults at upload: the preset sets the format and the box, and each option the request set
itself wins; an explicit format the preset's marketplace does not accept is refused."""

from typing import get_args

import pytest

from imgpipe_ingest.preset_defaults import PresetConflict, with_preset
from imgpipe_runtime.presets import presets
from imgpipe_schemas.events import PresetName

NOTHING = {"max_width": None, "max_height": None, "fit": None}


def test_the_preset_names_of_the_contract_are_the_presets_of_the_data_file():
    assert set(get_args(PresetName)) == set(presets())


def test_a_preset_sets_the_format_and_the_box_when_the_request_sets_neither():
    assert with_preset("web", None, NOTHING) == (
        "auto",
        {"max_width": 2048, "max_height": 2048, "fit": None, "preset": "web"},
    )
    output_format, chosen = with_preset("google-shopping", None, NOTHING)
    assert output_format == "jpeg" and chosen["max_width"] is None and chosen["preset"] == "google-shopping"


def test_each_option_the_request_set_overrides_the_presets_default():
    output_format, chosen = with_preset("web", "webp", {**NOTHING, "max_width": 800})
    assert output_format == "webp" and chosen["max_width"] == 800 and chosen["max_height"] == 2048
    assert with_preset("amazon", "auto", NOTHING)[0] == "auto"  # auto chooses among the preset's formats


@pytest.mark.parametrize(
    ("preset", "output_format"), [("google-shopping", "avif"), ("amazon", "webp"), ("web", "keep")]
)
def test_a_format_the_preset_does_not_accept_is_refused_naming_the_field(preset, output_format):
    with pytest.raises(PresetConflict) as refused:
        with_preset(preset, output_format, NOTHING)
    assert refused.value.field == "format" and f"format={output_format}" in str(refused.value)


def test_without_a_preset_nothing_changes():
    assert with_preset(None, None, NOTHING) == (None, NOTHING)
