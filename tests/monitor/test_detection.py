"""The drift engine over the store (SQLite and PostgreSQL): exactly-once processing, late
records, persisted state, alerts with evidence and linked events, labelled performance."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from phase4.monitor.store.models import Alert, AuditEntry, Deployment, DetectorState, Device
from phase4.monitor.surveillance.detection import detect_deployment, open_alerts
from phase4.monitor.surveillance.reports import attach_reports
from tests.conftest import Fixture

T0 = datetime(2026, 1, 5, 8, tzinfo=UTC)
CONFIG = {
    "studies_per_day": 20,
    "false_alarms_per_year": 1,
    "reference_size": 200,
    "performance": {
        "prediction": "positive",
        "truth": "malignant",
        "dice": False,
        "reference_size": 60,
    },
}


def _configure(engine: Engine, deployment: str, monitoring: dict[str, Any]) -> None:
    with Session(engine) as s:
        dep = s.get(Deployment, deployment)
        assert dep is not None
        dep.monitoring = monitoring
        s.add(dep)
        s.commit()


def _study(g: np.random.Generator, i: int, changed: bool) -> dict[str, Any]:
    suv_factor = 1.25 if changed else 1.0
    liver = float(g.normal(2.2, 0.2)) * suv_factor
    score = float(1 / (1 + np.exp(-(g.normal(0, 1) + (1.0 if changed else 0.0)))))
    return {
        "record_id": uuid.uuid4().hex,
        "study_pseudonym": f"{i:064x}",
        "acquired_at": (T0 + timedelta(hours=1.2 * i)).isoformat(),
        "inferred_at": (T0 + timedelta(hours=1.2 * i, minutes=5)).isoformat(),
        "features": {
            "liver_suvmean": round(liver, 3),
            "reconstruction": "Q.Clear beta550" if changed else "VPFX-S",
        },
        "outputs": {"malignancy_score": round(score, 4), "positive": score >= 0.5},
    }


def _send(client: TestClient, world: Fixture, records: list[dict[str, Any]]) -> None:
    for i in range(0, len(records), 1000):
        batch = [dict(r, deployment=world.deployment_b) for r in records[i : i + 1000]]
        r = client.post("/v1/records", json={"records": batch}, headers=world.auth(world.probe_b))
        assert r.json()["created"] == len(batch)


def _state_records(engine: Engine, deployment: str) -> int:
    with Session(engine) as s:
        row = s.exec(select(DetectorState).where(DetectorState.deployment_id == deployment)).one()
        return int(row.state["records"])


def test_a_reconstruction_upgrade_is_detected_dated_and_linked(
    client: TestClient, world: Fixture
) -> None:
    _configure(world.engine, world.deployment_b, CONFIG)
    g = np.random.default_rng(1)
    records = [_study(g, i, changed=i >= 900) for i in range(1100)]
    _send(client, world, records)
    result = detect_deployment(world.engine, world.deployment_b)
    assert result.records == 1100
    alerts = open_alerts(world.engine, world.deployment_b)
    notices = [a for a in alerts if a.cause.startswith("new_condition")]
    assert [a.title for a in notices] == [
        "New value in features.reconstruction: 'Q.Clear beta550' (never seen in the reference)"
    ]
    suv = [a for a in alerts if a.stream == "features.liver_suvmean"]
    assert len(suv) == 1, "repeated alarms on one stream must group into one alert"
    ev = suv[0].evidence
    change_at = datetime.fromisoformat(ev["change_timestamp"])
    true_change = T0 + timedelta(hours=1.2 * 900)
    assert abs(change_at - true_change) < timedelta(hours=1.2 * 15)
    assert datetime.fromisoformat(ev["timestamp"]) >= true_change
    assert ev["direction"] == "up"
    assert "ARL0" in ev["budget"]["explanation"]
    assert any("Q.Clear beta550" in link["what"] for link in ev["linked"])
    assert ev.get("repeats", 0) >= 1
    # Nothing was raised before the change: the budget holds on the in-control stretch.
    assert all(datetime.fromisoformat(a.evidence["timestamp"]) >= true_change for a in alerts)
    with Session(world.engine) as s:
        actions = s.exec(select(AuditEntry.action)).all()
    assert "monitoring.start" in actions


def test_each_record_counts_once_even_late_and_across_restarts(
    client: TestClient, world: Fixture
) -> None:
    _configure(world.engine, world.deployment_b, CONFIG)
    g = np.random.default_rng(2)
    records = [_study(g, i, changed=False) for i in range(400)]
    _send(client, world, records[:300])
    assert detect_deployment(world.engine, world.deployment_b).records == 300
    assert detect_deployment(world.engine, world.deployment_b).records == 0  # nothing new
    # A late record (acquired long ago) and new ones arrive; a new engine picks up the state.
    late = _study(g, 5, changed=False)
    _send(client, world, [*records[300:], late])
    with world.engine.connect() as conn:
        pending = conn.execute(
            sa.text("SELECT count(*) FROM inference_record WHERE drift_processed_at IS NULL")
        ).scalar_one()
    assert pending == 101
    assert detect_deployment(world.engine, world.deployment_b).records == 101
    assert _state_records(world.engine, world.deployment_b) == 401


def test_performance_streams_watch_labelled_outcomes(client: TestClient, world: Fixture) -> None:
    """False positives among confirmed-benign studies rise from 10% to 40%."""
    _configure(world.engine, world.deployment_b, CONFIG)
    g = np.random.default_rng(3)
    records, feedback = [], []
    for i in range(1400):
        rec = _study(g, i, changed=False)
        malignant = bool(g.random() < 0.5)
        fp_rate = 0.10 if i < 1000 else 0.40
        positive = malignant if malignant else bool(g.random() < fp_rate)
        rec["outputs"]["positive"] = positive
        records.append(rec)
        feedback.append(
            {
                "feedback_id": f"fb{i}",
                "record_id": rec["record_id"],
                "ground_truth": {"malignant": malignant},
                "given_at": (T0 + timedelta(hours=1.2 * i, days=20)).isoformat(),
            }
        )
    _send(client, world, records)
    for i in range(0, len(feedback), 1000):
        r = client.post(
            "/v1/feedback",
            json={"feedback": feedback[i : i + 1000]},
            headers=world.auth(world.probe_b),
        )
        assert r.json()["created"] == len(feedback[i : i + 1000])
    result = detect_deployment(world.engine, world.deployment_b)
    assert result.feedback == 1400
    alerts = [a for a in open_alerts(world.engine, world.deployment_b) if a.cause == "performance"]
    assert [a.stream for a in alerts] == ["performance.false_positive"]
    assert alerts[0].severity == "critical"
    given = datetime.fromisoformat(alerts[0].evidence["timestamp"])
    assert given >= T0 + timedelta(hours=1.2 * 1000, days=20)


def test_alerts_are_visible_in_metrics(client: TestClient, world: Fixture) -> None:
    _configure(world.engine, world.deployment_b, CONFIG)
    g = np.random.default_rng(4)
    _send(client, world, [_study(g, i, changed=i >= 300) for i in range(400)])
    detect_deployment(world.engine, world.deployment_b)
    with Session(world.engine) as s:
        counts: dict[str, int] = {}
        for a in s.exec(select(Alert)):
            counts[a.severity] = counts.get(a.severity, 0) + 1
    text = client.get("/metrics").text
    for severity, n in counts.items():
        assert f'phase4_alerts_open{{severity="{severity}"}} {float(n)}' in text


def test_drift_alerts_get_an_evidently_report_served_by_the_api(
    client: TestClient, world: Fixture
) -> None:
    _configure(world.engine, world.deployment_b, CONFIG)
    g = np.random.default_rng(6)
    _send(client, world, [_study(g, i, changed=i >= 400) for i in range(600)])
    detect_deployment(world.engine, world.deployment_b)
    made = attach_reports(world.engine)
    alerts = client.get("/v1/alerts", headers=world.auth(world.viewer)).json()
    drift = [a for a in alerts if a["cause"] == "drift"]
    assert made == len(drift) >= 1
    suv = next(a for a in drift if a["stream"] == "features.liver_suvmean")
    report = suv["evidence"]["report"]
    assert report["reference_rows"] == 200
    assert report["drifted_columns"]["count"] >= 1
    page = client.get(report["path"], headers=world.auth(world.viewer))
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "liver_suvmean" in page.text
    assert attach_reports(world.engine) == 0, "a report is built once per alert"
    assert client.get(report["path"]).status_code == 401
    other_site = client.get(report["path"], headers=world.auth(world.probe_a))
    assert other_site.status_code == 403
    assert client.get("/v1/alerts", headers=world.auth(world.probe_a)).json() == []
    missing = client.get("/v1/alerts/999999/report", headers=world.auth(world.viewer))
    assert missing.status_code == 404


def test_uploaded_reference_is_used_at_once_and_reset_is_audited(
    client: TestClient, world: Fixture
) -> None:
    import pytest

    from phase4.monitor.surveillance.detection import reset_reference, upload_reference

    _configure(world.engine, world.deployment_b, {**CONFIG, "performance": None})
    g = np.random.default_rng(7)
    validation = [
        {
            "features.liver_suvmean": float(g.normal(2.2, 0.2)),
            "features.reconstruction": "VPFX-S",
            "outputs.malignancy_score": float(g.random()),
            "outputs.positive": bool(g.random() < 0.5),
        }
        for _ in range(400)
    ]
    summary = upload_reference(
        world.engine,
        world.deployment_b,
        validation,
        actor="physicist:ada",
        reason="validation study",
        source="validation.csv sha256:abc",
    )
    assert summary["features.liver_suvmean"]["n"] == 400  # the whole file is the reference
    # Every live record is shifted: with the uploaded reference the shift is caught at once.
    _send(client, world, [_study(g, i, changed=True) for i in range(150)])
    detect_deployment(world.engine, world.deployment_b)
    streams = {a.stream for a in open_alerts(world.engine, world.deployment_b)}
    assert "features.liver_suvmean" in streams
    with pytest.raises(ValueError, match="reason is required"):
        reset_reference(world.engine, world.deployment_b, actor="physicist:ada", reason=" ")
    reset_reference(world.engine, world.deployment_b, actor="physicist:ada", reason="new scanner")
    with Session(world.engine) as s:
        entries = s.exec(select(AuditEntry).where(AuditEntry.actor == "physicist:ada")).all()
        assert [e.action for e in entries] == ["reference.set", "reference.reset"]
        assert entries[0].new_value["source"] == "validation.csv sha256:abc"
        assert s.exec(select(DetectorState)).first() is None
    with pytest.raises(ValueError, match="no reference yet"):
        reset_reference(world.engine, world.deployment_b, actor="x", reason="again")


def test_records_before_acceptance_are_neither_reference_nor_monitored(
    client: TestClient, world: Fixture
) -> None:
    _configure(world.engine, world.deployment_b, CONFIG)
    with Session(world.engine) as s:
        dep = s.get(Deployment, world.deployment_b)
        assert dep is not None
        dep.accepted_at = T0 + timedelta(hours=1.2 * 100)
        s.add(dep)
        s.commit()
    g = np.random.default_rng(8)
    # Validation-time records are wildly different; they must not become the reference.
    records = [_study(g, i, changed=i < 100) for i in range(400)]
    _send(client, world, records)
    assert detect_deployment(world.engine, world.deployment_b).records == 400
    assert _state_records(world.engine, world.deployment_b) == 300
    assert open_alerts(world.engine, world.deployment_b) == []


def test_small_references_never_stop_the_deployment(client: TestClient, world: Fixture) -> None:
    """13 numeric streams with 100-record references (at a budget of 0.5 a year, the CUSUM's
    ARL0 about 310,000) and a performance stream with 20 misses in 60 labels: the pass ends
    normally (no "math domain error" in the CUSUM calibration, no "arl0 ... out of reach"),
    and a stream that cannot be calibrated says why and collects a larger reference (see
    tests/drift)."""
    features = [f"f{j}" for j in range(13)]
    _configure(
        world.engine,
        world.deployment_b,
        {
            "studies_per_day": 20,
            "false_alarms_per_year": 0.5,
            "reference_size": 100,
            "reference_events_min": 20,
            "streams": [{"field": f"features.{f}", "kind": "numeric"} for f in features],
            "performance": {
                "prediction": "positive",
                "truth": "malignant",
                "dice": False,
                "reference_size": 60,
            },
        },
    )
    g = np.random.default_rng(8)
    records, feedback = [], []
    for i in range(300):
        rec = _study(g, i, changed=False)
        rec["features"] = {f: round(float(g.normal()), 4) for f in features}
        malignant = bool(g.random() < 0.5)
        rec["outputs"]["positive"] = bool(g.random() < 2 / 3) if malignant else False
        records.append(rec)
        feedback.append(
            {
                "feedback_id": f"fb{i}",
                "record_id": rec["record_id"],
                "ground_truth": {"malignant": malignant},
                "given_at": (T0 + timedelta(hours=1.2 * i, days=2)).isoformat(),
            }
        )
    _send(client, world, records)
    r = client.post("/v1/feedback", json={"feedback": feedback}, headers=world.auth(world.probe_b))
    assert r.json()["created"] == len(feedback)
    result = detect_deployment(world.engine, world.deployment_b)
    assert result.records == 300
    with Session(world.engine) as s:
        state = (
            s.exec(select(DetectorState).where(DetectorState.deployment_id == world.deployment_b))
            .one()
            .state
        )
    streams = state["streams"]
    assert len(streams) == 15
    for name in (f"features.{f}" for f in features):
        # 100 values could not hold the budget; 200 could, and the stream is monitored.
        assert streams[name]["reference_size"] == 200
        assert streams[name]["reference"]["n"] == 200
        assert "arl0" in streams[name]["budget"]
    missed = streams["performance.missed"]
    assert missed["reference"] is not None and missed["reference"]["n"] >= 60
    assert "arl0" in missed["budget"]


def test_device_alerts_at_the_site_are_linked_to_a_drift_alarm(
    client: TestClient, world: Fixture
) -> None:
    """A phantom QC failure on a scanner at the deployment's site, dated a day before the AI's
    inputs drifted, is linked in the drift alert's evidence; one at another site, or months
    earlier, is not."""
    _configure(world.engine, world.deployment_b, CONFIG)
    true_change = T0 + timedelta(hours=1.2 * 900)
    with Session(world.engine) as s:
        devices = {}
        for site in ("site-a", "site-b"):
            device = Device(site_id=site, manufacturer="GE", model="Discovery MI", serial=site)
            s.add(device)
            s.flush()
            devices[site] = device.id
        for site, when, title in [
            ("site-b", true_change - timedelta(days=1), "Phantom QC near the change"),
            ("site-b", true_change - timedelta(days=200), "Phantom QC long before"),
            ("site-a", true_change - timedelta(days=1), "Phantom QC at another site"),
        ]:
            s.add(
                Alert(
                    deployment_id=None,
                    device_id=devices[site],
                    stream="phantom.nema_iq.recovery",
                    cause="phantom_action",
                    severity="critical",
                    title=title,
                    evidence={"timestamp": when.isoformat(), "change_timestamp": when.isoformat()},
                )
            )
        s.commit()
    g = np.random.default_rng(1)
    _send(client, world, [_study(g, i, changed=i >= 900) for i in range(1100)])
    detect_deployment(world.engine, world.deployment_b)
    suv = [
        a
        for a in open_alerts(world.engine, world.deployment_b)
        if a.stream == "features.liver_suvmean"
    ]
    assert len(suv) == 1
    device_links = [link for link in suv[0].evidence["linked"] if "device_id" in link]
    assert [(link["what"], link["device_id"]) for link in device_links] == [
        ("Phantom QC near the change", devices["site-b"])
    ]
    assert device_links[0]["cause"] == "phantom_action"
