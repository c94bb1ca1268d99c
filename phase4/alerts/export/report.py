"""The post-market surveillance report of one deployment over one period, as plain data.

:func:`build_report` reads the store and returns a JSON-ready dict; the writers (JSON, CSV, PDF,
FHIR) only format it. Privacy: nothing here reads or returns a study pseudonym or a record id;
records contribute only counts, months, coarse population bands and labelled outcomes.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from phase4.alerts.export import clocks, psur
from phase4.alerts.export.changes import substantial_changes
from phase4.alerts.export.stats import (
    NOT_RECORDED,
    POPULATION_DIMENSIONS,
    age_band,
    mean_ci,
    median,
    scanner_band,
    sex_band,
    wilson,
)
from phase4.monitor.core.device_identity import (
    DeviceIdentity,
    DeviceIdentityError,
    parse_identity,
)
from phase4.monitor.core.headline import size_text
from phase4.monitor.core.statuses import AlertCause
from phase4.monitor.core.verdicts import verdict_level as _verdict_level
from phase4.monitor.domain.device_names import device_name, unknown_device
from phase4.monitor.drift.subgroups import gap_to_rest
from phase4.monitor.store.audit import ChainVerdict, verify_chain
from phase4.monitor.store.models import (
    AIModel,
    Alert,
    AuditEntry,
    Deployment,
    Device,
    DeviceIdentityRecord,
    Feedback,
    Incident,
    InferenceRecord,
    NotificationAttempt,
    PhantomResult,
    PhantomTolerance,
    Site,
)
from phase4.monitor.surveillance.headline import headline, world_times
from phase4.monitor.surveillance.reference_outlook import deployment_outlook

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


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


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
        "latency_ms_median": _ms(median(all_latencies)),
        "latency_records": len(all_latencies),
        "by_month": [
            {
                "month": m,
                "records": records[m],
                "errors": errors[m],
                "error_rate": (errors[m] / records[m]) if records[m] else None,
                "latency_s_median": median(latencies[m]),
                "latency_ms_median": _ms(median(latencies[m])),
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


SUBGROUP_DIMENSIONS = ("site", "scanner", "sex", "age_band")


def _performance(
    session: Session, deployment: Deployment, period: Period
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The labelled performance, overall and per month, and the same per subgroup (site,
    scanner, sex, age band) over the whole period."""
    performance = dict((deployment.monitoring or {}).get("performance") or {})
    q = (
        sa.select(
            Feedback.record_id,
            Feedback.verdict,
            Feedback.ground_truth,
            Feedback.dice,
            InferenceRecord.outputs,
            InferenceRecord.acquired_at,
            InferenceRecord.features,
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
    latest: dict[str, tuple[str, Outcome, tuple[str, ...]]] = {}
    for record_id, verdict, truth, dice, outputs, acquired_at, features in session.execute(q):
        predicted, actual = labelled_call(outputs or {}, verdict, truth, performance)
        feats = features if isinstance(features, Mapping) else {}
        groups = (deployment.site_id, scanner_band(feats), sex_band(feats), age_band(feats))
        # The latest verdict on a record stands (keyed by record, never exported).
        latest[record_id] = (_month(acquired_at), (predicted, actual, dice, verdict), groups)
    by_month: dict[str, list[Outcome]] = defaultdict(list)
    by_group: dict[str, dict[str, list[Outcome]]] = {
        d: defaultdict(list) for d in SUBGROUP_DIMENSIONS
    }
    for month, row, groups in latest.values():
        by_month[month].append(row)
        for dim, band in zip(SUBGROUP_DIMENSIONS, groups, strict=True):
            by_group[dim][band].append(row)
    subgroups = {
        "definition": "performance over the whole period per subgroup: the deployment's site, "
        "the scanner model the record names, the patient's sex and age band (as the probe "
        "recorded them); 95 % Wilson intervals; the gap is the rest of the deployment minus "
        "the band, in the metric's scale, with Newcombe's 95 % interval",
        "dimensions": {
            dim: _with_gaps(
                [
                    {"band": band, **_subgroup_block(rows)}
                    for band, rows in sorted(
                        by_group[dim].items(), key=lambda kv: _band_order(dim, kv[0])
                    )
                ]
            )
            for dim in SUBGROUP_DIMENSIONS
        },
        "disparity": [],
    }
    return {
        "definition": {
            "prediction": f"outputs.{performance.get('prediction', 'positive')}",
            "truth": f"feedback.ground_truth.{performance.get('truth', 'malignant')}",
            "unit": "records acquired in the period with feedback given by its end; "
            "the latest feedback per record",
            "intervals": "95 % Wilson score (proportions); mean ± 1.96·sd/√n (Dice)",
        },
        "overall": _performance_block(row for _, row, _ in latest.values()),
        "by_month": [{"month": m, **_performance_block(by_month[m])} for m in period.months()],
    }, subgroups


def _subgroup_block(rows: list[Outcome]) -> dict[str, Any]:
    block = _performance_block(rows)
    return {
        "feedback": block["feedback"],
        "confusion": block["confusion"],
        "sensitivity": block["sensitivity"],
        "specificity": block["specificity"],
        "ppv": block["ppv"],
    }


GAP_METRICS = {"sensitivity": ("tp", "fn"), "specificity": ("tn", "fp")}


def _with_gaps(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each band's gap to the rest of its dimension (rest − band) for sensitivity and
    specificity, with Newcombe's interval (``phase4.monitor.drift.subgroups.gap_to_rest``)."""
    totals = Counter[str]()
    for row in rows:
        totals.update(row["confusion"])
    for row in rows:
        c = row["confusion"]
        for metric, (ok, bad) in GAP_METRICS.items():
            band = (c[ok], c[ok] + c[bad])
            rest = (totals[ok] - c[ok], totals[ok] + totals[bad] - c[ok] - c[bad])
            gap = gap_to_rest(band, rest)
            row[f"gap_{metric}"] = {
                "value": gap["value"] if gap else None,
                "ci_low": gap["ci95"][0] if gap else None,
                "ci_high": gap["ci95"][1] if gap else None,
                "n": band[1],
            }
    return rows


def _disparity_rows(alerts: Iterable[Alert], period_end: datetime) -> list[dict[str, Any]]:
    """The disparity monitor's findings open at any time in the period (docs/SUBGROUPS.md)."""
    out = []
    for a in alerts:
        if a.cause != AlertCause.DISPARITY:
            continue
        ev = a.evidence or {}
        gap = ev.get("gap") or {}
        ci = gap.get("ci95") or [None, None]
        out.append(
            {
                "alert_id": a.id,
                "dimension": ev.get("dimension"),
                "band": ev.get("group"),
                "metric": ev.get("metric"),
                "gap": gap.get("value"),
                "gap_ci_low": ci[0],
                "gap_ci_high": ci[1],
                "margin": ev.get("margin"),
                "since": ev.get("change_timestamp"),
                "detected": ev.get("timestamp"),
                "status": a.status,
                "headline": headline(a, now=period_end),
            }
        )
    return out


def _band_order(dimension: str, band: str) -> tuple[int, str]:
    """Known bands in their natural order, others alphabetically, 'not recorded' last."""
    order = POPULATION_DIMENSIONS[dimension][1] if dimension in POPULATION_DIMENSIONS else ()
    if band == NOT_RECORDED:
        return (2, band)
    if band in order:
        return (0, f"{order.index(band):03d}")
    return (1, band)


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


def _alert_row(
    alert: Alert, notifications: Mapping[int, Counter[str]], names: Mapping[int, str]
) -> dict[str, Any]:
    sent = notifications.get(alert.id or 0, Counter())
    device = alert.device_id
    name = None if device is None else names.get(device) or unknown_device(device)
    return {
        "alert_id": alert.id,
        "opened_at": iso(alert.opened_at),
        "detected_at": _detected_at(alert),
        "scope": "deployment" if alert.deployment_id else "device",
        "device_id": device,
        "device_name": name,
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


def _first_of(mapping: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        value = mapping.get(key)
        if value is not None and value != "":
            return value
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _change_size(ev: Mapping[str, Any], change: Mapping[str, Any]) -> str | None:
    """The size of the change in words: the evidence's own ``change`` when it says it, else
    what the alarm's detail holds (a new value, an estimate against its reference, a relative
    change, a p-value), else the statistic against its threshold."""
    said = _first_of(change, "text", "summary", "size_text")
    if isinstance(said, str):
        return said
    size = _number(_first_of(change, "size", "magnitude", "delta", "difference"))
    if size is not None:
        unit = change.get("unit")
        return f"{size:+.4g}" + (f" {unit}" if unit else "")
    relative = _number(_first_of(change, "relative", "relative_change"))
    if relative is None:
        relative = _number(ev.get("relative_change"))
    if relative is not None:
        return f"{100 * relative:+.1f} % (relative)"
    detail = ev.get("detail") if isinstance(ev.get("detail"), Mapping) else {}
    if "value" in detail and ev.get("kind") == "notice":
        return f"new value {detail['value']!r}"
    estimate, reference = _number(detail.get("estimate")), _number(detail.get("reference_mean"))
    if estimate is not None and reference is not None:
        return f"estimate {estimate:.3g} against {reference:.3g} in the reference"
    p_value = _number(detail.get("p_value"))
    if p_value is not None:
        return f"p = {p_value:.2g} against the reference"
    statistic, threshold = _number(ev.get("statistic")), _number(ev.get("threshold"))
    if statistic is not None and threshold is not None and threshold:
        return f"statistic {abs(statistic):.3g} against threshold {threshold:.3g}"
    return None


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
    change = ev.get("change") if isinstance(ev.get("change"), Mapping) else {}
    return {
        "alert_id": alert.id,
        **_change_columns(alert),
        "opened_at": iso(alert.opened_at),
        "stream": alert.stream,
        "cause": alert.cause,
        "severity": alert.severity,
        "title": alert.title,
        "change_start": _first_of(change, "start", "began", "start_at", "change_at")
        or ev.get("change_timestamp"),
        "detected_at": _first_of(change, "detected", "detected_at", "alarm_at")
        or ev.get("timestamp")
        or iso(alert.opened_at),
        "change_size": size_text(change) or _change_size(ev, change),
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
    names = {d.id: device_name(d) for d in devices if d.id is not None}
    device_rows = [
        {
            "device_id": d.id,
            "name": device_name(d),
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
    series: dict[tuple[int, str], list[tuple[datetime, int | None, dict[str, Any]]]] = defaultdict(
        list
    )
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
                    "device_name": names.get(r.device_id),
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
            series[(r.device_id, r.kind)].append((r.acquired_at, worst, r.verdicts or {}))
            row["results"] += 1
            key = {0: "pass", 1: "outside_tolerance", 2: "outside_action", None: "no_verdict"}
            row[key[worst]] += 1
            row["reviewed"] += 1 if r.reviewed_at is not None else 0
            row["last_acquired_at"] = iso(r.acquired_at)
            if worst is not None and worst >= 1:
                failures.append(
                    {
                        "device_id": r.device_id,
                        "device_name": names.get(r.device_id),
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
    by_device = []
    for d in devices:
        kinds = sorted(k for (dev, k) in series if dev == d.id)
        if not kinds:
            continue
        rows = [
            s for k in kinds for s in summary.values() if (s["device_id"], s["kind"]) == (d.id, k)
        ]
        runs = [_longest_run(k, series[(d.id or 0, k)]) for k in kinds]
        episodes = [
            e for k in kinds for e in _episodes(session, d.id or 0, k, series[(d.id or 0, k)])
        ]
        by_device.append(
            {
                "device_id": d.id,
                "scanner": f"{d.manufacturer} {d.model} ({d.serial})",
                "results": sum(r["results"] for r in rows),
                "failures": sum(r["outside_tolerance"] + r["outside_action"] for r in rows),
                "outside_tolerance": sum(r["outside_tolerance"] for r in rows),
                "outside_action": sum(r["outside_action"] for r in rows),
                "reviewed": sum(r["reviewed"] for r in rows),
                "longest_run": max(runs, key=lambda r: (r["results"], r["days"]), default=None),
                "episode": max(episodes, key=lambda e: (e["failures"], e["days"]), default=None),
            }
        )
    return {
        "devices": device_rows,
        "summary": [summary[k] for k in sorted(summary)],
        "failures": failures,
        "by_device": by_device,
        "definitions": {
            "longest_run": "the most consecutive results of one phantom kind outside tolerance "
            "or action level (a passing result ends a run)",
            "episode": "for one metric, from its first to its last result outside tolerance in "
            "the period: the results in that span, how many failed, and the mean value's "
            "deviation from the tolerance band's centre (else from the median of the passing "
            "results before the span)",
            "sustained": f"an episode of at least {SUSTAINED_DAYS} days and {SUSTAINED_FAILURES} "
            "failures, most results in it failing",
        },
    }


SUSTAINED_DAYS = 14
SUSTAINED_FAILURES = 5


def _days(a: datetime, b: datetime) -> float:
    return round((b - a).total_seconds() / 86400, 1)


def _longest_run(
    kind: str, results: list[tuple[datetime, int | None, dict[str, Any]]]
) -> dict[str, Any]:
    best: dict[str, Any] = {"kind": kind, "results": 0, "from": None, "to": None, "days": 0.0}
    start: datetime | None = None
    count = 0
    for at, worst, _ in results:
        if worst is not None and worst >= 1:
            start = at if count == 0 else start
            count += 1
            if start is not None and count > best["results"]:
                best = {
                    "kind": kind,
                    "results": count,
                    "from": iso(start),
                    "to": iso(at),
                    "days": _days(start, at),
                }
        elif worst is not None:
            count = 0
    return best


def _episodes(
    session: Session,
    device_id: int,
    kind: str,
    results: list[tuple[datetime, int | None, dict[str, Any]]],
) -> list[dict[str, Any]]:
    """Per metric of one device and phantom kind: its span of failures, with the deviation."""
    by_metric: dict[str, list[tuple[datetime, int | None, float | None]]] = defaultdict(list)
    for at, _, verdicts in results:
        for metric, entry in verdicts.items():
            value = entry.get("value") if isinstance(entry, Mapping) else None
            by_metric[metric].append((at, _verdict_level(entry), _number(value)))
    out = []
    for metric, rows in sorted(by_metric.items()):
        failing = [at for at, level, _ in rows if level is not None and level >= 1]
        if not failing:
            continue
        first, last = failing[0], failing[-1]
        inside = [(at, level, v) for at, level, v in rows if first <= at <= last]
        values = [v for _, _, v in inside if v is not None]
        reference, reference_kind = _episode_reference(
            session, device_id, kind, metric, rows, first
        )
        mean = sum(values) / len(values) if values else None
        deviation = (
            mean / reference - 1 if mean is not None and reference not in (None, 0) else None
        )
        days = _days(first, last)
        n_fail = len(failing)
        out.append(
            {
                "kind": kind,
                "metric": metric,
                "from": iso(first),
                "to": iso(last),
                "days": days,
                "results": len(inside),
                "failures": n_fail,
                "failure_share": n_fail / len(inside) if inside else None,
                "mean_value": mean,
                "reference": reference,
                "reference_kind": reference_kind,
                "deviation": deviation,
                "sustained": days >= SUSTAINED_DAYS
                and n_fail >= SUSTAINED_FAILURES
                and n_fail * 2 > len(inside),
            }
        )
    return out


def _episode_reference(
    session: Session,
    device_id: int,
    kind: str,
    metric: str,
    rows: list[tuple[datetime, int | None, float | None]],
    first: datetime,
) -> tuple[float | None, str | None]:
    tol = None
    for owner in (
        PhantomTolerance.device_id == device_id,
        col(PhantomTolerance.device_id).is_(None),
    ):
        # The device's own latest tolerance, else the latest default (as phantom QC judges).
        tol = (
            tol
            or session.exec(
                select(PhantomTolerance)
                .where(owner, PhantomTolerance.kind == kind, PhantomTolerance.metric == metric)
                .order_by(col(PhantomTolerance.version).desc())
                .limit(1)
            ).first()
        )
    if tol is not None and tol.lower_tolerance is not None and tol.upper_tolerance is not None:
        return (tol.lower_tolerance + tol.upper_tolerance) / 2, "tolerance centre"
    before = [v for at, level, v in rows if at < first and level == 0 and v is not None]
    if before:
        return median(before), "median of the passing results before"
    return None, None


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
    names = {d.id: device_name(d) for d in devices if d.id is not None}
    usage, population = _usage_and_population(session, deployment.id, period)
    performance, subgroups = _performance(session, deployment, period)
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

    alert_rows = [_alert_row(a, notifications, names) for a in alerts]
    detected = {a["alert_id"]: a["detected_at"] for a in alert_rows}
    pauses = psur.pause_statements(alert_rows, incidents, detected)
    for pause in pauses:
        _count_usage_after(session, deployment.id, period, pause)
    usage["pauses"] = pauses

    identity_row = session.get(DeviceIdentityRecord, deployment.id)
    identity: DeviceIdentity | None = None
    identity_problem: str | None = None
    if identity_row is not None:
        try:
            identity = parse_identity(identity_row.identity)
        except DeviceIdentityError as exc:
            identity_problem = str(exc)
    model_dict = {
        "name": model.name,
        "version": model.version,
        "manufacturer": model.manufacturer,
        "intended_use": model.intended_use,
        "udi": model.udi,
    }
    phantom_qc = _phantom_qc(session, devices, period)
    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "title": "Post-market surveillance report",
        "regulatory_basis": list(psur.REGULATORY_BASIS),
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
            "model": model_dict,
            "monitoring": redact(deployment.monitoring or {}),
        },
        "identity": psur.identity_section(
            identity,
            updated_by=identity_row.updated_by if identity_row else None,
            updated_at=iso(identity_row.updated_at) if identity_row else None,
            model=model_dict,
            problem=identity_problem,
        ),
        "acceptance": psur.acceptance_section(iso(deployment.accepted_at), identity),
        "usage": usage,
        "population": population,
        "performance": performance,
        "subgroups": subgroups,
        "drift_findings": [_drift_row(a) for a in alerts if _is_drift_finding(a)],
        "phantom_qc": phantom_qc,
        "alerts": alert_rows,
        "reference_outlook": {
            "as_of": iso(generated_at),
            **deployment_outlook(session, deployment, generated_at).to_dict(),
        },
        "incidents": incidents,
        "corrective_actions": sorted(corrective, key=lambda c: str(c["at"])),
        "substantial_changes": substantial_changes(session, deployment.id, period.lo, period.hi),
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
    report["data_sources"] = _data_sources(report, identity_row)
    _subgroup_shares(report)
    report["subgroups"]["disparity"] = _disparity_rows(alerts, period.hi)
    for finding in report["drift_findings"]:
        if finding["change_size"] is None or finding["change_size"].startswith("statistic"):
            _measure_change(session, deployment.id, period, finding)
    psur.assess(report, as_of)
    return report


def _subgroup_shares(report: dict[str, Any]) -> None:
    """Each subgroup's share of the period's studies (labelled or not)."""
    total = report["usage"]["records"]
    for dim, rows in report["subgroups"]["dimensions"].items():
        served = {r["band"]: r["share"] for r in report["population"]["dimensions"].get(dim, [])}
        for row in rows:
            row["share_of_studies"] = (
                (1.0 if total else None) if dim == "site" else served.get(row["band"])
            )


_PLAIN_STREAM = re.compile(r"^(features|outputs)\.([A-Za-z0-9_]{1,100})$")
CHANGE_WINDOW = timedelta(days=30)


def _measure_change(
    session: Session, deployment_id: str, period: Period, finding: dict[str, Any]
) -> None:
    """The size of a numeric stream's change, measured on the records: its mean over the 30
    days before the estimated start against its mean from the start to 30 days after it (or
    the detection, if later). Only for a plain ``features.<key>`` or ``outputs.<key>`` stream
    whose evidence does not say the size itself."""
    match = _PLAIN_STREAM.match(finding["stream"] or "")
    start_s = finding["change_start"] or finding["detected_at"]
    if match is None or not start_s:
        return
    column = InferenceRecord.features if match.group(1) == "features" else InferenceRecord.outputs
    key = match.group(2)
    start = _aware(str(start_s))
    detected = _aware(str(finding["detected_at"])) if finding["detected_at"] else start
    end = max(start + CHANGE_WINDOW, detected)

    def values(lo: datetime, hi: datetime) -> list[float]:
        q = sa.select(column).where(
            InferenceRecord.deployment_id == deployment_id,
            col(InferenceRecord.acquired_at) >= lo,
            col(InferenceRecord.acquired_at) < hi,
        )
        out = []
        for (doc,) in session.execute(q):
            value = doc.get(key) if isinstance(doc, Mapping) else None
            if isinstance(value, int | float) and math.isfinite(value):  # booleans: 0 or 1
                out.append(float(value))
        return out

    before = values(start - CHANGE_WINDOW, start)
    after = values(start, min(end, period.hi))
    if len(before) < 10 or len(after) < 10:
        return
    mean_before, mean_after = sum(before) / len(before), sum(after) / len(after)
    relative = mean_after / mean_before - 1 if mean_before else None
    finding["change_measured"] = {
        "mean_before": mean_before,
        "mean_after": mean_after,
        "relative": relative,
        "n_before": len(before),
        "n_after": len(after),
        "window": "30 days before the estimated start; from it to 30 days after (or the "
        "detection, if later)",
    }
    finding["change_size"] = f"mean {mean_before:.4g} -> {mean_after:.4g}" + (
        f" ({100 * relative:+.1f} %)" if relative is not None else ""
    )


def _detected_at(alert: Alert) -> str | None:
    """When the finding was detected: the evidence's own change record, else its alarm time,
    else when the alert opened."""
    ev = alert.evidence or {}
    change = ev.get("change") if isinstance(ev.get("change"), Mapping) else {}
    stamp = _first_of(change, "detected", "detected_at", "alarm_at") or ev.get("timestamp")
    return str(stamp) if stamp else iso(alert.opened_at)


def _aware(stamp: str) -> datetime:
    at = datetime.fromisoformat(stamp)
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _count_usage_after(
    session: Session, deployment_id: str, period: Period, pause: dict[str, Any]
) -> None:
    """Records acquired in the period after the finding and after the pause was written."""

    def count(after: datetime) -> int:
        q = sa.select(sa.func.count()).where(
            InferenceRecord.deployment_id == deployment_id,
            col(InferenceRecord.acquired_at) >= max(after, period.lo),
            col(InferenceRecord.acquired_at) < period.hi,
        )
        return int(session.execute(q).scalar_one())

    finding_at = _aware(pause["finding_at"])
    recorded_at = _aware(pause["recorded_at"])
    pause["records_after_finding"] = count(finding_at)
    pause["records_after_recorded"] = count(recorded_at)
    span_days = (period.hi - max(finding_at, period.lo)).total_seconds() / 86400
    pause["records_per_month_after_finding"] = (
        pause["records_after_finding"] / (span_days / 30.44) if span_days >= 1 else None
    )


def _data_sources(report: dict[str, Any], identity_row: DeviceIdentityRecord | None) -> list:
    qc = report["phantom_qc"]
    return [
        {
            "source": "Inference records",
            "how": "the probe beside the AI at the site (identifiers removed at the edge)",
            "count": report["usage"]["records"],
            "unit": "studies",
        },
        {
            "source": "Physician feedback and ground truth",
            "how": "RIS/reporting integration through the API",
            "count": report["performance"]["overall"]["feedback"],
            "unit": "labelled studies",
        },
        {
            "source": "Phantom quality control",
            "how": "the site's scanners' daily and weekly phantoms",
            "count": sum(s["results"] for s in qc["summary"]),
            "unit": f"results from {len(qc['by_device'])} scanner(s)",
        },
        {
            "source": "Drift and QC alerts",
            "how": "phase4's detectors on the records, feedback and phantoms",
            "count": len(report["alerts"]),
            "unit": "alerts open in the period",
        },
        {
            "source": "Incident register",
            "how": "recorded by named reviewers",
            "count": len(report["incidents"]),
            "unit": "incidents",
        },
        {
            "source": "Audit trail",
            "how": "hash-chained, verified at export",
            "count": len(report["audit"]["entries"]),
            "unit": "entries in the period",
        },
        {
            "source": "Device identity",
            "how": "recorded by "
            + (
                f"{identity_row.updated_by} on {identity_row.updated_at:%Y-%m-%d}"
                if identity_row
                else "nobody"
            ),
            "count": 1 if identity_row else 0,
            "unit": "record",
        },
    ]
