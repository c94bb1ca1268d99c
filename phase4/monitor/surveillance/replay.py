"""Backtest: what would the monitor have said about last year's logs?

``phase4 replay EVENTS.csv`` feeds a CSV (a ``timestamp`` column and one column per feature)
through the same ``DeploymentMonitor`` the service runs, in timestamp order, and writes one JSON
object per alarm or notice. Indices are 0-based CSV data rows, whatever the sort moved.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from phase4.monitor.drift.streams import DeploymentMonitor, MonitorConfig, StreamKind, StreamSpec

TRUE = {"true", "yes", "1", "y", "t"}
FALSE = {"false", "no", "0", "n", "f"}


class ReplayError(ValueError):
    """The CSV or the options cannot be replayed; the message names the row or column."""


@dataclass(frozen=True)
class ReplaySummary:
    rows: int
    streams: dict[str, StreamKind]
    alarms: int
    notices: int
    out: Path


def _parse_time(text: str, row: int) -> datetime:
    raw = text.strip()
    try:
        stamp = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        try:
            stamp = datetime.fromtimestamp(float(raw), UTC)
        except ValueError:
            raise ReplayError(
                f"row {row}: timestamp {text!r} is neither ISO 8601 nor seconds since 1970"
            ) from None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def _is_float(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def infer_kind(values: Sequence[str]) -> StreamKind:
    present = [v.strip() for v in values if v.strip() != ""]
    if present and all(v.lower() in TRUE | FALSE for v in present):
        return "binary"
    if present and all(_is_float(v) for v in present):
        return "numeric"
    return "categorical"


def convert_value(kind: StreamKind, text: str) -> Any:
    value = text.strip()
    if value == "":
        return None
    if kind == "numeric":
        return float(value) if _is_float(value) else None
    if kind == "binary":
        low = value.lower()
        return True if low in TRUE else False if low in FALSE else None
    return value


def _split(option: str | None) -> list[str]:
    return [c.strip() for c in option.split(",") if c.strip()] if option else []


def read_events(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    if not path.exists():
        raise ReplayError(f"{path}: no such file")
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames:
            raise ReplayError(f"{path}: empty file (a header row with 'timestamp' is needed)")
        if "timestamp" not in reader.fieldnames:
            raise ReplayError(
                f"{path}: no 'timestamp' column (columns: {', '.join(reader.fieldnames)})"
            )
        rows = list(reader)
    if not rows:
        raise ReplayError(f"{path}: the header has no data rows under it")
    return list(reader.fieldnames), rows


def replay(
    events: Path,
    out: Path,
    *,
    reference_size: int,
    studies_per_day: float,
    false_alarms_per_year: float,
    numeric: str | None = None,
    categorical: str | None = None,
    binary: str | None = None,
) -> ReplaySummary:
    columns, rows = read_events(events)
    features = [c for c in columns if c != "timestamp"]
    kinds: dict[str, StreamKind] = {}
    for kind, option in (("numeric", numeric), ("categorical", categorical), ("binary", binary)):
        for col in _split(option):
            if col not in features:
                raise ReplayError(f"--{kind} names column {col!r}, which {events.name} lacks")
            kinds[col] = kind  # type: ignore[assignment]
    explicit = bool(kinds)
    if not explicit:  # no types given: every feature column, types inferred
        kinds = {c: infer_kind([r.get(c) or "" for r in rows]) for c in features}
    if len(rows) <= reference_size:
        raise ReplayError(
            f"{events.name} has {len(rows)} rows: nothing is left to monitor after a "
            f"reference of {reference_size}"
        )
    config = MonitorConfig(
        streams=tuple(StreamSpec(col, kind) for col, kind in kinds.items()),
        studies_per_day=studies_per_day,
        false_alarms_per_year=false_alarms_per_year,
        reference_size=reference_size,
    )
    stamped = [(_parse_time(r["timestamp"] or "", i), i, r) for i, r in enumerate(rows)]
    stamped.sort(key=lambda t: t[0])  # stable: equal times keep their CSV order
    monitor = DeploymentMonitor.new(config)
    alarms = notices = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for record, index, stamp in _records(stamped, kinds):
            for a in monitor.observe(record, stamp, row=index):
                fh.write(json.dumps(_line(a.to_dict())) + "\n")
                alarms += a.alarm.kind == "alarm"
                notices += a.alarm.kind == "notice"
    return ReplaySummary(len(rows), kinds, alarms, notices, out)


def _records(
    stamped: list[tuple[datetime, int, dict[str, str]]], kinds: dict[str, StreamKind]
) -> Iterator[tuple[dict[str, Any], int, datetime]]:
    for stamp, index, row in stamped:
        yield {c: convert_value(k, row.get(c) or "") for c, k in kinds.items()}, index, stamp


def _line(a: dict[str, Any]) -> dict[str, Any]:
    return {
        "stream": a["stream"],
        "index": a["index"],
        "timestamp": a["timestamp"],
        "detector": a["detector"],
        "change_index_estimate": a["change_index_estimate"],
        "statistic": a["statistic"],
        "threshold": a["threshold"],
        "kind": a["kind"],
        "direction": a["direction"],
        "change_timestamp": a["change_timestamp"],
        "detail": a["detail"],
    }
