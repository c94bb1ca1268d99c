"""The surveillance report's assessment: identity, baseline comparison, conclusions, open items.

A periodic safety update report (MDR, Regulation (EU) 2017/745, Art. 86) summarises the
post-market surveillance data of one device with "the conclusions of the benefit-risk
determination" and "the main findings", and the EU AI Act's post-market monitoring (Regulation
(EU) 2024/1689, Art. 72) asks the provider to "evaluate the continuous compliance" of a
high-risk AI system against its plan. This module drafts that part from the report's own
numbers (``report.build_report`` gathers them): it compares the field performance with the
validated baseline, lists what a reviewer must act on (open items), and writes an executive
summary and a benefit-risk paragraph marked as a draft for the manufacturer to assess and sign.
Nothing here reads the store: every sentence is built from numbers that are also in the JSON,
so the PDF, the JSON and the CSVs say the same thing.

Rules (docs/EXPORTS.md, "Conclusions and open items"):

- A proportion is **below the baseline** when its whole 95 % Wilson interval lies below the
  validated value less the PMS plan's margin (``validated_baseline.margin``, default 0).
- **Usage continued during a pause**: an alert resolution or acknowledgement, or an incident's
  description or corrective action, says the AI was paused, suspended, stopped or withdrawn
  (and not that it resumed), yet records were acquired after the finding it answers was
  detected, or after the text was written.
- **No incident recorded for a sustained finding**: a phantom QC episode of one metric lasting
  at least 14 days with at least 5 failures, most results in it failing, and no incident of the
  deployment recorded from a week before it began.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from phase4.alerts.export.stats import NOT_RECORDED, wilson
from phase4.monitor.core.device_identity import PSUR_EVERY_MONTHS, DeviceIdentity

REGULATORY_BASIS = (
    "MDR (EU) 2017/745 Art. 83-86 and Annex III: post-market surveillance and the periodic "
    "safety update report (PSUR)",
    "EU AI Act (EU) 2024/1689 Art. 72: post-market monitoring of a high-risk AI system "
    "against its plan; Art. 73: reporting of serious incidents",
    "MDR Art. 87-89: vigilance (serious incidents and field safety corrective actions)",
)
METRICS = ("sensitivity", "specificity", "ppv")
METRIC_TITLES = {"sensitivity": "Sensitivity", "specificity": "Specificity", "ppv": "PPV"}
MIN_LABELLED = 30  # fewer labelled outcomes in a month: not yet assessable
NOT_RECORDED_SHARE = 0.5  # a population band missing for more than this: subgroups unassessable
UNRESOLVED_DAYS = 30
PAUSE_WORDS = re.compile(
    r"\b(paus(e|ed|es|ing)|suspend(ed|s|ing)?|suspension|halt(ed|s)?|stopped|withdrawn|"
    r"switched off|disabled|taken out of (clinical )?(use|service)|out of clinical use)\b",
    re.IGNORECASE,
)
RESUME_WORDS = re.compile(r"\b(resum(e|ed|es|ing)|re-?enabled|restarted|back in use)\b", re.I)
NEGATED_PAUSE = re.compile(r"\b(no|not|never|without)\s+(\w+\s+){0,2}(paus|suspen|halt|stop)", re.I)
SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2}


# --- formatting (shared with the PDF, so both say the same) --------------------------------


def pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f} %"


def pct_ci(block: Mapping[str, Any] | None) -> str:
    """``87.1 % (95 % CI 84.7-89.1; n = 866)``; '-' without data."""
    if not block or block.get("value") is None:
        return "-"
    return (
        f"{100 * block['value']:.1f} % (95 % CI {100 * block['ci_low']:.1f}-"
        f"{100 * block['ci_high']:.1f}; n = {block['n']})"
    )


def points(value: float | None) -> str:
    """An absolute difference of proportions, in percentage points."""
    return "-" if value is None else f"{100 * value:.1f} percentage points"


def ms(value: float | None) -> str:
    """A duration in milliseconds with three significant digits, never in powers of ten."""
    if value is None:
        return "-"
    if value == 0:
        return "0 ms"
    digits = max(0, 2 - int(f"{abs(value):e}".split("e")[1]))
    return f"{value:.{min(digits, 6)}f} ms"


def _aware(stamp: str) -> datetime:
    at = datetime.fromisoformat(stamp)
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def day(stamp: str | None) -> str:
    return stamp[:10] if stamp else "-"


def months_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    a, b = datetime.fromisoformat(start), datetime.fromisoformat(end)
    return round((b - a).total_seconds() / 86400 / 30.44, 1)


# --- identity -------------------------------------------------------------------------------

IDENTITY_FIELDS = {
    "manufacturer": "manufacturer",
    "device_name": "device name",
    "basic_udi_di": "Basic UDI-DI",
    "mdr_class": "MDR risk class",
    "ai_act_high_risk": "AI Act high-risk status",
    "notified_body": "notified body",
    "intended_use": "intended use",
    "pms_plan": "PMS plan reference",
    "validated_baseline": "validated baseline",
}


def _baseline_block(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not value:
        return None
    n = int(value["n"])
    block = wilson(round(float(value["value"]) * n), n)
    block["value"] = float(value["value"])  # as validated, not re-rounded
    return block


def identity_section(
    identity: DeviceIdentity | None,
    *,
    updated_by: str | None,
    updated_at: str | None,
    model: Mapping[str, Any],
    problem: str | None = None,
) -> dict[str, Any]:
    """The identity as the report states it: the recorded identity, else what the model
    registry knows (manufacturer, intended use), with every missing field named."""
    doc = identity.stored() if identity is not None else {}
    out: dict[str, Any] = {
        "recorded": identity is not None,
        "updated_by": updated_by,
        "updated_at": updated_at,
        "problem": problem,
        "manufacturer": doc.get("manufacturer") or model.get("manufacturer"),
        "device_name": doc.get("device_name") or model.get("name"),
        "model_version": model.get("version"),
        "basic_udi_di": doc.get("basic_udi_di") or model.get("udi"),
        "mdr_class": doc.get("mdr_class"),
        "classification_rule": doc.get("classification_rule"),
        "ai_act_high_risk": doc.get("ai_act_high_risk"),
        "notified_body": doc.get("notified_body"),
        "intended_use": doc.get("intended_use") or model.get("intended_use"),
        "pms_plan": doc.get("pms_plan"),
        "psur_every_months": PSUR_EVERY_MONTHS.get(doc.get("mdr_class") or "", None),
        "signatories": doc.get("signatories") or [],
        "validated_baseline": None,
    }
    baseline = doc.get("validated_baseline")
    if baseline:
        out["validated_baseline"] = {
            "source": baseline.get("source"),
            "margin": float(baseline.get("margin", 0.0)),
            **{m: _baseline_block(baseline.get(m)) for m in METRICS},
        }
    needs_nb = out["mdr_class"] not in (None, "I")
    out["missing"] = [
        label
        for key, label in IDENTITY_FIELDS.items()
        if out.get(key) in (None, "", [])
        and (key != "notified_body" or needs_nb or out["mdr_class"] is None)
    ]
    return out


def acceptance_section(accepted_at: str | None, identity: DeviceIdentity | None) -> dict[str, Any]:
    """When and by whom the deployment was accepted for clinical use: the deployment's own
    acceptance time, else the identity's clinical acceptance; None of both is a gap."""
    acceptance = identity.clinical_acceptance if identity is not None else None
    if acceptance is not None:
        return {
            "accepted_on": acceptance.accepted_on.isoformat(),
            "accepted_by": acceptance.accepted_by,
            "reference": acceptance.reference,
            "source": "device identity (clinical acceptance)",
            "deployment_accepted_at": accepted_at,
        }
    if accepted_at:
        return {
            "accepted_on": accepted_at[:10],
            "accepted_by": None,
            "reference": None,
            "source": "deployment (accepted_at)",
            "deployment_accepted_at": accepted_at,
        }
    return {
        "accepted_on": None,
        "accepted_by": None,
        "reference": None,
        "source": None,
        "deployment_accepted_at": None,
    }


# --- baseline comparison --------------------------------------------------------------------


def _verdict(observed: Mapping[str, Any], baseline: Mapping[str, Any] | None, margin: float) -> str:
    if baseline is None:
        return "no baseline"
    if observed.get("value") is None:
        return "no data"
    if observed["ci_high"] < baseline["value"] - margin:
        return "below"
    if observed["value"] < baseline["value"] - margin:
        return "lower, not significant"
    return "consistent"


def baseline_comparison(identity: Mapping[str, Any], performance: Mapping[str, Any]) -> dict:
    """Each metric's validated value against the period's and each month's observed value."""
    baseline = identity.get("validated_baseline")
    margin = baseline["margin"] if baseline else 0.0
    rows = []
    for metric in METRICS:
        base = baseline.get(metric) if baseline else None
        observed = performance["overall"][metric]
        months_below = [
            m["month"]
            for m in performance["by_month"]
            if base is not None and _verdict(m[metric], base, margin) == "below"
        ]
        rows.append(
            {
                "metric": metric,
                "baseline": base,
                "observed": observed,
                "difference": (
                    observed["value"] - base["value"]
                    if base is not None and observed.get("value") is not None
                    else None
                ),
                "verdict": _verdict(observed, base, margin),
                "months_below": months_below,
            }
        )
    return {
        "available": baseline is not None,
        "source": baseline.get("source") if baseline else None,
        "margin": margin,
        "rule": "below: the observed 95 % Wilson interval lies entirely below the validated "
        "value less the PMS plan's margin; lower, not significant: the point estimate is "
        "below it but the interval is not",
        "metrics": rows,
    }


# --- pauses ---------------------------------------------------------------------------------


def says_paused(text: str | None) -> bool:
    """Whether a person's text says the AI was paused (and not that it resumed)."""
    if not text:
        return False
    if not PAUSE_WORDS.search(text) or RESUME_WORDS.search(text):
        return False
    return not NEGATED_PAUSE.search(text)


def pause_statements(
    alerts: Sequence[Mapping[str, Any]],
    incidents: Sequence[Mapping[str, Any]],
    detected: Mapping[int, str | None],
) -> list[dict[str, Any]]:
    """Every text that says the AI was paused, with when it was written and when the finding
    it answers was detected (``detected``: alert id -> detection time)."""
    out = []
    for a in alerts:
        for field, at, by in (
            ("resolution", a["resolved_at"], a["resolved_by"]),
            ("acknowledgement", a["acknowledged_at"], a["acknowledged_by"]),
        ):
            if says_paused(a.get(field)) and at:
                out.append(
                    {
                        "source": "alert",
                        "source_id": a["alert_id"],
                        "field": field,
                        "text": a[field],
                        "recorded_at": at,
                        "recorded_by": by,
                        "finding": a["title"],
                        "finding_at": detected.get(a["alert_id"]) or a["opened_at"],
                    }
                )
    for inc in incidents:
        for field, at in (
            ("description", inc["created_at"]),
            ("corrective_action", inc["closed_at"] or inc["created_at"]),
        ):
            if says_paused(inc.get(field)) and at:
                out.append(
                    {
                        "source": "incident",
                        "source_id": inc["incident_id"],
                        "field": field,
                        "text": inc[field],
                        "recorded_at": at,
                        "recorded_by": inc["created_by"],
                        "finding": inc["title"],
                        "finding_at": inc["aware_at"],
                    }
                )
    return out


# --- open items -----------------------------------------------------------------------------


ITEM_TITLES = {
    "identity_unreadable": "device identity unreadable",
    "identity_missing": "no device identity",
    "identity_incomplete": "device identity incomplete",
    "acceptance_missing": "no record of the acceptance for clinical use",
    "baseline_missing": "no validated baseline",
    "below_baseline": "{metric} below the validated baseline",
    "months_below_baseline": "{metric} below the validated baseline in some months",
    "feedback_insufficient": "too little labelled feedback",
    "feedback_pending": "recent months not yet labelled",
    "not_recorded": "{dimension} not recorded",
    "usage_after_pause": "usage continued during a pause",
    "sustained_finding_without_incident": "no incident recorded for a sustained finding",
    "findings_unresolved": "drift findings unresolved",
    "report_overdue": "incident report overdue",
    "report_due": "incident report due",
    "clock_error": "incident clock cannot be computed",
    "audit_chain_broken": "audit trail broken",
}


def _lower(title: str) -> str:
    return title if title.isupper() else title.lower()


def _item_title(code: str) -> str:
    for metric in METRICS:
        for suffix in ("months_below_baseline", "below_baseline"):
            if code == f"{metric}_{suffix}":
                return ITEM_TITLES[suffix].format(metric=_lower(METRIC_TITLES[metric]))
    if code.endswith("_not_recorded"):
        dimension = code.removesuffix("_not_recorded").replace("_", " ")
        return ITEM_TITLES["not_recorded"].format(dimension=dimension)
    return ITEM_TITLES.get(code, code.replace("_", " "))


def _item(code: str, severity: str, section: str, text: str) -> dict[str, Any]:
    return {
        "code": code,
        "title": _item_title(code),
        "severity": severity,
        "section": section,
        "text": text,
    }


def _identity_items(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    identity = report["identity"]
    items = []
    if identity.get("problem"):
        items.append(
            _item(
                "identity_unreadable",
                "high",
                "1",
                f"The stored device identity no longer passes its contract: {identity['problem']}.",
            )
        )
    elif not identity["recorded"]:
        items.append(
            _item(
                "identity_missing",
                "high",
                "1",
                "No device identity is recorded for this deployment (phase4 deployment identity, "
                "PUT /v1/deployments/{id}/identity): the report cannot name the device, its "
                "class, notified body, PMS plan or validated baseline.",
            )
        )
    if identity["recorded"] and identity["missing"]:
        items.append(
            _item(
                "identity_incomplete",
                "medium",
                "1",
                "The device identity lacks: " + ", ".join(identity["missing"]) + ".",
            )
        )
    if report["acceptance"]["accepted_on"] is None:
        items.append(
            _item(
                "acceptance_missing",
                "medium",
                "1",
                "No record of the deployment's acceptance for clinical use (date, by whom): "
                "record it in the device identity's clinical_acceptance.",
            )
        )
    return items


def _performance_items(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    items = []
    comparison = report["baseline_comparison"]
    if not comparison["available"]:
        items.append(
            _item(
                "baseline_missing",
                "medium",
                "4",
                "No validated baseline is recorded: the field performance cannot be compared "
                "with the performance the device was validated at.",
            )
        )
    for row in comparison["metrics"]:
        base, title = row["baseline"], METRIC_TITLES[row["metric"]]
        if row["verdict"] == "below":
            months = row["months_below"]
            items.append(
                _item(
                    f"{row['metric']}_below_baseline",
                    "high",
                    "4",
                    f"{title} {pct_ci(row['observed'])} is below the validated "
                    f"{pct(base['value'])} (n = {base['n']})"
                    + (
                        f" less the plan's margin of {points(comparison['margin'])}"
                        if comparison["margin"]
                        else ""
                    )
                    + (f"; months below: {', '.join(months)}" if months else "")
                    + ".",
                )
            )
        elif row["months_below"]:
            items.append(
                _item(
                    f"{row['metric']}_months_below_baseline",
                    "medium",
                    "4",
                    f"{title} was below the validated {pct(base['value'])} in "
                    f"{', '.join(row['months_below'])} although the whole period is not.",
                )
            )
    perf = report["performance"]
    overall = perf["overall"]
    if overall["sensitivity"]["n"] < MIN_LABELLED or overall["specificity"]["n"] < MIN_LABELLED:
        items.append(
            _item(
                "feedback_insufficient",
                "medium",
                "4",
                "Too little labelled feedback to assess performance: "
                f"{overall['sensitivity']['n']} positives and {overall['specificity']['n']} "
                f"negatives with ground truth in the period (at least {MIN_LABELLED} each "
                "needed).",
            )
        )
    studies = {m["month"]: m["records"] for m in report["usage"]["by_month"]}
    thin = [
        m["month"]
        for m in perf["by_month"]
        if m["feedback"] < MIN_LABELLED and studies.get(m["month"], 0) > 0
    ]
    if thin:
        items.append(
            _item(
                "feedback_pending",
                "low",
                "4",
                f"{len(thin)} month(s) with fewer than {MIN_LABELLED} labelled outcomes "
                f"({', '.join(thin)}): feedback arrives weeks after the study; reassess them in "
                "the next report.",
            )
        )
    for dim in ("sex", "age_band"):
        rows = report["population"]["dimensions"].get(dim, [])
        total = sum(r["records"] for r in rows)
        missing = sum(r["records"] for r in rows if r["band"] == NOT_RECORDED)
        if total and missing / total > NOT_RECORDED_SHARE:
            items.append(
                _item(
                    f"{dim}_not_recorded",
                    "medium",
                    "6",
                    f"{dim.replace('_', ' ').capitalize()} is not recorded for "
                    f"{pct(missing / total)} of the studies: performance per "
                    f"{dim.replace('_', ' ')} cannot be assessed (the probe can send it as "
                    "patient_sex / patient_age_band).",
                )
            )
    return items


def _pause_items(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    items = []
    for p in report["usage"]["pauses"]:
        after_finding, after_text = p["records_after_finding"], p["records_after_recorded"]
        if not after_finding and not after_text:
            continue
        where = f"{p['source']} {p['source_id']}'s {p['field']}"
        rate = (
            f", about {p['records_per_month_after_finding']:.0f} a month"
            if p["records_per_month_after_finding"]
            else ""
        )
        text = (
            f"Usage continued during a pause: {where} ({day(p['recorded_at'])}, "
            f'{p["recorded_by"] or "-"}) says "{p["text"]}", yet the AI analysed '
            f"{after_finding} studies after the finding was detected ({day(p['finding_at'])})"
            f"{rate}, and {after_text} after the pause was recorded. Confirm when the pause "
            "took effect and whether the studies analysed meanwhile need review."
        )
        items.append(_item("usage_after_pause", "high", "5", text))
    return items


def _sustained_items(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    items = []
    incidents = report["incidents"]
    for dev in report["phantom_qc"]["by_device"]:
        episode = dev.get("episode")
        if not episode or not episode["sustained"]:
            continue
        begun = _aware(episode["from"])
        covered = [i for i in incidents if (begun - _aware(i["aware_at"])).days <= 7]
        if covered:
            continue
        deviation = (
            f", mean {episode['metric']} {100 * episode['deviation']:+.1f} % from the "
            f"{episode['reference_kind']}"
            if episode["deviation"] is not None
            else ""
        )
        ended = _aware(episode["to"])
        concurrent = [
            d
            for d in report["drift_findings"]
            if d["detected_at"] and begun - timedelta(days=14) <= _aware(d["detected_at"]) <= ended
        ]
        along = (
            " The AI's drift findings in the same span: "
            + "; ".join(
                f"alert {d['alert_id']} {d['headline']}"
                + (f" ({d['change_size']})" if d["change_size"] else "")
                for d in concurrent
            )
            + "."
            if concurrent
            else ""
        )
        items.append(
            _item(
                "sustained_finding_without_incident",
                "high",
                "8",
                f"No incident recorded for a sustained finding: {dev['scanner']} had "
                f"{dev['failures']} phantom results outside tolerance in the period, "
                f"{episode['failures']} of {episode['results']} {episode['kind']} results from "
                f"{day(episode['from'])} to {day(episode['to'])} "
                f"({months_between(episode['from'], episode['to'])} months){deviation}. "
                "Assess whether it is reportable (MDR Art. 87, AI Act Art. 73) and record the "
                f"decision, and its effect on the AI's outputs.{along}",
            )
        )
    return items


def _finding_items(report: Mapping[str, Any], as_of: date) -> list[dict[str, Any]]:
    items = []
    end = datetime.fromisoformat(report["period"]["until_utc_exclusive"])
    stale = []
    for d in report["drift_findings"]:
        if d["status"] == "resolved" or not d["detected_at"]:
            continue
        detected = datetime.fromisoformat(d["detected_at"])
        if detected.tzinfo is None:
            detected = detected.replace(tzinfo=end.tzinfo)
        if (end - detected).days >= UNRESOLVED_DAYS:
            stale.append(d)
    if stale:
        first = min(stale, key=lambda d: d["detected_at"])
        items.append(
            _item(
                "findings_unresolved",
                "medium",
                "7",
                f"{len(stale)} drift finding(s) detected {UNRESOLVED_DAYS} days or more before "
                f"the period's end are not resolved (oldest: alert {first['alert_id']}, "
                f"{first['headline']}, detected {day(first['detected_at'])}): record the "
                "investigation's outcome and any corrective action.",
            )
        )
    for inc in report["incidents"]:
        for c in inc["clocks"]:
            if c["status"] == "overdue":
                items.append(
                    _item(
                        "report_overdue",
                        "high",
                        "10",
                        f"Incident {inc['incident_id']}: the {c['regime_title']} report was due "
                        f"{c['due']} and is not recorded ({c['summary']}).",
                    )
                )
            elif c["status"] == "open":
                items.append(
                    _item(
                        "report_due",
                        "medium",
                        "10",
                        f"Incident {inc['incident_id']}: the {c['regime_title']} report is due "
                        f"{c['due']} ({c['summary']}, as of {as_of.isoformat()}).",
                    )
                )
        if inc["clock_error"]:
            items.append(
                _item(
                    "clock_error",
                    "medium",
                    "10",
                    f"Incident {inc['incident_id']}: {inc['clock_error']}",
                )
            )
    chain = report["audit"]["chain"]
    if not chain["ok"]:
        items.append(
            _item(
                "audit_chain_broken",
                "high",
                "Annex B",
                f"The audit trail is broken at entry {chain['first_broken_seq']}: "
                f"{chain['problem']}.",
            )
        )
    return items


def open_items(report: Mapping[str, Any], as_of: date) -> list[dict[str, Any]]:
    items = (
        _identity_items(report)
        + _performance_items(report)
        + _pause_items(report)
        + _sustained_items(report)
        + _finding_items(report, as_of)
    )
    items.sort(key=lambda i: SEVERITY_ORDER[i["severity"]])
    for n, item in enumerate(items, 1):
        item["number"] = n
    return items


# --- summary, conclusions, benefit-risk, sign-off -------------------------------------------


def _device_line(report: Mapping[str, Any]) -> str:
    ident, dep = report["identity"], report["deployment"]
    parts = [f"{ident['device_name'] or dep['model']['name']} {ident['model_version']}"]
    if ident["manufacturer"]:
        parts.append(f"by {ident['manufacturer']}")
    regulatory = []
    if ident["mdr_class"]:
        regulatory.append(f"MDR class {ident['mdr_class']}")
    if ident["ai_act_high_risk"] is not None:
        regulatory.append("high-risk AI system" if ident["ai_act_high_risk"] else "not high-risk")
    if regulatory:
        parts.append(f"({', '.join(regulatory)})")
    plan = ident["pms_plan"]
    plan_text = (
        f"PMS plan {plan['document_id']} v{plan['version']}" if plan else "no PMS plan reference"
    )
    period = report["period"]
    return (
        " ".join(parts) + f", deployed as {dep['id']} at {dep.get('site_name') or dep['site_id']}; "
        f"{plan_text}; period {period['from']} to {period['to']}."
    )


def executive_summary(report: Mapping[str, Any], items: list[dict[str, Any]]) -> list[str]:
    usage, perf = report["usage"], report["performance"]
    months = [m for m in usage["by_month"] if m["records"]]
    labelled = perf["overall"]["feedback"]
    lines = [_device_line(report)]
    lines.append(
        f"{usage['records']} studies analysed by the AI"
        + (f" (about {usage['records'] / len(months):.0f} a month)" if months else "")
        + f", {usage['errors']} with an inference error; {labelled} with labelled feedback"
        + (f" ({pct(labelled / usage['records'])})" if usage["records"] else "")
        + "."
    )
    comparison = report["baseline_comparison"]
    perf_parts = []
    for row in comparison["metrics"]:
        text = f"{_lower(METRIC_TITLES[row['metric']])} {pct_ci(row['observed'])}"
        if row["baseline"] is not None:
            text += f" against {pct(row['baseline']['value'])} validated ({row['verdict']})"
        perf_parts.append(text)
    lines.append("Performance over the period: " + "; ".join(perf_parts) + ".")
    drift = report["drift_findings"]
    qc = report["phantom_qc"]["by_device"]
    qc_failures = sum(d["failures"] for d in qc)
    first = min(drift, key=lambda d: d["detected_at"] or "~") if drift else None
    lines.append(
        f"{len(drift)} drift finding(s)"
        + (f" (first detected {day(first['detected_at'])}: {first['headline']})" if first else "")
        + f"; {qc_failures} phantom QC result(s) outside tolerance on {len(qc)} scanner(s); "
        f"{len(report['incidents'])} incident(s); "
        f"{len(report['corrective_actions'])} corrective action(s) recorded."
    )
    high = [i for i in items if i["severity"] == "high"]
    titles = list(dict.fromkeys(i["title"] for i in high))
    lines.append(
        f"{len(items)} open item(s), {len(high)} of them high (section 12)"
        + (": " + "; ".join(titles) if titles else "")
        + "."
        if items
        else "No open items."
    )
    return lines


def benefit_risk(report: Mapping[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    below = [r for r in report["baseline_comparison"]["metrics"] if r["verdict"] == "below"]
    high = [i for i in items if i["severity"] == "high"]
    if below:
        status = "adverse"
        conclusion = (
            "the field data do not support the benefit-risk determination as validated: "
            + ", ".join(
                f"{_lower(METRIC_TITLES[r['metric']])} fell to {pct_ci(r['observed'])} against "
                f"{pct(r['baseline']['value'])} validated"
                for r in below
            )
            + ". Continued clinical use needs the corrective actions of section 11 and a "
            "documented re-assessment."
        )
    elif not report["baseline_comparison"]["available"]:
        status = "not confirmed"
        conclusion = (
            "without a validated baseline the field performance cannot be compared with the "
            "clinical evaluation, and "
            + (f"{len(high)} high open item(s) (section 12) remain" if high else "")
            + ("; " if high else "")
            + "the benefit-risk determination cannot be confirmed."
        )
    elif high:
        status = "not confirmed"
        conclusion = (
            f"the performance is consistent with the validated baseline, but {len(high)} high "
            "open item(s) (section 12) must be closed before the benefit-risk determination "
            "can be confirmed as unchanged."
        )
    else:
        status = "unchanged"
        conclusion = (
            "the field performance is consistent with the validated baseline and no high open "
            "item remains: the benefit-risk determination remains as validated."
        )
    usage = report["usage"]
    text = (
        "DRAFT, drafted from the data for the manufacturer's assessment (MDR Art. 86(1); AI Act "
        f"Art. 72): over the period the device analysed {usage['records']} studies at "
        f"{report['deployment'].get('site_name') or report['deployment']['site_id']}. On these "
        f"data {conclusion}"
    )
    return {"status": status, "text": text, "draft": True}


def signature_block(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    signatories = report["identity"]["signatories"]
    if signatories:
        return [{"name": s["name"], "role": s["role"], "date": None} for s in signatories]
    site = report["deployment"].get("site_name") or report["deployment"]["site_id"]
    return [
        {
            "name": None,
            "role": "Person responsible for regulatory compliance (MDR Art. 15)",
            "date": None,
        },
        {"name": None, "role": f"Clinical lead / medical physicist, {site}", "date": None},
    ]


def conclusions(report: Mapping[str, Any], items: list[dict[str, Any]]) -> list[str]:
    """The main findings, one sentence each, from the numbers of the sections."""
    out = []
    for row in report["baseline_comparison"]["metrics"]:
        if row["baseline"] is None:
            continue
        out.append(
            f"{METRIC_TITLES[row['metric']]}: {pct_ci(row['observed'])} against "
            f"{pct(row['baseline']['value'])} validated (n = {row['baseline']['n']}): "
            f"{row['verdict']}"
            + (f" (months below: {', '.join(row['months_below'])})" if row["months_below"] else "")
            + "."
        )
    for dev in report["phantom_qc"]["by_device"]:
        if dev["failures"]:
            run = dev["longest_run"] or {}
            out.append(
                f"Phantom QC, {dev['scanner']}: {dev['failures']} of {dev['results']} results "
                f"outside tolerance; longest run {run.get('results', 0)} consecutive results "
                f"({day(run.get('from'))} to {day(run.get('to'))})."
            )
    for a in report["alerts"]:
        if a["scope"] == "device" and a["cause"] == "ai_canary":
            out.append(
                f"AI canary: {a['title']} (alert {a['alert_id']}, detected "
                f"{day(a['detected_at'])}, {a['status']})."
            )
    for p in report["usage"]["pauses"]:
        out.append(
            f"{p['source'].capitalize()} {p['source_id']} records a pause "
            f"({day(p['recorded_at'])}); {p['records_after_finding']} studies were analysed "
            f"after the finding it answers ({day(p['finding_at'])})."
        )
    if not report["incidents"]:
        out.append("No incident was recorded for this deployment in the period.")
    high = [i for i in items if i["severity"] == "high"]
    if high:
        out.append(f"{len(high)} high open item(s) need action before the report is signed.")
    return out


def assess(report: dict[str, Any], as_of: date) -> None:
    """Add the assessment sections to ``report`` (in place)."""
    report["baseline_comparison"] = baseline_comparison(report["identity"], report["performance"])
    items = open_items(report, as_of)
    report["conclusions"] = {
        "findings": conclusions(report, items),
        "open_items": items,
        "benefit_risk": benefit_risk(report, items),
    }
    report["executive_summary"] = executive_summary(report, items)
    report["signature_block"] = signature_block(report)
