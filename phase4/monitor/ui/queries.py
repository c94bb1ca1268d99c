"""What the dashboard's pages show, read from the store (no HTML here).

Nothing returned names a study or a record: deployments, sites, devices, streams and numbers only.

A deployment's streams are charted as their quantities against their references
(``phase4.monitor.ui.timeseries``), from the records the detector consumed, read here once.

The statistic charts: the detector state keeps a stream's *current* statistics, not their
history. The history is rebuilt by replaying the records the detector consumed, in the order it
consumed them, through the stream as it feeds its detector (its stored reference's normal
scores) and a restarted copy of the charted detector (``Detector.replay``: same threshold, same
parameters). The replay's end point is compared with the stored state: the page says whether
they agree, so a chart never silently shows a history the detector did not have (e.g. after
records were deleted). Every number shown of a detector comes from the detector
(``statistic``, ``threshold``, ``describe()``); this module repeats no formula.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from phase4.monitor.core.headline import FUTURE
from phase4.monitor.core.statuses import AlertCause, AlertStatus, PhantomVerdict, Severity
from phase4.monitor.core.verdicts import verdict_level
from phase4.monitor.domain.device_names import device_name
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
    InferenceRecord,
    NotificationAttempt,
    PhantomResult,
    PhantomTolerance,
)
from phase4.monitor.surveillance.detection import (
    STATE_DETECTOR,
    STATE_STREAM,
    load_state,
    record_view,
)
from phase4.monitor.surveillance.reference_outlook import (
    ReferenceOutlook,
    arrival_rate,
    deployment_outlook,
    horizon_days,
    outlook,
    stream_needs,
)
from phase4.monitor.surveillance.reports import report_sentence
from phase4.monitor.ui.timeseries import (
    MAX_RECORDS,
    CollectingSummary,
    Event,
    QuantityChart,
    as_utc,
    chart_time,
    collecting,
    episodes_of,
    quantity_chart,
    site_events,
    unresolved,
    within,
)
from phase4.phantoms.canary import match_lesions
from phase4.phantoms.earl import EARL_BANDS, SPHERE_DIAMETERS_MM, band

# A deployment whose last record is older than this is "silent": the probe, the AI or the
# scanner stopped (weekends included: two days without a study is unusual at any PET site).
SILENT_AFTER = timedelta(hours=48)
# The statistic charts replay at most this many records (a longer history is not replayed; the
# quantity charts then show the latest this many).
MAX_REPLAY_RECORDS = MAX_RECORDS
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
class OpenAlerts:
    """A deployment's or a scanner's unresolved alerts: counts by severity, the worst severity
    (``ok`` when none) and since when its earliest alert's change began (world time: the
    change date in the evidence, not when the monitor happened to open the alert)."""

    counts: dict[str, int]
    worst: str  # critical | warning | info | ok
    since: datetime | None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def words(self) -> str | None:
        """'critical alert open since 1 Sep 2026', '2 warning alerts open, the first since ...'."""
        if self.worst == "ok":
            return None
        n = self.counts.get(self.worst, 0)
        since = f" since {day_words(self.since)}" if self.since is not None else ""
        if n == 1:
            return f"{self.worst} alert open{since}"
        return f"{n} {self.worst} alerts open, the first{since}"


@dataclass
class DeploymentRow:
    id: str
    site_id: str
    model: str
    status: str  # monitoring | silent | not monitored yet
    status_detail: str
    alerts: OpenAlerts
    records_24h: int  # acquired in the last 24 h (not: arrived)
    records_7d: int  # acquired in the last 7 days
    last_acquired_at: datetime | None
    last_record_at: datetime | None  # newest arrival
    since_last: str

    @property
    def open_alerts(self) -> dict[str, int]:
        return self.alerts.counts


@dataclass
class DeviceRow:
    id: int
    site_id: str
    name: str
    modality: str
    results: int
    last_result_at: datetime | None
    verdict: str  # critical | warning | info | ok | no tolerance | no results
    reasons: list[str]
    unsigned: int
    alerts: OpenAlerts

    @property
    def open_alerts(self) -> int:
        return self.alerts.total


# How many of each phantom kind's latest results the scanner's verdict looks at: one good
# result after three failures is not "pass".
RECENT_RESULTS = 4
# The severity a result's worst level gives the scanner's verdict (1 tolerance, 2 action).
LEVEL_SEVERITY = {1: Severity.WARNING, 2: Severity.CRITICAL}


def day_words(when: datetime) -> str:
    """'1 Sep 2026' (UTC)."""
    return f"{when.day} {when.strftime('%b %Y')}"


def change_start(alert: Alert) -> datetime:
    """When the alert's change began in the world: the evidence's estimated start, else the
    alarm's time (both acquisition times), else when the alert was opened."""
    ev = alert.evidence or {}
    for key in ("change_timestamp", "timestamp"):
        stamp = ev.get(key)
        if isinstance(stamp, str):
            try:
                found = _as_utc(datetime.fromisoformat(stamp))
            except ValueError:
                continue
            if found is not None:
                return found
    return _as_utc(alert.opened_at) or alert.opened_at


def _severity_rank(severity: str) -> int:
    return Severity.rank_of(severity, default=-1)


def open_alerts_of(alerts: Iterable[Alert]) -> OpenAlerts:
    """Counts, worst severity and its since-when of unresolved ``alerts``."""
    counts = dict.fromkeys(SEVERITIES, 0)
    starts: dict[str, datetime] = {}
    for a in alerts:
        if a.status == AlertStatus.RESOLVED:
            continue
        counts[a.severity] = counts.get(a.severity, 0) + 1
        start = change_start(a)
        if a.severity not in starts or start < starts[a.severity]:
            starts[a.severity] = start
    present = [sev for sev, n in counts.items() if n]
    if not present:
        return OpenAlerts(counts, "ok", None)
    worst = max(present, key=_severity_rank)
    return OpenAlerts(counts, str(worst), starts.get(worst))


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


def _unresolved(session: Session, owner: Any) -> dict[Any, list[Alert]]:
    """Unresolved alerts grouped by ``owner`` (``Alert.deployment_id`` or ``Alert.device_id``)."""
    out: dict[Any, list[Alert]] = defaultdict(list)
    for a in session.exec(
        select(Alert).where(Alert.status != AlertStatus.RESOLVED, col(owner).is_not(None))
    ):
        out[getattr(a, owner.key)].append(a)
    return out


def fleet(session: Session, principal: Principal, now: datetime) -> list[DeploymentRow]:
    deployments = [
        d
        for d in session.exec(select(Deployment).order_by(col(Deployment.id)))
        if principal.can_read_site(d.site_id)
    ]
    models = {m.id: m for m in session.exec(select(AIModel))}
    unresolved = _unresolved(session, Alert.deployment_id)

    # Per deployment, correlated subqueries: each is a range (or one probe) of the index on
    # (deployment_id, acquired_at), so the page costs the last week's records, not the table.
    ir = InferenceRecord

    def acquired(since: datetime) -> Any:
        return (
            sa.select(func.count())
            .where(
                col(ir.deployment_id) == col(Deployment.id),
                col(ir.acquired_at) >= since,
                col(ir.acquired_at) <= now,
            )
            .scalar_subquery()
        )

    last_acquired = (
        sa.select(func.max(ir.acquired_at))
        .where(col(ir.deployment_id) == col(Deployment.id))
        .scalar_subquery()
    )
    counts = {
        d: (int(day or 0), int(week or 0), _as_utc(newest))
        for d, day, week, newest in session.execute(
            sa.select(
                Deployment.id,
                acquired(now - timedelta(days=1)),
                acquired(now - timedelta(days=7)),
                last_acquired,
            )
        )
    }
    arrived = {
        d: _as_utc(t)
        for d, t in session.execute(
            sa.select(ir.deployment_id, func.max(ir.received_at)).group_by(ir.deployment_id)
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
        last_at = arrived.get(d.id)
        day, week, last_acquired_at = counts.get(d.id, (0, 0, None))
        ready, total = _streams_ready(states.get(d.id))
        if last_at is None:
            status, detail = "not monitored yet", "no record received"
        elif now - last_at > SILENT_AFTER:
            status, detail = "silent", f"no record for {ago(last_at, now)}"
        elif ready == 0:
            status, detail = "not monitored yet", "collecting the reference"
        else:
            status, detail = "monitoring", f"{ready} of {total} streams monitored"
        late = _late_references(session, d, states.get(d.id), now)
        if late:
            detail += f"; {late}"
        model = models.get(d.model_id)
        rows.append(
            DeploymentRow(
                id=d.id,
                site_id=d.site_id,
                model=f"{model.name} {model.version}" if model else "?",
                status=status,
                status_detail=detail,
                alerts=open_alerts_of(unresolved.get(d.id, [])),
                records_24h=day,
                records_7d=week,
                last_acquired_at=last_acquired_at,
                last_record_at=last_at,
                since_last=ago(last_at, now),
            )
        )
    return rows


def _late_references(
    session: Session, deployment: Deployment, state: Mapping[str, Any] | None, now: datetime
) -> str | None:
    """'68 streams will not complete their reference within 90 days', or None."""
    needs = stream_needs(state)
    if not needs:
        return None
    rate = arrival_rate(session, deployment.id, now)
    found = outlook(deployment.id, needs, rate, horizon_days(deployment.monitoring))
    n = len(found.hopeless)
    if not n:
        return None
    what = "streams will not complete their" if n > 1 else "stream will not complete its"
    return f"{n} {what} reference within {found.horizon_days} days"


def reference_flag(session: Session, deployment: Deployment, now: datetime) -> ReferenceOutlook:
    """The deployment's collecting streams and when each will be complete (the page flags
    those that will not be within the horizon)."""
    return deployment_outlook(session, deployment, now)


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


def result_level(result: PhantomResult) -> int | None:
    """The worst level of a result's metrics: 0 pass, 1 tolerance, 2 action; None when no
    metric had a tolerance."""
    levels = [lv for lv in map(verdict_level, (result.verdicts or {}).values()) if lv is not None]
    return max(levels) if levels else None


def scanner_verdict(
    recent: Mapping[str, Sequence[PhantomResult]], alerts: OpenAlerts
) -> tuple[str, list[str]]:
    """The scanner's verdict and why: the worst of its open alerts' severity and of each
    phantom kind's last ``RECENT_RESULTS`` results (outside tolerance: warning, beyond an
    action level: critical), never the last result alone."""
    reasons: list[str] = []
    worst = -1
    judged = False
    for kind, results in sorted(recent.items()):
        levels = [result_level(r) for r in results]
        known = [lv for lv in levels if lv is not None]
        if not known:
            continue
        judged = True
        outside = sum(1 for lv in known if lv >= 1)
        beyond = sum(1 for lv in known if lv >= 2)
        if outside:
            words = f"{outside} of last {len(results)} {kind} results outside tolerance"
            if beyond:
                words += f" ({beyond} beyond the action level)"
            reasons.append(words)
            worst = max(worst, LEVEL_SEVERITY[max(known)].rank)
    alert_words = alerts.words()
    if alert_words:
        reasons.append(alert_words)
        worst = max(worst, _severity_rank(alerts.worst))
    if worst >= 0:
        return str(next(s for s in Severity if s.rank == worst)), reasons
    if judged:
        return "ok", [f"last {RECENT_RESULTS} results of each kind within tolerance"]
    return "no tolerance", ["no result was judged against a tolerance"]


def devices(session: Session, principal: Principal) -> list[DeviceRow]:
    out = []
    unresolved = _unresolved(session, Alert.device_id)
    for d in session.exec(select(Device).order_by(col(Device.site_id), col(Device.id))):
        if d.id is None or not principal.can_read_site(d.site_id):
            continue
        results = list(
            session.exec(
                select(PhantomResult)
                .where(PhantomResult.device_id == d.id)
                .order_by(col(PhantomResult.acquired_at).desc(), col(PhantomResult.id).desc())
            )
        )
        recent: dict[str, list[PhantomResult]] = defaultdict(list)
        for r in results:
            if len(recent[r.kind]) < RECENT_RESULTS:
                recent[r.kind].append(r)
        alerts = open_alerts_of(unresolved.get(d.id, []))
        verdict, reasons = scanner_verdict(recent, alerts)
        if not results and alerts.worst == "ok":
            verdict, reasons = "no results", []
        out.append(
            DeviceRow(
                id=d.id,
                site_id=d.site_id,
                name=device_name(d),
                modality=d.modality,
                results=len(results),
                last_result_at=results[0].acquired_at if results else None,
                verdict=verdict,
                reasons=reasons,
                unsigned=sum(1 for r in results if r.reviewed_by is None),
                alerts=alerts,
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
    state: str  # "monitoring" | "collecting a larger reference (...)" | "stopped: ..."
    reference: str
    statistics: list[tuple[str, str]]
    path: StreamPath | None
    note: str | None
    alerts: list[Alert]
    # the quantity itself against its reference (numeric and yes/no record streams)
    quantity: QuantityChart | None = None
    events: list[Event] = field(default_factory=list)


@dataclass
class DeploymentStreams:
    """A deployment's streams as the page shows them: alerted streams first, each with its
    quantity chart; the streams still collecting their first reference in one summary."""

    views: list[StreamView]
    collecting: CollectingSummary
    note: str | None  # why no statistic history is drawn, when it is not
    quantity_note: str | None  # when the quantity charts show only the latest records


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
    return [(as_utc(r.acquired_at), record_view(r)) for r in rows]


Observed = list[tuple[int, datetime, Any]]


def _observed(stream: Stream, fed: Sequence[tuple[datetime, dict[str, Any]]]) -> Observed:
    """The stream's observations among the consumed records: (row, acquired_at, value)."""
    out = []
    for row, (at, rec) in enumerate(fed):
        value = stream.observation(rec)
        if value is not None:
            out.append((row, at, value))
    return out


def _monitored(stream: Stream, observed: Observed) -> Observed | None:
    """The observations the charted detector took (the first ones formed the reference)."""
    name = CHARTED_DETECTOR.get(stream.spec.kind)
    det = stream.detectors.get(name) if name else None
    if det is None:
        return None
    return observed[max(len(observed) - det.n, 0) :] if det.n else []


def _replay(stream: Stream, observed: Observed) -> StreamPath | None:
    name = CHARTED_DETECTOR.get(stream.spec.kind)
    det = stream.detectors.get(name) if name else None
    monitored = _monitored(stream, observed)
    if name is None or det is None or monitored is None:
        return None
    run = stream.replay(name, [(row, value) for row, _, value in monitored])
    times = [chart_time(at) or "" for _, at, _ in monitored]
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


def _order(view: StreamView) -> tuple[int, int, str, str]:
    """Alerted streams first, those with a chart of their quantity before those without (so
    the page's first chart is an alerted stream's quantity); within them, an alert not
    resolved first, then the earliest change. Then the other charted streams, then the rest;
    by name within each."""
    first = min((e.start for e in episodes_of(view.alerts) if e.start), default="~")
    charted = view.quantity is not None
    if view.alerts:
        return (0 if charted else 1), (0 if unresolved(view.alerts) else 1), first, view.name
    return (2 if charted else 3), 0, "", view.name


def stream_views(
    session: Session, deployment: Deployment, monitor: DeploymentMonitor | None
) -> DeploymentStreams:
    """Each stream with its state, its quantity over time against its reference and (for
    numeric and yes/no record streams) its detector's statistic replayed; the streams still
    collecting their first reference summarised."""
    empty = CollectingSummary()
    if monitor is None:
        return DeploymentStreams([], empty, None, None)
    alerts = list(
        session.exec(
            select(Alert)
            .where(Alert.deployment_id == deployment.id)
            .order_by(col(Alert.opened_at), col(Alert.id))
        )
    )
    events = site_events(session, deployment, alerts)
    note = quantity_note = None
    fed: list[tuple[datetime, dict[str, Any]]] = []
    if monitor.records > MAX_REPLAY_RECORDS:
        note = (
            f"The detector has consumed {monitor.records:,} records; the charts replay at most "
            f"{MAX_REPLAY_RECORDS:,}, so no statistic history is drawn."
        )
        quantity_note = (
            f"The quantity charts show the latest {MAX_REPLAY_RECORDS:,} of the "
            f"{monitor.records:,} records analysed."
        )
    if monitor.records:
        fed = fed_records(session, deployment, min(monitor.records, MAX_REPLAY_RECORDS))
    summary = CollectingSummary()
    views = []
    for name, stream in monitor.streams.items():
        spec = stream.spec
        if collecting(stream):
            summary.add(stream, monitor.config.reference_events_min)
            continue
        path = quantity = None
        stream_note = None
        own = [a for a in alerts if a.stream == name]
        if stream.monitoring:
            if spec.source == "feedback":
                stream_note = "Labelled-performance stream: see the performance chart."
            elif spec.kind == "categorical":
                stream_note = (
                    "Categorical stream: watched by windowed G-tests and new-value notices "
                    "(its new values are marked on the charts as events); no running "
                    "statistic to chart."
                )
            else:
                observed = _observed(stream, fed)
                monitored = _monitored(stream, observed)
                # the first monitored observation, when the records read go back that far
                det = stream.detectors.get(CHARTED_DETECTOR[spec.kind])
                started = (
                    monitored[0][1]
                    if monitored and det is not None and len(observed) >= det.n
                    else None
                )
                quantity = quantity_chart(stream, [(at, v) for _, at, v in observed], own, started)
                if note is None:
                    path = _replay(stream, observed)
        views.append(
            StreamView(
                name=name,
                kind=spec.kind,
                source=spec.source,
                badge=STATE_BADGES[stream.state],
                state=stream.describe_state(monitor.config.reference_events_min),
                reference=stream.describe_reference(),
                statistics=_statistics(stream),
                path=path,
                note=stream_note,
                alerts=own,
                quantity=quantity,
                events=within(events, quantity.first, quantity.last) if quantity else [],
            )
        )
    views.sort(key=_order)
    return DeploymentStreams(views, summary, note, quantity_note)


# --- devices --------------------------------------------------------------------------------------

# A NEMA IQ recovery coefficient per sphere, as phase4.phantoms.nema_iq names it: rc_max_37mm.
NEMA_RECOVERY = re.compile(r"^(rc_mean|rc_max)_(\d+(?:\.\d+)?)mm$")
# At most this many site events (new values: a reconstruction, a scanner, a protocol) marked
# on a scanner's charts, the most recent.
MAX_SITE_EVENTS = 12


@dataclass
class SiteEvent:
    """Something that changed at the scanner's site, as an AI deployment there saw it (a new
    value alert: a new reconstruction, protocol or software), marked on the scanner's charts."""

    at: str  # ISO time the change began (acquisition time)
    label: str
    alert_id: int


@dataclass
class MetricChart:
    kind: str
    metric: str
    times: list[str]
    values: list[float]
    verdicts: list[str]
    tolerance: PhantomTolerance | None
    reviewed: list[bool]
    # EARL1/EARL2 acceptance band of a NEMA IQ recovery coefficient (standard -> (lower,
    # upper)); empty for any other metric
    earl: dict[str, tuple[float, float]] = field(default_factory=dict)

    def earl_words(self) -> str:
        """'EARL1 0.95-1.16 (latest inside), EARL2 1.05-1.29 (latest outside)'."""
        if not self.earl or not self.values:
            return ""
        latest = self.values[-1]
        return ", ".join(
            f"{std} {lo:g}–{hi:g} (latest {'inside' if lo <= latest <= hi else 'outside'})"
            for std, (lo, hi) in self.earl.items()
        )


def earl_bands(metric: str) -> dict[str, tuple[float, float]]:
    """The EARL1 and EARL2 bands of a NEMA IQ recovery coefficient (``rc_max_37mm``), from
    ``phase4.phantoms.earl``; empty for any other metric or sphere."""
    m = NEMA_RECOVERY.match(metric)
    if m is None or float(m.group(2)) not in SPHERE_DIAMETERS_MM:
        return {}
    return {std: band(std, m.group(1), float(m.group(2))) for std in EARL_BANDS}


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
                    r.kind,
                    metric,
                    [],
                    [],
                    [],
                    tolerance_for(session, device_id, *key),
                    [],
                    earl_bands(metric),
                )
            c = charts[key]
            c.times.append(r.acquired_at.isoformat())
            c.values.append(value)
            c.verdicts.append(verdict_of(r.verdicts.get(metric)))
            c.reviewed.append(r.reviewed_by is not None)
    return [charts[k] for k in sorted(charts)], list(reversed(results))


def device_site_events(session: Session, device: Device) -> list[SiteEvent]:
    """The new-value alerts (a new reconstruction, scanner, protocol...) of the AI deployments
    at the device's site, the most recent ``MAX_SITE_EVENTS``, oldest first."""
    deployments = select(Deployment.id).where(Deployment.site_id == device.site_id)
    notices = [
        a
        for a in session.exec(
            select(Alert).where(col(Alert.deployment_id).in_(deployments)).order_by(col(Alert.id))
        )
        if AlertCause.of(a.cause) is AlertCause.NEW_CONDITION
    ]
    events = []
    for a in notices:
        detail = (a.evidence or {}).get("detail") or {}
        value = detail.get("value") if isinstance(detail, Mapping) else None
        if value is None and ":" in a.cause:
            value = a.cause.split(":", 1)[1]
        what = a.stream.split("[", 1)[0].rsplit(".", 1)[-1].replace("_", " ")
        shown = f" {str(value)[:40]!r}" if value is not None else ""
        events.append(SiteEvent(change_start(a).isoformat(), f"new {what}{shown}", a.id or 0))
    events.sort(key=lambda e: e.at)
    return events[-MAX_SITE_EVENTS:]


@dataclass
class CanaryChart:
    """The AI's answers on a phantom whose truth is known (the canary), over time: per sphere,
    the AI's SUVmax over the true SUV, and the spheres it found."""

    kind: str
    times: list[str] = field(default_factory=list)
    spheres: dict[float, list[float | None]] = field(default_factory=dict)
    volumes: dict[float, list[float | None]] = field(default_factory=dict)
    detected: list[int] = field(default_factory=list)
    total: list[int] = field(default_factory=list)
    alerts: list[tuple[str, str, int]] = field(default_factory=list)  # (at, words, alert id)


def canary_charts(session: Session, device_id: int) -> list[CanaryChart]:
    """One chart per phantom kind that went through the AI (results holding the truth and the
    AI's outputs), with the canary's alerts (``phase4.monitor.surveillance.phantom_qc``)."""
    results = session.exec(
        select(PhantomResult)
        .where(PhantomResult.device_id == device_id, col(PhantomResult.ai_outputs).is_not(None))
        .order_by(col(PhantomResult.acquired_at), col(PhantomResult.id))
    )
    charts: dict[str, CanaryChart] = {}
    for r in results:
        truth = (r.metrics or {}).get("_truth")
        if not isinstance(truth, Mapping) or not isinstance(r.ai_outputs, Mapping):
            continue
        try:
            matches, _ = match_lesions(truth, r.ai_outputs)
        except (ValueError, TypeError):
            continue  # a malformed answer: the canary pass reports it
        c = charts.setdefault(r.kind, CanaryChart(r.kind))
        row = len(c.times)
        c.times.append(r.acquired_at.isoformat())
        for m in matches:
            for store, value in ((c.spheres, m.suv_max_ratio), (c.volumes, m.volume_ratio)):
                series = store.setdefault(m.diameter_mm, [None] * row)
                series.extend([None] * (row - len(series)))
                series.append(value)
        c.detected.append(sum(m.detected for m in matches))
        c.total.append(len(matches))
    for c in charts.values():
        for store in (c.spheres, c.volumes):
            for series in store.values():
                series.extend([None] * (len(c.times) - len(series)))
    for a in session.exec(
        select(Alert)
        .where(Alert.device_id == device_id, col(Alert.stream).startswith("canary."))
        .order_by(col(Alert.id))
    ):
        c = charts.get(a.stream.removeprefix("canary."))
        if c is not None:
            c.alerts.append((change_start(a).isoformat(), f"alert {a.id} ({a.status})", a.id or 0))
    return [charts[k] for k in sorted(charts)]


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
    report = report_sentence(ev.get("report"))
    if report:
        out.append(report)
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
