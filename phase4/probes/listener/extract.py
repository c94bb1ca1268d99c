"""From a received study to one probe record: features of its PET/NM series
(``phase4.probes.dicom``),
and the AI's outputs (``phase4.probes.listener.outputs``) measured on that series' SUV.

Also ``describe_path`` for ``phase4 dicom features PATH``.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from phase4.probes.dicom.errors import DicomFeatureError
from phase4.probes.dicom.features import describe, extract_study
from phase4.probes.dicom.isotope import acquisition_time
from phase4.probes.dicom.suv_image import read_suv_image
from phase4.probes.listener.assembly import StudyFolder
from phase4.probes.listener.outputs import SuvLookup, study_outputs
from phase4.probes.listener.scp import StudyRecord

MAX_ERROR_CHARS = 1000
# Four or more dot-separated numbers: a UID (PS3.5 9.1), never a measurement or a version.
_UID_LIKE = re.compile(r"\d+(?:\.\d+){3,}")
# A path (two or more components) or one of the listener's file names (hashes of UIDs).
_PATH_LIKE = re.compile(r"(?:/[^\s/'\"]+){2,}/?|[0-9a-f]{32}(?:\.dcm)?")
_TIME_TAGS = ["AcquisitionDateTime", "AcquisitionDate", "AcquisitionTime"]


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
    """The earliest acquisition time among ``files`` (the series the features come from)."""
    import pydicom

    stamps = []
    for path in files:
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_TIME_TAGS)
            stamp = acquisition_time(header)
        except Exception:  # an unreadable header has no time to give; features still go
            continue
        if stamp is not None:
            stamps.append(stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC))
    return min(stamps) if stamps else None


def record_error(problems: list[str]) -> str | None:
    """The record's ``error``: each distinct problem once (with its count), UIDs masked.

    Problems come without file names (the listener's files are named after UIDs' hashes and
    a folder may carry a name); any UID-, path- or file-name-shaped text left in a reason (a
    library's exception message) is masked as well, so the monitor never holds a raw UID."""
    counts: dict[str, int] = {}
    for problem in problems:
        text = _PATH_LIKE.sub("<file>", _UID_LIKE.sub("<UID>", problem))
        counts[text] = counts.get(text, 0) + 1
    parts = [text if n == 1 else f"{text} (x{n})" for text, n in counts.items()]
    return "; ".join(parts)[:MAX_ERROR_CHARS] or None


def _reason(error: DicomFeatureError) -> str:
    """The error without its file name: "Attribute: reason"."""
    return str(DicomFeatureError(error.reason, attribute=error.attribute))


def extract_study_record(study: StudyFolder) -> StudyRecord:
    """Never raises for bad DICOM: problems go into the record's ``error``.

    The features are those of the study's PET series (else its NM series); ``acquired_at``
    is that series' acquisition time, whatever series (a CT, an AI output) arrived first. A
    series whose pixels cannot be decoded still gives its header covariates."""
    inputs = [p for files in study.inputs.values() for p in files]
    problems: list[str] = []
    if study.refused_too_large:
        problems.append(
            f"{study.refused_too_large} instances refused: the study exceeded the listener's "
            "size limit"
        )
    features: dict[str, Any] = {"input_received": bool(inputs)}
    suv_of: SuvLookup | None = None
    used: list[Path] = []
    if inputs:
        found = extract_study(inputs)
        # Pixel failures first: they say why image features are missing (and what decoder).
        ordered = sorted(found.errors, key=lambda e: e.attribute != "PixelData")
        problems += [_reason(e) for e in ordered]
        pet_or_nm = sorted(
            found.series, key=lambda s: (s.header.modality != "PT", s.pixel_error is not None)
        )
        if pet_or_nm:
            chosen = pet_or_nm[0]
            features.update(chosen.to_record()["features"])
            used = study.inputs.get(chosen.series_uid or "", [])
            if study.outputs and chosen.pixel_error is None:
                suv_of = suv_lookup(used)
        elif not problems:
            modalities = ", ".join(sorted({m for m in map(_modality, inputs) if m})) or "none"
            problems.append(f"no PET or NM series among the input images (only {modalities})")
    else:
        problems.append("only AI outputs were received for this study, no input images")
    outputs, output_problems = study_outputs(study.outputs, study.output_kinds, suv_of)
    problems += output_problems
    return StudyRecord(
        features=features,
        outputs=outputs,
        acquired_at=_acquired_at(used),
        error=record_error(problems),
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
