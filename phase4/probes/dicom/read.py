"""Finding and reading DICOM files, and grouping them into series.

Each file is read once, whole (``pydicom.dcmread(force=False)``: a file without the DICOM
preamble and ``DICM`` prefix of PS3.10 §7.1 is refused, not guessed at). Pixels are decoded
later, and only for the series that are used (``phase4.probes.dicom.pixels``). A file that cannot be
used becomes a :class:`DicomFeatureError` in the result; it never stops the others.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from phase4.probes.dicom import attrs
from phase4.probes.dicom.errors import DicomFeatureError

PathLike = str | Path
PathsArg = PathLike | Sequence[PathLike]


@dataclass(frozen=True)
class DicomFile:
    """One successfully read file: where it came from and its dataset (pixels still raw)."""

    path: Path
    ds: Dataset


@dataclass(frozen=True)
class SeriesFiles:
    """The files of one series (SeriesInstanceUID), in the order they were given."""

    series_uid: str
    study_uid: str | None
    modality: str | None
    files: tuple[DicomFile, ...]

    @property
    def first(self) -> DicomFile:
        return self.files[0]


@dataclass(frozen=True)
class ReadResult:
    """Series found, and one error per file that could not be read or grouped."""

    series: tuple[SeriesFiles, ...]
    errors: tuple[DicomFeatureError, ...]
    files_total: int


def discover(paths: PathsArg) -> tuple[list[Path], list[DicomFeatureError]]:
    """Regular files under ``paths`` (a file, a folder searched recursively, or a list of
    either), in sorted order, and an error for each path that does not exist."""
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    found: list[Path] = []
    errors: list[DicomFeatureError] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file()))
        elif path.is_file():
            found.append(path)
        else:
            errors.append(DicomFeatureError("no such file or folder", path=path))
    return found, errors


def read_file(path: Path) -> DicomFile:
    """Read one file, refusing anything that is not DICOM Part 10."""
    try:
        ds = pydicom.dcmread(path, force=False)
    except InvalidDicomError as exc:
        raise DicomFeatureError(
            "not a DICOM file (no PS3.10 preamble and 'DICM' prefix)", path=path
        ) from exc
    except Exception as exc:  # truncated files, bad lengths, unreadable meta: name the cause
        raise DicomFeatureError(f"cannot be read as DICOM ({_short(exc)})", path=path) from exc
    return DicomFile(path, ds)


def read_series(paths: PathsArg) -> ReadResult:
    """Read every file under ``paths`` and group the readable ones by SeriesInstanceUID."""
    files, errors = discover(paths)
    if not files and not errors:
        errors.append(DicomFeatureError("no files found", path=str(paths)))
    groups: dict[bytes, list[DicomFile]] = {}
    for path in files:
        try:
            dicom = read_file(path)
            key = _series_key(dicom)
        except DicomFeatureError as exc:
            errors.append(exc if exc.path else exc.with_path(path))
            continue
        groups.setdefault(key, []).append(dicom)
    series = tuple(_series(group) for group in groups.values())
    return ReadResult(series, tuple(errors), len(files))


def _series_key(dicom: DicomFile) -> bytes:
    """The SeriesInstanceUID's bytes: grouping needs no decoding of 300 UIDs."""
    ds = dicom.ds
    if "PixelData" not in ds and "SeriesInstanceUID" not in ds:
        sop = attrs.text(ds, "SOPClassUID") or attrs.text(ds.file_meta, "MediaStorageSOPClassUID")
        what = _sop_name(sop) if sop else "no SOP class"
        raise DicomFeatureError(f"not an image ({what}): no PixelData", path=dicom.path)
    try:
        uid = attrs.identity(ds, "SeriesInstanceUID")
    except DicomFeatureError as exc:
        raise exc.with_path(dicom.path) from exc
    if uid is None:
        raise DicomFeatureError(
            "missing, so the file cannot be grouped into a series",
            path=dicom.path,
            attribute="SeriesInstanceUID",
        )
    return uid


def _series(files: Iterable[DicomFile]) -> SeriesFiles:
    ordered = tuple(files)
    ds = ordered[0].ds
    try:
        uid = attrs.text(ds, "SeriesInstanceUID") or ""
        modality = attrs.text(ds, "Modality")
        study = attrs.text(ds, "StudyInstanceUID")
    except DicomFeatureError:
        uid, modality, study = "", None, None
    return SeriesFiles(uid, study, modality.upper() if modality else None, ordered)


def _sop_name(uid: str) -> str:
    name = UID(uid).name
    return name if name and name != uid else f"SOP class {uid}"


def _short(exc: BaseException, limit: int = 160) -> str:
    message = f"{type(exc).__name__}: {exc}"
    return message if len(message) <= limit else message[: limit - 3] + "..."
