"""The post-market surveillance report of one deployment over one period, as plain data.

:func:`build_report` reads the store and returns a JSON-ready dict; the writers (JSON, CSV, PDF,
FHIR) only format it. Privacy: nothing here reads or returns a study pseudonym or a record id;
records contribute only counts, months, coarse population bands and labelled outcomes.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from phase4.alerts.export import clocks
from phase4.alerts.export.stats import NOT_RECORDED, POPULATION_DIMENSIONS, mean_ci, median, wilson
from phase4.monitor.core.headline import size_text
from phase4.monitor.core.statuses import AlertCause
from phase4.monitor.core.verdicts import verdict_level as _verdict_level
from phase4.monitor.store.audit import ChainVerdict, verify_chain
from phase4.monitor.store.models import (
    AIModel,
    Alert,
    AuditEntry,
    Deployment,
    Device,
    Feedback,
    Incident,
    InferenceRecord,
    NotificationAttempt,
    PhantomResult,
    Site,
)
from phase4.monitor.surveillance.headline import headline, world_times

REPORT_FORMAT = "phase4-surveillance-report/1"
# One labelled record: the AI's call, the truth, the Dice of an edit, the physician's verdict.
Outcome = tuple[bool | None, bool | None, float | None, str | None]


@dataclass(frozen=True)
class Period:
    """Whole UTC days ``start`` to ``end``, both included: [start 00:00Z, end+1 00:00Z)."""

    start: date
    end: date

    @property
    def lo(self) -> datetime:
        return datetime.combine(self.start, time(0), tzinfo=UTC)

    @property
    def hi(self) -> datetime:
        return datetime.combine(self.end + timedelta(days=1), time(0), tzinfo=UTC)

    def months(self) -> list[str]:
        out: list[str] = []
        year, month = self.start.year, self.start.month
        while (year, month) <= (self.end.year, self.end.month):
            out.append(f"{year:04d}-{month:02d}")
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "bounds": "whole UTC days, both included",
            "from_utc": self.lo.isoformat(),
            "until_utc_exclusive": self.hi.isoformat(),
        }


_SECRET_WORDS = ("secret", "token", "password", "passwd", "apikey", "api_key", "credential")


def redact(value: Any) -> Any:
    """A copy of a configuration value with anything that looks like a secret blanked out."""
    if isinstance(value, Mapping):
        return {
            k: "[redacted]"
            if any(w in str(k).lower().replace("-", "_") for w in _SECRET_WORDS)
            else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def iso(value: datetime | date | None) -> str | None:
    return None if value is None else value.isoformat()


def _month(value: datetime) -> str:
    return f"{value.year:04d}-{value.month:02d}"


# --- usage and population -------------------------------------------------------------------


def _usage_and_population(
    session: Session, deployment_id: str, period: Period
) -> tuple[dict[str, Any], dict[str, Any]]:
    months = period.months()
    records: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    latencies: dict[str, list[float]] = defaultdict(list)
    bands: dict[str, Counter[str]] = {name: Counter() for name in POPULATION_DIMENSIONS}
    q = (
        sa.select(
            InferenceRecord.acquired_at,
            InferenceRecord.error,
            InferenceRecord.latency_s,
            InferenceRecord.features,
        )
        .where(
            InferenceRecord.deployment_id == deployment_id,
            col(InferenceRecord.acquired_at) >= period.lo,
            col(InferenceRecord.acquired_at) < period.hi,
        )
        .execution_options(yield_per=2000)
    )
    for acquired_at, error, latency_s, features in session.execute(q):
        month = _month(acquired_at)
        records[month] += 1
        if error is not None:
            errors[month] += 1
        if latency_s is not None:
            latencies[month].append(float(latency_s))
        feats = features if isinstance(features, Mapping) else {}
        for name, (band_of, _) in POPULATION_DIMENSIONS.items():
            bands[name][band_of(feats)] += 1
    all_latencies = [v for m in months for v in latencies[m]]
    total = sum(records.values())
    usage = {
        "records": total,
        "errors": sum(errors.values()),
        "latency_s_median": median(all_latencies),
        "by_month": [
            {
                "month": m,
                "records": records[m],
                "errors": errors[m],
                "error_rate": (errors[m] / records[m]) if records[m] else None,
                "latency_s_median": median(latencies[m]),
            }
            for m in months
        ],
    }
    population: dict[str, Any] = {"records": total, "dimensions": {}}
    for name, (_, order) in POPULATION_DIMENSIONS.items():
        counts = bands[name]
        labels = [*order, *sorted(k for k in counts if k not in order and k != NOT_RECORDED)]
        labels.append(NOT_RECORDED)
        population["dimensions"][name] = [
            {
                "band": label,
                "records": counts[label],
                "share": counts[label] / total if total else None,
            }
            for label in labels
        ]
    return usage, population


# --- performance ----------------------------------------------------------------------------


def labelled_call(
    outputs: Mapping[str, Any],
    verdict: str | None,
    ground_truth: Mapping[str, Any] | None,
    performance: Mapping[str, Any],
) -> tuple[bool | None, bool | None]:
    """The AI's call and the truth for one labelled record, as
    ``phase4.monitor.surveillance.detection.outcome_view``
    reads them (a rejected call without stated truth was wrong, an accepted one right)."""
    predicted = outputs.get(str(performance.get("prediction", "positive")))
    truth = (ground_truth or {}).get(str(performance.get("truth", "malignant")))
    if not isinstance(predicted, bool):
        return None, truth if isinstance(truth, bool) else None
    if verdict == "rejected" and truth is None:
        truth = not predicted
    if verdict == "accepted" and truth is None:
        truth = predicted
    return predicted, truth if isinstance(truth, bool) else None


def _performance_block(rows: Iterable[Outcome]) -> dict[str, Any]:
    tp = fp = tn = fn = 0
    dice: list[float] = []
    verdicts: Counter[str] = Counter()
    labelled = 0
    for predicted, truth, dice_value, verdict in rows:
        labelled += 1
        if verdict:
            verdicts[verdict] += 1
        if dice_value is not None:
            dice.append(float(dice_value))
        if predicted is None or truth is None:
            continue
        if predicted and truth:
            tp += 1
        elif predicted and not truth:
            fp += 1
        elif not predicted and truth:
            fn += 1
        else:
            tn += 1
    return {
        "feedback": labelled,
        "confusion": {"tp": tp, "fp": fp, "tn": tn, "fn": fn},
        "sensitivity": wilson(tp, tp + fn),
        "specificity": wilson(tn, tn + fp),
        "ppv": wilson(tp, tp + fp),
        "npv": wilson(tn, tn + fn),
        "dice": mean_ci(dice),
        "verdicts": dict(sorted(verdicts.items())),
    }


def _performance(session: Session, deployment: Deployment, period: Period) -> dict[str, Any]:
    performance = dict((deployment.monitoring or {}).get("performance") or {})
    q = (
        sa.select(
            Feedback.record_id,
            Feedback.verdict,
            Feedback.ground_truth,
            Feedback.dice,
            InferenceRecord.outputs,
            InferenceRecord.acquired_at,
        )
        .join(InferenceRecord, col(InferenceRecord.record_id) == col(Feedback.record_id))
        .where(
            InferenceRecord.deployment_id == deployment.id,
            col(InferenceRecord.acquired_at) >= period.lo,
            col(InferenceRecord.acquired_at) < period.hi,
            col(Feedback.given_at) < period.hi,
        )
        .order_by(col(Feedback.given_at), col(Feedback.id))
    )
    latest: dict[str, tuple[str, Outcome]] = {}
    for record_id, verdict, truth, dice, outputs, acquired_at in session.execute(q):
        predicted, actual = labelled_call(outputs or {}, verdict, truth, performance)
        # The latest verdict on a record stands (keyed by record, never exported).
        latest[record_id] = (_month(acquired_at), (predicted, actual, dice, verdict))
    by_month: dict[str, list[Outcome]] = defaultdict(list)
    for month, row in latest.values():
        by_month[month].append(row)
    return {
        "definition": {
            "prediction": f"outputs.{performance.get('prediction', 'positive')}",
            "truth": f"feedback.ground_truth.{performance.get('truth', 'malignant')}",
            "unit": "records acquired in the period with feedback given by its end; "
            "the latest feedback per record",
            "intervals": "95 % Wilson score (proportions); mean ± 1.96·sd/√n (Dice)",
        },
        "overall": _performance_block(row for _, row in latest.values()),
        "by_month": [{"month": m, **_performance_block(by_month[m])} for m in period.months()],
    }


# --- alerts, drift, phantoms ----------------------------------------------------------------


def _site_devices(session: Session, site_id: str) -> list[Device]:
    return list(
        session.exec(select(Device).where(Device.site_id == site_id).order_by(col(Device.id)))
    )


def _alerts(
    session: Session, deployment_id: str, device_ids: list[int], period: Period
) -> list[Alert]:
    """Alerts of the deployment (or of its site's scanners) open at any time in the period."""
    owner = Alert.deployment_id == deployment_id
    if device_ids:
        owner = sa.or_(owner, col(Alert.device_id).in_(device_ids))
    q = (
        select(Alert)
        .where(
            owner,
            col(Alert.opened_at) < period.hi,
            sa.or_(col(Alert.resolved_at).is_(None), col(Alert.resolved_at) >= period.lo),
        )
        .order_by(col(Alert.opened_at), col(Alert.id))
    )
    return list(session.exec(q))


def _alert_row(alert: Alert, notifications: Mapping[int, Counter[str]]) -> dict[str, Any]:
    sent = notifications.get(alert.id or 0, Counter())
    return {
        "alert_id": alert.id,
        "opened_at": iso(alert.opened_at),
        "scope": "deployment" if alert.deployment_id else "device",
        "device_id": alert.device_id,
        "stream": alert.stream,
        "cause": alert.cause,
        "severity": alert.severity,
        "title": alert.title,
        "status": alert.status,
        "acknowledged_by": alert.acknowledged_by,
        "acknowledged_at": iso(alert.acknowledged_at),
        "acknowledgement": alert.acknowledgement,
        "resolved_by": alert.resolved_by,
        "resolved_at": iso(alert.resolved_at),
        "resolution": alert.resolution,
        "escalated_at": iso(alert.escalated_at),
        "notifications_ok": sent["ok"],
        "notifications_failed": sent["failed"],
    }


def _change_columns(alert: Alert) -> dict[str, Any]:
    """A finding's times of the world (the change's estimated start, its detection, the delay;
    none after the present) and the size of its change with its 95% interval."""
    times = world_times(alert)
    raw = (alert.evidence or {}).get("change")
    change = raw if isinstance(raw, Mapping) else {}
    ci = change.get("ci95") if isinstance(change.get("ci95"), list) else [None, None]
    stated = change.get("stated")
    unit = {"pct": "%", "points": "percentage points"}.get(str(stated), change.get("unit"))
    return {
        "change_began": iso(times.began),
        "detected": iso(times.detected),
        "delay_days": times.delay_days,
        "headline": headline(alert),
        "quantity": change.get("quantity"),
        "size": size_text(change) or None,
        "size_value": change.get("size"),
        "size_ci95_low": ci[0] if len(ci) == 2 else None,
        "size_ci95_high": ci[1] if len(ci) == 2 else None,
        "size_unit": unit or None,
        "n_before": change.get("n_before"),
        "n_after": change.get("n_after"),
    }


def _drift_row(alert: Alert) -> dict[str, Any]:
    ev = alert.evidence or {}
    linked = ev.get("linked") or []
    return {
        "alert_id": alert.id,
        **_change_columns(alert),
        "opened_at": iso(alert.opened_at),
        "stream": alert.stream,
        "cause": alert.cause,
        "severity": alert.severity,
        "title": alert.title,
        "detector": ev.get("detector"),
        "direction": ev.get("direction"),
        "alarm_at": ev.get("timestamp"),
        "estimated_change_at": ev.get("change_timestamp"),
        "statistic": ev.get("statistic"),
        "threshold": ev.get("threshold"),
        "repeats": int(ev.get("repeats", 0) or 0),
        "status": alert.status,
        "linked": [
            {
                "alert_id": link.get("alert_id"),
                "stream": link.get("stream"),
                "cause": link.get("cause"),
                "at": link.get("at"),
                "what": link.get("what"),
            }
            for link in linked
            if isinstance(link, Mapping)
        ],
    }


def _is_drift_finding(alert: Alert) -> bool:
    cause = AlertCause.of(alert.cause)
    return cause is not None and cause.is_drift


def _phantom_qc(session: Session, devices: list[Device], period: Period) -> dict[str, Any]:
    device_rows = [
        {
            "device_id": d.id,
            "manufacturer": d.manufacturer,
            "model": d.model,
            "serial": d.serial,
            "modality": d.modality,
            "software_versions": d.software_versions,
        }
        for d in devices
    ]
    ids = [d.id for d in devices if d.id is not None]
    summary: dict[tuple[int, str], dict[str, Any]] = {}
    failures: list[dict[str, Any]] = []
    if ids:
        q = (
            select(PhantomResult)
            .where(
                col(PhantomResult.device_id).in_(ids),
                col(PhantomResult.acquired_at) >= period.lo,
                col(PhantomResult.acquired_at) < period.hi,
            )
            .order_by(col(PhantomResult.acquired_at), col(PhantomResult.id))
        )
        for r in session.exec(q):
            row = summary.setdefault(
                (r.device_id, r.kind),
                {
                    "device_id": r.device_id,
                    "kind": r.kind,
                    "results": 0,
                    "pass": 0,
                    "outside_tolerance": 0,
                    "outside_action": 0,
                    "no_verdict": 0,
                    "reviewed": 0,
                    "first_acquired_at": iso(r.acquired_at),
                    "last_acquired_at": None,
                },
            )
            levels = [_verdict_level(v) for v in (r.verdicts or {}).values()]
            known = [lv for lv in levels if lv is not None]
            worst = max(known) if known else None
            row["results"] += 1
            key = {0: "pass", 1: "outside_tolerance", 2: "outside_action", None: "no_verdict"}
            row[key[worst]] += 1
            row["reviewed"] += 1 if r.reviewed_at is not None else 0
            row["last_acquired_at"] = iso(r.acquired_at)
            if worst is not None and worst >= 1:
                failures.append(
                    {
                        "device_id": r.device_id,
                        "kind": r.kind,
                        "acquired_at": iso(r.acquired_at),
                        "level": "outside_action" if worst == 2 else "outside_tolerance",
                        "metrics": sorted(
                            k
                            for k, v in (r.verdicts or {}).items()
                            if (_verdict_level(v) or 0) >= 1
                        ),
                        "reviewed_by": r.reviewed_by,
                        "reviewed_at": iso(r.reviewed_at),
                        "review_note": r.review_note,
                    }
                )
    return {
        "devices": device_rows,
        "summary": [summary[k] for k in sorted(summary)],
        "failures": failures,
    }


# --- incidents ------------------------------------------------------------------------------


def _incidents(
    session: Session, deployment_id: str, period: Period, as_of: date
) -> list[dict[str, Any]]:
    """Incidents known by the end of the period and not closed before it began."""
    q = (
        select(Incident)
        .where(
            Incident.deployment_id == deployment_id,
            col(Incident.aware_at) < period.hi,
            sa.or_(col(Incident.closed_at).is_(None), col(Incident.closed_at) >= period.lo),
        )
        .order_by(col(Incident.aware_at), col(Incident.id))
    )
    out = []
    for inc in session.exec(q):
        row: dict[str, Any] = {
            "incident_id": inc.id,
            "title": inc.title,
            "description": inc.description,
            "seriousness": inc.seriousness,
            "remedial_action_needed": inc.remedial_action_needed,
            "aware_at": iso(inc.aware_at),
            "alert_id": inc.alert_id,
            "created_by": inc.created_by,
            "created_at": iso(inc.created_at),
            "reports": dict(inc.reports or {}),
            "corrective_action": inc.corrective_action,
            "closed_at": iso(inc.closed_at),
            "clocks": [],
            "clock_error": None,
            "unknown_report_keys": clocks.unknown_regimes(inc.reports),
        }
        try:
            row["clocks"] = [
                c.to_dict()
                for c in clocks.incident_clocks(
                    seriousness=inc.seriousness,
                    remedial_action_needed=inc.remedial_action_needed,
                    aware_at=inc.aware_at,
                    reports=inc.reports,
                    as_of=as_of,
                )
            ]
        except clocks.ClockError as exc:
            row["clock_error"] = str(exc)
        out.append(row)
    return out


# --- model history and audit ----------------------------------------------------------------


def _audit_row(e: AuditEntry) -> dict[str, Any]:
    return {
        "seq": e.seq,
        "at": iso(e.at),
        "actor": e.actor,
        "action": e.action,
        "entity_type": e.entity_type,
        "entity_id": e.entity_id,
        "reason": e.reason,
        "old_value": e.old_value,
        "new_value": e.new_value,
        "prev_hash": e.prev_hash,
        "entry_hash": e.entry_hash,
    }


def _mentions(value: Any, deployment_id: str) -> bool:
    return isinstance(value, Mapping) and deployment_id in (
        value.get("deployment_id"),
        value.get("deployment"),
    )


def _concerns(
    e: AuditEntry, deployment: Deployment, model_ids: set[str], related: dict[str, set[str]]
) -> bool:
    if e.entity_type == "deployment":
        return e.entity_id == deployment.id
    if e.entity_type == "ai_model":
        return e.entity_id in model_ids
    if e.entity_id in related.get(e.entity_type, set()):
        return True
    return _mentions(e.new_value, deployment.id) or _mentions(e.old_value, deployment.id)


def _chain_dict(verdict: ChainVerdict) -> dict[str, Any]:
    return {
        "ok": verdict.ok,
        "entries_checked": verdict.entries_checked,
        "head_hash": verdict.head_hash,
        "first_broken_seq": verdict.first_broken_seq,
        "problem": verdict.problem,
    }


# --- the report -----------------------------------------------------------------------------


def build_report(
    session: Session,
    deployment: Deployment,
    period: Period,
    *,
    generated_at: datetime,
    generated_by: str,
    as_of: date,
) -> dict[str, Any]:
    site = session.get(Site, deployment.site_id)
    model = session.get(AIModel, deployment.model_id)
    assert model is not None
    devices = _site_devices(session, deployment.site_id)
    device_ids = [d.id for d in devices if d.id is not None]
    usage, population = _usage_and_population(session, deployment.id, period)
    alerts = _alerts(session, deployment.id, device_ids, period)
    notifications: dict[int, Counter[str]] = defaultdict(Counter)
    if alerts:
        q = sa.select(NotificationAttempt.alert_id, NotificationAttempt.ok).where(
            col(NotificationAttempt.alert_id).in_([a.id for a in alerts])
        )
        for alert_id, ok in session.execute(q):
            notifications[alert_id]["ok" if ok else "failed"] += 1
    incidents = _incidents(session, deployment.id, period, as_of)

    corrective: list[dict[str, Any]] = []
    for a in alerts:
        if a.resolution and a.resolved_at is not None and period.lo <= a.resolved_at < period.hi:
            corrective.append(
                {
                    "source": "alert",
                    "source_id": a.id,
                    "at": iso(a.resolved_at),
                    "by": a.resolved_by,
                    "action": a.resolution,
                }
            )
    for inc in incidents:
        if inc["corrective_action"]:
            corrective.append(
                {
                    "source": "incident",
                    "source_id": inc["incident_id"],
                    "at": inc["closed_at"] or inc["created_at"],
                    "by": inc["created_by"],
                    "action": inc["corrective_action"],
                }
            )

    # Model versions: every version of this product, and which deployments at this site ran it.
    versions = list(
        session.exec(
            select(AIModel)
            .where(AIModel.name == model.name, col(AIModel.created_at) < period.hi)
            .order_by(col(AIModel.created_at), col(AIModel.id))
        )
    )
    site_deployments = list(
        session.exec(
            select(Deployment).where(
                Deployment.site_id == deployment.site_id,
                col(Deployment.model_id).in_([v.id for v in versions]),
                col(Deployment.created_at) < period.hi,
            )
        )
    )
    model_ids = {str(v.id) for v in versions}
    all_incident_ids = session.exec(
        select(Incident.id).where(Incident.deployment_id == deployment.id)
    ).all()
    all_alert_ids = session.exec(
        select(Alert.id).where(
            sa.or_(
                Alert.deployment_id == deployment.id,
                col(Alert.device_id).in_(device_ids) if device_ids else sa.false(),
            )
        )
    ).all()
    related = {
        "site": {deployment.site_id},
        "device": {str(i) for i in device_ids},
        "alert": {str(i) for i in all_alert_ids},
        "incident": {str(i) for i in all_incident_ids},
    }
    entries = [
        e
        for e in session.exec(
            select(AuditEntry).where(col(AuditEntry.at) < period.hi).order_by(col(AuditEntry.seq))
        )
        if _concerns(e, deployment, model_ids, related)
    ]
    history_changes = [
        _audit_row(e) for e in entries if e.entity_type in ("deployment", "ai_model")
    ]
    audit_in_period = [_audit_row(e) for e in entries if e.at >= period.lo]

    return {
        "format": REPORT_FORMAT,
        "title": "Post-market surveillance report",
        "generated_at": iso(generated_at),
        "generated_by": generated_by,
        "clocks_as_of": as_of.isoformat(),
        "period": period.to_dict(),
        "deployment": {
            "id": deployment.id,
            "site_id": deployment.site_id,
            "site_name": site.name if site else None,
            "accepted_at": iso(deployment.accepted_at),
            "created_at": iso(deployment.created_at),
            "model": {
                "name": model.name,
                "version": model.version,
                "manufacturer": model.manufacturer,
                "intended_use": model.intended_use,
                "udi": model.udi,
            },
            "monitoring": redact(deployment.monitoring or {}),
        },
        "usage": usage,
        "population": population,
        "performance": _performance(session, deployment, period),
        "drift_findings": [_drift_row(a) for a in alerts if _is_drift_finding(a)],
        "phantom_qc": _phantom_qc(session, devices, period),
        "alerts": [_alert_row(a, notifications) for a in alerts],
        "incidents": incidents,
        "corrective_actions": sorted(corrective, key=lambda c: str(c["at"])),
        "model_history": {
            "versions": [
                {
                    "model_id": v.id,
                    "name": v.name,
                    "version": v.version,
                    "manufacturer": v.manufacturer,
                    "udi": v.udi,
                    "created_at": iso(v.created_at),
                    "this_deployment": v.id == deployment.model_id,
                    "deployments_at_site": sorted(
                        d.id for d in site_deployments if d.model_id == v.id
                    ),
                }
                for v in versions
            ],
            "changes": history_changes,
        },
        "audit": {
            "scope": "entries concerning this deployment (itself, its model versions, site, "
            "scanners, alerts and incidents) recorded within the period",
            "entries": audit_in_period,
            "chain": _chain_dict(verify_chain(session)),
        },
    }
