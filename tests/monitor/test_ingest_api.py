"""The ingest API on SQLite and PostgreSQL: idempotence, per-item validation, auth, paging."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient

from phase4.monitor.store.db import alembic_config
from tests.conftest import Fixture

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def rec(deployment: str, i: int = 0, **extra: Any) -> dict[str, Any]:
    body = {
        "record_id": uuid.uuid4().hex,
        "deployment": deployment,
        "study_pseudonym": f"{i:064x}",
        "acquired_at": (T0 + timedelta(minutes=i)).isoformat(),
        "inferred_at": (T0 + timedelta(minutes=i, seconds=30)).isoformat(),
        "features": {"injected_activity_mbq": 250.0 + i, "reconstruction": "OSEM"},
        "outputs": {"malignancy_score": 0.5, "lesion_count": 2},
        "latency_s": 0.8,
    }
    body.update(extra)
    return body


def stored_count(world: Fixture) -> int:
    with world.engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM inference_record")).scalar_one()


def test_records_are_stored_and_resending_is_a_no_op(client: TestClient, world: Fixture) -> None:
    batch = [rec(world.deployment_a, i) for i in range(50)]
    first = client.post("/v1/records", json={"records": batch}, headers=world.auth(world.probe_a))
    assert first.status_code == 200, first.text
    assert first.json()["created"] == 50
    again = client.post("/v1/records", json={"records": batch}, headers=world.auth(world.probe_a))
    assert again.status_code == 200
    assert again.json() == {
        "created": 0,
        "duplicates": 50,
        "rejected": 0,
        "results": [
            {"index": i, "id": r["record_id"], "status": "duplicate", "error": None}
            for i, r in enumerate(batch)
        ],
    }
    # The same id twice in one batch is stored once as well.
    twin = rec(world.deployment_a, 99)
    dup = client.post(
        "/v1/records", json={"records": [twin, twin]}, headers=world.auth(world.probe_a)
    )
    assert [r["status"] for r in dup.json()["results"]] == ["created", "duplicate"]
    assert stored_count(world) == 51


def test_stored_record_round_trips_with_utc_times(client: TestClient, world: Fixture) -> None:
    r = rec(world.deployment_a, 3, acquired_at="2026-03-02T10:00:00+01:00")
    client.post("/v1/records", json={"records": [r]}, headers=world.auth(world.probe_a))
    page = client.get(
        "/v1/records", params={"deployment": world.deployment_a}, headers=world.auth(world.viewer)
    ).json()
    (got,) = page["records"]
    assert got["record_id"] == r["record_id"]
    assert datetime.fromisoformat(got["acquired_at"]) == datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    assert got["features"] == r["features"]
    assert got["outputs"] == r["outputs"]
    assert got["latency_s"] == 0.8


def test_mixed_batch_rejects_bad_items_clearly_and_stores_good_ones(
    client: TestClient, world: Fixture
) -> None:
    good1, good2 = rec(world.deployment_a, 1), rec(world.deployment_a, 2)
    naive = rec(world.deployment_a, 3, acquired_at="2026-03-02T09:00:00")
    unknown = rec("no-such-deployment", 4)
    phi = rec(world.deployment_a, 5, features={"PatientName": "DOE^JANE", "weight_kg": 70})
    nan = rec(world.deployment_a, 6, outputs={"score": float("nan")})
    extra = rec(world.deployment_a, 7, patient_id="123")
    not_a_dict = "hello"
    items = [good1, naive, unknown, good2, phi, nan, extra, not_a_dict]
    # NaN is not JSON: send the body as text the way a sloppy client would.
    import json

    response = client.post(
        "/v1/records",
        content=json.dumps({"records": items}),
        headers={**world.auth(world.probe_a), "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    statuses = [r["status"] for r in body["results"]]
    assert statuses == [
        "created",
        "rejected",
        "rejected",
        "created",
        "rejected",
        "rejected",
        "rejected",
        "rejected",
    ]
    errors = {r["index"]: r["error"] for r in body["results"]}
    assert "acquired_at" in errors[1] and "timezone" in errors[1]
    assert "unknown deployment 'no-such-deployment'" in errors[2]
    assert "patient identifiers (PatientName)" in errors[4]
    assert "outputs.score is nan" in errors[5]
    assert "patient_id" in errors[6] and "Extra inputs" in errors[6]
    assert errors[7]
    assert body["results"][4]["id"] == phi["record_id"]
    assert (body["created"], body["rejected"]) == (2, 6)
    assert stored_count(world) == 2
    with world.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT features FROM inference_record")).scalars().all()
    assert all("DOE" not in str(f) for f in stored)


def test_batch_over_the_limit_is_refused_whole(client: TestClient, world: Fixture) -> None:
    batch = [rec(world.deployment_a, i) for i in range(1001)]
    response = client.post(
        "/v1/records", json={"records": batch}, headers=world.auth(world.probe_a)
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "batch_too_large"
    assert "1001 items" in response.json()["error"]["message"]
    assert stored_count(world) == 0


def test_auth_missing_invalid_wrong_site_and_wrong_role(client: TestClient, world: Fixture) -> None:
    body = {"records": [rec(world.deployment_a)]}
    missing = client.post("/v1/records", json=body)
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "unauthorized"
    assert missing.headers["www-authenticate"] == "Bearer"
    invalid = client.post("/v1/records", json=body, headers=world.auth("p4_not-a-real-token"))
    assert invalid.status_code == 401
    assert "invalid" in invalid.json()["error"]["message"]
    wrong_site = client.post("/v1/records", json=body, headers=world.auth(world.probe_b))
    assert wrong_site.status_code == 403
    assert "lesion-ai@site-a" in wrong_site.json()["error"]["message"]
    wrong_role = client.post("/v1/records", json=body, headers=world.auth(world.viewer))
    assert wrong_role.status_code == 403
    assert "role viewer" in wrong_role.json()["error"]["message"]
    assert stored_count(world) == 0
    # A probe token may not read another site's records, nor create deployments.
    other = client.get(
        "/v1/records", params={"deployment": world.deployment_b}, headers=world.auth(world.probe_a)
    )
    assert other.status_code == 403
    create = client.post(
        "/v1/deployments",
        json={"id": "x@site-a", "site_id": "site-a", "model_name": "m", "model_version": "1"},
        headers=world.auth(world.probe_a),
    )
    assert create.status_code == 403
    for path in ("/v1/deployments", f"/v1/records?deployment={world.deployment_a}"):
        assert client.get(path).status_code == 401


def test_admin_may_write_any_site_and_create_deployments(
    client: TestClient, world: Fixture
) -> None:
    created = client.post(
        "/v1/deployments",
        json={
            "id": "denoiser@site-c",
            "site_id": "site-c",
            "model_name": "PETDenoise",
            "model_version": "2.0",
            "reason": "new product",
        },
        headers=world.auth(world.admin),
    )
    assert created.status_code == 201, created.text
    assert created.json()["records_total"] == 0
    response = client.post(
        "/v1/records", json={"records": [rec("denoiser@site-c")]}, headers=world.auth(world.admin)
    )
    assert response.json()["created"] == 1
    bad = client.post(
        "/v1/deployments",
        json={"id": "bad id!", "site_id": "site-c", "model_name": "m", "model_version": "1"},
        headers=world.auth(world.admin),
    )
    assert bad.status_code == 422
    assert "deployment id 'bad id!' is not valid" in bad.json()["error"]["message"]


def test_deployments_list_respects_site_and_counts_records(
    client: TestClient, world: Fixture
) -> None:
    client.post(
        "/v1/records",
        json={"records": [rec(world.deployment_a, i) for i in range(3)]},
        headers=world.auth(world.probe_a),
    )
    mine = client.get("/v1/deployments", headers=world.auth(world.probe_a)).json()
    assert [(d["id"], d["records_total"]) for d in mine] == [("lesion-ai@site-a", 3)]
    everything = client.get("/v1/deployments", headers=world.auth(world.viewer)).json()
    assert [d["id"] for d in everything] == ["lesion-ai@site-a", "lesion-ai@site-b"]
    assert everything[0]["model_version"] == "2.1.0"


def test_records_are_paged_in_acquisition_order(client: TestClient, world: Fixture) -> None:
    batch = [rec(world.deployment_a, i) for i in range(25)]
    batch.reverse()  # arrival order is not acquisition order
    client.post("/v1/records", json={"records": batch}, headers=world.auth(world.probe_a))
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"deployment": world.deployment_a, "limit": 10}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/records", params=params, headers=world.auth(world.viewer)).json()
        seen += [r["acquired_at"] for r in page["records"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert len(seen) == 25 and seen == sorted(seen)
    since = (T0 + timedelta(minutes=20)).isoformat()
    tail = client.get(
        "/v1/records",
        params={"deployment": world.deployment_a, "since": since},
        headers=world.auth(world.viewer),
    ).json()
    assert len(tail["records"]) == 5
    bad = client.get(
        "/v1/records",
        params={"deployment": world.deployment_a, "cursor": "zzz"},
        headers=world.auth(world.viewer),
    )
    assert bad.status_code == 422
    unknown = client.get(
        "/v1/records", params={"deployment": "nope"}, headers=world.auth(world.viewer)
    )
    assert unknown.status_code == 404


def test_feedback_by_record_id_or_by_study_pseudonym(client: TestClient, world: Fixture) -> None:
    r1, r2 = rec(world.deployment_a, 1), rec(world.deployment_a, 2)
    client.post("/v1/records", json={"records": [r1, r2]}, headers=world.auth(world.probe_a))
    given = (T0 + timedelta(days=30)).isoformat()
    items = [
        {
            "feedback_id": "fb-1",
            "record_id": r1["record_id"],
            "verdict": "edited",
            "dice": 0.81,
            "given_at": given,
        },
        {
            "feedback_id": "fb-2",
            "deployment": world.deployment_a,
            "study_pseudonym": r2["study_pseudonym"],
            "ground_truth": {"malignant": True},
            "given_at": given,
        },
        {"feedback_id": "fb-3", "record_id": "never-sent", "given_at": given},
        {"feedback_id": "fb-4", "record_id": r1["record_id"], "dice": 1.5, "given_at": given},
        {"feedback_id": "fb-5", "given_at": given},
    ]
    response = client.post(
        "/v1/feedback", json={"feedback": items}, headers=world.auth(world.probe_a)
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == [
        "created",
        "created",
        "rejected",
        "rejected",
        "rejected",
    ]
    assert "no record 'never-sent'" in results[2]["error"]
    assert "dice" in results[3]["error"]
    assert "either record_id, or deployment and study_pseudonym" in results[4]["error"]
    again = client.post(
        "/v1/feedback", json={"feedback": items[:2]}, headers=world.auth(world.probe_a)
    )
    assert again.json()["duplicates"] == 2
    with world.engine.connect() as conn:
        rows = dict(conn.execute(sa.text("SELECT feedback_id, record_id FROM feedback")).all())
    assert rows == {"fb-1": r1["record_id"], "fb-2": r2["record_id"]}
    other_site = client.post(
        "/v1/feedback", json={"feedback": items[:1]}, headers=world.auth(world.probe_b)
    )
    assert other_site.status_code == 403


def test_openapi_documents_every_response_including_errors(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            codes = set(op["responses"])
            assert any(c.startswith("2") for c in codes), (method, path)
            if path.startswith("/v1/"):
                assert {"401", "403"} <= codes, (method, path, codes)
                for code in codes - {"200", "201"}:
                    schema = op["responses"][code]["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (path, code)


def test_healthz_and_metrics(client: TestClient, world: Fixture) -> None:
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None and health.json()["schema_revision"] == head
    client.post(
        "/v1/records",
        json={"records": [rec(world.deployment_a, i) for i in range(4)] + [{"bad": 1}]},
        headers=world.auth(world.probe_a),
    )
    text = client.get("/metrics").text
    assert 'phase4_records_stored_total{deployment="lesion-ai@site-a",site="site-a"} 4.0' in text
    assert 'phase4_records_stored_total{deployment="lesion-ai@site-b",site="site-b"} 0.0' in text
    assert 'phase4_ingest_items_total{kind="records",status="rejected"} 1.0' in text
    assert 'phase4_deployment_last_record_age_seconds{deployment="lesion-ai@site-a"' in text
    assert 'phase4_alerts_open{severity="critical"} 0.0' in text
