"""Turn captured features/outputs into plain JSON, stripping PHI keys and unsafe values.

Runs in the spool writer thread, never on the model's hot path. Two rules:

* keys naming PHI (``phase4.probes.phi``) are removed at every depth and counted;
* values that are not JSON scalars, lists/tuples or str-keyed dicts of them are removed and
  counted. They are never ``str()``'d: the string form of a pydicom element or dataset carries
  the patient's name, so "stringify what we do not understand" is exactly the leak to avoid.

``features`` must be flat (the monitor stores them as columns-to-be: scalar values, keys of at
most 100 characters) while ``outputs`` may be any JSON. A nested feature value or an over-long
feature key is dropped here, with its key path counted and logged, rather than sent and have
the monitor reject the whole record for it.

Exceptions that keep data useful: numpy scalars/arrays become Python values via ``item()`` /
``tolist()`` (models emit ``np.float32`` routinely), subclasses of str/int/float (pydicom's
``DSfloat``/``IS``) are cast to the exact builtin, and non-finite floats become ``null``
because JSON has no NaN. Only key *paths* are reported, never values.

Values JSON or the store cannot carry are removed from their record alone, never from the
batch: a str holding a lone surrogate (``"\\ud800"``, e.g. from a ``surrogateescape``-decoded
file name) has no UTF-8 form (RFC 3629 section 3 excludes U+D800..U+DFFF), a str holding NUL
cannot be stored in PostgreSQL text or jsonb, and an int beyond the float range has no IEEE 754
double (RFC 8259 section 6 warns that such numbers are not interoperable; the monitor's
statistics are in floats). A key with a lone surrogate or NUL is dropped with its value and
reported as ``<unencodable key>``, since the key itself cannot be written to a log either.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any

from phase4.probes.phi import is_phi_key

JsonValue = Any  # None | bool | int | float | str | list[JsonValue] | dict[str, JsonValue]

MAX_DEPTH = 32  # also bounds recursion on self-referencing containers
MAX_ARRAY_ELEMENTS = 100_000  # a whole image passed as a "feature" is a bug, not a feature
MAX_FEATURE_KEY_CHARS = 100  # the monitor's limit on feature names
_SCALARS = (type(None), bool, int, float, str)
MAX_FLOAT_INT = int(sys.float_info.max)  # larger ints have no IEEE 754 double
UNENCODABLE_KEY = "<unencodable key>"


@dataclass(slots=True)
class StripReport:
    """Key paths removed while sanitising one record (names only, never values)."""

    phi_keys: list[str] = field(default_factory=list)
    dropped_values: list[str] = field(default_factory=list)


class _Drop:
    """Sentinel type: the value is not representable and must be dropped."""


_DROP = _Drop()


def sanitise_mapping(value: object, path: str, report: StripReport) -> dict[str, JsonValue]:
    """Return a JSON-safe copy of a top-level ``outputs`` dict (any JSON inside).

    Anything other than a dict (including a pydicom Dataset) is dropped whole: it has no keys
    we could vet, so there is no safe partial copy.
    """
    if value is None:
        return {}
    if not isinstance(value, dict):
        report.dropped_values.append(path)
        return {}
    return _clean_dict(value, path, report, 1)


def sanitise_features(value: object, report: StripReport) -> dict[str, JsonValue]:
    """Like ``sanitise_mapping``, then keep only scalar values under keys of <= 100 chars."""
    flat: dict[str, JsonValue] = {}
    for key, item in sanitise_mapping(value, "features", report).items():
        if len(key) > MAX_FEATURE_KEY_CHARS or not isinstance(item, _SCALARS):
            report.dropped_values.append(f"features.{key[:MAX_FEATURE_KEY_CHARS]}")
        else:
            flat[key] = item
    return flat


def _clean_dict(value: dict[Any, Any], path: str, report: StripReport, depth: int) -> dict:
    clean: dict[str, JsonValue] = {}
    for key, item in list(value.items()):
        if not isinstance(key, str):
            report.dropped_values.append(f"{path}.<{type(key).__name__} key>")
            continue
        key = str.__str__(key)
        if not storable_text(key):
            report.dropped_values.append(f"{path}.{UNENCODABLE_KEY}")
            continue
        key_path = f"{path}.{key}"
        if is_phi_key(key):
            report.phi_keys.append(key_path)
            continue
        cleaned = _clean(item, key_path, report, depth)
        if cleaned is _DROP:
            report.dropped_values.append(key_path)
        else:
            clean[key] = cleaned
    return clean


def _clean(value: object, path: str, report: StripReport, depth: int) -> JsonValue | _Drop:
    kind = type(value)
    if value is None or kind is bool:
        return value
    if kind is str:
        return value if storable_text(value) else _DROP  # type: ignore[arg-type]
    if kind is int:
        return value if -MAX_FLOAT_INT <= value <= MAX_FLOAT_INT else _DROP  # type: ignore
    if kind is float:
        return value if math.isfinite(value) else None  # type: ignore[arg-type]
    if depth >= MAX_DEPTH:
        return _DROP
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return _clean(int.__int__(value), path, report, depth)
    if isinstance(value, float):
        number = float.__float__(value)
        return number if math.isfinite(number) else None
    if isinstance(value, str):
        return _clean(str.__str__(value), path, report, depth)
    if isinstance(value, dict):
        return _clean_dict(value, path, report, depth + 1)
    if isinstance(value, (list, tuple)):
        return _clean_list(value, path, report, depth + 1)
    if kind.__module__ == "numpy":
        return _clean_numpy(value, path, report, depth)
    return _DROP


def _clean_list(value: list[Any] | tuple[Any, ...], path: str, report: StripReport, depth: int):
    clean: list[JsonValue] = []
    for index, item in enumerate(value):
        cleaned = _clean(item, f"{path}[{index}]", report, depth)
        if cleaned is _DROP:
            report.dropped_values.append(f"{path}[{index}]")
        else:
            clean.append(cleaned)
    return clean


def _clean_numpy(value: Any, path: str, report: StripReport, depth: int) -> JsonValue | _Drop:
    """Numpy values without importing numpy: scalars via item(), arrays via tolist()."""
    size = getattr(value, "size", None)
    if not isinstance(size, int) or size > MAX_ARRAY_ELEMENTS:
        return _DROP
    dtype_kind = getattr(getattr(value, "dtype", None), "kind", None)
    if dtype_kind not in ("b", "i", "u", "f", "U"):
        return _DROP  # object, bytes, datetime, complex: no faithful JSON form
    if getattr(value, "ndim", None) == 0:
        return _clean(value.item(), path, report, depth + 1)
    return _clean(value.tolist(), path, report, depth)


def storable_text(text: str) -> bool:
    """True if ``text`` has a UTF-8 form (no lone surrogate) and holds no NUL."""
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
