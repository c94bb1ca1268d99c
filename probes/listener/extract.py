"""From a received study to one probe record: features of its PET/NM series (``probes.dicom``),
and the AI's outputs (``probes.listener.outputs``) measured on that series' SUV.

Also ``describe_path`` for ``phase4 dicom features PATH``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from probes.dicom.errors import DicomFeatureError
from probes.dicom.features import describe, extract_study
from probes.dicom.isotope import acquisition_time
from probes.dicom.suv_image import read_suv_image
from probes.listener.assembly import StudyFolder
from probes.listener.outputs import SuvLookup, study_outputs
from probes.listener.scp import StudyRecord

MAX_ERROR_CHARS = 1000


def suv_lookup(files: list[Path]) -> SuvLookup | None:
    """SUV image of each slice of the PET series among ``files``, by SOPInstanceUID (for
    measuring the AI's segments on the image they were drawn on); None if SUV is unavailable."""
    pet = [p for p in files if _modality(p) == "PT"]
    try:
        return read_suv_image(pet).slice_of if pet else None
    except DicomFeatureError:
        return None


def _modality(path: Path) -> str | None:
    import pydicom

    try:
        return str(
            pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality"]).Modality
        )
    except Exception:  # unreadable: not a PET slice we can measure on
        return None


def _acquired_at(files: list[Path]) -> datetime | None:
    import pydicom

    for path in files[:1]:
        try:
            stamp = acquisition_time(pydicom.dcmread(path, stop_before_pixels=True))
        except Exception:  # an unreadable header has no time to give; features still go
            return None
        if stamp is not None:
            return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    return None


def extract_study_record(study: StudyFolder) -> StudyRecord:
    """Never raises for bad DICOM: problems go into the record's ``error``."""
    inputs = [p for files in study.inputs.values() for p in files]
    problems: list[str] = []
    features: dict[str, Any] = {"input_received": bool(inputs)}
    suv_of: SuvLookup | None = None
    if inputs:
        found = extract_study(inputs)
        problems += [str(e) for e in found.errors]
        pet_or_nm = sorted(found.series, key=lambda s: s.header.modality != "PT")
        if pet_or_nm:
            features.update(pet_or_nm[0].to_record()["features"])
            if study.outputs:
                suv_of = suv_lookup(inputs)
        elif not problems:
            problems.append("no PET or NM series among the input images")
    else:
        problems.append("only AI outputs were received for this study, no input images")
    outputs, output_problems = study_outputs(study.outputs, study.output_kinds, suv_of)
    problems += output_problems
    error = "; ".join(problems)[:MAX_ERROR_CHARS] or None
    return StudyRecord(
        features=features, outputs=outputs, acquired_at=_acquired_at(inputs), error=error
    )


def describe_path(path: Path, *, as_json: bool) -> tuple[int, str]:
    """Exit code and text for ``phase4 dicom features``: 0 if a series yielded features,
    1 if none did (each unusable file or series is named with its reason), 2 if PATH is absent."""
    if not path.exists():
        return 2, f"error: {path}: no such file or folder"
    if not as_json:
        study = extract_study(path)
        return (0 if study.series else 1), describe(path)
    study = extract_study(path)
    payload = {
        "series": study.to_records(),
        "errors": [str(e) for e in study.errors],
        "files": study.files,
    }
    return (0 if study.series else 1), json.dumps(payload, indent=2, default=str)
