"""docs/configuration.md lists every setting as the settings classes define it."""

from tests.support.configuration_doc import DOC, current, settings


def test_the_configuration_doc_is_the_settings_classes_table():
    text = DOC.read_text()
    assert text == current(text), "docs/configuration.md is out of date: run `make docs`"


def test_every_setting_says_what_it_does():
    assert [s.variable for s in settings() if not s.descriptions] == []
