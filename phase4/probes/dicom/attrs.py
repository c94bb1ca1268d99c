"""Typed, fail-loud access to DICOM attributes: each getter returns a Python value or None
(absent or empty), and turns an unreadable value into a DicomFeatureError naming it.

pydicom converts values lazily and raises plain ``ValueError``/``TypeError`` (or warns) on a
malformed one (a DS of ``"abc"``, a VM that does not fit); nothing of that reaches callers.

Reading the same attributes from hundreds of slices is where header time goes, so two fast
paths work on the undecoded bytes pydicom keeps until a value is first used: :class:`Memo`
parses each distinct byte string once per series (slices repeat Rows, PixelSpacing, Units...),
and :func:`fast_numbers` parses decimal strings (DS/IS, PS3.5 §6.2) straight from those bytes,
falling back to the strict getters whenever the bytes are not plain numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import cache
from typing import TypeVar

from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from phase4.probes.dicom.errors import DicomFeatureError

T = TypeVar("T")
_TEXT_NUMBER_VRS = {"DS", "IS", None}  # None: implicit VR, resolved from the dictionary


def raw(ds: Dataset, keyword: str) -> object:
    """The converted value of ``keyword`` (None if absent or empty)."""
    try:
        value = ds.get(keyword)
    except Exception as exc:  # pydicom's conversions raise several kinds
        raise DicomFeatureError(f"unreadable value ({exc})", attribute=keyword) from exc
    if value is None or value == "" or (isinstance(value, bytes | Sequence) and len(value) == 0):
        return None
    return value


def text(ds: Dataset, keyword: str) -> str | None:
    """A string attribute, multi-values joined by a backslash as in the file; stripped."""
    value = raw(ds, keyword)
    if value is None:
        return None
    if isinstance(value, MultiValue | list | tuple):
        value = "\\".join(str(v) for v in value)
    out = str(value).strip()
    return out or None


def words(ds: Dataset, keyword: str) -> tuple[str, ...]:
    """A multi-valued code string (CS) as upper-case words, e.g. CorrectedImage."""
    value = raw(ds, keyword)
    if value is None:
        return ()
    items = value if isinstance(value, MultiValue | list | tuple) else str(value).split("\\")
    return tuple(str(v).strip().upper() for v in items if str(v).strip())


def number(ds: Dataset, keyword: str) -> float | None:
    """A single finite number (DS, IS, US, FL...)."""
    value = raw(ds, keyword)
    if value is None:
        return None
    if isinstance(value, MultiValue | list | tuple):
        value = value[0]
    return _finite(value, keyword)


def integer(ds: Dataset, keyword: str) -> int | None:
    value = number(ds, keyword)
    if value is None:
        return None
    if value != int(value):
        raise DicomFeatureError(f"{value} is not an integer", attribute=keyword)
    return int(value)


def numbers(ds: Dataset, keyword: str, count: int) -> tuple[float, ...] | None:
    """Exactly ``count`` finite numbers (ImagePositionPatient: 3, PixelSpacing: 2...)."""
    value = raw(ds, keyword)
    if value is None:
        return None
    items = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    if len(items) != count:
        raise DicomFeatureError(
            f"has {len(items)} values where {count} are required", attribute=keyword
        )
    return tuple(_finite(v, keyword) for v in items)


def item(ds: Dataset, keyword: str) -> Dataset | None:
    """The first item of a sequence attribute."""
    value = raw(ds, keyword)
    if value is None:
        return None
    try:
        first = value[0]  # type: ignore[index]
    except Exception as exc:
        raise DicomFeatureError("is not a sequence", attribute=keyword) from exc
    if not isinstance(first, Dataset):
        raise DicomFeatureError("is not a sequence", attribute=keyword)
    return first


def _finite(value: object, keyword: str) -> float:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise DicomFeatureError(f"{value!r} is not a number", attribute=keyword) from exc
    if not math.isfinite(out):
        raise DicomFeatureError(f"{value!r} is not a finite number", attribute=keyword)
    return out


@cache
def _tag(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return tag


def raw_bytes(ds: Dataset, keyword: str) -> tuple[str | None, bytes] | None:
    """(VR, value bytes) of an element pydicom has not converted yet, else None."""
    element = _element(ds, keyword)
    if isinstance(element, RawDataElement) and isinstance(element.value, bytes):
        return element.VR, element.value
    return None


def _element(ds: Dataset, keyword: str) -> object:
    """The element (raw or converted) of ``keyword``, or None if absent."""
    try:
        return ds.get_item(_tag(keyword))
    except Exception:  # a dataset that cannot even look it up: treat as absent
        return None


def fast_numbers(ds: Dataset, keyword: str, count: int) -> tuple[float, ...] | None:
    """Like :func:`numbers`, parsing DS/IS bytes directly when they are plain numbers."""
    found = raw_bytes(ds, keyword)
    if found is not None and found[0] in _TEXT_NUMBER_VRS:
        parts = found[1].split(b"\\")
        if len(parts) == count:
            try:
                values = tuple(float(p) for p in parts)
            except ValueError:
                values = ()
            if values and all(math.isfinite(v) for v in values):
                return values
    return numbers(ds, keyword, count)


def fast_number(ds: Dataset, keyword: str) -> float | None:
    """Like :func:`number` for a single DS/IS value."""
    found = raw_bytes(ds, keyword)
    if found is not None and found[0] in _TEXT_NUMBER_VRS:
        try:
            value = float(found[1])
        except ValueError:
            value = math.nan
        if math.isfinite(value):
            return value
    return number(ds, keyword)


def identity(ds: Dataset, keyword: str) -> bytes | None:
    """A cheap identity for an ASCII value (UI, TM, DA, CS): its undecoded bytes without
    trailing padding if pydicom has not converted it yet, else its text encoded; None if
    absent or empty. Equal values compare equal without decoding."""
    element = _element(ds, keyword)
    if element is None:
        return None
    if isinstance(element, RawDataElement) and isinstance(element.value, bytes):
        return element.value.rstrip(b"\x00 ") or None
    value = text(ds, keyword)
    return None if value is None else value.encode("ascii", "replace")


class Memo:
    """Parsed values keyed by attribute and undecoded bytes, shared across a series' slices:
    the slices repeat Rows, PixelSpacing, ImageOrientationPatient, Units..., and each distinct
    value is parsed once."""

    def __init__(self) -> None:
        self._values: dict[tuple[str, bytes | None, tuple[object, ...]], object] = {}

    def get(self, ds: Dataset, keyword: str, getter: Callable[..., T], *args: object) -> T:
        element = _element(ds, keyword)
        if element is None:
            key: tuple[str, bytes | None, tuple[object, ...]] = (keyword, None, args)
        elif isinstance(element, RawDataElement) and isinstance(element.value, bytes):
            key = (keyword, element.value, args)
        else:
            return getter(ds, keyword, *args)
        if key in self._values:
            return self._values[key]  # type: ignore[return-value]
        value = getter(ds, keyword, *args)
        self._values[key] = value
        return value
