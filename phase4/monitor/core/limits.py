"""What a stored value must be for every reader of the store to use it, and the checks.

A record is read back by every page of ``GET /v1/records`` and by every detection pass, so the
ingest validator refuses what those readers cannot use, naming the field and the limit:

- Numbers are IEEE 754 binary64 (RFC 8259 §6: interoperable JSON numbers are those a double
  holds). NaN and infinities are not JSON; an integer beyond ±1.8e308 has no float value
  (``float(10**400)`` raises ``OverflowError``), so the detectors could not read it.
- Strings are valid Unicode without NUL: PostgreSQL text cannot hold U+0000, and a lone
  surrogate (``"\\ud800"`` is valid JSON) cannot be encoded as UTF-8 by either database.
- Nesting is bounded: pydantic refuses to serialise values nested deeper than its own limit,
  so an unbounded depth is a record that can be written but never read.
- Times lie between 1970-01-01 UTC and the monitor's clock plus a small skew. A date in year
  9999 (or a week ahead) would sort after every real record forever in acquisition order,
  where detection and paging read; the skew allows for clocks that are slightly off.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=UTC)
FLOAT_MAX = sys.float_info.max
KEY_CHARS_MAX = 100  # a stream is named "features.<key>": the alert.stream column holds 200


@dataclass(frozen=True)
class IngestLimits:
    """Per-record limits (defaults as in ``phase4.monitor.core.settings.Settings``)."""

    max_features_per_record: int = 200
    max_outputs_per_record: int = 200
    max_string_chars: int = 1000
    max_json_depth: int = 32
    max_future_skew_s: float = 86_400.0
    max_streams_per_deployment: int = 200


DEFAULT_LIMITS = IngestLimits()


def _short(path: str) -> str:
    return path if len(path) <= 120 else path[:117] + "..."


def check_text(value: str, where: str, max_chars: int | None = None) -> None:
    """Refuse a string the store cannot hold: NUL, lone surrogates, or too long."""
    if max_chars is not None and len(value) > max_chars:
        raise ValueError(
            f"{_short(where)}: string of {len(value)} characters; at most {max_chars} "
            "(PHASE4_MAX_STRING_CHARS)"
        )
    if "\x00" in value:
        raise ValueError(f"{_short(where)}: contains a NUL character (U+0000)")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"{_short(where)}: not valid Unicode (a lone surrogate)") from exc


def check_number(value: int | float, where: str) -> None:
    """Refuse a number a double cannot hold (booleans are not numbers and always pass)."""
    if isinstance(value, bool):
        return
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{_short(where)} is {value}: only finite numbers are accepted")
        return
    if abs(value) > FLOAT_MAX:
        raise ValueError(
            f"{_short(where)}: integer of {len(str(abs(value)))} digits is beyond the range "
            "of a double (±1.8e308)"
        )


def _text_ok(value: str, max_chars: int) -> bool:
    if len(value) > max_chars or "\x00" in value:
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _fast_ok(value: Any, depth_left: int, max_chars: int) -> bool:
    """Whether a JSON value passes every check (the common case, without building paths);
    recursion is bounded by the depth limit."""
    kind = type(value)
    if kind is str:
        return _text_ok(value, max_chars)
    if kind is float:
        return value - value == 0.0  # false for NaN and infinities
    if kind is int:
        return -FLOAT_MAX <= value <= FLOAT_MAX
    if kind is bool or value is None:
        return True
    if kind is dict:
        return depth_left > 0 and all(
            type(k) is str and _text_ok(k, max_chars) and _fast_ok(v, depth_left - 1, max_chars)
            for k, v in value.items()
        )
    if kind is list:
        return depth_left > 0 and all(_fast_ok(v, depth_left - 1, max_chars) for v in value)
    return False


def check_json(value: Any, where: str, limits: IngestLimits) -> None:
    """Refuse the first thing in a JSON value the store or its readers cannot use: depth, key,
    string, number. A fast pass answers for valid values; only a refused one is walked again
    (iteratively, with paths) to name the place."""
    if _fast_ok(value, limits.max_json_depth + 1, limits.max_string_chars):
        return
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= limits.max_json_depth:
                raise ValueError(
                    f"{_short(path)}: nested deeper than {limits.max_json_depth} levels "
                    "(PHASE4_MAX_JSON_DEPTH)"
                )
            if isinstance(item, dict):
                for k, v in item.items():
                    if not isinstance(k, str):
                        raise ValueError(f"{_short(path)}: keys must be strings")
                    check_text(k, f"{path} key", limits.max_string_chars)
                    stack.append((v, f"{path}.{k}", depth + 1))
            else:
                stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(item))
        elif isinstance(item, str):
            check_text(item, path, limits.max_string_chars)
        elif isinstance(item, int | float):
            check_number(item, path)
        elif item is not None:
            raise ValueError(f"{_short(path)}: {type(item).__name__} is not a JSON value")


def check_time(value: datetime, where: str, now: datetime, max_future_skew_s: float) -> datetime:
    """The time in UTC, if it lies between 1970 and ``now`` plus the allowed skew."""
    offset = value.utcoffset()
    try:
        # The offset subtracted by hand: several times faster than astimezone() on pydantic's
        # TzInfo, and it overflows the same way.
        naive = value.replace(tzinfo=None)
        utc = (naive - offset if offset else naive).replace(tzinfo=UTC)
    except OverflowError as exc:  # 0001-01-01T00:00:00+14:00 is before year 1 in UTC
        raise ValueError(f"{where}: out of the range of dates (in UTC)") from exc
    if utc < EARLIEST_TIME:
        raise ValueError(f"{where}: before 1970-01-01T00:00:00Z")
    latest = now + timedelta(seconds=max_future_skew_s)
    if utc > latest:
        raise ValueError(
            f"{where}: more than {max_future_skew_s:g} s after the monitor's clock "
            f"({now.astimezone(UTC).isoformat(timespec='seconds')}; PHASE4_MAX_FUTURE_SKEW_S)"
        )
    return utc
