"""Possible serious incidents: recorded by a named person with the date they became aware of it,
reported to each regulator, closed with the corrective action. Every step is audited; the
reporting clocks themselves are computed where they are shown (``phase4.alerts.export.clocks``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from phase4.monitor.core.refusals import ActionRefused
from phase4.monitor.store.audit import record_action
from phase4.monitor.store.models import Alert, Deployment, Incident, utcnow

SERIOUSNESS = ("death", "serious_harm", "widespread", "critical_infrastructure", "malfunction")
REGIMES = ("eu_ai_act", "eu_mdr", "fda_803")


class IncidentError(ActionRefused):
    """An incident request that cannot be carried out (the message says why)."""


def _state(i: Incident) -> dict[str, Any]:
    return {
        "deployment": i.deployment_id,
        "alert_id": i.alert_id,
        "title": i.title,
        "seriousness": i.seriousness,
        "remedial_action_needed": i.remedial_action_needed,
        "aware_at": i.aware_at,
        "reports": i.reports,
        "corrective_action": i.corrective_action,
        "closed_at": i.closed_at,
    }


def record_incident(
    session: Session,
    *,
    deployment_id: str,
    title: str,
    seriousness: str,
    aware_at: datetime,
    user: str,
    description: str | None = None,
    alert_id: int | None = None,
    remedial_action_needed: bool = False,
) -> Incident:
    if session.get(Deployment, deployment_id) is None:
        raise IncidentError(f"no deployment {deployment_id!r}", status_code=404)
    if seriousness not in SERIOUSNESS:
        raise IncidentError(f"seriousness {seriousness!r} is not one of {', '.join(SERIOUSNESS)}")
    if alert_id is not None and session.get(Alert, alert_id) is None:
        raise IncidentError(f"no alert {alert_id}", status_code=404)
    if aware_at.tzinfo is None:
        raise IncidentError("aware_at needs a time zone")
    if aware_at > utcnow():
        raise IncidentError("aware_at is in the future")
    incident = Incident(
        deployment_id=deployment_id,
        alert_id=alert_id,
        title=title,
        description=description,
        seriousness=seriousness,
        remedial_action_needed=remedial_action_needed,
        aware_at=aware_at,
        created_by=user,
        reports={},
    )
    session.add(incident)
    session.flush()
    record_action(
        session,
        actor=user,
        action="incident.record",
        entity_type="incident",
        entity_id=str(incident.id),
        new_value=_state(incident),
    )
    return incident


def mark_reported(
    session: Session, incident_id: int, *, regime: str, reported_at: datetime, user: str
) -> Incident:
    incident = session.get(Incident, incident_id)
    if incident is None:
        raise IncidentError(f"no incident {incident_id}", status_code=404)
    if regime not in REGIMES:
        raise IncidentError(f"regime {regime!r} is not one of {', '.join(REGIMES)}")
    if reported_at < incident.aware_at:
        raise IncidentError("reported_at is before the awareness date")
    old = _state(incident)
    incident.reports = {**incident.reports, regime: reported_at.isoformat()}
    session.add(incident)
    record_action(
        session,
        actor=user,
        action="incident.report",
        entity_type="incident",
        entity_id=str(incident_id),
        old_value=old,
        new_value=_state(incident),
    )
    return incident


def close_incident(
    session: Session, incident_id: int, *, corrective_action: str, user: str
) -> Incident:
    incident = session.get(Incident, incident_id)
    if incident is None:
        raise IncidentError(f"no incident {incident_id}", status_code=404)
    if incident.closed_at is not None:
        raise IncidentError(f"incident {incident_id} is already closed", status_code=409)
    if not corrective_action.strip():
        raise IncidentError("say what corrective action was taken")
    old = _state(incident)
    incident.corrective_action = corrective_action
    incident.closed_at = utcnow()
    session.add(incident)
    record_action(
        session,
        actor=user,
        action="incident.close",
        entity_type="incident",
        entity_id=str(incident_id),
        reason=corrective_action,
        old_value=old,
        new_value=_state(incident),
    )
    return incident
