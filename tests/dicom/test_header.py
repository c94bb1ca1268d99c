"""Header covariates and the quantitative image features' definitions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from phase4.probes.dicom import extract_series
from phase4.probes.dicom.header import parse_iterations_subsets
from phase4.probes.dicom.quantify import exact_percentiles
from phase4.probes.dicom.synthetic import HotSphere, write_pet_series
from tests.dicom.helpers import edit, suv_start

SPHERE = HotSphere(centre_mm=(20.0, 10.0, -30.0), radius_mm=12.0, concentration_bq_ml=40000.0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("OSEM3D 4i21s", (4, 21)),
        ("PSF+TOF 3i21s", (3, 21)),
        ("OSEM 2i 16s", (2, 16)),
        ("3D-OSEM, 4 iterations 8 subsets", (4, 8)),
        ("i3s21", (3, 21)),
        ("OSEM2D 2 iter 28 subsets", (2, 28)),
        ("Q.Clear", (None, None)),
        ("VPFXS", (None, None)),
        (None, (None, None)),
    ],
)
def test_iterations_and_subsets_from_text(text: str | None, expected: tuple) -> None:
    assert parse_iterations_subsets(text) == expected


def _pet(folder: Path, **kwargs: object) -> list[Path]:
    options: dict[str, object] = {"shape": (16, 40, 40), "voxel_mm": (4.0, 5.0, 5.0)}
    options.update(kwargs)
    return write_pet_series(folder, **options)  # type: ignore[arg-type]


def test_covariates(tmp_path: Path) -> None:
    h = extract_series(_pet(tmp_path, weight_kg=83.4, height_m=1.68)).header
    assert (h.manufacturer, h.model, h.software_versions) == (
        "phase4",
        "Synthetic Scanner",
        "synthetic 1.0",
    )
    assert (h.reconstruction_method, h.iterations, h.subsets) == ("OSEM 3i21s", 3, 21)
    assert (h.post_filter, h.post_filter_fwhm_mm) == ("Gaussian 5.0 mm", 5.0)
    assert (h.rows, h.columns, h.slices) == (40, 40, 16)
    assert (h.voxel_x_mm, h.voxel_y_mm, h.voxel_z_mm, h.slice_thickness_mm) == (5, 5, 4, 4)
    assert (h.attenuation_corrected, h.scatter_corrected, h.decay_corrected) == (
        True,
        True,
        True,
    )
    assert (h.radiopharmaceutical, h.nuclide) == ("Fluorodeoxyglucose", "F-18")
    assert h.injected_activity_mbq == pytest.approx(300.0)
    assert h.activity_mbq_per_kg == pytest.approx(300.0 / 83.4)
    assert (h.weight_bin_kg, h.height_bin_cm) == (80, 160)
    assert h.frame_duration_s == 120.0
    assert (h.units, h.decay_correction) == ("BQML", "START")


def test_ge_private_iterations_and_series_description_fallback(tmp_path: Path) -> None:
    paths = _pet(tmp_path, missing=["ReconstructionMethod", "ConvolutionKernel"])

    def ge(ds: pydicom.Dataset) -> None:
        block = ds.private_block(0x0009, "GEMS_PETD_01", create=True)
        block.add_new(0xB2, "SL", 2)
        block.add_new(0xB3, "SL", 24)
        ds.SeriesDescription = "WB VPFX 2i24s"
        ds.FilterType = "All-pass"

    edit(paths, ge)
    h = extract_series(tmp_path).header
    assert (h.reconstruction_method, h.reconstruction_method_source) == (
        "WB VPFX 2i24s",
        "SeriesDescription",
    )
    assert (h.iterations, h.subsets) == (2, 24)
    assert (h.post_filter, h.post_filter_fwhm_mm) == ("All-pass", None)


def test_ge_private_fields_alone(tmp_path: Path) -> None:
    paths = _pet(tmp_path, missing=["ReconstructionMethod", "SeriesDescription"])

    def ge(ds: pydicom.Dataset) -> None:
        block = ds.private_block(0x0009, "GEMS_PETD_01", create=True)
        block.add_new(0xB2, "SL", 4)
        block.add_new(0xB3, "SL", 16)

    edit(paths, ge)
    h = extract_series(tmp_path).header
    assert (h.reconstruction_method, h.iterations, h.subsets) == (None, 4, 16)


def test_uniform_body_statistics(tmp_path: Path) -> None:
    features = extract_series(_pet(tmp_path))
    body = suv_start(5000.0)
    image = features.image
    assert image.suv_mean == pytest.approx(body, rel=1e-4)
    assert image.suv_p50 == pytest.approx(body, rel=1e-4)
    assert image.suv_p99 == pytest.approx(body, rel=1e-4)
    assert image.background_cv == pytest.approx(0.0, abs=1e-4)
    # the body: an ellipse with semi-axes 35% x 28% of a 200 mm field, on every slice
    y, x = np.mgrid[:40, :40]
    xs, ys = (x - 19.5) * 5.0, (y - 19.5) * 5.0
    per_slice = int(np.sum((xs / 70.0) ** 2 + (ys / 56.0) ** 2 <= 1.0))
    assert image.body_voxels == 16 * per_slice
    assert image.body_volume_ml == pytest.approx(16 * per_slice * 0.1)


def test_background_cv_follows_the_noise(tmp_path: Path) -> None:
    cvs = []
    for noise in (0.05, 0.10, 0.20):
        folder = tmp_path / f"n{noise}"
        _pet(folder, noise=noise, shape=(40, 64, 64), voxel_mm=(3.0, 4.0, 4.0), seed=7)
        cv = extract_series(folder).image.background_cv
        assert cv is not None
        # lowest-decile median of independent-voxel cubes: close to the voxel noise
        assert cv == pytest.approx(noise, rel=0.25)
        cvs.append(cv)
    assert cvs == sorted(cvs)


def test_hot_spheres_move_the_upper_percentiles_only(tmp_path: Path) -> None:
    plain = extract_series(_pet(tmp_path / "a")).image
    hot = extract_series(_pet(tmp_path / "b", hot_spheres=[SPHERE])).image
    assert hot.suv_max == pytest.approx(suv_start(40000.0), rel=1e-4)
    assert hot.suv_p50 == pytest.approx(plain.suv_p50, rel=1e-4)
    assert hot.suv_p99 is not None and plain.suv_p99 is not None
    assert hot.suv_p99 > plain.suv_p99
    assert hot.background_suv_mean == pytest.approx(plain.background_suv_mean, rel=1e-4)


def test_exact_percentiles_match_numpy() -> None:
    rng = np.random.default_rng(5)
    for n in (1, 2, 7, 1000, 54321):
        values = (rng.standard_normal(n) * 10).astype(np.float32)
        for qs in ((50.0, 90.0, 99.0), (99.0, 0.0, 100.0, 50.0)):
            ours = exact_percentiles(values, qs)
            assert np.allclose(ours, np.percentile(values.astype(np.float64), qs), atol=1e-5)


def test_synthetic_files_are_valid_pet_image_storage(tmp_path: Path) -> None:
    paths = _pet(tmp_path, hot_spheres=[SPHERE])
    slopes = set()
    for path in paths:
        ds = pydicom.dcmread(path)
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.128"
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        for uid in (ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID):
            assert pydicom.uid.UID(uid).is_valid
        assert ds.pixel_array.dtype == np.int16
        slopes.add(str(ds.RescaleSlope))
        assert ds.Units == "BQML" and ds.PatientName
    assert len(slopes) > 1
