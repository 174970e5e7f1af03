import argparse

import pytest

from imgpipe_ops.uploads import _form_fields, add_commands


def parsed(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    return parser.parse_args(["upload", "p.csv", *argv])


def test_image_option_flags_become_the_forms_fields():
    args = parsed("--max-width", "300", "--max-height", "200", "--fit", "pad", "--background", "102030")
    assert {name: value for name, value in _form_fields(args).items() if value is not None} == {
        "max_width": 300,
        "max_height": 200,
        "fit": "pad",
        "background": "102030",
    }
    assert _form_fields(parsed("--no-progressive"))["progressive"] == "false"
    assert _form_fields(parsed("--progressive"))["progressive"] == "true"
    chosen = _form_fields(parsed("--metadata", "keep", "--keep-gps"))
    assert (chosen["metadata"], chosen["keep_gps"]) == ("keep", "true")


def test_options_left_out_are_not_sent():
    assert all(value is None for value in _form_fields(parsed()).values())


def test_quality_takes_a_number_or_a_mode_and_refuses_anything_else(capsys):
    assert _form_fields(parsed("--quality", "auto"))["quality"] == "auto"
    assert _form_fields(parsed("--quality", "auto:eco"))["quality"] == "auto:eco"
    assert _form_fields(parsed("--quality", "70"))["quality"] == "70"
    for bad in ("0", "96", "auto:max", "high"):
        with pytest.raises(SystemExit):
            parsed("--quality", bad)
        assert "neither 1-95 nor" in capsys.readouterr().err


def test_preset_is_one_of_the_marketplace_presets(capsys):
    assert _form_fields(parsed("--preset", "google-shopping"))["preset"] == "google-shopping"
    with pytest.raises(SystemExit):
        parsed("--preset", "ebay")
    assert "invalid choice" in capsys.readouterr().err
