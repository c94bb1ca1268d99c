"""Alerts: list and read them, acknowledge and resolve them, and read their evidently report.

Reading needs any token; acknowledging and resolving need a ``reviewer`` (a named person) or
``admin`` token, and a reason. Both are recorded in the audit trail under the token's name.
Every alert belongs to a site (its deployment's, or its device's for phantom QC and canary
alerts) and a site-bound token reads and acts only on its own site's alerts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from sqlmodel import col, select

from phase4.monitor.api.deps import Access, Caller, SessionDep, path_id
from phase4.monitor.api.errors import ApiError, error_responses
from phase4.monitor.core.statuses import AlertCause, AlertStatus, Severity
from phase4.monitor.domain.alert_actions import (
    SiteIndex,
    acknowledge_alert,
    alert_site,
    resolve_alert,
)
from phase4.monitor.store.models import Alert, NotificationAttempt
from phase4.monitor.surveillance.headline import detected_order, headline, world_times
from phase4.monitor.surveillance.reports import report_html

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])
AlertId = Annotated[int, path_id("The alert's id")]
CAUSES = ", ".join(
    AlertCause.new_condition("<value>") if c is AlertCause.NEW_CONDITION else c.value
    for c in AlertCause
)


class AlertOut(BaseModel):
    id: int
    deployment: str | None
    stream: str
    cause: str = Field(description=f"Why it was raised: {CAUSES}.")
    severity: Severity
    status: AlertStatus
    headline: str = Field(
        description="The alert in one sentence: what changed, by how much (with its 95% "
        "interval), from when, detected when, linked to what (docs/ALERTS.md)."
    )
    change_began: datetime | None = Field(
        description="When the change began (estimated; the studies' or scans' time). Null "
        "when unknown, or when the time lies after the present (a clock is wrong)."
    )
    detected: datetime | None = Field(
        description="When it was detected: the time of the study or scan that raised it. "
        "Null as for change_began."
    )
    delay_days: float | None = Field(description="Days from change_began to detected.")
    title: str
    opened_at: datetime = Field(
        description="When phase4 processed the alarm and opened the alert (audit): not when "
        "the change happened."
    )
    evidence: dict[str, Any]
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    acknowledgement: str | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    resolution: str | None = None
    escalated_at: datetime | None = None

    @classmethod
    def of(cls, a: Alert, site: str | None = None) -> AlertOut:
        times = world_times(a)
        return cls(
            id=a.id or 0,
            deployment=a.deployment_id,
            stream=a.stream,
            cause=a.cause,
            severity=Severity(a.severity),
            status=AlertStatus(a.status),
            headline=headline(a, site=site),
            change_began=times.began,
            detected=times.detected,
            delay_days=times.delay_days,
            title=a.title,
            opened_at=a.opened_at,
            evidence=a.evidence,
            acknowledged_by=a.acknowledged_by,
            acknowledged_at=a.acknowledged_at,
            acknowledgement=a.acknowledgement,
            resolved_by=a.resolved_by,
            resolved_at=a.resolved_at,
            resolution=a.resolution,
            escalated_at=a.escalated_at,
        )


class NotificationOut(BaseModel):
    channel: str
    purpose: str
    recipient: str
    attempt: int
    at: datetime
    ok: bool
    detail: str | None


class AlertDetail(AlertOut):
    notifications: list[NotificationOut] = []


class AlertAction(BaseModel):
    reason: str = Field(
        min_length=1, max_length=2000, description="What you checked, found or did (required)."
    )


@router.get(
    "",
    response_model=list[AlertOut],
    summary="Alerts, latest detection first (world time), with their headline and evidence",
    responses=error_responses(401, 403, 422),
)
def list_alerts(
    session: SessionDep,
    caller: Caller,
    deployment: Annotated[str | None, Query(description="Only this deployment")] = None,
    status: Annotated[AlertStatus | None, Query(description="Only alerts in this state")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[AlertOut]:
    index = SiteIndex.read(session)
    q = select(Alert)
    if deployment:
        q = q.where(Alert.deployment_id == deployment)
    if status:
        q = q.where(Alert.status == status)
    rows = session.exec(q.order_by(detected_order().desc(), col(Alert.id).desc()).limit(limit))
    return [AlertOut.of(a, site) for a, site in index.sites_of(rows) if caller.sees(site)]


def _alert(session: SessionDep, caller: Access, alert_id: int) -> Alert:
    """The alert, if it exists (404) and the route's rule allows its site to the caller (403)."""
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise ApiError(404, "not_found", f"no alert {alert_id}")
    caller.require_site(alert_site(session, alert), "alerts")
    return alert


@router.get(
    "/{alert_id}",
    response_model=AlertDetail,
    summary="One alert with its evidence and every notification attempt",
    responses=error_responses(401, 403, 404, 422),
)
def get_alert(alert_id: AlertId, session: SessionDep, caller: Caller) -> AlertDetail:
    alert = _alert(session, caller, alert_id)
    attempts = session.exec(
        select(NotificationAttempt)
        .where(NotificationAttempt.alert_id == alert_id)
        .order_by(col(NotificationAttempt.at), col(NotificationAttempt.id))
    )
    detail = AlertDetail.model_validate(AlertOut.of(alert, alert_site(session, alert)).model_dump())
    detail.notifications = [
        NotificationOut.model_validate(n, from_attributes=True) for n in attempts
    ]
    return detail


def _act(
    alert_id: int, body: AlertAction, session: SessionDep, caller: Access, verb: str
) -> AlertOut:
    _alert(session, caller, alert_id)
    action = acknowledge_alert if verb == "acknowledge" else resolve_alert
    alert = action(session, alert_id, user=caller.principal.name, reason=body.reason)
    session.commit()
    return AlertOut.of(alert, alert_site(session, alert))


@router.post(
    "/{alert_id}/acknowledge",
    response_model=AlertOut,
    summary="Acknowledge an open alert (a named reviewer, with a reason; audited)",
    responses=error_responses(401, 403, 404, 409, 422),
)
def acknowledge(
    alert_id: AlertId, body: AlertAction, session: SessionDep, caller: Caller
) -> AlertOut:
    return _act(alert_id, body, session, caller, "acknowledge")


@router.post(
    "/{alert_id}/resolve",
    response_model=AlertOut,
    summary="Resolve an alert: what was found and done (a named reviewer; audited)",
    responses=error_responses(401, 403, 404, 409, 422),
)
def resolve(alert_id: AlertId, body: AlertAction, session: SessionDep, caller: Caller) -> AlertOut:
    return _act(alert_id, body, session, caller, "resolve")


@router.get(
    "/{alert_id}/report",
    summary="The evidently data-drift report attached to an alert",
    response_model=None,
    responses={
        200: {"content": {"text/html": {}}, "description": "The report (HTML)"},
        **error_responses(401, 403, 404, 422),
    },
)
def alert_report(
    alert_id: AlertId, request: Request, session: SessionDep, caller: Caller
) -> HTMLResponse:
    _alert(session, caller, alert_id)
    html = report_html(request.app.state.engine, alert_id)
    if html is None:
        raise ApiError(404, "not_found", f"alert {alert_id} has no report (yet)")
    return HTMLResponse(html.decode("utf-8"))
