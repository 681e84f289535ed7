"""Both service units create files readable by the syncd (readers) group and nobody else."""

from __future__ import annotations

import pytest

from .test_units import UNITS, one, parse_unit


@pytest.mark.parametrize("name", ["syncd.service", "syncd-once.service"])
def test_units_leave_new_files_to_the_readers_group(name):
    unit = parse_unit(UNITS / name)
    assert one(unit, "Service", "UMask") == "0027"
    assert one(unit, "Service", "Group") == "syncd"
    assert one(unit, "Service", "StateDirectoryMode") == "0750"
