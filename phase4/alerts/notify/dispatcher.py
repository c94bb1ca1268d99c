"""Tell people about alerts: each new alert once per recipient and channel, escalations once.

One pass (:func:`notify_pending`), run by the service after each detection pass:

1. **Escalate**: an alert still ``open`` (nobody acknowledged it) ``escalate_after_s`` after it
   opened (``escalate_after_critical_s`` for critical ones; info notices are never escalated)
   gets ``escalated_at`` by a conditional ``UPDATE ... WHERE escalated_at IS NULL``, so only one
   dispatcher wins, and an audit entry (actor ``phase4``, action ``alert.escalate``) in the same
   transaction. Its escalation is then delivered to the second contact like any other message.
2. **Deliver** what is due: a *delivery* is one (alert, channel, purpose, recipient); purpose is
   ``opened`` (every alert not resolved) or ``escalation``. It is due while it has no
   successful attempt, no attempt in progress, its last failed pass is at least
   ``retry_after_s`` old and its first attempt less than ``give_up_after_s`` old.
3. Each attempt is **claimed** before it is made: under a lock of the alert row, the dispatcher
   re-checks that the delivery is due and inserts its :class:`NotificationAttempt` row marked
   "in progress", then commits, sends, and writes the outcome into that row. A second
   dispatcher sees the claim and skips the delivery: exactly one message per delivery, on
   SQLite and PostgreSQL. A claim whose dispatcher died is abandoned after ``CLAIM_TTL_S``.
4. Within a pass a failed attempt is retried up to ``max_attempts`` times, waiting
   ``retry_backoff_s`` x 2^(n-1) (at most ``retry_backoff_max_s``). When a whole channel is down
   (connection refused, timeout, TLS or AUTH failure, any webhook failure), the pass stops using
   that channel: the rest wait for the next pass instead of each waiting out its own retries.

Grouping: email is one message per alert and recipient, except that when more than
``digest_threshold`` alerts of one deployment are due for one recipient in one pass (a change
that trips many streams at once, or notifications switched on over a backlog), they go as one
digest message; each alert still gets its own attempt row. The webhook always gets one POST per
alert (machines do not tire of messages).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from phase4.alerts.config import NotifySettings
from phase4.alerts.notify.email import DeliveryError, build_message, scrub, send_email
from phase4.alerts.notify.render import (
    AlertContext,
    Purpose,
    fmt_duration,
    payload,
    render_alert,
    render_digest,
)
from phase4.alerts.notify.webhook import post_webhook
from phase4.monitor.core.statuses import AlertStatus, Severity
from phase4.monitor.domain.device_names import device_names
from phase4.monitor.store.audit import record_action
from phase4.monitor.store.locks import lock_alerts
from phase4.monitor.store.models import (
    Alert,
    Deployment,
    Device,
    DriftReport,
    NotificationAttempt,
    utcnow,
)

log = logging.getLogger("phase4.notify")

IN_PROGRESS = "in progress"
ABANDONED = "abandoned: the dispatcher stopped before recording an outcome"
CLAIM_TTL_S = 600.0
ESCALATION_ACTOR = "phase4"

_said: set[str] = set()
_said_lock = threading.Lock()


def _say_once(key: str, level: int, message: str, *args: object) -> None:
    """Log a configuration fact once per process, not at every pass."""
    with _said_lock:
        if key in _said:
            return
        _said.add(key)
    log.log(level, message, *args)


@dataclass
class DispatchSummary:
    """What one pass did."""

    channels: list[str] = field(default_factory=list)
    escalated: list[int] = field(default_factory=list)
    delivered: int = 0
    failed_attempts: int = 0
    digests: int = 0
    notified: list[int] = field(default_factory=list)
    given_up: list[int] = field(default_factory=list)
    channels_down: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Delivery:
    """One message to send: to one recipient, about one alert (or a digest of several)."""

    channel: str
    purpose: Purpose
    recipient: str
    alert_ids: tuple[int, ...]


class _Clock:
    """Wall time, or ``now`` moving forward with the monotonic clock (tests move time)."""

    def __init__(self, now: datetime | None) -> None:
        self.base = now
        self.t0 = time.monotonic()

    def __call__(self) -> datetime:
        if self.base is None:
            return utcnow()
        return self.base + timedelta(seconds=time.monotonic() - self.t0)


def _eligible(
    alert: Alert,
    rows: Sequence[NotificationAttempt],
    purpose: str,
    now: datetime,
    settings: NotifySettings,
    *,
    in_round: bool,
) -> bool:
    if purpose == "opened" and alert.status == AlertStatus.RESOLVED:
        return False
    if purpose == "escalation" and (alert.status != AlertStatus.OPEN or alert.escalated_at is None):
        return False
    if any(r.ok for r in rows):
        return False
    ttl = timedelta(seconds=CLAIM_TTL_S)
    if any(r.detail == IN_PROGRESS and r.at > now - ttl for r in rows):
        return False
    if rows:
        if now - min(r.at for r in rows) > timedelta(seconds=settings.give_up_after_s):
            return False
        if not in_round and now - max(r.at for r in rows) < timedelta(
            seconds=settings.retry_after_s
        ):
            return False
    return True


def _given_up(rows: Sequence[NotificationAttempt], now: datetime, settings: NotifySettings) -> bool:
    return (
        bool(rows)
        and not any(r.ok for r in rows)
        and now - min(r.at for r in rows) > timedelta(seconds=settings.give_up_after_s)
    )


def _channels(settings: NotifySettings) -> list[str]:
    channels = []
    if settings.email_enabled:
        channels.append("email")
    else:
        _say_once("email-off", logging.INFO, "email channel off: PHASE4_SMTP_HOST is not set")
    if settings.webhook_enabled:
        channels.append("webhook")
    else:
        _say_once("webhook-off", logging.INFO, "webhook channel off: PHASE4_WEBHOOK_URL is not set")
    return channels


def _recipients(
    channel: str, purpose: str, site: str | None, settings: NotifySettings
) -> list[str]:
    if channel == "webhook":
        return [settings.webhook_label()]
    found = (
        settings.escalation_recipients_for(site)
        if purpose == "escalation"
        else settings.recipients_for(site)
    )
    if not found:
        _say_once(
            f"no-{purpose}-{site}",
            logging.WARNING,
            "no %s recipients for site %s: email for it is off",
            purpose,
            site,
        )
    return found


class _Sites:
    """Site of an alert: its deployment's, or its device's (phantom QC alerts); and the
    device's name, for the message."""

    def __init__(self, session: Session) -> None:
        self.deployments = {
            d: s for d, s in session.execute(sa.select(Deployment.id, Deployment.site_id))
        }
        self.devices = {d: s for d, s in session.execute(sa.select(Device.id, Device.site_id))}
        self.device_names = device_names(session)

    def context(self, alert: Alert, has_report: bool) -> AlertContext:
        name = self.device_names.get(alert.device_id) if alert.device_id is not None else None
        return AlertContext(site_id=self.of(alert), has_report=has_report, device_name=name)

    def of(self, alert: Alert) -> str | None:
        if alert.deployment_id is not None:
            return self.deployments.get(alert.deployment_id)
        if alert.device_id is not None:
            return self.devices.get(alert.device_id)
        return None


def _sites(session: Session) -> _Sites:
    return _Sites(session)


# --- escalation -------------------------------------------------------------------------------


def start_escalations(
    engine: Engine, settings: NotifySettings, now: datetime, channels: Sequence[str]
) -> list[int]:
    """Mark due alerts escalated (exactly once, audited); their messages are sent as deliveries."""
    with Session(engine) as session:
        candidates = list(
            session.exec(
                select(Alert).where(
                    Alert.status == AlertStatus.OPEN,
                    col(Alert.escalated_at).is_(None),
                    Alert.severity != Severity.INFO,
                )
            )
        )
        sites = _sites(session)
    escalated: list[int] = []
    for alert in candidates:
        if Severity.rank_of(alert.severity) < settings.min_severity.rank:
            continue
        delay = settings.escalation_delay_s(alert.severity)
        if now - alert.opened_at < timedelta(seconds=delay):
            continue
        site = sites.of(alert)
        targets = [
            f"{c}:{r}" for c in channels for r in _recipients(c, "escalation", site, settings)
        ]
        if not targets:
            continue
        with Session(engine) as session:
            # The conditional UPDATE is the claim: of two dispatchers, one changes the row.
            won = session.execute(
                sa.update(Alert)
                .where(
                    col(Alert.id) == alert.id,
                    Alert.status == AlertStatus.OPEN,
                    col(Alert.escalated_at).is_(None),
                )
                .values(escalated_at=now)
            )
            if won.rowcount != 1:
                session.rollback()
                continue
            record_action(
                session,
                actor=ESCALATION_ACTOR,
                action="alert.escalate",
                entity_type="alert",
                entity_id=str(alert.id),
                reason=f"not acknowledged {fmt_duration(delay)} after it opened "
                f"({alert.severity}); escalated to the second contact",
                old_value={"status": AlertStatus.OPEN, "escalated_at": None},
                new_value={
                    "status": AlertStatus.OPEN,
                    "escalated_at": now.isoformat(),
                    "to": targets,
                },
            )
            session.commit()
        assert alert.id is not None
        escalated.append(alert.id)
        log.warning("alert %s escalated (%s unacknowledged)", alert.id, fmt_duration(delay))
    return escalated


# --- what is due ------------------------------------------------------------------------------


def pending_deliveries(
    engine: Engine,
    settings: NotifySettings,
    now: datetime,
    channels: Sequence[str],
    summary: DispatchSummary | None = None,
) -> list[Delivery]:
    """Every delivery due now, grouped into digests where there are many."""
    with Session(engine) as session:
        alerts = list(
            session.exec(
                select(Alert).where(Alert.status != AlertStatus.RESOLVED).order_by(col(Alert.id))
            )
        )
        alerts = [a for a in alerts if Severity.rank_of(a.severity) >= settings.min_severity.rank]
        rows: dict[tuple[int, str, str, str], list[NotificationAttempt]] = defaultdict(list)
        ids = [a.id for a in alerts if a.id is not None]
        for start in range(0, len(ids), 500):
            for r in session.exec(
                select(NotificationAttempt).where(
                    col(NotificationAttempt.alert_id).in_(ids[start : start + 500])
                )
            ):
                rows[(r.alert_id, r.channel, r.purpose, r.recipient)].append(r)
        sites = _sites(session)
    singles: list[Delivery] = []
    groups: dict[tuple[str, str | None, str], list[int]] = defaultdict(list)
    for alert in alerts:
        assert alert.id is not None
        site = sites.of(alert)
        purposes: list[Purpose] = ["opened"]
        if alert.escalated_at is not None and alert.status == AlertStatus.OPEN:
            purposes.append("escalation")
        for purpose in purposes:
            for channel in channels:
                for recipient in _recipients(channel, purpose, site, settings):
                    done = rows.get((alert.id, channel, purpose, recipient), [])
                    if not _eligible(alert, done, purpose, now, settings, in_round=False):
                        if summary is not None and _given_up(done, now, settings):
                            summary.given_up.append(alert.id)
                        continue
                    if channel == "email":
                        groups[(purpose, alert.deployment_id, recipient)].append(alert.id)
                    else:
                        singles.append(Delivery(channel, purpose, recipient, (alert.id,)))
    out: list[Delivery] = []
    for (purpose, _, recipient), group in groups.items():
        p: Purpose = "escalation" if purpose == "escalation" else "opened"
        if len(group) > settings.digest_threshold:
            out.append(Delivery("email", p, recipient, tuple(group)))
        else:
            out += [Delivery("email", p, recipient, (i,)) for i in group]
    if summary is not None:
        summary.given_up = sorted(set(summary.given_up))
    return out + singles


# --- one delivery -----------------------------------------------------------------------------


@dataclass
class _Claimed:
    alerts: list[tuple[Alert, AlertContext]]
    row_ids: list[int]


def _claim(
    engine: Engine,
    delivery: Delivery,
    now: datetime,
    settings: NotifySettings,
    *,
    in_round: bool,
) -> _Claimed:
    with Session(engine, expire_on_commit=False) as session:
        locked = lock_alerts(session, delivery.alert_ids)
        attempts: dict[int, list[NotificationAttempt]] = defaultdict(list)
        for r in session.exec(
            select(NotificationAttempt).where(
                col(NotificationAttempt.alert_id).in_(list(locked)),
                NotificationAttempt.channel == delivery.channel,
                NotificationAttempt.purpose == delivery.purpose,
                NotificationAttempt.recipient == delivery.recipient,
            )
        ):
            attempts[r.alert_id].append(r)
        stale = now - timedelta(seconds=CLAIM_TTL_S)
        claimed: list[tuple[Alert, NotificationAttempt]] = []
        for alert_id in delivery.alert_ids:
            alert = locked.get(alert_id)
            if alert is None:
                continue
            done = attempts[alert_id]
            for r in done:
                if r.detail == IN_PROGRESS and r.at <= stale:
                    r.detail = ABANDONED
                    session.add(r)
            if not _eligible(alert, done, delivery.purpose, now, settings, in_round=in_round):
                continue
            row = NotificationAttempt(
                alert_id=alert_id,
                channel=delivery.channel,
                purpose=delivery.purpose,
                recipient=delivery.recipient[:500],
                attempt=len(done) + 1,
                at=now,
                ok=False,
                detail=IN_PROGRESS,
            )
            session.add(row)
            claimed.append((alert, row))
        session.flush()
        sites = _sites(session)
        reported = set(
            session.exec(
                select(DriftReport.alert_id).where(
                    col(DriftReport.alert_id).in_([a.id for a, _ in claimed])
                )
            )
        )
        session.commit()
    return _Claimed(
        [(a, sites.context(a, a.id in reported)) for a, _ in claimed],
        [r.id for _, r in claimed if r.id is not None],
    )


def _finish(engine: Engine, row_ids: Sequence[int], ok: bool, detail: str) -> None:
    with Session(engine) as session:
        session.execute(
            sa.update(NotificationAttempt)
            .where(col(NotificationAttempt.id).in_(list(row_ids)))
            .values(ok=ok, detail=detail[:2000])
        )
        session.commit()


class _ChannelDown(Exception):
    pass


def _send(delivery: Delivery, claimed: _Claimed, settings: NotifySettings) -> str:
    alerts = claimed.alerts
    if delivery.channel == "webhook":
        alert, ctx = alerts[0]
        return post_webhook(settings, payload(alert, ctx, settings, delivery.purpose))
    if len(delivery.alert_ids) > 1:
        rendered = render_digest(alerts, settings, delivery.purpose)
    else:
        rendered = render_alert(alerts[0][0], alerts[0][1], settings, delivery.purpose)
    msg = build_message(
        settings,
        rendered,
        delivery.recipient,
        alert_ids=[a.id for a, _ in alerts if a.id is not None],
        purpose=delivery.purpose,
    )
    return send_email(settings, msg, delivery.recipient)


def deliver(
    engine: Engine,
    delivery: Delivery,
    settings: NotifySettings,
    clock: Callable[[], datetime],
    summary: DispatchSummary,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Up to ``max_attempts`` claimed attempts of one delivery; True once one succeeded."""
    for k in range(settings.max_attempts):
        claimed = _claim(engine, delivery, clock(), settings, in_round=k > 0)
        if not claimed.row_ids:
            return False  # done elsewhere, in progress elsewhere, resolved or acknowledged
        try:
            detail, ok, down = _send(delivery, claimed, settings), True, False
        except DeliveryError as exc:
            detail, ok, down = str(exc), False, exc.channel_down
        except Exception as exc:  # a bug must not stop the other deliveries
            log.exception("delivery of %s failed unexpectedly", delivery)
            detail, ok, down = scrub(f"{type(exc).__name__}: {exc}", settings), False, False
        _finish(engine, claimed.row_ids, ok, detail)
        ids = [a.id for a, _ in claimed.alerts if a.id is not None]
        if ok:
            summary.delivered += 1
            if len(ids) > 1:
                summary.digests += 1
            if delivery.purpose == "opened":
                summary.notified += [i for i in ids if i not in summary.notified]
            log.info(
                "alert(s) %s: %s %s to %s: %s",
                ids,
                delivery.purpose,
                delivery.channel,
                delivery.recipient,
                detail,
            )
            return True
        summary.failed_attempts += 1
        log.warning(
            "alert(s) %s: %s %s to %s, attempt %d of %d failed: %s",
            ids,
            delivery.purpose,
            delivery.channel,
            delivery.recipient,
            k + 1,
            settings.max_attempts,
            detail,
        )
        if k + 1 < settings.max_attempts:
            sleep(min(settings.retry_backoff_s * 2**k, settings.retry_backoff_max_s))
        elif down:
            raise _ChannelDown(detail)
    return False


def notify_pending(
    engine: Engine,
    settings: NotifySettings,
    *,
    now: datetime | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> DispatchSummary:
    """One notification pass: start due escalations, then send every due delivery."""
    clock = _Clock(now)
    summary = DispatchSummary(channels=_channels(settings))
    if not summary.channels:
        _say_once("all-off", logging.WARNING, "no notification channel: alerts reach nobody")
        return summary
    summary.escalated = start_escalations(engine, settings, clock(), summary.channels)
    for delivery in pending_deliveries(engine, settings, clock(), summary.channels, summary):
        if delivery.channel in summary.channels_down:
            continue
        try:
            deliver(engine, delivery, settings, clock, summary, sleep)
        except _ChannelDown as exc:
            summary.channels_down.append(delivery.channel)
            log.error(
                "%s channel down (%s): the remaining deliveries wait for the next pass",
                delivery.channel,
                exc,
            )
    for alert_id in summary.given_up:
        _say_once(
            f"given-up-{alert_id}",
            logging.ERROR,
            "alert %s: gave up notifying after %s; see its attempts on the dashboard",
            alert_id,
            fmt_duration(settings.give_up_after_s),
        )
    return summary
