"""Backtest: what would the monitor have said about last year's logs?

``phase4 replay EVENTS.csv`` feeds a CSV (a ``timestamp`` column and one column per feature)
through the same ``DeploymentMonitor`` the service runs, in timestamp order, and writes one JSON
object per alarm or notice. Indices are 0-based CSV data rows, whatever the sort moved.

Next to the alarms it writes the reference each stream actually used (``alarms.jsonl`` →
``alarms.reference.json``): its rows, events, first and last timestamp and, for a binary stream,
every step in which its reference grew (``phase4.monitor.drift.growth``: from rows older than a
guard lag, never past a change estimate, never after an alarm, since a backtest resolves no
alert). A reference that cannot be calibrated collects a larger one, which may reach well past
``--reference-size`` rows into data the backtest is meant to judge: the file and the console
say so.
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

from phase4.monitor.drift.streams import (
    DeploymentMonitor,
    MonitorConfig,
    Stream,
    StreamKind,
    StreamSpec,
    StreamState,
)

TRUE = {"true", "yes", "1", "y", "t"}
FALSE = {"false", "no", "0", "n", "f"}


class ReplayError(ValueError):
    """The CSV or the options cannot be replayed; the message names the row or column."""


@dataclass(frozen=True)
class ReferenceUsed:
    """The reference one stream actually used in a replay: which rows (0-based CSV data rows,
    first and last in time order) and how many, against the ``--reference-size`` asked for."""

    name: str
    kind: StreamKind
    reference_size: int
    # False: the table ended (or the stream gave up) before its reference was complete
    complete: bool
    reference_rows: int
    reference_events: int | None  # binary streams: rows where the value is true
    first_row: int | None
    last_row: int | None
    first_timestamp: str | None
    last_timestamp: str | None
    events_min: int | None  # binary streams: the events a reference waits for
    # binary streams: the audited growth steps (rows, events, reference before and after)
    growth_steps: tuple[dict[str, Any], ...] = ()
    # the reference at the end of the replay (after any growth): rows and events
    final_rows: int | None = None
    final_events: int | None = None
    # the time of the alarm that stopped growth (a backtest resolves no alert), if any
    growth_held_at: str | None = None

    @property
    def grew(self) -> bool:
        """The reference needed more rows than asked for before monitoring could start."""
        return self.reference_rows > self.reference_size

    @property
    def grew_by_rows(self) -> int:
        return max(self.reference_rows - self.reference_size, 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "reference_size": self.reference_size,
            "complete": self.complete,
            "reference_rows": self.reference_rows,
            "reference_events": self.reference_events,
            "first_row": self.first_row,
            "last_row": self.last_row,
            "first_timestamp": self.first_timestamp,
            "last_timestamp": self.last_timestamp,
            "grew": self.grew,
            "grew_by_rows": self.grew_by_rows,
            "growth_steps": list(self.growth_steps),
            "final_rows": self.final_rows if self.final_rows is not None else self.reference_rows,
            "final_events": (
                self.final_events if self.final_events is not None else self.reference_events
            ),
            "final_last_timestamp": (
                self.growth_steps[-1]["added"]["last_at"]
                if self.growth_steps
                else self.last_timestamp
            ),
            "growth_held_at": self.growth_held_at,
        }

    def sentence(self) -> str:
        """The reference in a plain sentence, for the console."""
        where = (
            f"rows {self.first_row:,} to {self.last_row:,} "
            f"({self.first_timestamp} to {self.last_timestamp})"
            if self.first_row is not None and self.last_row is not None
            else "no rows"
        )
        events = f", {self.reference_events:,} events" if self.reference_events is not None else ""
        if not self.complete:
            have = (
                f"{self.reference_rows:,} rows, {self.reference_events:,} of "
                f"{self.events_min:,} events"
                if self.reference_events is not None and self.events_min is not None
                else f"{self.reference_rows:,} of {self.reference_size:,} rows"
            )
            return (
                f"{self.name}: reference incomplete at the end of the table "
                f"({have}; {where}); not monitored"
            )
        if not self.grew:
            return f"{self.name}: reference of {self.reference_rows:,} rows{events}; {where}"
        return self._grown_sentence(where, events)

    def growth_sentences(self) -> list[str]:
        """Each growth step of a binary reference, and why growth stopped, for the console."""
        out = []
        for step in self.growth_steps:
            added, after = step["added"], step["reference_after"]
            out.append(
                f"{self.name}: reference step {step['step']} at {step['at']}: rows "
                f"{added['first_row']:,} to {added['last_row']:,} ({added['first_at']} to "
                f"{added['last_at']}; {added['observations']:,} rows, {added['events']:,} "
                f"events, all at least {step['guard']:,} observations old) joined: now "
                f"{after['n']:,} rows, {after['events']:,} events, rate {after['rate']:.2%}; "
                f"chart redesigned (p0 {step['p0']:.2%}, p1 {step['p1']:.2%})"
            )
        if self.growth_held_at:
            out.append(
                f"{self.name}: reference growth stopped at the alarm of {self.growth_held_at} "
                "(no row after a change estimate joins; a backtest resolves no alert)"
            )
        return out

    def _grown_sentence(self, where: str, events: str) -> str:
        why = (
            f"to hold {self.events_min:,} events"
            if self.events_min and self.reference_events is not None
            else "before its detectors could be calibrated"
        )
        return (
            f"{self.name}: reference grew from {self.reference_size:,} to "
            f"{self.reference_rows:,} rows {why} ({self.grew_by_rows:,} more); "
            f"it reaches row {self.last_row:,}: {where}{events}"
        )


class _ReferenceRows:
    """Follows which rows join one stream's reference while the replay runs."""

    __slots__ = ("done", "events", "first", "last", "rows", "steps", "stream")

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.rows = 0
        self.events = 0
        self.first: tuple[int, str] | None = None
        self.last: tuple[int, str] | None = None
        self.done = False
        self.steps: list[dict[str, Any]] = []

    def before(self) -> int:
        return len(self.stream.reference_values)

    def after(self, had: int, record: dict[str, Any], row: int, stamp: str) -> None:
        s = self.stream
        now = len(s.reference_values)
        if s.state is StreamState.MONITORING:
            joined = True  # the row that completed the reference (its values were cleared)
            self.done = True
        elif now < had or s.state is StreamState.ABANDONED:
            # the reference started again (an unusable reference) or was given up
            self.rows = self.events = 0
            self.first = self.last = None
            joined = now > 0
            self.done = s.state is StreamState.ABANDONED
        else:
            joined = now > had
        if not joined:
            return
        self.rows += 1
        if s.spec.kind == "binary":
            self.events += bool(s.observation(record))
        self.first = self.first or (row, stamp)
        self.last = (row, stamp)

    def used(self, config: MonitorConfig) -> ReferenceUsed:
        s = self.stream
        binary = s.spec.kind == "binary"
        configured = s.spec.reference_size or config.reference_size
        return ReferenceUsed(
            name=s.spec.name,
            kind=s.spec.kind,
            reference_size=configured,
            complete=s.state is StreamState.MONITORING,
            reference_rows=self.rows,
            reference_events=self.events if binary else None,
            first_row=self.first[0] if self.first else None,
            last_row=self.last[0] if self.last else None,
            first_timestamp=self.first[1] if self.first else None,
            last_timestamp=self.last[1] if self.last else None,
            events_min=config.reference_events_min if binary else None,
            growth_steps=tuple(self.steps),
            final_rows=int(s.reference["n"]) if binary and s.reference else None,
            final_events=int(s.reference["events"]) if binary and s.reference else None,
            growth_held_at=s.growth.hold if s.growth is not None else None,
        )


def reference_path(out: Path) -> Path:
    """Where the reference facts go: ``alarms.jsonl`` → ``alarms.reference.json``."""
    return out.with_name(f"{out.stem}.reference.json")


@dataclass(frozen=True)
class ReplaySummary:
    rows: int
    streams: dict[str, StreamKind]
    alarms: int
    notices: int
    out: Path
    references: tuple[ReferenceUsed, ...] = ()
    references_out: Path | None = None


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
    reference_events_target: int = 200,
    reference_events_min: int = 0,
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
        reference_events_target=reference_events_target,
        reference_events_min=reference_events_min,
    )
    stamped = [(_parse_time(r["timestamp"] or "", i), i, r) for i, r in enumerate(rows)]
    stamped.sort(key=lambda t: t[0])  # stable: equal times keep their CSV order
    monitor = DeploymentMonitor.new(config)
    followed = [_ReferenceRows(s) for s in monitor.streams.values()]
    collecting = list(followed)
    binary = [f for f in followed if f.stream.spec.kind == "binary"]
    alarms = notices = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for record, index, stamp in _records(stamped, kinds):
            had = [f.before() for f in collecting]
            for a in monitor.observe(record, stamp, row=index):
                fh.write(json.dumps(_line(a.to_dict())) + "\n")
                alarms += a.alarm.kind == "alarm"
                notices += a.alarm.kind == "notice"
            if collecting:
                text = stamp.isoformat()
                for f, n in zip(collecting, had, strict=True):
                    f.after(n, record, index, text)
                collecting = [f for f in collecting if not f.done]
            for f in binary:
                if f.stream.grown:  # a growth step: kept for the sidecar and the console
                    f.steps += f.stream.grown
                    f.stream.grown = []
    references = tuple(f.used(config) for f in followed)
    side = reference_path(out)
    side.write_text(json.dumps([r.to_dict() for r in references], indent=2) + "\n")
    return ReplaySummary(len(rows), kinds, alarms, notices, out, references, side)


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
