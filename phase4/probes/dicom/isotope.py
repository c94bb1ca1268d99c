"""What was injected, when, into whom, and when the series started: the inputs of SUV.

Read leniently: each quantity is either a usable value or None with the reason recorded in
``problems`` (attribute keyword -> reason), so header covariates survive a header that cannot
support SUV; ``phase4.probes.dicom.suv`` turns a needed-but-missing quantity into the refusal.

Sources (PS3.3):

* RadiopharmaceuticalInformationSequence, first item — PET Isotope Module C.8.9.2 (total dose
  in **Bq**) or NM Isotope Module C.8.4.10 (total dose in **MBq**); RadionuclideHalfLife (s);
  RadiopharmaceuticalStartDateTime, or RadiopharmaceuticalStartTime on the SeriesDate;
  RadionuclideCodeSequence (CID 4020) for the nuclide.
* PatientWeight (kg) and PatientSize (m) — Patient Study Module C.7.2.2.
* Series start: SeriesDate/SeriesTime, which for DecayCorrection START is the time the image
  is decay corrected to (PS3.3 C.8.9.1.1.3). Following the QIBA/UPICT vendor-neutral SUV
  pseudo-code, a SeriesTime later than the earliest acquisition time means the series was
  re-created after the scan (post-processing resets it on some systems): the GE private scan
  start (0009,100D) is used if present, else the earliest AcquisitionDate/AcquisitionTime.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TypeVar

from pydicom.dataset import Dataset

from phase4.probes.dicom import attrs
from phase4.probes.dicom.errors import DicomFeatureError
from phase4.probes.dicom.nuclides import identify
from phase4.probes.dicom.times import combine, parse_da, parse_dt, parse_tm, seconds_between

MAX_WEIGHT_KG = 400.0  # heavier than any scanner table takes: a unit or entry error
MAX_HEIGHT_M = 2.5
GE_PET_CREATOR = "GEMS_PETD_01"
T = TypeVar("T")
_ACQUISITION_KEYWORDS = ("AcquisitionDateTime", "AcquisitionDate", "AcquisitionTime")


@dataclass(frozen=True)
class DoseInfo:
    """Injection, patient and timing; None where the header does not give a usable value."""

    radiopharmaceutical: str | None = None
    nuclide: str | None = None
    injected_activity_bq: float | None = None
    half_life_s: float | None = None
    injection_time: datetime | None = None
    injection_time_source: str | None = None
    series_start: datetime | None = None
    series_start_source: str | None = None
    weight_kg: float | None = None
    height_m: float | None = None
    slice_acquisition_times: tuple[datetime | None, ...] = ()  # per slice, volume order
    problems: dict[str, str] = field(default_factory=dict)

    @property
    def uptake_time_s(self) -> float | None:
        """Series start minus injection, in seconds (negative if the header says so)."""
        if self.injection_time is None or self.series_start is None:
            return None
        return seconds_between(self.injection_time, self.series_start)

    def require(self, attribute: str, value: T | None, why: str = "SUV cannot be computed") -> T:
        """``value``, or the refusal naming ``attribute`` (and why it is unusable) if None."""
        if value is None:
            reason = self.problems.get(attribute, "missing")
            raise DicomFeatureError(f"{reason}, so {why}", attribute=attribute)
        return value


def read_dose_info(modality: str, datasets: tuple[Dataset, ...]) -> DoseInfo:
    """Everything SUV needs, from the first slice (times of every slice for the start)."""
    ds = datasets[0]
    problems: dict[str, str] = {}
    weight = _checked(ds, "PatientWeight", problems, 0.0, MAX_WEIGHT_KG, "kg")
    height = _checked(ds, "PatientSize", problems, 0.0, MAX_HEIGHT_M, "m")
    acquired = tuple(acquisition_times(datasets))
    series_start, start_source = _series_start(ds, acquired, problems)
    item = _get(attrs.item, ds, "RadiopharmaceuticalInformationSequence", problems)
    if item is None:
        for keyword in ("RadionuclideTotalDose", "RadionuclideHalfLife"):
            problems.setdefault(keyword, "missing (no RadiopharmaceuticalInformationSequence)")
        problems.setdefault(
            "RadiopharmaceuticalStartTime", "missing (no RadiopharmaceuticalInformationSequence)"
        )
        return DoseInfo(
            series_start=series_start,
            series_start_source=start_source,
            weight_kg=weight,
            height_m=height,
            slice_acquisition_times=acquired,
            problems=problems,
        )
    # PET Isotope Module: Bq; NM Isotope Module: MBq (PS3.3 C.8.9.2, C.8.4.10)
    dose_unit = "MBq" if modality == "NM" else "Bq"
    dose = _checked(item, "RadionuclideTotalDose", problems, 0.0, None, dose_unit)
    if dose is not None and dose_unit == "MBq":
        dose *= 1e6
    half_life = _checked(item, "RadionuclideHalfLife", problems, 0.0, None, "s")
    injection, injection_source = _injection_time(item, ds, series_start, problems)
    return DoseInfo(
        radiopharmaceutical=_radiopharmaceutical(item, problems),
        nuclide=_nuclide(item, ds, problems),
        injected_activity_bq=dose,
        half_life_s=half_life,
        injection_time=injection,
        injection_time_source=injection_source,
        series_start=series_start,
        series_start_source=start_source,
        weight_kg=weight,
        height_m=height,
        slice_acquisition_times=acquired,
        problems=problems,
    )


def _checked(
    ds: Dataset,
    keyword: str,
    problems: dict[str, str],
    low_exclusive: float,
    high: float | None,
    unit: str,
) -> float | None:
    value = _get(attrs.number, ds, keyword, problems)
    if value is None:
        problems.setdefault(keyword, "missing")
        return None
    if value <= low_exclusive or (high is not None and value > high):
        bound = f"<= {low_exclusive:g}" if value <= low_exclusive else f"> {high:g}"
        problems[keyword] = f"{value:g} {unit} is implausible ({bound})"
        return None
    return value


def _series_start(
    ds: Dataset, acquired: tuple[datetime | None, ...], problems: dict[str, str]
) -> tuple[datetime | None, str | None]:
    series = _date_time(ds, "SeriesDate", "SeriesTime", problems)
    known = [t for t in acquired if t is not None]
    earliest = min(known) if known else None
    if series is not None and (earliest is None or seconds_between(series, earliest) >= -1.0):
        return series, "SeriesTime"
    if series is not None and earliest is not None:
        scan = _ge_scan_start(ds)
        if scan is not None:
            return scan, "GE scan_datetime (0009,100D); SeriesTime is after the acquisition"
        return earliest, "AcquisitionTime; SeriesTime is after the acquisition"
    if earliest is not None:
        return earliest, "AcquisitionTime"
    problems.setdefault("SeriesTime", "missing, and no AcquisitionTime either")
    return None, None


def acquisition_times(datasets: tuple[Dataset, ...]) -> list[datetime | None]:
    """:func:`acquisition_time` of each dataset, parsing each distinct value once (the slices
    of one bed share their acquisition time)."""
    parsed: dict[object, datetime | None] = {}
    out = []
    previous: Dataset | None = None
    for ds in datasets:
        if ds is previous:  # an NM multi-frame file: one dataset for every frame
            out.append(out[-1])
            continue
        previous = ds
        key = tuple(attrs.identity(ds, k) for k in _ACQUISITION_KEYWORDS)
        if key not in parsed:
            parsed[key] = acquisition_time(ds)
        out.append(parsed[key])
    return out


def acquisition_time(ds: Dataset) -> datetime | None:
    """AcquisitionDateTime, or AcquisitionDate + AcquisitionTime, of one slice (None if not
    given or not parseable)."""
    if "AcquisitionDateTime" in ds:
        try:
            return parse_dt(attrs.raw(ds, "AcquisitionDateTime"), "AcquisitionDateTime")
        except DicomFeatureError:
            pass
    return _date_time(ds, "AcquisitionDate", "AcquisitionTime", {}, record=False)


def _date_time(
    ds: Dataset, date_kw: str, time_kw: str, problems: dict[str, str], *, record: bool = True
) -> datetime | None:
    try:
        day = parse_da(attrs.raw(ds, date_kw), date_kw)
        moment = parse_tm(attrs.raw(ds, time_kw), time_kw)
    except DicomFeatureError as exc:
        if record and exc.attribute:
            problems.setdefault(exc.attribute, exc.reason)
        return None
    return combine(day, moment)


def _injection_time(
    item: Dataset, ds: Dataset, series_start: datetime | None, problems: dict[str, str]
) -> tuple[datetime | None, str | None]:
    keyword = "RadiopharmaceuticalStartDateTime"
    value = _get(_parsed(parse_dt), item, keyword, problems)
    if value is not None:
        return value, keyword
    keyword = "RadiopharmaceuticalStartTime"
    moment = _get(_parsed(parse_tm), item, keyword, problems)
    if moment is None:
        problems.setdefault(keyword, "missing (and no RadiopharmaceuticalStartDateTime)")
        return None, None
    day = _date_time_day(ds, series_start)
    if day is None:
        problems[keyword] = "has no date (no SeriesDate and no RadiopharmaceuticalStartDateTime)"
        return None, None
    return combine(day, moment), f"{keyword} on the SeriesDate"


def _date_time_day(ds: Dataset, series_start: datetime | None) -> date | None:
    try:
        return parse_da(attrs.raw(ds, "SeriesDate"), "SeriesDate")
    except DicomFeatureError:
        return series_start.date() if series_start else None


def _ge_scan_start(ds: Dataset) -> datetime | None:
    try:
        block = ds.private_block(0x0009, GE_PET_CREATOR)
        element = block[0x0D]
        value = element.value
        if isinstance(value, bytes):
            value = value.decode("ascii", "replace")
        return parse_dt(str(value).strip(), "(0009,100D)")
    except (KeyError, ValueError, DicomFeatureError):
        return None


def _radiopharmaceutical(item: Dataset, problems: dict[str, str]) -> str | None:
    name = _get(attrs.text, item, "Radiopharmaceutical", problems)
    if name:
        return name[:64]
    code = _get(attrs.item, item, "RadiopharmaceuticalCodeSequence", problems)
    return _get(attrs.text, code, "CodeMeaning", problems) if code is not None else None


def _nuclide(item: Dataset, ds: Dataset, problems: dict[str, str]) -> str | None:
    code = _get(attrs.item, item, "RadionuclideCodeSequence", problems)
    if code is not None:
        found = identify(
            _get(attrs.text, code, "CodeValue", problems),
            _get(attrs.text, code, "CodeMeaning", problems),
        )
        if found:
            return found
    for source, keyword in ((item, "Radiopharmaceutical"), (ds, "Radionuclide")):
        found = identify(None, _get(attrs.text, source, keyword, problems))
        if found:
            return found
    return None


def _parsed(parse: Callable[[object, str], T]) -> Callable[[Dataset, str], T | None]:
    """A getter that parses a date/time attribute, None when absent."""

    def getter(ds: Dataset, keyword: str) -> T | None:
        value = attrs.raw(ds, keyword)
        return None if value is None else parse(value, keyword)

    return getter


def _get(
    getter: Callable[[Dataset, str], T | None],
    ds: Dataset,
    keyword: str,
    problems: dict[str, str],
) -> T | None:
    """``getter(ds, keyword)``; an unreadable value is recorded as a problem and gives None."""
    try:
        return getter(ds, keyword)
    except DicomFeatureError as exc:
        problems.setdefault(keyword, exc.reason)
        return None
