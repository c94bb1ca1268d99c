"""Phantom QC in the monitor: results over the API, versioned tolerances, sign-off, control
charts that find a calibration fault and link it to the AI's alerts, and the AI canary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from phase4.monitor.store.audit import verify_chain
from phase4.monitor.store.db import session_scope
from phase4.monitor.store.models import Alert, AuditEntry, PhantomResult
from phase4.monitor.surveillance.phantom_qc import process_phantom_qc
from tests.conftest import Fixture

DAY0 = datetime(2026, 3, 2, 7, 30, tzinfo=UTC)
SCANNER = {"manufacturer": "SIEMENS", "model": "Biograph Vision 600", "serial": "PV-1001"}
TRUTH = {
    "spheres": [
        {"diameter_mm": d, "volume_ml": v, "suv": 8.0}
        for d, v in ((37, 26.52), (28, 11.49), (22, 5.57), (17, 2.57), (13, 1.15), (10, 0.52))
    ]
}


def _cylinder(i: int, suv: float, site: str = "site-a", **extra: Any) -> dict[str, Any]:
    return {
        "result_id": f"cyl-{site}-{i}",
        "site": site,
        "device": SCANNER,
        "kind": "cylinder",
        "acquired_at": (DAY0 + timedelta(days=i)).isoformat(),
        "metrics": {"suv_mean": suv, "cv_pct": 4.0},
        **extra,
    }


def _post(client: TestClient, world: Fixture, items: list[dict[str, Any]], token: str = "") -> Any:
    r = client.post(
        "/v1/phantom-results",
        json={"results": items},
        headers=world.auth(token or world.probe_a),
    )
    assert r.status_code == 200, r.text
    return r.json()


def _tolerance(client: TestClient, world: Fixture, **levels: float) -> dict[str, Any]:
    r = client.post(
        "/v1/phantom-tolerances",
        json={"kind": "cylinder", "metric": "suv_mean", "reason": "EARL ±10%", **levels},
        headers=world.auth(world.reviewer),
    )
    assert r.status_code == 201, r.text
    return r.json()


def test_each_result_keeps_the_tolerance_in_force_when_it_was_recorded(
    client: TestClient, world: Fixture
) -> None:
    v1 = _tolerance(
        client,
        world,
        lower_action=0.9,
        lower_tolerance=0.95,
        upper_tolerance=1.05,
        upper_action=1.1,
    )
    assert v1["version"] == 1
    first = _post(client, world, [_cylinder(0, 0.93), _cylinder(1, 1.0), _cylinder(2, 0.85)])
    assert first["created"] == 3
    v2 = _tolerance(
        client,
        world,
        lower_action=0.9,
        lower_tolerance=0.92,
        upper_tolerance=1.08,
        upper_action=1.1,
    )
    assert v2["version"] == 2
    _post(client, world, [_cylinder(3, 0.93)])
    rows = client.get("/v1/phantom-results", headers=world.auth(world.viewer)).json()
    by_id = {r["result_id"]: r["verdicts"]["suv_mean"] for r in rows}
    assert by_id["cyl-site-a-0"] == {
        "verdict": "tolerance",
        "value": 0.93,
        "tolerance_version": 1,
        "tolerance_device": None,
    }
    assert by_id["cyl-site-a-1"]["verdict"] == "pass"
    assert by_id["cyl-site-a-2"]["verdict"] == "action"
    # The same value under the newer, wider tolerance passes; yesterday's verdict stands.
    assert by_id["cyl-site-a-3"]["verdict"] == "pass"
    assert by_id["cyl-site-a-3"]["tolerance_version"] == 2
    assert by_id["cyl-site-a-0"]["tolerance_version"] == 1
    # Re-sending is a no-op; both versions are kept and the changes are audited.
    again = _post(client, world, [_cylinder(0, 0.5)])
    assert again["duplicates"] == 1
    tolerances = client.get("/v1/phantom-tolerances", headers=world.auth(world.viewer)).json()
    assert sorted(t["version"] for t in tolerances) == [1, 2]
    with Session(world.engine) as s:
        entries = list(s.exec(select(AuditEntry).where(AuditEntry.action == "tolerance.set")))
        assert len(entries) == 2 and entries[1].old_value is not None
        assert entries[1].old_value["lower_tolerance"] == 0.95
        assert entries[1].actor == "dr-curie"
        assert verify_chain(s).ok


def test_bad_results_and_tolerances_are_refused_by_name(client: TestClient, world: Fixture) -> None:
    bad = [
        _cylinder(0, float("nan")) | {"metrics": {"suv_mean": "x"}},
        {**_cylinder(1, 1.0), "kind": "banana"},
        {**_cylinder(2, 1.0), "acquired_at": "2026-03-02T07:30:00"},
        {**_cylinder(3, 1.0), "metrics": {}},
        _cylinder(4, 1.0),
    ]
    out = _post(client, world, bad)
    assert out["created"] == 1 and out["rejected"] == 4
    errors = [r["error"] for r in out["results"] if r["status"] == "rejected"]
    assert "metrics.suv_mean" in errors[0]
    assert "kind" in errors[1]
    assert "acquired_at" in errors[2]
    assert "at least one metric" in errors[3]
    r = client.post(
        "/v1/phantom-results",
        json={"results": [_cylinder(9, 1.0, site="site-b")]},
        headers=world.auth(world.probe_a),
    )
    assert r.status_code == 403 and "site-b" in r.text
    r = client.post(
        "/v1/phantom-tolerances",
        json={
            "kind": "cylinder",
            "metric": "suv_mean",
            "reason": "r",
            "lower_tolerance": 1.1,
            "upper_tolerance": 0.9,
        },
        headers=world.auth(world.reviewer),
    )
    assert r.status_code == 422 and "ordered" in r.text
    r = client.post(
        "/v1/phantom-tolerances",
        json={"kind": "cylinder", "metric": "suv_mean", "reason": "r", "upper_action": 1.1},
        headers=world.auth(world.viewer),
    )
    assert r.status_code == 403


def test_sign_off_by_a_named_reviewer_once(client: TestClient, world: Fixture) -> None:
    _post(client, world, [_cylinder(0, 1.0)])
    url = "/v1/phantom-results/cyl-site-a-0/sign-off"
    assert client.post(url, json={}, headers=world.auth(world.viewer)).status_code == 403
    assert client.post(url, json={}, headers=world.auth(world.reviewer_b)).status_code == 403
    r = client.post(url, json={"note": "flood fine"}, headers=world.auth(world.reviewer))
    assert r.status_code == 200 and r.json()["reviewed_by"] == "dr-curie"
    again = client.post(url, json={}, headers=world.auth(world.reviewer))
    assert again.status_code == 409 and "already signed off by dr-curie" in again.text
    missing = client.post(
        "/v1/phantom-results/nope/sign-off", json={}, headers=world.auth(world.reviewer)
    )
    assert missing.status_code == 404


def test_control_chart_finds_a_calibration_fault_and_links_the_ais_alert(
    client: TestClient, world: Fixture
) -> None:
    rng = np.random.default_rng(3)
    fault_day = 60
    values = [
        float(rng.normal(1.0 if i < fault_day else 0.95, 0.015)) for i in range(fault_day + 20)
    ]
    _post(client, world, [_cylinder(i, v) for i, v in enumerate(values[:fault_day])])
    assert process_phantom_qc(world.engine).alerts_opened == []  # in control: silence
    # The AI's output drifted at the same site, dated near the phantom fault.
    with session_scope(world.engine) as s:
        s.add(
            Alert(
                deployment_id=world.deployment_a,
                stream="outputs.lesion_suvmax",
                cause="drift",
                severity="warning",
                title="outputs.lesion_suvmax fell (detected by cusum)",
                evidence={
                    "timestamp": (DAY0 + timedelta(days=fault_day + 3)).isoformat(),
                    "change_timestamp": (DAY0 + timedelta(days=fault_day + 1)).isoformat(),
                },
            )
        )
    _post(client, world, [_cylinder(i, v) for i, v in enumerate(values) if i >= fault_day])
    opened = process_phantom_qc(world.engine).alerts_opened
    assert len(opened) == 1
    with Session(world.engine) as s:
        alert = s.get(Alert, opened[0])
        assert alert is not None
        assert alert.cause == "phantom_drift" and alert.device_id is not None
        assert alert.stream == "phantom.cylinder.suv_mean"
        ev = alert.evidence
        began = datetime.fromisoformat(ev["change_timestamp"])
        detected = datetime.fromisoformat(ev["timestamp"])
        assert DAY0 + timedelta(days=fault_day - 5) <= began <= detected
        assert detected <= DAY0 + timedelta(days=fault_day + 15)
        assert ev["direction"] == "down" and ev["relative_change"] < -0.02
        assert [link["stream"] for link in ev["linked"]] == ["outputs.lesion_suvmax"]
        # Processed exactly once: a second pass has nothing to do.
        pending = s.exec(
            select(PhantomResult).where(col(PhantomResult.qc_processed_at).is_(None))
        ).all()
        assert pending == []
    assert process_phantom_qc(world.engine).results == 0


def test_action_level_opens_a_critical_alert(client: TestClient, world: Fixture) -> None:
    _tolerance(client, world, lower_action=0.9, upper_action=1.1)
    _post(client, world, [_cylinder(0, 1.0), _cylinder(1, 0.85)])
    opened = process_phantom_qc(world.engine).alerts_opened
    with Session(world.engine) as s:
        alerts = [s.get(Alert, i) for i in opened]
        assert [(a.cause, a.severity) for a in alerts if a] == [("phantom_action", "critical")]


def _ai(suv: float, found: int = 6) -> dict[str, Any]:
    lesions = [
        {"suv_max": suv * f, "volume_ml": s["volume_ml"]}
        for s, f in zip(TRUTH["spheres"], (1.0, 0.97, 0.9, 0.8, 0.6, 0.4), strict=True)
    ]
    return {"lesions": lesions[:found]}


def test_ai_canary_alerts_when_its_answer_on_an_unchanged_phantom_changes(
    client: TestClient, world: Fixture
) -> None:
    rng = np.random.default_rng(5)

    def iq(i: int, suv: float, found: int = 6) -> dict[str, Any]:
        return {
            "result_id": f"iq-{i}",
            "site": "site-a",
            "device": SCANNER,
            "kind": "nema-iq",
            "acquired_at": (DAY0 + timedelta(days=7 * i)).isoformat(),
            "metrics": {"rc_max_37mm": 1.0},
            "truth": TRUTH,
            "ai_outputs": _ai(suv, found),
        }

    _post(client, world, [iq(i, 8.0 * float(rng.normal(1, 0.01))) for i in range(8)])
    assert process_phantom_qc(world.engine).alerts_opened == []
    _post(client, world, [iq(8, 8.0 * 1.25)])  # a reconstruction upgrade: SUVmax +25%
    opened = process_phantom_qc(world.engine).alerts_opened
    assert len(opened) == 1
    with Session(world.engine) as s:
        alert = s.get(Alert, opened[0])
        assert alert is not None and alert.cause == "ai_canary"
        assert any("suv" in r.lower() for r in alert.evidence["reasons"])


def test_a_metric_that_does_not_vary_gets_no_chart_and_breaks_nothing(
    client: TestClient, world: Fixture
) -> None:
    """A constant metric (0.1 every day: its float mean is not exactly 0.1, so its SD is a
    rounding residue) must not be charted, nor stop the other metric's chart."""
    rng = np.random.default_rng(11)
    items = [_cylinder(i, 0.0) | {"metrics": {"suv_mean": 0.0, "cv_pct": 0.1}} for i in range(60)]
    for i, item in enumerate(items):
        item["metrics"]["suv_mean"] = float(rng.normal(1.0 if i < 40 else 0.93, 0.01))
    _post(client, world, items)
    result = process_phantom_qc(world.engine)
    assert result.results == 60
    with Session(world.engine) as s:
        alerts = [s.get(Alert, i) for i in result.alerts_opened]
        assert [(a.stream, a.cause) for a in alerts if a] == [
            ("phantom.cylinder.suv_mean", "phantom_drift")
        ]
