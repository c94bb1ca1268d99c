"""What people do with alerts: acknowledge and resolve, by name, with a reason, audited.

An alert is ``open`` when raised, ``acknowledged`` when a named person has seen it and taken it
on, ``resolved`` when that person (or another) says what was found and done. Each step needs a
reason and is appended to the audit trail with the old and new state; a resolved alert is never
reopened (a new alarm on the same stream opens a new alert).

An alert belongs to a site: its deployment's site, or, for a phantom QC or canary alert
(``device_id`` set, no deployment), its device's site. Who may read or act on it follows from
that site (``phase4.monitor.api.authz``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, select

from phase4.monitor.core.refusals import ActionRefused
from phase4.monitor.core.statuses import AlertStatus
from phase4.monitor.store.audit import record_action
from phase4.monitor.store.models import Alert, Deployment, Device, utcnow


class AlertActionError(ActionRefused):
    """The action does not fit the alert's state (or names no alert)."""

    default_status = 409


def alert_site(session: Session, alert: Alert) -> str | None:
    """The site an alert belongs to: its deployment's, else its device's (None: neither)."""
    if alert.deployment_id is not None:
        dep = session.get(Deployment, alert.deployment_id)
        return dep.site_id if dep is not None else None
    if alert.device_id is not None:
        dev = session.get(Device, alert.device_id)
        return dev.site_id if dev is not None else None
    return None


@dataclass(frozen=True)
class SiteIndex:
    """Every deployment's and device's site, read once, to place many alerts (lists)."""

    deployments: dict[str, str]
    devices: dict[int, str]

    @classmethod
    def read(cls, session: Session) -> SiteIndex:
        return cls(
            deployments={d.id: d.site_id for d in session.exec(select(Deployment))},
            devices={d.id: d.site_id for d in session.exec(select(Device)) if d.id is not None},
        )

    def site_of(self, alert: Alert) -> str | None:
        if alert.deployment_id is not None:
            return self.deployments.get(alert.deployment_id)
        if alert.device_id is not None:
            return self.devices.get(alert.device_id)
        return None

    def sites_of(self, alerts: Iterable[Alert]) -> list[tuple[Alert, str | None]]:
        return [(a, self.site_of(a)) for a in alerts]


def _state(alert: Alert) -> dict[str, Any]:
    return {
        "status": alert.status,
        "acknowledged_by": alert.acknowledged_by,
        "acknowledged_at": alert.acknowledged_at,
        "acknowledgement": alert.acknowledgement,
        "resolved_by": alert.resolved_by,
        "resolved_at": alert.resolved_at,
        "resolution": alert.resolution,
    }


def _load(session: Session, alert_id: int, reason: str) -> tuple[Alert, str]:
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise AlertActionError(f"no alert {alert_id}", status_code=404)
    reason = (reason or "").strip()
    if not reason:
        raise AlertActionError("a reason is required: say what you checked or did", status_code=422)
    return alert, reason


def acknowledge_alert(session: Session, alert_id: int, *, user: str, reason: str) -> Alert:
    """``open`` → ``acknowledged``: a named person has taken the alert on."""
    alert, reason = _load(session, alert_id, reason)
    if alert.status != AlertStatus.OPEN:
        by = alert.acknowledged_by or alert.resolved_by
        raise AlertActionError(f"alert {alert_id} is already {alert.status} (by {by})")
    old = _state(alert)
    alert.status = AlertStatus.ACKNOWLEDGED
    alert.acknowledged_by = user
    alert.acknowledged_at = utcnow()
    alert.acknowledgement = reason
    session.add(alert)
    record_action(
        session,
        actor=user,
        action="alert.acknowledge",
        entity_type="alert",
        entity_id=str(alert_id),
        reason=reason,
        old_value=old,
        new_value=_state(alert),
    )
    return alert


def resolve_alert(session: Session, alert_id: int, *, user: str, reason: str) -> Alert:
    """``open`` or ``acknowledged`` → ``resolved``, with what was found and done."""
    alert, reason = _load(session, alert_id, reason)
    if alert.status == AlertStatus.RESOLVED:
        raise AlertActionError(f"alert {alert_id} is already resolved (by {alert.resolved_by})")
    old = _state(alert)
    now = utcnow()
    if alert.acknowledged_at is None:
        alert.acknowledged_by, alert.acknowledged_at = user, now
    alert.status = AlertStatus.RESOLVED
    alert.resolved_by = user
    alert.resolved_at = now
    alert.resolution = reason
    session.add(alert)
    record_action(
        session,
        actor=user,
        action="alert.resolve",
        entity_type="alert",
        entity_id=str(alert_id),
        reason=reason,
        old_value=old,
        new_value=_state(alert),
    )
    return alert
