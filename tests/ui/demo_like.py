"""A store like the demo's, small enough for a test: 120 days of site B's FDG-PET studies from
the demo's own simulation (its reconstruction upgrade on day 70: noise down, SUVs up, a new
reconstruction value), the demo's AI answering, physicians' feedback, a canary alert of site B's
scanner, and site A's DICOM-listener-like deployment whose many streams still collect their
reference. The real drift engine analyses it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlmodel import Session, col, select

from phase4.demo.simulate import Change, LesionAI, default_sites, simulate_site
from phase4.monitor.core.statuses import AlertCause, Severity
from phase4.monitor.store.db import session_scope
from phase4.monitor.store.models import (
    Alert,
    Deployment,
    Device,
    Feedback,
    InferenceRecord,
)
from phase4.monitor.surveillance.detection import detect_all
from tests.conftest import Fixture

DAYS = 120
CHANGE_DAY = 70
REFERENCE_SIZE = 300
LISTENER_STREAMS = 30
LISTENER_RECORDS = 40
FEATURES = (
    "scanner_model",
    "software_version",
    "reconstruction",
    "radiopharmaceutical",
    "injected_activity_mbq",
    "uptake_time_s",
    "weight_kg",
)


@dataclass
class DemoLike:
    drifting: str  # site B, reconstruction upgraded on CHANGE_DAY
    collecting: str  # site A, many streams collecting their reference
    change_at: datetime
    identifiers: list[str]


def _monitoring(reference_size: int) -> dict[str, Any]:
    return {
        "studies_per_day": 15,
        "false_alarms_per_year": 1.0,
        "reference_size": reference_size,
        "performance": {
            "prediction": "positive",
            "truth": "malignant",
            "dice": False,
            "reference_size": 60,
        },
    }


def load_demo_like(world: Fixture, now: datetime | None = None) -> DemoLike:
    now = now or datetime.now(UTC)
    start = (now - timedelta(days=DAYS)).date()
    rng = np.random.default_rng(17)
    ai = LesionAI(17)
    site = next(s for s in default_sites(15.0) if s.site_id == "site-b")
    upgrade = Change(
        site_id="site-b",
        start_day=CHANGE_DAY,
        kind="reconstruction upgrade",
        description="OSEM to BSREM",
        lesion_suv_factor=1.25,
        liver_suv_factor=1.03,
        noise_factor=0.80,
        mtv_factor=0.78,
        reconstruction="Q.Clear beta550",
    )
    identifiers: list[str] = []
    records: list[InferenceRecord] = []
    truths: list[bool] = []
    for study in simulate_site(site, [upgrade], start, DAYS, rng):
        if study.acquired_at > now:
            break
        features = {k: study.header[k] for k in FEATURES}
        features["liver_suvmean"] = study.image["liver_suvmean"]
        features["image_noise_cv"] = study.image["image_noise_cv"]
        records.append(
            InferenceRecord(
                record_id=uuid.uuid4().hex,
                deployment_id=world.deployment_b,
                study_pseudonym=uuid.uuid4().hex,
                acquired_at=study.acquired_at,
                inferred_at=study.acquired_at + timedelta(minutes=4),
                received_at=study.acquired_at + timedelta(minutes=5),
                features=features,
                outputs=ai(study),
            )
        )
        truths.append(study.malignant)
    listener = [
        InferenceRecord(
            record_id=uuid.uuid4().hex,
            deployment_id=world.deployment_a,
            study_pseudonym=uuid.uuid4().hex,
            acquired_at=now - timedelta(days=3 * (LISTENER_RECORDS - i)),
            inferred_at=now - timedelta(days=3 * (LISTENER_RECORDS - i)),
            received_at=now - timedelta(days=3 * (LISTENER_RECORDS - i)),
            features={
                **{f"suv_p{k:02d}": float(rng.normal(2 + k / 20, 0.2)) for k in range(20)},
                **{f"flag_{k}": bool(rng.random() < 0.05) for k in range(LISTENER_STREAMS - 20)},
            },
            outputs={"output_present": True},
        )
        for i in range(LISTENER_RECORDS)
    ]
    with session_scope(world.engine) as s:
        for dep_id, size in ((world.deployment_b, REFERENCE_SIZE), (world.deployment_a, 500)):
            dep = s.get(Deployment, dep_id)
            assert dep is not None
            dep.monitoring = _monitoring(size)
            s.add(dep)
        s.add_all(records + listener)
        s.flush()
        for r, malignant in zip(records, truths, strict=True):
            identifiers += [r.record_id, r.study_pseudonym or ""]
            if rng.random() >= 0.3:
                continue
            given = r.acquired_at + timedelta(days=int(rng.integers(3, 20)))
            if given > now:
                continue
            fb = Feedback(
                feedback_id=uuid.uuid4().hex,
                record_id=r.record_id,
                verdict="accepted",
                ground_truth={"malignant": malignant},
                given_at=given,
            )
            identifiers.append(fb.feedback_id)
            s.add(fb)
        scanner = Device(
            site_id="site-b", manufacturer="GE MEDICAL SYSTEMS", model="Discovery MI", serial="B7"
        )
        s.add(scanner)
        s.flush()
        change_at = datetime(start.year, start.month, start.day, tzinfo=UTC) + timedelta(
            days=CHANGE_DAY
        )
        canary = change_at + timedelta(days=3, hours=7)
        s.add(
            Alert(
                device_id=scanner.id,
                stream="canary.nema-iq",
                cause=AlertCause.AI_CANARY,
                severity=Severity.CRITICAL,
                title="The AI's answer on the unchanged nema-iq phantom changed",
                evidence={"timestamp": canary.isoformat(), "change_timestamp": canary.isoformat()},
                opened_at=canary,
            )
        )
    detect_all(world.engine)
    return DemoLike(world.deployment_b, world.deployment_a, change_at, identifiers)


def stream_alerts(session: Session, deployment: str, stream: str) -> list[Alert]:
    return list(
        session.exec(
            select(Alert)
            .where(Alert.deployment_id == deployment, Alert.stream == stream)
            .order_by(col(Alert.id))
        )
    )
