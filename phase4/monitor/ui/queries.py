"""What the dashboard's pages show, read from the store (no HTML here).

Nothing returned names a study or a record: deployments, sites, devices, streams and numbers only.

The drift charts: the detector state keeps a stream's *current* statistics, not their history.
The history is rebuilt by replaying the records the detector consumed, in the order it
consumed them, through the stream as it feeds its detector (its stored reference's normal
scores) and a restarted copy of the charted detector (``Detector.replay``: same threshold, same
parameters). The replay's end point is compared with the stored state: the page says whether
they agree, so a chart never silently shows a history the detector did not have (e.g. after
records were deleted). Every number shown of a detector comes from the detector
(``statistic``, ``threshold``, ``describe()``); this module repeats no formula.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from phase4.monitor.core.headline import FUTURE
from phase4.monitor.core.statuses import AlertStatus, PhantomVerdict, Severity
from phase4.monitor.drift.detectors import BernoulliCusum, Cusum
from phase4.monitor.drift.state import StreamState, upgrade_state
from phase4.monitor.drift.streams import DeploymentMonitor, Stream
from phase4.monitor.store.auth import Principal
from phase4.monitor.store.models import (
    AIModel,
    Alert,
    Deployment,
    DetectorState,
    Device,
    Feedback,
    InferenceRecord,
    NotificationAttempt,
    PhantomResult,
    PhantomTolerance,
)
from phase4.monitor.surveillance.detection import (
    STATE_DETECTOR,
    STATE_STREAM,
    load_state,
    outcome_view,
    record_view,
)

# A deployment whose last record is older than this is "silent": the probe, the AI or the
# scanner stopped (weekends included: two days without a study is unusual at any PET site).
SILENT_AFTER = timedelta(hours=48)
# The drift charts replay at most this many records (a longer history is not charted).
MAX_REPLAY_RECORDS = 50_000
FAILING_VERDICTS = {PhantomVerdict.OUTSIDE_ACTION}
WARNING_VERDICTS = {PhantomVerdict.OUTSIDE_TOLERANCE}
SEVERITIES = (Severity.CRITICAL, Severity.WARNING, Severity.INFO)
# The detector each kind of stream is charted by: its main sequential detector (the CUSUM holds
# most of a numeric stream's false-alarm share). Categorical streams have windowed tests and
# notices only: nothing runs between windows to chart.
CHARTED_DETECTOR = {"numeric": Cusum.name, "binary": BernoulliCusum.name}
# Evidence keys never shown: identifiers of records, studies or phantom scans.
HIDDEN_EVIDENCE_KEYS = {"result_id", "record_id", "study_pseudonym", "record_ids", "pseudonym"}


def now_utc() -> datetime:
    return datetime.now(UTC)


def ago(then: datetime | None, now: datetime) -> str:
    """'3 h 5 min', '2 d 4 h' or 'never'."""
    if then is None:
        return "never"
    seconds = max(0, int((now - then).total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min"


# --- scoping ------------------------------------------------------------------------------------


def deployment_sites(session: Session) -> dict[str, str]:
    return {d.id: d.site_id for d in session.exec(select(Deployment))}


def device_sites(session: Session) -> dict[int, str]:
    return {d.id: d.site_id for d in session.exec(select(Device)) if d.id is not None}


def alert_site(session: Session, alert: Alert) -> str | None:
    if alert.deployment_id:
        dep = session.get(Deployment, alert.deployment_id)
        return dep.site_id if dep else None
    if alert.device_id is not None:
        dev = session.get(Device, alert.device_id)
        return dev.site_id if dev else None
    return None


def readable_alerts(session: Session, principal: Principal, alerts: Iterable[Alert]) -> list[Alert]:
    dep_sites, dev_sites = deployment_sites(session), device_sites(session)
    out = []
    for a in alerts:
        site = (
            dep_sites.get(a.deployment_id)
            if a.deployment_id
            else dev_sites.get(a.device_id)
            if a.device_id is not None
            else None
        )
        if site is None or principal.can_read_site(site):
            out.append(a)
    return out


# --- fleet overview -------------------------------------------------------------------------------


@dataclass
class DeploymentRow:
    id: str
    site_id: str
    model: str
    status: str  # ok | alerting | silent | not monitored yet
    status_detail: str
    open_alerts: dict[str, int]
    records_24h: int
    records_7d: int
    last_record_at: datetime | None
    since_last: str


@dataclass
class DeviceRow:
    id: int
    site_id: str
    name: str
    modality: str
    results: int
    last_result_at: datetime | None
    latest_verdict: str
    unsigned: int
    open_alerts: int


def _streams_ready(state: Mapping[str, Any] | None) -> tuple[int, int]:
    """(streams monitoring, streams) of a saved detector state."""
    if not state:
        return 0, 0
    try:
        streams = upgrade_state(state)["streams"]
    except (KeyError, TypeError, ValueError):  # unreadable (detection alerts on it): none ready
        return 0, 0
    ready = sum(1 for s in streams.values() if s.get("state") == StreamState.MONITORING)
    return ready, len(streams)


def fleet(session: Session, principal: Principal, now: datetime) -> list[DeploymentRow]:
    deployments = [
        d
        for d in session.exec(select(Deployment).order_by(col(Deployment.id)))
        if principal.can_read_site(d.site_id)
    ]
    models = {m.id: m for m in session.exec(select(AIModel))}
    unresolved: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(SEVERITIES, 0))
    for dep_id, severity, n in session.execute(
        sa.select(Alert.deployment_id, Alert.severity, func.count())
        .where(Alert.status != AlertStatus.RESOLVED, col(Alert.deployment_id).is_not(None))
        .group_by(Alert.deployment_id, Alert.severity)
    ):
        unresolved[dep_id][severity] = unresolved[dep_id].get(severity, 0) + int(n)

    def counts_since(since: datetime) -> dict[str, int]:
        rows = session.execute(
            sa.select(InferenceRecord.deployment_id, func.count())
            .where(col(InferenceRecord.received_at) >= since)
            .group_by(InferenceRecord.deployment_id)
        )
        return {d: int(n) for d, n in rows}

    day, week = counts_since(now - timedelta(days=1)), counts_since(now - timedelta(days=7))
    last = {
        d: t
        for d, t in session.execute(
            sa.select(
                InferenceRecord.deployment_id, func.max(InferenceRecord.received_at)
            ).group_by(InferenceRecord.deployment_id)
        )
    }
    states = {
        s.deployment_id: s.state
        for s in session.exec(
            select(DetectorState).where(
                DetectorState.stream == STATE_STREAM, DetectorState.detector == STATE_DETECTOR
            )
        )
    }
    rows = []
    for d in deployments:
        last_at = _as_utc(last.get(d.id))
        alerts = unresolved.get(d.id, dict.fromkeys(SEVERITIES, 0))
        ready, total = _streams_ready(states.get(d.id))
        n_alerts = sum(alerts.values())
        if n_alerts:
            status, detail = "alerting", f"{n_alerts} alert(s) not resolved"
        elif last_at is None:
            status, detail = "not monitored yet", "no record received"
        elif now - last_at > SILENT_AFTER:
            status, detail = "silent", f"no record for {ago(last_at, now)}"
        elif ready == 0:
            status, detail = "not monitored yet", "collecting the reference"
        else:
            status, detail = "ok", f"{ready} of {total} streams monitored"
        model = models.get(d.model_id)
        rows.append(
            DeploymentRow(
                id=d.id,
                site_id=d.site_id,
                model=f"{model.name} {model.version}" if model else "?",
                status=status,
                status_detail=detail,
                open_alerts=alerts,
                records_24h=day.get(d.id, 0),
                records_7d=week.get(d.id, 0),
                last_record_at=last_at,
                since_last=ago(last_at, now),
            )
        )
    return rows


def _as_utc(value: Any) -> datetime | None:
    """Aggregates bypass the column type: SQLite returns naive UTC text or datetimes."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def verdict_of(entry: Any) -> str:
    """A stored verdict is ``{"verdict": ..., "value": ...}`` or a bare string."""
    if isinstance(entry, Mapping):
        return str(entry.get("verdict", "unknown"))
    return str(entry) if entry is not None else "unknown"


def worst_verdict(verdicts: Mapping[str, Any]) -> str:
    found = {verdict_of(v) for v in verdicts.values()}
    if found & FAILING_VERDICTS:
        return "fail"
    if found & WARNING_VERDICTS:
        return "tolerance"
    if PhantomVerdict.PASS in found:
        return "pass"
    return "no tolerance" if found else "no verdict"


def devices(session: Session, principal: Principal) -> list[DeviceRow]:
    out = []
    open_alerts: dict[int, int] = defaultdict(int)
    for dev_id, n in session.execute(
        sa.select(Alert.device_id, func.count())
        .where(Alert.status != AlertStatus.RESOLVED, col(Alert.device_id).is_not(None))
        .group_by(Alert.device_id)
    ):
        open_alerts[int(dev_id)] = int(n)
    for d in session.exec(select(Device).order_by(col(Device.site_id), col(Device.id))):
        if d.id is None or not principal.can_read_site(d.site_id):
            continue
        results = list(
            session.exec(
                select(PhantomResult)
                .where(PhantomResult.device_id == d.id)
                .order_by(col(PhantomResult.acquired_at).desc())
            )
        )
        out.append(
            DeviceRow(
                id=d.id,
                site_id=d.site_id,
                name=f"{d.manufacturer} {d.model} ({d.serial})",
                modality=d.modality,
                results=len(results),
                last_result_at=results[0].acquired_at if results else None,
                latest_verdict=worst_verdict(results[0].verdicts) if results else "no results",
                unsigned=sum(1 for r in results if r.reviewed_by is None),
                open_alerts=open_alerts.get(d.id, 0),
            )
        )
    return out


# --- one deployment -------------------------------------------------------------------------------


@dataclass
class StreamPath:
    """A stream's charted detector statistic over the monitored observations (from the
    replay), against its threshold."""

    detector: str
    label: str  # what the statistic is, with its unit
    threshold: float
    times: list[str] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    alarms: list[tuple[str, float]] = field(default_factory=list)
    matches_state: bool = True


# The badge shown for each stream state (see the stylesheet's .badge-* colours).
STATE_BADGES = {
    StreamState.COLLECTING: "collecting",
    StreamState.COLLECTING_LARGER: "collecting",
    StreamState.RECOLLECTING: "collecting",
    StreamState.MONITORING: "monitoring",
    StreamState.ABANDONED: "not monitored",
    StreamState.QUARANTINED: "stopped",
}


@dataclass
class StreamView:
    name: str
    kind: str
    source: str
    badge: str  # STATE_BADGES
    state: str  # "monitoring" | "collecting the reference (n of N values)" | "stopped: ..."
    reference: str
    statistics: list[tuple[str, str]]
    path: StreamPath | None
    note: str | None
    alerts: list[Alert]


@dataclass
class Series:
    label: str
    times: list[str]
    values: list[float | None]
    counts: list[int]


def load_monitor(session: Session, deployment_id: str) -> tuple[DetectorState | None, Any]:
    return load_state(session, deployment_id)


def fed_records(
    session: Session, deployment: Deployment, count: int
) -> list[tuple[datetime, dict[str, Any]]]:
    """The last ``count`` records the detector consumed, in the order it consumed them (pass by
    pass, each pass in acquisition order), as (acquired_at, what the detectors see)."""
    q = select(InferenceRecord).where(
        InferenceRecord.deployment_id == deployment.id,
        col(InferenceRecord.drift_processed_at).is_not(None),
    )
    if deployment.accepted_at is not None:
        q = q.where(col(InferenceRecord.acquired_at) >= deployment.accepted_at)
    q = q.order_by(
        col(InferenceRecord.drift_processed_at).desc(),
        col(InferenceRecord.acquired_at).desc(),
        col(InferenceRecord.id).desc(),
    ).limit(count)
    rows = list(session.exec(q))
    rows.reverse()
    return [(r.acquired_at, record_view(r)) for r in rows]


def _replay(stream: Stream, fed: Sequence[tuple[datetime, dict[str, Any]]]) -> StreamPath | None:
    name = CHARTED_DETECTOR.get(stream.spec.kind)
    det = stream.detectors.get(name) if name else None
    if name is None or det is None:
        return None
    observed = []
    for row, (at, rec) in enumerate(fed):
        value = stream.observation(rec)
        if value is not None:
            observed.append((row, at.isoformat(), value))
    # the detector took the last det.n observations (the first ones formed the reference)
    monitored = observed[len(observed) - det.n :] if det.n else []
    run = stream.replay(name, [(row, value) for row, _, value in monitored])
    times = [at for _, at, _ in monitored]
    summary = det.describe()
    return StreamPath(
        detector=name,
        label=f"{name} statistic ({summary.unit})",
        threshold=det.threshold,
        times=times,
        values=run.path,
        alarms=[(times[i], run.path[i]) for i in run.alarms],
        matches_state=(
            len(monitored) == det.n
            and run.end.n == det.n
            and math.isclose(run.end.statistic, det.statistic, abs_tol=1e-6)
        ),
    )


def _statistics(stream: Stream) -> list[tuple[str, str]]:
    """Each detector and where it stands, in its own words."""
    return [(name, det.describe().now) for name, det in stream.detectors.items()]


def stream_views(
    session: Session, deployment: Deployment, monitor: DeploymentMonitor | None
) -> tuple[list[StreamView], str | None]:
    """Each stream with its state and (for numeric and binary record streams) its history."""
    if monitor is None:
        return [], None
    alerts = list(
        session.exec(
            select(Alert)
            .where(Alert.deployment_id == deployment.id)
            .order_by(col(Alert.opened_at), col(Alert.id))
        )
    )
    note = None
    fed: list[tuple[datetime, dict[str, Any]]] = []
    if monitor.records > MAX_REPLAY_RECORDS:
        note = (
            f"The detector has consumed {monitor.records:,} records; the charts replay at most "
            f"{MAX_REPLAY_RECORDS:,}, so no statistic history is drawn."
        )
    elif monitor.records:
        fed = fed_records(session, deployment, monitor.records)
    views = []
    for name, stream in monitor.streams.items():
        spec = stream.spec
        path = None
        stream_note = None
        state = stream.describe_state(monitor.config.reference_events_min)
        if stream.monitoring:
            if spec.source == "feedback":
                stream_note = "Labelled-performance stream: see the performance chart."
            elif spec.kind == "categorical":
                stream_note = (
                    "Categorical stream: watched by windowed G-tests and new-value notices; "
                    "no running statistic to chart."
                )
            elif fed or not monitor.records:
                path = _replay(stream, fed)
        views.append(
            StreamView(
                name=name,
                kind=spec.kind,
                source=spec.source,
                badge=STATE_BADGES[stream.state],
                state=state,
                reference=stream.describe_reference(),
                statistics=_statistics(stream),
                path=path,
                note=stream_note,
                alerts=[a for a in alerts if a.stream == name],
            )
        )
    return views, note


def _bucketer(times: Sequence[datetime]) -> tuple[str, Any]:
    """Days for a short history, ISO weeks (from Monday) for a long one."""
    if times and (max(times) - min(times)) > timedelta(days=120):
        return "week", lambda t: (t - timedelta(days=t.weekday())).date().isoformat()
    return "day", lambda t: t.date().isoformat()


def output_series(session: Session, deployment_id: str, limit_keys: int = 4) -> list[Series]:
    """Per day (or week): the share of True for each yes/no output (e.g. the AI-positive rate),
    the mean of each numeric output, and the share of records with an inference error."""
    rows = session.execute(
        sa.select(InferenceRecord.acquired_at, InferenceRecord.outputs, InferenceRecord.error)
        .where(InferenceRecord.deployment_id == deployment_id)
        .order_by(col(InferenceRecord.acquired_at))
    ).all()
    if not rows:
        return []
    times = [_as_utc(t) or now_utc() for t, _, _ in rows]
    _, bucket = _bucketer(times)
    kinds: dict[str, str] = {}
    for _, outputs, _ in rows[:500]:
        for k, v in (outputs or {}).items():
            if isinstance(v, bool):
                kinds.setdefault(k, "binary")
            elif isinstance(v, int | float):
                kinds.setdefault(k, "numeric")
    keys = sorted(kinds, key=lambda k: (kinds[k] != "binary", k))[:limit_keys]
    sums: dict[str, dict[str, list[float]]] = {k: defaultdict(list) for k in keys}
    errors: dict[str, list[float]] = defaultdict(list)
    for t, (_, outputs, error) in zip(times, rows, strict=True):
        b = bucket(t)
        errors[b].append(1.0 if error else 0.0)
        for k in keys:
            v = (outputs or {}).get(k)
            if isinstance(v, bool | int | float) and math.isfinite(float(v)):
                sums[k][b].append(float(v))
    out = []
    for k in keys:
        label = f"share of {k} = true" if kinds[k] == "binary" else f"mean {k}"
        buckets = sorted(sums[k])
        out.append(
            Series(
                label,
                buckets,
                [sum(v) / len(v) for v in (sums[k][b] for b in buckets)],
                [len(sums[k][b]) for b in buckets],
            )
        )
    buckets = sorted(errors)
    out.append(
        Series(
            "share of inference errors",
            buckets,
            [sum(errors[b]) / len(errors[b]) for b in buckets],
            [len(errors[b]) for b in buckets],
        )
    )
    return out


def performance_series(session: Session, deployment: Deployment) -> list[Series]:
    """From labelled feedback (by the study's acquisition day or week): sensitivity among
    confirmed positives and specificity among confirmed negatives, as the drift engine defines
    misses and false positives (``phase4.monitor.surveillance.detection.outcome_view``)."""
    performance = (deployment.monitoring or {}).get("performance") or {}
    rows = session.execute(
        sa.select(Feedback, InferenceRecord.outputs, InferenceRecord.acquired_at)
        .join(InferenceRecord, col(InferenceRecord.record_id) == col(Feedback.record_id))
        .where(InferenceRecord.deployment_id == deployment.id)
        .order_by(col(InferenceRecord.acquired_at))
    ).all()
    if not rows:
        return []
    times = [_as_utc(t) or now_utc() for _, _, t in rows]
    _, bucket = _bucketer(times)
    pos: dict[str, list[bool]] = defaultdict(list)
    neg: dict[str, list[bool]] = defaultdict(list)
    dice: dict[str, list[float]] = defaultdict(list)
    for t, (fb, outputs, _) in zip(times, rows, strict=True):
        view = outcome_view(outputs or {}, fb, performance)["performance"]
        b = bucket(t)
        if view["missed"] is not None:
            pos[b].append(not view["missed"])
        if view["false_positive"] is not None:
            neg[b].append(not view["false_positive"])
        if isinstance(fb.dice, int | float):
            dice[b].append(float(fb.dice))
    out = []
    for label, data in (("sensitivity", pos), ("specificity", neg)):
        if data:
            buckets = sorted(data)
            out.append(
                Series(
                    label,
                    buckets,
                    [sum(data[b]) / len(data[b]) for b in buckets],
                    [len(data[b]) for b in buckets],
                )
            )
    if dice:
        buckets = sorted(dice)
        out.append(
            Series(
                "mean Dice of edits",
                buckets,
                [sum(dice[b]) / len(dice[b]) for b in buckets],
                [len(dice[b]) for b in buckets],
            )
        )
    return out


# --- devices --------------------------------------------------------------------------------------


@dataclass
class MetricChart:
    kind: str
    metric: str
    times: list[str]
    values: list[float]
    verdicts: list[str]
    tolerance: PhantomTolerance | None
    reviewed: list[bool]


def tolerance_for(
    session: Session, device_id: int, kind: str, metric: str
) -> PhantomTolerance | None:
    """The tolerance in force: the device's own latest version, else the latest default."""
    for own in (True, False):
        q = select(PhantomTolerance).where(
            PhantomTolerance.kind == kind, PhantomTolerance.metric == metric
        )
        q = q.where(
            PhantomTolerance.device_id == device_id
            if own
            else col(PhantomTolerance.device_id).is_(None)
        )
        found = session.exec(q.order_by(col(PhantomTolerance.version).desc()).limit(1)).first()
        if found is not None:
            return found
    return None


def metric_numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in metrics.items()
        if not k.startswith("_")
        and isinstance(v, int | float)
        and not isinstance(v, bool)
        and math.isfinite(v)
    }


def device_charts(
    session: Session, device_id: int
) -> tuple[list[MetricChart], list[PhantomResult]]:
    results = list(
        session.exec(
            select(PhantomResult)
            .where(PhantomResult.device_id == device_id)
            .order_by(col(PhantomResult.acquired_at), col(PhantomResult.id))
        )
    )
    charts: dict[tuple[str, str], MetricChart] = {}
    for r in results:
        for metric, value in sorted(metric_numbers(r.metrics).items()):
            key = (r.kind, metric)
            if key not in charts:
                charts[key] = MetricChart(
                    r.kind, metric, [], [], [], tolerance_for(session, device_id, *key), []
                )
            c = charts[key]
            c.times.append(r.acquired_at.isoformat())
            c.values.append(value)
            c.verdicts.append(verdict_of(r.verdicts.get(metric)))
            c.reviewed.append(r.reviewed_by is not None)
    return [charts[k] for k in sorted(charts)], list(reversed(results))


# --- alerts ---------------------------------------------------------------------------------------


def notifications(session: Session, alert_id: int) -> list[NotificationAttempt]:
    return list(
        session.exec(
            select(NotificationAttempt)
            .where(NotificationAttempt.alert_id == alert_id)
            .order_by(col(NotificationAttempt.at), col(NotificationAttempt.id))
        )
    )


def _when(stamp: Any) -> str:
    """An evidence time (of the world); one after the present is not shown as a time."""
    if not isinstance(stamp, str):
        return str(stamp)
    try:
        when = datetime.fromisoformat(stamp)
    except ValueError:
        return stamp
    when = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    if when > now_utc():
        return FUTURE
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def explain_evidence(alert: Alert) -> list[str]:
    """The evidence in sentences a physicist or physician can read without the JSON."""
    ev = alert.evidence or {}
    out: list[str] = []
    detector = ev.get("detector")
    stat, thr = ev.get("statistic"), ev.get("threshold")
    if ev.get("kind") == "notice":
        value = (ev.get("detail") or {}).get("value")
        out.append(
            f"A value never seen in the reference appeared in {alert.stream}: {value!r}. "
            "A new condition (scanner, reconstruction, protocol...) calls for revalidation."
        )
    elif isinstance(stat, int | float) and isinstance(thr, int | float):
        unit = ev.get("detector_unit")
        in_unit = f" {unit}" if isinstance(unit, str) and unit else ""
        out.append(
            f"The {detector} detector's statistic reached {abs(stat):.3g}{in_unit}, beyond its "
            f"threshold {thr:.3g}, on {_when(ev.get('timestamp'))}."
        )
    elif isinstance(stat, int | float):
        out.append(f"{detector}: value {stat:.4g} on {_when(ev.get('timestamp'))}.")
    rule = ev.get("detector_rule")
    if isinstance(rule, str) and rule:
        out.append(f"The detector: {rule}.")
    direction = ev.get("direction")
    if direction in ("up", "down"):
        out.append(f"The monitored quantity {'rose' if direction == 'up' else 'fell'}.")
    if ev.get("change_timestamp"):
        out.append(f"The change most likely began around {_when(ev['change_timestamp'])}.")
    detail = ev.get("detail") or {}
    if isinstance(detail, Mapping) and isinstance(detail.get("p_value"), int | float):
        out.append(f"p-value of the window's test: {detail['p_value']:.2g}.")
    if isinstance(detail, Mapping) and "p0" in detail and "p1" in detail:
        out.append(
            f"The chart watches for a rise of the event rate from {detail['p0']:.2%} "
            f"(the reference) to {detail['p1']:.2%}."
        )
    rel = ev.get("relative_change")
    if isinstance(rel, int | float):
        out.append(f"Recent values differ from the reference mean by {rel:+.1%}.")
    budget = ev.get("budget") or {}
    if isinstance(budget, Mapping) and budget.get("explanation"):
        out.append(f"False-alarm budget: {budget['explanation']}.")
    if ev.get("repeats"):
        out.append(
            f"The same stream alarmed {ev['repeats']} more time(s) since, last on "
            f"{_when(ev.get('last_timestamp'))}."
        )
    report = ev.get("report")
    if isinstance(report, Mapping) and report.get("drifted_columns") is not None:
        out.append(
            f"The data-drift report found {report['drifted_columns']} drifted column(s), "
            f"comparing {report.get('current_rows')} recent records with "
            f"{report.get('reference_rows')} reference records."
        )
    return out


def other_evidence(alert: Alert) -> list[tuple[str, str]]:
    """Scalar evidence fields not already told in sentences (identifiers are never shown)."""
    told = {
        "detector",
        "statistic",
        "threshold",
        "timestamp",
        "change_timestamp",
        "direction",
        "detail",
        "budget",
        "repeats",
        "last_timestamp",
        "report",
        "linked",
        "kind",
        "relative_change",
        "stream",
        "index",
        "change_index_estimate",
        "detector_rule",
        "detector_unit",
        "detector_parameters",
        # the page's heading, and the size of the change it states
        "headline",
        "change",
        "limit",
    }
    out = []
    for k, v in sorted((alert.evidence or {}).items()):
        if k in told or k in HIDDEN_EVIDENCE_KEYS or "pseudonym" in k or "record" in k:
            continue
        if isinstance(v, str | int | float | bool) or v is None:
            out.append((k, str(v)))
    return out


def linked(alert: Alert) -> list[dict[str, Any]]:
    items = (alert.evidence or {}).get("linked") or []
    return [i for i in items if isinstance(i, Mapping)]
