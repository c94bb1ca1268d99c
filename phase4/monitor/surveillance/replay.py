"""Backtest: what would the monitor have said about last year's logs?

``phase4 replay EVENTS.csv`` feeds a CSV (a ``timestamp`` column and one column per feature)
through the same ``DeploymentMonitor`` the service runs, in timestamp order, and writes one JSON
object per alarm or notice. Indices are 0-based CSV data rows, whatever the sort moved.

Rows go one by one through ``DeploymentMonitor.observe`` until every numeric stream has left
its reference; then each monitoring numeric stream takes the rest of its column at once
(``phase4.monitor.drift.batch``: the same alarms and state as row by row, a fraction of the
cost) while the binary and categorical streams go on row by row, and the alarms are merged in
the order the row-by-row path writes them (by row, then stream, then detector).

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
import gc
import json
import math
import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import Any

import numpy as np

from phase4.monitor.drift.batch import batchable, observe_column
from phase4.monitor.drift.streams import (
    DeploymentMonitor,
    MonitorConfig,
    Stream,
    StreamAlarm,
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


BOOLEAN = TRUE | FALSE


def infer_kind(values: Sequence[str]) -> StreamKind:
    present = [t for t in map(str.strip, values) if t]
    if present and all(map(BOOLEAN.__contains__, map(str.lower, present))):
        return "binary"
    if present and _all_floats(present):
        return "numeric"
    return "categorical"


def _all_floats(texts: list[str]) -> bool:
    """``all(_is_float(t) for t in texts)``, without a call per text."""
    try:
        return all(map(math.isfinite, map(float, texts)))
    except ValueError:
        return False


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
    reference_events_target: int = 0,
    reference_events_min: int = 0,
    batch: bool = True,
) -> ReplaySummary:
    """Replay ``events`` into ``out`` (see the module). ``batch=False``: every row through
    ``DeploymentMonitor.observe`` (the same output, slower; for comparison and tests)."""
    columns, rows = read_events(events)
    # The table's rows live until the end: kept out of the collector's full passes, which
    # otherwise walk them again and again (a seventh of the time of a 200,000-row replay)
    gc.freeze()
    try:
        return _replay(
            events,
            out,
            columns,
            rows,
            reference_size=reference_size,
            studies_per_day=studies_per_day,
            false_alarms_per_year=false_alarms_per_year,
            numeric=numeric,
            categorical=categorical,
            binary=binary,
            reference_events_target=reference_events_target,
            reference_events_min=reference_events_min,
            batch=batch,
        )
    finally:
        gc.unfreeze()


def _replay(
    events: Path,
    out: Path,
    columns: list[str],
    rows: list[dict[str, str]],
    *,
    reference_size: int,
    studies_per_day: float,
    false_alarms_per_year: float,
    numeric: str | None,
    categorical: str | None,
    binary: str | None,
    reference_events_target: int,
    reference_events_min: int,
    batch: bool,
) -> ReplaySummary:
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
    # batch: the numeric streams whose references decide when the columns are fed at once
    settling = [s for s in monitor.streams.values() if s.spec.kind == "numeric"] if batch else []
    alarms = notices = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        found: list[StreamAlarm] = []
        done = 0  # rows fed so far (in time order)
        for record, index, stamp in _records(stamped, kinds):
            had = [f.before() for f in collecting]
            found = monitor.observe(record, stamp, row=index)
            text = stamp.isoformat() if collecting else ""
            collecting = _follow(collecting, had, record, index, text)
            _write(fh, found)
            alarms += sum(a.alarm.kind == "alarm" for a in found)
            notices += sum(a.alarm.kind == "notice" for a in found)
            done += 1
            if settling and all(s.state in _SETTLED for s in settling):
                break
        if settling and done < len(stamped):
            found = _batched(monitor, stamped[done:], kinds, collecting)
            _write(fh, found)
            alarms += sum(a.alarm.kind == "alarm" for a in found)
            notices += sum(a.alarm.kind == "notice" for a in found)
    for f in followed:  # binary references' growth steps (phase4.monitor.drift.growth)
        f.steps = list(f.stream.grown)
    references = tuple(f.used(config) for f in followed)
    side = reference_path(out)
    side.write_text(json.dumps([r.to_dict() for r in references], indent=2) + "\n")
    return ReplaySummary(len(rows), kinds, alarms, notices, out, references, side)


# a numeric stream in one of these states takes no reference rows any more: once every numeric
# stream is in one, the monitoring ones are fed their remaining columns at once
_SETTLED = (StreamState.MONITORING, StreamState.ABANDONED, StreamState.QUARANTINED)


def _write(fh: Any, found: list[StreamAlarm]) -> None:
    for a in found:
        fh.write(json.dumps(_line(a.to_dict())) + "\n")


def _follow(
    collecting: list[_ReferenceRows],
    had: list[int],
    record: dict[str, Any],
    index: int,
    text: str,
) -> list[_ReferenceRows]:
    """Note which streams' references the row joined; the streams still collecting."""
    if not collecting:
        return collecting
    for f, n in zip(collecting, had, strict=True):
        f.after(n, record, index, text)
    return [f for f in collecting if not f.done]


def _batched(
    monitor: DeploymentMonitor,
    rest: list[tuple[datetime, int, dict[str, str]]],
    kinds: dict[str, StreamKind],
    collecting: list[_ReferenceRows],
) -> list[StreamAlarm]:
    """The rows ``rest`` (in time order) for a monitor whose numeric streams have all left
    their reference: each monitoring numeric stream takes its column at once
    (``phase4.monitor.drift.batch.observe_column``), the other streams take the rows one by
    one (``DeploymentMonitor.observe``, restricted to them); a numeric stream the batch stops
    on (a value its vectorised transform cannot score) joins them from that row. Returns the
    alarms in the order the streaming path raises them: by row, then stream, then detector."""
    order = {name: i for i, name in enumerate(monitor.streams)}
    texts = [stamp.isoformat() for stamp, _, _ in rest]
    indices = [index for _, index, _ in rest]
    columns = list(kinds)
    cells = dict(zip(columns, _columns([row for _, _, row in rest], columns), strict=True))
    # (row position, stream order, order within the stream's alarms of the row, alarm)
    keyed: list[tuple[int, int, int, StreamAlarm]] = []
    joins: dict[int, list[Stream]] = {}
    batched: set[str] = set()
    for name, stream in monitor.streams.items():
        if not batchable(stream):
            continue
        batched.add(name)
        result = observe_column(stream, numeric_column(cells[stream.spec.field]), indices, texts)
        keyed += [(pos, order[name], k, a) for pos, k, a in result.alarms]
        if result.stopped is not None:
            joins.setdefault(result.stopped, []).append(stream)
    streaming = [s for n, s in monitor.streams.items() if n not in batched]
    # the columns of every stream fed row by row at some point, converted as _records does
    fed = [s.spec.field for s in streaming] + [s.spec.field for j in joins.values() for s in j]
    converted = [_converted(kinds[c], cells[c]) for c in fed]
    observe = monitor.observe
    rowwise = zip(count(), zip(*converted, strict=True), indices, texts, strict=False)
    for pos, values, index, text in rowwise:
        if pos in joins:
            streaming = sorted([*streaming, *joins[pos]], key=lambda s: order[s.spec.name])
        if not streaming:
            monitor.records += 1
            continue
        record = dict(zip(fed, values, strict=True))
        if collecting:
            had = [f.before() for f in collecting]
            found = observe(record, text, row=index, streams=streaming)
            collecting = _follow(collecting, had, record, index, text)
        else:
            found = observe(record, text, row=index, streams=streaming)
        if found:
            keyed += [(pos, order[a.stream], k, a) for k, a in enumerate(found)]
    if not fed:
        monitor.records += len(rest)
    keyed.sort(key=lambda t: t[:3])
    return [a for *_, a in keyed]


def _columns(rows: list[dict[str, str]], columns: list[str]) -> list[list[str | None]]:
    """The cells of each column (None: a short row's missing cell; csv.DictReader gives every
    row every column)."""
    return [list(map(operator.itemgetter(c), rows)) for c in columns]


def _converted(kind: StreamKind, texts: list[str | None]) -> list[Any]:
    """``convert_value(kind, t or "")`` for every cell, converting each distinct cell once."""
    value = {t: convert_value(kind, t or "") for t in set(texts)}
    return [value[t] for t in texts]


def numeric_column(texts: list[str | None]) -> np.ndarray:
    """``convert_value("numeric", t or "")`` for every cell, as floats (NaN: None, missing)."""
    try:
        # float() takes the surrounding ASCII whitespace itself; anything else (other white
        # space, words) raises, and the column is read by convert_value value by value
        try:
            x = np.array(list(map(float, texts)), dtype=float)  # no blank cell
        except (TypeError, ValueError):
            x = np.array([float(t) if t else math.nan for t in texts], dtype=float)
    except ValueError:
        converted = (convert_value("numeric", t or "") for t in texts)
        return np.array([math.nan if v is None else v for v in converted], dtype=float)
    x[~np.isfinite(x)] = math.nan
    return x


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
