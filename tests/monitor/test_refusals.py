"""A refused action (``ActionRefused``) raised anywhere in a route is answered by the app's one
handler: the JSON error with the refusal's status and code, and nothing the route wrote kept."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from phase4.monitor.api.deps import SessionDep
from phase4.monitor.core.refusals import ActionRefused
from phase4.monitor.domain.registry import RegistryError
from phase4.monitor.store.models import Site
from tests.conftest import Fixture


def _refusing_route(session: SessionDep, status: int) -> dict[str, Any]:
    session.add(Site(id=f"written-{status}", name="written before the refusal"))
    session.flush()
    if status == 0:
        raise RegistryError("a registry refusal, 422 by default")
    raise ActionRefused(f"refused with {status}", status_code=status)


@pytest.mark.parametrize(
    ("status", "code"), [(404, "not_found"), (409, "conflict"), (422, "invalid_request"), (0, "")]
)
def test_a_refusal_is_one_json_error_and_the_route_writes_nothing(
    client: TestClient, world: Fixture, status: int, code: str
) -> None:
    client.app.add_api_route("/test/refuse/{status}", _refusing_route, methods=["POST"])  # type: ignore[attr-defined]
    r = client.post(f"/test/refuse/{status}")
    expected = status or 422
    assert r.status_code == expected
    message = "a registry refusal, 422 by default" if status == 0 else f"refused with {status}"
    assert r.json() == {
        "error": {"code": code or "invalid_request", "message": message, "details": None}
    }
    with Session(world.engine) as s:
        assert s.get(Site, f"written-{status}") is None


def test_route_refusals_keep_their_answers(client: TestClient, world: Fixture) -> None:
    """Refusals the routes used to wrap by hand, now raised through: same status and body."""
    reviewer = world.auth(world.reviewer)
    missing = client.post("/v1/alerts/999/acknowledge", json={"reason": "x"}, headers=reviewer)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    signed = client.post("/v1/phantom-results/none/sign-off", json={}, headers=reviewer)
    assert signed.status_code == 404 and signed.json()["error"]["code"] == "not_found"
    unordered = client.post(
        "/v1/phantom-tolerances",
        json={
            "kind": "flood",
            "metric": "iu",
            "reason": "r",
            "lower_tolerance": 2.0,
            "upper_tolerance": 1.0,
        },
        headers=reviewer,
    )
    assert unordered.status_code == 422
    assert "levels must be ordered" in unordered.json()["error"]["message"]
    taken = client.post(
        "/v1/deployments",
        json={
            "id": world.deployment_a,
            "site_id": "site-b",
            "model_name": "m",
            "model_version": "1",
        },
        headers=world.auth(world.admin),
    )
    assert taken.status_code == 422
    assert taken.json()["error"] == {
        "code": "invalid_request",
        "message": f"deployment {world.deployment_a!r} already exists for another site or "
        "model version",
        "details": None,
    }
    revoke = client.post(
        "/v1/tokens/999999/revoke", json={"reason": "gone"}, headers=world.auth(world.admin)
    )
    assert revoke.status_code == 404 and revoke.json()["error"]["code"] == "not_found"
