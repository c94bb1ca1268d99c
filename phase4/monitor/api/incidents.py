"""Incidents: recorded, reported and closed by named reviewers (audited). The export
(``phase4 export``) computes each regime's reporting clock from the awareness date.

An incident belongs to its deployment's site; the alert it is linked to (a drift alert, or a
phantom QC or canary alert of a scanner) must belong to the same site."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import col, select

from phase4.monitor.api.deps import MAX_DB_ID, Access, Caller, SessionDep, path_id
from phase4.monitor.api.errors import ApiError, error_responses
from phase4.monitor.domain.alert_actions import alert_site
from phase4.monitor.domain.incidents import close_incident, mark_reported, record_incident
from phase4.monitor.domain.schemas import WorldTime
from phase4.monitor.store.models import Alert, Deployment, Incident

router = APIRouter(prefix="/v1/incidents", tags=["incidents"])
IncidentId = Annotated[int, path_id("The incident's id")]


class IncidentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    deployment: str = Field(max_length=100)
    title: str = Field(min_length=1, max_length=500)
    description: str | None = Field(None, max_length=4000)
    seriousness: Literal[
        "death", "serious_harm", "widespread", "critical_infrastructure", "malfunction"
    ]
    aware_at: WorldTime = Field(description="When the organisation became aware of it.")
    alert_id: int | None = Field(None, ge=1, le=MAX_DB_ID, description="The alert it follows.")
    remedial_action_needed: bool = False


class ReportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    regime: Literal["eu_ai_act", "eu_mdr", "fda_803"]
    reported_at: WorldTime


class CloseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    corrective_action: str = Field(min_length=1, max_length=4000)


class IncidentOut(BaseModel):
    id: int
    deployment_id: str
    alert_id: int | None
    title: str
    description: str | None
    seriousness: str
    remedial_action_needed: bool
    aware_at: datetime
    created_by: str
    reports: dict[str, Any]
    corrective_action: str | None
    closed_at: datetime | None


def _check(session: SessionDep, caller: Access, deployment_id: str) -> str:
    """The deployment's site, if the caller may act for it (404 unknown, 403 another site)."""
    dep = session.get(Deployment, deployment_id)
    if dep is None:
        raise ApiError(404, "not_found", f"no deployment {deployment_id!r}")
    caller.require_site(dep.site_id, "incidents")
    return dep.site_id


def _check_alert(session: SessionDep, caller: Access, alert_id: int, site: str) -> None:
    """The linked alert exists (404), is of a site the caller may act for (403) and of the
    incident's own site (422)."""
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise ApiError(404, "not_found", f"no alert {alert_id}")
    alert_at = alert_site(session, alert)
    caller.require_site(alert_at, "alerts")
    if alert_at != site:
        raise ApiError(
            422,
            "invalid_request",
            f"alert_id: alert {alert_id} is of site {alert_at!r}, the deployment of {site!r}",
        )


@router.get(
    "",
    response_model=list[IncidentOut],
    summary="Incidents, newest awareness first",
    responses=error_responses(401, 403),
)
def list_incidents(session: SessionDep, caller: Caller) -> list[IncidentOut]:
    sites = {d.id: d.site_id for d in session.exec(select(Deployment))}
    rows = session.exec(select(Incident).order_by(col(Incident.aware_at).desc()))
    return [
        IncidentOut.model_validate(i, from_attributes=True)
        for i in rows
        if caller.sees(sites.get(i.deployment_id))
    ]


@router.post(
    "",
    response_model=IncidentOut,
    status_code=201,
    summary="Record a possible serious incident (a named reviewer; audited)",
    responses=error_responses(401, 403, 404, 422),
)
def post_incident(body: IncidentIn, session: SessionDep, caller: Caller) -> IncidentOut:
    site = _check(session, caller, body.deployment)
    if body.alert_id is not None:
        _check_alert(session, caller, body.alert_id, site)
    incident = record_incident(
        session,
        deployment_id=body.deployment,
        title=body.title,
        description=body.description,
        seriousness=body.seriousness,
        aware_at=body.aware_at,
        alert_id=body.alert_id,
        remedial_action_needed=body.remedial_action_needed,
        user=caller.principal.name,
    )
    session.commit()
    return IncidentOut.model_validate(incident, from_attributes=True)


def _incident(session: SessionDep, caller: Access, incident_id: int) -> None:
    incident = session.get(Incident, incident_id)
    if incident is None:
        raise ApiError(404, "not_found", f"no incident {incident_id}")
    _check(session, caller, incident.deployment_id)


@router.post(
    "/{incident_id}/reports",
    response_model=IncidentOut,
    summary="Record that the incident was reported under a regime (audited)",
    responses=error_responses(401, 403, 404, 422),
)
def post_report(
    incident_id: IncidentId, body: ReportIn, session: SessionDep, caller: Caller
) -> IncidentOut:
    _incident(session, caller, incident_id)
    incident = mark_reported(
        session,
        incident_id,
        regime=body.regime,
        reported_at=body.reported_at,
        user=caller.principal.name,
    )
    session.commit()
    return IncidentOut.model_validate(incident, from_attributes=True)


@router.post(
    "/{incident_id}/close",
    response_model=IncidentOut,
    summary="Close an incident with its corrective action (audited)",
    responses=error_responses(401, 403, 404, 409, 422),
)
def post_close(
    incident_id: IncidentId, body: CloseIn, session: SessionDep, caller: Caller
) -> IncidentOut:
    _incident(session, caller, incident_id)
    incident = close_incident(
        session,
        incident_id,
        corrective_action=body.corrective_action,
        user=caller.principal.name,
    )
    session.commit()
    return IncidentOut.model_validate(incident, from_attributes=True)
