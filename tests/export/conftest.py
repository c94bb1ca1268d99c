"""A deployment with a known history for export tests: records, feedback, alerts, phantom QC,
incidents. Runs on SQLite and PostgreSQL through the ``world`` fixture."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest

from phase4.monitor.domain.registry import ensure_device
from phase4.monitor.store.audit import record_action
from phase4.monitor.store.db import session_scope
from phase4.monitor.store.models import (
    Alert,
    Feedback,
    Incident,
    InferenceRecord,
    PhantomResult,
    utcnow,
)
from tests.conftest import Fixture

AUDIT_KEY = b"export-test-key-0123456789abcdef"
PSEUDONYM_PREFIX = "pseud0nym-"
RECORD_PREFIX = "rec0rd-"


@dataclass
class ExportWorld:
    fx: Fixture
    deployment: str
    start: date
    end: date
    as_of: date
    records_in_period: int
    drift_alert_id: int
    device_id: int


def _at(day: date, hour: int = 10) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def build_export_world(fx: Fixture) -> ExportWorld:
    today = datetime.now(UTC).date()
    start, end = today - timedelta(days=40), today
    dep = fx.deployment_a
    n = 0
    # 40 records of deployment A in the period with a known confusion matrix:
    # i % 4 == 0: TP, 1: FP, 2: TN, 3: FN (10 each); Dice on TPs.
    with session_scope(fx.engine) as s:
        device = ensure_device(
            s,
            site_id="site-a",
            manufacturer="Siemens",
            model="Biograph Vision",
            serial="PET-001",
            actor="physicist:ada",
        )
        device_id = device.id or 0
        for i in range(40):
            positive = i % 4 in (0, 1)
            malignant = i % 4 in (0, 3)
            rid = f"{RECORD_PREFIX}{i:04d}"
            s.add(
                InferenceRecord(
                    record_id=rid,
                    deployment_id=dep,
                    study_pseudonym=f"{PSEUDONYM_PREFIX}{i:04d}",
                    acquired_at=_at(start + timedelta(days=i)),
                    inferred_at=_at(start + timedelta(days=i), 11),
                    features={
                        "patient_sex": "F" if i % 2 else "M",
                        "patient_age_y": 30 + i,
                        "weight_kg": 55.0 + i,
                        "liver_suvmean": 2.1,
                    },
                    outputs={"positive": positive, "malignancy_score": 0.8 if positive else 0.2},
                    latency_s=1.0 + i / 10,
                    error="timeout" if i == 5 else None,
                )
            )
            n += 1
            s.flush()
            s.add(
                Feedback(
                    feedback_id=f"fb-{i:04d}",
                    record_id=rid,
                    verdict="accepted" if positive == malignant else "rejected",
                    ground_truth={"malignant": malignant},
                    dice=0.8 if i % 4 == 0 else None,
                    given_at=_at(start + timedelta(days=i), 15),
                )
            )
        # Outside the period, and another deployment: neither may be counted.
        s.add(
            InferenceRecord(
                record_id=f"{RECORD_PREFIX}old",
                deployment_id=dep,
                study_pseudonym=f"{PSEUDONYM_PREFIX}old",
                acquired_at=_at(start - timedelta(days=3)),
                inferred_at=_at(start - timedelta(days=3)),
                features={"patient_sex": "M"},
                outputs={"positive": True},
            )
        )
        s.add(
            InferenceRecord(
                record_id=f"{RECORD_PREFIX}b",
                deployment_id=fx.deployment_b,
                study_pseudonym=f"{PSEUDONYM_PREFIX}b",
                acquired_at=_at(start + timedelta(days=2)),
                inferred_at=_at(start + timedelta(days=2)),
                features={"patient_sex": "M"},
                outputs={"positive": True},
            )
        )
        noise = Alert(
            deployment_id=dep,
            stream="features.image_noise_cv",
            cause="drift",
            severity="warning",
            title="features.image_noise_cv fell (detected by cusum)",
            evidence={
                "detector": "cusum",
                "direction": "down",
                "timestamp": _at(start + timedelta(days=12)).isoformat(),
                "change_timestamp": _at(start + timedelta(days=9)).isoformat(),
                "statistic": 9.1,
                "threshold": 5.2,
                "linked": [],
            },
            opened_at=_at(start + timedelta(days=12)),
        )
        s.add(noise)
        s.flush()
        drift = Alert(
            deployment_id=dep,
            stream="features.liver_suvmean",
            cause="drift",
            severity="warning",
            title="features.liver_suvmean rose (detected by ewma)",
            evidence={
                "detector": "ewma",
                "direction": "up",
                "timestamp": _at(start + timedelta(days=12)).isoformat(),
                "change_timestamp": _at(start + timedelta(days=10)).isoformat(),
                "statistic": 3.3,
                "threshold": 2.9,
                "repeats": 2,
                "linked": [
                    {
                        "what": noise.title,
                        "at": _at(start + timedelta(days=9)).isoformat(),
                        "alert_id": noise.id,
                        "stream": noise.stream,
                        "cause": "drift",
                    }
                ],
            },
            opened_at=_at(start + timedelta(days=12)),
        )
        s.add(drift)
        s.add(
            Alert(
                device_id=device_id,
                stream="phantom.flood.iu",
                cause="qc",
                severity="critical",
                title="Flood uniformity outside action level",
                evidence={},
                opened_at=_at(start + timedelta(days=20)),
            )
        )
        # An alert of deployment B: not in A's export.
        s.add(
            Alert(
                deployment_id=fx.deployment_b,
                stream="features.x",
                cause="drift",
                severity="warning",
                title="B only",
                evidence={},
                opened_at=_at(start + timedelta(days=5)),
            )
        )
        s.flush()
        drift_id = drift.id or 0
        for k, verdicts in enumerate(
            [{"iu": "pass"}, {"iu": "pass", "du": "pass"}, {"iu": "action", "du": "pass"}]
        ):
            s.add(
                PhantomResult(
                    result_id=f"qc-{k}",
                    device_id=device_id,
                    kind="flood",
                    acquired_at=_at(start + timedelta(days=18 + k)),
                    metrics={"iu": 3.0 + k},
                    verdicts=verdicts,
                    reviewed_by="physicist:ada" if k == 2 else None,
                    reviewed_at=_at(start + timedelta(days=21)) if k == 2 else None,
                )
            )
        s.add(
            Incident(
                deployment_id=dep,
                alert_id=drift_id,
                title="Missed lesion after reconstruction change",
                description="A lesion was missed after the vendor changed the reconstruction.",
                seriousness="serious_harm",
                remedial_action_needed=True,
                aware_at=_at(start + timedelta(days=14)),
                created_by="dr-curie",
                reports={"eu_ai_act": (start + timedelta(days=20)).isoformat()},
                corrective_action="Reconstruction reverted; AI revalidated on 50 studies.",
            )
        )
    with session_scope(fx.engine) as s:  # acknowledged and resolved by a named person, audited
        alert = s.get(Alert, drift_id)
        assert alert is not None
        alert.status, alert.acknowledged_by, alert.acknowledged_at = (
            "resolved",
            "dr-curie",
            utcnow(),
        )
        alert.acknowledgement = "Checking the reconstruction"
        alert.resolved_by, alert.resolved_at = "dr-curie", utcnow()
        alert.resolution = "Reconstruction reverted by the vendor"
        s.add(alert)
        record_action(
            s,
            actor="dr-curie",
            action="alert.resolve",
            entity_type="alert",
            entity_id=str(drift_id),
            reason=alert.resolution,
            old_value={"status": "open"},
            new_value={"status": "resolved"},
        )
    return ExportWorld(
        fx=fx,
        deployment=dep,
        start=start,
        end=end,
        as_of=end,
        records_in_period=n,
        drift_alert_id=drift_id,
        device_id=device_id,
    )


@pytest.fixture
def export_world(world: Fixture) -> ExportWorld:
    return build_export_world(world)


# --- the surveillance report's own world: identity, a pause, a sustained phantom finding ----

IDENTITY = {
    "manufacturer": "Example Medical AI B.V.",
    "device_name": "PETLesionDetect",
    "basic_udi_di": "TEST-BUDI-PLD-2",
    "mdr_class": "IIb",
    "classification_rule": "Annex VIII Rule 11",
    "ai_act_high_risk": True,
    "notified_body": {"name": "Test Notified Body", "number": "0123"},
    "intended_use": "Detection of FDG-avid lesions in whole-body PET/CT",
    "pms_plan": {"document_id": "PMS-PLAN-TEST", "version": "2.1"},
    "validated_baseline": {
        "sensitivity": {"value": 0.9, "n": 200},
        "specificity": {"value": 0.6, "n": 250},
        "ppv": {"value": 0.55, "n": 180},
        "source": "Clinical evaluation report CER-TEST sect. 6",
        "margin": 0.05,
    },
    "clinical_acceptance": {"accepted_on": "2025-01-15", "accepted_by": "dr-curie, physicist"},
}
PAUSE_TEXT = "Vendor informed; AI paused pending revalidation."


@dataclass
class PsurWorld(ExportWorld):
    pause_alert_id: int = 0
    episode_from: date | None = None


def build_psur_world(fx: Fixture) -> PsurWorld:
    """The export world plus: a device identity with a validated baseline (the observed
    sensitivity, 50 %, falls below its 90 %), an alert resolved with "AI paused" while records
    went on arriving, and 16 days of cylinder results outside tolerance (8 % low) with no
    incident recorded after them."""
    from phase4.monitor.domain.device_identity import set_device_identity
    from phase4.monitor.store.models import PhantomTolerance

    w = build_export_world(fx)
    with session_scope(fx.engine) as s:
        set_device_identity(s, w.deployment, IDENTITY, actor="qa:grace", reason="from the IFU")
        s.add(
            PhantomTolerance(
                kind="cylinder",
                metric="recovery_ratio",
                version=1,
                lower_action=0.9,
                lower_tolerance=0.95,
                upper_tolerance=1.05,
                upper_action=1.1,
                unit="measured/expected",
                created_by="physicist:ada",
            )
        )
        episode_from = w.start + timedelta(days=24)
        for k in range(16):
            failing = k != 7  # one pass inside the episode: it ends the run, not the episode
            value = 0.99 if not failing else 0.92
            s.add(
                PhantomResult(
                    result_id=f"cyl-{k}",
                    device_id=w.device_id,
                    kind="cylinder",
                    acquired_at=_at(episode_from + timedelta(days=k), 7),
                    metrics={"recovery_ratio": value},
                    verdicts={
                        "recovery_ratio": {
                            "verdict": "tolerance" if failing else "pass",
                            "value": value,
                        }
                    },
                )
            )
        pause = Alert(
            deployment_id=w.deployment,
            stream="outputs.malignancy_score",
            cause="drift",
            severity="warning",
            title="outputs.malignancy_score rose (detected by cusum)",
            evidence={
                "detector": "cusum",
                "direction": "up",
                "timestamp": _at(w.start + timedelta(days=16)).isoformat(),
                "change_timestamp": _at(w.start + timedelta(days=15)).isoformat(),
                "statistic": 9.0,
                "threshold": 5.0,
            },
            opened_at=_at(w.start + timedelta(days=16)),
            status="resolved",
            resolved_by="dr-curie",
            resolved_at=utcnow(),
            resolution=PAUSE_TEXT,
        )
        s.add(pause)
        s.flush()
        pause_id = pause.id or 0
    return PsurWorld(
        **{f: getattr(w, f) for f in w.__dataclass_fields__},
        pause_alert_id=pause_id,
        episode_from=episode_from,
    )


@pytest.fixture
def psur_world(world: Fixture) -> PsurWorld:
    return build_psur_world(world)
