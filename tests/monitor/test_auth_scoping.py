"""Device alerts (phantom QC, canary) belong to their device's site in every API route; row ids
beyond the id columns (32-bit on PostgreSQL) are refused as malformed (422), never a 500."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from phase4.monitor.store.db import session_scope
from phase4.monitor.store.models import Alert, Device, Incident, NotificationAttempt
from tests.conftest import Fixture

MAX_DB_ID = 2**31 - 1  # ids are INTEGER columns (32-bit on PostgreSQL)
RECIPIENT = "qc-physicist@site-a.example"


def device_alert(world: Fixture, site: str, recipient: str = RECIPIENT) -> int:
    """A phantom QC alert of a scanner at ``site`` (no deployment), with a notification."""
    with session_scope(world.engine) as s:
        device = Device(site_id=site, manufacturer="Siemens", model="Vision", serial=f"S-{site}")
        s.add(device)
        s.flush()
        alert = Alert(
            deployment_id=None,
            device_id=device.id,
            stream="phantom.flood.integral_uniformity_cfov",
            cause="phantom_qc",
            severity="critical",
            title="Flood uniformity beyond action level",
            evidence={"metric": "integral_uniformity_cfov", "value": 6.1},
        )
        s.add(alert)
        s.flush()
        s.add(
            NotificationAttempt(
                alert_id=alert.id or 0, channel="email", recipient=recipient, ok=True
            )
        )
        return alert.id or 0


def test_another_sites_probe_cannot_read_a_device_alert_or_its_recipients(
    client: TestClient, world: Fixture
) -> None:
    alert_a = device_alert(world, "site-a")
    r = client.get(f"/v1/alerts/{alert_a}", headers=world.auth(world.probe_b))
    assert r.status_code == 403, r.text
    assert RECIPIENT not in r.text
    assert r.json()["error"]["code"] == "forbidden"
    r = client.get(f"/v1/alerts/{alert_a}/report", headers=world.auth(world.probe_b))
    assert r.status_code == 403
    listed = client.get("/v1/alerts", headers=world.auth(world.probe_b)).json()
    assert alert_a not in [a["id"] for a in listed]
    listed = client.get("/v1/alerts", headers=world.auth(world.reviewer_b)).json()
    assert alert_a not in [a["id"] for a in listed]
    # The site's own probe and every-site readers still see it, with its recipients.
    for token in (world.probe_a, world.viewer, world.reviewer, world.admin):
        r = client.get(f"/v1/alerts/{alert_a}", headers=world.auth(token))
        assert r.status_code == 200, r.text
        assert [n["recipient"] for n in r.json()["notifications"]] == [RECIPIENT]
        listed = client.get("/v1/alerts", headers=world.auth(token)).json()
        assert alert_a in [a["id"] for a in listed]


def test_a_site_reviewer_acts_on_its_own_device_alerts_and_not_anothers(
    client: TestClient, world: Fixture
) -> None:
    alert_b = device_alert(world, "site-b", "qc@site-b.example")
    alert_a = device_alert(world, "site-a")
    r = client.post(
        f"/v1/alerts/{alert_b}/acknowledge",
        json={"reason": "Repeating the flood with a fresh Co-57 sheet"},
        headers=world.auth(world.reviewer_b),
    )
    assert r.status_code == 200, r.text
    assert r.json()["acknowledged_by"] == "physicist-b"
    r = client.post(
        f"/v1/alerts/{alert_b}/resolve",
        json={"reason": "PMT retuned by service; flood within tolerance"},
        headers=world.auth(world.reviewer_b),
    )
    assert r.status_code == 200, r.text
    for verb in ("acknowledge", "resolve"):
        r = client.post(
            f"/v1/alerts/{alert_a}/{verb}",
            json={"reason": "not mine"},
            headers=world.auth(world.reviewer_b),
        )
        assert r.status_code == 403, r.text
    with Session(world.engine) as s:
        alert = s.get(Alert, alert_a)
        assert alert is not None and alert.status == "open" and alert.acknowledged_by is None


def test_an_incident_links_only_an_alert_of_its_own_site(
    client: TestClient, world: Fixture
) -> None:
    alert_a = device_alert(world, "site-a")
    alert_b = device_alert(world, "site-b", "qc@site-b.example")
    body = {
        "deployment": world.deployment_b,
        "title": "Lesion missed after a detector fault",
        "seriousness": "malfunction",
        "aware_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
    }
    r = client.post(
        "/v1/incidents", json={**body, "alert_id": alert_a}, headers=world.auth(world.reviewer_b)
    )
    assert r.status_code == 403, r.text
    r = client.post(
        "/v1/incidents", json={**body, "alert_id": alert_a}, headers=world.auth(world.admin)
    )
    assert r.status_code == 422, r.text
    assert "site-a" in r.json()["error"]["message"]
    r = client.post(
        "/v1/incidents", json={**body, "alert_id": alert_b}, headers=world.auth(world.reviewer_b)
    )
    assert r.status_code == 201, r.text
    with Session(world.engine) as s:
        assert [i.alert_id for i in s.exec(select(Incident))] == [alert_b]


HUGE = "99999999999999999999"  # beyond int64


REASON = {"reason": "checked"}
REPORT = {"regime": "eu_mdr", "reported_at": "2026-01-02T00:00:00Z"}


@pytest.mark.parametrize(
    ("method", "path", "body", "found"),
    [
        ("GET", "/v1/alerts/{id}", None, 404),
        ("GET", "/v1/alerts/{id}/report", None, 404),
        ("POST", "/v1/alerts/{id}/acknowledge", REASON, 404),
        ("POST", "/v1/alerts/{id}/resolve", REASON, 404),
        ("POST", "/v1/incidents/{id}/reports", REPORT, 404),
        ("POST", "/v1/incidents/{id}/close", {"corrective_action": "x"}, 404),
        ("GET", "/v1/phantom-results?device_id={id}", None, 200),
    ],
)
def test_ids_beyond_the_id_column_are_malformed_not_server_errors(
    client: TestClient,
    world: Fixture,
    method: str,
    path: str,
    body: dict[str, str] | None,
    found: int,
) -> None:
    for value in (HUGE, str(2**63 - 1), str(MAX_DB_ID + 1), "0", "-1"):
        r = client.request(
            method, path.format(id=value), json=body, headers=world.auth(world.admin)
        )
        assert r.status_code == 422, (path, value, r.text)
        assert r.json()["error"]["code"] == "invalid_request"
    # The largest id is well formed: not found (or an empty list), not an error.
    r = client.request(
        method, path.format(id=MAX_DB_ID), json=body, headers=world.auth(world.admin)
    )
    assert r.status_code == found, r.text


def test_ids_beyond_the_id_column_in_bodies_are_malformed(
    client: TestClient, world: Fixture
) -> None:
    incident = {
        "deployment": world.deployment_a,
        "title": "t",
        "seriousness": "malfunction",
        "aware_at": "2026-01-01T00:00:00Z",
        "alert_id": int(HUGE),
    }
    r = client.post("/v1/incidents", json=incident, headers=world.auth(world.admin))
    assert r.status_code == 422, r.text
    assert "alert_id" in r.json()["error"]["message"]
    tolerance = {
        "kind": "flood",
        "metric": "integral_uniformity_cfov",
        "device_id": int(HUGE),
        "upper_tolerance": 5.0,
        "reason": "NEMA NU 1 acceptance",
    }
    r = client.post("/v1/phantom-tolerances", json=tolerance, headers=world.auth(world.admin))
    assert r.status_code == 422, r.text
    assert "device_id" in r.json()["error"]["message"]
