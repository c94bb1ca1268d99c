"""Features of one PET (PT) or NM series, on the SUV scale, with artifact and integrity flags.

``extract_series(paths)`` reads a folder, a file or a list of files holding one PET/NM series
(CT series of the same study alongside are used for the frame-of-reference check);
``extract_study(paths)`` handles several series and never raises for a bad file or series:
each becomes a DicomFeatureError in ``StudyFeatures.errors``. ``SeriesFeatures.to_record()``
is what a probe sends: flat JSON scalars, no identifiers, no dates.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from phase4.probes.dicom import attrs
from phase4.probes.dicom.errors import DicomFeatureError
from phase4.probes.dicom.flags import (
    Flag,
    activity_flag,
    activity_ratio_flag,
    correction_flags,
    empty_image_flag,
    frame_of_reference_flag,
    half_life_flag,
    motion_flag,
    saturation_flag,
    slices_flag,
    spacing_flag,
    truncation_flag,
    units_flag,
    uptake_flag,
    weight_flag,
)
from phase4.probes.dicom.header import HeaderCovariates, read_header, read_header_without_pixels
from phase4.probes.dicom.isotope import read_dose_info
from phase4.probes.dicom.quantify import (
    Body,
    ImageFeatures,
    background_noise,
    body_mask,
    suv_statistics,
)
from phase4.probes.dicom.read import PathsArg, ReadResult, SeriesFiles, read_series
from phase4.probes.dicom.suv import SuvScale, series_units, suv_scale
from phase4.probes.dicom.volume import Volume, build_volume, check_supported

JsonScalar = str | int | float | bool | None


@dataclass(frozen=True)
class SeriesFeatures:
    """Everything extracted from one PET/NM series.

    ``study_uid``, ``series_uid`` and ``frame_of_reference_uid`` are kept for the caller
    (e.g. to pseudonymise the study or match AI outputs) and are never part of
    :meth:`to_record`.
    """

    header: HeaderCovariates
    image: ImageFeatures
    flags: dict[str, Flag]
    suv_unavailable_reason: str | None  # "Attribute: why", no file name (see _features)
    suv_method: str | None
    files: int
    pixel_error: str | None = None  # why the pixels could not be decoded (header-only features)
    study_uid: str | None = field(default=None, repr=False)
    series_uid: str | None = field(default=None, repr=False)
    frame_of_reference_uid: str | None = field(default=None, repr=False)

    @property
    def artifact_flag(self) -> bool:
        """True if any flag is raised."""
        return any(flag.raised for flag in self.flags.values())

    @property
    def raised_flags(self) -> tuple[str, ...]:
        return tuple(name for name, flag in self.flags.items() if flag.raised)

    def to_record(self) -> dict[str, dict[str, object]]:
        """``{"features": {name: scalar}, "flags": {name: {"raised": bool, ...evidence}}}``.

        Features hold the header covariates, the image features, ``suv_unavailable_reason``,
        ``artifact_flag`` and one ``flag_<name>`` boolean per flag; non-finite floats become
        None. No patient identifiers, UIDs or dates are included.
        """
        features: dict[str, JsonScalar] = {}
        for source in (asdict(self.header), asdict(self.image)):
            features.update({k: _scalar(v) for k, v in source.items()})
        features["suv_available"] = self.suv_unavailable_reason is None
        features["suv_unavailable_reason"] = self.suv_unavailable_reason
        features["suv_method"] = self.suv_method
        features["files"] = self.files
        features["pixels_decoded"] = self.pixel_error is None
        features["artifact_flag"] = self.artifact_flag
        for name, flag in self.flags.items():
            features[f"flag_{name}"] = flag.raised
        flags = {
            name: {"raised": flag.raised, **{k: _scalar(v) for k, v in flag.evidence.items()}}
            for name, flag in self.flags.items()
        }
        return {"features": features, "flags": flags}


@dataclass(frozen=True)
class StudyFeatures:
    """The PET/NM series of one call, and every file or series that could not be used."""

    series: tuple[SeriesFeatures, ...]
    errors: tuple[DicomFeatureError, ...]
    ct_series: int
    files: int

    def to_records(self) -> list[dict[str, dict[str, object]]]:
        return [s.to_record() for s in self.series]


def extract_series(paths: PathsArg) -> SeriesFeatures:
    """Features of the one PET or NM series under ``paths``.

    Raises DicomFeatureError if there is no usable PET/NM series (the error of the file or
    series that failed, or a summary naming them) or more than one (use extract_study).
    """
    result = read_series(paths)
    candidates = [s for s in result.series if s.modality in ("PT", "NM")]
    if len(candidates) > 1:
        raise DicomFeatureError(
            f"{len(candidates)} PET/NM series found where one was expected "
            "(extract_study handles several)",
            path=_label(paths),
            attribute="SeriesInstanceUID",
        )
    if len(candidates) == 1:
        return _extract(candidates[0], result)
    errors = list(result.errors)
    for series in result.series:
        try:
            check_supported(series)
        except DicomFeatureError as exc:
            errors.append(exc)
    if len(errors) == 1:
        raise errors[0]
    shown = "; ".join(str(e) for e in errors[:3])
    more = f"; and {len(errors) - 3} more" if len(errors) > 3 else ""
    raise DicomFeatureError(
        f"no PET or NM series among {result.files_total} files ({shown}{more})",
        path=_label(paths),
    )


def extract_study(paths: PathsArg) -> StudyFeatures:
    """Features of every PET/NM series under ``paths``; never raises for bad input files.

    A PET/NM series whose pixels cannot be decoded (a compressed transfer syntax without an
    installed decoder, a corrupt stream) still gives its header covariates, with
    ``pixel_error`` set and no image features; its error is also in ``errors``."""
    result = read_series(paths)
    errors = list(result.errors)
    features = []
    for series in result.series:
        if series.modality == "CT":
            continue
        try:
            features.append(_extract(series, result))
        except DicomFeatureError as exc:
            errors.append(exc)
            if exc.attribute == "PixelData":
                header_only = _header_only(series, exc)
                if header_only is not None:
                    features.append(header_only)
    cts = sum(1 for s in result.series if s.modality == "CT")
    return StudyFeatures(tuple(features), tuple(errors), cts, result.files_total)


def describe(paths: PathsArg) -> str:
    """Human-readable features, flags and errors of the series under ``paths``."""
    study = extract_study(paths)
    lines = []
    for index, series in enumerate(study.series, start=1):
        record = series.to_record()
        h = series.header
        lines.append(f"series {index}: {h.modality} {h.manufacturer or ''} {h.model or ''}")
        for name, value in record["features"].items():
            if not name.startswith("flag_"):
                lines.append(f"  {name}: {_show(value)}")
        raised = ", ".join(series.raised_flags) or "none"
        lines.append(f"  flags raised: {raised}")
        for name in series.raised_flags:
            lines.append(f"    {name}: {json.dumps(record['flags'][name])}")
    for error in study.errors:
        lines.append(f"error: {error}")
    if not lines and study.ct_series:
        lines.append(f"only CT ({study.ct_series} series), no PET or NM series")
    elif not lines:
        lines.append("no DICOM files found")
    return "\n".join(lines)


def _extract(series: SeriesFiles, result: ReadResult) -> SeriesFeatures:
    first = series.first
    try:
        volume = build_volume(series)
        return _features(series, volume, result)
    except DicomFeatureError as exc:
        raise (exc if exc.path else exc.with_path(first.path)) from None
    except Exception as exc:
        # The contract is one DicomFeatureError per unusable series, never a traceback: a
        # file malformed in a way no typed accessor anticipated still ends here, named.
        raise DicomFeatureError(
            f"unusable series ({type(exc).__name__}: {str(exc)[:160]})", path=first.path
        ) from exc


def _header_only(series: SeriesFiles, error: DicomFeatureError) -> SeriesFeatures | None:
    """The header covariates of a supported series whose pixels failed, or None."""
    try:
        check_supported(series)
        datasets = tuple(f.ds for f in series.files)
        modality = series.modality or "PT"
        header = read_header_without_pixels(modality, datasets, read_dose_info(modality, datasets))
    except Exception:  # a header too broken for covariates: the pixel error stands alone
        return None
    reason = str(DicomFeatureError(error.reason, attribute=error.attribute))
    return SeriesFeatures(
        header=header,
        image=ImageFeatures(),
        flags={},
        suv_unavailable_reason=reason,
        suv_method=None,
        files=len(series.files),
        pixel_error=reason,
        study_uid=series.study_uid,
        series_uid=series.series_uid,
        frame_of_reference_uid=_frame_of_reference(series),
    )


def _features(series: SeriesFiles, volume: Volume, result: ReadResult) -> SeriesFeatures:
    dose = read_dose_info(volume.modality, volume.datasets)
    header = read_header(volume, dose)
    units = series_units(volume)
    scale: SuvScale | None = None
    reason = None
    try:
        scale = suv_scale(volume, dose, units)
    except DicomFeatureError as exc:
        # Without the file name: exported files are often named by their SOPInstanceUID.
        reason = str(DicomFeatureError(exc.reason, attribute=exc.attribute))
    scaled = _ScaledImage.of(volume, scale)
    body = body_mask(scaled.array)
    image = _image_features(volume, scale, scaled, body, dose.weight_kg)
    bq_ml = None
    if scale is not None and scale.bq_ml_per_unit is not None:
        bq_ml = float(np.median(scale.bq_ml_per_unit))
    corrected = attrs.words(volume.datasets[0], "CorrectedImage")
    ct_series, matching = _ct_match(series, result)
    flag_list = [
        slices_flag(volume),
        spacing_flag(volume),
        truncation_flag(volume, body.mask),
        saturation_flag(volume, scaled.array, scaled.minimum, body.reference),
        *correction_flags(volume, corrected),
        uptake_flag(dose),
        activity_flag(dose),
        weight_flag(dose),
        units_flag(units, scaled.in_values(body.reference), bq_ml),
        frame_of_reference_flag(ct_series, matching),
        motion_flag(volume, body.mask, dose),
        half_life_flag(dose),
        empty_image_flag(body.reference),
        activity_ratio_flag(image.total_activity_ratio),
    ]
    return SeriesFeatures(
        header=header,
        image=image,
        flags={flag.name: flag for flag in flag_list},
        suv_unavailable_reason=reason,
        suv_method=scale.method if scale else None,
        files=len(series.files),
        study_uid=series.study_uid,
        series_uid=series.series_uid,
        frame_of_reference_uid=_frame_of_reference(series),
    )


@dataclass(frozen=True)
class _ScaledImage:
    """The array statistics are computed on, and the factor from it to SUV.

    All statistics used are scale-equivariant, so when every slice has the same SUV factor
    they are computed on the rescaled values and multiplied by ``suv_per_value`` (saving a
    pass over the volume); with per-slice factors the SUV image is materialised.
    """

    array: np.ndarray
    suv_per_value: float  # SUV = statistic of ``array`` × suv_per_value (1 if no SUV)
    values_per_array: float  # value units per array unit (for value-unit thresholds)
    minimum: float  # smallest voxel of ``array``

    @staticmethod
    def of(volume: Volume, scale: SuvScale | None) -> _ScaledImage:
        minimum = float(volume.slice_min.min())
        if scale is None:
            return _ScaledImage(volume.values, 1.0, 1.0, minimum)
        factor = _constant(scale.suv_per_unit)
        if factor is not None:
            return _ScaledImage(volume.values, factor, 1.0, minimum)
        per_slice = scale.suv_per_unit
        array = volume.values * per_slice.astype(np.float32)[:, None, None]
        minimum = float(np.min(volume.slice_min * per_slice))
        return _ScaledImage(array, 1.0, 1.0 / float(np.median(per_slice)), minimum)

    def in_values(self, value: float) -> float:
        return value * self.values_per_array


def _image_features(
    volume: Volume,
    scale: SuvScale | None,
    scaled: _ScaledImage,
    body: Body,
    weight_kg: float | None,
) -> ImageFeatures:
    """SUV-scale features (see phase4.probes.dicom.quantify for the definitions)."""
    noise = background_noise(scaled.array, body.mask, _spacing(volume))
    if scale is None or body.reference <= 0:
        return ImageFeatures(
            body_voxels=int(body.mask.sum()) if body.reference > 0 else 0,
            background_cv=noise.cv,
            background_regions=noise.regions,
        )
    unit = scaled.suv_per_value
    stats = suv_statistics(scaled.array, body)
    slice_sums = volume.values.sum(axis=(1, 2)).astype(np.float64)  # pairwise float32 sums
    voxel_ml = volume.voxel_volume_ml
    total_mbq = ratio = None
    if voxel_ml is not None:
        if scale.bq_ml_per_unit is not None:
            total_mbq = float(slice_sums @ scale.bq_ml_per_unit) * voxel_ml / 1e6
        if weight_kg:
            ratio = float(slice_sums @ scale.suv_per_unit) * voxel_ml / (weight_kg * 1000.0)
    return ImageFeatures(
        suv_max=float(np.max(volume.slice_max * scale.suv_per_unit)),
        suv_mean=_times(stats.suv_mean, unit),
        suv_p50=_times(stats.suv_p50, unit),
        suv_p90=_times(stats.suv_p90, unit),
        suv_p99=_times(stats.suv_p99, unit),
        body_voxels=stats.body_voxels,
        body_volume_ml=None if voxel_ml is None else (stats.body_voxels or 0) * voxel_ml,
        background_cv=noise.cv,
        background_suv_mean=_times(noise.mean, unit),
        background_regions=noise.regions,
        total_activity_mbq=total_mbq,
        total_activity_ratio=ratio,
    )


def _ct_match(series: SeriesFiles, result: ReadResult) -> tuple[int, int]:
    """CT series of the same study, and how many share this series' FrameOfReferenceUID."""
    own = _frame_of_reference(series)
    cts = [s for s in result.series if s.modality == "CT" and s.study_uid == series.study_uid]
    matching = sum(1 for ct in cts if own is not None and _frame_of_reference(ct) == own)
    return len(cts), matching


def _frame_of_reference(series: SeriesFiles) -> str | None:
    try:
        return attrs.text(series.first.ds, "FrameOfReferenceUID")
    except DicomFeatureError:
        return None


def _spacing(volume: Volume) -> tuple[float, float, float] | None:
    if volume.pixel_spacing_mm is None:
        return None
    dz = volume.slice_spacing_mm if volume.tomographic and volume.slice_spacing_mm else 0.0
    return (dz, *volume.pixel_spacing_mm)


def _constant(per_slice: np.ndarray) -> float | None:
    """The common value if all slices share it (to 1e-9), else None."""
    first = float(per_slice[0])
    if np.allclose(per_slice, first, rtol=1e-9, atol=0.0):
        return first
    return None


def _times(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def _scalar(value: object) -> JsonScalar:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if math.isfinite(number) else None
    return str(value)


def _show(value: JsonScalar) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "-" if value is None else str(value)


def _label(paths: PathsArg) -> str | None:
    if isinstance(paths, str | Path):
        return str(paths)
    return None
