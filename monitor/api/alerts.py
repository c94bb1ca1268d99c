"""GET /v1/alerts (what needs a person) and GET /v1/alerts/{id}/report (the evidently report)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel
from sqlmodel import col, select

from monitor.api.deps import Reader, SessionDep
from monitor.api.errors import ApiError, error_responses
from monitor.models import Alert, Deployment
from monitor.reports import report_html

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])


class AlertOut(BaseModel):
    id: int
    deployment: str | None
    stream: str
    cause: str
    severity: str
    status: str
    title: str
    opened_at: datetime
    evidence: dict[str, Any]


@router.get(
    "",
    response_model=list[AlertOut],
    summary="Alerts, newest first, with their evidence",
    responses=error_responses(401, 403, 422),
)
def list_alerts(
    session: SessionDep,
    principal: Reader,
    deployment: Annotated[str | None, Query(description="Only this deployment")] = None,
    status: Annotated[str | None, Query(pattern="^(open|acknowledged|resolved)$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[AlertOut]:
    sites = {d.id: d.site_id for d in session.exec(select(Deployment))}
    q = select(Alert)
    if deployment:
        q = q.where(Alert.deployment_id == deployment)
    if status:
        q = q.where(Alert.status == status)
    rows = session.exec(q.order_by(col(Alert.opened_at).desc(), col(Alert.id).desc()).limit(limit))
    return [
        AlertOut(
            id=a.id or 0,
            deployment=a.deployment_id,
            stream=a.stream,
            cause=a.cause,
            severity=a.severity,
            status=a.status,
            title=a.title,
            opened_at=a.opened_at,
            evidence=a.evidence,
        )
        for a in rows
        if a.deployment_id is None or principal.can_read_site(sites.get(a.deployment_id, ""))
    ]


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
    alert_id: int, request: Request, session: SessionDep, principal: Reader
) -> HTMLResponse:
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise ApiError(404, "not_found", f"no alert {alert_id}")
    dep = session.get(Deployment, alert.deployment_id) if alert.deployment_id else None
    if dep is not None and not principal.can_read_site(dep.site_id):
        raise ApiError(
            403, "forbidden", f"token {principal.name!r} may not read site {dep.site_id!r}"
        )
    html = report_html(request.app.state.engine, alert_id)
    if html is None:
        raise ApiError(404, "not_found", f"alert {alert_id} has no report (yet)")
    return HTMLResponse(html.decode("utf-8"))
