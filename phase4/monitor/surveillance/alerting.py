"""Raising alerts from the surveillance passes: one rule for the drift pass and phantom QC.

The drift pass (``detection``) raises alerts on a deployment's streams; phantom QC and the AI
canary (``phantom_qc``) raise them on a device (a scanner), which every deployment reading its
images shares. Both follow the same rule, kept here so that they cannot drift apart:

- **One open alert per (owner, stream, cause).** The owner is a deployment or a device, never
  both. Open means any status but ``resolved``: an acknowledged alert still collects repeats.
- **A repeat is evidence, not a second alert.** An alarm whose (owner, stream, cause) already has
  an open alert adds one to that alert's ``evidence["repeats"]`` and sets
  ``evidence["last_timestamp"]`` to the alarm's ``timestamp``; its title, severity and first
  evidence (links included) stay as they were written. :func:`raise_alert` then returns None, so
  a pass counts only the alerts it opened.
- **Links, both ways, written when an alert opens.** An alert lists, in ``evidence["linked"]``,
  the alerts on the other side that began near its change ("began": an alert's
  ``change_timestamp``, else its ``timestamp``): a deployment's alert lists the deployment's
  alerts on its other streams and the alerts of the devices at its site, begun from 14 days
  before the change's start to one day after the alarm (:func:`deployment_links`); a device's
  alert lists the alerts of the deployments at the device's site begun within 14 days either
  side of its change (:func:`device_links`). Of two related alerts, the one opened second links
  the first (if the first began within its window); nothing is added to an alert's links after
  it opened, and repeats do not recompute them. The headline (``headline``) names links both
  ways: an alert's sentence is written again when an alert opened later links it.
- **No audit entry.** Opening an alert or counting a repeat writes none: an alert's audit
  history starts with what a person (or the escalation) does to it
  (``phase4.monitor.domain.alert_actions``), and a pass audits only its own changes of state.
- **Lock order** (``phase4.monitor.store.locks``, and "Lock order" in
  ``phase4.monitor.store.audit``): the owner first (the drift pass holds its deployment's lock),
  then, in one id-ordered lock (:func:`lock_open_alerts`), the open alerts of the owner and of
  the owners at its site whose headlines it may write again (the drift pass: the site's
  scanners'; phantom QC: the deployments' at its scanners' sites), taken before the first
  repeat updates one, then the audit trail last. Repeats and headlines update alerts in the
  order alarms come; without the id-ordered lock, a dispatcher claiming the same alerts in id
  order, or the other pass, could deadlock with the pass. The phantom QC pass holds its phantom
  results, not a deployment.

The alert's other fields (severity, title, the evidence of the alarm) are the caller's: each
pass knows what its alarms mean. Two alerts follow another rule and do not use this module: a
pass's own failure (``detection._flag_deployment``) and a silent probe
(``phase4.alerts.heartbeat``) are said once, without counting repeats, and the silence alert is
never reopened for the same last record.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from phase4.monitor.core.statuses import AlertStatus
from phase4.monitor.store.locks import lock_alerts
from phase4.monitor.store.models import Alert, Deployment, Device

# How far apart two alerts' beginnings may be for one to list the other.
LINK_WINDOW = timedelta(days=14)

Owner = Deployment | Device


def _owned_by(owner: Owner) -> ColumnElement[bool]:
    """The alerts of this deployment or of this device."""
    if isinstance(owner, Deployment):
        return col(Alert.deployment_id) == owner.id
    return col(Alert.device_id) == owner.id


def lock_open_alerts(session: Session, *owners: Owner) -> None:
    """Lock the owners' open alerts in id order, before a pass adds repeats to them: the
    dispatcher claims alerts in id order, and updates made in the order alarms came would take
    the same rows the other way round (a deadlock PostgreSQL breaks by aborting one). A pass over
    several owners in one transaction locks all of theirs at once, so the order holds across
    owners too."""
    if not owners:
        return
    ids = session.exec(
        select(Alert.id).where(
            sa.or_(*(_owned_by(o) for o in owners)), Alert.status != AlertStatus.RESOLVED
        )
    )
    lock_alerts(session, sorted(i for i in ids if i is not None))


def open_alert(session: Session, owner: Owner, stream: str, cause: str) -> Alert | None:
    """The owner's open alert of this stream and cause, if there is one."""
    return session.exec(
        select(Alert).where(
            _owned_by(owner),
            Alert.stream == stream,
            Alert.cause == cause,
            Alert.status != AlertStatus.RESOLVED,
        )
    ).first()


def raise_alert(
    session: Session,
    owner: Owner,
    *,
    stream: str,
    cause: str,
    severity: str,
    title: str,
    evidence: dict[str, Any],
) -> Alert | None:
    """Open an alert for the alarm, with its links (returned, flushed so it has an id), or add
    the alarm as a repeat to the open alert of the same owner, stream and cause (None)."""
    existing = open_alert(session, owner, stream, cause)
    if existing is not None:
        repeated = dict(existing.evidence)
        repeated["repeats"] = int(repeated.get("repeats", 0)) + 1
        repeated["last_timestamp"] = evidence.get("timestamp")
        existing.evidence = repeated
        session.add(existing)
        return None
    if isinstance(owner, Deployment):
        links = deployment_links(session, owner, stream, evidence)
    else:
        links = device_links(session, owner, evidence)
    alert = Alert(
        deployment_id=owner.id if isinstance(owner, Deployment) else None,
        device_id=owner.id if isinstance(owner, Device) else None,
        stream=stream,
        cause=cause,
        severity=severity,
        title=title,
        evidence={**evidence, "linked": links},
    )
    session.add(alert)
    session.flush()
    return alert


def began(evidence: dict[str, Any]) -> Any:
    """When the change behind an alarm began: its estimated start, else the alarm's time."""
    return evidence.get("change_timestamp") or evidence.get("timestamp")


def _aware(stamp: Any) -> datetime | None:
    """An evidence timestamp as an aware datetime (naive ones are UTC); None if it is not one."""
    if not isinstance(stamp, str):
        return None
    try:
        when = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def deployment_links(
    session: Session, deployment: Deployment, stream: str, evidence: dict[str, Any]
) -> list[dict[str, Any]]:
    """What else happened around the change's estimated start: the deployment's alerts on its
    other streams, and the alerts of the devices at its site (phantom QC, device changes), which
    have no deployment. A scanner's QC failure dated near an AI drift is often its explanation."""
    start = _aware(began(evidence))
    end = _aware(evidence.get("timestamp"))
    if start is None or end is None:
        return []
    lo, hi = start - LINK_WINDOW, end + timedelta(days=1)
    site_devices = select(Device.id).where(Device.site_id == deployment.site_id)
    candidates = select(Alert).where(
        sa.or_(
            col(Alert.deployment_id) == deployment.id,
            sa.and_(
                col(Alert.deployment_id).is_(None),
                col(Alert.device_id).in_(site_devices),
            ),
        )
    )
    links: list[dict[str, Any]] = []
    for other in session.exec(candidates.order_by(col(Alert.opened_at), col(Alert.id))):
        on_device = other.deployment_id is None
        if not on_device and other.stream == stream:
            continue
        other_began = began(other.evidence)
        when = _aware(other_began)
        if when is None:
            continue
        if lo <= when <= hi:
            link: dict[str, Any] = {
                "what": other.title,
                "at": other_began,
                "alert_id": other.id,
                "stream": other.stream,
                "cause": other.cause,
            }
            if on_device:
                link["device_id"] = other.device_id
            links.append(link)
    return links


def device_links(
    session: Session, device: Device, evidence: dict[str, Any]
) -> list[dict[str, Any]]:
    """The AI's alerts, in deployments at the device's site, that began near this change."""
    start_s = began(evidence)
    if start_s is None:
        return []
    start = datetime.fromisoformat(start_s)
    deployments = list(
        session.exec(select(Deployment.id).where(Deployment.site_id == device.site_id))
    )
    links: list[dict[str, Any]] = []
    for other in session.exec(
        select(Alert)
        .where(col(Alert.deployment_id).in_(deployments))
        .order_by(col(Alert.opened_at))
    ):
        when_s = began(other.evidence)
        if when_s is None:
            continue
        when = datetime.fromisoformat(when_s)
        if abs(when - start) <= LINK_WINDOW:
            links.append(
                {
                    "what": other.title,
                    "at": when_s,
                    "alert_id": other.id,
                    "deployment": other.deployment_id,
                    "stream": other.stream,
                    "cause": other.cause,
                }
            )
    return links
