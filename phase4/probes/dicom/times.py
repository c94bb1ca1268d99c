"""DICOM date and time values (PS3.5 §6.2: DA, TM, DT) as ``datetime``, strictly.

pydicom keeps these as strings unless configured otherwise; its own parsers reject the
``HH:MM:SS`` form that older (ACR-NEMA era) writers still produce, which is accepted here. A
DT's UTC offset suffix is parsed, but offsets are dropped before arithmetic when only one side
has one: PS3.3 C.12.1.1.8 says a DT without an offset is in the instance's local time, which is
what the other side is in too.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone

from phase4.probes.dicom.errors import DicomFeatureError

_DA = re.compile(r"^(\d{4})\.?(\d{2})\.?(\d{2})$")
_TM = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?$")
_DT = re.compile(
    r"^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})?(?:\.(\d{1,6}))?(?:([+-])(\d{2})(\d{2}))?$"
)


def parse_da(value: object, attribute: str) -> date:
    """A DA value ``YYYYMMDD`` (PS3.5 Table 6.2-1)."""
    text = _text(value, attribute)
    match = _DA.match(text)
    if not match:
        raise DicomFeatureError(f"{text!r} is not a DICOM date (YYYYMMDD)", attribute=attribute)
    try:
        return date(*(int(g) for g in match.groups()))
    except ValueError as exc:
        raise DicomFeatureError(f"{text!r} is not a valid date", attribute=attribute) from exc


def parse_tm(value: object, attribute: str) -> time:
    """A TM value ``HHMMSS.FFFFFF`` (minutes, seconds and fraction optional)."""
    text = _text(value, attribute).replace(":", "")
    match = _TM.match(text)
    if not match:
        raise DicomFeatureError(f"{text!r} is not a DICOM time (HHMMSS)", attribute=attribute)
    hour, minute, second, fraction = match.groups()
    try:
        # A leap second (60) is legal in TM; fold it into 59.999999 rather than refuse.
        sec = min(int(second or 0), 59)
        return time(int(hour), int(minute or 0), sec, _micro(fraction))
    except ValueError as exc:
        raise DicomFeatureError(f"{text!r} is not a valid time", attribute=attribute) from exc


def parse_dt(value: object, attribute: str) -> datetime:
    """A DT value ``YYYYMMDDHHMM[SS[.FFFFFF]][&ZZXX]``; at least to the minute (a DT with
    only a date is no use for decay correction)."""
    text = _text(value, attribute)
    match = _DT.match(text)
    if not match:
        raise DicomFeatureError(
            f"{text!r} is not a DICOM date-time (YYYYMMDDHHMMSS) to the minute",
            attribute=attribute,
        )
    y, mo, d, h, mi, s, fraction, sign, oh, om = match.groups()
    tz = None
    if sign:
        offset = timedelta(hours=int(oh), minutes=int(om))
        tz = timezone(offset if sign == "+" else -offset)
    try:
        sec = min(int(s or 0), 59)
        return datetime(int(y), int(mo), int(d), int(h), int(mi), sec, _micro(fraction), tzinfo=tz)
    except ValueError as exc:
        raise DicomFeatureError(f"{text!r} is not a valid date-time", attribute=attribute) from exc


def combine(day: date, moment: time) -> datetime:
    return datetime.combine(day, moment)


def seconds_between(start: datetime, end: datetime) -> float:
    """``end - start`` in seconds; if only one of them carries a UTC offset, both are taken as
    local times (see the module docstring)."""
    if (start.tzinfo is None) != (end.tzinfo is None):
        start, end = start.replace(tzinfo=None), end.replace(tzinfo=None)
    return (end - start).total_seconds()


def _text(value: object, attribute: str) -> str:
    if value is None:
        raise DicomFeatureError("missing", attribute=attribute)
    text = str(value).strip()
    if not text:
        raise DicomFeatureError("empty", attribute=attribute)
    return text


def _micro(fraction: str | None) -> int:
    return int((fraction or "0").ljust(6, "0")[:6])
