"""A binary reference growing in the service: each step audited, growth held while the stream's
alert is open and resumed once a reviewer resolves it, and a baseline declared from the
validation study, audited like an upload (phase4.monitor.drift.growth)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from phase4.monitor.store.models import AuditEntry, Deployment, DetectorState
from phase4.monitor.surveillance.detection import declare_baseline, detect_deployment, open_alerts
from phase4.monitor.surveillance.reports import stream_reference_note
from tests.conftest import Fixture

T0 = datetime(2026, 1, 5, 8, tzinfo=UTC)
STREAM = "outputs.artifact"


def _configure(world: Fixture) -> None:
    with Session(world.engine) as s:
        dep = s.get(Deployment, world.deployment_b)
        assert dep is not None
        dep.monitoring = {
            "studies_per_day": 20,
            "false_alarms_per_year": 1,
            "reference_size": 200,
            "reference_events_target": 150,
            "streams": [{"field": STREAM, "kind": "binary"}],
        }
        s.add(dep)
        s.commit()


def _send(client: TestClient, world: Fixture, events: list[bool], start: int) -> None:
    records: list[dict[str, Any]] = [
        {
            "deployment": world.deployment_b,
            "record_id": uuid.uuid4().hex,
            "study_pseudonym": f"{start + i:064x}",
            "acquired_at": (T0 + timedelta(hours=1.2 * (start + i))).isoformat(),
            "inferred_at": (T0 + timedelta(hours=1.2 * (start + i), minutes=5)).isoformat(),
            "features": {"liver_suvmean": 2.2},
            "outputs": {"artifact": e},
        }
        for i, e in enumerate(events)
    ]
    for i in range(0, len(records), 1000):
        r = client.post(
            "/v1/records",
            json={"records": records[i : i + 1000]},
            headers=world.auth(world.probe_b),
        )
        assert r.json()["created"] == len(records[i : i + 1000]), r.text[:300]


def _growth_entries(world: Fixture) -> list[AuditEntry]:
    with Session(world.engine) as s:
        return list(
            s.exec(
                select(AuditEntry)
                .where(AuditEntry.action == "reference.grow")
                .order_by(col(AuditEntry.seq))
            )
        )


def _stream_state(world: Fixture) -> dict[str, Any]:
    with Session(world.engine) as s:
        row = s.exec(
            select(DetectorState).where(DetectorState.deployment_id == world.deployment_b)
        ).one()
        return dict(row.state["streams"][STREAM])


def test_growth_steps_are_audited_and_held_while_the_alert_is_open(
    client: TestClient, world: Fixture
) -> None:
    _configure(world)
    g = np.random.default_rng(21)
    _send(client, world, (g.random(1600) < 0.05).tolist(), 0)
    detect_deployment(world.engine, world.deployment_b)
    entries = _growth_entries(world)
    assert entries, "a 5% stream's 200-study reference (about 10 events) grows toward 150"
    n = 200
    for e in entries:
        old, new = e.old_value["reference"], e.new_value["reference"]
        assert old["n"] == n and new["n"] == n + e.new_value["added"]["observations"]
        assert e.new_value["stream"] == STREAM and e.new_value["guard_studies"] >= 200
        assert "joined the reference" in e.reason and "studies acquired" in e.reason
        n = new["n"]
    state = _stream_state(world)
    assert state["reference"]["n"] == n
    steps_before = len(entries)

    # A burst of events: the chart alarms and growth is held while its alert is open.
    _send(client, world, [True] * 30, 1600)
    detect_deployment(world.engine, world.deployment_b)
    alerts = [a for a in open_alerts(world.engine, world.deployment_b) if a.stream == STREAM]
    assert alerts
    # the alert's report says its chart's reference is not the first records alone
    with Session(world.engine) as s:
        note = stream_reference_note(s, world.deployment_b, STREAM, alerts[0].opened_at)
        assert (
            stream_reference_note(s, world.deployment_b, "features.x", alerts[0].opened_at) is None
        )
    assert note is not None and f"grew in audited steps to {n:,} studies" in note
    state = _stream_state(world)
    assert state["growth"]["done"] is False  # 150 events are far off at 5%
    assert state["growth"]["hold"] is not None
    _send(client, world, (g.random(1500) < 0.05).tolist(), 1630)
    detect_deployment(world.engine, world.deployment_b)
    assert len(_growth_entries(world)) == steps_before  # held: nothing joined
    assert _stream_state(world)["growth"]["blocks"] == []

    # A reviewer resolves the alert: growth resumes, from records after the resolution only.
    for alert in alerts:
        r = client.post(
            f"/v1/alerts/{alert.id}/resolve",
            json={"reason": "Detector housing cleaned; artifact rate back to baseline"},
            headers=world.auth(world.reviewer),
        )
        assert r.status_code == 200, r.text
    _send(client, world, (g.random(2500) < 0.05).tolist(), 3130)
    detect_deployment(world.engine, world.deployment_b)
    later = _growth_entries(world)[steps_before:]
    assert later, "growth resumes once the alert is resolved"
    first_new = datetime.fromisoformat(later[0].new_value["added"]["first_at"])
    assert first_new >= T0 + timedelta(hours=1.2 * 3130)


def test_a_declared_baseline_becomes_the_reference_and_is_audited(
    client: TestClient, world: Fixture
) -> None:
    _configure(world)
    g = np.random.default_rng(22)
    _send(client, world, (g.random(300) < 0.05).tolist(), 0)
    detect_deployment(world.engine, world.deployment_b)
    with pytest.raises(ValueError, match="at least 30 cases"):
        declare_baseline(
            world.engine,
            world.deployment_b,
            STREAM,
            cases=10,
            events=1,
            source="x",
            actor="physicist:ada",
            reason="r",
        )
    with pytest.raises(ValueError, match="no stream"):
        declare_baseline(
            world.engine,
            world.deployment_b,
            "outputs.nope",
            cases=100,
            events=1,
            source="x",
            actor="physicist:ada",
            reason="r",
        )
    change = declare_baseline(
        world.engine,
        world.deployment_b,
        STREAM,
        cases=840,
        events=34,
        source="validation study 2025 (site A, 840 cases)",
        actor="physicist:ada",
        reason="use the validation study's artifact rate",
    )
    assert change["new"] == {"n": 840, "events": 34}
    state = _stream_state(world)
    assert state["reference"] == {"n": 840, "events": 34}
    assert state["declared"]["source"].startswith("validation study 2025")
    assert state.get("growth") is None  # a declared baseline does not grow
    with Session(world.engine) as s:
        entry = s.exec(select(AuditEntry).where(AuditEntry.action == "reference.declare")).one()
    assert entry.actor == "physicist:ada"
    assert entry.new_value["cases"] == 840 and entry.new_value["events"] == 34
    assert entry.old_value["reference"]["n"] == 200
    with Session(world.engine) as s:
        note = stream_reference_note(s, world.deployment_b, STREAM, entry.at)
    assert note is not None and "(34 events in 840 cases)" in note
    assert "validation study 2025" in note
    # the stream keeps watching against the declared rate
    _send(client, world, (g.random(200) < 0.05).tolist(), 300)
    detect_deployment(world.engine, world.deployment_b)
    assert _stream_state(world)["reference"] == {"n": 840, "events": 34}
