"""Ingest refuses what the store or its readers cannot use, per item and naming the field and
the limit; the batch's valid items are stored and nothing already stored changes.

Runs on SQLite and PostgreSQL (the db_url fixture)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from phase4.monitor.core.settings import Settings
from phase4.service import create_app
from tests.conftest import Fixture
from tests.monitor.test_ingest_api import rec


def stored(world: Fixture) -> list[tuple[Any, ...]]:
    """Every stored record, as the table holds it (order of insertion)."""
    with world.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT record_id, features, outputs, acquired_at FROM inference_record ORDER BY id"
            )
        ).all()
    return [(r[0], r[1] if isinstance(r[1], dict) else json.loads(r[1]), str(r[3])) for r in rows]


def post_raw(client: TestClient, world: Fixture, items: list[Any]) -> dict[str, Any]:
    """POST items as JSON text (so that NaN, 1e400 and 400-digit integers go over the wire)."""
    response = client.post(
        "/v1/records",
        content=json.dumps({"records": items}),
        headers={**world.auth(world.probe_a), "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    return response.json()


def errors(body: dict[str, Any]) -> dict[int, str]:
    return {r["index"]: r["error"] for r in body["results"] if r["status"] == "rejected"}


@pytest.fixture
def tight(world: Fixture, db_url: str) -> Iterator[TestClient]:
    """A monitor with small limits, to reach each one cheaply."""
    settings = Settings(
        database_url=db_url,
        detection_interval_s=0,
        max_features_per_record=5,
        max_outputs_per_record=3,
        max_string_chars=50,
        max_json_depth=4,
        max_future_skew_s=3600,
        max_streams_per_deployment=8,
    )
    with TestClient(create_app(settings, engine=world.engine)) as c:
        yield c


def test_numbers_detection_cannot_use_are_refused_per_item(
    client: TestClient, world: Fixture
) -> None:
    before = [rec(world.deployment_a, 0)]
    post_raw(client, world, before)
    snapshot = stored(world)
    huge = 10**400
    items = [
        rec(world.deployment_a, 1, features={"activity_mbq": huge}),
        rec(world.deployment_a, 2, outputs={"score": -huge}),
        rec(world.deployment_a, 3, outputs={"lesions": [{"suv": huge}]}),
        rec(world.deployment_a, 4),
        rec(world.deployment_a, 5, features={"big_but_a_double": 10**300, "flag": True}),
    ]
    text = json.dumps({"records": items}).replace('"MARK"', "1e400")
    response = client.post(
        "/v1/records",
        content=text,
        headers={**world.auth(world.probe_a), "Content-Type": "application/json"},
    )
    body = response.json()
    assert [r["status"] for r in body["results"]] == [
        "rejected",
        "rejected",
        "rejected",
        "created",
        "created",
    ]
    why = errors(body)
    assert why[0].startswith("features.activity_mbq: integer of 401 digits")
    assert "beyond the range of a double" in why[0]
    assert why[1].startswith("outputs.score: integer of 401 digits")
    assert why[2].startswith("outputs.lesions[0].suv: integer")
    after = stored(world)
    assert after[: len(snapshot)] == snapshot
    assert [r[0] for r in after[1:]] == [items[3]["record_id"], items[4]["record_id"]]
    # The booleans stay booleans (the contract: numbers, strings, booleans), not 1.
    assert after[2][1]["flag"] is True
    # Overflowing floats (1e400 parses as inf) and NaN are refused too.
    inf = rec(world.deployment_a, 6, features={"x": "MARK"})
    text = json.dumps({"records": [inf]}).replace('"MARK"', "1e400")
    refused = client.post(
        "/v1/records",
        content=text,
        headers={**world.auth(world.probe_a), "Content-Type": "application/json"},
    ).json()
    assert refused["rejected"] == 1 and "features.x" in refused["results"][0]["error"]
    assert len(stored(world)) == 3


def test_a_string_in_a_numeric_stream_is_refused(client: TestClient, world: Fixture) -> None:
    first = rec(world.deployment_a, 0, features={"liver_suvmean": 2.1, "recon": "OSEM"})
    post_raw(client, world, [first])
    items = [
        rec(world.deployment_a, 1, features={"liver_suvmean": "2.3", "recon": "OSEM"}),
        rec(world.deployment_a, 2, features={"liver_suvmean": 2, "recon": "BSREM"}),
        rec(world.deployment_a, 3, features={"liver_suvmean": True, "recon": 4}),
        # The other site's deployment has no stream of that name yet: a string starts one.
        rec(world.deployment_b, 4, features={"liver_suvmean": "high"}),
    ]
    body = client.post(
        "/v1/records",
        json={"records": items[:3]},
        headers=world.auth(world.probe_a),
    ).json()
    assert [r["status"] for r in body["results"]] == ["rejected", "created", "created"]
    assert errors(body)[0] == (
        "features.liver_suvmean: a string, but deployment 'lesion-ai@site-a' sends numbers in "
        "this stream (its detectors could not use it)"
    )
    other = client.post(
        "/v1/records", json={"records": items[3:]}, headers=world.auth(world.probe_b)
    ).json()
    assert other["created"] == 1
    # Within one batch the first value decides: a number, then a string, in a new stream.
    new = [
        rec(world.deployment_a, 5, outputs={"suv_peak": 4.2}),
        rec(world.deployment_a, 6, outputs={"suv_peak": "n/a"}),
    ]
    body = client.post(
        "/v1/records", json={"records": new}, headers=world.auth(world.probe_a)
    ).json()
    assert [r["status"] for r in body["results"]] == ["created", "rejected"]
    assert "outputs.suv_peak: a string" in errors(body)[1]
    assert len(stored(world)) == 5


def test_times_out_of_range_are_refused_per_item(client: TestClient, world: Fixture) -> None:
    now = datetime.now(UTC)
    items = [
        rec(world.deployment_a, 0, inferred_at="0001-01-01T00:00:00+14:00"),
        rec(world.deployment_a, 1, acquired_at="9999-12-31T23:59:59-14:00"),
        rec(world.deployment_a, 2, acquired_at="9999-01-01T00:00:00+00:00"),
        rec(world.deployment_a, 3, inferred_at=(now + timedelta(days=7)).isoformat()),
        rec(world.deployment_a, 4, acquired_at="1969-12-31T23:59:59+00:00"),
        rec(world.deployment_a, 5),
        rec(world.deployment_a, 6, inferred_at=(now + timedelta(hours=1)).isoformat()),
    ]
    body = post_raw(client, world, items)
    assert [r["status"] for r in body["results"]] == ["rejected"] * 5 + ["created"] * 2
    why = errors(body)
    assert why[0] == "inferred_at: out of the range of dates (in UTC)"
    assert why[1] == "acquired_at: out of the range of dates (in UTC)"
    assert why[2].startswith("acquired_at: more than 86400 s after the monitor's clock")
    assert "PHASE4_MAX_FUTURE_SKEW_S" in why[3]
    assert why[4] == "acquired_at: before 1970-01-01T00:00:00Z"
    assert [r[0] for r in stored(world)] == [items[5]["record_id"], items[6]["record_id"]]
    feedback = client.post(
        "/v1/feedback",
        json={
            "feedback": [
                {
                    "feedback_id": "fb-1",
                    "record_id": items[5]["record_id"],
                    "given_at": "0001-01-01T00:00:00+14:00",
                }
            ]
        },
        headers=world.auth(world.probe_a),
    ).json()
    assert feedback["results"][0]["error"] == "given_at: out of the range of dates (in UTC)"


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def test_bad_cursors_and_times_on_get_records_are_422(client: TestClient, world: Fixture) -> None:
    post_raw(client, world, [rec(world.deployment_a, i) for i in range(3)])
    for params in (
        {"cursor": _cursor("2026-01-01T00:00:00|1")},  # naive
        {"cursor": _cursor("2026-01-01T00:00:00+00:00|" + "9" * 30)},
        {"cursor": _cursor("0001-01-01T00:00:00+14:00|1")},
        {"cursor": _cursor("2026-01-01T00:00:00+00:00|-1")},
        {"since": "0001-01-01T00:00:00+14:00"},
        {"since": "2026-01-01T00:00:00"},
        {"deployment": "d" * 101},
        {"deployment": "a\x00b"},
    ):
        response = client.get(
            "/v1/records",
            params={"deployment": world.deployment_a, **params},
            headers=world.auth(world.viewer),
        )
        assert response.status_code == 422, (params, response.text)
        assert response.json()["error"]["code"] == "invalid_request"
    ok = client.get(
        "/v1/records",
        params={"deployment": world.deployment_a, "since": "2026-03-02T09:01:00+01:00"},
        headers=world.auth(world.viewer),
    )
    assert ok.status_code == 200 and len(ok.json()["records"]) == 3


def test_deployment_strings_are_bounded_by_their_columns(
    client: TestClient, world: Fixture
) -> None:
    base = {"site_id": "site-c", "model_name": "m", "model_version": "1"}
    cases = {
        "site_name": "s" * 201,
        "manufacturer": "m" * 201,
        "intended_use": "u" * 2001,
        "reason": "r" * 2001,
        "model_name": "n" * 201,
    }
    for i, (field, value) in enumerate(cases.items()):
        response = client.post(
            "/v1/deployments",
            json={"id": f"d{i}@site-c", **base, field: value},
            headers=world.auth(world.admin),
        )
        assert response.status_code == 422, (field, response.text)
        assert field in response.json()["error"]["message"]
    nul = client.post(
        "/v1/deployments",
        json={"id": "nul@site-c", **base, "site_name": "a\x00b"},
        headers=world.auth(world.admin),
    )
    assert nul.status_code == 422 and "NUL" in nul.json()["error"]["message"]
    deep: Any = 1
    for _ in range(40):
        deep = {"k": deep}
    nested = client.post(
        "/v1/deployments",
        json={"id": "deep@site-c", **base, "monitoring": deep},
        headers=world.auth(world.admin),
    )
    assert nested.status_code == 422 and "PHASE4_MAX_JSON_DEPTH" in nested.text
    longest = client.post(
        "/v1/deployments",
        json={"id": "ok@site-c", **base, "site_name": "s" * 200},
        headers=world.auth(world.admin),
    )
    assert longest.status_code == 201, longest.text
    with world.engine.connect() as conn:
        sites = conn.execute(sa.text("SELECT id FROM site ORDER BY id")).scalars().all()
    assert sites == ["site-a", "site-b", "site-c"]


def test_deep_outputs_are_refused_and_every_page_stays_readable(
    client: TestClient, world: Fixture
) -> None:
    deep: Any = 1
    for _ in range(256):
        deep = {"a": deep}
    body = post_raw(client, world, [rec(world.deployment_a, 0, outputs={"d": deep})])
    assert body["rejected"] == 1
    assert "nested deeper than 32 levels (PHASE4_MAX_JSON_DEPTH)" in body["results"][0]["error"]
    post_raw(client, world, [rec(world.deployment_a, 1)])
    page = client.get(
        "/v1/records", params={"deployment": world.deployment_a}, headers=world.auth(world.viewer)
    )
    assert page.status_code == 200 and len(page.json()["records"]) == 1
    # Deeper than the JSON parser goes: a 400 naming the problem, not a 500.
    too_deep = client.post(
        "/v1/records",
        content='{"records": [' + "[" * 5000 + "]" * 5000 + "]}",
        headers={**world.auth(world.probe_a), "Content-Type": "application/json"},
    )
    assert too_deep.status_code == 400
    assert "nested too deeply" in too_deep.json()["error"]["message"]


def test_each_record_limit_is_named(tight: TestClient, world: Fixture) -> None:
    deep: Any = [1]
    for _ in range(4):
        deep = [deep]
    items = [
        rec(world.deployment_a, 0, features={f"f{i}": i for i in range(6)}),
        rec(world.deployment_a, 1, outputs={f"o{i}": i for i in range(4)}),
        rec(world.deployment_a, 2, features={"reconstruction": "x" * 51}),
        rec(world.deployment_a, 3, outputs={"boxes": deep}),
        rec(world.deployment_a, 4, features={"k" * 101: 1}),
        rec(world.deployment_a, 5, outputs={"note": "\ud800"}),
        rec(world.deployment_a, 6, features={"note": "a\x00b"}),
        rec(world.deployment_a, 7, features={"reconstruction": "x" * 50}),
    ]
    body = post_raw(tight, world, items)
    assert [r["status"] for r in body["results"]] == ["rejected"] * 7 + ["created"]
    why = errors(body)
    assert why[0] == "features: 6 names; at most 5 per record (PHASE4_MAX_FEATURES_PER_RECORD)"
    assert why[1] == "outputs: 4 names; at most 3 per record (PHASE4_MAX_OUTPUTS_PER_RECORD)"
    assert why[2] == (
        "features.reconstruction: string of 51 characters; at most 50 (PHASE4_MAX_STRING_CHARS)"
    )
    assert "nested deeper than 4 levels (PHASE4_MAX_JSON_DEPTH)" in why[3]
    assert "a name of 101 characters; at most 100" in why[4]
    assert "lone surrogate" in why[5]
    assert "NUL" in why[6]
    assert [r[0] for r in stored(world)] == [items[7]["record_id"]]
    future = rec(world.deployment_a, 8, inferred_at=(datetime.now(UTC) + timedelta(hours=2)))
    future["inferred_at"] = future["inferred_at"].isoformat()
    assert "more than 3600 s" in errors(post_raw(tight, world, [future]))[0]


def test_distinct_streams_per_deployment_are_capped(tight: TestClient, world: Fixture) -> None:
    # Cap 8: the first record has 4 names, the second adds 4 (8 in all), the third would add 1.
    first = rec(world.deployment_a, 0, features={"a": 1, "b": 2}, outputs={"c": 1, "d": 2})
    second = rec(world.deployment_a, 1, features={"e": 1, "f": 2}, outputs={"g": 1, "h": True})
    third = rec(world.deployment_a, 2, features={"a": 3, "z": 1}, outputs={"c": 1})
    known = rec(world.deployment_a, 3, features={"a": 5, "b": 6, "e": None}, outputs={"h": False})
    body = post_raw(tight, world, [first, second, third, known])
    assert [r["status"] for r in body["results"]] == ["created", "created", "rejected", "created"]
    assert errors(body)[2] == (
        "features.z: deployment 'lesion-ai@site-a' has 8 distinct feature and output names and "
        "this record adds 1; at most 8 (PHASE4_MAX_STREAMS_PER_DEPLOYMENT)"
    )
    # Read back from the store by the next batch (and another deployment has its own count).
    later = post_raw(tight, world, [rec(world.deployment_a, 4, outputs={"new": 1})])
    assert "has 8 distinct" in errors(later)[0]
    with world.engine.connect() as conn:
        names = conn.execute(
            sa.text("SELECT name, kind FROM deployment_stream ORDER BY name")
        ).all()
    assert [tuple(n) for n in names] == [
        ("features.a", "numeric"),
        ("features.b", "numeric"),
        ("features.e", "numeric"),
        ("features.f", "numeric"),
        ("outputs.c", "numeric"),
        ("outputs.d", "numeric"),
        ("outputs.g", "numeric"),
        ("outputs.h", "binary"),
    ]
    assert len(stored(world)) == 3


def test_the_migration_fills_the_names_of_records_already_stored(
    client: TestClient, world: Fixture, db_url: str
) -> None:
    from alembic import command

    from phase4.monitor.store.db import alembic_config

    records = [
        rec(world.deployment_a, 0, features={"suv": None, "recon": "OSEM"}),
        rec(world.deployment_a, 1, features={"suv": 2.5, "recon": "BSREM"}),
        rec(world.deployment_b, 2, features={"suv": "n/a"}, outputs={"positive": True}),
    ]
    stored_now = client.post(
        "/v1/records", json={"records": records}, headers=world.auth(world.admin)
    )
    assert stored_now.json()["created"] == 3
    world.engine.dispose()
    command.downgrade(alembic_config(db_url), "0004")
    command.upgrade(alembic_config(db_url), "head")
    with world.engine.connect() as conn:
        names = conn.execute(
            sa.text("SELECT deployment_id, name, kind FROM deployment_stream ORDER BY 1, 2")
        ).all()
    assert [tuple(n) for n in names] == [
        ("lesion-ai@site-a", "features.recon", "categorical"),
        ("lesion-ai@site-a", "features.suv", "numeric"),
        ("lesion-ai@site-a", "outputs.lesion_count", "numeric"),
        ("lesion-ai@site-a", "outputs.malignancy_score", "numeric"),
        ("lesion-ai@site-b", "features.suv", "categorical"),
        ("lesion-ai@site-b", "outputs.positive", "binary"),
    ]
