"""Tokens: listed without secrets, revoked with a reason, expiring; every change audited; a
revoked or expired token is refused by the API and ends the dashboard session."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from phase4.monitor.store.audit import verify_chain
from phase4.monitor.store.auth import token_digest
from phase4.monitor.store.models import ApiToken, AuditEntry
from tests.conftest import Fixture

ORIGIN = {"Origin": "http://testserver"}


def _set(world: Fixture, name: str, **values: object) -> None:
    with world.engine.begin() as conn:
        conn.execute(sa.update(ApiToken).where(col(ApiToken.name) == name).values(**values))


def _row(world: Fixture, name: str) -> ApiToken:
    with Session(world.engine) as s:
        (row,) = s.exec(select(ApiToken).where(ApiToken.name == name)).all()
        return row


def test_admin_lists_creates_and_revokes_tokens_audited(client: TestClient, world: Fixture) -> None:
    admin = world.auth(world.admin)
    r = client.post(
        "/v1/tokens",
        json={"name": "probe-a2", "role": "probe", "site_id": "site-a", "expires_in_days": 30},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    assert r.headers["cache-control"] == "no-store"
    created = r.json()
    raw = created["token"]
    assert raw.startswith("p4_") and created["state"] == "active"
    expires = datetime.fromisoformat(created["expires_at"])
    assert timedelta(days=29) < expires - datetime.now(UTC) <= timedelta(days=30)
    assert client.get("/v1/alerts", headers=world.auth(raw)).status_code == 200

    listing = client.get("/v1/tokens", headers=admin)
    assert listing.status_code == 200
    assert raw not in listing.text and token_digest(raw) not in listing.text
    assert world.probe_a not in listing.text and token_digest(world.probe_a) not in listing.text
    by_name = {t["name"]: t for t in listing.json()}
    assert set(by_name) == {"probe-a", "probe-b", "viewer", "admin", "dr-curie", "physicist-b"} | {
        "probe-a2"
    }
    assert by_name["probe-a2"]["site_id"] == "site-a" and by_name["probe-a2"]["role"] == "probe"

    token_id = created["id"]
    r = client.post(f"/v1/tokens/{token_id}/revoke", json={"reason": ""}, headers=admin)
    assert r.status_code == 422
    assert client.get("/v1/alerts", headers=world.auth(raw)).status_code == 200
    r = client.post(
        f"/v1/tokens/{token_id}/revoke",
        json={"reason": "scanner workstation decommissioned"},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "revoked" and r.json()["revoked_at"] is not None
    refused = client.get("/v1/alerts", headers=world.auth(raw))
    assert refused.status_code == 401
    assert refused.json()["error"]["message"] == "token revoked"
    again = client.post(f"/v1/tokens/{token_id}/revoke", json={"reason": "x"}, headers=admin)
    assert again.status_code == 409 and "already revoked" in again.json()["error"]["message"]
    missing = client.post("/v1/tokens/424242/revoke", json={"reason": "x"}, headers=admin)
    assert missing.status_code == 404

    with Session(world.engine) as s:
        entries = list(
            s.exec(
                select(AuditEntry)
                .where(AuditEntry.entity_type == "api_token")
                .where(AuditEntry.entity_id == str(token_id))
                .order_by(col(AuditEntry.seq))
            )
        )
        assert [(e.action, e.actor) for e in entries] == [
            ("token.create", "token:admin"),
            ("token.revoke", "token:admin"),
        ]
        assert entries[1].reason == "scanner workstation decommissioned"
        assert raw not in str([e.new_value for e in entries])
        assert verify_chain(s).ok


def test_only_admins_manage_tokens_and_bad_requests_are_named(
    client: TestClient, world: Fixture
) -> None:
    body = {"name": "x", "role": "viewer"}
    for token in (world.viewer, world.reviewer, world.probe_a):
        assert client.get("/v1/tokens", headers=world.auth(token)).status_code == 403
        assert client.post("/v1/tokens", json=body, headers=world.auth(token)).status_code == 403
        r = client.post("/v1/tokens/1/revoke", json={"reason": "x"}, headers=world.auth(token))
        assert r.status_code == 403
    admin = world.auth(world.admin)
    cases = [
        ({"name": "p", "role": "probe"}, "needs --site"),
        ({"name": "p", "role": "viewer", "site_id": "nowhere"}, "unknown site"),
        ({"name": "p", "role": "superuser"}, "role"),
        (
            {"name": "p", "role": "viewer", "expires_at": "2020-01-01T00:00:00Z"},
            "not in the future",
        ),
        ({"name": "p", "role": "viewer", "expires_at": "2030-01-01T00:00:00"}, "expires_at"),
        ({"name": "p", "role": "viewer", "expires_in_days": 0}, "expires_in_days"),
        (
            {"name": "p", "role": "viewer", "expires_in_days": 3, "expires_at": "2030-01-01Z"},
            "expires_at",
        ),
        ({"name": "12", "role": "viewer"}, "is a number"),
        ({"name": "p", "role": "viewer", "secret": "mine"}, "secret"),
    ]
    for body, words in cases:
        r = client.post("/v1/tokens", json=body, headers=admin)
        assert r.status_code == 422, (body, r.text)
        assert words in r.json()["error"]["message"], (body, r.text)
    r = client.post(
        "/v1/tokens",
        json={
            "name": "p",
            "role": "viewer",
            "expires_in_days": 3,
            "expires_at": "2030-01-01T00:00Z",
        },
        headers=admin,
    )
    assert r.status_code == 422 and "not both" in r.json()["error"]["message"]
    with Session(world.engine) as s:
        assert len(s.exec(select(ApiToken)).all()) == 6  # nothing was created


def test_an_expired_token_is_refused_by_the_api_and_the_dashboard(
    client: TestClient, world: Fixture
) -> None:
    r = client.post(
        "/ui/login", data={"token": world.viewer}, headers=ORIGIN, follow_redirects=False
    )
    assert r.status_code == 303
    assert client.get("/ui", follow_redirects=False).status_code == 200
    _set(world, "viewer", expires_at=datetime.now(UTC) - timedelta(seconds=1))
    r = client.get("/v1/alerts", headers=world.auth(world.viewer))
    assert r.status_code == 401
    assert r.json()["error"]["message"] == "token expired"
    assert r.headers["www-authenticate"].startswith("Bearer")
    page = client.get("/ui", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/ui/login")
    r = client.post(
        "/ui/login", data={"token": world.viewer}, headers=ORIGIN, follow_redirects=False
    )
    assert r.status_code == 401 and "token expired" in r.text
    # Not yet expired: accepted.
    _set(world, "viewer", expires_at=datetime.now(UTC) + timedelta(hours=1))
    assert client.get("/v1/alerts", headers=world.auth(world.viewer)).status_code == 200


def test_a_revoked_token_ends_the_dashboard_session(client: TestClient, world: Fixture) -> None:
    r = client.post(
        "/ui/login", data={"token": world.reviewer}, headers=ORIGIN, follow_redirects=False
    )
    assert r.status_code == 303
    assert client.get("/ui/alerts", follow_redirects=False).status_code == 200
    token_id = _row(world, "dr-curie").id
    r = client.post(
        f"/v1/tokens/{token_id}/revoke",
        json={"reason": "left the department"},
        headers=world.auth(world.admin),
    )
    assert r.status_code == 200
    page = client.get("/ui/alerts", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/ui/login")


def test_last_use_is_recorded_at_most_once_a_minute(client: TestClient, world: Fixture) -> None:
    assert _row(world, "probe-a").last_used_at is None
    assert client.get("/v1/alerts", headers=world.auth(world.probe_a)).status_code == 200
    first = _row(world, "probe-a").last_used_at
    assert first is not None and datetime.now(UTC) - first < timedelta(seconds=30)
    assert client.get("/v1/alerts", headers=world.auth(world.probe_a)).status_code == 200
    assert _row(world, "probe-a").last_used_at == first  # within the minute: not rewritten
    earlier = datetime.now(UTC) - timedelta(minutes=2)
    _set(world, "probe-a", last_used_at=earlier)
    assert client.get("/v1/alerts", headers=world.auth(world.probe_a)).status_code == 200
    latest = _row(world, "probe-a").last_used_at
    assert latest is not None and latest > earlier + timedelta(minutes=1)
    listed = client.get("/v1/tokens", headers=world.auth(world.admin)).json()
    (probe,) = [t for t in listed if t["name"] == "probe-a"]
    assert datetime.fromisoformat(probe["last_used_at"]) == latest
    assert _row(world, "viewer").last_used_at is None  # other tokens untouched
