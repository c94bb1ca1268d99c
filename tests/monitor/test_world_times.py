"""Times a person or a scanner states (a phantom scan, an incident's awareness, a report, a
token's expiry) are refused with a 422 naming the field when UTC cannot hold them or, for times
of the world, when they lie before 1970 or past the monitor's clock plus the allowed skew; never
a 500, and nothing is stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.conftest import Fixture

OUT_OF_UTC = "0001-01-01T00:00:00+14:00"  # before year 1 once in UTC
BAD_WORLD_TIMES = [OUT_OF_UTC, "9999-12-31T23:59:59+00:00", "1969-12-31T23:59:59+00:00"]
SCANNER = {"manufacturer": "SIEMENS", "model": "Biograph Vision 600", "serial": "PV-1001"}


def _count(world: Fixture, table: str) -> int:
    with world.engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def _refused(response: object, field: str) -> None:
    assert response.status_code in (200, 422), response.text  # type: ignore[attr-defined]
    text = response.text  # type: ignore[attr-defined]
    assert field in text, text


@pytest.mark.parametrize("when", BAD_WORLD_TIMES)
def test_a_phantom_scan_time_out_of_range_is_refused(
    client: TestClient, world: Fixture, when: str
) -> None:
    item = {
        "result_id": "cyl-bad-time",
        "site": "site-a",
        "device": SCANNER,
        "kind": "cylinder",
        "acquired_at": when,
        "metrics": {"suv_mean": 1.0},
    }
    r = client.post(
        "/v1/phantom-results", json={"results": [item]}, headers=world.auth(world.probe_a)
    )
    assert r.status_code < 500, r.text
    _refused(r, "acquired_at")
    assert _count(world, "phantom_result") == 0


@pytest.mark.parametrize("when", BAD_WORLD_TIMES)
def test_an_incident_awareness_out_of_range_is_refused(
    client: TestClient, world: Fixture, when: str
) -> None:
    body = {
        "deployment": world.deployment_a,
        "title": "x",
        "seriousness": "malfunction",
        "aware_at": when,
    }
    r = client.post("/v1/incidents", json=body, headers=world.auth(world.reviewer))
    assert r.status_code == 422, r.text
    assert "aware_at" in r.json()["error"]["message"]
    assert _count(world, "incident") == 0


def test_a_report_time_out_of_range_is_refused(client: TestClient, world: Fixture) -> None:
    aware = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    body = {"deployment": world.deployment_a, "title": "x", "seriousness": "malfunction"}
    r = client.post(
        "/v1/incidents", json={**body, "aware_at": aware}, headers=world.auth(world.reviewer)
    )
    assert r.status_code == 201, r.text
    incident = r.json()["id"]
    for when in BAD_WORLD_TIMES:
        r = client.post(
            f"/v1/incidents/{incident}/reports",
            json={"regime": "eu_mdr", "reported_at": when},
            headers=world.auth(world.reviewer),
        )
        assert r.status_code == 422, r.text
        assert "reported_at" in r.json()["error"]["message"]
    listed = client.get("/v1/incidents", headers=world.auth(world.reviewer)).json()
    assert [i["reports"] for i in listed] == [{}]


def test_a_token_expiry_beyond_utc_is_refused(client: TestClient, world: Fixture) -> None:
    tokens_before = _count(world, "api_token")
    r = client.post(
        "/v1/tokens",
        json={"name": "x", "role": "viewer", "expires_at": OUT_OF_UTC},
        headers=world.auth(world.admin),
    )
    assert r.status_code == 422, r.text
    assert "expires_at" in r.json()["error"]["message"]
    assert _count(world, "api_token") == tokens_before
