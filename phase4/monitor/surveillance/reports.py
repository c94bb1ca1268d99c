"""evidently data-drift reports for alerts: the window around a change against the reference.

For each drift or performance alert without one, the records from the estimated start of the
change to the alarm (at least ``MIN_WINDOW``, extended back if the change was sudden) are
compared with the deployment's reference records (the first ``reference_size`` after
acceptance), over every monitored record field. evidently's own per-column tests are used as
they are (its p < 0.05 per column is a description, not phase4's alarm: phase4's detectors,
calibrated to the budget, already decided that something changed).

evidently is imported only here, and only when a report is built (it takes seconds to import).
"""

from __future__ import annotations

import gzip
import tempfile
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from phase4.monitor.core.statuses import AlertCause
from phase4.monitor.drift.streams import MonitorConfig, read_field
from phase4.monitor.store.models import (
    Alert,
    Deployment,
    DetectorState,
    DriftReport,
    InferenceRecord,
)

MIN_WINDOW = 100
REPORTED_CAUSES = (AlertCause.DRIFT, AlertCause.PERFORMANCE)


def build_drift_report(reference: Any, current: Any) -> tuple[dict[str, Any], bytes]:
    """Run evidently's DataDriftPreset; return its summary and the gzipped HTML."""
    import numpy as np
    from evidently import Report
    from evidently.presets import DataDriftPreset

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        snapshot = Report([DataDriftPreset()]).run(current, reference)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "report.html"
            snapshot.save_html(str(path))
            html = path.read_bytes()
    metrics = snapshot.dict()["metrics"]
    summary: dict[str, Any] = {"columns": {}}
    for m in metrics:
        name = str(m.get("metric_name", ""))
        value = m.get("value")
        if name.startswith("DriftedColumnsCount"):
            summary["drifted_columns"] = value
        elif name.startswith("ValueDrift(column="):
            column = name.split("column=", 1)[1].split(",", 1)[0]
            method = name.split("method=", 1)[1].split(",", 1)[0] if "method=" in name else ""
            summary["columns"][column] = {"method": method, "value": value}
    return summary, gzip.compress(html, compresslevel=6)


def _frame(records: list[InferenceRecord], fields: list[str]) -> Any:
    import pandas as pd

    rows = []
    for r in records:
        view = {
            "features": r.features,
            "outputs": r.outputs,
            "latency_s": r.latency_s,
            "inference_error": r.error is not None,
        }
        rows.append({f: read_field(view, f) for f in fields})
    return pd.DataFrame(rows, columns=fields)


def _without_report() -> Any:
    return select(Alert).where(
        col(Alert.cause).in_(REPORTED_CAUSES),
        col(Alert.deployment_id).is_not(None),
        ~sa.exists().where(DriftReport.alert_id == Alert.id),
    )


def reports_pending(engine: Engine) -> bool:
    """Whether any drift or performance alert still lacks its report (one indexed query, no
    evidently): the service asks this before it starts a process to build them."""
    with Session(engine) as session:
        return session.exec(_without_report().limit(1)).first() is not None


def attach_reports_at(database_url: str) -> int:
    """``attach_reports`` on a store of its own: the entry point of the process the service
    builds reports in, so that evidently (seconds of import, hundreds of MB, CPU-bound pandas)
    never runs in the process that answers the probes."""
    from phase4.monitor.store.db import create_db_engine

    engine = create_db_engine(database_url)
    try:
        return attach_reports(engine)
    finally:
        engine.dispose()


def attach_reports(engine: Engine, *, deployment_id: str | None = None) -> int:
    """Build a report for every drift or performance alert that has none; returns how many."""
    made = 0
    with Session(engine, expire_on_commit=False) as session:
        q = _without_report()
        if deployment_id:
            q = q.where(Alert.deployment_id == deployment_id)
        for alert in session.exec(q.order_by(col(Alert.id))).all():
            if _attach(session, alert):
                made += 1
                session.commit()
    return made


def _attach(session: Session, alert: Alert) -> bool:
    deployment = session.get(Deployment, alert.deployment_id)
    state = session.exec(
        select(DetectorState).where(DetectorState.deployment_id == alert.deployment_id)
    ).first()
    if deployment is None or state is None:
        return False
    config = MonitorConfig.from_dict(state.state["config"])
    fields = [s.field for s in config.streams if s.source == "record"]
    base = select(InferenceRecord).where(InferenceRecord.deployment_id == deployment.id)
    if deployment.accepted_at is not None:
        base = base.where(col(InferenceRecord.acquired_at) >= deployment.accepted_at)
    order = (col(InferenceRecord.acquired_at), col(InferenceRecord.id))
    reference = list(session.exec(base.order_by(*order).limit(config.reference_size)))
    alarm_at = datetime.fromisoformat(alert.evidence["timestamp"])
    start = datetime.fromisoformat(
        alert.evidence.get("change_timestamp") or alert.evidence["timestamp"]
    )
    window = list(
        session.exec(
            base.where(col(InferenceRecord.acquired_at) >= start)
            .where(col(InferenceRecord.acquired_at) <= alarm_at)
            .order_by(*order)
        )
    )
    if len(window) < MIN_WINDOW:
        window = list(
            reversed(
                session.exec(
                    base.where(col(InferenceRecord.acquired_at) <= alarm_at)
                    .order_by(*(c.desc() for c in order))
                    .limit(MIN_WINDOW)
                ).all()
            )
        )
    if len(reference) < 30 or len(window) < 30:
        return False
    summary, html = build_drift_report(_frame(reference, fields), _frame(window, fields))
    session.add(
        DriftReport(
            alert_id=alert.id or 0,
            reference_rows=len(reference),
            current_rows=len(window),
            summary=summary,
            html_gzip=html,
        )
    )
    evidence = dict(alert.evidence)
    evidence["report"] = {
        "drifted_columns": summary.get("drifted_columns"),
        "window": [window[0].acquired_at.isoformat(), window[-1].acquired_at.isoformat()],
        "reference_rows": len(reference),
        "current_rows": len(window),
        "path": f"/v1/alerts/{alert.id}/report",
    }
    alert.evidence = evidence
    session.add(alert)
    return True


def report_html(engine: Engine, alert_id: int) -> bytes | None:
    with Session(engine) as session:
        row = session.exec(select(DriftReport).where(DriftReport.alert_id == alert_id)).first()
        return gzip.decompress(row.html_gzip) if row else None
