"""Demo-like data for the exporter and dashboard tests: two deployments fed through the real
probe (so its health reports reach the monitor), physicians' verdicts, a drift the real engine
detects, and phantom QC results of three scanners (one failing its action level)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from sqlalchemy.engine import Engine
from sqlmodel import Session

from phase4.monitor.store.db import session_scope
from phase4.monitor.store.models import Deployment, Device, PhantomResult, PhantomTolerance
from phase4.monitor.surveillance.detection import detect_all
from phase4.probes import Probe
from tests.conftest import Fixture

T0 = datetime(2026, 1, 5, 8, tzinfo=UTC)
MONITORING = {
    "studies_per_day": 20,
    "false_alarms_per_year": 1,
    "reference_size": 150,
    "performance": {
        "prediction": "positive",
        "truth": "malignant",
        "dice": False,
        "reference_size": 60,
    },
}
SITE_SECRET = b"dashboards-test-secret-0123456789"
DRIFTING = "lesion-ai@site-b"
STEADY = "lesion-ai@site-a"


def configure(engine: Engine, deployment: str) -> None:
    with Session(engine) as s:
        dep = s.get(Deployment, deployment)
        assert dep is not None
        dep.monitoring = MONITORING
        s.add(dep)
        s.commit()


def study(g: np.random.Generator, i: int, changed: bool) -> dict[str, Any]:
    """One record's content; after the change the SUVs read 25% high (a reconstruction upgrade)."""
    factor = 1.25 if changed else 1.0
    liver = float(g.normal(2.2, 0.2)) * factor
    score = float(1 / (1 + np.exp(-(g.normal(0, 1) + (1.5 if changed else 0.0)))))
    return {
        "acquired_at": T0 + timedelta(hours=1.2 * i),
        "features": {"liver_suvmean": round(liver, 3), "uptake_time_s": float(g.normal(3600, 300))},
        "outputs": {"malignancy_score": round(score, 4), "positive": score >= 0.5},
        "latency_s": float(g.lognormal(-0.5, 0.4)),
        "error": "RuntimeError" if g.random() < 0.05 else None,
    }


def send_with_probe(
    url: str, token: str, deployment: str, studies: list[dict[str, Any]], spool: Path
) -> list[tuple[str, dict[str, Any]]]:
    """Send through the real probe (batches carry its health report); (record_id, study) pairs."""
    sent = []
    with Probe(
        url=url,
        token=token,
        deployment=deployment,
        site_secret=SITE_SECRET,
        spool_path=spool,
        batch_size=100,
        flush_interval_s=0.05,
    ) as probe:
        for i, s in enumerate(studies):
            rid = probe.record(
                features=s["features"],
                outputs=s["outputs"],
                study_uid=f"1.2.826.0.1.{i}",
                acquired_at=s["acquired_at"],
                latency_s=s["latency_s"],
                error=s["error"],
            )
            assert rid is not None
            sent.append((rid, s))
        assert probe.flush(30)
    return sent


def send_verdicts(
    url: str, token: str, sent: list[tuple[str, dict[str, Any]]], g: np.random.Generator
) -> None:
    feedback = []
    for rid, s in sent:
        if s["error"] is not None:
            continue
        malignant = bool(g.random() < s["outputs"]["malignancy_score"])
        feedback.append(
            {
                "feedback_id": uuid.uuid4().hex,
                "record_id": rid,
                "ground_truth": {"malignant": malignant},
                "given_at": (s["acquired_at"] + timedelta(days=3)).isoformat(),
            }
        )
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as c:
        for i in range(0, len(feedback), 500):
            r = c.post("/v1/feedback", json={"feedback": feedback[i : i + 500]}, timeout=30)
            r.raise_for_status()
            assert r.json()["rejected"] == 0


# kind -> metric -> tolerance bounds (lower_action, lower_tolerance, upper_tolerance, upper_action)
PHANTOM_METRICS: dict[str, dict[str, tuple[float, float, float, float]]] = {
    "flood": {"integral_uniformity_ufov_pct": (0.0, 0.0, 4.0, 5.0)},
    "cylinder": {"suv_mean_ratio": (0.90, 0.95, 1.05, 1.10)},
}


def add_phantoms(engine: Engine, now: datetime) -> None:
    """Three scanners with a month of daily floods and weekly cylinders; the last flood of the
    second scanner is beyond its action level."""
    g = np.random.default_rng(7)
    with session_scope(engine) as s:
        devices = [
            Device(site_id="site-a", manufacturer="SIEMENS", model="Symbia Intevo", serial="A1"),
            Device(site_id="site-a", manufacturer="SIEMENS", model="Biograph Vision", serial="A2"),
            Device(site_id="site-b", manufacturer="GE", model="Discovery MI", serial="B1"),
        ]
        s.add_all(devices)
        s.flush()
        for kind, metrics in PHANTOM_METRICS.items():
            for metric, (la, lt, ut, ua) in metrics.items():
                for version, scale in ((1, 1.2), (2, 1.0)):  # the latest version is in force
                    s.add(
                        PhantomTolerance(
                            kind=kind,
                            metric=metric,
                            version=version,
                            lower_action=la,
                            lower_tolerance=lt,
                            upper_tolerance=ut * scale,
                            upper_action=ua * scale,
                            created_by="physicist",
                        )
                    )
        for d_index, device in enumerate(devices):
            assert device.id is not None
            for day in range(30):
                for kind, metrics in PHANTOM_METRICS.items():
                    if kind == "cylinder" and day % 7:
                        continue
                    values: dict[str, float] = {}
                    verdicts: dict[str, str] = {}
                    for metric, (_, _, ut, ua) in metrics.items():
                        if kind == "flood":
                            v = float(g.normal(2.5, 0.4))
                            if d_index == 1 and day == 29:
                                v = 6.2  # a failing photomultiplier tube
                            verdicts[metric] = (
                                "action" if v > ua else "tolerance" if v > ut else "pass"
                            )
                        else:
                            v = float(g.normal(1.0, 0.02))
                            verdicts[metric] = "pass"
                        values[metric] = round(v, 3)
                    s.add(
                        PhantomResult(
                            result_id=uuid.uuid4().hex,
                            device_id=device.id,
                            kind=kind,
                            acquired_at=now - timedelta(days=29 - day, hours=2),
                            metrics=values,
                            verdicts=verdicts,
                            tolerance_version=2,
                        )
                    )


def load(url: str, world: Fixture, workdir: Path, *, records: int = 400) -> None:
    """Everything the dashboards show, through the real API, probe and drift engine."""
    configure(world.engine, DRIFTING)
    configure(world.engine, STEADY)
    g = np.random.default_rng(3)
    change_at = int(records * 0.7)
    drifting = [study(g, i, changed=i >= change_at) for i in range(records)]
    steady = [study(g, i, changed=False) for i in range(records // 2)]
    sent_b = send_with_probe(url, world.probe_b, DRIFTING, drifting, workdir / "b.spool")
    sent_a = send_with_probe(url, world.probe_a, STEADY, steady, workdir / "a.spool")
    send_verdicts(url, world.probe_b, sent_b, g)
    send_verdicts(url, world.probe_a, sent_a, g)
    # One record the monitor rejects (a patient name among the features).
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {world.probe_a}"}) as c:
        bad = {
            "record_id": uuid.uuid4().hex,
            "deployment": STEADY,
            "inferred_at": T0.isoformat(),
            "features": {"PatientName": "Doe^Jane"},
        }
        assert c.post("/v1/records", json={"records": [bad]}).json()["rejected"] == 1
    detect_all(world.engine)
    add_phantoms(world.engine, datetime.now(UTC))
