"""Substantial changes in the post-market surveillance report: each revalidation of a new model
version (docs/REVALIDATION.md) as a change record: the versions, the pre-declared criteria,
the evidence and its SHA-256, the results table, the verdict, who decided what and when.

Why: a substantial modification calls for a new conformity assessment (EU AI Act Art. 3(23)
and 43(4)); a significant change of a device's design or intended purpose is reported under
MDR Annex IX §4.10 and kept in the PMS documentation (MDR Art. 83-86)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from phase4.monitor.store.models import Revalidation

CHANGE_COLUMNS = [
    "revalidation_id",
    "accepted_version",
    "candidate_version",
    "status",
    "opened_at",
    "opened_by",
    "criteria",
    "criteria_by",
    "criteria_at",
    "validation_sha256",
    "validation_cases",
    "shadow_studies",
    "verdict",
    "failed_criteria",
    "decision",
    "conditions",
    "decided_by",
    "decided_at",
    "results",
]


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def substantial_changes(
    session: Session, deployment_id: str, lo: datetime, hi: datetime
) -> list[dict[str, Any]]:
    """The deployment's revalidations opened before the period's end (``hi``) and not decided
    before its start (``lo``): an open one is reported until it is decided."""
    rows = session.exec(
        select(Revalidation)
        .where(
            Revalidation.deployment_id == deployment_id,
            col(Revalidation.opened_at) < hi,
        )
        .order_by(col(Revalidation.opened_at), col(Revalidation.id))
    )
    out = []
    for r in rows:
        if r.decided_at is not None and r.decided_at < lo:
            continue
        results = (r.results or {}).get("results", [])
        out.append(
            {
                "revalidation_id": r.id,
                "accepted_version": r.accepted_version,
                "candidate_version": r.candidate_version,
                "status": r.status,
                "opened_at": _iso(r.opened_at),
                "opened_by": r.opened_by,
                "criteria": (r.criteria or {}).get("margins"),
                "criteria_by": r.criteria_by,
                "criteria_at": _iso(r.criteria_at),
                "validation_sha256": r.validation_sha256,
                "validation_cases": len((r.validation_cases or {}).get("cases", [])),
                "shadow_studies": (r.shadow or {}).get("studies", 0),
                "verdict": r.verdict,
                "failed_criteria": [x["criterion"] for x in results if x["verdict"] != "pass"],
                "decision": r.decision,
                "conditions": r.conditions,
                "decided_by": r.decided_by,
                "decided_at": _iso(r.decided_at),
                "results": results,
            }
        )
    return out


def _ci(x: Mapping[str, float] | None) -> str:
    if x is None:
        return "-"
    return f"{x['estimate']:.3f} ({x['low']:.3f} to {x['high']:.3f})"


def result_rows(change: Mapping[str, Any]) -> list[list[Any]]:
    """One row per criterion: accepted, candidate, difference (95% CIs), margin, verdict."""
    return [
        [
            x["criterion"],
            x["n"],
            _ci(x["accepted"]),
            _ci(x["candidate"]),
            _ci(x["difference"]),
            x["margin"],
            x["verdict"],
        ]
        for x in change["results"]
    ]
