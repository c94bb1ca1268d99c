"""The product's half-life table is the published one (tests/reference/nuclides.py)."""

from __future__ import annotations

from phase4.probes.dicom.nuclides import NUCLIDES
from tests.reference.nuclides import HALF_LIFE_S


def test_half_lives_are_the_evaluated_values() -> None:
    assert {name: n.half_life_s for name, n in NUCLIDES.items()} == HALF_LIFE_S
