"""SUVbw against hand calculation, for every Units/DecayCorrection route, and the refusals."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pydicom
import pytest

from phase4.probes.dicom import DicomFeatureError, extract_series
from phase4.probes.dicom.isotope import read_dose_info
from phase4.probes.dicom.read import read_series
from phase4.probes.dicom.suv import SuvScale, suv_scale
from phase4.probes.dicom.suv_image import read_suv_image
from phase4.probes.dicom.synthetic import write_pet_series
from phase4.probes.dicom.volume import Volume, build_volume
from tests.dicom.helpers import (
    ACTIVITY_BQ,
    BACKGROUND_BQ_ML,
    F18_HALF_LIFE_S,
    INJECTION,
    SERIES,
    SPHERE,
    WEIGHT_KG,
    edit,
    suv_start,
)

REL = 1e-4  # int16 storage with per-slice slopes: ~1/30000 of the slice maximum


def _series(tmp_path: Path, **kwargs: object) -> Path:
    folder = tmp_path / "pet"
    options: dict[str, object] = {
        "activity_bq": ACTIVITY_BQ,
        "weight_kg": WEIGHT_KG,
        "injection_time": INJECTION,
        "series_time": SERIES,
        "shape": (24, 48, 48),
        "voxel_mm": (4.0, 5.0, 5.0),
        "background_bq_ml": BACKGROUND_BQ_ML,
        "hot_spheres": [SPHERE],
    }
    options.update(kwargs)
    write_pet_series(folder, **options)  # type: ignore[arg-type]
    return folder


def _scale(folder: Path) -> tuple[Volume, SuvScale]:
    series = read_series(folder).series[0]
    volume = build_volume(series)
    return volume, suv_scale(volume, read_dose_info(volume.modality, volume.datasets))


def test_bqml_start_matches_hand_calculation(tmp_path: Path) -> None:
    folder = _series(tmp_path)
    features = extract_series(folder)
    # 2^(-Δt/T½) by hand: Δt = 10:00 - 09:00 = 3600 s, T½(F-18) = 6586.2 s.
    decay = 2.0 ** (-3600.0 / F18_HALF_LIFE_S)
    expected = BACKGROUND_BQ_ML * 75_000.0 / (300e6 * decay)
    assert expected == pytest.approx(1.8258, rel=1e-4)
    assert features.suv_unavailable_reason is None
    assert features.suv_method == "BQML"
    assert features.image.background_suv_mean == pytest.approx(expected, rel=REL)
    assert features.image.suv_p50 == pytest.approx(expected, rel=REL)
    assert features.image.suv_max == pytest.approx(suv_start(40000.0), rel=REL)
    assert features.header.uptake_time_s == 3600.0


def test_per_slice_rescale_slopes_are_applied(tmp_path: Path) -> None:
    folder = _series(tmp_path)
    volume, scale = _scale(folder)
    assert len(set(volume.rescale_slopes.round(12))) > 1  # sphere slices are scaled higher
    body = volume.values[volume.values > 0.5 * BACKGROUND_BQ_ML]
    assert np.median(body) == pytest.approx(BACKGROUND_BQ_ML, rel=REL)
    assert float(volume.values.max()) == pytest.approx(SPHERE.concentration_bq_ml, rel=REL)
    assert np.allclose(scale.bq_ml_per_unit, 1.0)


def test_bqml_admin_needs_no_decay(tmp_path: Path) -> None:
    features = extract_series(_series(tmp_path, decay_correction="ADMIN"))
    expected = BACKGROUND_BQ_ML * WEIGHT_KG * 1000.0 / ACTIVITY_BQ  # 1.25
    assert features.image.background_suv_mean == pytest.approx(expected, rel=REL)
    assert expected == pytest.approx(1.25)


def test_bqml_none_decays_each_bed_to_its_frame_reference_time(tmp_path: Path) -> None:
    folder = _series(tmp_path, decay_correction="NONE", slices_per_bed=8, hot_spheres=[])
    volume, scale = _scale(folder)
    lam = math.log(2) / F18_HALF_LIFE_S
    x = lam * 120.0
    mid_frame_s = math.log(x / -math.expm1(-x)) / lam  # decay-weighted middle of 120 s
    assert mid_frame_s == pytest.approx(59.937, abs=0.001)  # T/2 - λT²/24
    # The volume is ordered by position (ascending z); the writer's slice i sits at z = -4i mm.
    written_index = np.rint(-volume.positions_mm / 4.0).astype(int)
    for j, i in enumerate(written_index):
        bed = i // 8  # beds start 0, 120 and 240 s after the series start
        t = 3600.0 + bed * 120.0 + mid_frame_s
        expected = WEIGHT_KG * 1000.0 / (ACTIVITY_BQ * 2.0 ** (-t / F18_HALF_LIFE_S))
        assert scale.suv_per_unit[j] == pytest.approx(expected, rel=1e-6)
    assert len(set(scale.suv_per_unit.round(12))) == 3


def test_none_without_frame_reference_time_uses_acquisition_time(tmp_path: Path) -> None:
    with_frt = _scale(_series(tmp_path / "a", decay_correction="NONE", slices_per_bed=8))[1]
    without = _scale(
        _series(
            tmp_path / "b",
            decay_correction="NONE",
            slices_per_bed=8,
            missing=["FrameReferenceTime"],
        )
    )[1]
    assert np.allclose(with_frt.suv_per_unit, without.suv_per_unit, rtol=1e-6)


def test_none_without_any_frame_timing_is_refused(tmp_path: Path) -> None:
    folder = _series(
        tmp_path,
        decay_correction="NONE",
        missing=["FrameReferenceTime", "ActualFrameDuration"],
    )
    features = extract_series(folder)
    assert features.suv_unavailable_reason is not None
    assert "FrameReferenceTime" in features.suv_unavailable_reason
    assert features.image.suv_max is None


def test_gml_is_already_suv(tmp_path: Path) -> None:
    features = extract_series(_series(tmp_path, units="GML"))
    assert features.suv_method == "GML"
    assert features.image.background_suv_mean == pytest.approx(suv_start(5000.0), rel=REL)
    # Bq/mL recovered from SUV with the header's dose and weight: total activity is known.
    assert features.image.total_activity_mbq is not None


def test_philips_counts_with_suv_factor(tmp_path: Path) -> None:
    factor = 2.5e-4  # SUV per count, as the vendor writes it in (7053,1000)
    features = extract_series(_series(tmp_path, units="CNTS", philips_suv_factor=factor))
    # counts = Bq/mL numerically in the synthetic series, so SUV = 5000 x 2.5e-4 = 1.25
    assert features.suv_method == "CNTS x Philips SUV factor (7053,1000)"
    assert features.image.background_suv_mean == pytest.approx(5000.0 * factor, rel=REL)
    assert features.image.suv_max == pytest.approx(40000.0 * factor, rel=REL)


def test_philips_counts_with_activity_concentration_factor(tmp_path: Path) -> None:
    features = extract_series(_series(tmp_path, units="CNTS", philips_activity_factor=2.0))
    assert features.suv_method == "CNTS x Philips activity concentration factor (7053,1009)"
    assert features.image.background_suv_mean == pytest.approx(suv_start(5000.0), rel=REL)


def test_counts_without_vendor_factor_are_refused(tmp_path: Path) -> None:
    folder = _series(tmp_path, units="CNTS")
    with pytest.raises(DicomFeatureError) as caught:
        _scale(folder)
    assert caught.value.attribute == "Units"
    assert "vendor calibration factor" in str(caught.value)
    features = extract_series(folder)
    assert features.suv_unavailable_reason is not None
    assert features.image.suv_mean is None and features.image.background_cv is not None


@pytest.mark.parametrize(
    ("missing", "attribute"),
    [
        (["PatientWeight"], "PatientWeight"),
        (["RadionuclideTotalDose"], "RadionuclideTotalDose"),
        (["RadionuclideHalfLife"], "RadionuclideHalfLife"),
        (
            ["RadiopharmaceuticalStartDateTime", "RadiopharmaceuticalStartTime"],
            "RadiopharmaceuticalStartTime",
        ),
        (["SeriesTime", "AcquisitionTime"], "SeriesTime"),
        (["RadiopharmaceuticalInformationSequence"], "RadionuclideTotalDose"),
        (["DecayCorrection"], "DecayCorrection"),
        (["Units"], "Units"),
    ],
)
def test_missing_inputs_are_refused_naming_the_attribute(
    tmp_path: Path, missing: list[str], attribute: str
) -> None:
    folder = _series(tmp_path, missing=missing)
    with pytest.raises(DicomFeatureError) as caught:
        _scale(folder)
    assert caught.value.attribute == attribute
    assert "SUV cannot be computed" in str(caught.value)
    features = extract_series(folder)  # the series still yields features, without SUV
    reason = features.suv_unavailable_reason
    assert reason is not None and reason.startswith(attribute)
    assert features.image.suv_max is None and features.image.suv_mean is None
    assert features.to_record()["features"]["suv_available"] is False


def test_refusal_message_reads_file_attribute_reason(tmp_path: Path) -> None:
    features = extract_series(_series(tmp_path, missing=["RadionuclideTotalDose"]))
    assert features.suv_unavailable_reason == (
        "RadionuclideTotalDose: missing, so SUV cannot be computed"
    )


@pytest.mark.parametrize(
    ("options", "attribute", "words"),
    [
        ({"weight_kg": 0.0}, "PatientWeight", "0 kg is implausible"),
        ({"weight_kg": 500.0}, "PatientWeight", "500 kg is implausible"),
        ({"activity_bq": 0.0}, "RadionuclideTotalDose", "implausible"),
        (
            {"injection_time": SERIES.replace(hour=10, minute=30)},
            "RadiopharmaceuticalStartDateTime",
            "after the series start",
        ),
    ],
)
def test_implausible_inputs_are_refused(
    tmp_path: Path, options: dict[str, object], attribute: str, words: str
) -> None:
    with pytest.raises(DicomFeatureError) as caught:
        _scale(_series(tmp_path, **options))
    assert caught.value.attribute == attribute
    assert words in caught.value.reason


def test_uptake_time_from_start_time_on_the_series_date(tmp_path: Path) -> None:
    folder = _series(tmp_path, missing=["RadiopharmaceuticalStartDateTime"])
    features = extract_series(folder)
    assert features.header.uptake_time_s == 3600.0
    assert features.image.background_suv_mean == pytest.approx(suv_start(5000.0), rel=REL)


def test_series_time_after_acquisition_falls_back_to_acquisition_time(tmp_path: Path) -> None:
    # A series re-created after the scan (post-processing) carries a later SeriesTime.
    folder = _series(tmp_path)
    edit(folder.glob("*.dcm"), lambda ds: setattr(ds, "SeriesTime", "113000"))
    features = extract_series(folder)
    assert features.header.uptake_time_s == 3600.0
    assert features.header.series_start_source is not None
    assert features.header.series_start_source.startswith("AcquisitionTime")


@pytest.mark.filterwarnings("ignore:Invalid value for VR TM")
def test_colon_separated_times_are_read(tmp_path: Path) -> None:
    folder = _series(tmp_path, missing=["RadiopharmaceuticalStartDateTime"])

    def old_style(ds: pydicom.Dataset) -> None:
        ds.SeriesTime = "10:00:00"
        ds.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartTime = "09:00:00.5"

    edit(folder.glob("*.dcm"), old_style)
    features = extract_series(folder)
    assert features.header.uptake_time_s == pytest.approx(3599.5)


def test_half_life_from_header_is_used_and_cross_checked(tmp_path: Path) -> None:
    features = extract_series(_series(tmp_path, half_life_s=6000.0))
    decay = 2.0 ** (-3600.0 / 6000.0)  # the scanner decay-corrected with its own half-life
    expected = 5000.0 * 75_000.0 / (300e6 * decay)
    assert features.image.background_suv_mean == pytest.approx(expected, rel=REL)
    assert features.flags["half_life_mismatch"].raised
    assert not extract_series(_series(tmp_path / "ok")).flags["half_life_mismatch"].raised


def test_total_activity_and_its_ratio(tmp_path: Path) -> None:
    folder = _series(tmp_path, hot_spheres=[])
    features = extract_series(folder)
    volume, _ = _scale(folder)
    voxel_ml = 4.0 * 5.0 * 5.0 / 1000.0
    body_voxels = int(np.count_nonzero(volume.values > 0))
    total_bq = body_voxels * BACKGROUND_BQ_ML * voxel_ml * 1000.0 / 1000.0
    assert features.image.total_activity_mbq == pytest.approx(total_bq / 1e6, rel=REL)
    decayed_bq = ACTIVITY_BQ * 2.0 ** (-3600.0 / F18_HALF_LIFE_S)
    assert features.image.total_activity_ratio == pytest.approx(total_bq / decayed_bq, rel=REL)


def test_suv_image_for_region_measurements(tmp_path: Path) -> None:
    folder = _series(tmp_path)
    image = read_suv_image(folder)
    assert image.suv.shape == (24, 48, 48)
    assert float(image.suv.max()) == pytest.approx(suv_start(40000.0), rel=REL)
    first = folder / "slice_0000.dcm"
    uid = pydicom.dcmread(first, stop_before_pixels=True).SOPInstanceUID
    plane = image.slice_of(uid)
    assert plane is not None
    assert float(plane.max()) == pytest.approx(suv_start(5000.0), rel=REL)
    assert image.slice_of("1.2.3") is None
    with pytest.raises(DicomFeatureError) as caught:
        read_suv_image(_series(tmp_path / "no_weight", missing=["PatientWeight"]))
    assert caught.value.attribute == "PatientWeight"
    assert str(caught.value).startswith("slice_0000.dcm: PatientWeight: missing")
