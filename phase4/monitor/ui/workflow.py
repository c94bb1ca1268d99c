"""What the dashboard's workflow pages show, read from the store (no HTML, no writes).

Incidents with their reporting clocks (computed by ``phase4.alerts.export.clocks``, the same
arithmetic the export's register uses), phantom results to sign off, tolerance versions,
deployments that may be exported, API tokens, and what the alert page adds to an alert: the
emails' "what to check first" list (``phase4.alerts.notify.render.what_to_check``, one source
for email, webhook and page) and the incidents recorded from it. Every change these pages make
goes through ``phase4.monitor.ui.workflow_views`` to the domain functions the API calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlmodel import Session, col, func, select

from phase4.alerts.export.clocks import (
    REGIME_TITLES,
    REGIMES,
    SERIOUSNESS,
    deadline,
    incident_clocks,
    unknown_regimes,
)
from phase4.alerts.notify.render import what_to_check
from phase4.monitor.store.auth import Principal, TokenInfo, list_tokens
from phase4.monitor.store.models import (
    Alert,
    AuditEntry,
    Deployment,
    Device,
    Incident,
    PhantomResult,
    PhantomTolerance,
    Site,
)
from phase4.monitor.ui.queries import verdict_of, worst_verdict

# The most results the sign-off page lists at once (newest first); the rest follow once these
# are signed off, or with a filter.
RESULTS_PAGE_SIZE = 500
INCIDENT_FILTERS = ("open", "closed", "all")
RESULT_FILTERS = ("unsigned", "all")
# How each seriousness reads on the form (the clocks module's categories, in words).
SERIOUSNESS_WORDS = {
    "death": "death of a patient or other person",
    "serious_harm": "serious harm to health (or an unanticipated serious deterioration)",
    "widespread": "widespread infringement or serious public health threat",
    "critical_infrastructure": "serious and irreversible disruption of critical infrastructure",
    "malfunction": "malfunction or deterioration that could lead to serious harm",
}
CLOCK_ORDER = {"overdue": 0, "open": 1, "reported_late": 2, "reported_on_time": 3}


def today_utc() -> date:
    return datetime.now(UTC).date()


# --- incidents ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class IncidentRow:
    incident: Incident
    site_id: str | None
    clocks: list[dict[str, Any]]  # ``Clock.to_dict()`` of each regime
    unknown: list[str] = field(default_factory=list)  # report keys naming no regime

    @property
    def closed(self) -> bool:
        return self.incident.closed_at is not None

    @property
    def most_urgent(self) -> dict[str, Any] | None:
        """The clock to act on first: overdue, else the open one due soonest."""
        waiting = [c for c in self.clocks if c["status"] in ("overdue", "open")]
        if not waiting:
            return None
        return min(waiting, key=lambda c: (CLOCK_ORDER[c["status"]], c["due"]))


def incident_row(session: Session, incident: Incident, as_of: date) -> IncidentRow:
    dep = session.get(Deployment, incident.deployment_id)
    clocks = incident_clocks(
        seriousness=incident.seriousness,
        remedial_action_needed=incident.remedial_action_needed,
        aware_at=incident.aware_at,
        reports=incident.reports,
        as_of=as_of,
    )
    return IncidentRow(
        incident=incident,
        site_id=dep.site_id if dep is not None else None,
        clocks=[c.to_dict() for c in clocks],
        unknown=unknown_regimes(incident.reports),
    )


def readable_incidents(
    session: Session, principal: Principal, status: str, as_of: date
) -> list[IncidentRow]:
    """The incidents of the sites the token may read, newest awareness first."""
    sites = {d.id: d.site_id for d in session.exec(select(Deployment))}
    q = select(Incident)
    if status == "open":
        q = q.where(col(Incident.closed_at).is_(None))
    elif status == "closed":
        q = q.where(col(Incident.closed_at).is_not(None))
    rows = session.exec(q.order_by(col(Incident.aware_at).desc(), col(Incident.id).desc()))
    return [
        incident_row(session, i, as_of)
        for i in rows
        if principal.can_read_site(sites.get(i.deployment_id))
    ]


def deadline_table() -> list[tuple[str, str, list[str]]]:
    """Per seriousness: its words and each regime's deadline (for choosing on the form)."""
    out = []
    for s in SERIOUSNESS:
        cells = []
        for regime in REGIMES:
            limit = deadline(regime, s, remedial_action_needed=False)
            cell = f"{limit.days} {limit.kind} days"
            if regime == "fda_803":
                remedial = deadline(regime, s, remedial_action_needed=True)
                cell += f" ({remedial.days} {remedial.kind} days if remedial action is needed)"
            cells.append(cell)
        out.append((s, SERIOUSNESS_WORDS[s], cells))
    return out


def regime_titles() -> list[tuple[str, str]]:
    return [(r, REGIME_TITLES[r]) for r in REGIMES]


def history(session: Session, entity_type: str, entity_id: str) -> list[AuditEntry]:
    """The audit trail's entries on one object, oldest first."""
    return list(
        session.exec(
            select(AuditEntry)
            .where(AuditEntry.entity_type == entity_type, AuditEntry.entity_id == entity_id)
            .order_by(col(AuditEntry.seq))
        )
    )


def reviewable_deployments(
    session: Session, principal: Principal, site_id: str | None = None
) -> list[Deployment]:
    """Deployments the token may act for (of ``site_id`` only, when given)."""
    q = select(Deployment).order_by(col(Deployment.id))
    if site_id is not None:
        q = q.where(Deployment.site_id == site_id)
    return [d for d in session.exec(q) if principal.can_review_site(d.site_id)]


def readable_deployments(session: Session, principal: Principal) -> list[Deployment]:
    return [
        d
        for d in session.exec(select(Deployment).order_by(col(Deployment.id)))
        if principal.can_read_site(d.site_id)
    ]


def alert_context(
    session: Session, principal: Principal, alert: Alert, site: str | None
) -> dict[str, Any]:
    """What the alert page's workflow sections need: the checklist, the incidents recorded from
    the alert and whether this token may record one (a deployment of the alert's site)."""
    incidents = list(
        session.exec(
            select(Incident).where(Incident.alert_id == alert.id).order_by(col(Incident.id))
        )
    )
    can_record = (
        site is not None
        and principal.can_review_site(site)
        and bool(reviewable_deployments(session, principal, site))
    )
    return {
        "checks": what_to_check(alert),
        "alert_incidents": incidents,
        "can_record_incident": can_record,
    }


# --- phantom results and tolerances ----------------------------------------------------------


@dataclass(frozen=True)
class MetricCell:
    name: str
    value: Any
    verdict: str
    tolerance_version: Any


@dataclass(frozen=True)
class ResultRow:
    """One phantom result as the sign-off page shows it (its row id, never its result id)."""

    id: int
    acquired_at: datetime
    kind: str
    verdict: str
    metrics: list[MetricCell]
    tolerance_version: int | None
    reviewed_by: str | None
    reviewed_at: datetime | None
    review_note: str | None


def _cells(result: PhantomResult) -> list[MetricCell]:
    cells = []
    for name, value in sorted(result.metrics.items()):
        if name.startswith("_"):  # the phantom's truth for the canary, not a metric
            continue
        entry = result.verdicts.get(name)
        version = entry.get("tolerance_version") if isinstance(entry, dict) else None
        cells.append(MetricCell(name, value, verdict_of(entry), version))
    return cells


@dataclass(frozen=True)
class ResultPage:
    rows: list[ResultRow]
    total: int  # results of the device
    unsigned: int  # of which not signed off
    matching: int  # results the filter matches (rows holds at most RESULTS_PAGE_SIZE)
    kinds: list[str]


def device_results(session: Session, device_id: int, show: str, kind: str) -> ResultPage:
    base = select(PhantomResult).where(PhantomResult.device_id == device_id)
    kinds = sorted(
        {
            str(k)
            for k in session.exec(
                select(PhantomResult.kind).where(PhantomResult.device_id == device_id).distinct()
            )
        }
    )
    q = base
    if show == "unsigned":
        q = q.where(col(PhantomResult.reviewed_by).is_(None))
    if kind in kinds:
        q = q.where(PhantomResult.kind == kind)

    def count(query: Any) -> int:
        return int(session.exec(select(func.count()).select_from(query.subquery())).one())

    rows = [
        ResultRow(
            id=r.id or 0,
            acquired_at=r.acquired_at,
            kind=r.kind,
            verdict=worst_verdict(r.verdicts),
            metrics=_cells(r),
            tolerance_version=r.tolerance_version,
            reviewed_by=r.reviewed_by,
            reviewed_at=r.reviewed_at,
            review_note=r.review_note,
        )
        for r in session.exec(
            q.order_by(col(PhantomResult.acquired_at).desc(), col(PhantomResult.id).desc()).limit(
                RESULTS_PAGE_SIZE
            )
        )
    ]
    return ResultPage(
        rows=rows,
        total=count(base),
        unsigned=count(base.where(col(PhantomResult.reviewed_by).is_(None))),
        matching=count(q),
        kinds=kinds,
    )


@dataclass(frozen=True)
class ToleranceGroup:
    """Every version of one metric's levels for one scope (a device, or the default)."""

    device: Device | None
    kind: str
    metric: str
    versions: list[PhantomTolerance]  # newest first
    overridden: bool = False  # a default the shown device replaces with its own

    @property
    def current(self) -> PhantomTolerance:
        return self.versions[0]


def tolerance_groups(
    session: Session, principal: Principal, device_id: int | None = None
) -> list[ToleranceGroup]:
    """The tolerances the token may read (the defaults are every site's), grouped by scope and
    metric; with ``device_id``, that device's own and the defaults."""
    devices = {d.id: d for d in session.exec(select(Device)) if d.id is not None}
    grouped: dict[tuple[int | None, str, str], list[PhantomTolerance]] = {}
    rows = session.exec(
        select(PhantomTolerance).order_by(
            col(PhantomTolerance.kind),
            col(PhantomTolerance.metric),
            col(PhantomTolerance.version).desc(),
        )
    )
    for t in rows:
        if t.device_id is not None:
            dev = devices.get(t.device_id)
            if dev is None or not principal.can_read_site(dev.site_id):
                continue
            if device_id is not None and t.device_id != device_id:
                continue
        grouped.setdefault((t.device_id, t.kind, t.metric), []).append(t)
    own = {(k, m) for (d, k, m) in grouped if d is not None and d == device_id}
    out = [
        ToleranceGroup(
            device=devices.get(dev) if dev is not None else None,
            kind=kind,
            metric=metric,
            versions=versions,
            overridden=dev is None and (kind, metric) in own,
        )
        for (dev, kind, metric), versions in grouped.items()
    ]
    # A device's own first when one is shown (what it is judged by), the defaults first otherwise.
    out.sort(
        key=lambda g: (
            (g.device is None) if device_id is not None else (g.device is not None),
            g.device.id if g.device else 0,
            g.kind,
            g.metric,
        )
    )
    return out


def known_metrics(session: Session) -> list[tuple[str, str]]:
    """(kind, metric) pairs seen in tolerances and recent results: the form's suggestions."""
    pairs = {(t.kind, t.metric) for t in session.exec(select(PhantomTolerance))}
    recent = session.exec(select(PhantomResult).order_by(col(PhantomResult.id).desc()).limit(200))
    for r in recent:
        pairs |= {(r.kind, m) for m in r.metrics if not m.startswith("_")}
    return sorted(pairs)


def reviewable_devices(session: Session, principal: Principal) -> list[Device]:
    return [
        d
        for d in session.exec(select(Device).order_by(col(Device.site_id), col(Device.id)))
        if principal.can_review_site(d.site_id)
    ]


# --- tokens -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenRow:
    info: TokenInfo
    state: str


def token_rows(session: Session, now: datetime) -> list[TokenRow]:
    """Every token, newest first (never a secret or its hash)."""
    return [TokenRow(t, t.state(now)) for t in reversed(list_tokens(session))]


def site_ids(session: Session) -> list[str]:
    return [s.id for s in session.exec(select(Site).order_by(col(Site.id)))]
