"""Every alert's headline: written into its evidence by the pass that raises it, and read by
every surface (alert page, email and webhook, API, export) through :func:`headline`.

The sentence itself is composed by ``phase4.monitor.core.headline`` (pure wording); this module
gathers what it needs from the store: the site's name, the scanner's model, the deployment's
names for its streams (``MonitoringConfig.quantities``), the size of the change
(``evidence["change"]``, ``phase4.monitor.surveillance.change_size``) and the linked alerts, each
said with its own size and date. :func:`write_headline` stores the sentence in
``evidence["headline"]``; the drift pass and phantom QC call it when an alert opens and again when
it repeats (its size sharpens as values accumulate).

An alert written before headlines existed, or by a pass that does not write one (a silent probe,
a pass's own failure), still has one: :func:`headline` composes it from the evidence alone, with
the names the caller knows.

The times of an alert people see are the world's: when the change began (estimated) and when it
was detected, both times of the studies or scans (:func:`world_times`); the time phase4 processed
them (``opened_at``) belongs to the audit details. A time after the present is never shown as a
date.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col

from phase4.monitor.core.headline import (
    Linked,
    as_utc,
    change_sentence,
    clean,
    day_or_future,
    delay_days,
    duration_words,
    event_sentence,
    limit_sentence,
    notice_sentence,
    short_size,
)
from phase4.monitor.core.monitoring import MonitoringConfigError, parse_monitoring
from phase4.monitor.core.quantities import Quantity, quantity_of
from phase4.monitor.core.statuses import AlertCause, AlertStatus
from phase4.monitor.drift.streams import Stream
from phase4.monitor.store.models import Alert, Deployment, Device, Site, utcnow
from phase4.monitor.surveillance.change_size import stream_change

HEADLINE_CHARS_MAX = 600


def _names_of(deployment: Deployment | None) -> dict[str, dict[str, Any]]:
    if deployment is None:
        return {}
    try:
        return parse_monitoring(deployment.monitoring).quantity_names()
    except MonitoringConfigError:
        return {}


def _names(session: Session, alert: Alert) -> dict[str, dict[str, Any]]:
    """The deployment's own names for its streams (none for a device's alert)."""
    if alert.deployment_id is None:
        return {}
    return _names_of(session.get(Deployment, alert.deployment_id))


def _site_label(session: Session, site_id: str | None) -> str | None:
    if site_id is None:
        return None
    site = session.get(Site, site_id)
    return clean(site.name if site is not None and site.name else site_id, 100)


def where_of(session: Session, alert: Alert) -> str:
    """'at University Hospital A' (a deployment's site), 'on Biograph Vision 600 (University
    Hospital A)' (a scanner)."""
    if alert.device_id is not None:
        device = session.get(Device, alert.device_id)
        if device is not None:
            site = _site_label(session, device.site_id)
            return f"on {clean(device.model, 100)}" + (f" ({site})" if site else "")
        return f"on scanner #{alert.device_id}"
    if alert.deployment_id is not None:
        deployment = session.get(Deployment, alert.deployment_id)
        site = _site_label(session, deployment.site_id) if deployment is not None else None
        return f"at {site}" if site else f"in {clean(alert.deployment_id, 100)}"
    return ""


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def began_of(evidence: Mapping[str, Any]) -> datetime | None:
    """When the change began: its estimated start, else the alarm's time."""
    return as_utc(evidence.get("change_timestamp")) or as_utc(evidence.get("timestamp"))


def short_phrase(alert: Alert, names: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """An alert in a few words, for another alert's headline: 'injected activity +8.0%',
    'cylinder recovery ratio outside tolerance'."""
    ev = alert.evidence or {}
    q = quantity_of(alert.stream, names)
    cause = AlertCause.of(alert.cause)
    if cause is AlertCause.PHANTOM_TOLERANCE:
        return f"{q.label} outside tolerance"
    if cause is AlertCause.PHANTOM_ACTION:
        return f"{q.label} beyond its action level"
    if cause is AlertCause.AI_CANARY:
        return f"{q.label} changed"
    if cause is AlertCause.NEW_CONDITION:
        detail = ev.get("detail") if isinstance(ev.get("detail"), Mapping) else {}
        value = detail.get("value")
        return f"new {q.label} {clean(value, 40)!r}" if value is not None else f"new {q.label}"
    change = ev.get("change") if isinstance(ev.get("change"), Mapping) else None
    size = short_size(change)
    if size and change is not None and isinstance(change.get("category"), str):
        return f"{q.label} {clean(change['category'], 40)!r} {size}"
    if size:
        return f"{q.label} {size}"
    verb = {"up": "rose", "down": "fell"}.get(str(ev.get("direction")), "changed")
    return f"{q.label} {verb}"


def _link_ids(alert: Alert) -> list[int]:
    raw = (alert.evidence or {}).get("linked")
    return [
        item["alert_id"]
        for item in (raw if isinstance(raw, list) else [])
        if isinstance(item, Mapping) and isinstance(item.get("alert_id"), int)
    ]


def _linking(session: Session, alert: Alert) -> list[Alert]:
    """The alerts that list this one among their links (opened after it): of a deployment's
    alert, the deployment's other alerts and its site's scanners'; of a scanner's alert, the
    alerts of the deployments at its site (the candidates ``alerting`` links)."""
    if alert.id is None:
        return []
    if alert.deployment_id is not None:
        deployment = session.get(Deployment, alert.deployment_id)
        if deployment is None:
            return []
        devices = sa.select(Device.id).where(col(Device.site_id) == deployment.site_id)
        owners = sa.or_(
            col(Alert.deployment_id) == deployment.id, col(Alert.device_id).in_(devices)
        )
    elif alert.device_id is not None:
        device = session.get(Device, alert.device_id)
        if device is None:
            return []
        deployments = sa.select(Deployment.id).where(col(Deployment.site_id) == device.site_id)
        owners = col(Alert.deployment_id).in_(deployments)
    else:
        return []
    # only an alert opened later links this one (``alerting``): ids grow
    query = sa.select(Alert).where(owners, col(Alert.id) > alert.id).order_by(col(Alert.id))
    return [a for a in session.execute(query).scalars() if alert.id in _link_ids(a)]


def linked_of(session: Session, alert: Alert) -> list[Linked]:
    """The alerts linked to this one, both ways (those it lists in ``evidence["linked"]``, and
    those opened later that list it), each in a few words with the start of its change."""
    out: list[Linked] = []
    seen: set[int] = set()
    others = [session.get(Alert, i) for i in _link_ids(alert)] + _linking(session, alert)
    for other in others:
        if other is None or other.id is None or other.id in seen:
            continue
        seen.add(other.id)
        out.append(Linked(short_phrase(other, _names(session, other)), began_of(other.evidence)))
    return out


def compose(
    alert: Alert,
    *,
    where: str,
    now: datetime,
    names: Mapping[str, Mapping[str, Any]] | None = None,
    linked: list[Linked] | None = None,
) -> str:
    """The alert's sentence from its evidence, with the names given (no store)."""
    ev: Mapping[str, Any] = alert.evidence or {}
    q: Quantity = quantity_of(alert.stream, names)
    links = linked or []
    cause = AlertCause.of(alert.cause)
    detected = as_utc(ev.get("timestamp"))
    began = began_of(ev)
    if cause is AlertCause.PROBE_SILENCE:
        last = as_utc(ev.get("last_record_at"))
        since = day_or_future(last, now)
        silence = _num(ev.get("silence_s"))
        length = f" for {duration_words(silence)}" if silence is not None else ""
        who = clean(alert.deployment_id or "?", 100)
        text = f"No records received from the probe of {who}{length}"
        return text + (f" (the last acquired {since})." if since else ".")
    if cause in (AlertCause.PHANTOM_TOLERANCE, AlertCause.PHANTOM_ACTION):
        value = _num(ev.get("statistic"))
        if value is not None:
            limit = ev.get("limit") if isinstance(ev.get("limit"), Mapping) else None
            if limit is None:
                level = "tolerance" if cause is AlertCause.PHANTOM_TOLERANCE else "action"
                limit = {"level": level}
            repeats = int(_num(ev.get("repeats")) or 0)
            return limit_sentence(
                q, where, value, limit, detected, now=now, repeats=repeats, linked=links
            )
    if cause is AlertCause.AI_CANARY:
        reasons = ev.get("reasons")
        first = clean(reasons[0], 160) if isinstance(reasons, list) and reasons else ""
        return event_sentence(f"{q.label} {where} changed", detected, first, now=now, linked=links)
    if cause is AlertCause.NEW_CONDITION or ev.get("kind") == "notice":
        detail = ev.get("detail") if isinstance(ev.get("detail"), Mapping) else {}
        return notice_sentence(q, where, detail.get("value"), began, now=now, linked=links)
    if cause in (AlertCause.DRIFT, AlertCause.PERFORMANCE, AlertCause.PHANTOM_DRIFT):
        change = ev.get("change") if isinstance(ev.get("change"), Mapping) else None
        direction = ev.get("direction") if ev.get("direction") in ("up", "down") else None
        return change_sentence(q, where, change, direction, began, detected, now=now, linked=links)
    return clean(alert.title, HEADLINE_CHARS_MAX)


def write_headlines(session: Session, alerts: list[Alert], now: datetime | None = None) -> None:
    """Write the headlines of ``alerts`` (opened or repeated by a pass), then of the unresolved
    alerts they list among their links: those name these in return, with their fresh sizes.
    The caller holds the locks of all of them (``alerting.lock_open_alerts`` over the owners
    and their site's other owners)."""
    now = now or utcnow()
    done: set[int] = set()
    for alert in alerts:
        write_headline(session, alert, now)
        done.add(alert.id or 0)
    for alert in alerts:
        for other_id in _link_ids(alert):
            other = session.get(Alert, other_id) if other_id not in done else None
            if other is not None and other.status != AlertStatus.RESOLVED:
                write_headline(session, other, now)
                done.add(other_id)


def write_headline(session: Session, alert: Alert, now: datetime | None = None) -> str:
    """Compose the alert's sentence from the store and keep it in ``evidence["headline"]``."""
    text = compose(
        alert,
        where=where_of(session, alert),
        now=now or utcnow(),
        names=_names(session, alert),
        linked=linked_of(session, alert),
    )[:HEADLINE_CHARS_MAX]
    if (alert.evidence or {}).get("headline") != text:  # no row written for the same words
        alert.evidence = {**(alert.evidence or {}), "headline": text}
        session.add(alert)
    return text


def headline(alert: Alert, *, site: str | None = None, now: datetime | None = None) -> str:
    """The alert's sentence, as every surface shows it: the one its pass wrote, else one
    composed from its evidence (``site``: the site's name or id, when the caller knows it)."""
    stored = (alert.evidence or {}).get("headline")
    if isinstance(stored, str) and stored.strip():
        return clean(stored, HEADLINE_CHARS_MAX)
    if alert.device_id is not None:
        where = f"on scanner #{alert.device_id}" + (f" ({clean(site, 100)})" if site else "")
    elif site:
        where = f"at {clean(site, 100)}"
    else:
        where = f"in {clean(alert.deployment_id or 'no deployment', 100)}"
    return compose(alert, where=where, now=now or utcnow())


def subject_line(alert: Alert, *, site: str | None = None) -> str:
    """The sentence without its linked alerts (an email's subject)."""
    text = headline(alert, site=site)
    return text.split("; linked to: ", 1)[0].rstrip(".")


@dataclass(frozen=True, slots=True)
class WorldTimes:
    """When the change began and when it was detected (world times; None: unknown, or after
    the present and so not shown), the delay between them, and whether a time lay in the
    future."""

    began: datetime | None
    detected: datetime | None
    delay_days: float | None
    future: bool


def world_times(alert: Alert, now: datetime | None = None) -> WorldTimes:
    """The alert's times of the world: its change's estimated start and its detection (for a
    silent probe: its last record, and when the silence was noticed)."""
    now = now or utcnow()
    ev = alert.evidence or {}
    if AlertCause.of(alert.cause) is AlertCause.PROBE_SILENCE:
        began, detected = as_utc(ev.get("last_record_at")), as_utc(alert.opened_at)
    else:
        detected = as_utc(ev.get("timestamp"))
        began = as_utc(ev.get("change_timestamp")) or detected
    future = any(t is not None and t > now for t in (began, detected))
    began = began if began is None or began <= now else None
    detected = detected if detected is None or detected <= now else None
    return WorldTimes(began, detected, delay_days(began, detected), future)


def detected_order() -> ColumnElement[Any]:
    """An SQL sort key: the detection's world time (the evidence's ``timestamp``, ISO text in
    UTC; a silent probe's last record), else the time the alert was opened."""
    evidence = col(Alert.evidence)
    return sa.func.coalesce(
        evidence["timestamp"].as_string(),
        evidence["last_record_at"].as_string(),
        sa.cast(col(Alert.opened_at), sa.String),
    )


def describe_drift_alerts(
    session: Session,
    deployment: Deployment,
    streams: Mapping[str, Stream],
    alerts: list[Alert],
    now: datetime | None = None,
    *,
    analysed: datetime | None = None,
) -> None:
    """Size the change of each of the deployment's alerts a pass opened, repeated or fed
    (``evidence["change"]``, over the values since the change through ``analysed``, the last
    record the pass analysed), then write their headlines (after all sizes, so that one alert's
    headline names the fresh size of another)."""
    now = now or utcnow()
    names = _names_of(deployment)
    for alert in alerts:
        evidence = dict(alert.evidence or {})
        quantity = quantity_of(alert.stream, names)
        change = stream_change(
            session,
            deployment,
            streams.get(alert.stream),
            evidence,
            quantity,
            now=now,
            analysed=analysed,
        )
        if change is not None and change != evidence.get("change"):
            evidence["change"] = change
            alert.evidence = evidence
            session.add(alert)
    write_headlines(session, alerts, now)
