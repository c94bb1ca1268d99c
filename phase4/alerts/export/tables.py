"""The report's tables, flat: one list of rows per CSV file (and per PDF table)."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from phase4.monitor.store.audit import canonical_json

Table = tuple[list[str], list[dict[str, Any]]]


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
    usage_cols = ["month", "records", "errors", "error_rate", "latency_s_median"]
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
        "scope",
        "device_id",
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
    return {
        "usage": (usage_cols, report["usage"]["by_month"]),
        "population": (["dimension", "band", "records", "share"], population_rows),
        "performance": (perf_cols, perf_rows),
        "drift_findings": (drift_cols, report["drift_findings"]),
        "phantom_qc": (qc_cols, qc["summary"]),
        "phantom_devices": (
            ["device_id", "manufacturer", "model", "serial", "modality", "software_versions"],
            qc["devices"],
        ),
        "phantom_failures": (
            [
                "device_id",
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
        "incidents": (incident_cols, report["incidents"]),
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
