"""Every file of pydicom's bundled test corpus yields features or one clear DicomFeatureError,
never another exception and never a hang (each file runs under a 10 s guard).

The corpus is real-world DICOM from many vendors and transfer syntaxes, malformed files
included. It is listed from the installed package's ``test_files`` folder (recursively, so
the DICOMDIR tree is included): ``get_testdata_files("*")`` returns the same local files but
first tries to download pydicom's online extras, which costs ~15 s without a network and
fetches ~100 MB with one.

None of these files is a PET or NM *image* (the NM ones are secondary captures), so each is
also relabelled as PET Image Storage and as NM Image Storage: that drives every real-world
pixel encoding, geometry and header through the volume, SUV and flag code.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.data.data_manager import DATA_ROOT

from phase4.probes.dicom import DicomFeatureError, SeriesFeatures, extract_series, extract_study
from tests.dicom.helpers import run_with_timeout

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # malformed files, on purpose

CORPUS = Path(DATA_ROOT) / "test_files"
FILES = sorted(p for p in CORPUS.rglob("*") if p.is_file())
RELABEL = {"PT": "1.2.840.10008.5.1.4.1.1.128", "NM": "1.2.840.10008.5.1.4.1.1.20"}


def _ids(path: Path) -> str:
    return str(path.relative_to(CORPUS))


def _check(path: Path) -> SeriesFeatures | DicomFeatureError:
    try:
        return run_with_timeout(lambda: extract_series(path))
    except DicomFeatureError as exc:
        assert exc.path is not None
        assert str(exc).startswith(path.name + ": ")
        assert exc.reason
        return exc


def test_the_corpus_is_there() -> None:
    assert len(FILES) > 80
    assert (CORPUS / "CT_small.dcm") in FILES


@pytest.mark.parametrize("path", FILES, ids=_ids)
def test_corpus_file_gives_features_or_a_clear_error(path: Path) -> None:
    outcome = _check(path)
    if isinstance(outcome, SeriesFeatures):
        assert outcome.header.modality in ("PT", "NM")
        outcome.to_record()


def test_ct_is_refused_as_not_pet() -> None:
    outcome = _check(CORPUS / "CT_small.dcm")
    assert isinstance(outcome, DicomFeatureError)
    assert str(outcome) == "CT_small.dcm: not a PET or NM image: Modality CT"
    assert outcome.attribute == "Modality"


def test_nm_secondary_capture_is_refused_with_the_reason() -> None:
    outcome = _check(CORPUS / "JPEG2000.dcm")
    assert isinstance(outcome, DicomFeatureError)
    assert outcome.attribute == "SOPClassUID"
    assert "Secondary Capture Image Storage" in str(outcome)


@pytest.mark.parametrize("name", ["no_meta.dcm", "rtplan.dump", "zipMR.gz"])
def test_non_dicom_is_refused(name: str) -> None:
    outcome = _check(CORPUS / name)
    assert isinstance(outcome, DicomFeatureError)
    assert str(outcome) == f"{name}: not a DICOM file (no PS3.10 preamble and 'DICM' prefix)"


def test_the_whole_corpus_as_one_study() -> None:
    study = run_with_timeout(lambda: extract_study(CORPUS), timeout_s=30.0)
    assert study.files == len(FILES)
    assert all(isinstance(e, DicomFeatureError) for e in study.errors)
    assert len(study.errors) + len(study.series) >= 60


def _relabelled(tmp_path: Path) -> list[Path]:
    out = []
    for path in FILES:
        try:
            ds = pydicom.dcmread(path)
        except Exception:  # not readable as DICOM: covered by the plain corpus test
            continue
        if "PixelData" not in ds:
            continue
        for modality, sop_class in RELABEL.items():
            ds.Modality = modality
            ds.SOPClassUID = sop_class
            if "SeriesInstanceUID" not in ds:
                ds.SeriesInstanceUID = pydicom.uid.generate_uid()
            target = tmp_path / f"{path.name}.{modality}.dcm"
            try:
                ds.save_as(target, enforce_file_format=False)
            except Exception:  # a few corpus files cannot be written back by pydicom
                continue
            out.append(target)
    return out


def test_relabelled_corpus_gives_features_or_clear_errors(tmp_path: Path) -> None:
    paths = _relabelled(tmp_path)
    assert len(paths) > 100
    outcomes = [_check(path) for path in paths]
    features = [o for o in outcomes if isinstance(o, SeriesFeatures)]
    errors = [o for o in outcomes if isinstance(o, DicomFeatureError)]
    assert len(features) > 40 and len(errors) > 40  # both routes really exercised
    for f in features:
        record = f.to_record()
        assert f.suv_unavailable_reason is not None  # no corpus file has a PET isotope module
        assert record["features"]["suv_available"] is False
