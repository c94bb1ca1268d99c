"""AI outputs read from DICOM: SR measurements and codes; secondary captures count as present."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from phase4.probes.listener.outputs import OutputReadError, read_sr, study_outputs


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _write_sr(path: Path) -> Path:
    num = Dataset()
    num.ValueType, num.RelationshipType = "NUM", "CONTAINS"
    num.ConceptNameCodeSequence = Sequence([_code("126400", "DCM", "Total Metabolic Tumor Volume")])
    measured = Dataset()
    measured.NumericValue = "41.5"
    measured.MeasurementUnitsCodeSequence = Sequence([_code("ml", "UCUM", "milliliter")])
    num.MeasuredValueSequence = Sequence([measured])
    finding = Dataset()
    finding.ValueType, finding.RelationshipType = "CODE", "CONTAINS"
    finding.ConceptNameCodeSequence = Sequence([_code("121071", "DCM", "Finding")])
    finding.ConceptCodeSequence = Sequence([_code("108369006", "SCT", "Neoplasm")])
    group = Dataset()
    group.ValueType, group.RelationshipType = "CONTAINER", "CONTAINS"
    group.ConceptNameCodeSequence = Sequence([_code("125007", "DCM", "Measurement Group")])
    group.ContentSequence = Sequence([num, finding])
    sr = Dataset()
    sr.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.33"
    sr.SOPInstanceUID = generate_uid()
    sr.Modality, sr.ValueType = "SR", "CONTAINER"
    sr.ContentSequence = Sequence([group])
    sr.file_meta = FileMetaDataset()
    sr.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    sr.file_meta.MediaStorageSOPClassUID = sr.SOPClassUID
    sr.file_meta.MediaStorageSOPInstanceUID = sr.SOPInstanceUID
    sr.save_as(path, enforce_file_format=True)
    return path


def test_sr_numeric_measurements_and_codes_are_read(tmp_path: Path) -> None:
    path = _write_sr(tmp_path / "sr.dcm")
    got = read_sr(path)
    assert got == {
        "measurements": {"total_metabolic_tumor_volume_ml": 41.5},
        "codes": {"finding": "Neoplasm"},
    }
    outputs, problems = study_outputs({"s1": [path]}, {"s1": "SR"})
    assert problems == []
    assert outputs["output_present"] is True and outputs["output_kinds"] == "SR"
    assert outputs["sr_total_metabolic_tumor_volume_ml"] == 41.5


def test_a_secondary_capture_is_output_present_and_junk_is_named_by_kind(tmp_path: Path) -> None:
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"no DICOM here")
    outputs, problems = study_outputs({"sc": [junk]}, {"sc": "SC"})
    assert outputs == {"output_present": True, "output_kinds": "SC"}
    assert problems == []
    _, problems = study_outputs({"sr": [junk]}, {"sr": "SR"})
    assert len(problems) == 1 and problems[0].startswith("SR: not readable DICOM")
    assert "junk" not in problems[0], "the listener's file names stand for UIDs"
    none, _ = study_outputs({}, {})
    assert none == {"output_present": False, "output_kinds": None}
    with pytest.raises(OutputReadError, match=r"SR: not readable"):
        read_sr(junk)
