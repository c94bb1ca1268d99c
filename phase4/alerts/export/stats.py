"""Small statistics for the surveillance report: Wilson intervals, means with normal intervals,
and the coarse population bands. Pure functions, no database."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

Z95 = 1.959963984540054  # two-sided 95 %

# Feature keys the population section reads (the first present wins). Only coarse bands leave
# the store: a sex category, an age band and a weight band, counted over the whole period.
SEX_KEYS = ("patient_sex", "sex", "PatientSex")
# An age band given at the edge (the probe's identifiers policy: no birth date, at most a band)
# is taken as it is; an age in years is banded here.
AGE_BAND_KEYS = ("patient_age_band", "age_band")
AGE_KEYS = ("patient_age_y", "age_y", "age_years", "patient_age", "age", "PatientAge")
# The scanner a record was acquired on, for the subgroup tables.
SCANNER_KEYS = ("scanner_model", "ManufacturerModelName", "scanner")
BAND_CHARS_MAX = 40
WEIGHT_KEYS = ("patient_weight_kg", "weight_kg", "weight_bin_kg", "PatientWeight")

AGE_BANDS: tuple[tuple[float, str], ...] = (
    (18, "<18"),
    (40, "18-39"),
    (65, "40-64"),
    (80, "65-79"),
    (math.inf, "80+"),
)
WEIGHT_BANDS: tuple[tuple[float, str], ...] = (
    (50, "<50 kg"),
    (70, "50-69 kg"),
    (90, "70-89 kg"),
    (110, "90-109 kg"),
    (math.inf, "110+ kg"),
)
NOT_RECORDED = "not recorded"
UNREADABLE = "unreadable"


def wilson(successes: int, n: int, z: float = Z95) -> dict[str, Any]:
    """A proportion with its Wilson score interval (Wilson 1927); empty when ``n`` is 0."""
    if n <= 0:
        return {"value": None, "ci_low": None, "ci_high": None, "successes": 0, "n": 0}
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return {
        "value": p,
        "ci_low": max(0.0, centre - half),
        "ci_high": min(1.0, centre + half),
        "successes": successes,
        "n": n,
    }


def mean_ci(values: Sequence[float], z: float = Z95) -> dict[str, Any]:
    """Mean with a normal-approximation 95 % interval (mean ± z·sd/√n); sd is the sample sd."""
    n = len(values)
    if n == 0:
        return {"mean": None, "ci_low": None, "ci_high": None, "sd": None, "n": 0}
    mean = math.fsum(values) / n
    if n == 1:
        return {"mean": mean, "ci_low": None, "ci_high": None, "sd": None, "n": 1}
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = z * sd / math.sqrt(n)
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "sd": sd, "n": n}


def median(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2


def _first(features: Mapping[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        if key in features and features[key] is not None and features[key] != "":
            return features[key]
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        text = value.strip().upper()
        # DICOM Age String: nnnD, nnnW, nnnM or nnnY
        if len(text) == 4 and text[:3].isdigit() and text[3] in "DWMY":
            scale = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}[text[3]]
            return int(text[:3]) * scale
        try:
            number = float(text)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _band(value: float, bands: Sequence[tuple[float, str]]) -> str:
    for upper, label in bands:
        if value < upper:
            return label
    return bands[-1][1]


def sex_band(features: Mapping[str, Any]) -> str:
    value = _first(features, SEX_KEYS)
    if value is None:
        return NOT_RECORDED
    text = str(value).strip().upper()
    return {"M": "male", "MALE": "male", "F": "female", "FEMALE": "female"}.get(text, "other")


def age_band(features: Mapping[str, Any]) -> str:
    given = _first(features, AGE_BAND_KEYS)
    if given is not None:
        text = str(given).strip()
        return text[:BAND_CHARS_MAX] if text else NOT_RECORDED
    value = _first(features, AGE_KEYS)
    if value is None:
        return NOT_RECORDED
    number = _number(value)
    if number is None or number < 0 or number > 130:
        return UNREADABLE
    return _band(number, AGE_BANDS)


def weight_band(features: Mapping[str, Any]) -> str:
    value = _first(features, WEIGHT_KEYS)
    if value is None:
        return NOT_RECORDED
    number = _number(value)
    if number is None or number <= 0 or number > 500:
        return UNREADABLE
    return _band(number, WEIGHT_BANDS)


def scanner_band(features: Mapping[str, Any]) -> str:
    value = _first(features, SCANNER_KEYS)
    return NOT_RECORDED if value is None else str(value).strip()[:BAND_CHARS_MAX] or NOT_RECORDED


POPULATION_DIMENSIONS = {
    "sex": (sex_band, ("male", "female", "other")),
    "age_band": (age_band, tuple(label for _, label in AGE_BANDS)),
    "weight_band": (weight_band, tuple(label for _, label in WEIGHT_BANDS)),
    "scanner": (scanner_band, ()),
}
