"""The dashboard's workflow routes: incidents, phantom sign-off, tolerances, export, tokens.

Each action is the API's action through a form: the form's fields are validated by the API's own
request models (``IncidentIn``, ``ReportIn``, ``CloseIn``, ``SignOffIn``, ``ToleranceIn``,
``TokenCreate``, ``RevokeIn``), the site is checked as the API checks it, and the change is made
by the same domain function with the same actor, so the audit trail cannot tell a form from an
API call. The export is ``phase4 export``'s function, its files handed back as one zip.

Every POST needs the session's CSRF token and this origin (``phase4.monitor.ui.security``);
who may call each route is ``phase4.monitor.api.authz``'s table. A refused action shows its page
again with the reason and the status the API would answer.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qs, urlencode

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ValidationError
from sqlmodel import Session

from phase4.alerts.export import FORMATS, ExportError, export_deployment, parse_formats
from phase4.monitor.api.deps import SessionDep, path_id, query_id
from phase4.monitor.api.incidents import CloseIn, IncidentIn, ReportIn
from phase4.monitor.api.tokens import RevokeIn, TokenCreate
from phase4.monitor.core.refusals import ActionRefused
from phase4.monitor.domain.alert_actions import alert_site
from phase4.monitor.domain.incidents import close_incident, mark_reported, record_incident
from phase4.monitor.domain.ingest import describe_validation_error
from phase4.monitor.domain.phantom_schemas import SignOffIn, ToleranceIn
from phase4.monitor.store.audit import AuditHeadError, audit_key_from_env
from phase4.monitor.store.auth import Principal, Role, issue_token
from phase4.monitor.store.auth import revoke_token as revoke
from phase4.monitor.store.models import Alert, Deployment, Device, Incident, PhantomResult, utcnow
from phase4.monitor.surveillance.headline import subject_line
from phase4.monitor.surveillance.phantom_qc import PhantomError, set_tolerance, sign_off
from phase4.monitor.ui import workflow
from phase4.monitor.ui.security import UiError, check_csrf, principal_from_cookie, read_form
from phase4.monitor.ui.views import FormDep, _alert, _headers, _page, render, router

IncidentId = Annotated[int, path_id("The incident's id")]
DeviceId = Annotated[int, path_id("The device's id")]
TokenId = Annotated[int, path_id("The token's id")]
M = TypeVar("M", bound=BaseModel)
# The default export period: the last twelve months, today included.
EXPORT_DAYS = 365


async def form_lists(request: Request) -> dict[str, list[str]]:
    """The posted form with every value of a repeated field (a list of checkboxes)."""
    try:
        if not await read_form(request):  # the content type and size checks of every form
            return {}
    except UiError:
        return {"__too_large__": ["1"]}
    body = await request.body()
    return parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)


FormListDep = Depends(form_lists)


def _posted(request: Request, session: Session, form: dict[str, str]) -> Principal:
    """The signed-in principal of a POST that passed the size and CSRF checks."""
    principal = principal_from_cookie(session, request)
    if "__too_large__" in form:
        raise UiError(413, "form too large")
    check_csrf(request, form)
    return principal


def _valid(model: type[M], data: dict[str, Any]) -> M:
    """The API's request model of this action, or 422 with the API's wording."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ActionRefused(describe_validation_error(exc)) from exc


def _utc(value: str) -> str | None:
    """A ``datetime-local`` field (no zone: the dashboard's times are UTC) as ISO 8601 UTC;
    anything else is handed on as it is for the model to refuse."""
    value = value.strip()
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return value
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).isoformat()


def _local(value: datetime) -> str:
    """A time as a ``datetime-local`` field's value (UTC, to the minute)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


def _redirect(url: str) -> Response:
    return _headers(RedirectResponse(url, status_code=303))


def _refused(exc: ActionRefused | UiError) -> tuple[str, int]:
    if isinstance(exc, UiError):
        return exc.message, exc.status_code
    return str(exc), exc.status_code


# --- incidents ---------------------------------------------------------------------------------


@router.get("/incidents", response_class=HTMLResponse)
@_page
def incidents_page(request: Request, session: SessionDep, status: str = "open") -> Response:
    principal = principal_from_cookie(session, request)
    if status not in workflow.INCIDENT_FILTERS:
        status = "open"
    return render(
        request,
        "incidents.html",
        principal=principal,
        title="Incidents",
        rows=workflow.readable_incidents(session, principal, status, workflow.today_utc()),
        status=status,
        statuses=workflow.INCIDENT_FILTERS,
        regimes=workflow.regime_titles(),
        can_record=bool(workflow.reviewable_deployments(session, principal)),
    )


def _incident_form(
    request: Request,
    session: Session,
    principal: Principal,
    alert_id: int | None,
    values: dict[str, Any],
    *,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    """The form that records an incident, from an alert (its site's deployments) or not."""
    alert: Alert | None = None
    if alert_id is not None:
        alert, site = _alert(session, principal, alert_id)
        if not principal.can_review_site(site):
            raise UiError(403, f"{principal.name} may not record incidents of site {site!r}")
        deployments = workflow.reviewable_deployments(session, principal, site)
        if alert.deployment_id is not None:
            deployments = [d for d in deployments if d.id == alert.deployment_id]
        if not deployments:
            raise UiError(422, f"site {site!r} has no deployment to record an incident for")
    else:
        deployments = workflow.reviewable_deployments(session, principal)
        if not deployments:
            raise UiError(403, f"{principal.name} may not record incidents of any site")
    shown = {
        "deployment": deployments[0].id if len(deployments) == 1 else "",
        "title": subject_line(alert) if alert is not None else "",
        "description": "",
        "seriousness": "",
        "aware_at": _local(utcnow()),
        "remedial_action_needed": False,
        **values,
    }
    return render(
        request,
        "incident_new.html",
        status_code=status_code,
        principal=principal,
        title="Record a possible serious incident",
        alert=alert,
        alert_line=subject_line(alert) if alert is not None else "",
        deployments=deployments,
        values=shown,
        seriousness=workflow.deadline_table(),
        regimes=workflow.regime_titles(),
        error=error,
    )


@router.get("/incidents/new", response_class=HTMLResponse)
@_page
def new_incident(
    request: Request,
    session: SessionDep,
    alert: Annotated[int | None, query_id("The alert the incident follows")] = None,
    deployment: str = "",
) -> Response:
    principal = principal_from_cookie(session, request)
    values = {"deployment": deployment} if deployment else {}
    return _incident_form(request, session, principal, alert, values)


@router.post("/incidents", response_class=HTMLResponse)
@_page
def record(request: Request, session: SessionDep, form: dict[str, str] = FormDep) -> Response:
    principal = _posted(request, session, form)
    raw_alert = form.get("alert_id", "").strip()
    if raw_alert and not raw_alert.isdigit():
        raise UiError(422, f"alert_id: {raw_alert!r} is not an alert's number")
    alert_id = int(raw_alert) if raw_alert else None
    values: dict[str, Any] = {
        k: form.get(k, "") for k in ("deployment", "title", "description", "seriousness")
    }
    values["aware_at"] = form.get("aware_at", "")
    values["remedial_action_needed"] = form.get("remedial_action_needed") == "on"
    # Who may: as POST /v1/incidents (the deployment's site; the alert's site, and the same).
    dep = session.get(Deployment, values["deployment"])
    if dep is None:
        raise UiError(404, f"no deployment {values['deployment']!r}")
    if not principal.can_review_site(dep.site_id):
        raise UiError(403, f"{principal.name} may not record incidents of site {dep.site_id!r}")
    try:
        if alert_id is not None:
            alert = session.get(Alert, alert_id)
            if alert is None:
                raise UiError(404, f"no alert {alert_id}")
            alert_at = alert_site(session, alert)
            if not principal.can_review_site(alert_at):
                raise UiError(403, f"{principal.name} may not review alerts of site {alert_at!r}")
            if alert_at != dep.site_id:
                raise ActionRefused(
                    f"alert_id: alert {alert_id} is of site {alert_at!r}, the deployment of "
                    f"{dep.site_id!r}"
                )
        body = _valid(
            IncidentIn,
            {
                "deployment": dep.id,
                "title": values["title"],
                "description": values["description"].strip() or None,
                "seriousness": values["seriousness"],
                "aware_at": _utc(values["aware_at"]),
                "alert_id": alert_id,
                "remedial_action_needed": values["remedial_action_needed"],
            },
        )
        incident = record_incident(
            session,
            deployment_id=body.deployment,
            title=body.title,
            description=body.description,
            seriousness=body.seriousness,
            aware_at=body.aware_at,
            alert_id=body.alert_id,
            remedial_action_needed=body.remedial_action_needed,
            user=principal.name,
        )
    except ActionRefused as exc:
        session.rollback()
        message, code = _refused(exc)
        return _incident_form(
            request, session, principal, alert_id, values, error=message, status_code=code
        )
    session.commit()
    return _redirect(f"/ui/incidents/{incident.id}?done=recorded")


def _incident(session: Session, principal: Principal, incident_id: int) -> tuple[Incident, str]:
    incident = session.get(Incident, incident_id)
    if incident is None:
        raise UiError(404, f"no incident {incident_id}")
    dep = session.get(Deployment, incident.deployment_id)
    site = dep.site_id if dep is not None else ""
    if not principal.can_read_site(site):
        raise UiError(403, f"{principal.name} may not read site {site!r}")
    return incident, site


INCIDENT_DONE = {"recorded", "reported", "closed"}


def _incident_page(
    request: Request,
    session: Session,
    principal: Principal,
    incident_id: int,
    *,
    error: str | None = None,
    status_code: int = 200,
    done: str | None = None,
) -> Response:
    incident, site = _incident(session, principal, incident_id)
    return render(
        request,
        "incident.html",
        status_code=status_code,
        principal=principal,
        title=f"Incident {incident.id}",
        row=workflow.incident_row(session, incident, workflow.today_utc()),
        site=site,
        can_review=principal.can_review_site(site),
        history=workflow.history(session, "incident", str(incident.id)),
        regimes=workflow.regime_titles(),
        seriousness_words=workflow.SERIOUSNESS_WORDS,
        now_local=_local(utcnow()),
        error=error,
        done=done if done in INCIDENT_DONE else None,
    )


@router.get("/incidents/{incident_id}", response_class=HTMLResponse)
@_page
def incident_page(
    request: Request, incident_id: IncidentId, session: SessionDep, done: str | None = None
) -> Response:
    principal = principal_from_cookie(session, request)
    return _incident_page(request, session, principal, incident_id, done=done)


def _incident_action(
    request: Request, incident_id: int, session: Session, form: dict[str, str], verb: str
) -> Response:
    principal = _posted(request, session, form)
    _, site = _incident(session, principal, incident_id)
    if not principal.can_review_site(site):
        raise UiError(403, f"{principal.name} may not {verb} incidents of site {site!r}")
    try:
        if verb == "report":
            report = _valid(
                ReportIn,
                {
                    "regime": form.get("regime", ""),
                    "reported_at": _utc(form.get("reported_at", "")),
                },
            )
            mark_reported(
                session,
                incident_id,
                regime=report.regime,
                reported_at=report.reported_at,
                user=principal.name,
            )
        else:
            close = _valid(CloseIn, {"corrective_action": form.get("corrective_action", "")})
            close_incident(
                session,
                incident_id,
                corrective_action=close.corrective_action,
                user=principal.name,
            )
    except ActionRefused as exc:
        session.rollback()
        return _incident_page(
            request, session, principal, incident_id, error=str(exc), status_code=exc.status_code
        )
    session.commit()
    done = "reported" if verb == "report" else "closed"
    return _redirect(f"/ui/incidents/{incident_id}?done={done}")


@router.post("/incidents/{incident_id}/reports", response_class=HTMLResponse)
@_page
def report_incident(
    request: Request, incident_id: IncidentId, session: SessionDep, form: dict[str, str] = FormDep
) -> Response:
    return _incident_action(request, incident_id, session, form, "report")


@router.post("/incidents/{incident_id}/close", response_class=HTMLResponse)
@_page
def close(
    request: Request, incident_id: IncidentId, session: SessionDep, form: dict[str, str] = FormDep
) -> Response:
    return _incident_action(request, incident_id, session, form, "close")


# --- phantom results: sign-off -----------------------------------------------------------------


def _device(session: Session, principal: Principal, device_id: int) -> Device:
    device = session.get(Device, device_id)
    if device is None:
        raise UiError(404, f"no device {device_id}")
    if not principal.can_read_site(device.site_id):
        raise UiError(403, f"{principal.name} may not read site {device.site_id!r}")
    return device


def _results_page(
    request: Request,
    session: Session,
    principal: Principal,
    device_id: int,
    show: str,
    kind: str,
    *,
    error: str | None = None,
    status_code: int = 200,
    done: int | None = None,
) -> Response:
    device = _device(session, principal, device_id)
    show = show if show in workflow.RESULT_FILTERS else "unsigned"
    page = workflow.device_results(session, device_id, show, kind)
    kind = kind if kind in page.kinds else ""  # an unknown kind filters nothing
    return render(
        request,
        "results.html",
        status_code=status_code,
        principal=principal,
        title=f"Phantom results of {device.manufacturer} {device.model}",
        device=device,
        page=page,
        show=show,
        kind=kind,
        shows=workflow.RESULT_FILTERS,
        can_review=principal.can_review_site(device.site_id),
        error=error,
        done=done,
        page_size=workflow.RESULTS_PAGE_SIZE,
    )


@router.get("/devices/{device_id}/results", response_class=HTMLResponse)
@_page
def results_page(
    request: Request,
    device_id: DeviceId,
    session: SessionDep,
    show: str = "unsigned",
    kind: str = "",
    done: int | None = None,
) -> Response:
    principal = principal_from_cookie(session, request)
    return _results_page(request, session, principal, device_id, show, kind, done=done)


def _chosen(form: dict[str, list[str]]) -> list[int]:
    """The results asked for: one row's own button (``only``), else every ticked box."""
    raw = form.get("only") or form.get("result") or []
    try:
        ids = sorted({int(v) for v in raw})
    except ValueError as exc:
        raise ActionRefused("result: not a result's number") from exc
    if not ids:
        raise ActionRefused("choose at least one result to sign off")
    return ids


@router.post("/devices/{device_id}/results/sign-off", response_class=HTMLResponse)
@_page
def sign_off_results(
    request: Request,
    device_id: DeviceId,
    session: SessionDep,
    form: dict[str, list[str]] = FormListDep,
) -> Response:
    """Sign off one result or many, all or none: each as ``POST /v1/phantom-results/{id}/
    sign-off`` (the same note, name and audit entry), in one transaction."""
    single = {k: v[0] for k, v in form.items() if v}
    principal = _posted(request, session, single)
    device = _device(session, principal, device_id)
    if not principal.can_review_site(device.site_id):
        raise UiError(
            403, f"{principal.name} may not sign off phantom results of site {device.site_id!r}"
        )
    show, kind = single.get("show", "unsigned"), single.get("kind", "")
    try:
        ids = _chosen(form)
        note = _valid(SignOffIn, {"note": single.get("note", "").strip() or None}).note
        for row_id in ids:
            result = session.get(PhantomResult, row_id)
            if result is None or result.device_id != device_id:
                raise ActionRefused(f"no phantom result {row_id} of this device", status_code=404)
            if result.reviewed_by is not None:
                # Said without the result's id, which no page shows.
                raise ActionRefused(
                    f"the {result.kind} result of {result.acquired_at:%Y-%m-%d %H:%M} UTC was "
                    f"already signed off by {result.reviewed_by}: nothing was signed off",
                    status_code=409,
                )
            try:
                sign_off(session, result.result_id, user=principal.name, note=note)
            except PhantomError as exc:  # signed off meanwhile: its message names the id
                raise ActionRefused(
                    f"the {result.kind} result of {result.acquired_at:%Y-%m-%d %H:%M} UTC was "
                    "signed off meanwhile by someone else: nothing was signed off",
                    status_code=exc.status_code,
                ) from exc
    except ActionRefused as exc:
        session.rollback()
        return _results_page(
            request,
            session,
            principal,
            device_id,
            show,
            kind,
            error=str(exc),
            status_code=exc.status_code,
        )
    session.commit()
    query = urlencode({"show": show, "kind": kind, "done": len(ids)})
    return _redirect(f"/ui/devices/{device_id}/results?{query}")


# --- tolerances --------------------------------------------------------------------------------


def _tolerances_page(
    request: Request,
    session: Session,
    principal: Principal,
    device_id: int | None,
    *,
    values: dict[str, str] | None = None,
    error: str | None = None,
    status_code: int = 200,
    done: bool = False,
) -> Response:
    device = _device(session, principal, device_id) if device_id is not None else None
    devices = workflow.reviewable_devices(session, principal)
    return render(
        request,
        "tolerances.html",
        status_code=status_code,
        principal=principal,
        title="Phantom tolerances" + (f" of device {device_id}" if device else ""),
        device=device,
        groups=workflow.tolerance_groups(session, principal, device_id),
        devices=devices,
        can_set_default=principal.can_review_site(None),
        metrics=workflow.known_metrics(session),
        kinds=("flood", "cylinder", "nema-iq"),
        values=values or {"scope": str(device_id) if device_id else ""},
        error=error,
        done=done,
    )


@router.get("/tolerances", response_class=HTMLResponse)
@_page
def tolerances_page(
    request: Request,
    session: SessionDep,
    device: Annotated[int | None, query_id("Only this device's tolerances")] = None,
    done: str | None = None,
) -> Response:
    principal = principal_from_cookie(session, request)
    return _tolerances_page(request, session, principal, device, done=done == "1")


LEVELS = ("lower_action", "lower_tolerance", "upper_tolerance", "upper_action")


@router.post("/tolerances", response_class=HTMLResponse)
@_page
def set_tolerance_version(
    request: Request, session: SessionDep, form: dict[str, str] = FormDep
) -> Response:
    """A new version of one metric's levels, as ``POST /v1/phantom-tolerances`` (a reason is
    required; the old versions stay)."""
    principal = _posted(request, session, form)
    scope = form.get("scope", "").strip()
    if scope and not scope.isdigit():
        raise UiError(422, f"scope: {scope!r} is neither a device's number nor the default")
    device_id = int(scope) if scope else None
    site = None
    if device_id is not None:
        device = session.get(Device, device_id)
        if device is None:
            raise UiError(404, f"no device {device_id}")
        site = device.site_id
    if not principal.can_review_site(site):
        what = f"of site {site!r}" if site else "by default for every site"
        raise UiError(403, f"{principal.name} may not set phantom tolerances {what}")
    values = {k: form.get(k, "") for k in ("scope", "kind", "metric", "unit", "reason", *LEVELS)}
    try:
        body = _valid(
            ToleranceIn,
            {
                "kind": values["kind"],
                "metric": values["metric"].strip(),
                "device_id": device_id,
                **{k: values[k].strip() or None for k in LEVELS},
                "unit": values["unit"].strip() or None,
                "reason": values["reason"].strip(),
            },
        )
        set_tolerance(
            session,
            kind=body.kind,
            metric=body.metric,
            device_id=body.device_id,
            lower_action=body.lower_action,
            lower_tolerance=body.lower_tolerance,
            upper_tolerance=body.upper_tolerance,
            upper_action=body.upper_action,
            unit=body.unit,
            actor=principal.name,
            reason=body.reason,
        )
    except ActionRefused as exc:
        session.rollback()
        return _tolerances_page(
            request,
            session,
            principal,
            None,
            values=values,
            error=str(exc),
            status_code=exc.status_code,
        )
    session.commit()
    target = f"?device={device_id}&done=1" if device_id is not None else "?done=1"
    return _redirect(f"/ui/tolerances{target}")


# --- export ------------------------------------------------------------------------------------


def _exports_page(
    request: Request,
    session: Session,
    principal: Principal,
    values: dict[str, Any],
    *,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    today = workflow.today_utc()
    shown = {
        "deployment": "",
        "from": (today - timedelta(days=EXPORT_DAYS - 1)).isoformat(),
        "to": today.isoformat(),
        "formats": list(FORMATS),
        **values,
    }
    return render(
        request,
        "exports.html",
        status_code=status_code,
        principal=principal,
        title="Regulatory export",
        deployments=workflow.reviewable_deployments(session, principal),
        readable=workflow.readable_deployments(session, principal),
        formats=FORMATS,
        values=shown,
        error=error,
    )


@router.get("/exports", response_class=HTMLResponse)
@_page
def exports_page(request: Request, session: SessionDep, deployment: str = "") -> Response:
    principal = principal_from_cookie(session, request)
    return _exports_page(request, session, principal, {"deployment": deployment})


def _day(value: str, field: str) -> date:
    try:
        return date.fromisoformat(value.strip())
    except ValueError as exc:
        raise ActionRefused(f"{field}: {value!r} is not a date (YYYY-MM-DD)") from exc


@router.post("/exports", response_class=HTMLResponse)
@_page
def download_export(
    request: Request, session: SessionDep, form: dict[str, list[str]] = FormListDep
) -> Response:
    """``phase4 export`` for one deployment and period, by the signed-in reviewer (the actor in
    the audit trail), returned as a zip of the export's folder."""
    single = {k: v[0] for k, v in form.items() if v}
    principal = _posted(request, session, single)
    dep = session.get(Deployment, single.get("deployment", ""))
    if dep is None:
        raise UiError(404, f"no deployment {single.get('deployment', '')!r}")
    if not principal.can_review_site(dep.site_id):
        raise UiError(403, f"{principal.name} may not export deployments of site {dep.site_id!r}")
    values = {
        "deployment": dep.id,
        "from": single.get("from", ""),
        "to": single.get("to", ""),
        "formats": form.get("format", []),
    }
    session.rollback()  # nothing written here: the export commits in its own session
    try:
        start, end = _day(values["from"], "from"), _day(values["to"], "to")
        formats = parse_formats(values["formats"])
        key = audit_key_from_env()
        with tempfile.TemporaryDirectory(prefix="phase4-ui-export-") as tmp:
            result = export_deployment(
                request.app.state.engine,
                dep.id,
                start,
                end,
                formats,
                Path(tmp),
                actor=principal.name,
                audit_key=key,
            )
            archive = io.BytesIO()
            with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
                for name in result.files:
                    z.write(result.directory / name, f"{result.directory.name}/{name}")
    except (ActionRefused, ExportError, AuditHeadError) as exc:
        code = exc.status_code if isinstance(exc, ActionRefused) else 422
        return _exports_page(request, session, principal, values, error=str(exc), status_code=code)
    response = Response(
        archive.getvalue(),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{result.directory.name}.zip"'},
    )
    return _headers(response)


# --- tokens (admins) ---------------------------------------------------------------------------


def _admin(principal: Principal) -> None:
    if principal.role is not Role.ADMIN:
        raise UiError(403, f"{principal.name} is not an admin: tokens are managed by admins")


def _tokens_page(
    request: Request,
    session: Session,
    principal: Principal,
    *,
    created: dict[str, Any] | None = None,
    values: dict[str, str] | None = None,
    error: str | None = None,
    status_code: int = 200,
    done: str | None = None,
) -> Response:
    return render(
        request,
        "tokens.html",
        status_code=status_code,
        principal=principal,
        title="API tokens",
        rows=workflow.token_rows(session, utcnow()),
        roles=[r.value for r in Role],
        sites=workflow.site_ids(session),
        created=created,
        values=values or {},
        error=error,
        done=done,
    )


@router.get("/tokens", response_class=HTMLResponse)
@_page
def tokens_page(request: Request, session: SessionDep, done: str | None = None) -> Response:
    principal = principal_from_cookie(session, request)
    _admin(principal)
    return _tokens_page(request, session, principal, done="revoked" if done == "revoked" else None)


@router.post("/tokens", response_class=HTMLResponse)
@_page
def create_token_form(
    request: Request, session: SessionDep, form: dict[str, str] = FormDep
) -> Response:
    """As ``POST /v1/tokens``: the secret is on this response only (never stored, never in a
    URL), the page says to copy it now."""
    principal = _posted(request, session, form)
    _admin(principal)
    values = {k: form.get(k, "").strip() for k in ("name", "role", "site_id", "days", "until")}
    try:
        body = _valid(
            TokenCreate,
            {
                "name": values["name"],
                "role": values["role"],
                "site_id": values["site_id"] or None,
                "expires_in_days": values["days"] or None,
                "expires_at": f"{values['until']}T00:00:00+00:00" if values["until"] else None,
            },
        )
        raw, info = issue_token(
            session,
            name=body.name,
            role=body.role,
            site_id=body.site_id,
            actor=principal.actor,
            expires_at=body.expiry(),
        )
    except ActionRefused as exc:
        session.rollback()
        return _tokens_page(
            request, session, principal, values=values, error=str(exc), status_code=exc.status_code
        )
    session.commit()
    return _tokens_page(request, session, principal, created={"secret": raw, "info": info})


@router.post("/tokens/{token_id}/revoke", response_class=HTMLResponse)
@_page
def revoke_token_form(
    request: Request, token_id: TokenId, session: SessionDep, form: dict[str, str] = FormDep
) -> Response:
    principal = _posted(request, session, form)
    _admin(principal)
    try:
        reason = _valid(RevokeIn, {"reason": form.get("reason", "")}).reason
        revoke(session, token_id, reason=reason, actor=principal.actor)
    except ActionRefused as exc:
        session.rollback()
        return _tokens_page(
            request, session, principal, error=str(exc), status_code=exc.status_code
        )
    session.commit()
    return _redirect("/ui/tokens?done=revoked")
