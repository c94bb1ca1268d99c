"""Incidents are recorded, reported and closed by named reviewers, with clear refusals, audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from phase4.monitor.store.audit import verify_chain
from phase4.monitor.store.models import AuditEntry, Incident
from tests.conftest import Fixture


def _incident(world: Fixture, **extra: object) -> dict[str, object]:
    aware = datetime.now(UTC) - timedelta(days=3)
    return {
        "deployment": world.deployment_b,
        "title": "Missed lesions after the reconstruction upgrade",
        "seriousness": "serious_harm",
        "aware_at": aware.isoformat(),
        "remedial_action_needed": True,
        **extra,
    }


def test_record_report_and_close_an_incident(client: TestClient, world: Fixture) -> None:
    r = client.post("/v1/incidents", json=_incident(world), headers=world.auth(world.reviewer_b))
    assert r.status_code == 201, r.text
    incident = r.json()
    assert incident["created_by"] == "physicist-b" and incident["reports"] == {}
    reported = datetime.now(UTC) - timedelta(days=1)
    r = client.post(
        f"/v1/incidents/{incident['id']}/reports",
        json={"regime": "eu_mdr", "reported_at": reported.isoformat()},
        headers=world.auth(world.reviewer_b),
    )
    assert r.status_code == 200, r.text
    assert datetime.fromisoformat(r.json()["reports"]["eu_mdr"]) == reported
    r = client.post(
        f"/v1/incidents/{incident['id']}/close",
        json={"corrective_action": "Rolled back to OSEM; vendor retrained the model"},
        headers=world.auth(world.reviewer_b),
    )
    assert r.status_code == 200 and r.json()["closed_at"] is not None
    again = client.post(
        f"/v1/incidents/{incident['id']}/close",
        json={"corrective_action": "again"},
        headers=world.auth(world.reviewer_b),
    )
    assert again.status_code == 409
    listed = client.get("/v1/incidents", headers=world.auth(world.viewer)).json()
    assert [i["id"] for i in listed] == [incident["id"]]
    with Session(world.engine) as s:
        actions = list(
            s.exec(
                select(AuditEntry.action)
                .where(AuditEntry.entity_type == "incident")
                .order_by(col(AuditEntry.seq))
            )
        )
        assert actions == ["incident.record", "incident.report", "incident.close"]
        assert verify_chain(s).ok


def test_incident_refusals_name_the_problem(client: TestClient, world: Fixture) -> None:
    auth = world.auth(world.reviewer)
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    cases = [
        (_incident(world, seriousness="bad"), 422, "seriousness"),
        (_incident(world, aware_at=future), 422, "future"),
        (_incident(world, deployment="nope@x"), 404, "nope@x"),
        (_incident(world, aware_at="2026-01-01T00:00:00"), 422, "aware_at"),
    ]
    for body, code, needle in cases:
        r = client.post("/v1/incidents", json=body, headers=auth)
        assert r.status_code == code, (body, r.text)
        assert needle in r.text
    # Site-B reviewer may not act on site A; a viewer may not write at all.
    r = client.post(
        "/v1/incidents",
        json=_incident(world, deployment=world.deployment_a),
        headers=world.auth(world.reviewer_b),
    )
    assert r.status_code == 403
    r = client.post("/v1/incidents", json=_incident(world), headers=world.auth(world.viewer))
    assert r.status_code == 403
    created = client.post("/v1/incidents", json=_incident(world), headers=auth).json()
    early = (datetime.now(UTC) - timedelta(days=30)).isoformat()
    r = client.post(
        f"/v1/incidents/{created['id']}/reports",
        json={"regime": "fda_803", "reported_at": early},
        headers=auth,
    )
    assert r.status_code == 422 and "before the awareness date" in r.text
    with Session(world.engine) as s:
        assert len(list(s.exec(select(Incident)))) == 1
        assert s.exec(select(Incident)).one().reports == {}
