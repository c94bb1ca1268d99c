"""What the deployment page charts over time: each stream's quantity against its reference, the
model's outputs, and performance from labelled feedback, with their uncertainty.

A drift alarm is about a quantity a person knows (image noise, liver SUVmean, the AI-positive
rate), so each stream is charted as that quantity, in its unit and in acquisition time (when the
study was acquired, not when the monitor processed it): per day its median and interquartile
range (each value instead, when there are fewer than ``POINTS_BELOW_PER_DAY`` a day on average),
against the band of the stream's stored reference, the one its detectors compare with (the
reference's interquartile range beside daily interquartile ranges, its 2.5-97.5% range beside
single values). Rates (yes/no streams, outputs, inference errors, sensitivity, specificity, PPV)
are shares with Wilson 95% intervals, per day, week or month, whichever first gives
``RATE_MIN_PER_BUCKET`` observations a bucket on average.

An alert is one episode however many times its detector alarmed (its repeats are counted in its
evidence): it is drawn once, at its estimated change and at its detection, with the level since
the change (median, or rate, of the values from the change to the next episode or the end).
Events that explain changes share the time axis: new or shifted values of categorical streams
(software, reconstruction...), model versions deployed at the site, and the phantom QC and canary
alerts of the site's scanners.

Everything here is bounded: the charts read at most ``MAX_RECORDS`` records of a deployment (the
latest), aggregated in Python.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlmodel import Session, col, select

from phase4.alerts.export.stats import mean_ci, wilson
from phase4.monitor.core.statuses import PHANTOM_CAUSES, AlertCause, AlertStatus
from phase4.monitor.domain.device_identity import device_identity
from phase4.monitor.drift.reference import NumericReference, RateReference
from phase4.monitor.drift.state import StreamState
from phase4.monitor.drift.streams import Stream
from phase4.monitor.store.models import (
    AIModel,
    Alert,
    Deployment,
    Device,
    Feedback,
    InferenceRecord,
)
from phase4.monitor.surveillance.detection import outcome_view
from phase4.monitor.ui.units import field_of, format_value, unit_of, with_unit

# The most records of one deployment the charts read (the latest ones by acquisition time).
MAX_RECORDS = 50_000
# Fewer values than this a day on average: each value is drawn, not daily medians.
POINTS_BELOW_PER_DAY = 5.0
# A rate's bucket (day, week, month) is the shortest holding this many observations on average.
RATE_MIN_PER_BUCKET = 50
# Performance buckets: the scarcest metric's denominator (confirmed positives, negatives, AI
# positives) holds this many labelled outcomes a bucket on average.
PERFORMANCE_MIN_PER_BUCKET = 25
# Device alerts the charts mark as the site's scanner QC events.
SCANNER_CAUSES = PHANTOM_CAUSES | {AlertCause.AI_CANARY}

Timed = tuple[datetime, Any]


def as_utc(value: Any) -> datetime:
    """A stored time as an aware UTC datetime (SQLite hands back naive UTC or text)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _stamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return as_utc(value)
    except ValueError:
        return None


def chart_time(value: datetime | str | None) -> str | None:
    """A time as the charts draw it: UTC, to the second, without an offset (plotly's date
    axes take no time zone; every page says its times are UTC)."""
    t = _stamp(value) if isinstance(value, str) else as_utc(value) if value else None
    return t.strftime("%Y-%m-%d %H:%M:%S") if t is not None else None


def _t(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


# --- buckets --------------------------------------------------------------------------------------


def _day(t: datetime) -> date:
    return t.date()


def _week(t: datetime) -> date:
    return t.date() - timedelta(days=t.weekday())


def _month(t: datetime) -> date:
    return t.date().replace(day=1)


Bucket = Literal["day", "week", "month"]
BUCKETS: dict[str, Callable[[datetime], date]] = {"day": _day, "week": _week, "month": _month}


def bucket_label(name: str, start: date) -> str:
    """``2026-06-05``, ``week of 2026-06-01``, ``2026-06``."""
    if name == "week":
        return f"week of {start.isoformat()}"
    return start.isoformat()[:7] if name == "month" else start.isoformat()


def grouped(values: Iterable[Timed], key: Callable[[datetime], date]) -> dict[date, list[Timed]]:
    out: dict[date, list[Timed]] = defaultdict(list)
    for t, v in values:
        out[key(t)].append((t, v))
    return out


def mean_time(cell: Sequence[Timed]) -> str:
    """Where a bucket is drawn: the mean acquisition time of its values (inside the bucket, and
    inside the data for a bucket the data only partly fills)."""
    first = min(t for t, _ in cell)
    offset = sum((t - first).total_seconds() for t, _ in cell) / len(cell)
    return _t(first + timedelta(seconds=offset))


def rate_bucket(times: Sequence[datetime], denominator: int, least: int) -> Bucket:
    """The shortest of day, week and month in which ``denominator`` observations spread over
    ``times`` make at least ``least`` a bucket on average."""
    if not times:
        return "day"
    for name in ("day", "week"):
        buckets = len({BUCKETS[name](t) for t in times})
        if denominator / max(buckets, 1) >= least:
            return name
    return "month"


# --- what is charted ------------------------------------------------------------------------------


@dataclass
class Summary:
    """A quantity over time: per bucket its centre (median or rate) and band (interquartile
    range or Wilson 95%), or each value (``bucket == "value"``, no band)."""

    bucket: Literal["day", "week", "month", "value"]
    times: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # the bucket's name (or the value's time)
    centre: list[float] = field(default_factory=list)
    low: list[float] = field(default_factory=list)
    high: list[float] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)

    @property
    def banded(self) -> bool:
        return self.bucket != "value"


@dataclass
class ReferenceBand:
    """The stream's stored reference as a centre line and a band, with their legend texts."""

    centre: float
    low: float
    high: float
    centre_label: str
    band_label: str


@dataclass
class Episode:
    """One alert of a stream, however many alarms it holds."""

    alert_id: int
    status: str
    severity: str
    title: str
    detector: str | None
    change_at: str | None
    detected_at: str | None
    last_at: str | None
    repeats: int
    # the level (median, or rate) of the values from the change to the next episode or the end
    after: float | None = None
    after_n: int = 0
    after_until: str | None = None

    @property
    def start(self) -> str | None:
        return self.change_at or self.detected_at

    @property
    def text(self) -> str:
        alarms = f", and {self.repeats} more alarm(s) since" if self.repeats else ""
        return f"alert {self.alert_id} ({self.status}): {self.title}{alarms}"


@dataclass
class Event:
    """Something that happened at the site that may explain a change."""

    at: str
    kind: Literal["categorical", "model", "scanner"]
    text: str


EVENT_KINDS = {
    "categorical": "new software, reconstruction or other category",
    "model": "model version deployed at the site",
    "scanner": "phantom QC / canary alert of a site scanner",
}


@dataclass
class QuantityChart:
    """A stream's (or an output's) quantity over time, in its unit."""

    name: str
    kind: Literal["numeric", "binary"]
    unit: str | None  # "%" for rates (values are shares 0-1, drawn in %)
    summary: Summary
    reference: ReferenceBand | None = None
    monitoring_from: str | None = None
    episodes: list[Episode] = field(default_factory=list)
    first: str | None = None
    last: str | None = None

    @property
    def is_rate(self) -> bool:
        return self.kind == "binary"

    @property
    def axis_title(self) -> str:
        return with_unit(field_of(self.name), "%" if self.is_rate else self.unit)

    def describe(self) -> str:
        """The chart in a sentence, for its caption and screen readers."""
        s = self.summary
        if self.is_rate:
            what = f"share per {s.bucket} with Wilson 95% intervals"
        elif s.banded:
            what = "median and interquartile range per day"
        else:
            what = "each value"
        parts = [f"{self.name}: {what}, by acquisition time"]
        if self.reference is not None:
            parts.append(f"against the {self.reference.centre_label}, {self.reference.band_label}")
        for e in self.episodes:
            level = ""
            if e.after is not None:
                level = f"; since the change {self._level(e.after)} ({e.after_n} values)"
            parts.append(
                f"alert {e.alert_id}: change estimated {_date(e.change_at)}, detected "
                f"{_date(e.detected_at)}{level}"
            )
        return "; ".join(parts) + "."

    def _level(self, value: float) -> str:
        if self.is_rate:
            return f"{value:.1%}"
        return format_value(value, self.unit)


def _date(stamp: str | None) -> str:
    return stamp[:10] if stamp else "?"


# --- quantities -----------------------------------------------------------------------------------


def numeric_summary(values: Sequence[Timed]) -> Summary:
    """Per day: median and quartiles; each value when fewer than POINTS_BELOW_PER_DAY a day."""
    by_day = grouped(values, _day)
    if not by_day or len(values) / len(by_day) < POINTS_BELOW_PER_DAY:
        ordered = sorted(values, key=lambda tv: tv[0])
        times = [_t(t) for t, _ in ordered]
        return Summary(
            "value", times, times, [float(v) for _, v in ordered], counts=[1] * len(ordered)
        )
    out = Summary("day")
    for day in sorted(by_day):
        xs = [float(v) for _, v in by_day[day]]
        q1, q2, q3 = _quartiles(xs)
        out.times.append(mean_time(by_day[day]))
        out.labels.append(bucket_label("day", day))
        out.centre.append(q2)
        out.low.append(q1)
        out.high.append(q3)
        out.counts.append(len(xs))
    return out


def _quartiles(xs: Sequence[float]) -> tuple[float, float, float]:
    if len(xs) < 2:
        return xs[0], xs[0], xs[0]
    q1, q2, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return q1, q2, q3


def rate_summary(values: Sequence[Timed], least: int = RATE_MIN_PER_BUCKET) -> Summary:
    """Per bucket (day, week or month: see ``rate_bucket``): the share of True with its Wilson
    95% interval."""
    times = [t for t, _ in values]
    name = rate_bucket(times, len(values), least)
    cells = grouped(values, BUCKETS[name])
    out = Summary(name)
    for b in sorted(cells):
        k, n = sum(bool(v) for _, v in cells[b]), len(cells[b])
        w = wilson(k, n)
        out.times.append(mean_time(cells[b]))
        out.labels.append(bucket_label(name, b))
        out.centre.append(w["value"])
        out.low.append(w["ci_low"])
        out.high.append(w["ci_high"])
        out.counts.append(n)
    return out


def reference_band(stream: Stream, summary: Summary) -> ReferenceBand | None:
    """The stream's stored reference: a numeric one's median with its interquartile range
    (beside daily quartiles) or 2.5-97.5% range (beside single values), from the reference's
    own distribution; a yes/no one's rate with its Wilson 95% interval."""
    ref = stream.reference
    if not ref:
        return None
    unit = unit_of(stream.spec.name)
    if stream.spec.kind == "numeric":
        numeric = NumericReference.from_dict(ref)
        median = numeric.median if numeric.median is not None else numeric.quantile(0.5)
        lo_p, hi_p, what = (
            (0.25, 0.75, "interquartile range (25-75%)")
            if summary.banded
            else (0.025, 0.975, "2.5-97.5% range")
        )
        low, high = numeric.quantile(lo_p), numeric.quantile(hi_p)
        if not all(math.isfinite(v) for v in (median, low, high)):
            return None
        return ReferenceBand(
            median,
            low,
            high,
            f"reference median {format_value(median, unit)} (n = {numeric.n})",
            f"reference {what} {format_value(low, unit)} to {format_value(high, unit)}",
        )
    if stream.spec.kind == "binary":
        rate = RateReference.from_dict(ref)
        w = wilson(rate.events, rate.n)
        if w["value"] is None:
            return None
        return ReferenceBand(
            w["value"],
            w["ci_low"],
            w["ci_high"],
            f"reference rate {w['value']:.1%} ({rate.events} of {rate.n})",
            f"reference Wilson 95% interval {w['ci_low']:.1%} to {w['ci_high']:.1%}",
        )
    return None


def episodes_of(alerts: Iterable[Alert]) -> list[Episode]:
    """Each alert once, ordered by the start of its change."""
    out = []
    for a in alerts:
        ev = a.evidence or {}
        detected = chart_time(ev.get("timestamp"))
        change = chart_time(ev.get("change_timestamp"))
        last = chart_time(ev.get("last_timestamp"))
        repeats = ev.get("repeats")
        out.append(
            Episode(
                alert_id=a.id or 0,
                status=a.status,
                severity=a.severity,
                title=a.title,
                detector=ev.get("detector") if isinstance(ev.get("detector"), str) else None,
                change_at=change,
                detected_at=detected or chart_time(a.opened_at),
                last_at=last,
                repeats=int(repeats) if isinstance(repeats, int) else 0,
            )
        )
    out.sort(key=lambda e: (_stamp(e.start) or datetime.max.replace(tzinfo=UTC), e.alert_id))
    return out


def _levels_after(episodes: list[Episode], values: Sequence[Timed], rate: bool) -> None:
    """Each episode's level since its change: up to the next episode's change, or the end."""
    starts = [_stamp(e.start) for e in episodes]
    for i, e in enumerate(episodes):
        begin = starts[i]
        if begin is None:
            continue
        end = next((s for s in starts[i + 1 :] if s is not None and s > begin), None)
        segment = [(t, v) for t, v in values if t >= begin and (end is None or t < end)]
        if not segment:
            continue
        xs = [float(v) for _, v in segment]
        e.after = sum(xs) / len(xs) if rate else statistics.median(xs)
        e.after_n = len(xs)
        e.after_until = _t(max(t for t, _ in segment))


def quantity_chart(
    stream: Stream,
    values: Sequence[Timed],
    alerts: Sequence[Alert],
    monitoring_from: datetime | None,
) -> QuantityChart | None:
    """A numeric or yes/no stream's values (``values``: its observations with their acquisition
    times) against its reference, with its alerts as episodes."""
    kind = stream.spec.kind
    if kind not in ("numeric", "binary") or not values:
        return None
    ordered = sorted(values, key=lambda tv: tv[0])
    summary = numeric_summary(ordered) if kind == "numeric" else rate_summary(ordered)
    episodes = episodes_of(alerts)
    _levels_after(episodes, ordered, rate=kind == "binary")
    return QuantityChart(
        name=stream.spec.name,
        kind=kind,
        unit="%" if kind == "binary" else unit_of(stream.spec.name),
        summary=summary,
        reference=reference_band(stream, summary),
        monitoring_from=chart_time(monitoring_from),
        episodes=episodes,
        first=_t(ordered[0][0]),
        last=_t(ordered[-1][0]),
    )


# --- events ---------------------------------------------------------------------------------------


def site_events(session: Session, deployment: Deployment, alerts: Sequence[Alert]) -> list[Event]:
    """Events at the deployment's site: categorical streams' alerts (a new software version or
    reconstruction, a changed mix), the model versions deployed at the site (each deployment's
    acceptance, else creation), and the alerts of the site's scanners' phantom QC and canary."""
    events: list[Event] = []
    for a in alerts:
        ev = a.evidence or {}
        cause = AlertCause.of(a.cause)
        if cause is AlertCause.NEW_CONDITION:
            value = (ev.get("detail") or {}).get("value")
            at = chart_time(ev.get("timestamp"))
            if at is not None:
                events.append(Event(at, "categorical", f"new {field_of(a.stream)}: {value}"))
        elif ev.get("stream_kind") == "categorical" and cause is AlertCause.DRIFT:
            at = chart_time(ev.get("change_timestamp") or ev.get("timestamp"))
            if at is not None:
                events.append(
                    Event(at, "categorical", f"{field_of(a.stream)}: mix of values changed")
                )
    models = {m.id: m for m in session.exec(select(AIModel))}
    for d in session.exec(select(Deployment).where(Deployment.site_id == deployment.site_id)):
        m = models.get(d.model_id)
        if m is None:
            continue
        if d.id == deployment.id:
            if d.accepted_at is not None:
                text = f"{m.name} {m.version} accepted into clinical use"
                events.append(Event(_t(as_utc(d.accepted_at)), "model", text))
        elif d.model_id != deployment.model_id:
            at = d.accepted_at or d.created_at
            text = f"{m.name} {m.version} deployed at the site ({d.id})"
            events.append(Event(_t(as_utc(at)), "model", text))
    devices = {
        d.id: d
        for d in session.exec(select(Device).where(Device.site_id == deployment.site_id))
        if d.id is not None
    }
    if devices:
        q = select(Alert).where(
            col(Alert.device_id).in_(list(devices)), col(Alert.cause).in_(list(SCANNER_CAUSES))
        )
        for a in session.exec(q):
            ev = a.evidence or {}
            at = chart_time(ev.get("change_timestamp") or ev.get("timestamp"))
            dev = devices.get(a.device_id or -1)
            if at is not None and dev is not None:
                events.append(Event(at, "scanner", f"{dev.model}: {a.title}"))
    events.sort(key=lambda e: e.at)
    return events


def within(events: Sequence[Event], first: str | None, last: str | None) -> list[Event]:
    """The events inside a chart's time range (a day's slack either side)."""
    lo, hi = _stamp(first), _stamp(last)
    if lo is None or hi is None:
        return []
    lo, hi = lo - timedelta(days=1), hi + timedelta(days=1)
    return [e for e in events if (t := _stamp(e.at)) is not None and lo <= t <= hi]


# --- streams still collecting their reference -----------------------------------------------------


@dataclass
class CollectingSummary:
    """The streams still collecting their reference, in one line (not one panel each)."""

    # (name, values so far, reference size) of record streams and of labelled-outcome streams
    records: list[tuple[str, int, int]] = field(default_factory=list)
    labelled: list[tuple[str, int, int]] = field(default_factory=list)
    # yes/no streams with their values, waiting for enough events
    waiting: list[str] = field(default_factory=list)
    events_min: int = 0

    def add(self, stream: Stream, events_min: int) -> None:
        have = len(stream.reference_values)
        if stream.spec.kind == "binary" and have >= stream.reference_size:
            self.waiting.append(stream.spec.name)
            self.events_min = events_min
            return
        group = self.labelled if stream.spec.source == "feedback" else self.records
        group.append((stream.spec.name, have, stream.reference_size))

    def __bool__(self) -> bool:
        return bool(self.records or self.labelled or self.waiting)

    @property
    def line(self) -> str:
        """``67 streams collecting their reference: 74 of 500 values so far``."""
        parts = []
        for group, noun, values in (
            (self.records, "stream", "values"),
            (self.labelled, "labelled-performance stream", "labelled outcomes"),
        ):
            if not group:
                continue
            n = len(group)
            have = _span([h for _, h, _ in group])
            size = _span([s for _, _, s in group])
            whose = f"{noun} collecting its" if n == 1 else f"{noun}s collecting their"
            parts.append(f"{n} {whose} reference: {have} of {size} {values} so far")
        if self.waiting:
            n = len(self.waiting)
            parts.append(
                f"{n} yes/no stream{'s have their' if n > 1 else ' has its'} reference values "
                f"and wait{'' if n > 1 else 's'} for {self.events_min} events"
            )
        return "; ".join(parts) + "."

    @property
    def all_names(self) -> list[str]:
        return [name for name, _, _ in self.records + self.labelled] + self.waiting


def _span(xs: Sequence[int]) -> str:
    lo, hi = min(xs), max(xs)
    return f"{lo:,}" if lo == hi else f"{lo:,} to {hi:,}"


def collecting(stream: Stream) -> bool:
    """Collecting its first reference, with nothing else to say (a stream collecting a larger
    or a new reference has a reason, and keeps its own panel)."""
    return stream.state is StreamState.COLLECTING


# --- outputs --------------------------------------------------------------------------------------


def latest_records(session: Session, deployment_id: str, columns: Sequence[Any]) -> list[Any]:
    """The columns of the deployment's latest MAX_RECORDS records, in acquisition order."""
    rows = session.execute(
        sa.select(*columns)
        .where(InferenceRecord.deployment_id == deployment_id)
        .order_by(col(InferenceRecord.acquired_at).desc(), col(InferenceRecord.id).desc())
        .limit(MAX_RECORDS)
    ).all()
    rows.reverse()
    return rows


def output_charts(session: Session, deployment_id: str, limit_keys: int = 6) -> list[QuantityChart]:
    """One chart per model output (yes/no outputs as rates, numbers in their unit) and the
    share of inference errors: outputs of different scales never share an axis."""
    rows = latest_records(
        session,
        deployment_id,
        [InferenceRecord.acquired_at, InferenceRecord.outputs, InferenceRecord.error],
    )
    if not rows:
        return []
    kinds: dict[str, str] = {}
    for _, outputs, _ in rows[:500]:
        for k, v in (outputs or {}).items():
            if isinstance(v, bool):
                kinds.setdefault(k, "binary")
            elif isinstance(v, int | float) and math.isfinite(v):
                kinds.setdefault(k, "numeric")
    keys = sorted(kinds, key=lambda k: (kinds[k] != "binary", k))[:limit_keys]
    series: dict[str, list[Timed]] = {k: [] for k in keys}
    errors: list[Timed] = []
    for at, outputs, error in rows:
        t = as_utc(at)
        errors.append((t, error is not None))
        for k in keys:
            v = (outputs or {}).get(k)
            if kinds[k] == "binary" and isinstance(v, bool):
                series[k].append((t, v))
            elif kinds[k] == "numeric" and _finite_number(v):
                series[k].append((t, float(v)))
    charts = []
    for k in keys:
        values = series[k]
        if not values:
            continue
        binary = kinds[k] == "binary"
        name = f"outputs.{k}"
        charts.append(
            QuantityChart(
                name=name,
                kind="binary" if binary else "numeric",
                unit="%" if binary else unit_of(name),
                summary=rate_summary(values) if binary else numeric_summary(values),
                first=_t(values[0][0]),
                last=_t(values[-1][0]),
            )
        )
    charts.append(
        QuantityChart(
            name="inference_error",
            kind="binary",
            unit="%",
            summary=rate_summary(errors),
            first=_t(errors[0][0]),
            last=_t(errors[-1][0]),
        )
    )
    return charts


def _finite_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


# --- performance ----------------------------------------------------------------------------------


@dataclass
class RateSeries:
    """A proportion per bucket with its Wilson 95% interval."""

    label: str
    what: str  # its definition, for the caption
    times: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    low: list[float] = field(default_factory=list)
    high: list[float] = field(default_factory=list)
    successes: list[int] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)


@dataclass
class Performance:
    bucket: str
    series: list[RateSeries]
    # mean Dice of physicians' edits per bucket with a normal 95% interval, when recorded
    dice: RateSeries | None
    baseline: dict[str, float]

    def describe(self) -> str:
        """The performance chart in a sentence, for its caption and screen readers."""
        parts = [
            f"{s.label} ({s.what}) {s.values[-1]:.0%} in the last {self.bucket} "
            f"({s.successes[-1]} of {s.counts[-1]}, 95% CI {s.low[-1]:.0%} to {s.high[-1]:.0%})"
            for s in self.series
            if s.values
        ]
        text = (
            f"Performance from labelled feedback per {self.bucket}, by the study's acquisition "
            f"time, with Wilson 95% intervals: " + "; ".join(parts)
        )
        if self.baseline:
            stated = ", ".join(f"{k} {v:.0%}" for k, v in sorted(self.baseline.items()))
            text += f". Validated baseline: {stated}"
        return text + "."


PERFORMANCE_METRICS = (
    ("sensitivity", "AI positive among confirmed positives"),
    ("specificity", "AI negative among confirmed negatives"),
    ("PPV", "confirmed positive among AI positives"),
)


def validated_baseline(performance: Mapping[str, Any]) -> dict[str, float]:
    """The validated performance the deployment's configuration states, when it states one
    (``performance.validated_baseline``: a share per metric, 0-1, or a percentage)."""
    raw = performance.get("validated_baseline") if isinstance(performance, Mapping) else None
    if not isinstance(raw, Mapping):
        return {}
    out: dict[str, float] = {}
    for key, value in raw.items():
        if isinstance(value, Mapping):
            value = value.get("value")
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        share = float(value) / 100 if 1 < value <= 100 else float(value)
        if 0 <= share <= 1:
            out[str(key).lower()] = share
    return out


def performance_series(session: Session, deployment: Deployment) -> Performance | None:
    """Sensitivity, specificity and PPV from labelled feedback, by the study's acquisition
    time, as the drift engine counts misses and false positives
    (``phase4.monitor.surveillance.detection.outcome_view``), each with its Wilson 95% interval;
    the latest MAX_RECORDS labelled outcomes."""
    performance = (deployment.monitoring or {}).get("performance") or {}
    rows = session.execute(
        sa.select(Feedback, InferenceRecord.outputs, InferenceRecord.acquired_at)
        .join(InferenceRecord, col(InferenceRecord.record_id) == col(Feedback.record_id))
        .where(InferenceRecord.deployment_id == deployment.id)
        .order_by(col(InferenceRecord.acquired_at).desc(), col(Feedback.id).desc())
        .limit(MAX_RECORDS)
    ).all()
    if not rows:
        return None
    rows.reverse()
    outcomes: dict[str, list[Timed]] = {m: [] for m, _ in PERFORMANCE_METRICS}
    dice: list[Timed] = []
    for fb, outputs, acquired in rows:
        t = as_utc(acquired)
        view = outcome_view(outputs or {}, fb, performance)["performance"]
        if view["missed"] is not None:
            outcomes["sensitivity"].append((t, not view["missed"]))
            if not view["missed"]:
                outcomes["PPV"].append((t, True))
        if view["false_positive"] is not None:
            outcomes["specificity"].append((t, not view["false_positive"]))
            if view["false_positive"]:
                outcomes["PPV"].append((t, False))
        if isinstance(fb.dice, int | float) and math.isfinite(fb.dice):
            dice.append((t, float(fb.dice)))
    outcomes["PPV"].sort(key=lambda tv: tv[0])
    present = [v for v in outcomes.values() if v]
    if not present and not dice:
        return None
    scarcest = min((len(v) for v in present), default=len(dice))
    times = [as_utc(acquired) for _, _, acquired in rows]
    name = rate_bucket(times, scarcest, PERFORMANCE_MIN_PER_BUCKET)
    key = BUCKETS[name]
    series = []
    for metric, what in PERFORMANCE_METRICS:
        values = outcomes[metric]
        if not values:
            continue
        cells = grouped(values, key)
        s = RateSeries(metric, what)
        for b in sorted(cells):
            k, n = sum(bool(ok) for _, ok in cells[b]), len(cells[b])
            w = wilson(k, n)
            s.times.append(mean_time(cells[b]))
            s.labels.append(bucket_label(name, b))
            s.values.append(w["value"])
            s.low.append(w["ci_low"])
            s.high.append(w["ci_high"])
            s.successes.append(k)
            s.counts.append(n)
        series.append(s)
    dice_series = None
    if dice:
        cells_d = grouped(dice, key)
        dice_series = RateSeries("mean Dice of edits", "mean ± 1.96 SD/√n")
        for b in sorted(cells_d):
            m = mean_ci([float(v) for _, v in cells_d[b]])
            dice_series.times.append(mean_time(cells_d[b]))
            dice_series.labels.append(bucket_label(name, b))
            dice_series.values.append(m["mean"])
            dice_series.low.append(m["ci_low"] if m["ci_low"] is not None else m["mean"])
            dice_series.high.append(m["ci_high"] if m["ci_high"] is not None else m["mean"])
            dice_series.successes.append(0)
            dice_series.counts.append(m["n"])
    baseline = validated_baseline(performance) or identity_baseline(session, deployment)
    return Performance(name, series, dice_series, baseline)


def identity_baseline(session: Session, deployment: Deployment) -> dict[str, float]:
    """The validated performance of the deployment's device identity (``phase4 deployment
    identity``, the baseline the post-market surveillance report compares against)."""
    try:
        identity = device_identity(session, deployment.id)
    except ValueError:  # a stored identity that no longer validates: no baseline drawn
        return {}
    if identity is None or identity.validated_baseline is None:
        return {}
    b = identity.validated_baseline
    found = {"sensitivity": b.sensitivity, "specificity": b.specificity, "ppv": b.ppv}
    return {k: p.value for k, p in found.items() if p is not None}


def unresolved(alerts: Iterable[Alert]) -> bool:
    return any(a.status != AlertStatus.RESOLVED for a in alerts)
