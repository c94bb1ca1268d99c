"""to_record() carries no patient identifiers, UIDs or dates; every key is a legal feature."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest

from phase4.probes.dicom import describe, extract_series, extract_study
from phase4.probes.dicom.synthetic import FAKE_PATIENT, write_ct_series, write_pet_series
from phase4.probes.phi import is_phi_key
from phase4.probes.sanitise import StripReport, sanitise_features
from tests.dicom.helpers import SPHERE

PATIENT = {
    "PatientName": "Zyxwvut^Quirinus",
    "PatientID": "MRN-98765-ZQ",
    "PatientBirthDate": "19470312",
    "AccessionNumber": "ACC-55501-ZQ",
}


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("private")
    write_pet_series(
        folder / "pt",
        shape=(16, 32, 32),
        hot_spheres=[SPHERE],
        patient=PATIENT,
        extra={"InstitutionName": "St Elsewhere", "OperatorsName": "Doe^Operator"},
    )
    ds = pydicom.dcmread(next((folder / "pt").glob("*.dcm")), stop_before_pixels=True)
    write_ct_series(folder / "ct", study_uid=ds.StudyInstanceUID, patient=PATIENT)
    return folder


def _identifiers(folder: Path) -> list[str]:
    values = [*PATIENT.values(), "Zyxwvut", "Quirinus", "St Elsewhere", "Doe^Operator"]
    for path in folder.rglob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        values += [ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID]
        values += [ds.FrameOfReferenceUID, ds.StudyDate, ds.SeriesDate]
    return values


def test_files_really_carry_the_identifiers(series: Path) -> None:
    ds = pydicom.dcmread(next((series / "pt").glob("*.dcm")), stop_before_pixels=True)
    assert str(ds.PatientName) == PATIENT["PatientName"]
    assert ds.AccessionNumber == PATIENT["AccessionNumber"]
    assert FAKE_PATIENT["PatientName"] != PATIENT["PatientName"]


def test_record_contains_no_identifier(series: Path) -> None:
    features = extract_series(series)
    text = json.dumps(features.to_record())
    for value in _identifiers(series):
        assert value not in text, value
    assert "2024" not in text  # no dates at all


def test_record_is_flat_scalars_with_legal_keys(series: Path) -> None:
    record = extract_series(series).to_record()
    for key, value in record["features"].items():
        assert isinstance(value, str | int | float | bool | type(None)), key
        assert not is_phi_key(key), key
        assert len(key) <= 100
    for name, flag in record["flags"].items():
        assert isinstance(flag["raised"], bool), name
        assert all(isinstance(v, str | int | float | bool | type(None)) for v in flag.values())
    report = StripReport()
    assert sanitise_features(record["features"], report) == record["features"]
    assert report.phi_keys == [] and report.dropped_values == []


def test_weight_and_height_are_binned(series: Path) -> None:
    features = extract_series(series).to_record()["features"]
    assert features["weight_bin_kg"] == 70 and features["height_bin_cm"] == 170
    assert "weight_kg" not in features and "patient_weight" not in features


def test_uids_are_kept_out_of_repr_and_describe(series: Path) -> None:
    features = extract_series(series)
    assert features.study_uid is not None  # available to the caller, e.g. to pseudonymise
    text = repr(features) + describe(series)
    for value in _identifiers(series):
        assert value not in text, value


def test_errors_name_files_not_folders(tmp_path: Path) -> None:
    private = tmp_path / "Zyxwvut_Quirinus_19470312"
    private.mkdir()
    (private / "scan.dcm").write_bytes(b"not dicom")
    study = extract_study(private)
    assert [str(e) for e in study.errors] == [
        "scan.dcm: not a DICOM file (no PS3.10 preamble and 'DICM' prefix)"
    ]


def test_file_names_never_reach_the_record(tmp_path: Path) -> None:
    # Exported files are often named after their SOPInstanceUID; an SUV refusal must not
    # carry the name into the record.
    paths = write_pet_series(tmp_path, shape=(8, 16, 16), missing=["PatientWeight"])
    names = []
    for path in paths:
        uid = pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID
        path.rename(path.with_name(f"{uid}.dcm"))
        names.append(uid)
    features = extract_series(tmp_path)
    assert features.suv_unavailable_reason == "PatientWeight: missing, so SUV cannot be computed"
    text = json.dumps(features.to_record())
    assert not any(uid in text for uid in names)
