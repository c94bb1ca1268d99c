"""A phantom series as numbers: pixel values, geometry and the few header facts QC needs.

Reading, ordering and rescaling are ``phase4.probes.dicom``'s (one code path for patient and phantom
series); this module picks the one series in the input, checks it is the modality the
analysis wants, and turns every failure into a :class:`PhantomInputError` whose message names
the file or attribute and what is wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from phase4.probes.dicom import attrs
from phase4.probes.dicom.errors import DicomFeatureError
from phase4.probes.dicom.read import read_series
from phase4.probes.dicom.times import combine, parse_da, parse_dt, parse_tm
from phase4.probes.dicom.volume import build_volume

PathsArg = str | Path | Sequence[str | Path]


class PhantomInputError(ValueError):
    """Input a phantom analysis cannot use; the message says what and why."""


@dataclass(frozen=True)
class HeaderFacts:
    """Header values a phantom analysis may need (None when absent)."""

    modality: str
    units: str | None = None
    decay_correction: str | None = None
    series_time: datetime | None = None
    radiopharmaceutical_start: datetime | None = None
    half_life_s: float | None = None
    total_dose: float | None = None  # Bq for PET, MBq for NM (as each IOD defines it)
    patient_weight_kg: float | None = None
    patient_name: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    software_versions: str | None = None


@dataclass(frozen=True)
class PhantomImage:
    """Pixel values (slices or frames, rows, columns) with their geometry.

    ``spacing_mm`` is (between slices, between rows, between columns); the first is NaN for
    planar frames. ``origin_mm`` is the (x, y) of pixel [0, 0]; ``z_mm`` the slice positions
    (None for planar frames). Axial orientation (rows along +y, columns along +x) is assumed
    when positions are turned into millimetres.
    """

    values: np.ndarray
    spacing_mm: tuple[float, float, float]
    header: HeaderFacts
    origin_mm: tuple[float, float] = (0.0, 0.0)
    z_mm: tuple[float, ...] | None = None
    tomographic: bool = True
    source: tuple[str, ...] = field(default_factory=tuple)

    def position_mm(self, index: Sequence[float]) -> tuple[float, float, float]:
        """(x, y, z) in mm of a (slice, row, column) index (fractional allowed)."""
        k, j, i = (float(v) for v in index)
        x = self.origin_mm[0] + i * self.spacing_mm[2]
        y = self.origin_mm[1] + j * self.spacing_mm[1]
        if self.z_mm is not None and len(self.z_mm) > 1:
            z = float(np.interp(k, np.arange(len(self.z_mm)), self.z_mm))
        elif self.z_mm:
            z = self.z_mm[0]
        else:
            z = k * (self.spacing_mm[0] if np.isfinite(self.spacing_mm[0]) else 1.0)
        return (x, y, z)


def load_image(paths: PathsArg, *, modalities: Sequence[str], what: str) -> PhantomImage:
    """Read exactly one PET or NM series from ``paths`` (a file, a folder, or a list).

    ``modalities`` are the acceptable Modality values; ``what`` names the analysis in errors.
    """
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    for item in items:
        if not Path(item).exists():
            raise PhantomInputError(f"{item}: no such file or folder")
    result = read_series(paths)
    if not result.series:
        reasons = "; ".join(str(e) for e in result.errors[:3]) or "no files found"
        raise PhantomInputError(f"no readable DICOM series in {paths}: {reasons}")
    if len(result.series) > 1:
        raise PhantomInputError(
            f"{len(result.series)} series found in {paths}; give the files of one {what} series"
        )
    series = result.series[0]
    modality = series.modality or "(missing)"
    if modality not in modalities:
        raise PhantomInputError(
            f"{series.first.path.name}: Modality is {modality}, but a {what} needs "
            f"{' or '.join(modalities)}"
        )
    try:
        volume = build_volume(series)
    except DicomFeatureError as exc:
        raise PhantomInputError(str(exc)) from exc
    if volume.pixel_spacing_mm is None:
        raise PhantomInputError(
            f"{series.first.path.name}: PixelSpacing missing, so no distances can be measured"
        )
    first = volume.datasets[0]
    header = _facts(first, modality)
    dy, dx = volume.pixel_spacing_mm
    z_mm: tuple[float, ...] | None = None
    origin = (0.0, 0.0)
    if volume.tomographic and modality == "PT":
        position = attrs.numbers(first, "ImagePositionPatient", 3)
        if position is not None:
            origin = (position[0], position[1])
            z_mm = tuple(
                float(attrs.numbers(ds, "ImagePositionPatient", 3)[2])  # type: ignore[index]
                for ds in volume.datasets
            )
    elif volume.tomographic and volume.positions_mm is not None:
        z_mm = tuple(float(v) for v in volume.positions_mm)
    dz = float(volume.slice_spacing_mm) if volume.slice_spacing_mm else float("nan")
    return PhantomImage(
        values=volume.values.astype(np.float64),
        spacing_mm=(dz, float(dy), float(dx)),
        header=header,
        origin_mm=origin,
        z_mm=z_mm,
        tomographic=volume.tomographic,
        source=tuple(sorted({str(p) for p in volume.paths})),
    )


def _facts(ds: Dataset, modality: str) -> HeaderFacts:
    def text(keyword: str) -> str | None:
        try:
            return attrs.text(ds, keyword)
        except DicomFeatureError:
            return None

    def number(target: Dataset | None, keyword: str) -> float | None:
        if target is None:
            return None
        try:
            return attrs.number(target, keyword)
        except DicomFeatureError:
            return None

    series_time = None
    try:
        if ds.get("SeriesDate") and ds.get("SeriesTime"):
            series_time = combine(
                parse_da(ds.SeriesDate, "SeriesDate"), parse_tm(ds.SeriesTime, "SeriesTime")
            )
    except DicomFeatureError:
        series_time = None
    item = None
    sequence = ds.get("RadiopharmaceuticalInformationSequence")
    if sequence:
        item = sequence[0]
    start = None
    if item is not None and item.get("RadiopharmaceuticalStartDateTime"):
        try:
            start = parse_dt(item.RadiopharmaceuticalStartDateTime, "RadiopharmaceuticalStart")
        except DicomFeatureError:
            start = None
    return HeaderFacts(
        modality=modality,
        units=text("Units"),
        decay_correction=text("DecayCorrection"),
        series_time=series_time,
        radiopharmaceutical_start=start,
        half_life_s=number(item, "RadionuclideHalfLife"),
        total_dose=number(item, "RadionuclideTotalDose"),
        patient_weight_kg=number(ds, "PatientWeight"),
        patient_name=str(ds.get("PatientName", "")) or None,
        manufacturer=text("Manufacturer"),
        model=text("ManufacturerModelName"),
        software_versions=text("SoftwareVersions"),
    )
