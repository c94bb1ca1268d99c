"""Body-weight SUV: per-slice factors from a series' pixel values to SUVbw and to Bq/mL.

SUVbw = C (Bq/mL) × body weight (g) / (injected activity (Bq) × decay factor), assuming a
tissue density of 1 g/mL (Boellaard et al. 2015, EANM procedure guidelines for tumour imaging
v2.0; the QIBA/UPICT vendor-neutral pseudo-code). Units (0054,1001) and DecayCorrection
(0054,1102) are those of the PET Series Module, PS3.3 C.8.9.1:

* ``BQML`` — activity concentration. DecayCorrection ``START``: values are decay corrected to
  the series start, so the dose is decayed to it too: factor = 2^(−(start − injection) / T½).
  ``ADMIN``: values are corrected to the injection time: factor 1. ``NONE``: values are as
  measured during each frame, so each slice gets the factor at its own frame reference time
  (series start + FrameReferenceTime, PS3.3 C.8.9.4.1.5; or, without it, the slice's
  AcquisitionTime plus the decay-weighted middle of ActualFrameDuration).
* ``GML`` — already SUVbw (g/mL): factor 1.
* ``CNTS`` — counts, usable only with a vendor calibration: the Philips private group
  (7053, "Philips PET Private Group"): element 1009 "Activity Concentration Scale Factor"
  (counts × factor = Bq/mL, then as BQML) or element 1000 "SUV Scale Factor" (counts × factor
  = SUVbw). Anything else is refused with the reason.

A quantity SUV needs and the header does not give (or gives implausibly: weight <= 0 or
> 400 kg, dose <= 0, injection after the series start) raises a DicomFeatureError naming it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from pydicom.dataset import Dataset

from phase4.probes.dicom import attrs
from phase4.probes.dicom.errors import DicomFeatureError
from phase4.probes.dicom.isotope import DoseInfo, acquisition_time
from phase4.probes.dicom.times import seconds_between
from phase4.probes.dicom.volume import Volume

PHILIPS_PET_CREATOR = "Philips PET Private Group"
PHILIPS_SUV_FACTOR = 0x00  # (7053,1000) SUV Scale Factor
PHILIPS_ACTIVITY_FACTOR = 0x09  # (7053,1009) Activity Concentration Scale Factor
T = TypeVar("T")


@dataclass(frozen=True)
class SuvScale:
    """How to get SUVbw (and Bq/mL, where known) from the volume's values, slice by slice."""

    method: str
    units: str
    decay_correction: str | None
    suv_per_unit: np.ndarray  # SUVbw = value × suv_per_unit[slice]
    bq_ml_per_unit: np.ndarray | None  # Bq/mL = value × bq_ml_per_unit[slice]
    decay_factor: float | None  # the dose's decay factor (median over slices for NONE)


def series_units(volume: Volume) -> tuple[str, ...]:
    """The distinct Units values over the slices, in slice order (empty if none)."""
    seen: dict[bytes, None] = {}
    for ds in _distinct(volume.datasets):
        unit = attrs.identity(ds, "Units")
        if unit:
            seen.setdefault(unit.upper(), None)
    return tuple(u.decode("ascii", "replace") for u in seen)


def suv_scale(volume: Volume, dose: DoseInfo, units: tuple[str, ...] | None = None) -> SuvScale:
    """The SUV scale of ``volume``, or a DicomFeatureError saying what is missing and why
    (``units``: :func:`series_units` of the volume, if already known)."""
    units = series_units(volume) if units is None else units
    if not units:
        why = " (NM images are counts)" if volume.modality == "NM" else ""
        raise DicomFeatureError(f"missing{why}, so SUV cannot be computed", attribute="Units")
    if len(units) > 1:
        raise DicomFeatureError(
            f"differs between slices ({', '.join(units)}), so SUV cannot be computed",
            attribute="Units",
        )
    unit = units[0]
    ones = np.ones(volume.values.shape[0])
    if unit == "BQML":
        return _from_bq_ml(volume, dose, ones, "BQML")
    if unit == "GML":
        bq = _try(lambda: ones * _dose_over_weight(volume, dose))
        return SuvScale("GML", unit, _decay_correction(volume, False), ones, bq, None)
    if unit == "CNTS":
        return _philips(volume, dose)
    raise DicomFeatureError(
        f"Units {unit} is neither an activity concentration (BQML), SUV (GML) nor "
        "vendor-calibrated counts (CNTS), so SUV cannot be computed",
        attribute="Units",
    )


def decay_factors(volume: Volume, dose: DoseInfo) -> np.ndarray:
    """Per slice, the fraction of the injected activity left at the time the values refer
    to (PS3.3 C.8.9.1.1.3 DecayCorrection)."""
    correction = _decay_correction(volume, True)
    n = volume.values.shape[0]
    if correction == "ADMIN":
        return np.ones(n)
    half_life = dose.require("RadionuclideHalfLife", dose.half_life_s)
    if correction == "START":
        return np.full(n, 2.0 ** (-_uptake_s(dose) / half_life))
    if correction == "NONE":
        return 2.0 ** (-_frame_times_s(volume, dose) / half_life)
    raise DicomFeatureError(
        f"{correction} is not START, ADMIN or NONE, so SUV cannot be computed",
        attribute="DecayCorrection",
    )


def _from_bq_ml(volume: Volume, dose: DoseInfo, bq_per_unit: np.ndarray, method: str) -> SuvScale:
    weight_kg = dose.require("PatientWeight", dose.weight_kg)
    activity_bq = dose.require("RadionuclideTotalDose", dose.injected_activity_bq)
    decay = decay_factors(volume, dose)
    suv = bq_per_unit * weight_kg * 1000.0 / (activity_bq * decay)
    return SuvScale(
        method,
        "CNTS" if method != "BQML" else "BQML",
        _decay_correction(volume, True),
        suv,
        bq_per_unit,
        float(np.median(decay)),
    )


def _dose_over_weight(volume: Volume, dose: DoseInfo) -> np.ndarray:
    """Bq/mL per SUV unit: decayed dose / weight (g)."""
    why = "Bq/mL cannot be computed"
    weight_kg = dose.require("PatientWeight", dose.weight_kg, why)
    activity_bq = dose.require("RadionuclideTotalDose", dose.injected_activity_bq, why)
    return activity_bq * decay_factors(volume, dose) / (weight_kg * 1000.0)


def _philips(volume: Volume, dose: DoseInfo) -> SuvScale:
    activity = _private_factors(volume, PHILIPS_ACTIVITY_FACTOR)
    suv_factor = _private_factors(volume, PHILIPS_SUV_FACTOR)
    if activity is not None:
        try:
            return _from_bq_ml(
                volume, dose, activity, "CNTS x Philips activity concentration factor (7053,1009)"
            )
        except DicomFeatureError:
            if suv_factor is None:
                raise
    if suv_factor is not None:
        bq = activity
        if bq is None:
            bq = _try(lambda: suv_factor * _dose_over_weight(volume, dose))
        return SuvScale(
            "CNTS x Philips SUV factor (7053,1000)",
            "CNTS",
            _try(lambda: _decay_correction(volume, True)),
            suv_factor,
            bq,
            _try(lambda: float(np.median(decay_factors(volume, dose)))),
        )
    raise DicomFeatureError(
        "CNTS (counts) without a vendor calibration factor (Philips (7053,1000) SUV Scale "
        "Factor or (7053,1009) Activity Concentration Scale Factor), so SUV cannot be computed",
        attribute="Units",
    )


def _private_factors(volume: Volume, element: int) -> np.ndarray | None:
    """The Philips factor of every slice, or None unless every slice has a usable one."""
    cache: dict[int, float | None] = {}
    out = np.empty(len(volume.datasets))
    for i, ds in enumerate(volume.datasets):
        key = id(ds)
        if key not in cache:
            cache[key] = _philips_value(ds, element)
        value = cache[key]
        if value is None:
            return None
        out[i] = value
    return out


def _philips_value(ds: Dataset, element: int) -> float | None:
    try:
        value = ds.private_block(0x7053, PHILIPS_PET_CREATOR)[element].value
    except (KeyError, ValueError):
        return None
    if isinstance(value, bytes):  # VR UN (implicit VR without a private dictionary entry)
        value = value.decode("ascii", "replace").strip("\x00 ")
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _decay_correction(volume: Volume, required: bool) -> str | None:
    value = attrs.text(volume.datasets[0], "DecayCorrection")
    if value is None and required:
        raise DicomFeatureError(
            "missing, so the time the values refer to is unknown and SUV cannot be computed",
            attribute="DecayCorrection",
        )
    return value.upper() if value else None


def _uptake_s(dose: DoseInfo) -> float:
    start = dose.require("SeriesTime", dose.series_start)
    injection = dose.require("RadiopharmaceuticalStartTime", dose.injection_time)
    uptake = seconds_between(injection, start)
    if uptake < 0:
        raise DicomFeatureError(
            f"the injection is {-uptake:.0f} s after the series start, so SUV cannot be "
            "computed (an injection the day before needs RadiopharmaceuticalStartDateTime)",
            attribute=dose.injection_time_source or "RadiopharmaceuticalStartTime",
        )
    return uptake


def _frame_times_s(volume: Volume, dose: DoseInfo) -> np.ndarray:
    """Seconds from injection to each slice's frame reference time (DecayCorrection NONE)."""
    injection = dose.require("RadiopharmaceuticalStartTime", dose.injection_time)
    start_s = None if dose.series_start is None else _uptake_s(dose)
    times = np.empty(len(volume.datasets))
    for i, ds in enumerate(volume.datasets):
        reference_ms = attrs.fast_number(ds, "FrameReferenceTime")
        if reference_ms is not None and start_s is not None:
            times[i] = start_s + reference_ms / 1000.0
            continue
        acquired = acquisition_time(ds)
        duration_ms = attrs.fast_number(ds, "ActualFrameDuration")
        if acquired is None or duration_ms is None or dose.half_life_s is None:
            raise DicomFeatureError(
                "missing (and no AcquisitionTime with ActualFrameDuration), so the decay of "
                "a DecayCorrection NONE image cannot be computed per frame",
                attribute="FrameReferenceTime",
            )
        middle = decay_weighted_middle_s(dose.half_life_s, duration_ms / 1000.0)
        times[i] = seconds_between(injection, acquired) + middle
    if np.any(times < 0):
        raise DicomFeatureError(
            "a frame starts before the injection, so SUV cannot be computed",
            attribute="FrameReferenceTime",
        )
    return times


def decay_weighted_middle_s(half_life_s: float, duration_s: float) -> float:
    """Time after a frame's start at which the activity equals its average over the frame:
    ln(λT / (1 − e^(−λT))) / λ, λ = ln 2 / T½ - the definition of Frame Reference Time
    (PS3.3 C.8.9.4.1.5). About T/2 − λT²/24 for short frames."""
    lam = math.log(2) / half_life_s
    x = lam * duration_s
    return math.log(x / -math.expm1(-x)) / lam if x > 0 else 0.0


def _try(compute: Callable[[], T]) -> T | None:
    """``compute()``, or None if the header does not allow it (optional extras only)."""
    try:
        return compute()
    except DicomFeatureError:
        return None


def _distinct(datasets: tuple[Dataset, ...]) -> list[Dataset]:
    seen: set[int] = set()
    out = []
    for ds in datasets:
        if id(ds) not in seen:
            seen.add(id(ds))
            out.append(ds)
    return out
