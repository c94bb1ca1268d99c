"""The report's tables, flat: one list of rows per CSV file (and per PDF table)."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from phase4.alerts.export.changes import CHANGE_COLUMNS
from phase4.monitor.store.audit import canonical_json

Table = tuple[list[str], list[dict[str, Any]]]


_CI_SUFFIXES = ("", "_ci_low", "_ci_high", "_n")


def _ci(block: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {
        f"{prefix}": block.get("value", block.get("mean")),
        f"{prefix}_ci_low": block.get("ci_low"),
        f"{prefix}_ci_high": block.get("ci_high"),
        f"{prefix}_n": block.get("n"),
    }


def _performance_row(label: str, block: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"month": label, "feedback": block["feedback"], **block["confusion"]}
    for name in ("sensitivity", "specificity", "ppv", "npv"):
        row.update(_ci(block[name], name))
    row.update(_ci(block["dice"], "dice_mean"))
    return row


def tables(report: Mapping[str, Any]) -> dict[str, Table]:
    """File stem -> (columns, rows). Nested values are written as canonical JSON."""
    usage_cols = [
        "month",
        "records",
        "errors",
        "error_rate",
        "latency_s_median",
        "latency_ms_median",
    ]
    population_rows = [
        {"dimension": dim, **row}
        for dim, rows in report["population"]["dimensions"].items()
        for row in rows
    ]
    perf = report["performance"]
    perf_rows = [_performance_row("all", perf["overall"])] + [
        _performance_row(m["month"], m) for m in perf["by_month"]
    ]
    perf_cols = list(perf_rows[0])
    drift_cols = [
        "alert_id",
        # world times and the size first; when phase4 processed it (opened_at) is for the audit
        "change_began",
        "detected",
        "delay_days",
        "headline",
        "quantity",
        "size",
        "size_value",
        "size_ci95_low",
        "size_ci95_high",
        "size_unit",
        "n_before",
        "n_after",
        "stream",
        "cause",
        "severity",
        "title",
        "detector",
        "direction",
        "alarm_at",
        "estimated_change_at",
        "headline",
        "change_start",
        "detected_at",
        "change_size",
        "statistic",
        "threshold",
        "repeats",
        "status",
        "linked",
        "opened_at",
    ]
    alert_cols = [
        "alert_id",
        "opened_at",
        "detected_at",
        "scope",
        "device_id",
        "device_name",
        "stream",
        "cause",
        "severity",
        "title",
        "status",
        "acknowledged_by",
        "acknowledged_at",
        "acknowledgement",
        "resolved_by",
        "resolved_at",
        "resolution",
        "escalated_at",
        "notifications_ok",
        "notifications_failed",
    ]
    incident_cols = [
        "incident_id",
        "title",
        "description",
        "seriousness",
        "remedial_action_needed",
        "aware_at",
        "alert_id",
        "created_by",
        "created_at",
        "corrective_action",
        "closed_at",
        "reports",
        "clock_error",
        "unknown_report_keys",
    ]
    clock_cols = [
        "incident_id",
        "regime",
        "regime_title",
        "rule",
        "aware_on",
        "deadline_days",
        "deadline_kind",
        "due",
        "reported_on",
        "status",
        "days_left",
        "days_overdue",
        "summary",
    ]
    clock_rows = [
        {"incident_id": inc["incident_id"], **c}
        for inc in report["incidents"]
        for c in inc["clocks"]
    ]
    qc = report["phantom_qc"]
    qc_cols = [
        "device_id",
        "device_name",
        "kind",
        "results",
        "pass",
        "outside_tolerance",
        "outside_action",
        "no_verdict",
        "reviewed",
        "first_acquired_at",
        "last_acquired_at",
    ]
    outlook = report.get("reference_outlook") or {}
    outlook_cols = [
        "stream",
        "values_held",
        "reference_size",
        "values_needed",
        "values_per_record",
        "eta_days",
        "completes_within_horizon",
        "horizon_days",
        "records_per_day",
        "rate_window_days",
        "as_of",
    ]
    outlook_rows = [
        {
            **row,
            "horizon_days": outlook.get("horizon_days"),
            "records_per_day": outlook.get("records_per_day"),
            "rate_window_days": outlook.get("rate_window_days"),
            "as_of": outlook.get("as_of"),
        }
        for row in outlook.get("streams", [])
    ]
    history = report["model_history"]
    version_cols = [
        "model_id",
        "name",
        "version",
        "manufacturer",
        "udi",
        "created_at",
        "this_deployment",
        "deployments_at_site",
    ]
    audit_cols = [
        "seq",
        "at",
        "actor",
        "action",
        "entity_type",
        "entity_id",
        "reason",
        "old_value",
        "new_value",
        "prev_hash",
        "entry_hash",
    ]
    subgroup_rows = [
        {
            "dimension": dim,
            "band": row["band"],
            "share_of_studies": row.get("share_of_studies"),
            "feedback": row["feedback"],
            **row["confusion"],
            **_ci(row["sensitivity"], "sensitivity"),
            **_ci(row["specificity"], "specificity"),
            **_ci(row["ppv"], "ppv"),
            **_ci(row.get("gap_sensitivity") or {}, "gap_sensitivity"),
            **_ci(row.get("gap_specificity") or {}, "gap_specificity"),
        }
        for dim, rows in report["subgroups"]["dimensions"].items()
        for row in rows
    ]
    subgroup_cols = [
        "dimension",
        "band",
        "share_of_studies",
        "feedback",
        "tp",
        "fp",
        "tn",
        "fn",
        *(f"{m}{s}" for m in ("sensitivity", "specificity", "ppv") for s in _CI_SUFFIXES),
        *(f"gap_{m}{s}" for m in ("sensitivity", "specificity") for s in _CI_SUFFIXES),
    ]
    disparity_cols = [
        "alert_id",
        "dimension",
        "band",
        "metric",
        "gap",
        "gap_ci_low",
        "gap_ci_high",
        "margin",
        "since",
        "detected",
        "status",
        "headline",
    ]
    comparison = report["baseline_comparison"]
    baseline_rows = [
        {
            "metric": row["metric"],
            **_ci(row["baseline"] or {}, "validated"),
            **_ci(row["observed"], "observed"),
            "difference": row["difference"],
            "margin": comparison["margin"],
            "verdict": row["verdict"],
            "months_below": row["months_below"],
            "source": comparison["source"],
        }
        for row in comparison["metrics"]
    ]
    baseline_cols = [
        *(f"{p}{s}" for p in ("validated", "observed") for s in _CI_SUFFIXES),
        "difference",
        "margin",
        "verdict",
        "months_below",
        "source",
    ]
    identity = report["identity"]
    identity_rows = [
        {"field": key, "value": identity.get(key)}
        for key in (
            "manufacturer",
            "device_name",
            "model_version",
            "basic_udi_di",
            "mdr_class",
            "classification_rule",
            "ai_act_high_risk",
            "notified_body",
            "intended_use",
            "pms_plan",
            "psur_every_months",
            "validated_baseline",
            "updated_by",
            "updated_at",
            "missing",
        )
    ] + [{"field": f"acceptance.{k}", "value": v} for k, v in report["acceptance"].items()]
    episode_rows = [
        {"device_id": d["device_id"], "scanner": d["scanner"], **(d["episode"] or {})}
        for d in qc["by_device"]
        if d["episode"]
    ]
    episode_cols = [
        "device_id",
        "scanner",
        "kind",
        "metric",
        "from",
        "to",
        "days",
        "results",
        "failures",
        "failure_share",
        "mean_value",
        "reference",
        "reference_kind",
        "deviation",
        "sustained",
    ]
    return {
        "identity": (["field", "value"], identity_rows),
        "baseline_comparison": (["metric", *baseline_cols], baseline_rows),
        "subgroups": (subgroup_cols, subgroup_rows),
        "subgroup_disparity": (disparity_cols, report["subgroups"].get("disparity", [])),
        "phantom_episodes": (episode_cols, episode_rows),
        "open_items": (
            ["number", "severity", "section", "code", "text"],
            report["conclusions"]["open_items"],
        ),
        "usage": (usage_cols, report["usage"]["by_month"]),
        "population": (["dimension", "band", "records", "share"], population_rows),
        "performance": (perf_cols, perf_rows),
        "drift_findings": (drift_cols, report["drift_findings"]),
        "phantom_qc": (qc_cols, qc["summary"]),
        "phantom_devices": (
            [
                "device_id",
                "name",
                "manufacturer",
                "model",
                "serial",
                "modality",
                "software_versions",
            ],
            qc["devices"],
        ),
        "phantom_failures": (
            [
                "device_id",
                "device_name",
                "kind",
                "acquired_at",
                "level",
                "metrics",
                "reviewed_by",
                "reviewed_at",
                "review_note",
            ],
            qc["failures"],
        ),
        "alerts": (alert_cols, report["alerts"]),
        "reference_outlook": (outlook_cols, outlook_rows),
        "incidents": (incident_cols, report["incidents"]),
        "substantial_changes": (CHANGE_COLUMNS, report.get("substantial_changes", [])),
        "incident_clocks": (clock_cols, clock_rows),
        "corrective_actions": (
            ["source", "source_id", "at", "by", "action"],
            report["corrective_actions"],
        ),
        "model_versions": (version_cols, history["versions"]),
        "model_changes": (audit_cols, history["changes"]),
        "audit": (audit_cols, report["audit"]["entries"]),
    }


def cell(value: Any) -> str:
    """One CSV/PDF cell: empty for None, true/false, JSON for lists and dicts."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back as the same number
    if isinstance(value, Mapping | list | tuple):
        return canonical_json(value)
    return str(value)


def write_csv(path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([cell(row.get(c)) for c in columns])
