"""Collecting received DICOM instances into studies until each is complete.

A study is complete when no instance of it has arrived for ``idle_s`` seconds (DICOM has no
"end of study" message). Instances are written to the listener's private folder (mode 0700,
files 0600), one sub-folder per study, so that pixel data stays on the listener's disk and is
deleted once the study's features have been extracted; only features and pseudonyms leave.

Nothing a sender chooses becomes part of a path: the three UIDs are checked against the
PS3.5 §9.1 grammar (``phase4.probes.listener.uids``) and files are named by the SHA-256 of their
UIDs;
every path is resolved and checked to stay inside the private folder before it is written.

Input series (what the AI was sent: PT, NM, CT) and output series (what the AI returned: SEG,
SR, secondary captures) are told apart by SOP class and modality, and matched by
StudyInstanceUID.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset

from phase4.probes.listener.uids import checked_uid

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
_PRIVATE_DIR_MODE = 0o700
_PRIVATE_FILE_MODE = 0o600
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW


class StudyTooLarge(ValueError):
    """The instance would take its study past the size limit; nothing of it was written."""


def output_kind(ds: Dataset) -> str | None:
    """'SEG', 'SR' or 'SC' for an AI output, None for an input image."""
    kind = OUTPUT_SOP_CLASSES.get(str(ds.get("SOPClassUID", "")))
    if kind:
        return kind
    modality = str(ds.get("Modality", ""))
    return "SC" if modality in OUTPUT_MODALITIES else None


def file_name(uid: str) -> str:
    """A name for a file or folder that stands for ``uid`` without being it."""
    return hashlib.sha256(uid.encode("ascii")).hexdigest()[:32]


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
    stored_bytes: int = 0
    refused_too_large: int = 0  # instances refused because the study reached its size limit


class StudyAssembler:
    """Thread-safe: the SCP's handlers add instances, the extraction thread takes due studies."""

    def __init__(
        self,
        root: Path | None = None,
        idle_s: float = 10.0,
        max_study_bytes: int | None = None,
    ) -> None:
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)
        # mkdtemp: a new folder of mode 0700 that no other user can enter or pre-create.
        self._tmp = tempfile.TemporaryDirectory(prefix="phase4-listener-", dir=root)
        self.root = Path(self._tmp.name).resolve()
        os.chmod(self.root, _PRIVATE_DIR_MODE)
        self.idle_s = idle_s
        self.max_study_bytes = max_study_bytes
        self._studies: dict[str, StudyFolder] = {}
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, ds: Dataset, now: float | None = None, size_bytes: int = 0) -> StudyFolder:
        """Write one received instance (with its file meta) to its study's folder.

        Raises UidError if one of its three UIDs breaks the PS3.5 §9.1 grammar, StudyTooLarge
        if ``size_bytes`` would take the study past ``max_study_bytes``; in both cases, and if
        writing fails, nothing of the instance is left on disk.
        """
        study_uid = checked_uid(ds.get("StudyInstanceUID"), "StudyInstanceUID")
        series_uid = checked_uid(ds.get("SeriesInstanceUID"), "SeriesInstanceUID")
        sop_uid = checked_uid(ds.get("SOPInstanceUID"), "SOPInstanceUID")
        with self._lock:
            study = self._studies.get(study_uid)
            if study is None:
                folder = self._inside(self.root / f"study-{next(self._numbers)}")
                folder.mkdir(mode=_PRIVATE_DIR_MODE)
                study = StudyFolder(study_uid, folder)
                self._studies[study_uid] = study
            study.last_received = time.monotonic() if now is None else now
            limit = self.max_study_bytes
            if limit is not None and study.stored_bytes + size_bytes > limit:
                study.refused_too_large += 1
                raise StudyTooLarge(f"the study would exceed its limit of {limit} bytes")
            series_dir = self._inside(study.folder / file_name(series_uid))
            series_dir.mkdir(mode=_PRIVATE_DIR_MODE, exist_ok=True)
            path = self._inside(series_dir / f"{file_name(sop_uid)}.dcm")
            try:
                descriptor = os.open(path, _WRITE_FLAGS, _PRIVATE_FILE_MODE)
                with os.fdopen(descriptor, "wb") as handle:
                    ds.save_as(handle, enforce_file_format=True)
            except BaseException:
                path.unlink(missing_ok=True)
                raise
            kind = output_kind(ds)
            target = study.outputs if kind else study.inputs
            files = target.setdefault(series_uid, [])
            if path not in files:
                files.append(path)
                study.instances += 1
                study.stored_bytes += size_bytes
            if kind:
                study.output_kinds[series_uid] = kind
            return study

    def _inside(self, path: Path) -> Path:
        """``path`` resolved, or ValueError if it would leave the private folder."""
        resolved = path.resolve()
        if resolved == self.root or not resolved.is_relative_to(self.root):
            raise ValueError("a received instance's path would leave the listener's folder")
        return resolved

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
