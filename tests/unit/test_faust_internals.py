"""The private parts of faust, mode and aiokafka that imgpipe_bus patches still exist in the pinned versions."""

import pytest

from imgpipe_bus import faust_internals
from imgpipe_bus.faust_internals import PRIVATE_PARTS, missing_private_parts


def test_every_private_part_the_bus_uses_exists_in_the_installed_versions():
    assert missing_private_parts() == []


def test_a_private_part_that_is_gone_is_named(monkeypatch: pytest.MonkeyPatch):
    class Upgraded:
        def __init__(self) -> None:
            self.kept = 1

    monkeypatch.setattr(faust_internals, "PRIVATE_PARTS", [*PRIVATE_PARTS, (Upgraded, "kept"), (Upgraded, "_gone")])
    assert missing_private_parts() == [f"{__name__}.{Upgraded.__qualname__}._gone"]
