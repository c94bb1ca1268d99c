"""Multi-frame NM: reconstructed SPECT (RECON TOMO) and planar frames from several heads."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from phase4.probes.dicom import extract_series
from phase4.probes.dicom.synthetic import write_nm_image
from tests.reference.nuclides import HALF_LIFE_S


def test_spect_tomo_in_counts(tmp_path: Path) -> None:
    path = write_nm_image(tmp_path / "spect.dcm", kind="RECON TOMO", shape=(32, 64, 64))
    features = extract_series(path)
    h = features.header
    assert (h.modality, h.slices, h.rows, h.columns) == ("NM", 32, 64, 64)
    assert h.voxel_z_mm == pytest.approx(4.8) and h.voxel_x_mm == pytest.approx(4.8)
    assert h.nuclide == "Tc-99m" and h.half_life_s == pytest.approx(HALF_LIFE_S["Tc-99m"])
    assert h.injected_activity_mbq == pytest.approx(740.0)  # NM Isotope Module: MBq
    assert h.uptake_time_s == 3 * 3600.0
    assert features.suv_unavailable_reason == (
        "Units: missing (NM images are counts), so SUV cannot be computed"
    )
    assert features.image.suv_max is None
    # Poisson counts around 200 per voxel: CV about 1/sqrt(200) = 0.071
    assert features.image.background_cv == pytest.approx(200**-0.5, rel=0.2)
    assert not features.flags["missing_attenuation_correction"].raised  # PET only
    assert features.flags["missing_attenuation_correction"].evidence["applicable"] is False
    assert features.artifact_flag is False
    record = features.to_record()
    assert record["features"]["suv_available"] is False


def test_planar_frames_from_two_heads(tmp_path: Path) -> None:
    path = write_nm_image(tmp_path / "static.dcm", kind="STATIC", detectors=2)
    features = extract_series(path)
    h = features.header
    assert (h.slices, h.detectors, h.voxel_z_mm) == (2, 2, None)
    assert h.image_type is not None and "STATIC" in h.image_type
    assert features.flags["motion_proxy"].evidence["applicable"] is False
    assert not features.flags["missing_or_duplicated_slices"].raised
    assert features.image.background_cv is not None


def test_nm_with_quantitative_units_gets_suv(tmp_path: Path) -> None:
    path = write_nm_image(tmp_path / "quant.dcm", counts=1000.0, seed=3)
    ds = pydicom.dcmread(path)
    ds.Units = "BQML"  # as quantitative SPECT reconstructions write it
    ds.DecayCorrection = "ADMIN"
    ds.save_as(path, enforce_file_format=True)
    features = extract_series(path)
    assert features.suv_unavailable_reason is None
    expected = 1000.0 * 80_000.0 / 740e6  # Bq/mL x g / Bq, dose in MBq in the NM module
    assert features.image.background_suv_mean == pytest.approx(expected, rel=0.02)
