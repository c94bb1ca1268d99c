"""The phantom fuzz harness: every crash it found stays fixed, and a short bounded run finds
nothing new (the long runs are documented in docs/PHANTOMS.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from phase4.phantoms.cylinder import PETCylinder
from phase4.phantoms.flood import FloodUniformity
from phase4.phantoms.image import PhantomInputError
from tests.fuzz import fuzz_phantoms

HERE = Path(__file__).parent
CRASHES = sorted((HERE / "crashes").iterdir())


@pytest.mark.parametrize("crash", CRASHES, ids=[c.name for c in CRASHES])
def test_inputs_that_crashed_now_give_a_result_or_the_documented_error(crash: Path) -> None:
    fuzz_phantoms.test_one_input(crash.read_bytes())


def test_a_cylinder_with_an_empty_slice_inside_is_named() -> None:
    # What the fuzzer found, written out: a slice with no activity between the cylinder's first
    # and last slices made the slice's centre NaN and the analysis raise a bare ValueError.
    volume = np.zeros((6, 24, 24))
    volume[:, 6:18, 6:18] = 5000.0
    volume[3] = 0.0
    with pytest.raises(PhantomInputError, match="slice 3 holds no activity"):
        PETCylinder.from_array(volume, (4.0, 4.0, 4.0)).analyze(axial_margin_mm=0.0)


def test_a_short_fuzz_run_finds_no_crash(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(HERE / "fuzz_phantoms.py"),
            "-seed=1",
            "-runs=400",
            "-max_total_time=60",
            "-rss_limit_mb=3000",
            f"-artifact_prefix={tmp_path}/",
            str(tmp_path / "corpus"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Done" in done.stderr and not list(tmp_path.glob("crash-*"))


@pytest.mark.parametrize("ufov_mm", [(0.0, 200.0), (300.0, -1.0), (float("nan"), 100.0)])
def test_a_flood_ufov_of_no_size_is_named(ufov_mm: tuple[float, float]) -> None:
    # What the fuzzer found, written out: a zero-width UFOV made a flat rectangle that the
    # convex hull (qhull) refused with its own error.
    flood = FloodUniformity.from_array(np.full((64, 64), 2500.0), 3.2)
    with pytest.raises(PhantomInputError, match="ufov_mm"):
        flood.analyze(ufov_mm=ufov_mm)
