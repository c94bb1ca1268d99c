"""Collecting received DICOM instances into studies until each is complete.

A study is complete when no instance of it has arrived for ``idle_s`` seconds (DICOM has no
"end of study" message). Instances are written to a private temporary folder, one per study, so
that pixel data stays on the listener's disk and is deleted once the study's features have been
extracted; only features and pseudonyms leave.

Input series (what the AI was sent: PT, NM, CT) and output series (what the AI returned: SEG,
SR, secondary captures) are told apart by SOP class and modality, and matched by
StudyInstanceUID.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset

OUTPUT_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.66.4": "SEG",  # Segmentation Storage
    "1.2.840.10008.5.1.4.1.1.88.11": "SR",  # Basic Text SR
    "1.2.840.10008.5.1.4.1.1.88.22": "SR",  # Enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.33": "SR",  # Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.88.34": "SR",  # Comprehensive 3D SR
    "1.2.840.10008.5.1.4.1.1.7": "SC",  # Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.4": "SC",  # Multi-frame True Color SC
    "1.2.840.10008.5.1.4.1.1.104.1": "SC",  # Encapsulated PDF
}
OUTPUT_MODALITIES = {"SEG", "SR", "OT", "DOC"}


def output_kind(ds: Dataset) -> str | None:
    """'SEG', 'SR' or 'SC' for an AI output, None for an input image."""
    kind = OUTPUT_SOP_CLASSES.get(str(ds.get("SOPClassUID", "")))
    if kind:
        return kind
    modality = str(ds.get("Modality", ""))
    return "SC" if modality in OUTPUT_MODALITIES else None


@dataclass
class StudyFolder:
    """The instances received for one study, on disk until extraction."""

    study_uid: str
    folder: Path
    inputs: dict[str, list[Path]] = field(default_factory=dict)  # series uid -> files
    outputs: dict[str, list[Path]] = field(default_factory=dict)
    output_kinds: dict[str, str] = field(default_factory=dict)
    last_received: float = 0.0
    instances: int = 0


class StudyAssembler:
    """Thread-safe: the SCP's handlers add instances, the extraction thread takes due studies."""

    def __init__(self, root: Path | None = None, idle_s: float = 10.0) -> None:
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)
        self._tmp = tempfile.TemporaryDirectory(prefix="phase4-listener-", dir=root)
        self.root = Path(self._tmp.name)
        self.idle_s = idle_s
        self._studies: dict[str, StudyFolder] = {}
        self._lock = threading.Lock()

    def add(self, ds: Dataset, now: float | None = None) -> StudyFolder:
        """Write one received instance (with its file meta) to its study's folder."""
        study_uid = str(ds.StudyInstanceUID)
        series_uid = str(ds.SeriesInstanceUID)
        sop_uid = str(ds.SOPInstanceUID)
        with self._lock:
            study = self._studies.get(study_uid)
            if study is None:
                folder = self.root / f"study-{len(self._studies)}-{int(time.time() * 1e3)}"
                folder.mkdir()
                study = StudyFolder(study_uid, folder)
                self._studies[study_uid] = study
            # UIDs are digits and dots: safe names, and unique by definition.
            series_dir = study.folder / series_uid
            series_dir.mkdir(exist_ok=True)
            path = series_dir / f"{sop_uid}.dcm"
            ds.save_as(path, enforce_file_format=True)
            kind = output_kind(ds)
            target = study.outputs if kind else study.inputs
            files = target.setdefault(series_uid, [])
            if path not in files:
                files.append(path)
            if kind:
                study.output_kinds[series_uid] = kind
            study.instances += 1
            study.last_received = time.monotonic() if now is None else now
            return study

    def due(self, now: float | None = None) -> list[StudyFolder]:
        """Studies idle for ``idle_s``: removed from the assembler, for extraction."""
        now = time.monotonic() if now is None else now
        with self._lock:
            done = [s for s in self._studies.values() if now - s.last_received >= self.idle_s]
            for s in done:
                del self._studies[s.study_uid]
        return done

    def pending(self) -> int:
        with self._lock:
            return len(self._studies)

    @staticmethod
    def discard(study: StudyFolder) -> None:
        shutil.rmtree(study.folder, ignore_errors=True)

    def close(self) -> None:
        self._tmp.cleanup()
