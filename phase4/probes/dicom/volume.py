"""One PET or NM series as an image volume: ordered slices, rescaled values, geometry.

* PET Image Storage (PS3.3 A.21): one slice per file. Slices are ordered by position along
  the slice normal (``phase4.probes.dicom.geometry``); each slice's RescaleSlope and
  RescaleIntercept
  are applied to its own pixels (PS3.3 C.8.9.4.1.3: PET slices are scaled individually).
* NM Image Storage (PS3.3 A.5): one multi-frame file. Reconstructed tomography (ImageType
  value 3 ``RECON TOMO`` / ``RECON GATED TOMO``) is a volume whose first frame sits at the
  ImagePositionPatient of DetectorInformationSequence, the next ones SpacingBetweenSlices
  further along the normal (PS3.3 C.8.4.10/C.8.4.11). Anything else (static, whole-body,
  dynamic planar frames, one per DetectorVector head...) is a stack of planar frames with no
  through-plane geometry.

Headers are read from the already parsed datasets, pixels decoded once per file, and values
written straight into one float32 array.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import UID

from phase4.probes.dicom import attrs
from phase4.probes.dicom.errors import DicomFeatureError
from phase4.probes.dicom.geometry import (
    DUPLICATE_TOLERANCE_MM,
    ORIENTATION_TOLERANCE,
    SpacingReport,
    slice_normal,
    spacing_report,
)
from phase4.probes.dicom.pixels import stored_frames
from phase4.probes.dicom.read import DicomFile, SeriesFiles

PET_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.128"
NM_IMAGE_STORAGE = {"1.2.840.10008.5.1.4.1.1.20", "1.2.840.10008.5.1.4.1.1.5"}  # + retired
SUPPORTED_SOP_CLASSES = {PET_IMAGE_STORAGE, *NM_IMAGE_STORAGE}
ENHANCED_PET = {"1.2.840.10008.5.1.4.1.1.130", "1.2.840.10008.5.1.4.1.1.128.1"}
TOMO_TYPES = {"RECON TOMO", "RECON GATED TOMO"}
T = TypeVar("T")
_TYPE_MAXIMUM = {
    np.dtype(t).str: int(np.iinfo(t).max)
    for t in ("u1", "i1", "<u2", "<i2", "<u4", "<i4", ">u2", ">i2", ">u4", ">i4")
}


@dataclass(frozen=True)
class Volume:
    """The pixel values of one series after the Modality LUT, in acquisition geometry."""

    modality: str
    values: np.ndarray  # float32 (slices or frames, rows, columns)
    datasets: tuple[Dataset, ...]  # per slice/frame, in volume order
    paths: tuple[Path, ...]  # per slice/frame
    tomographic: bool  # slices of a volume (False: planar frames)
    positions_mm: np.ndarray | None  # per slice, along the normal, ascending
    pixel_spacing_mm: tuple[float, float] | None  # (between rows, between columns)
    spacing: SpacingReport
    saturated_voxels: np.ndarray  # per slice: stored values at the storage type's maximum
    slice_min: np.ndarray  # per slice, minimum value (after rescale)
    slice_max: np.ndarray  # per slice, maximum value (after rescale)
    duplicate_instances: int  # the same SOPInstanceUID given more than once
    duplicate_positions: int  # distinct instances at the same position (dropped)
    pixel_spacing_varies: bool
    rescale_slopes: np.ndarray  # per slice

    @property
    def slice_spacing_mm(self) -> float | None:
        return self.spacing.median_step_mm

    @property
    def voxel_volume_ml(self) -> float | None:
        if self.pixel_spacing_mm is None or self.slice_spacing_mm is None:
            return None
        return self.pixel_spacing_mm[0] * self.pixel_spacing_mm[1] * self.slice_spacing_mm / 1e3


def check_supported(series: SeriesFiles) -> None:
    """Refuse, with the reason, a series that is not a PET or NM image series."""
    first = series.first
    modality = series.modality
    if modality not in ("PT", "NM"):
        raise DicomFeatureError(
            f"not a PET or NM image: Modality {modality or '(missing)'}",
            path=first.path,
            attribute="Modality",
        )
    sop = attrs.text(first.ds, "SOPClassUID")
    if sop in ENHANCED_PET:
        raise DicomFeatureError(
            "Enhanced/Legacy Converted Enhanced PET Image Storage is not supported "
            "(only PET Image Storage, one slice per file)",
            path=first.path,
            attribute="SOPClassUID",
        )
    if sop is not None and sop not in SUPPORTED_SOP_CLASSES:
        name = UID(sop).name
        raise DicomFeatureError(
            f"not a PET or NM image: SOPClassUID is {name} (Modality {modality}); only PET "
            "and NM Image Storage carry quantitative pixel values",
            path=first.path,
            attribute="SOPClassUID",
        )


def build_volume(series: SeriesFiles) -> Volume:
    """Order, decode and rescale the slices of a supported series."""
    check_supported(series)
    memo = attrs.Memo()
    unique, duplicate_instances = _unique_instances(series.files)
    if series.modality == "NM" and len(unique) == 1:
        return _nm_multiframe(unique[0], duplicate_instances, memo)
    return _slice_stack(series.modality or "PT", unique, duplicate_instances, memo)


def _unique_instances(files: tuple[DicomFile, ...]) -> tuple[list[DicomFile], int]:
    seen: set[bytes] = set()
    unique = []
    for f in files:
        uid = _on(f, attrs.identity, "SOPInstanceUID") or str(f.path).encode()
        if uid not in seen:
            seen.add(uid)
            unique.append(f)
    return unique, len(files) - len(unique)


def _slice_stack(
    modality: str, files: list[DicomFile], duplicate_instances: int, memo: attrs.Memo
) -> Volume:
    first = files[0]
    for keyword in ("NumberOfTimeSlices", "NumberOfTimeSlots"):
        count = _on(first, attrs.integer, keyword) or 1
        if count > 1:
            raise DicomFeatureError(
                f"is {count}: dynamic and gated PET series (several images per position) "
                "are not supported",
                path=first.path,
                attribute=keyword,
            )
    orientation = _orientation(first, memo)
    try:
        normal = slice_normal(orientation)
    except ValueError as exc:
        raise DicomFeatureError(
            str(exc), path=first.path, attribute="ImageOrientationPatient"
        ) from exc
    positions = np.empty(len(files))
    instance = np.empty(len(files))
    for i, f in enumerate(files):
        other = _orientation(f, memo)
        if other != orientation and max(map(abs, np.subtract(other, orientation))) > (
            ORIENTATION_TOLERANCE
        ):
            raise DicomFeatureError(
                "differs between slices of the series, so they do not form a volume",
                path=f.path,
                attribute="ImageOrientationPatient",
            )
        frames = _on(f, memo.get, "NumberOfFrames", attrs.integer) or 1
        if frames > 1:
            what = (
                "a multi-frame PET Image Storage file is not supported (one slice per file)"
                if modality == "PT"
                else "an NM series of several multi-frame files is not supported"
            )
            raise DicomFeatureError(
                f"is {frames}: {what}",
                path=f.path,
                attribute="NumberOfFrames",
            )
        position = _on(f, attrs.fast_numbers, "ImagePositionPatient", 3)
        if position is None:
            raise DicomFeatureError(
                "missing, so the slices cannot be ordered",
                path=f.path,
                attribute="ImagePositionPatient",
            )
        positions[i] = position[0] * normal[0] + position[1] * normal[1] + position[2] * normal[2]
        instance[i] = _on(f, attrs.fast_number, "InstanceNumber") or 0.0
    order = np.lexsort((instance, positions))
    keep = [int(order[0])]
    for index in order[1:]:
        if positions[index] - positions[keep[-1]] > DUPLICATE_TOLERANCE_MM:
            keep.append(int(index))
    ordered = [files[i] for i in keep]
    decoded = _decode_slices(ordered, memo)
    spacings = {_on(f, memo.get, "PixelSpacing", attrs.numbers, 2) for f in ordered}
    sorted_positions = positions[keep]
    return Volume(
        modality=modality,
        values=decoded.values,
        datasets=tuple(f.ds for f in ordered),
        paths=tuple(f.path for f in ordered),
        tomographic=True,
        positions_mm=sorted_positions,
        pixel_spacing_mm=_spacing_pair(_on(first, memo.get, "PixelSpacing", attrs.numbers, 2)),
        spacing=spacing_report(sorted_positions),
        saturated_voxels=decoded.saturated,
        slice_min=decoded.low,
        slice_max=decoded.high,
        duplicate_instances=duplicate_instances,
        duplicate_positions=len(files) - len(keep),
        pixel_spacing_varies=len(spacings) > 1,
        rescale_slopes=decoded.slopes,
    )


@dataclass(frozen=True)
class _Decoded:
    values: np.ndarray
    saturated: np.ndarray
    slopes: np.ndarray
    low: np.ndarray
    high: np.ndarray


def _decode_slices(files: list[DicomFile], memo: attrs.Memo) -> _Decoded:
    """Stored pixels of each slice, rescaled with that slice's own slope and intercept, into
    one float32 array (one multiply per slice, no intermediate copies)."""
    first = _on(files[0], stored_frames, memo)[0]
    rows, cols = first.shape
    n = len(files)
    values = np.empty((n, rows, cols), dtype=np.float32)
    saturated = np.zeros(n, dtype=np.int64)
    slopes, low, high = np.empty(n), np.empty(n), np.empty(n)
    for i, f in enumerate(files):
        stored = first if i == 0 else _on(f, stored_frames, memo)[0]
        if stored.shape != (rows, cols):
            raise DicomFeatureError(
                f"image is {stored.shape[0]}x{stored.shape[1]}, the first slice {rows}x{cols}",
                path=f.path,
                attribute="Rows",
            )
        slope, intercept = _rescale(f)
        slopes[i] = slope
        np.multiply(stored, np.float32(slope), out=values[i], casting="unsafe")
        if intercept:
            values[i] += np.float32(intercept)
        stored_min, stored_max = stored.min(), stored.max()
        ends = (float(stored_min) * slope + intercept, float(stored_max) * slope + intercept)
        low[i], high[i] = min(ends), max(ends)
        saturated[i] = _count_at_maximum(stored, stored_max)
    return _Decoded(values, saturated, slopes, low, high)


def _nm_multiframe(f: DicomFile, duplicate_instances: int, memo: attrs.Memo) -> Volume:
    stored = _on(f, stored_frames, memo)
    slope, intercept = _rescale(f)
    values = stored.astype(np.float32) * np.float32(slope)
    if intercept:
        values += np.float32(intercept)
    image_type = _on(f, attrs.words, "ImageType")
    tomographic = len(image_type) > 2 and image_type[2] in TOMO_TYPES
    n = stored.shape[0]
    positions = None
    spacing = spacing_report(np.empty(0))
    if tomographic:
        step = _on(f, attrs.number, "SpacingBetweenSlices") or _on(
            f, attrs.number, "SliceThickness"
        )
        if step and step > 0:
            positions = np.arange(n) * step + _nm_offset_mm(f)
            spacing = spacing_report(positions)
    return Volume(
        modality="NM",
        values=values,
        datasets=(f.ds,) * n,
        paths=(f.path,) * n,
        tomographic=tomographic,
        positions_mm=positions,
        pixel_spacing_mm=_spacing_pair(_on(f, attrs.numbers, "PixelSpacing", 2)),
        spacing=spacing,
        saturated_voxels=np.array([_count_at_maximum(s, s.max()) for s in stored]),
        slice_min=values.min(axis=(1, 2)).astype(float),
        slice_max=values.max(axis=(1, 2)).astype(float),
        duplicate_instances=duplicate_instances,
        duplicate_positions=0,
        pixel_spacing_varies=False,
        rescale_slopes=np.full(n, slope),
    )


def _nm_offset_mm(f: DicomFile) -> float:
    """Position of the first frame along the normal, from DetectorInformationSequence's
    ImagePositionPatient/ImageOrientationPatient (0 when not given: positions stay relative)."""
    detector = _on(f, attrs.item, "DetectorInformationSequence")
    if detector is None:
        return 0.0
    try:
        origin = attrs.numbers(detector, "ImagePositionPatient", 3)
        orientation = attrs.numbers(detector, "ImageOrientationPatient", 6)
    except DicomFeatureError as exc:
        raise exc.with_path(f.path) from None
    if origin is None or orientation is None:
        return 0.0
    try:
        return float(np.dot(origin, slice_normal(orientation)))
    except ValueError:
        return 0.0


def _orientation(f: DicomFile, memo: attrs.Memo) -> tuple[float, ...]:
    value = _on(f, memo.get, "ImageOrientationPatient", attrs.numbers, 6)
    if value is None:
        raise DicomFeatureError(
            "missing, so the slice normal is unknown",
            path=f.path,
            attribute="ImageOrientationPatient",
        )
    return value


def _rescale(f: DicomFile) -> tuple[float, float]:
    """Modality LUT (PS3.3 C.11.1): value = stored × RescaleSlope + RescaleIntercept."""
    slope = _on(f, attrs.fast_number, "RescaleSlope")
    intercept = _on(f, attrs.fast_number, "RescaleIntercept") or 0.0
    if slope is None:
        return 1.0, intercept
    if slope == 0:
        raise DicomFeatureError(
            "is 0, which would erase the image", path=f.path, attribute="RescaleSlope"
        )
    return slope, intercept


def _count_at_maximum(stored: np.ndarray, stored_max: Any) -> int:
    """Stored values at the largest value the storage type can hold (clipped on writing)."""
    top = _TYPE_MAXIMUM.get(stored.dtype.str)
    if top is None or stored_max < top:  # counting only when it can matter
        return 0
    return int(np.count_nonzero(stored == top))


def _spacing_pair(value: tuple[float, ...] | None) -> tuple[float, float] | None:
    if value is None or value[0] <= 0 or value[1] <= 0:
        return None
    return (value[0], value[1])


def _on(f: DicomFile, getter: Callable[..., T], *args: Any) -> T:
    """``getter(f.ds, *args)``, attributing a DicomFeatureError to the file ``f``."""
    try:
        return getter(f.ds, *args)
    except DicomFeatureError as exc:
        raise (exc if exc.path else exc.with_path(f.path)) from None
