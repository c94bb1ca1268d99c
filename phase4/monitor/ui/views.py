"""The dashboard's routes: server-rendered HTML (Jinja2) with plotly charts, under ``/ui``.

Every page needs a signed-in token (``phase4.monitor.ui.security``) and shows only the sites the
token
may read; acknowledging and resolving alerts needs a reviewer or admin token that may review the
alert's site. Nothing is loaded from outside the monitor: plotly.js is served from the installed
plotly package at ``/ui/static/plotly.min.js``.
"""

from __future__ import annotations

import functools
import gzip
import inspect
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast

import plotly
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlmodel import Session, col, func, select

from phase4.monitor.api.deps import SessionDep, path_id
from phase4.monitor.core.headline import day
from phase4.monitor.core.refusals import ActionRefused
from phase4.monitor.core.statuses import AlertStatus, PhantomVerdict
from phase4.monitor.domain.alert_actions import AlertActionError, acknowledge_alert, resolve_alert
from phase4.monitor.domain.device_names import device_name, device_names, name_of_device
from phase4.monitor.domain.revalidation import list_revalidations
from phase4.monitor.store.audit import verify_chain
from phase4.monitor.store.auth import Principal, Role, TokenRefused, check_token
from phase4.monitor.store.models import AIModel, Alert, AuditEntry, Deployment, Device
from phase4.monitor.surveillance.headline import detected_order, headline, world_times
from phase4.monitor.surveillance.reference_outlook import duration_words
from phase4.monitor.surveillance.reports import report_html
from phase4.monitor.ui import charts, queries, timeseries, workflow
from phase4.monitor.ui.security import (
    COOKIE,
    COOKIE_MAX_AGE_S,
    COOKIE_PATH,
    CSRF_FIELD,
    LoginRequired,
    UiError,
    check_csrf,
    csrf_token,
    login_url,
    principal_from_cookie,
    read_form,
    safe_next,
    same_origin,
    session_token,
)

HERE = Path(__file__).parent
STATIC = HERE / "static"
AUDIT_PAGE_SIZE = 50
ALERT_LIST_LIMIT = 500
STATUS_FILTERS = ("unresolved", *AlertStatus, "all")
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
)
# The evidently report is shown as a sandboxed document: its scripts run, but in an opaque
# origin that cannot read the dashboard's cookie or pages.
REPORT_CSP = "sandbox allow-scripts; frame-ancestors 'self'"
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript"}

router = APIRouter(prefix="/ui", tags=["dashboard"], include_in_schema=False)
AlertId = Annotated[int, path_id("The alert's id")]
DeviceId = Annotated[int, path_id("The device's id")]

_env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _fmt_when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else "—"


def _fmt_stamp(value: Any) -> str:
    if isinstance(value, datetime):
        return _fmt_when(value)
    if isinstance(value, str):
        try:
            return _fmt_when(datetime.fromisoformat(value))
        except ValueError:
            return value
    return "—" if value is None else str(value)


def _compact(value: Any, limit: int = 400) -> str:
    if value is None:
        return ""
    text = json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _fmt_day(value: datetime | None) -> str:
    """A world date ('14 Aug 2026'); world_times has already withheld any after the present."""
    return day(value) if value is not None else "—"


_env.filters["when"] = _fmt_when
_env.filters["day"] = _fmt_day
_env.globals["headline_of"] = headline
_env.globals["world"] = world_times
_env.filters["stamp"] = _fmt_stamp
_env.filters["day"] = queries.day_words
_env.globals["duration"] = duration_words
_env.filters["compact"] = _compact
_env.globals["CSRF_FIELD"] = CSRF_FIELD
_env.globals["plotly_version"] = plotly.__version__
_env.globals["AlertStatus"] = AlertStatus
_env.globals["PhantomVerdict"] = PhantomVerdict


def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response


def render(
    request: Request,
    template: str,
    *,
    principal: Principal | None = None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    raw = session_token(request)
    html = _env.get_template(template).render(
        request=request,
        principal=principal,
        csrf=csrf_token(raw) if raw and principal else "",
        path=request.url.path,
        **context,
    )
    return cast(HTMLResponse, _headers(HTMLResponse(html, status_code=status_code)))


F = TypeVar("F", bound=Callable[..., Any])


def _page(func: F) -> F:
    """Turn ``UiError`` into an HTML error page and ``LoginRequired`` into a redirect; a
    domain refusal (``ActionRefused``) a page does not handle itself is an HTML error page
    with its status too, never the API's JSON error."""

    def handle(request: Request, exc: UiError | ActionRefused) -> Response:
        if isinstance(exc, LoginRequired):
            return _headers(RedirectResponse(login_url(exc.next_path), status_code=303))
        message = exc.message if isinstance(exc, UiError) else str(exc)
        return render(request, "error.html", status_code=exc.status_code, message=message)

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await func(*args, **kwargs)
            except (UiError, ActionRefused) as exc:
                return handle(kwargs["request"], exc)

        return cast(F, async_wrapper)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (UiError, ActionRefused) as exc:
            return handle(kwargs["request"], exc)

    return cast(F, wrapper)


async def form_body(request: Request) -> dict[str, str]:
    """The posted form (read here: the routes themselves run in the thread pool)."""
    try:
        return await read_form(request)
    except UiError:
        return {"__too_large__": "1"}


FormDep = Depends(form_body)


# --- sign-in ------------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
@_page
def login_page(request: Request, next: str | None = None) -> Response:
    return render(request, "login.html", next=safe_next(next), error=None)


@router.post("/login", response_class=HTMLResponse)
@_page
def login(request: Request, session: SessionDep, form: dict[str, str] = FormDep) -> Response:
    target = safe_next(form.get("next"))
    if not same_origin(request):
        raise UiError(403, "sign in from the dashboard's own sign-in page")
    raw = form.get("token", "").strip()
    try:
        principal = check_token(session, raw)
    except TokenRefused as exc:
        # "token revoked" and "token expired" say so; any other secret is not one of ours.
        refusal = "unknown or revoked token" if str(exc).startswith("invalid") else str(exc)
        return render(request, "login.html", status_code=401, next=target, error=refusal)
    if principal.role is Role.PROBE:
        error = (
            "probe tokens are for machines: sign in with your own reviewer, viewer or admin token"
        )
        return render(request, "login.html", status_code=401, next=target, error=error)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        raw,
        max_age=COOKIE_MAX_AGE_S,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return _headers(response)


@router.post("/logout", response_class=HTMLResponse)
@_page
def logout(request: Request, form: dict[str, str] = FormDep) -> Response:
    check_csrf(request, form)
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")
    return _headers(response)


# --- pages ----------------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
@_page
def overview(request: Request, session: SessionDep) -> Response:
    principal = principal_from_cookie(session, request)
    now = queries.now_utc()
    return render(
        request,
        "overview.html",
        principal=principal,
        title="Fleet overview",
        now=now,
        deployments=queries.fleet(session, principal, now),
        devices=queries.devices(session, principal),
        silent_after_h=int(queries.SILENT_AFTER.total_seconds() // 3600),
        recent_results=queries.RECENT_RESULTS,
    )


def _deployment(session: Session, principal: Principal, deployment_id: str) -> Deployment:
    dep = session.get(Deployment, deployment_id)
    if dep is None:
        raise UiError(404, f"no deployment {deployment_id!r}")
    if not principal.can_read_site(dep.site_id):
        raise UiError(403, f"{principal.name} may not read site {dep.site_id!r}")
    return dep


@router.get("/deployments/{deployment_id}", response_class=HTMLResponse)
@_page
def deployment_page(request: Request, deployment_id: str, session: SessionDep) -> Response:
    principal = principal_from_cookie(session, request)
    dep = _deployment(session, principal, deployment_id)
    model = session.get(AIModel, dep.model_id)
    state_row, monitor = queries.load_monitor(session, dep.id)
    reference_outlook = queries.reference_flag(session, dep, queries.now_utc())
    streams = queries.stream_views(session, dep, monitor)
    figures: dict[str, Any] = {}
    for i, s in enumerate(streams.views):
        if s.quantity is not None and s.quantity.summary.times:
            figures[f"stream-{i}"] = charts.quantity_chart(s.quantity, s.events)
        if s.path is not None and s.path.times:
            episodes = s.quantity.episodes if s.quantity else timeseries.episodes_of(s.alerts)
            figures[f"stream-{i}-statistic"] = charts.stream_chart(s.name, s.path, episodes)
    outputs = timeseries.output_charts(session, dep.id)
    for j, q in enumerate(outputs):
        figures[f"output-{j}"] = charts.quantity_chart(q, height=300)
    performance = timeseries.performance_series(session, dep)
    if performance is not None and performance.series:
        figures["performance"] = charts.performance_chart(performance)
    if performance is not None and (dice := charts.dice_chart(performance)) is not None:
        figures["dice"] = dice
    alerts = list(
        session.exec(
            select(Alert)
            .where(Alert.deployment_id == dep.id)
            .order_by(detected_order().desc(), col(Alert.id).desc())
        )
    )
    return render(
        request,
        "deployment.html",
        principal=principal,
        title=f"Deployment {dep.id}",
        dep=dep,
        model=model,
        reference_outlook=reference_outlook,
        state_row=state_row,
        monitor=monitor,
        streams=streams,
        figures=figures,
        outputs=outputs,
        performance=performance,
        alerts=alerts,
        revalidations=list_revalidations(session, dep.id),
    )


@router.get("/devices/{device_id}", response_class=HTMLResponse)
@_page
def device_page(request: Request, device_id: DeviceId, session: SessionDep) -> Response:
    principal = principal_from_cookie(session, request)
    device = session.get(Device, device_id)
    if device is None:
        raise UiError(404, f"no device {device_id}")
    if not principal.can_read_site(device.site_id):
        raise UiError(403, f"{principal.name} may not read site {device.site_id!r}")
    metric_charts, results = queries.device_charts(session, device_id)
    events = queries.device_site_events(session, device)
    figures = {f"metric-{i}": charts.metric_chart(c, events) for i, c in enumerate(metric_charts)}
    canaries = queries.canary_charts(session, device_id)
    for i, c in enumerate(canaries):
        figures[f"canary-{i}"] = charts.canary_chart(c, events)
    alerts = list(
        session.exec(
            select(Alert)
            .where(Alert.device_id == device_id)
            .order_by(detected_order().desc(), col(Alert.id).desc())
        )
    )
    return render(
        request,
        "device.html",
        principal=principal,
        title=device_name(device),
        device=device,
        device_name=device_name(device),
        metric_charts=metric_charts,
        canaries=canaries,
        events=events,
        figures=figures,
        results=results[:60],
        results_total=len(results),
        unsigned=sum(1 for r in results if r.reviewed_by is None),
        worst=queries.worst_verdict,
        alerts=alerts,
    )


@router.get("/alerts", response_class=HTMLResponse)
@_page
def alerts_page(
    request: Request,
    session: SessionDep,
    status: str = "unresolved",
    severity: str = "",
    deployment: str = "",
) -> Response:
    principal = principal_from_cookie(session, request)
    if status not in STATUS_FILTERS:
        status = "unresolved"
    q = select(Alert)
    if status == "unresolved":
        q = q.where(Alert.status != AlertStatus.RESOLVED)
    elif status != "all":
        q = q.where(Alert.status == status)
    if severity in queries.SEVERITIES:
        q = q.where(Alert.severity == severity)
    else:
        severity = ""
    if deployment:
        q = q.where(Alert.deployment_id == deployment)
    rows = session.exec(
        q.order_by(detected_order().desc(), col(Alert.id).desc()).limit(ALERT_LIST_LIMIT)
    )
    alerts = queries.readable_alerts(session, principal, rows)
    deployments = [
        d.id
        for d in session.exec(select(Deployment).order_by(col(Deployment.id)))
        if principal.can_read_site(d.site_id)
    ]
    names = device_names(session, (a.device_id for a in alerts))
    figures = {"timeline": charts.alerts_timeline(alerts, names)} if alerts else {}
    return render(
        request,
        "alerts.html",
        principal=principal,
        title="Alerts",
        alerts=alerts,
        figures=figures,
        status=status,
        severity=severity,
        deployment=deployment,
        deployments=deployments,
        statuses=STATUS_FILTERS,
        severities=queries.SEVERITIES,
        device_names=names,
    )


def _alert(session: Session, principal: Principal, alert_id: int) -> tuple[Alert, str | None]:
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise UiError(404, f"no alert {alert_id}")
    site = queries.alert_site(session, alert)
    if site is not None and not principal.can_read_site(site):
        raise UiError(403, f"{principal.name} may not read site {site!r}")
    return alert, site


def _alert_page(
    request: Request,
    session: Session,
    principal: Principal,
    alert_id: int,
    *,
    error: str | None = None,
    status_code: int = 200,
    done: str | None = None,
) -> Response:
    alert, site = _alert(session, principal, alert_id)
    has_report = isinstance((alert.evidence or {}).get("report"), dict)
    return render(
        request,
        "alert.html",
        status_code=status_code,
        principal=principal,
        title=f"Alert {alert.id}",
        alert=alert,
        headline=headline(alert, site=site),
        site=site,
        device_name=(
            name_of_device(session, alert.device_id) if alert.device_id is not None else None
        ),
        can_review=principal.can_review_site(site),
        sentences=queries.explain_evidence(alert),
        other=queries.other_evidence(alert),
        linked=queries.linked(alert),
        notifications=queries.notifications(session, alert_id),
        has_report=has_report,
        error=error,
        done=done,
        **workflow.alert_context(session, principal, alert, site),
    )


@router.get("/alerts/{alert_id}", response_class=HTMLResponse)
@_page
def alert_page(
    request: Request, alert_id: AlertId, session: SessionDep, done: str | None = None
) -> Response:
    principal = principal_from_cookie(session, request)
    done = done if done in (AlertStatus.ACKNOWLEDGED, AlertStatus.RESOLVED) else None
    return _alert_page(request, session, principal, alert_id, done=done)


def _act(
    request: Request, alert_id: int, session: Session, form: dict[str, str], verb: str
) -> Response:
    principal = principal_from_cookie(session, request)
    if "__too_large__" in form:
        raise UiError(413, "form too large")
    check_csrf(request, form)
    _, site = _alert(session, principal, alert_id)
    if not principal.can_review_site(site):
        raise UiError(403, f"{principal.name} may not {verb} alerts of site {site!r}")
    action = acknowledge_alert if verb == "acknowledge" else resolve_alert
    try:
        action(session, alert_id, user=principal.name, reason=form.get("reason", ""))
    except AlertActionError as exc:
        session.rollback()
        return _alert_page(
            request, session, principal, alert_id, error=str(exc), status_code=exc.status_code
        )
    session.commit()
    done = AlertStatus.ACKNOWLEDGED if verb == "acknowledge" else AlertStatus.RESOLVED
    return _headers(RedirectResponse(f"/ui/alerts/{alert_id}?done={done}", status_code=303))


@router.post("/alerts/{alert_id}/acknowledge", response_class=HTMLResponse)
@_page
def acknowledge(
    request: Request, alert_id: AlertId, session: SessionDep, form: dict[str, str] = FormDep
) -> Response:
    return _act(request, alert_id, session, form, "acknowledge")


@router.post("/alerts/{alert_id}/resolve", response_class=HTMLResponse)
@_page
def resolve(
    request: Request, alert_id: AlertId, session: SessionDep, form: dict[str, str] = FormDep
) -> Response:
    return _act(request, alert_id, session, form, "resolve")


@router.get("/alerts/{alert_id}/report", response_class=HTMLResponse)
@_page
def alert_report(request: Request, alert_id: AlertId, session: SessionDep) -> Response:
    """The alert's evidently report (as ``/v1/alerts/{id}/report``, with the cookie)."""
    principal = principal_from_cookie(session, request)
    _alert(session, principal, alert_id)
    html = report_html(request.app.state.engine, alert_id)
    if html is None:
        raise UiError(404, f"alert {alert_id} has no data-drift report (yet)")
    response = HTMLResponse(html.decode("utf-8"))
    response.headers["Content-Security-Policy"] = REPORT_CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/audit", response_class=HTMLResponse)
@_page
def audit_page(request: Request, session: SessionDep, page: int = 1) -> Response:
    principal = principal_from_cookie(session, request)
    if principal.site_id is not None and principal.role not in (Role.ADMIN, Role.VIEWER):
        raise UiError(
            403,
            "the audit trail spans every site: it needs a token not bound to one site",
        )
    total = int(session.exec(select(func.count()).select_from(AuditEntry)).one())
    pages = max(1, -(-total // AUDIT_PAGE_SIZE))
    page = min(max(1, page), pages)
    entries = list(
        session.exec(
            select(AuditEntry)
            .order_by(col(AuditEntry.seq).desc())
            .offset((page - 1) * AUDIT_PAGE_SIZE)
            .limit(AUDIT_PAGE_SIZE)
        )
    )
    return render(
        request,
        "audit.html",
        principal=principal,
        title="Audit trail",
        entries=entries,
        verdict=verify_chain(session),
        page=page,
        pages=pages,
        total=total,
    )


# --- static files (no CDN: hospitals are offline) ---------------------------------------------


@functools.lru_cache(maxsize=1)
def _plotly_js() -> tuple[bytes, bytes]:
    from plotly.offline import get_plotlyjs

    raw = get_plotlyjs().encode("utf-8")
    return raw, gzip.compress(raw, compresslevel=6)


@router.get("/static/{name}")
def static(name: str, request: Request) -> Response:
    headers = {"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"}
    if name == "plotly.min.js":
        raw, packed = _plotly_js()
        if "gzip" in request.headers.get("accept-encoding", ""):
            headers["Content-Encoding"] = "gzip"
            headers["Vary"] = "Accept-Encoding"
            return Response(packed, media_type="text/javascript", headers=headers)
        return Response(raw, media_type="text/javascript", headers=headers)
    path = STATIC / name
    if "/" in name or name.startswith(".") or path.suffix not in STATIC_TYPES or not path.is_file():
        return Response("not found", status_code=404, media_type="text/plain")
    return Response(path.read_bytes(), media_type=STATIC_TYPES[path.suffix], headers=headers)
