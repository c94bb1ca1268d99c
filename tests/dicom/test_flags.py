"""Each artifact/integrity flag fires on a series built to have that fault, and every flag
stays silent on a clean series."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from phase4.probes.dicom import SeriesFeatures, extract_series, extract_study
from phase4.probes.dicom.synthetic import write_ct_series, write_pet_series
from tests.dicom.helpers import SERIES, SPHERE, edit, set_pixels

SHAPE = (32, 48, 48)
VOXEL_MM = (4.0, 5.0, 5.0)
ALL_FLAGS = {
    "missing_or_duplicated_slices",
    "inconsistent_spacing",
    "truncation",
    "saturated_or_negative_voxels",
    "missing_attenuation_correction",
    "missing_decay_correction",
    "implausible_uptake_time",
    "implausible_activity",
    "implausible_weight",
    "inconsistent_units",
    "pet_ct_frame_of_reference_mismatch",
    "motion_proxy",
    "half_life_mismatch",
    "empty_image",
    "activity_exceeds_injected",
}


def _write(folder: Path, **kwargs: object) -> list[Path]:
    options: dict[str, object] = {
        "shape": SHAPE,
        "voxel_mm": VOXEL_MM,
        "noise": 0.05,
        "hot_spheres": [SPHERE],
    }
    options.update(kwargs)
    return write_pet_series(folder, **options)  # type: ignore[arg-type]


def _raised(features: SeriesFeatures) -> set[str]:
    return set(features.raised_flags)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> SeriesFeatures:
    return extract_series(_write(tmp_path_factory.mktemp("clean")))


def test_clean_series_raises_no_flag(clean: SeriesFeatures) -> None:
    assert set(clean.flags) == ALL_FLAGS
    assert _raised(clean) == set()
    assert clean.artifact_flag is False
    record = clean.to_record()
    assert record["features"]["artifact_flag"] is False
    assert all(record["features"][f"flag_{name}"] is False for name in ALL_FLAGS)


def _only(features: SeriesFeatures, name: str) -> None:
    assert name in _raised(features), features.flags[name]
    assert features.artifact_flag is True
    assert features.to_record()["features"][f"flag_{name}"] is True


def test_missing_slice(tmp_path: Path) -> None:
    paths = _write(tmp_path)
    paths[10].unlink()
    features = extract_series(tmp_path)
    _only(features, "missing_or_duplicated_slices")
    assert features.flags["missing_or_duplicated_slices"].evidence["missing_slices"] == 1
    assert "inconsistent_spacing" not in _raised(features)  # a whole missing step is not


def test_missing_last_slice_seen_through_number_of_slices(tmp_path: Path) -> None:
    paths = _write(tmp_path)
    paths[-1].unlink()
    _only(extract_series(tmp_path), "missing_or_duplicated_slices")


def test_duplicated_slice_position(tmp_path: Path) -> None:
    paths = _write(tmp_path)
    copy = tmp_path / "copy.dcm"
    shutil.copy(paths[5], copy)
    edit([copy], lambda ds: setattr(ds, "SOPInstanceUID", pydicom.uid.generate_uid()))
    features = extract_series(tmp_path)
    _only(features, "missing_or_duplicated_slices")
    assert features.flags["missing_or_duplicated_slices"].evidence["duplicate_positions"] == 1
    assert features.header.slices == SHAPE[0]


def test_same_file_given_twice(tmp_path: Path) -> None:
    paths = _write(tmp_path)
    features = extract_series([*paths, paths[3]])
    assert features.flags["missing_or_duplicated_slices"].evidence["duplicate_instances"] == 1
    _only(features, "missing_or_duplicated_slices")


def test_inconsistent_spacing(tmp_path: Path) -> None:
    paths = _write(tmp_path)

    def shift(ds: pydicom.Dataset) -> None:
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y, z + 1.5]  # 1.5 mm off a 4 mm grid

    edit([paths[12]], shift)
    _only(extract_series(tmp_path), "inconsistent_spacing")


def test_truncation(tmp_path: Path) -> None:
    fov_mm = SHAPE[2] * VOXEL_MM[2]
    _write(tmp_path, body_semi_axes_mm=(0.6 * fov_mm, 0.3 * fov_mm))
    features = extract_series(tmp_path)
    _only(features, "truncation")
    assert features.flags["truncation"].evidence["slices_affected"] == SHAPE[0]


def test_saturated_voxels(tmp_path: Path) -> None:
    paths = _write(tmp_path)

    def clip(array: np.ndarray) -> None:
        array[20:24, 20:24] = 32767  # a 16-voxel plateau at the int16 maximum

    set_pixels(paths[4], clip)
    features = extract_series(tmp_path)
    _only(features, "saturated_or_negative_voxels")
    assert features.flags["saturated_or_negative_voxels"].evidence["saturated_voxels"] >= 16


def test_negative_voxels(tmp_path: Path) -> None:
    paths = _write(tmp_path)
    edit(paths, lambda ds: setattr(ds, "RescaleIntercept", "-1000"))  # 20% of the body level
    _only(extract_series(tmp_path), "saturated_or_negative_voxels")


def test_missing_attenuation_correction(tmp_path: Path) -> None:
    _write(tmp_path, extra={"CorrectedImage": ["DECY", "SCAT", "RAN"]})
    features = extract_series(tmp_path)
    _only(features, "missing_attenuation_correction")
    assert features.header.attenuation_corrected is False


@pytest.mark.parametrize(
    "options",
    [{"extra": {"CorrectedImage": ["ATTN", "SCAT"]}}, {"decay_correction": "NONE"}],
)
def test_missing_decay_correction(tmp_path: Path, options: dict[str, object]) -> None:
    _write(tmp_path, **options)
    _only(extract_series(tmp_path), "missing_decay_correction")


@pytest.mark.parametrize("hour, minute", [(9, 10), (13, 30)])  # 10 min and 4.5 h after 09:00
def test_implausible_uptake_time(tmp_path: Path, hour: int, minute: int) -> None:
    _write(tmp_path, series_time=SERIES.replace(hour=hour, minute=minute))
    _only(extract_series(tmp_path), "implausible_uptake_time")


@pytest.mark.parametrize("activity_bq", [20e6, 3000e6])  # 0.27 and 40 MBq/kg
def test_implausible_activity(tmp_path: Path, activity_bq: float) -> None:
    _write(tmp_path, activity_bq=activity_bq)
    _only(extract_series(tmp_path), "implausible_activity")


@pytest.mark.parametrize("weight_kg", [0.0, 12.0, 300.0, 450.0])
def test_implausible_weight(tmp_path: Path, weight_kg: float) -> None:
    _write(tmp_path, weight_kg=weight_kg, activity_bq=4e6 * max(weight_kg, 20.0))
    features = extract_series(tmp_path)
    _only(features, "implausible_weight")
    refused = weight_kg <= 0 or weight_kg > 400
    assert (features.suv_unavailable_reason is not None) is refused


def test_units_that_differ_between_slices(tmp_path: Path) -> None:
    paths = _write(tmp_path)
    edit([paths[7]], lambda ds: setattr(ds, "Units", "GML"))
    features = extract_series(tmp_path)
    _only(features, "inconsistent_units")
    assert features.suv_unavailable_reason is not None
    assert "Units" in features.suv_unavailable_reason


def test_bqml_with_tiny_values(tmp_path: Path) -> None:
    # kBq/mL written under Units BQML: 5 "Bq/mL" in the body
    _write(tmp_path, background_bq_ml=5.0, hot_spheres=[], activity_bq=300e6)
    _only(extract_series(tmp_path), "inconsistent_units")


def test_pet_ct_frame_of_reference(tmp_path: Path) -> None:
    pet = _write(tmp_path / "pt")
    ds = pydicom.dcmread(pet[0], stop_before_pixels=True)
    study, frame = ds.StudyInstanceUID, ds.FrameOfReferenceUID
    write_ct_series(tmp_path / "ct_other", study_uid=study)  # its own frame of reference
    mismatch = extract_study([tmp_path / "pt", tmp_path / "ct_other"])
    assert mismatch.ct_series == 1 and len(mismatch.series) == 1
    _only(mismatch.series[0], "pet_ct_frame_of_reference_mismatch")

    write_ct_series(tmp_path / "ct_same", study_uid=study, frame_of_reference_uid=frame)
    both = extract_study([tmp_path / "pt", tmp_path / "ct_other", tmp_path / "ct_same"])
    assert "pet_ct_frame_of_reference_mismatch" not in _raised(both.series[0])

    write_ct_series(tmp_path / "ct_elsewhere")  # another study: not this PET's companion
    alone = extract_study([tmp_path / "pt", tmp_path / "ct_elsewhere"])
    flag = alone.series[0].flags["pet_ct_frame_of_reference_mismatch"]
    assert not flag.raised and flag.evidence["ct_series"] == 0

    # extract_series uses a CT found alongside the PET in the same folder, too
    assert "pet_ct_frame_of_reference_mismatch" in _raised(
        extract_series([tmp_path / "pt", tmp_path / "ct_other"])
    )


def test_motion_step(tmp_path: Path) -> None:
    _write(tmp_path, motion_step_mm=30.0)
    features = extract_series(tmp_path)
    _only(features, "motion_proxy")
    assert features.flags["motion_proxy"].evidence["max_step_mm"] == pytest.approx(30, abs=5)


def test_motion_at_bed_boundaries(tmp_path: Path) -> None:
    _write(tmp_path, motion_step_mm=30.0, slices_per_bed=16)  # the step is at the boundary
    features = extract_series(tmp_path)
    _only(features, "motion_proxy")
    assert features.flags["motion_proxy"].evidence["at_bed_boundaries"] is True


def test_small_step_is_not_motion(tmp_path: Path) -> None:
    _write(tmp_path, motion_step_mm=5.0)
    assert "motion_proxy" not in _raised(extract_series(tmp_path))


def test_half_life_mismatch(tmp_path: Path) -> None:
    _write(tmp_path, half_life_s=6800.0)  # 3% off F-18
    _only(extract_series(tmp_path), "half_life_mismatch")


def test_empty_image(tmp_path: Path) -> None:
    _write(tmp_path, background_bq_ml=0.0, hot_spheres=[], noise=0.0)
    features = extract_series(tmp_path)
    _only(features, "empty_image")
    assert features.image.suv_mean is None


def test_activity_exceeding_the_injection(tmp_path: Path) -> None:
    # 1 MBq declared for a body holding several: a dose entered in the wrong unit
    _write(tmp_path, activity_bq=1e6, background_bq_ml=50000.0)
    features = extract_series(tmp_path)
    _only(features, "activity_exceeds_injected")
    assert features.image.total_activity_ratio is not None
    assert features.image.total_activity_ratio > 1.2
