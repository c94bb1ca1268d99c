"""Phantom QC in the store: results per device, versioned tolerances, sign-off, control charts.

What each part does:
- ``set_tolerance`` adds a new *version* of one metric's tolerance and action levels (for one
  device, or the default for all devices); old versions stay, and the change is audited.
- ``store_phantom_results`` stores results exactly once (by ``result_id``), judges each metric
  against the tolerance in force *now* and keeps that version with the result, so a later
  change of tolerance never rewrites yesterday's verdict.
- ``sign_off`` records the named person who reviewed a day's result (audited).
- ``process_phantom_qc`` runs the control charts over each device's history: alerts come from
  (a) a tolerance or action level crossed and (b) a two-sided CUSUM per metric calibrated to
  the device's false-alarm budget; Shewhart limits and the Western Electric rules are computed
  for the chart and the evidence, but do not by themselves raise alerts (with several metrics a
  day, their in-control ARL of 152.7 results would be several false alarms per device a
  month). And the AI canary: the AI's answer on the phantom against the truth and its own
  history (``phase4.phantoms.canary``).

Phantom alerts belong to a device (``Alert.device_id``), not a deployment: every deployment
that reads that scanner's images is concerned. They are raised and linked to the AI's alerts
by the rule the drift pass shares (``phase4.monitor.surveillance.alerting``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from phase4.monitor.core.headline import as_utc
from phase4.monitor.core.quantities import quantity_of
from phase4.monitor.core.refusals import ActionRefused
from phase4.monitor.core.statuses import AlertCause, PhantomVerdict, Severity
from phase4.monitor.domain.ingest import BatchTooLarge, ForbiddenWrite, describe_validation_error
from phase4.monitor.domain.phantom_schemas import PhantomResultIn
from phase4.monitor.domain.registry import ensure_device
from phase4.monitor.domain.schemas import BatchResult, ItemResult
from phase4.monitor.drift.budget import share
from phase4.monitor.drift.detectors import Cusum
from phase4.monitor.store.audit import record_action
from phase4.monitor.store.auth import Principal
from phase4.monitor.store.models import (
    Alert,
    Deployment,
    Device,
    PhantomResult,
    PhantomTolerance,
    utcnow,
)
from phase4.monitor.surveillance.alerting import lock_open_alerts, open_alert, raise_alert
from phase4.monitor.surveillance.change_size import numeric_change
from phase4.monitor.surveillance.headline import write_headlines
from phase4.phantoms.canary import compare_canary
from phase4.phantoms.control import ShewhartChart, tolerance_verdict

_RESULT = TypeAdapter(PhantomResultIn)
# Control chart reference: the first results of each device and metric.
REFERENCE_RESULTS = 20
# CUSUM on standardised phantom values: k = 0.5 is optimal for a 1 σ shift, the size of a
# 5% calibration error on a cylinder whose day-to-day SD is about 2-5%.
PHANTOM_CUSUM_K = 0.5
# What a phantom QC budget is per device per year (all metrics of all kinds share it).
PHANTOM_FALSE_ALARMS_PER_YEAR = 1.0
# The alert a verdict beyond a level raises, and how severe it is.
VERDICT_ALERTS = {
    PhantomVerdict.OUTSIDE_TOLERANCE: (AlertCause.PHANTOM_TOLERANCE, Severity.WARNING),
    PhantomVerdict.OUTSIDE_ACTION: (AlertCause.PHANTOM_ACTION, Severity.CRITICAL),
}


class PhantomError(ActionRefused):
    """A phantom request that cannot be carried out; the message names what is wrong."""


# --- tolerances -----------------------------------------------------------------------------


def _tolerance_dict(t: PhantomTolerance | None) -> dict[str, Any] | None:
    if t is None:
        return None
    return {
        "device_id": t.device_id,
        "kind": t.kind,
        "metric": t.metric,
        "version": t.version,
        "lower_action": t.lower_action,
        "lower_tolerance": t.lower_tolerance,
        "upper_tolerance": t.upper_tolerance,
        "upper_action": t.upper_action,
        "unit": t.unit,
    }


def tolerance_in_force(
    session: Session, device_id: int | None, kind: str, metric: str
) -> PhantomTolerance | None:
    """The device's own latest version, else the latest default (``device_id`` None)."""
    for dev in (device_id, None) if device_id is not None else (None,):
        q = select(PhantomTolerance).where(
            PhantomTolerance.kind == kind, PhantomTolerance.metric == metric
        )
        q = q.where(
            col(PhantomTolerance.device_id).is_(None)
            if dev is None
            else PhantomTolerance.device_id == dev
        )
        found = session.exec(q.order_by(col(PhantomTolerance.version).desc()).limit(1)).first()
        if found is not None:
            return found
    return None


def set_tolerance(
    session: Session,
    *,
    kind: str,
    metric: str,
    actor: str,
    reason: str,
    device_id: int | None = None,
    lower_action: float | None = None,
    lower_tolerance: float | None = None,
    upper_tolerance: float | None = None,
    upper_action: float | None = None,
    unit: str | None = None,
) -> PhantomTolerance:
    """Add the next version of a metric's tolerance and action levels (audited)."""
    if not (reason or "").strip():
        raise PhantomError("a reason is required to change a tolerance")
    levels = [lower_action, lower_tolerance, upper_tolerance, upper_action]
    given = [v for v in levels if v is not None]
    if not given:
        raise PhantomError(f"tolerance of {kind}.{metric}: give at least one level")
    if any(not math.isfinite(v) for v in given):
        raise PhantomError(f"tolerance of {kind}.{metric}: levels must be finite numbers")
    if given != sorted(given):
        raise PhantomError(
            f"tolerance of {kind}.{metric}: levels must be ordered lower_action <= "
            f"lower_tolerance <= upper_tolerance <= upper_action (got {levels})"
        )
    if device_id is not None and session.get(Device, device_id) is None:
        raise PhantomError(f"no device {device_id}", status_code=404)
    old = session.exec(
        select(PhantomTolerance)
        .where(
            PhantomTolerance.kind == kind,
            PhantomTolerance.metric == metric,
            col(PhantomTolerance.device_id).is_(None)
            if device_id is None
            else PhantomTolerance.device_id == device_id,
        )
        .order_by(col(PhantomTolerance.version).desc())
        .limit(1)
    ).first()
    tol = PhantomTolerance(
        device_id=device_id,
        kind=kind,
        metric=metric,
        version=1 if old is None else old.version + 1,
        lower_action=lower_action,
        lower_tolerance=lower_tolerance,
        upper_tolerance=upper_tolerance,
        upper_action=upper_action,
        unit=unit,
        created_by=actor,
        reason=reason,
    )
    session.add(tol)
    session.flush()
    record_action(
        session,
        actor=actor,
        action="tolerance.set",
        entity_type="phantom_tolerance",
        entity_id=f"{device_id if device_id is not None else 'default'}:{kind}.{metric}",
        reason=reason,
        old_value=_tolerance_dict(old),
        new_value=_tolerance_dict(tol),
    )
    return tol


# --- results --------------------------------------------------------------------------------


def judge(session: Session, device_id: int, kind: str, metrics: dict[str, float]) -> dict[str, Any]:
    """Each metric's verdict against the tolerance in force now, with that version: what
    ingest stores, so every verdict in the store is a ``PhantomVerdict``."""
    out: dict[str, Any] = {}
    for metric, value in sorted(metrics.items()):
        tol = tolerance_in_force(session, device_id, kind, metric)
        if tol is None:
            out[metric] = {"verdict": PhantomVerdict.NO_TOLERANCE, "value": value}
            continue
        out[metric] = {
            "verdict": PhantomVerdict(
                tolerance_verdict(
                    value,
                    lower_action=tol.lower_action,
                    lower_tolerance=tol.lower_tolerance,
                    upper_tolerance=tol.upper_tolerance,
                    upper_action=tol.upper_action,
                )
            ),
            "value": value,
            "tolerance_version": tol.version,
            "tolerance_device": tol.device_id,
        }
    return out


def store_phantom_results(
    session: Session, items: Sequence[Any], principal: Principal, *, max_batch: int = 100
) -> BatchResult:
    """Validate each item, check the token may write each site, store new ``result_id`` s."""
    if len(items) > max_batch:
        raise BatchTooLarge(len(items), max_batch)
    results: list[ItemResult] = []
    parsed: list[tuple[int, PhantomResultIn]] = []
    for i, raw in enumerate(items):
        try:
            parsed.append((i, _RESULT.validate_python(raw)))
        except ValidationError as exc:
            rid = raw.get("result_id") if isinstance(raw, dict) else None
            results.append(
                ItemResult(
                    index=i,
                    id=rid if isinstance(rid, str) else None,
                    status="rejected",
                    error=describe_validation_error(exc),
                )
            )
    sites = {p.site for _, p in parsed}
    forbidden = sorted(s for s in sites if not principal.can_write_site(s))
    if forbidden:
        raise ForbiddenWrite(f"token {principal.name!r} may not write for site(s) {forbidden}")
    seen: set[str] = set()
    for i, item in parsed:
        exists = session.exec(
            select(PhantomResult.id).where(PhantomResult.result_id == item.result_id)
        ).first()
        if exists is not None or item.result_id in seen:
            results.append(ItemResult(index=i, id=item.result_id, status="duplicate"))
            continue
        seen.add(item.result_id)
        device = ensure_device(
            session,
            site_id=item.site,
            manufacturer=item.device.manufacturer,
            model=item.device.model,
            serial=item.device.serial,
            modality=item.device.modality,
            actor=principal.actor,
        )
        verdicts = judge(session, device.id or 0, item.kind, item.metrics)
        versions = [v["tolerance_version"] for v in verdicts.values() if "tolerance_version" in v]
        session.add(
            PhantomResult(
                result_id=item.result_id,
                device_id=device.id or 0,
                kind=item.kind,
                acquired_at=item.acquired_at,
                metrics={**item.metrics, **({"_truth": item.truth} if item.truth else {})},
                verdicts=verdicts,
                tolerance_version=max(versions) if versions else None,
                ai_outputs=item.ai_outputs,
            )
        )
        results.append(ItemResult(index=i, id=item.result_id, status="created"))
    session.flush()
    results.sort(key=lambda r: r.index)
    return BatchResult(
        created=sum(r.status == "created" for r in results),
        duplicates=sum(r.status == "duplicate" for r in results),
        rejected=sum(r.status == "rejected" for r in results),
        results=results,
    )


def sign_off(session: Session, result_id: str, *, user: str, note: str | None) -> PhantomResult:
    """A named person reviewed this result (once; audited)."""
    result = session.exec(select(PhantomResult).where(PhantomResult.result_id == result_id)).first()
    if result is None:
        raise PhantomError(f"no phantom result {result_id!r}", status_code=404)
    if result.reviewed_by is not None:
        raise PhantomError(
            f"phantom result {result_id!r} was already signed off by {result.reviewed_by}",
            status_code=409,
        )
    result.reviewed_by = user
    result.reviewed_at = utcnow()
    result.review_note = note
    session.add(result)
    record_action(
        session,
        actor=user,
        action="phantom.sign_off",
        entity_type="phantom_result",
        entity_id=result_id,
        reason=note,
        new_value={"reviewed_by": user, "verdicts": result.verdicts},
    )
    return result


def metric_values(metrics: dict[str, Any]) -> dict[str, float]:
    """The numeric metrics of a result (the truth and other annotations are not charted)."""
    return {
        k: float(v)
        for k, v in metrics.items()
        if not k.startswith("_")
        and isinstance(v, int | float)
        and not isinstance(v, bool)
        and math.isfinite(v)
    }


# --- control charts and the canary ------------------------------------------------------------


@dataclass
class QCPass:
    results: int = 0
    alerts_opened: list[int] = field(default_factory=list)


def _device_budget_arl0(metrics_charted: int) -> float:
    """ARL0 in results for one metric: the device's budget shared by its charted metrics
    (one phantom result of each kind a day)."""
    return share(
        streams=max(1, metrics_charted),
        false_alarms_per_year=PHANTOM_FALSE_ALARMS_PER_YEAR,
        observations_per_day=1.0,
    ).arl0


def control_chart(values: Sequence[float], reference: int = REFERENCE_RESULTS) -> dict[str, Any]:
    """Shewhart limits from the reference results, the Western Electric rule hits, and the
    budget-free CUSUM path, for a chart of one metric's history (oldest first)."""
    n_ref = min(reference, len(values))
    if n_ref < 5:
        return {"reference_results": n_ref, "ready": False}
    try:
        chart = ShewhartChart.from_reference(list(values[:n_ref]))
    except ValueError as exc:  # e.g. a reference that does not vary
        return {"reference_results": n_ref, "ready": False, "reason": str(exc)}
    hits = chart.check(list(values))
    return {
        "ready": True,
        "reference_results": n_ref,
        "center": chart.center,
        "sigma": chart.sigma,
        "rule_hits": [h.to_dict() for h in hits],
    }


def process_phantom_qc(engine: Engine) -> QCPass:
    """Run the control charts and the canary over results not yet processed (exactly once)."""
    out = QCPass()
    with Session(engine, expire_on_commit=False) as session:
        pending = list(
            session.exec(
                select(PhantomResult)
                .where(col(PhantomResult.qc_processed_at).is_(None))
                .order_by(col(PhantomResult.acquired_at), col(PhantomResult.id))
                .with_for_update(skip_locked=True)
            )
        )
        by_device: dict[tuple[int, str], list[PhantomResult]] = defaultdict(list)
        touched: dict[int, Alert] = {}
        for r in pending:
            by_device[(r.device_id, r.kind)].append(r)
        # repeats update open device alerts, and headlines the open alerts of the deployments
        # at their sites that they link: lock them all first, in id order (lock order)
        devices = [session.get(Device, d) for d in sorted({d for d, _ in by_device})]
        found = [d for d in devices if d is not None]
        sites = sorted({d.site_id for d in found})
        at_sites = session.exec(
            select(Deployment)
            .where(col(Deployment.site_id).in_(sites))
            .order_by(col(Deployment.id))
        )
        lock_open_alerts(session, *found, *at_sites)
        for (device_id, kind), new in by_device.items():
            device = session.get(Device, device_id)
            assert device is not None
            history = list(
                session.exec(
                    select(PhantomResult)
                    .where(PhantomResult.device_id == device_id, PhantomResult.kind == kind)
                    .order_by(col(PhantomResult.acquired_at), col(PhantomResult.id))
                )
            )
            new_ids = {r.id for r in new}
            out.alerts_opened += _chart_device(session, device, kind, history, new_ids, touched)
            out.alerts_opened += _canary(session, device, kind, history, new_ids, touched)
            now = utcnow()
            for r in new:
                r.qc_processed_at = now
                session.add(r)
            out.results += len(new)
        # each alert opened or repeated: its headline (with its size and its linked alerts)
        write_headlines(session, list(touched.values()))
        session.commit()
    return out


def _raise(
    session: Session, device: Device, touched: dict[int, Alert], **alert: Any
) -> Alert | None:
    """``raise_alert``, remembering the alert it opened or repeated (for its headline)."""
    opened = raise_alert(session, device, **alert)
    current = opened or open_alert(session, device, alert["stream"], alert["cause"])
    if current is not None and current.id is not None:
        touched[current.id] = current
    return opened


def _limit(
    session: Session, kind: str, metric: str, value: float, verdict: Any
) -> dict[str, Any] | None:
    """The level a result crossed, for its alert: which (tolerance, action), on which side,
    its value (from the tolerance version the result was judged against)."""
    if not isinstance(verdict, dict) or "tolerance_version" not in verdict:
        return None
    device_id = verdict.get("tolerance_device")
    tol = session.exec(
        select(PhantomTolerance).where(
            PhantomTolerance.kind == kind,
            PhantomTolerance.metric == metric,
            PhantomTolerance.version == verdict["tolerance_version"],
            col(PhantomTolerance.device_id).is_(None)
            if device_id is None
            else PhantomTolerance.device_id == device_id,
        )
    ).first()
    if tol is None:
        return None
    level = str(verdict.get("verdict"))
    lower = tol.lower_action if level == PhantomVerdict.OUTSIDE_ACTION else tol.lower_tolerance
    upper = tol.upper_action if level == PhantomVerdict.OUTSIDE_ACTION else tol.upper_tolerance
    if lower is not None and value < lower:
        return {"level": level, "side": "below", "value": lower, "unit": tol.unit}
    if upper is not None and value > upper:
        return {"level": level, "side": "above", "value": upper, "unit": tol.unit}
    return {"level": level, "unit": tol.unit}


def _chart_device(
    session: Session,
    device: Device,
    kind: str,
    history: list[PhantomResult],
    new_ids: set[Any],
    touched: dict[int, Alert],
) -> list[int]:
    opened: list[int] = []
    metric_names = sorted({m for r in history for m in metric_values(r.metrics)})
    arl0 = _device_budget_arl0(len(metric_names))
    for metric in metric_names:
        series = [(r, metric_values(r.metrics).get(metric)) for r in history]
        series_v = [(r, v) for r, v in series if v is not None]
        # Tolerance and action levels: an alert for each new result outside them.
        for r, v in series_v:
            if r.id not in new_ids:
                continue
            verdict = (r.verdicts.get(metric) or {}).get("verdict")
            if verdict in (PhantomVerdict.OUTSIDE_TOLERANCE, PhantomVerdict.OUTSIDE_ACTION):
                cause, severity = VERDICT_ALERTS[verdict]
                alert = _raise(
                    session,
                    device,
                    touched,
                    stream=f"phantom.{kind}.{metric}",
                    cause=cause,
                    severity=severity,
                    title=f"Phantom QC {kind} {metric} = {v:.4g} outside its {verdict} level "
                    f"on {device.model} ({device.site_id})",
                    evidence={
                        "detector": f"{verdict}_level",
                        "statistic": v,
                        "timestamp": r.acquired_at.isoformat(),
                        "change_timestamp": r.acquired_at.isoformat(),
                        "result_id": r.result_id,
                        "verdict": r.verdicts.get(metric),
                        "limit": _limit(session, kind, metric, v, r.verdicts.get(metric)),
                    },
                )
                if alert is not None:
                    opened.append(alert.id or 0)
        # CUSUM on values standardised by the reference results, calibrated to the budget.
        values = np.array([v for _, v in series_v], dtype=float)
        n_ref = min(REFERENCE_RESULTS, len(values))
        if len(values) <= n_ref or n_ref < 10:
            continue
        ref = values[:n_ref]
        sd = float(ref.std(ddof=1))
        # A metric that does not vary beyond rounding (e.g. the CV of a noise-free image)
        # cannot be standardised: no chart, rather than a chart of floating-point noise.
        if not sd > 1e-9 * max(1.0, abs(float(ref.mean()))):
            continue
        cusum = Cusum.calibrated(arl0, PHANTOM_CUSUM_K, reference_size=n_ref)
        for i in range(n_ref, len(values)):
            r = series_v[i][0]
            alarm = cusum.update(float((values[i] - ref.mean()) / sd), i)
            if alarm is None:
                continue
            if r.id in new_ids:
                start = series_v[alarm.change_index_estimate][0]
                chart = control_chart(values.tolist())
                stream = f"phantom.{kind}.{metric}"
                alert = _raise(
                    session,
                    device,
                    touched,
                    stream=stream,
                    cause=AlertCause.PHANTOM_DRIFT,
                    severity=Severity.WARNING,
                    title=f"Phantom QC {kind} {metric} "
                    f"{'rose' if alarm.direction == 'up' else 'fell'} on {device.model} "
                    f"({device.site_id}), detected by cusum",
                    evidence={
                        "detector": "cusum",
                        "statistic": alarm.statistic,
                        "threshold": alarm.threshold,
                        "direction": alarm.direction,
                        "timestamp": r.acquired_at.isoformat(),
                        "change_timestamp": start.acquired_at.isoformat(),
                        "result_id": r.result_id,
                        "reference": {"mean": float(ref.mean()), "sd": sd, "results": n_ref},
                        "relative_change": float(values[i - 4 : i + 1].mean() / ref.mean() - 1),
                        "budget": share(
                            streams=max(1, len(metric_names)),
                            false_alarms_per_year=PHANTOM_FALSE_ALARMS_PER_YEAR,
                            observations_per_day=1.0,
                        ).to_dict(),
                        "western_electric": chart.get("rule_hits", [])[-5:],
                    },
                )
                if alert is not None:
                    opened.append(alert.id or 0)
                current = alert or open_alert(session, device, stream, AlertCause.PHANTOM_DRIFT)
                if current is not None:
                    _size_phantom_change(current, stream, ref.tolist(), series_v, r.acquired_at)
            cusum = Cusum.calibrated(arl0, PHANTOM_CUSUM_K, reference_size=n_ref)
    return opened


def _size_phantom_change(
    alert: Alert,
    stream: str,
    reference: list[float],
    series: list[tuple[PhantomResult, float]],
    through: Any,
) -> None:
    """The size of a phantom metric's drift: the reference results against every result from
    the change's estimated start to ``through`` (the latest alarm), kept in the evidence."""
    evidence = dict(alert.evidence or {})
    began, detected = as_utc(evidence.get("change_timestamp")), as_utc(evidence.get("timestamp"))
    last = as_utc(through)
    if began is None or detected is None or last is None:
        return
    times = [(as_utc(r.acquired_at), v) for r, v in series]
    after = [v for t, v in times if t is not None and began <= t <= last]
    if not after:
        return
    evidence["change"] = numeric_change(
        reference, after, quantity_of(stream), began, detected, last, reference="reference"
    )
    alert.evidence = evidence


def _canary(
    session: Session,
    device: Device,
    kind: str,
    history: list[PhantomResult],
    new_ids: set[Any],
    touched: dict[int, Alert],
) -> list[int]:
    opened: list[int] = []
    past: list[dict[str, Any]] = []
    for r in history:
        truth = r.metrics.get("_truth")
        if r.ai_outputs is None or not isinstance(truth, dict):
            continue
        if r.id in new_ids:
            verdict = compare_canary(truth, r.ai_outputs, history=past)
            if verdict.changed:
                alert = _raise(
                    session,
                    device,
                    touched,
                    stream=f"canary.{kind}",
                    cause=AlertCause.AI_CANARY,
                    severity=Severity.CRITICAL,
                    title=f"The AI's answer on the unchanged {kind} phantom changed on "
                    f"{device.model} ({device.site_id})",
                    evidence={
                        "detector": "canary",
                        "timestamp": r.acquired_at.isoformat(),
                        "change_timestamp": r.acquired_at.isoformat(),
                        "result_id": r.result_id,
                        "reasons": list(verdict.reasons),
                        "summary": verdict.to_dict(),
                    },
                )
                if alert is not None:
                    opened.append(alert.id or 0)
        past.append(r.ai_outputs)
    return opened
