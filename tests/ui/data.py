"""Data for the dashboard tests: three deployments in three states, a drift the real engine
detects (with labelled feedback), notification attempts, and a scanner's phantom QC history
with versioned tolerances, a failure and sign-offs."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from phase4.monitor.domain.registry import create_deployment
from phase4.monitor.store.db import session_scope
from phase4.monitor.store.models import (
    Alert,
    Deployment,
    Device,
    Feedback,
    InferenceRecord,
    NotificationAttempt,
    PhantomResult,
    PhantomTolerance,
)
from phase4.monitor.surveillance.detection import detect_all
from tests.conftest import Fixture

MONITORING: dict[str, Any] = {
    "studies_per_day": 20,
    "false_alarms_per_year": 1,
    "reference_size": 100,
    "performance": {
        "prediction": "positive",
        "truth": "malignant",
        "dice": False,
        "reference_size": 40,
    },
}
SILENT = "lesion-ai-v1@site-a"


@dataclass
class UiData:
    drifting: str
    collecting: str
    silent: str
    device_id: int
    other_site_device_id: int
    drift_alert: int
    device_alert: int
    identifiers: list[str] = field(default_factory=list)  # must never appear on a page


def _record(
    g: np.random.Generator, deployment: str, acquired: datetime, changed: bool
) -> InferenceRecord:
    liver = float(g.normal(2.2, 0.2)) * (1.25 if changed else 1.0)
    score = float(1 / (1 + np.exp(-(g.normal(0, 1) + (1.2 if changed else 0.0)))))
    return InferenceRecord(
        record_id=uuid.uuid4().hex,
        deployment_id=deployment,
        study_pseudonym=uuid.uuid4().hex + uuid.uuid4().hex,
        acquired_at=acquired,
        inferred_at=acquired + timedelta(minutes=5),
        received_at=acquired + timedelta(minutes=10),
        features={"liver_suvmean": round(liver, 3), "scanner": "Biograph Vision"},
        outputs={"malignancy_score": round(score, 4), "positive": score >= 0.5},
        latency_s=float(g.lognormal(-0.5, 0.3)),
        error="RuntimeError" if g.random() < 0.03 else None,
    )


def _configure(session: Session, deployment: str) -> None:
    dep = session.get(Deployment, deployment)
    assert dep is not None
    dep.monitoring = MONITORING
    session.add(dep)


def load(world: Fixture, now: datetime | None = None) -> UiData:
    now = now or datetime.now(UTC)
    engine = world.engine
    g = np.random.default_rng(11)
    identifiers: list[str] = []
    with session_scope(engine) as s:
        create_deployment(
            s,
            deployment_id=SILENT,
            site_id="site-a",
            model_name="PETLesionDetect",
            model_version="1.0.0",
            actor="test",
        )
        for dep in (world.deployment_a, world.deployment_b, SILENT):
            _configure(s, dep)
        # Site B drifts: 360 studies over 18 days, SUVs 25% high from study 250 on.
        n = 360
        records = [
            _record(g, world.deployment_b, now - timedelta(hours=1.2 * (n - i)), i >= 250)
            for i in range(n)
        ]
        # Site A is still collecting its reference; the old version went silent 5 days ago.
        records += [
            _record(g, world.deployment_a, now - timedelta(hours=2 * (40 - i)), False)
            for i in range(40)
        ]
        records += [
            _record(g, SILENT, now - timedelta(days=5, hours=3 * (30 - i)), False)
            for i in range(30)
        ]
        s.add_all(records)
        for r in records:
            identifiers += [r.record_id, r.study_pseudonym or ""]
        s.flush()
        for r in records[:n]:
            if r.error is not None or g.random() < 0.3:
                continue
            malignant = bool(g.random() < r.outputs["malignancy_score"])
            fb = Feedback(
                feedback_id=uuid.uuid4().hex,
                record_id=r.record_id,
                verdict="accepted" if malignant == r.outputs["positive"] else "rejected",
                ground_truth={"malignant": malignant},
                given_at=r.acquired_at + timedelta(hours=6),
            )
            identifiers.append(fb.feedback_id)
            s.add(fb)
    detect_all(engine)
    with session_scope(engine) as s:
        drift = s.exec(
            select(Alert)
            .where(
                Alert.deployment_id == world.deployment_b, Alert.stream == "features.liver_suvmean"
            )
            .order_by(col(Alert.id))
        ).first()
        assert drift is not None and drift.id is not None, "the engine should detect the drift"
        for attempt, ok in ((1, False), (2, True)):
            s.add(
                NotificationAttempt(
                    alert_id=drift.id,
                    channel="email",
                    recipient="physics@site-b.example",
                    attempt=attempt,
                    ok=ok,
                    detail=None if ok else "SMTP timeout",
                    at=drift.opened_at + timedelta(minutes=attempt),
                )
            )
        device_id, other_id, device_alert = _phantoms(s, now, identifiers)
        drift_id = drift.id
    return UiData(
        drifting=world.deployment_b,
        collecting=world.deployment_a,
        silent=SILENT,
        device_id=device_id,
        other_site_device_id=other_id,
        drift_alert=drift_id,
        device_alert=device_alert,
        identifiers=[i for i in identifiers if i],
    )


def _phantoms(s: Session, now: datetime, identifiers: list[str]) -> tuple[int, int, int]:
    g = np.random.default_rng(5)
    device = Device(site_id="site-b", manufacturer="GE", model="Discovery MI", serial="B1")
    other = Device(site_id="site-a", manufacturer="SIEMENS", model="Symbia Intevo", serial="A1")
    s.add_all([device, other])
    s.flush()
    assert device.id is not None and other.id is not None
    # v1 default, v2 device-specific (in force): the charts must draw v2.
    s.add(
        PhantomTolerance(
            kind="flood",
            metric="integral_uniformity_ufov_pct",
            version=1,
            upper_tolerance=5.0,
            upper_action=6.0,
            unit="%",
            created_by="physicist",
        )
    )
    s.add(
        PhantomTolerance(
            device_id=device.id,
            kind="flood",
            metric="integral_uniformity_ufov_pct",
            version=2,
            lower_action=0.0,
            upper_tolerance=4.0,
            upper_action=5.0,
            unit="%",
            created_by="physicist",
        )
    )
    s.add(
        PhantomTolerance(
            kind="cylinder",
            metric="suv_mean_ratio",
            version=1,
            lower_action=0.90,
            lower_tolerance=0.95,
            upper_tolerance=1.05,
            upper_action=1.10,
            created_by="physicist",
        )
    )
    for dev in (device, other):
        for day in range(30):
            at = now - timedelta(days=29 - day, hours=3)
            v = 6.1 if (dev is device and day == 28) else round(float(g.normal(2.5, 0.4)), 3)
            verdict = "action" if v > 5.0 else "tolerance" if v > 4.0 else "pass"
            result = PhantomResult(
                result_id=uuid.uuid4().hex,
                device_id=dev.id or 0,
                kind="flood",
                acquired_at=at,
                metrics={"integral_uniformity_ufov_pct": v},
                verdicts={
                    "integral_uniformity_ufov_pct": {
                        "verdict": verdict,
                        "value": v,
                        "tolerance_version": 2,
                    }
                },
                tolerance_version=2,
                reviewed_by="physicist-b" if day < 25 else None,
                reviewed_at=at + timedelta(hours=2) if day < 25 else None,
            )
            identifiers.append(result.result_id)
            s.add(result)
            if day % 7 == 0:
                ratio = round(float(g.normal(1.0, 0.02)), 3)
                cyl = PhantomResult(
                    result_id=uuid.uuid4().hex,
                    device_id=dev.id or 0,
                    kind="cylinder",
                    acquired_at=at,
                    metrics={"suv_mean_ratio": ratio},
                    verdicts={"suv_mean_ratio": {"verdict": "pass", "value": ratio}},
                    tolerance_version=1,
                )
                identifiers.append(cyl.result_id)
                s.add(cyl)
    failing = now - timedelta(days=1, hours=3)
    alert = Alert(
        device_id=device.id,
        stream="phantom.flood.integral_uniformity_ufov_pct",
        cause="phantom_action",
        severity="critical",
        title="Phantom QC flood integral_uniformity_ufov_pct = 6.1 outside its action level",
        evidence={
            "detector": "action_level",
            "statistic": 6.1,
            "timestamp": failing.isoformat(),
            "change_timestamp": failing.isoformat(),
            "result_id": "phantom-result-should-not-show",
        },
        opened_at=failing + timedelta(minutes=30),
    )
    identifiers.append("phantom-result-should-not-show")
    s.add(alert)
    s.flush()
    assert alert.id is not None
    return device.id, other.id, alert.id


def open_alert_ids(engine: Engine) -> list[int]:
    with Session(engine) as s:
        return [a.id or 0 for a in s.exec(select(Alert).where(Alert.status == "open"))]
