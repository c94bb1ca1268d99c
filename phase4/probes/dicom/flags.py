"""Artifact and integrity flags: each a name, raised or not, and the evidence (JSON scalars).

Every threshold is a module constant documented where it is defined; all flags are computed
for every series (a flag that does not apply, e.g. attenuation correction for planar NM, is
not raised and says so in its evidence), so each is a stable binary stream for monitoring.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from phase4.probes.dicom import attrs
from phase4.probes.dicom.errors import DicomFeatureError
from phase4.probes.dicom.isotope import DoseInfo
from phase4.probes.dicom.nuclides import HALF_LIFE_TOLERANCE, lookup
from phase4.probes.dicom.volume import Volume

Evidence = dict[str, str | int | float | bool | None]

# Saturation: stored values at the storage type's maximum (e.g. 32767 for int16). Scanners
# scale each slice so its maximum maps to the top of the range, so one such voxel per slice is
# normal; a plateau of several is clipping.
SATURATION_MIN_VOXELS = 5
# Negative values: OSEM/PSF images are non-negative; FBP and a wrong RescaleIntercept are not.
# Raised when more than 0.1% of voxels are below -1% of the 99.5th percentile.
NEGATIVE_LEVEL = 0.01
NEGATIVE_MAX_FRACTION = 0.001
# Truncation: body (above the body threshold) in the outer ring of the reconstructed field of
# view - a 2-pixel ring inside the circle inscribed in the matrix (PET and SPECT reconstruct a
# circular FOV), or the matrix border for planar NM. Raised when, in any slice, at least 2% of
# the ring is body: the body (or an arm) runs out of the field of view.
TRUNCATION_RING_PX = 2
TRUNCATION_MIN_FRACTION = 0.02
# Weight (kg) outside this range is flagged (SUV is refused at <= 0 or > 400 kg).
WEIGHT_RANGE_KG = (20.0, 250.0)
# Activity per kg for nuclides not in phase4.probes.dicom.nuclides: only gross unit errors.
DEFAULT_ACTIVITY_MBQ_PER_KG = (0.05, 50.0)
# Units: a BQML image whose 99.5th percentile is below 100 Bq/mL holds kBq/mL or SUV values
# (whole-body PET tissue is 10^3 - 10^5 Bq/mL); a GML image above 1000 holds Bq/mL.
BQML_MIN_REFERENCE = 100.0
GML_MAX_REFERENCE = 1000.0
# Motion: the centre of the body outline (binary mask, so hot organs do not pull it) should
# move smoothly along the body. A step of more than 15 mm between the medians of the 3 slices
# either side of a boundary is a patient who moved; evaluated at bed boundaries (a change of
# AcquisitionTime between adjacent slices) when there are several beds, else everywhere.
MOTION_WINDOW_SLICES = 3
MOTION_MAX_STEP_MM = 15.0
MOTION_MIN_BODY_PIXELS = 12  # in the 2x2 subsample: about 50 pixels
# Total activity in the FOV above 120% of the decay-corrected injected activity.
MAX_ACTIVITY_RATIO = 1.2


@dataclass(frozen=True)
class Flag:
    """One named check: whether it is raised, and the numbers it was decided on."""

    name: str
    raised: bool
    evidence: Evidence = field(default_factory=dict)


def slices_flag(volume: Volume) -> Flag:
    """missing_or_duplicated_slices: gaps in the positions, repeated positions or instances,
    or fewer slices than NumberOfSlices (0054,0081) announces."""
    header_count = _number(volume, "NumberOfSlices")
    expected = None if header_count is None else int(header_count)
    found = volume.values.shape[0]
    short = expected is not None and volume.modality == "PT" and found < expected
    evidence: Evidence = {
        "slices": found,
        "number_of_slices_header": expected,
        "missing_slices": volume.spacing.missing_slices,
        "gaps": volume.spacing.gaps,
        "duplicate_positions": volume.duplicate_positions,
        "duplicate_instances": volume.duplicate_instances,
    }
    raised = bool(
        volume.spacing.missing_slices
        or volume.duplicate_positions
        or volume.duplicate_instances
        or short
    )
    return Flag("missing_or_duplicated_slices", raised, evidence)


def spacing_flag(volume: Volume) -> Flag:
    """inconsistent_spacing: steps between slice positions that are not a whole number of
    median steps, or PixelSpacing that differs between slices."""
    s = volume.spacing
    return Flag(
        "inconsistent_spacing",
        bool(s.irregular_steps or volume.pixel_spacing_varies),
        {
            "median_step_mm": _round(s.median_step_mm),
            "min_step_mm": _round(s.min_step_mm),
            "max_step_mm": _round(s.max_step_mm),
            "irregular_steps": s.irregular_steps,
            "pixel_spacing_varies": volume.pixel_spacing_varies,
        },
    )


def truncation_flag(volume: Volume, body: np.ndarray) -> Flag:
    """truncation: body on the edge ring of the field of view (``body``: the body mask)."""
    _, rows, cols = body.shape
    ring = _edge_ring(rows, cols, volume.tomographic)
    if not ring.any():
        return Flag("truncation", False, {"edge_fraction_max": None})
    fraction = body[:, ring].mean(axis=1)  # per slice, the share of the ring that is body
    worst = float(fraction.max())
    return Flag(
        "truncation",
        worst >= TRUNCATION_MIN_FRACTION,
        {
            "edge_fraction_max": round(worst, 4),
            "slices_affected": int(np.sum(fraction >= TRUNCATION_MIN_FRACTION)),
            "min_fraction": TRUNCATION_MIN_FRACTION,
        },
    )


def saturation_flag(volume: Volume, image: np.ndarray, minimum: float, reference: float) -> Flag:
    """saturated_or_negative_voxels: clipped stored values, or many clearly negative voxels
    (``image``, its ``minimum`` and ``reference`` (99.5th percentile) in the same units)."""
    saturated = volume.saturated_voxels
    worst_slice = int(saturated.max()) if saturated.size else 0
    negative = 0
    if reference > 0 and minimum < -NEGATIVE_LEVEL * reference:
        negative = int(np.count_nonzero(image < -NEGATIVE_LEVEL * reference))
    fraction = negative / image.size
    return Flag(
        "saturated_or_negative_voxels",
        worst_slice >= SATURATION_MIN_VOXELS or fraction > NEGATIVE_MAX_FRACTION,
        {
            "saturated_voxels": int(saturated.sum()),
            "saturated_voxels_worst_slice": worst_slice,
            "negative_voxels": negative,
            "negative_fraction": round(fraction, 6),
            "min_relative_to_reference": _round(minimum / reference) if reference > 0 else None,
        },
    )


def correction_flags(volume: Volume, corrected: tuple[str, ...]) -> list[Flag]:
    """missing_attenuation_correction and missing_decay_correction, from CorrectedImage
    (0028,0051) and DecayCorrection (0054,1102). PET only: uncorrected SPECT is routine."""
    if volume.modality != "PT":
        evidence: Evidence = {"applicable": False}
        return [
            Flag("missing_attenuation_correction", False, dict(evidence)),
            Flag("missing_decay_correction", False, dict(evidence)),
        ]
    decay = _text(volume, "DecayCorrection")
    listed = "\\".join(corrected) or None
    return [
        Flag(
            "missing_attenuation_correction",
            "ATTN" not in corrected,
            {"corrected_image": listed},
        ),
        Flag(
            "missing_decay_correction",
            "DECY" not in corrected or (decay or "").upper() == "NONE",
            {"corrected_image": listed, "decay_correction": decay},
        ),
    ]


def uptake_flag(dose: DoseInfo) -> Flag:
    """implausible_uptake_time: outside the nuclide's window (phase4.probes.dicom.nuclides; F-18:
    20 min - 4 h), or negative for any nuclide."""
    uptake = dose.uptake_time_s
    nuclide = lookup(dose.nuclide)
    window = nuclide.uptake_time_s if nuclide else None
    raised = uptake is not None and (
        uptake < 0 or (window is not None and not window[0] <= uptake <= window[1])
    )
    return Flag(
        "implausible_uptake_time",
        raised,
        {
            "uptake_time_s": _round(uptake),
            "nuclide": dose.nuclide,
            "window_min_s": window[0] if window else None,
            "window_max_s": window[1] if window else None,
        },
    )


def activity_flag(dose: DoseInfo) -> Flag:
    """implausible_activity: injected MBq per kg outside the nuclide's range, or a total dose
    that is not a positive number."""
    nuclide = lookup(dose.nuclide)
    low, high = nuclide.activity_mbq_per_kg if nuclide else DEFAULT_ACTIVITY_MBQ_PER_KG
    per_kg = None
    if dose.injected_activity_bq is not None and dose.weight_kg is not None:
        per_kg = dose.injected_activity_bq / 1e6 / dose.weight_kg
    problem = dose.problems.get("RadionuclideTotalDose")
    invalid = problem is not None and not problem.startswith("missing")
    raised = invalid or (per_kg is not None and not low <= per_kg <= high)
    return Flag(
        "implausible_activity",
        raised,
        {
            "activity_mbq_per_kg": _round(per_kg),
            "range_min_mbq_per_kg": low,
            "range_max_mbq_per_kg": high,
            "dose_problem": problem if invalid else None,
        },
    )


def weight_flag(dose: DoseInfo) -> Flag:
    """implausible_weight: PatientWeight outside 20-250 kg, or refused (<= 0, > 400 kg)."""
    problem = dose.problems.get("PatientWeight")
    invalid = problem is not None and not problem.startswith("missing")
    weight = dose.weight_kg
    outside = weight is not None and not WEIGHT_RANGE_KG[0] <= weight <= WEIGHT_RANGE_KG[1]
    return Flag(
        "implausible_weight",
        invalid or outside,
        {
            "weight_bin_kg": None if weight is None else int(weight // 10 * 10),
            "range_min_kg": WEIGHT_RANGE_KG[0],
            "range_max_kg": WEIGHT_RANGE_KG[1],
            "weight_problem": problem if invalid else None,
        },
    )


def units_flag(units: tuple[str, ...], reference: float, bq_ml_per_unit: float | None) -> Flag:
    """inconsistent_units: Units differ between slices, or values that do not fit the Units
    (BQML with a 99.5th percentile below 100 Bq/mL, GML above 1000)."""
    unit = units[0] if len(units) == 1 else None
    mismatch = False
    if unit in ("BQML", "CNTS") and bq_ml_per_unit is not None and reference > 0:
        mismatch = reference * bq_ml_per_unit < BQML_MIN_REFERENCE
    elif unit == "GML":
        mismatch = reference > GML_MAX_REFERENCE
    return Flag(
        "inconsistent_units",
        len(units) > 1 or mismatch,
        {
            "units": "\\".join(units) or None,
            "reference_value": _round(reference),
            "values_do_not_fit_units": mismatch,
        },
    )


def frame_of_reference_flag(ct_series: int, matching: int) -> Flag:
    """pet_ct_frame_of_reference_mismatch: CT series of the same study were given and none
    shares the PET's FrameOfReferenceUID (PS3.3 C.7.4.1), so PET and CT are not registered by
    the scanner and attenuation correction or fusion may be misaligned."""
    return Flag(
        "pet_ct_frame_of_reference_mismatch",
        ct_series > 0 and matching == 0,
        {"ct_series": ct_series, "matching_ct_series": matching},
    )


def motion_flag(volume: Volume, mask: np.ndarray, dose: DoseInfo) -> Flag:
    """motion_proxy: a step in the centre of the body outline between neighbouring slices."""
    pixel = volume.pixel_spacing_mm
    n = mask.shape[0]
    if not volume.tomographic or pixel is None or n < 2 * MOTION_WINDOW_SLICES:
        return Flag("motion_proxy", False, {"max_step_mm": None, "applicable": False})
    sub = mask[:, ::2, ::2].view(np.uint8)  # 2x2 in-plane subsample: mm accuracy is ample
    per_row = sub.sum(axis=2, dtype=np.int32)
    counts = per_row.sum(axis=1)
    ys = per_row @ (np.arange(sub.shape[1]) * 2 * pixel[0])
    xs = sub.sum(axis=1, dtype=np.int32) @ (np.arange(sub.shape[2]) * 2 * pixel[1])
    valid = counts >= MOTION_MIN_BODY_PIXELS
    with np.errstate(invalid="ignore", divide="ignore"):
        centre = np.stack([xs / counts, ys / counts], axis=1)
    boundaries = _bed_boundaries(dose.slice_acquisition_times)
    at_beds = len(boundaries) > 0
    w = MOTION_WINDOW_SLICES
    candidates = boundaries if at_beds else range(w, n - w + 1)
    worst = 0.0
    for b in candidates:
        before, after = slice(max(0, b - w), b), slice(b, min(n, b + w))
        if valid[before].sum() == 0 or valid[after].sum() == 0:
            continue
        a = np.median(centre[before][valid[before]], axis=0)
        c = np.median(centre[after][valid[after]], axis=0)
        worst = max(worst, float(np.hypot(*(c - a))))
    return Flag(
        "motion_proxy",
        worst > MOTION_MAX_STEP_MM,
        {
            "max_step_mm": round(worst, 2),
            "at_bed_boundaries": at_beds,
            "threshold_mm": MOTION_MAX_STEP_MM,
        },
    )


def half_life_flag(dose: DoseInfo) -> Flag:
    """half_life_mismatch: RadionuclideHalfLife differs by more than 1% from the tabulated
    half-life of the nuclide named by RadionuclideCodeSequence (phase4.probes.dicom.nuclides)."""
    nuclide = lookup(dose.nuclide)
    header = dose.half_life_s
    if nuclide is None or header is None:
        return Flag("half_life_mismatch", False, {"half_life_s": header, "expected_s": None})
    deviation = abs(header - nuclide.half_life_s) / nuclide.half_life_s
    return Flag(
        "half_life_mismatch",
        deviation > HALF_LIFE_TOLERANCE,
        {
            "half_life_s": header,
            "expected_s": nuclide.half_life_s,
            "relative_deviation": round(deviation, 5),
        },
    )


def empty_image_flag(reference: float) -> Flag:
    """empty_image: no positive values (the 99.5th percentile is not above zero)."""
    return Flag("empty_image", reference <= 0, {"reference_value": _round(reference)})


def activity_ratio_flag(ratio: float | None) -> Flag:
    """activity_exceeds_injected: total activity in the FOV above 120% of the decay-corrected
    injected activity - a dose, weight or scanner calibration error (EARL tolerates ±10%)."""
    return Flag(
        "activity_exceeds_injected",
        ratio is not None and ratio > MAX_ACTIVITY_RATIO,
        {"total_activity_ratio": _round(ratio), "max_ratio": MAX_ACTIVITY_RATIO},
    )


def _edge_ring(rows: int, cols: int, circular: bool) -> np.ndarray:
    if not circular:
        ring = np.zeros((rows, cols), dtype=bool)
        k = TRUNCATION_RING_PX
        ring[:k, :] = ring[-k:, :] = ring[:, :k] = ring[:, -k:] = True
        return ring
    y, x = np.ogrid[:rows, :cols]
    r = np.hypot(y - (rows - 1) / 2, x - (cols - 1) / 2)
    radius = min(rows, cols) / 2
    return (r <= radius - 0.5) & (r > radius - 0.5 - TRUNCATION_RING_PX)


def _bed_boundaries(times: tuple[object, ...]) -> list[int]:
    """Slice indices where the acquisition time changes from the previous slice."""
    if len(set(times)) < 2:
        return []
    return [i for i in range(1, len(times)) if times[i] != times[i - 1]]


def _number(volume: Volume, keyword: str) -> float | None:
    try:
        return attrs.number(volume.datasets[0], keyword)
    except DicomFeatureError:
        return None


def _text(volume: Volume, keyword: str) -> str | None:
    try:
        return attrs.text(volume.datasets[0], keyword)
    except DicomFeatureError:
        return None


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)
