"""PET cylinder daily QC on synthetic cylinders, including a 5% calibration fault."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import numpy as np
import pytest

from phase4.phantoms.cylinder import PETCylinder
from phase4.phantoms.image import PhantomInputError
from phase4.phantoms.synthetic import CylinderSpec, cylinder_volume, write_flood, write_pet_cylinder
from tests.reference.nuclides import F18_HALF_LIFE_S

NOISY = CylinderSpec(counts_per_kbq_ml=200.0, seed=3)


def test_a_calibrated_cylinder_passes(tmp_path) -> None:
    series = write_pet_cylinder(tmp_path / "cyl", NOISY)
    cyl = PETCylinder.from_dicom(tmp_path / "cyl").analyze(fill_kbq_ml=NOISY.fill_kbq_ml)
    r = cyl.results_data()
    # fill 07:30, scan 08:00: the expected value is decay-corrected with F-18's half-life
    assert r.decay_factor == pytest.approx(2 ** (-1800 / F18_HALF_LIFE_S), rel=1e-9)
    assert r.expected == pytest.approx(series.truth["concentration_kbq_ml"], rel=1e-9)
    assert abs(r.calibration_error_pct) < 0.5
    assert cyl.verdicts() == {"calibration_error_pct": "pass"}
    # Poisson noise: 5 kBq/mL × 0.83 × 200 counts → CV ≈ 1/√830 ≈ 3.5%
    assert r.cv_pct == pytest.approx(100 / np.sqrt(5 * r.decay_factor * 200), rel=0.1)
    assert r.axial_cv_pct < 1.0
    assert r.radius_mm == pytest.approx(100.0, rel=0.03)
    json.dumps(r.to_dict())
    assert "EARL accepts ±10%" in cyl.results()
    assert cyl.figure().data


@pytest.mark.parametrize(
    ("error", "verdict"),
    [(0.05, None), (-0.05, None), (0.12, "action"), (-0.15, "action"), (0.08, "tolerance")],
)
def test_calibration_faults_are_measured(error: float, verdict: str | None) -> None:
    spec = replace(NOISY, calibration_error=error)
    cyl = PETCylinder.from_array(cylinder_volume(spec), spec.voxel_mm).analyze(
        fill_kbq_ml=spec.fill_kbq_ml, fill_time=spec.fill_time, reference_time=spec.series_time
    )
    r = cyl.results_data()
    assert r.calibration_error_pct == pytest.approx(100 * error, abs=0.5)
    got = cyl.verdicts()["calibration_error_pct"]
    if verdict is None:  # a 5% error is on the tolerance line: never an action
        assert got in ("pass", "tolerance")
    else:
        assert got == verdict


def test_decay_is_corrected_whenever_the_scan_happens(tmp_path) -> None:
    for minutes in (0, 90, 240):
        spec = replace(
            CylinderSpec(),
            series_time=CylinderSpec().fill_time + timedelta(minutes=minutes),
        )
        write_pet_cylinder(tmp_path / f"c{minutes}", spec)
        r = PETCylinder.from_dicom(tmp_path / f"c{minutes}").analyze(fill_kbq_ml=5.0).results_data()
        assert r.calibration_error_pct == pytest.approx(0.0, abs=0.1)
        assert r.measured == pytest.approx(5.0 * 2 ** (-minutes * 60 / F18_HALF_LIFE_S), rel=1e-3)


def test_axial_and_transaxial_faults_are_seen() -> None:
    spec = CylinderSpec()
    volume = cylinder_volume(spec)
    good = PETCylinder.from_array(volume, spec.voxel_mm).analyze().results_data()
    assert good.axial_max_deviation_pct < 0.5
    assert good.transaxial_nonuniformity_pct < 0.5
    assert good.calibration_error_pct is None  # no fill given
    axial = volume.copy()
    axial[20] *= 0.9  # one slice 10% low (a detector block or normalisation fault)
    bad = PETCylinder.from_array(axial, spec.voxel_mm).analyze().results_data()
    assert bad.axial_max_deviation_pct == pytest.approx(10.0, abs=1.0)
    transaxial = volume.copy()
    transaxial[:, 28:36, 40:48] *= 0.85  # a cold region off-centre
    bad = PETCylinder.from_array(transaxial, spec.voxel_mm).analyze().results_data()
    assert bad.transaxial_nonuniformity_pct > 5.0


def test_suv_images_are_judged_against_suv_one() -> None:
    spec = CylinderSpec()
    volume = cylinder_volume(spec)
    suv = volume / volume[20, 32, 32] * 1.04
    r = PETCylinder.from_array(suv, spec.voxel_mm, units="GML").analyze().results_data()
    assert r.quantity == "SUV"
    assert r.calibration_error_pct == pytest.approx(4.0, abs=0.2)


def test_wrong_input_is_named(tmp_path) -> None:
    write_flood(tmp_path / "flood.dcm")
    with pytest.raises(PhantomInputError, match="Modality is NM, but a PET cylinder needs PT"):
        PETCylinder.from_dicom(tmp_path / "flood.dcm")
    with pytest.raises(PhantomInputError, match="Units CNTS"):
        PETCylinder.from_array(np.ones((5, 5, 5)), (1.0, 1.0, 1.0), units="CNTS")
    with pytest.raises(PhantomInputError, match="spacing_mm"):
        PETCylinder.from_array(np.ones((5, 5, 5)), (1.0, 0.0, 1.0))
    with pytest.raises(PhantomInputError, match="empty"):
        PETCylinder.from_array(np.zeros((5, 5, 5)), (1.0, 1.0, 1.0)).analyze()
