"""Subgroup performance and the disparity monitor, read from the store (docs/SUBGROUPS.md).

:func:`subgroup_table` gives one deployment's table: per dimension (site, scanner, sex, age
band, or what ``monitoring.subgroups.dimensions`` names) and group, over the last
``window_days`` of acquisition, the cases, the labelled cases, the positive-call rate and, with
labels, sensitivity, specificity and PPV, each with Wilson's 95% interval (Wilson 1927), the
gap to the rest of the deployment with Newcombe's 95% interval (Newcombe 1998), the performance
estimated without labels (CBPE, from the drift pass's calibration) and the disparity monitor's
verdict per metric.

:func:`process_subgroups` runs the disparity monitor for every deployment that has it on and
raises one alert (cause ``disparity``) per group and metric whose chart alarms: a one-sided
Bernoulli CUSUM (Reynolds & Stoumbos 1999) at the margin's boundary, its budget one share of
the deployment's, split over its charts (``phase4.monitor.drift.subgroups``). The alert names
the group, the gap with its 95% interval over the cases since the change, and since when (the
acquisition date of the group's first case after the chart last stood at zero: the world's
date, not the time of processing).

The chart is replayed from the store at each pass (its cases since the deployment's
acceptance, or since the last resolved alert of that chart, in acquisition order), so it keeps
no state of its own: a late label is counted where its case was acquired.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from phase4.monitor.core.headline import as_utc, clean
from phase4.monitor.core.monitoring import (
    MonitoringConfig,
    MonitoringConfigError,
    SubgroupsConfig,
    parse_monitoring,
)
from phase4.monitor.core.statuses import AlertCause, AlertStatus, Severity
from phase4.monitor.drift.arl import CalibrationError
from phase4.monitor.drift.cbpe import expected_rates
from phase4.monitor.drift.streams import read_field
from phase4.monitor.drift.subgroups import (
    DISPARITY_METRICS,
    METRIC_LABELS,
    METRICS,
    Counts,
    cases_needed,
    design_disparity,
    disparity_arl0,
    error_kind,
    gap_to_rest,
    rate,
    run_disparity,
    verdict_words,
)
from phase4.monitor.store.models import (
    Alert,
    Deployment,
    Feedback,
    InferenceRecord,
    Site,
    SubgroupSnapshot,
    utcnow,
)
from phase4.monitor.surveillance.alerting import lock_open_alerts, open_alert, raise_alert
from phase4.monitor.surveillance.detection import load_state
from phase4.monitor.surveillance.headline import write_headline
from phase4.monitor.surveillance.observations import outcome_view

log = logging.getLogger(__name__)

NOT_RECORDED = "not recorded"
GROUP_CHARS_MAX = 40
STREAM_PREFIX = "subgroups"
# Draws of the truths given the calibrated probabilities, for the CBPE estimate's interval.
CBPE_DRAWS = 400
SEX_WORDS = {"F": "female", "M": "male", "O": "other"}


def group_of(dimension: str, path: str, features: Any, site_id: str) -> str:
    """A record's group in one dimension: the deployment's site, or the field's value as a
    short label ('not recorded' when absent or not a scalar)."""
    if path == "site":
        return site_id
    value = read_field({"features": features if isinstance(features, Mapping) else {}}, path)
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict)):
        return NOT_RECORDED
    if isinstance(value, float) and not math.isfinite(value):
        return NOT_RECORDED
    text = str(value).strip()
    if dimension == "sex":
        text = SEX_WORDS.get(text.upper(), text)
    return clean(text, GROUP_CHARS_MAX) if text else NOT_RECORDED


def stream_of(dimension: str, group: str, metric: str) -> str:
    """The alert's stream: one chart per dimension, group and metric."""
    return f"{STREAM_PREFIX}.{dimension}={group}.{metric}"[:200]


@dataclass
class Case:
    """One labelled case: when it was acquired, its groups, the AI's call and the truth."""

    at: datetime
    groups: dict[str, str]
    call: bool | None
    truth: bool | None


@dataclass
class SubgroupPass:
    deployments: int = 0
    charts: int = 0
    alerts_opened: list[int] = field(default_factory=list)


def _subgroups_of(monitoring: MonitoringConfig) -> SubgroupsConfig:
    return monitoring.subgroups or SubgroupsConfig()


def _labelled_cases(
    session: Session, deployment: Deployment, monitoring: MonitoringConfig, since: datetime | None
) -> list[Case]:
    """The deployment's labelled cases in acquisition order (the latest feedback per record)."""
    perf = monitoring.performance.model_dump() if monitoring.performance else {}
    dims = _subgroups_of(monitoring).dimensions
    q = (
        select(
            Feedback, InferenceRecord.acquired_at, InferenceRecord.features, InferenceRecord.outputs
        )
        .join(InferenceRecord, col(InferenceRecord.record_id) == col(Feedback.record_id))
        .where(InferenceRecord.deployment_id == deployment.id)
        .order_by(col(Feedback.given_at), col(Feedback.id))
    )
    if since is not None:
        q = q.where(col(InferenceRecord.acquired_at) >= since)
    latest: dict[str, Case] = {}
    for fb, acquired_at, features, outputs in session.exec(q):
        view = outcome_view(outputs or {}, fb, perf)["cbpe"]
        call = view["call"] if isinstance(view["call"], bool) else None
        truth = view["truth"] if isinstance(view["truth"], bool) else None
        groups = {d: group_of(d, p, features, deployment.site_id) for d, p in dims.items()}
        latest[fb.record_id] = Case(as_utc(acquired_at) or acquired_at, groups, call, truth)
    return sorted(latest.values(), key=lambda c: c.at)


def _counts(cases: list[Case], dimension: str, group: str | None) -> Counts:
    tp = fp = tn = fn = 0
    for c in cases:
        if group is not None and c.groups.get(dimension) != group:
            continue
        if c.call is None or c.truth is None:
            continue
        if c.call and c.truth:
            tp += 1
        elif c.call:
            fp += 1
        elif c.truth:
            fn += 1
        else:
            tn += 1
    return Counts(0, 0, tp, fp, tn, fn)


def _is_error(case: Case, metric: str) -> bool | None:
    """An error of the metric's kind, or None when the case does not count for it."""
    if case.call is None or case.truth is None:
        return None
    if metric == "sensitivity":
        return (not case.call) if case.truth else None
    if metric == "specificity":
        return case.call if not case.truth else None
    return None


def _budget(session: Session, deployment: Deployment, monitoring: MonitoringConfig) -> dict | None:
    """The disparity monitor's share of the deployment's budget: F / S' a year, S' the
    deployment's shares as its drift state was created (with this one), or S + 1 when the
    state was created before the monitor was on. None before the drift pass has a state."""
    try:
        _, monitor = load_state(session, deployment.id)
    except Exception:  # a damaged state is the drift pass's to report
        return None
    if monitor is None:
        return None
    shares = monitor.config.budget_streams + (0 if monitor.config.disparity else 1)
    per_year = monitoring.false_alarms_per_year / shares
    return {
        "false_alarms_per_year": monitoring.false_alarms_per_year,
        "shares": shares,
        "share_per_year": per_year,
        "reserved_by_streams": bool(monitor.config.disparity),
    }


def _resolved_since(session: Session, deployment: Deployment) -> dict[str, datetime]:
    """Per chart (stream), the case its last resolved alert alarmed on: the chart restarts
    after it."""
    out: dict[str, datetime] = {}
    rows = session.exec(
        select(Alert).where(
            Alert.deployment_id == deployment.id,
            Alert.cause == AlertCause.DISPARITY,
            Alert.status == AlertStatus.RESOLVED,
        )
    )
    for a in rows:
        at = as_utc((a.evidence or {}).get("timestamp"))
        if at is not None and (a.stream not in out or at > out[a.stream]):
            out[a.stream] = at
    return out


def _record_count(session: Session, deployment: Deployment, since: datetime | None) -> int:
    q = sa.select(sa.func.count()).where(col(InferenceRecord.deployment_id) == deployment.id)
    if since is not None:
        q = q.where(col(InferenceRecord.acquired_at) >= since)
    return int(session.execute(q).scalar_one())


def disparity_findings(
    session: Session, deployment: Deployment, monitoring: MonitoringConfig | None = None
) -> dict[str, Any]:
    """The disparity monitor's charts for one deployment: per (dimension, group, metric) its
    verdict, with the alarm's evidence when it alarmed. Pure reading: no alert is written."""
    monitoring = monitoring or parse_monitoring(deployment.monitoring)
    sub = _subgroups_of(monitoring)
    out: dict[str, Any] = {"on": False, "charts": {}, "margin": sub.margin}
    if monitoring.performance is None:
        out["reason"] = "no labelled performance is configured (monitoring.performance)"
        return out
    if monitoring.subgroups is None or not sub.disparity:
        out["reason"] = "the disparity monitor is off (monitoring.subgroups.disparity)"
        return out
    budget = _budget(session, deployment, monitoring)
    if budget is None:
        out["reason"] = "waiting for the drift pass's first state (the deployment's budget)"
        return out
    out.update(on=True, budget=budget)
    start = as_utc(deployment.accepted_at)
    cases = _labelled_cases(session, deployment, monitoring, start)
    records = max(1, _record_count(session, deployment, start))
    restarts = _resolved_since(session, deployment)
    # the charts: groups with a rest to compare with, 'not recorded' left out
    charts: list[tuple[str, str, str]] = []
    for dim in sub.dimensions:
        groups = sorted({c.groups[dim] for c in cases} - {NOT_RECORDED})
        if len(groups) < 2:
            continue
        charts += [(dim, g, m) for g in groups for m in DISPARITY_METRICS]
    out["charts_sharing"] = len(charts)
    for dim, group, metric in charts:
        stream = stream_of(dim, group, metric)
        after = restarts.get(stream)
        mine = [c for c in cases if c.groups[dim] == group and (after is None or c.at > after)]
        rest = [c for c in cases if c.groups[dim] != group and (after is None or c.at > after)]
        g_cases = [(c, e) for c in mine if (e := _is_error(c, metric)) is not None]
        r_errors = [e for c in rest if (e := _is_error(c, metric)) is not None]
        rest_ok = len(r_errors) - sum(r_errors)
        needed = cases_needed(sub.margin, rest_ok / len(r_errors) if r_errors else 0.5)
        chart: dict[str, Any] = {
            "dimension": dim,
            "group": group,
            "metric": metric,
            "stream": stream,
            "cases": len(g_cases),
            "cases_needed": needed,
            "needed_more": max(0, needed - len(g_cases)),
            "kind": f"{error_kind(metric)} labelled cases",
            "restarted_after": after.isoformat() if after else None,
        }
        out["charts"][(dim, group, metric)] = chart
        if not r_errors:
            chart["verdict"] = "no_rest"
            continue
        # the group's rate of such cases since acceptance (not since a restart: the records
        # counted are since acceptance too)
        seen = sum(1 for c in cases if c.groups[dim] == group and _is_error(c, metric) is not None)
        per_day = monitoring.studies_per_day * seen / records
        if per_day <= 0:
            chart["verdict"] = "too_few"
            continue
        arl0 = disparity_arl0(
            charts=len(charts),
            false_alarms_per_year=budget["share_per_year"],
            cases_per_day=per_day,
        )
        try:
            design = design_disparity(
                rest_errors=sum(r_errors),
                rest_n=len(r_errors),
                margin=sub.margin,
                arl0=round(arl0, -1) or arl0,
            )
        except (CalibrationError, ValueError):
            chart["verdict"] = "not_calibratable"
            continue
        chart["design"] = design.to_dict()
        run = run_disparity([e for _, e in g_cases], design, min_cases=needed)
        chart.update(statistic=run.statistic, threshold=run.threshold)
        if run.alarm_index is None:
            chart["verdict"] = "too_few" if len(g_cases) < needed else "within"
            continue
        assert run.change_index is not None
        since = g_cases[run.change_index][0].at
        alarm_at = g_cases[run.alarm_index][0].at
        after_g = [e for c, e in g_cases[run.change_index :]]
        after_r = [e for c in rest if c.at >= since and (e := _is_error(c, metric)) is not None]
        gap = gap_to_rest(
            (len(after_g) - sum(after_g), len(after_g)),
            (len(after_r) - sum(after_r), len(after_r)),
        )
        chart.update(
            verdict="gap",
            since=since.isoformat(),
            timestamp=alarm_at.isoformat(),
            gap=gap,
            group_rate=rate(len(after_g) - sum(after_g), len(after_g)),
            rest_rate=rate(len(after_r) - sum(after_r), len(after_r)),
        )
    return out


def _cbpe_by_group(
    session: Session, deployment: Deployment, monitoring: MonitoringConfig, records: list[Any]
) -> dict[tuple[str, str], dict[str, Any]] | None:
    """Expected sensitivity and specificity per group from the drift pass's CBPE calibration,
    each with the 2.5–97.5% range of the realised value given the calibrated probabilities
    (the calibration's own error is not included)."""
    perf = monitoring.performance
    if perf is None or not perf.score:
        return None
    try:
        _, monitor = load_state(session, deployment.id)
    except Exception:
        return None
    if monitor is None or monitor.cbpe is None:
        return None
    dims = _subgroups_of(monitoring).dimensions
    probs: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for features, outputs in records:
        outputs = outputs if isinstance(outputs, Mapping) else {}
        score, call = outputs.get(perf.score), outputs.get(perf.prediction)
        if not isinstance(call, bool) or isinstance(score, bool):
            continue
        if not isinstance(score, (int, float)) or not math.isfinite(score):
            continue
        p = monitor.cbpe.probability(float(score))
        for d, path in dims.items():
            probs[(d, group_of(d, path, features, deployment.site_id))].append((p, float(call)))
    rng = np.random.default_rng(0)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for key, pairs in probs.items():
        p = np.array([a for a, _ in pairs])
        yhat = np.array([b for _, b in pairs])
        sens, spec = expected_rates(p, yhat)
        truths = rng.random((CBPE_DRAWS, len(p))) < p
        pos = truths.sum(axis=1)
        neg = len(p) - pos
        with np.errstate(invalid="ignore", divide="ignore"):
            s_draw = (truths * yhat).sum(axis=1) / pos
            f_draw = ((~truths) * (1 - yhat)).sum(axis=1) / neg
        out[key] = {
            "sensitivity": _estimate(sens, s_draw[pos > 0]),
            "specificity": _estimate(spec, f_draw[neg > 0]),
        }
    return out


def _estimate(value: float, draws: np.ndarray) -> dict[str, Any]:
    if math.isnan(value) or len(draws) < 10:
        return {"value": None, "range95": None}
    low, high = np.percentile(draws, [2.5, 97.5])
    return {"value": value, "range95": [float(low), float(high)]}


def subgroup_table(
    session: Session, deployment: Deployment, *, now: datetime | None = None
) -> dict[str, Any]:
    """The deployment's subgroup table (JSON-ready); see the module's docstring."""
    try:
        monitoring = parse_monitoring(deployment.monitoring)
    except MonitoringConfigError as exc:
        return {"deployment": deployment.id, "error": f"monitoring configuration: {exc}"}
    sub = _subgroups_of(monitoring)
    end = as_utc(
        session.execute(
            sa.select(sa.func.max(InferenceRecord.acquired_at)).where(
                col(InferenceRecord.deployment_id) == deployment.id
            )
        ).scalar_one_or_none()
    ) or (now or utcnow())
    start = end - timedelta(days=sub.window_days)
    rows = list(
        session.execute(
            sa.select(InferenceRecord.features, InferenceRecord.outputs).where(
                col(InferenceRecord.deployment_id) == deployment.id,
                col(InferenceRecord.acquired_at) > start,
            )
        )
    )
    prediction = monitoring.performance.prediction if monitoring.performance else "positive"
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for features, outputs in rows:
        call = (outputs or {}).get(prediction) if isinstance(outputs, Mapping) else None
        for d, path in sub.dimensions.items():
            t = totals[(d, group_of(d, path, features, deployment.site_id))]
            t[0] += 1
            t[1] += call is True
    labelled = (
        _labelled_cases(session, deployment, monitoring, start + timedelta(microseconds=1))
        if monitoring.performance
        else []
    )
    findings = disparity_findings(session, deployment, monitoring)
    cbpe = _cbpe_by_group(session, deployment, monitoring, rows)
    labelled_n: dict[tuple[str, str], int] = defaultdict(int)
    for c in labelled:
        for d in sub.dimensions:
            labelled_n[(d, c.groups[d])] += 1
    groups: list[dict[str, Any]] = []
    for dim in sub.dimensions:
        names = sorted({g for d, g in totals if d == dim}, key=lambda g: (g == NOT_RECORDED, g))
        everyone = _counts(labelled, dim, None)
        for g in names:
            n, positives = totals[(dim, g)]
            counts = _counts(labelled, dim, g)
            counts = Counts(n, positives, counts.tp, counts.fp, counts.tn, counts.fn)
            cm = everyone.minus(Counts(0, 0, counts.tp, counts.fp, counts.tn, counts.fn))
            rest = Counts(len(rows) - n, _positives(totals, dim) - positives, *_cm(cm))
            row: dict[str, Any] = {
                "dimension": dim,
                "group": g,
                "cases": n,
                "labelled": labelled_n[(dim, g)],
                "rates": {m: rate(*counts.fraction(m)) for m in METRICS},
                "gaps": {m: gap_to_rest(counts.fraction(m), rest.fraction(m)) for m in METRICS},
                "estimated": (cbpe or {}).get((dim, g)),
                "disparity": {},
            }
            for metric in DISPARITY_METRICS:
                chart = findings["charts"].get((dim, g, metric))
                if chart is None:
                    continue
                shown = {k: v for k, v in chart.items() if k != "design"}
                shown["words"] = verdict_words(
                    chart.get("verdict", ""), chart["needed_more"], chart["kind"]
                )
                row["disparity"][metric] = shown
            groups.append(row)
    return {
        "deployment": deployment.id,
        "window": {"days": sub.window_days, "from": start.isoformat(), "to": end.isoformat()},
        "dimensions": list(sub.dimensions),
        "margin": sub.margin,
        "min_group_cases": sub.min_group_cases,
        "units": "rates and gaps as proportions (0.1 = 10 %); 95 % intervals: Wilson (rates), "
        "Newcombe (gap = rest − group)",
        "estimated_note": (
            "estimated without labels (CBPE): the 95% range is that of the realised value "
            "given the calibrated probabilities; the calibration's own error is not included"
            if cbpe is not None
            else "no estimate without labels (needs performance.score and a fitted calibration)"
        ),
        "disparity": {
            "on": findings["on"],
            "reason": findings.get("reason"),
            "budget": findings.get("budget"),
            "charts_sharing": findings.get("charts_sharing", 0),
        },
        "groups": groups,
    }


def _cm(c: Counts) -> tuple[int, int, int, int]:
    return c.tp, c.fp, c.tn, c.fn


def _positives(totals: Mapping[tuple[str, str], list[int]], dim: str) -> int:
    return sum(v[1] for (d, _), v in totals.items() if d == dim)


def _pct(x: float) -> str:
    return f"{100 * x:.0f}"


def alert_sentence(
    chart: Mapping[str, Any], where: str, margin: float, *, dimension_label: str | None = None
) -> str:
    """The alert's words: group, metric, gap with its interval, since when, against what."""
    gap = chart["gap"] or {"value": math.nan, "ci95": [math.nan, math.nan]}
    low, high = gap["ci95"]
    metric = METRIC_LABELS.get(chart["metric"], chart["metric"])
    dim = dimension_label or chart["dimension"].replace("_", " ")
    g, r = chart["group_rate"], chart["rest_rate"]
    since = str(chart["since"])[:10]
    return clean(
        f"{metric.capitalize()} for {dim} {chart['group']} {where} is {_pct(gap['value'])} "
        f"points below the rest (95% CI {_pct(low)} to {_pct(high)} points) since {since}: "
        f"{_pct(g['value'])}% of {g['n']} against {_pct(r['value'])}% of {r['n']}, beyond the "
        f"{_pct(margin)}-point margin",
        480,
    )


def process_subgroups(engine: Engine) -> SubgroupPass:
    """Run the disparity monitor over every deployment that has it on; one alert per chart that
    alarms (an open alert's gap is brought up to date instead of counted again)."""
    out = SubgroupPass()
    with Session(engine) as session:
        ids = list(session.exec(select(Deployment.id).order_by(col(Deployment.id))))
    for deployment_id in ids:
        try:
            out.alerts_opened += _process_one(engine, deployment_id, out)
            save_snapshot(engine, deployment_id)
        except Exception as exc:  # one deployment's failure stops no other
            log.warning("disparity monitor of %s failed (%s)", deployment_id, type(exc).__name__)
    return out


def _process_one(engine: Engine, deployment_id: str, out: SubgroupPass) -> list[int]:
    opened: list[int] = []
    with Session(engine, expire_on_commit=False) as session:
        deployment = session.get(Deployment, deployment_id)
        if deployment is None:
            return opened
        try:
            monitoring = parse_monitoring(deployment.monitoring)
        except MonitoringConfigError:
            return opened  # the drift pass raises the configuration's alert
        findings = disparity_findings(session, deployment, monitoring)
        if not findings["on"]:
            return opened
        out.deployments += 1
        out.charts += len(findings["charts"])
        site = session.get(Site, deployment.site_id)
        where = f"at {site.name if site else deployment.site_id}"
        lock_open_alerts(session, deployment)
        for chart in findings["charts"].values():
            if chart.get("verdict") != "gap":
                continue
            evidence = {
                "kind": "disparity",
                "dimension": chart["dimension"],
                "group": chart["group"],
                "metric": chart["metric"],
                "margin": findings["margin"],
                "gap": chart["gap"],
                "group_rate": chart["group_rate"],
                "rest_rate": chart["rest_rate"],
                "change_timestamp": chart["since"],
                "timestamp": chart["timestamp"],
                "statistic": chart["statistic"],
                "threshold": chart["threshold"],
                "cases": chart["cases"],
                "cases_needed": chart["cases_needed"],
                "design": chart.get("design"),
                "budget": findings["budget"],
                "charts_sharing": findings["charts_sharing"],
                "method": "one-sided Bernoulli CUSUM at the margin's boundary (Reynolds & "
                "Stoumbos 1999); gap = rest − group with Newcombe's 95% interval over the "
                "cases since the change",
            }
            title = alert_sentence(chart, where, findings["margin"])
            existing = open_alert(session, deployment, chart["stream"], AlertCause.DISPARITY)
            if existing is not None:
                ev = dict(existing.evidence or {})
                ev.update(gap=chart["gap"], group_rate=chart["group_rate"])
                ev.update(rest_rate=chart["rest_rate"])
                existing.evidence = ev
                session.add(existing)
                continue
            alert = raise_alert(
                session,
                deployment,
                stream=chart["stream"],
                cause=AlertCause.DISPARITY,
                severity=Severity.WARNING,
                title=title,
                evidence=evidence,
            )
            if alert is not None and alert.id is not None:
                write_headline(session, alert)
                opened.append(alert.id)
        session.commit()
    return opened


def save_snapshot(engine: Engine, deployment_id: str) -> None:
    """Compute the deployment's table and keep it for /metrics (one row, replaced)."""
    with Session(engine) as session:
        deployment = session.get(Deployment, deployment_id)
        if deployment is None:
            return
        table = subgroup_table(session, deployment)
        row = session.get(SubgroupSnapshot, deployment_id) or SubgroupSnapshot(
            deployment_id=deployment_id
        )
        row.snapshot = table
        row.updated_at = utcnow()
        session.add(row)
        try:
            session.commit()
        except sa.exc.IntegrityError:  # another worker saved it meanwhile: theirs is as good
            session.rollback()


def snapshot_versions(session: Session) -> dict[str, Any]:
    """When each deployment's table was last saved."""
    rows = session.execute(sa.select(SubgroupSnapshot.deployment_id, SubgroupSnapshot.updated_at))
    return {dep: at for dep, at in rows}


def snapshots(session: Session, deployments: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """The deployments' last saved tables (every deployment's when None)."""
    q = sa.select(SubgroupSnapshot.deployment_id, SubgroupSnapshot.snapshot)
    if deployments is not None:
        q = q.where(col(SubgroupSnapshot.deployment_id).in_(deployments))
    return {dep: state for dep, state in session.execute(q) if isinstance(state, Mapping)}
