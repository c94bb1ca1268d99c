"""Acknowledge and resolve alerts by a named person with a reason, through the API, audited."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from phase4.monitor.store.audit import verify_chain
from phase4.monitor.store.db import session_scope
from phase4.monitor.store.models import Alert, AuditEntry
from tests.conftest import Fixture


def _open_alert(world: Fixture, deployment: str, stream: str = "features.injected_mbq") -> int:
    with session_scope(world.engine) as s:
        alert = Alert(
            deployment_id=deployment,
            stream=stream,
            cause="cusum",
            severity="warning",
            title="Injected activity rose",
            evidence={"statistic": 9.1, "threshold": 5.2},
        )
        s.add(alert)
        s.flush()
        return alert.id or 0


def test_acknowledge_then_resolve_records_who_why_and_audits(
    client: TestClient, world: Fixture
) -> None:
    alert_id = _open_alert(world, world.deployment_a)
    r = client.post(
        f"/v1/alerts/{alert_id}/acknowledge",
        json={"reason": "Checking the dose calibrator log"},
        headers=world.auth(world.reviewer),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "acknowledged"
    assert body["acknowledged_by"] == "dr-curie"
    assert body["acknowledgement"] == "Checking the dose calibrator log"

    again = client.post(
        f"/v1/alerts/{alert_id}/acknowledge",
        json={"reason": "twice"},
        headers=world.auth(world.reviewer),
    )
    assert again.status_code == 409
    assert "already acknowledged" in again.json()["error"]["message"]

    r = client.post(
        f"/v1/alerts/{alert_id}/resolve",
        json={"reason": "Calibrator constancy failed; recalibrated on 12 March"},
        headers=world.auth(world.reviewer),
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "resolved"
    assert r.json()["resolved_by"] == "dr-curie"

    detail = client.get(f"/v1/alerts/{alert_id}", headers=world.auth(world.viewer)).json()
    assert detail["resolution"].startswith("Calibrator constancy failed")
    assert detail["acknowledged_by"] == "dr-curie"

    with Session(world.engine) as s:
        entries = list(
            s.exec(
                select(AuditEntry)
                .where(AuditEntry.entity_type == "alert", AuditEntry.entity_id == str(alert_id))
                .order_by(col(AuditEntry.seq))
            )
        )
        assert [e.action for e in entries] == ["alert.acknowledge", "alert.resolve"]
        assert entries[0].actor == "dr-curie"
        assert entries[0].old_value is not None and entries[0].old_value["status"] == "open"
        assert entries[1].new_value is not None and entries[1].new_value["status"] == "resolved"
        assert entries[1].reason is not None and "recalibrated" in entries[1].reason
        assert verify_chain(s).ok


def test_resolve_directly_from_open_and_never_reopen(client: TestClient, world: Fixture) -> None:
    alert_id = _open_alert(world, world.deployment_b)
    r = client.post(
        f"/v1/alerts/{alert_id}/resolve",
        json={"reason": "Known reconstruction upgrade; revalidated"},
        headers=world.auth(world.reviewer_b),
    )
    assert r.status_code == 200, r.text
    assert r.json()["acknowledged_by"] == "physicist-b"
    for verb in ("acknowledge", "resolve"):
        r = client.post(
            f"/v1/alerts/{alert_id}/{verb}", json={"reason": "x"}, headers=world.auth(world.admin)
        )
        assert r.status_code == 409, verb
        assert "already resolved" in r.json()["error"]["message"]


def test_who_may_act_and_bad_requests(client: TestClient, world: Fixture) -> None:
    alert_a = _open_alert(world, world.deployment_a)
    body = {"reason": "seen"}
    for token, code in ((world.viewer, 403), (world.probe_a, 403), (world.reviewer_b, 403)):
        r = client.post(f"/v1/alerts/{alert_a}/acknowledge", json=body, headers=world.auth(token))
        assert r.status_code == code
        assert r.json()["error"]["code"] == "forbidden"
    r = client.post(f"/v1/alerts/{alert_a}/acknowledge", json=body)
    assert r.status_code == 401
    r = client.post(
        f"/v1/alerts/{alert_a}/acknowledge", json={"reason": ""}, headers=world.auth(world.admin)
    )
    assert r.status_code == 422
    r = client.post(
        f"/v1/alerts/{alert_a}/acknowledge", json={"reason": "   "}, headers=world.auth(world.admin)
    )
    assert r.status_code == 422
    assert "reason is required" in r.json()["error"]["message"]
    r = client.post("/v1/alerts/999999/acknowledge", json=body, headers=world.auth(world.admin))
    assert r.status_code == 404
    # Nothing changed by the refused attempts.
    with Session(world.engine) as s:
        alert = s.get(Alert, alert_a)
        assert alert is not None and alert.status == "open" and alert.acknowledged_by is None
