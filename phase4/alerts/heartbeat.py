"""Probe silence: a deployment whose records stop arriving is an alert, not a quiet dashboard.

A silent probe looks exactly like a perfectly stable AI: no record, no drift. So each pass
(:func:`check_heartbeats`) asks of every deployment that has records: is the time since its last
record *arrived* unusual for it?

**Arrivals, not acquisitions.** Silence is measured on ``received_at`` (when the monitor got the
record), not ``acquired_at``: the question is whether the probe still talks to the monitor, and
a probe that catches up on a backlog delivers old acquisitions late. Records received within one
minute of each other count as one arrival (a batch).

**What is usual** is learned from the deployment's own arrivals over ``heartbeat_lookback_days``
(28) before its last record; nothing is judged before ``heartbeat_min_history_days`` (7, so
that a weekend has been seen) and ``heartbeat_min_arrivals`` (20). Two rules judge the current
silence (either one alarms):

1. *Gap rule*: silence longer than ``heartbeat_factor`` (1.5) x the usual gap, where the usual
   gap is the ``heartbeat_gap_quantile`` (1.0: the longest) of the gaps between arrivals in the
   lookback, and never shorter than ``heartbeat_min_silence_s`` (30 min). A clinic's gaps are
   short in working hours, ~15 h overnight and ~63 h over a weekend; weekends are a small share
   of gaps (about 1 in 100), so any quantile below the maximum risks calling every weekend a
   silence. With the maximum, the rule never alarms on a pattern seen in the last four weeks
   (including a holiday), and catches a probe that stays away longer than that.
2. *Weekly rule* (needs two weeks of history): the same hours of the week, in each past week,
   brought on average ``lambda`` arrivals. If ``lambda`` >= ``heartbeat_expected_arrivals`` (8)
   and none came (and the silence is at least ``heartbeat_min_silence_s``), the silence is
   improbable: under Poisson arrivals P(none) = e^-lambda <= e^-8 = 3e-4. This catches a probe
   that dies on a Monday morning within a few working hours, where the gap rule would wait out a
   weekend's length. Hours of the week are UTC; a daylight-saving shift moves a clinic's day by
   one hour, which the threshold absorbs.

**Closed days.** A public holiday on a working day would trip the weekly rule, and a holiday
beside a weekend can make a gap longer than any of the last four weeks'. The site's calendar
(``closed_days`` / ``site_closed_days``, each day from midnight to midnight in
``clinic_timezone`` / ``site_timezones``) removes closed hours from both rules: a gap, current or
past, counts only its open hours, and the weekly rule does not expect this week the arrivals
that past weeks brought at hours that fall on a closed day now, nor learn from a past week that
was closed at some of the silent hours that are open now (a one-off holiday). The evidence
says how much of the silence was closed (``closed_s``).

**One alert per silence.** The alert (stream ``probe.heartbeat``, cause ``probe_silence``,
severity ``warning``) is opened at most once while another silence alert of the deployment is
unresolved, and never twice for the same last record (so a silence resolved by a person does not
reopen until records have come and gone again).

**Resumption resolves it.** When records arrive again, the open alert gets ``resumed_at`` in its
evidence and is resolved by actor ``phase4`` with the reason "records resumed ..." (audited, as
any resolution). Decision: the condition is objectively over, and a later silence must open,
and notify, a fresh alert, which an unresolved old one would suppress. Whether records were
lost in between is for a person to check; the reason says so, and the alert stays in the
history with its notifications.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from phase4.alerts.config import ClinicCalendar, NotifySettings
from phase4.alerts.notify.render import fmt_duration
from phase4.monitor.core.statuses import AlertCause, AlertStatus, Severity
from phase4.monitor.domain.alert_actions import resolve_alert
from phase4.monitor.store.locks import lock_alerts, lock_deployment
from phase4.monitor.store.models import Alert, Deployment, InferenceRecord, utcnow

log = logging.getLogger("phase4.heartbeat")

HEARTBEAT_STREAM = "probe.heartbeat"
SILENCE_CAUSE = AlertCause.PROBE_SILENCE
RESOLVER = "phase4"
BATCH_S = 60.0
WEEK = timedelta(days=7)
MAX_ROWS = 100_000


@dataclass(frozen=True)
class SilenceVerdict:
    """The numbers behind one deployment's heartbeat check (all seconds, UTC ISO times)."""

    last_record_at: str
    silence_s: float
    arrivals: int
    usual_gap_s: float | None
    allowed_silence_s: float | None
    expected_arrivals: float | None
    weeks_compared: int
    rule: str | None  # "gap", "weekly", "gap+weekly" or None (not silent)
    closed_s: float = 0.0  # of silence_s, the seconds on the site's closed days

    @property
    def silent(self) -> bool:
        return self.rule is not None


def arrivals_of(received: Sequence[datetime]) -> list[datetime]:
    """Sorted arrival times, records within ``BATCH_S`` of an arrival's first counted as one."""
    out: list[datetime] = []
    for t in sorted(received):
        if not out or (t - out[-1]).total_seconds() > BATCH_S:
            out.append(t)
    return out


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


def _closed_spans(calendar: ClinicCalendar) -> list[tuple[datetime, datetime]]:
    """Each closed day as [local midnight, next local midnight), in UTC: a day on which the
    clocks change lasts 23 or 25 hours, which wall-clock subtraction in the zone would not see."""
    zone = calendar.zone
    return [
        (
            datetime.combine(d, time(0), tzinfo=zone).astimezone(UTC),
            datetime.combine(d + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC),
        )
        for d in sorted(calendar.closed)
    ]


def closed_seconds(start: datetime, end: datetime, calendar: ClinicCalendar | None) -> float:
    """How much of (start, end] falls on the calendar's closed days."""
    if calendar is None or not calendar.closed:
        return 0.0
    start, end = _utc(start), _utc(end)
    total = 0.0
    for lo, hi in _closed_spans(calendar):
        overlap = (min(end, hi) - max(start, lo)).total_seconds()
        if overlap > 0:
            total += overlap
    return total


def _closed_then_open_now(
    lo: datetime, hi: datetime, shift: timedelta, calendar: ClinicCalendar | None
) -> bool:
    """Whether some closed hours of the past interval (lo, hi] fall, ``shift`` later, on hours
    that are open now (a holiday then, not a closure that recurs on that weekday). An hour of
    slack: hours of the week are UTC, and a daylight-saving change moves a local day by one."""
    if calendar is None or not calendar.closed:
        return False
    lo, hi = _utc(lo), _utc(hi)
    for a, b in _closed_spans(calendar):
        a, b = max(a, lo), min(b, hi)
        if b > a:
            still_closed = closed_seconds(a + shift, b + shift, calendar)
            if (b - a).total_seconds() - still_closed > 3600:
                return True
    return False


def _closed_on(t: datetime, calendar: ClinicCalendar | None) -> bool:
    return calendar is not None and _local_date(t, calendar) in calendar.closed


def _local_date(t: datetime, calendar: ClinicCalendar) -> date:
    return _utc(t).astimezone(calendar.zone).date()


def _utc(t: datetime) -> datetime:
    """Naive times are UTC here (the store's convention), never the machine's local time."""
    return t.astimezone(UTC) if t.tzinfo is not None else t.replace(tzinfo=UTC)


def assess(
    arrivals: Sequence[datetime],
    now: datetime,
    settings: NotifySettings,
    calendar: ClinicCalendar | None = None,
) -> SilenceVerdict:
    """Judge the silence since the last of ``arrivals`` (sorted, batched) at ``now``, counting
    only the open hours of ``calendar`` (none closed when omitted)."""
    last = arrivals[-1]
    silence = (now - last).total_seconds()
    closed = closed_seconds(last, now, calendar)
    history = [t for t in arrivals if t >= last - timedelta(days=settings.heartbeat_lookback_days)]
    gaps = [
        (b - a).total_seconds() - closed_seconds(a, b, calendar)
        for a, b in itertools.pairwise(history)
    ]
    usual = allowed = expected = None
    weeks = 0
    rules: list[str] = []
    span = (last - history[0]).total_seconds()
    enough = (
        len(history) >= settings.heartbeat_min_arrivals
        and span >= settings.heartbeat_min_history_days * 86400
    )
    if enough and gaps:
        usual = _quantile(gaps, settings.heartbeat_gap_quantile)
        allowed = max(settings.heartbeat_factor * usual, settings.heartbeat_min_silence_s)
        if silence - closed > allowed:
            rules.append("gap")
        # The silent interval (last, now], shifted back whole weeks while it stays inside history
        counts = []
        k = 1
        while now - k * WEEK <= last and last - k * WEEK >= history[0]:
            lo, hi = last - k * WEEK, now - k * WEEK
            # what that week brought at hours that are open this week; a week that was itself
            # closed at some of them says nothing about those hours and is left out
            if not _closed_then_open_now(lo, hi, k * WEEK, calendar):
                counts.append(
                    sum(
                        1
                        for t in history
                        if lo < t <= hi and not _closed_on(t + k * WEEK, calendar)
                    )
                )
            k += 1
        weeks = len(counts)
        if weeks >= 2:
            expected = sum(counts) / weeks
            if (
                expected >= settings.heartbeat_expected_arrivals
                and silence >= settings.heartbeat_min_silence_s
            ):
                rules.append("weekly")
    return SilenceVerdict(
        last_record_at=last.isoformat(),
        silence_s=silence,
        arrivals=len(history),
        usual_gap_s=usual,
        allowed_silence_s=allowed,
        expected_arrivals=expected,
        weeks_compared=weeks,
        rule="+".join(rules) or None,
        closed_s=closed,
    )


def _last_received(session: Session, deployment_id: str) -> datetime | None:
    return session.exec(
        select(InferenceRecord.received_at)
        .where(InferenceRecord.deployment_id == deployment_id)
        .order_by(col(InferenceRecord.received_at).desc())
        .limit(1)
    ).first()


def _received_since(session: Session, deployment_id: str, since: datetime) -> list[datetime]:
    return list(
        session.exec(
            select(InferenceRecord.received_at)
            .where(
                InferenceRecord.deployment_id == deployment_id,
                col(InferenceRecord.received_at) >= since,
            )
            .order_by(col(InferenceRecord.received_at).desc())
            .limit(MAX_ROWS)
        )
    )


def _silence_alerts(session: Session, deployment_id: str) -> list[Alert]:
    return list(
        session.exec(
            select(Alert)
            .where(Alert.deployment_id == deployment_id, Alert.cause == SILENCE_CAUSE)
            .order_by(col(Alert.id))
        )
    )


def _resume(
    engine: Engine, alert_id: int, deployment_id: str, calendar: ClinicCalendar | None
) -> bool:
    """Records came after the alert's last record: note when, and resolve it (audited)."""
    with Session(engine, expire_on_commit=False) as session:
        alert = lock_alerts(session, [alert_id]).get(alert_id)
        if alert is None or alert.status == AlertStatus.RESOLVED:
            session.rollback()
            return False
        last = datetime.fromisoformat(str(alert.evidence.get("last_record_at")))
        resumed = session.exec(
            select(sa.func.min(InferenceRecord.received_at)).where(
                InferenceRecord.deployment_id == deployment_id,
                col(InferenceRecord.received_at) > last,
            )
        ).first()
        if resumed is None:
            session.rollback()
            return False
        if isinstance(resumed, str):  # SQLite aggregate: no type processing
            resumed = datetime.fromisoformat(resumed)
        if resumed.tzinfo is None:
            resumed = resumed.replace(tzinfo=last.tzinfo)
        evidence = dict(alert.evidence)
        evidence["resumed_at"] = resumed.isoformat()
        evidence["silence_s"] = (resumed - last).total_seconds()
        evidence["closed_s"] = closed_seconds(last, resumed, calendar)
        alert.evidence = evidence
        session.add(alert)
        resolve_alert(
            session,
            alert_id,
            user=RESOLVER,
            reason=f"records resumed at {resumed.isoformat()} after "
            f"{fmt_duration((resumed - last).total_seconds())} of silence; check the probe's "
            "log and spool for records lost in between",
        )
        session.commit()
    log.info("deployment %s: records resumed; silence alert %s resolved", deployment_id, alert_id)
    return True


def _open(engine: Engine, deployment_id: str, verdict: SilenceVerdict, now: datetime) -> int | None:
    with Session(engine, expire_on_commit=False) as session:
        if lock_deployment(session, deployment_id) is None:
            session.rollback()
            return None
        for other in _silence_alerts(session, deployment_id):
            if other.status != AlertStatus.RESOLVED or (
                other.evidence.get("last_record_at") == verdict.last_record_at
            ):
                session.rollback()
                return None
        alert = Alert(
            deployment_id=deployment_id,
            stream=HEARTBEAT_STREAM,
            cause=SILENCE_CAUSE,
            severity=Severity.WARNING,
            title=f"No records from {deployment_id} for {fmt_duration(verdict.silence_s)}",
            evidence={"kind": "heartbeat", **asdict(verdict)},
            opened_at=now,
        )
        session.add(alert)
        session.commit()
        log.warning(
            "deployment %s: no records for %s (rule %s); alert %s opened",
            deployment_id,
            fmt_duration(verdict.silence_s),
            verdict.rule,
            alert.id,
        )
        return alert.id


_warned_sites: set[tuple[str, str]] = set()


def _warn_unknown_sites(settings: NotifySettings, sites: set[str | None]) -> None:
    """A per-site calendar keyed by a site no deployment has (a typo: "site-B" for "site-b")
    would leave that site on the defaults without a word: say so, once per process."""
    for setting, keys in (
        ("PHASE4_SITE_CLOSED_DAYS", settings.site_closed_days),
        ("PHASE4_SITE_TIMEZONES", settings.site_timezones),
    ):
        for site in sorted(set(keys) - sites):
            if (setting, site) in _warned_sites:
                continue
            _warned_sites.add((setting, site))
            log.warning(
                "%s names site %r, which no deployment has (known sites: %s): its days are not "
                "used",
                setting,
                site,
                ", ".join(sorted(str(x) for x in sites if x)) or "none",
            )


def check_heartbeats(
    engine: Engine, settings: NotifySettings, *, now: datetime | None = None
) -> list[int]:
    """One heartbeat pass over every deployment; the ids of the silence alerts it opened."""
    if not settings.heartbeat_enabled:
        return []
    now = now or utcnow()
    opened: list[int] = []
    with Session(engine) as session:
        deployments = list(session.exec(select(Deployment.id).order_by(col(Deployment.id))))
        sites = set(session.exec(select(Deployment.site_id)))
    _warn_unknown_sites(settings, sites)
    for deployment_id in deployments:
        with Session(engine) as session:
            last = _last_received(session, deployment_id)
            if last is None:
                continue
            site_id = session.exec(
                select(Deployment.site_id).where(Deployment.id == deployment_id)
            ).first()
            unresolved = [
                a
                for a in _silence_alerts(session, deployment_id)
                if a.status != AlertStatus.RESOLVED
            ]
            if unresolved:
                alert = unresolved[0]
                began = alert.evidence.get("last_record_at")
                if isinstance(began, str) and last > datetime.fromisoformat(began):
                    session.close()
                    assert alert.id is not None
                    _resume(engine, alert.id, deployment_id, settings.calendar_for(site_id))
                continue
            received = _received_since(
                session, deployment_id, last - timedelta(days=settings.heartbeat_lookback_days)
            )
        verdict = assess(arrivals_of(received), now, settings, settings.calendar_for(site_id))
        if verdict.silent:
            alert_id = _open(engine, deployment_id, verdict, now)
            if alert_id is not None:
                opened.append(alert_id)
    return opened
