"""Reading, grouping and ordering slices; the error contract (DicomFeatureError only)."""

from __future__ import annotations

import pickle
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest

from phase4.probes.dicom import DicomFeatureError, describe, extract_series, extract_study
from phase4.probes.dicom.errors import DicomFeatureError as Error
from phase4.probes.dicom.read import read_series
from phase4.probes.dicom.synthetic import write_ct_series, write_pet_series
from phase4.probes.dicom.volume import build_volume
from tests.dicom.helpers import SPHERE, edit


def _pet(folder: Path, **kwargs: object) -> list[Path]:
    options: dict[str, object] = {"shape": (16, 32, 32), "hot_spheres": [SPHERE]}
    options.update(kwargs)
    return write_pet_series(folder, **options)  # type: ignore[arg-type]


def test_error_message_format_and_fields() -> None:
    error = Error("missing, so SUV cannot be computed", path="/a/b/file.dcm", attribute="X")
    assert str(error) == "file.dcm: X: missing, so SUV cannot be computed"
    assert (error.path, error.attribute) == ("/a/b/file.dcm", "X")
    assert isinstance(error, ValueError)
    named = Error("not a PET or NM image: Modality CT", path="ct.dcm", attribute="Modality")
    assert str(named) == "ct.dcm: not a PET or NM image: Modality CT"
    assert str(pickle.loads(pickle.dumps(error))) == str(error)


def test_slices_are_ordered_by_position_not_by_name_or_instance_number(tmp_path: Path) -> None:
    paths = _pet(tmp_path)
    reference = build_volume(read_series(tmp_path).series[0])
    numbers = list(range(1, len(paths) + 1))
    random.Random(1).shuffle(numbers)
    for path, number in zip(paths, numbers, strict=True):
        edit([path], lambda ds, n=number: setattr(ds, "InstanceNumber", n))
        path.rename(path.with_name(f"x{number:03d}.dcm"))
    volume = build_volume(read_series(tmp_path).series[0])
    assert np.all(np.diff(volume.positions_mm) > 0)
    assert np.array_equal(volume.values, reference.values)


def test_oblique_orientation_orders_along_the_normal(tmp_path: Path) -> None:
    paths = _pet(tmp_path)
    c, s = np.cos(np.radians(20)), np.sin(np.radians(20))
    row, col = np.array([1.0, 0, 0]), np.array([0, c, s])
    normal = np.cross(row, col)

    def tilt(ds: pydicom.Dataset) -> None:
        index = int(ds.InstanceNumber) - 1
        ds.ImageOrientationPatient = [*row, *col]
        ds.ImagePositionPatient = list(-index * 4.0 * normal)

    edit(paths, tilt)
    volume = build_volume(read_series(tmp_path).series[0])
    assert volume.slice_spacing_mm == pytest.approx(4.0)
    assert volume.spacing.regular


def test_series_are_grouped_by_uid(tmp_path: Path) -> None:
    _pet(tmp_path / "a")
    _pet(tmp_path / "b")
    result = read_series(tmp_path)
    assert sorted(len(s.files) for s in result.series) == [16, 16]
    with pytest.raises(DicomFeatureError, match="2 PET/NM series found"):
        extract_series(tmp_path)
    assert len(extract_study(tmp_path).series) == 2


def test_non_dicom_files_give_per_file_errors(tmp_path: Path) -> None:
    _pet(tmp_path)
    (tmp_path / "notes.txt").write_text("not dicom")
    (tmp_path / "empty.dcm").write_bytes(b"")
    (tmp_path / "DICM-but-truncated.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00")
    study = extract_study(tmp_path)
    assert len(study.series) == 1
    messages = sorted(str(e) for e in study.errors)
    assert len(messages) == 3
    assert any(m.startswith("notes.txt: not a DICOM file") for m in messages)
    assert all(isinstance(e, DicomFeatureError) and e.path for e in study.errors)
    assert extract_series(tmp_path).header.slices == 16  # the usable series still comes out


def test_single_ct_file_is_not_pet(tmp_path: Path) -> None:
    paths = write_ct_series(tmp_path, shape=(2, 16, 16))
    with pytest.raises(DicomFeatureError) as caught:
        extract_series(paths[0])
    assert caught.value.attribute == "Modality"
    assert str(caught.value) == "ct_0000.dcm: not a PET or NM image: Modality CT"


def test_folder_without_pet_summarises_the_errors(tmp_path: Path) -> None:
    write_ct_series(tmp_path, shape=(2, 16, 16))
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(DicomFeatureError) as caught:
        extract_series(tmp_path)
    assert "no PET or NM series among 3 files" in str(caught.value)
    assert "Modality CT" in str(caught.value)


def test_missing_path_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(DicomFeatureError, match="no such file or folder"):
        extract_series(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DicomFeatureError, match="no files found"):
        extract_series(tmp_path / "empty")


@pytest.mark.parametrize(
    ("change", "attribute"),
    [
        (lambda ds: delattr(ds, "ImagePositionPatient"), "ImagePositionPatient"),
        (lambda ds: setattr(ds, "Rows", 31), "PixelData"),
        (lambda ds: setattr(ds, "NumberOfTimeSlices", 4), "NumberOfTimeSlices"),
        (lambda ds: setattr(ds, "SOPClassUID", "1.2.840.10008.5.1.4.1.1.7"), "SOPClassUID"),
        (lambda ds: setattr(ds, "RescaleSlope", "0"), "RescaleSlope"),
    ],
)
def test_unusable_series_are_refused_naming_the_attribute(
    tmp_path: Path, change: Callable[[pydicom.Dataset], None], attribute: str
) -> None:
    paths = _pet(tmp_path)
    edit(paths, change)
    with pytest.raises(DicomFeatureError) as caught:
        extract_series(tmp_path)
    assert caught.value.attribute in (attribute, "Rows")
    assert caught.value.path is not None
    study = extract_study(tmp_path)  # never raises: the error is reported instead
    assert len(study.errors) == 1
    if caught.value.attribute != "PixelData":
        assert study.series == ()
        return
    # Pixels that cannot be decoded still leave the header covariates, marked as such.
    (header_only,) = study.series
    features = header_only.to_record()["features"]
    assert features["pixels_decoded"] is False and features["suv_max"] is None
    assert features["manufacturer"] is not None and features["rows"] == 31


def test_orientation_that_differs_between_slices(tmp_path: Path) -> None:
    paths = _pet(tmp_path)
    edit([paths[3]], lambda ds: setattr(ds, "ImageOrientationPatient", [1, 0, 0, 0, 0, -1]))
    with pytest.raises(DicomFeatureError) as caught:
        extract_series(tmp_path)
    assert caught.value.attribute == "ImageOrientationPatient"
    assert caught.value.path is not None and caught.value.path.endswith("slice_0003.dcm")


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")
def test_malformed_values_are_named(tmp_path: Path) -> None:
    paths = _pet(tmp_path, weight_kg=75.0)
    pattern = b"\x10\x00\x30\x10DS\x02\x0075"  # (0010,1030) PatientWeight, DS, "75"
    for path in paths:
        data = path.read_bytes()
        assert pattern in data
        path.write_bytes(data.replace(pattern, pattern[:-2] + b"ab"))
    features = extract_series(tmp_path)
    assert features.suv_unavailable_reason is not None
    assert "PatientWeight" in features.suv_unavailable_reason
    assert "PatientWeight: 'ab' is not a number" in features.suv_unavailable_reason


def test_describe_is_human_readable(tmp_path: Path) -> None:
    _pet(tmp_path / "pt")
    (tmp_path / "junk.bin").write_bytes(b"junk")
    text = describe(tmp_path)
    assert "series 1: PT" in text
    assert "suv_max:" in text and "flags raised:" in text
    assert "error: junk.bin: not a DICOM file" in text


def test_a_folder_of_ct_series_only_says_so(tmp_path: Path) -> None:
    write_ct_series(tmp_path / "a", shape=(2, 16, 16))
    write_ct_series(tmp_path / "b", shape=(2, 16, 16))
    assert describe(tmp_path) == "only CT (2 series), no PET or NM series"
    (tmp_path / "empty").mkdir()
    assert describe(tmp_path / "empty").endswith("no files found")
