"""The revalidation gate through the real API (SQLite and PostgreSQL): a record of a new model
version opens it; every skipped step is refused with 409 naming the missing step; every
transition is one audit entry; another site's reviewer is 403; hostile validation sets are
4xx naming the row and column; detection keeps the pending version's records apart until the
version is accepted; the probe sends versions and shadow outputs end to end."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from sqlmodel import col, select

from phase4.monitor.store.audit import verify_chain
from phase4.monitor.store.db import alembic_config, current_revision, session_scope
from phase4.monitor.store.models import AuditEntry, InferenceRecord
from phase4.monitor.surveillance.detection import detect_all
from phase4.probes import Probe
from tests.conftest import Fixture, LiveMonitor

NOW = datetime.now(UTC)
BASE = "/v1/deployments/{}/revalidations"


def _record(
    deployment: str,
    i: int,
    *,
    version: str | None = None,
    shadow: dict[str, Any] | None = None,
    positive: bool = False,
) -> dict[str, Any]:
    at = NOW - timedelta(hours=1, minutes=i)
    rec: dict[str, Any] = {
        "record_id": uuid.uuid4().hex,
        "deployment": deployment,
        "study_pseudonym": uuid.uuid4().hex,
        "acquired_at": at.isoformat(),
        "inferred_at": at.isoformat(),
        "features": {"injected_activity_mbq": 250.0 + i},
        "outputs": {"positive": positive, "malignancy_score": 0.4},
    }
    if version is not None:
        rec["model_version"] = version
    if shadow is not None:
        rec["shadow_outputs"] = shadow
    return rec


def _post_records(client: TestClient, token: str, records: list[dict[str, Any]]) -> None:
    r = client.post(
        "/v1/records", json={"records": records}, headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 200 and r.json()["created"] == len(records), r.text


def _csv(rows: int = 400, candidate_fp_every: int = 0) -> str:
    lines = ["case_id,truth,accepted_call,candidate_call,accepted_dice,candidate_dice"]
    for i in range(rows):
        truth = i % 2
        cand = truth
        if candidate_fp_every and not truth and i % candidate_fp_every == 0:
            cand = 1
        lines.append(f"c{i},{truth},{truth},{cand},0.8{i % 10},0.8{(i + 1) % 10}")
    return "\n".join(lines) + "\n"


def _actions(world: Fixture, revalidation_id: int) -> list[str]:
    with session_scope(world.engine) as s:
        return [
            e.action
            for e in s.exec(
                select(AuditEntry)
                .where(
                    AuditEntry.entity_type == "revalidation",
                    AuditEntry.entity_id == str(revalidation_id),
                )
                .order_by(col(AuditEntry.seq))
            )
        ]


def test_the_gate_cannot_be_skipped_and_every_step_is_audited(
    client: TestClient, world: Fixture
) -> None:
    dep = world.deployment_a
    base = BASE.format(dep)
    reviewer, admin = world.auth(world.reviewer), world.auth(world.admin)

    # A record of a new version opens the revalidation (the probe's token is the opener).
    _post_records(client, world.probe_a, [_record(dep, 0, version="2.2.0")])
    listed = client.get(base, headers=world.auth(world.viewer)).json()
    assert [(x["candidate_version"], x["status"]) for x in listed] == [("2.2.0", "pending")]
    assert listed[0]["accepted_version"] == "2.1.0" and listed[0]["opened_by"] == "probe-a"
    rid = listed[0]["id"]
    one = f"{base}/{rid}"
    # At most one open revalidation.
    again = client.post(base, json={"candidate_version": "3.0.0"}, headers=reviewer)
    assert again.status_code == 409 and "already has an open revalidation" in again.text

    csv_body = {"csv": _csv(), "filename": "locked.csv"}
    decision = {"decision": "accept"}
    # pending: everything but the criteria is refused, naming the step.
    for path, body in (
        ("evaluate", None),
        ("decision", decision),
        ("validation-set", csv_body),
        ("shadow", None),
    ):
        r = client.post(f"{one}/{path}", json=body, headers=reviewer)
        assert r.status_code == 409, (path, r.text)
        assert "declare the acceptance criteria first" in r.json()["error"]["message"]

    # Another site's reviewer, a viewer and a probe may not act.
    crit = {"sensitivity": 0.05, "specificity": 0.05, "dice": 0.05}
    for token in (world.reviewer_b, world.viewer, world.probe_a):
        r = client.post(f"{one}/criteria", json=crit, headers=world.auth(token))
        assert r.status_code == 403, r.text
    bad = client.post(f"{one}/criteria", json={"accuracy": 0.1}, headers=reviewer)
    assert bad.status_code == 422
    r = client.post(f"{one}/criteria", json=crit, headers=reviewer)
    assert r.status_code == 200 and r.json()["status"] == "criteria_declared", r.text
    assert r.json()["criteria"]["margins"] == crit

    for path, body in (("evaluate", None), ("decision", decision)):
        r = client.post(f"{one}/{path}", json=body, headers=reviewer)
        assert r.status_code == 409 and "attach evidence" in r.json()["error"]["message"]

    r = client.post(f"{one}/validation-set", json=csv_body, headers=reviewer)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["status"] == "evidence_attached" and out["validation_cases"] == 400
    assert out["validation_sha256"] == hashlib.sha256(_csv().encode()).hexdigest()
    # Criteria are locked once evidence is attached; the validation set cannot be replaced.
    late = client.post(f"{one}/criteria", json={"sensitivity": 0.5}, headers=reviewer)
    assert late.status_code == 409 and "cannot declare criteria" in late.text
    replace = client.post(f"{one}/validation-set", json=csv_body, headers=reviewer)
    assert replace.status_code == 409 and "cannot be replaced" in replace.text
    r = client.post(f"{one}/decision", json=decision, headers=reviewer)
    assert r.status_code == 409 and "evaluate the evidence first" in r.text

    r = client.post(f"{one}/evaluate", json=None, headers=reviewer)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["status"] == "evaluated" and out["verdict"] == "pass"
    assert {x["criterion"] for x in out["results"]["results"]} == {
        "sensitivity",
        "specificity",
        "dice",
    }
    assert client.post(f"{one}/evaluate", headers=reviewer).status_code == 409

    r = client.post(f"{one}/decision", json=decision, headers=world.auth(world.reviewer_b))
    assert r.status_code == 403
    r = client.post(
        f"{one}/decision", json={"decision": "accept_with_conditions"}, headers=reviewer
    )
    assert r.status_code == 422 and "conditions" in r.text
    r = client.post(f"{one}/decision", json=decision, headers=reviewer)
    assert r.status_code == 200, r.text
    assert r.json()["decided_by"] == "dr-curie" and r.json()["status"] == "decided"
    assert client.post(f"{one}/decision", json=decision, headers=admin).status_code == 409

    deps = {d["id"]: d for d in client.get("/v1/deployments", headers=admin).json()}
    assert deps[dep]["model_version"] == "2.2.0"
    assert deps[world.deployment_b]["model_version"] == "2.1.0"

    assert _actions(world, rid) == [
        "revalidation.open",
        "revalidation.declare_criteria",
        "revalidation.attach_validation_set",
        "revalidation.evaluate",
        "revalidation.decide",
    ]
    with session_scope(world.engine) as s:
        assert verify_chain(s).ok
    alerts = client.get("/v1/alerts", headers=admin).json()
    reval_alerts = [a for a in alerts if a["cause"] == "revalidation"]
    assert len(reval_alerts) == 2
    # A second revalidation may now open.
    r = client.post(base, json={"candidate_version": "2.3.0"}, headers=reviewer)
    assert r.status_code == 201 and r.json()["accepted_version"] == "2.2.0"


def test_a_failed_gate_cannot_be_plainly_accepted(client: TestClient, world: Fixture) -> None:
    base = BASE.format(world.deployment_a)
    reviewer = world.auth(world.reviewer)
    r = client.post(base, json={"candidate_version": "2.2.0", "reason": "vendor"}, headers=reviewer)
    assert r.status_code == 201, r.text
    one = f"{base}/{r.json()['id']}"
    client.post(f"{one}/criteria", json={"specificity": 0.05}, headers=reviewer)
    # The candidate calls every third negative positive.
    client.post(f"{one}/validation-set", json={"csv": _csv(300, 3)}, headers=reviewer)
    out = client.post(f"{one}/evaluate", headers=reviewer).json()
    assert out["verdict"] == "fail"
    spec = out["results"]["results"][0]
    assert spec["criterion"] == "specificity" and spec["verdict"] == "fail"
    assert spec["difference"]["high"] < 0
    r = client.post(f"{one}/decision", json={"decision": "accept"}, headers=reviewer)
    assert r.status_code == 409 and "failed on specificity" in r.text
    r = client.post(f"{one}/decision", json={"decision": "reject"}, headers=reviewer)
    assert r.status_code == 200 and r.json()["decision"] == "reject"
    deps = client.get("/v1/deployments", headers=reviewer).json()
    assert {d["id"]: d["model_version"] for d in deps}[world.deployment_a] == "2.1.0"


HOSTILE = [
    ("", "row 1"),
    ("case_id,truth,accepted_call\nc1,1,1\n", "row 1, column candidate_call: missing"),
    ("case_id,truth,accepted_call,candidate_call,PatientName\n", "column 'PatientName'"),
    ("case_id,truth,accepted_call,candidate_call\nc1,2,1,1\n", "row 2, column truth"),
    ("case_id,truth,accepted_call,candidate_call\nc1,1,1,yes\n", "row 2, column candidate_call"),
    ("case_id,truth,accepted_call,candidate_call\nc1,1,1,1\nc1,0,0,0\n", "row 3, column case_id"),
    ("case_id,truth,accepted_call,candidate_call\n../../etc,1,1,1\n", "row 2, column case_id"),
    ("case_id,truth,accepted_call,candidate_call\n=cmd|' /C calc'!A0,1,1,1\n", "column case_id"),
    (
        "case_id,truth,accepted_call,candidate_call,accepted_dice\nc1,1,1,1,1.5\n",
        "row 2, column accepted_dice",
    ),
    (
        "case_id,truth,accepted_call,candidate_call,candidate_dice\nc1,1,1,1,nan\n",
        "row 2, column candidate_dice",
    ),
    ("case_id,truth,accepted_call,candidate_call\nc1,1,1\n", "row 2: 3 values for 4 columns"),
    ("case_id,truth,accepted_call,candidate_call\nc1,1,1,\x001\n", "row 2: a NUL"),
    ("case_id,truth,accepted_call,candidate_call\n", "no cases"),
    ("case_id,case_id,truth,accepted_call,candidate_call\n", "repeated"),
    ('case_id,truth,accepted_call,candidate_call\n"c1,1,1,1\n', "row 2"),
]


@pytest.mark.parametrize(("text", "named"), HOSTILE)
def test_hostile_validation_sets_are_refused_naming_the_place(
    client: TestClient, world: Fixture, text: str, named: str
) -> None:
    base = BASE.format(world.deployment_a)
    reviewer = world.auth(world.reviewer)
    rid = client.post(base, json={"candidate_version": "9.0"}, headers=reviewer).json()["id"]
    client.post(f"{base}/{rid}/criteria", json={"sensitivity": 0.1}, headers=reviewer)
    r = client.post(f"{base}/{rid}/validation-set", json={"csv": text}, headers=reviewer)
    assert 400 <= r.status_code < 500, r.text
    assert named in r.json()["error"]["message"], r.json()
    # Nothing was attached: the revalidation still waits for evidence.
    assert client.get(f"{base}/{rid}", headers=reviewer).json()["status"] == "criteria_declared"


def test_oversized_and_surrogate_csv_are_4xx(client: TestClient, world: Fixture) -> None:
    base = BASE.format(world.deployment_a)
    reviewer = world.auth(world.reviewer)
    rid = client.post(base, json={"candidate_version": "9.0"}, headers=reviewer).json()["id"]
    client.post(f"{base}/{rid}/criteria", json={"sensitivity": 0.1}, headers=reviewer)
    big = "case_id,truth,accepted_call,candidate_call\n" + "c,1,1,1\n" * 800_000
    r = client.post(f"{base}/{rid}/validation-set", json={"csv": big}, headers=reviewer)
    assert 400 <= r.status_code < 500
    body = '{"csv": "case_id,truth,accepted_call,candidate_call\\nc\\ud800,1,1,1\\n"}'
    r = client.post(
        f"{base}/{rid}/validation-set",
        content=body,
        headers={**reviewer, "Content-Type": "application/json"},
    )
    assert 400 <= r.status_code < 500, r.text


def test_shadow_traffic_is_evidence_and_the_pending_version_is_kept_apart(
    client: TestClient, world: Fixture
) -> None:
    dep = world.deployment_a
    base = BASE.format(dep)
    reviewer = world.auth(world.reviewer)
    rid = client.post(base, json={"candidate_version": "2.2.0"}, headers=reviewer).json()["id"]
    one = f"{base}/{rid}"
    client.post(
        f"{one}/criteria", json={"positive_rate_change": 0.2, "sensitivity": 0.3}, headers=reviewer
    )
    accepted = [
        _record(dep, i, positive=i % 3 == 0, shadow={"2.2.0": {"positive": i % 3 == 0}})
        for i in range(30)
    ]
    candidate = [_record(dep, 100 + i, version="2.2.0") for i in range(10)]
    _post_records(client, world.probe_a, accepted + candidate)
    fb = [
        {
            "feedback_id": uuid.uuid4().hex,
            "record_id": rec["record_id"],
            "ground_truth": {"malignant": rec["outputs"]["positive"]},
            "given_at": NOW.isoformat(),
        }
        for rec in accepted[:15]
    ]
    r = client.post("/v1/feedback", json={"feedback": fb}, headers=world.auth(world.probe_a))
    assert r.status_code == 200 and r.json()["created"] == 15

    # Detection reads only the accepted version's records.
    detect_all(world.engine)
    with world.engine.connect() as conn:
        rows = conn.execute(
            sa.select(InferenceRecord.model_version, InferenceRecord.drift_processed_at)
        ).all()
    processed = {"-": 0, "2.2.0": 0}
    for version, at in rows:
        processed[version or "-"] += at is not None
    assert processed == {"-": 30, "2.2.0": 0}

    r = client.post(f"{one}/shadow", headers=reviewer)
    assert r.status_code == 200, r.text
    assert r.json()["shadow"]["studies"] == 30 and r.json()["shadow"]["labelled"] == 15
    out = client.post(f"{one}/evaluate", headers=reviewer).json()
    by = {x["criterion"]: x for x in out["results"]["results"]}
    assert by["positive_rate_change"]["n"] == 30
    assert by["positive_rate_change"]["difference"]["estimate"] == 0
    assert by["sensitivity"]["n"] == 5 and by["sensitivity"]["verdict"] == "fail"  # too few cases
    r = client.post(
        f"{one}/decision",
        json={"decision": "accept_with_conditions", "conditions": "re-check at 200 labels"},
        headers=reviewer,
    )
    assert r.status_code == 200, r.text
    # Accepted: the candidate's waiting records now feed new references.
    detect_all(world.engine)
    with world.engine.connect() as conn:
        left = conn.execute(
            sa.select(sa.func.count()).where(
                col(InferenceRecord.model_version) == "2.2.0",
                col(InferenceRecord.drift_processed_at).is_(None),
            )
        ).scalar_one()
    assert left == 0


def test_the_probe_sends_versions_and_shadow_outputs(
    live_monitor: LiveMonitor, world: Fixture, tmp_path: Path
) -> None:
    probe = Probe(
        live_monitor.url,
        live_monitor.probe_token,
        live_monitor.deployment,
        site_secret=b"site-a-monitor-test-secret-0123456789",
        spool_path=tmp_path / "spool.sqlite",
        flush_interval_s=0.02,
    )
    try:
        rid = probe.record(
            features={"injected_activity_mbq": 240.0},
            outputs={"positive": True},
            model_version="2.1.0",
            shadow_outputs={"2.2.0": {"positive": False}},
        )
        other = probe.record(outputs={"positive": False}, model_version="2.2.0")
        with probe.inference(features={"injected_activity_mbq": 250.0}) as inf:
            inf.outputs = {"positive": False}
            inf.model_version = "2.1.0"
            inf.shadow_outputs = {"2.2.0": {"positive": True}}
        assert probe.flush(10.0)
    finally:
        probe.close()
    with session_scope(world.engine) as s:
        rows = {
            r.record_id: r
            for r in s.exec(
                select(InferenceRecord).where(
                    col(InferenceRecord.record_id).in_([rid, other, inf.record_id])
                )
            )
        }
        assert rows[rid].model_version == "2.1.0"
        assert rows[rid].shadow_outputs == {"2.2.0": {"positive": False}}
        assert rows[other or ""].model_version == "2.2.0"
        assert rows[inf.record_id or ""].shadow_outputs == {"2.2.0": {"positive": True}}
    page = httpx.get(
        f"{live_monitor.url}/v1/records?deployment={live_monitor.deployment}",
        headers={"Authorization": f"Bearer {live_monitor.viewer_token}"},
    ).json()["records"]
    by_id = {x["record_id"]: x for x in page}
    assert by_id[rid]["model_version"] == "2.1.0"
    assert by_id[rid]["shadow_outputs"] == {"2.2.0": {"positive": False}}
    r = httpx.get(
        f"{live_monitor.url}/v1/deployments/{live_monitor.deployment}/revalidations",
        headers={"Authorization": f"Bearer {live_monitor.viewer_token}"},
    )
    assert [x["candidate_version"] for x in r.json()] == ["2.2.0"]


def test_migration_0010_adds_and_removes_its_columns_and_table(
    client: TestClient, world: Fixture, db_url: str
) -> None:
    base = BASE.format(world.deployment_a)
    r = client.post(base, json={"candidate_version": "2.2.0"}, headers=world.auth(world.reviewer))
    assert r.status_code == 201
    engine = world.engine
    engine.dispose()
    script = ScriptDirectory.from_config(alembic_config(db_url))
    assert script.get_revision("0010_revalidation").down_revision == "0009_device_identity"
    assert current_revision(engine) == script.get_current_head()
    command.downgrade(alembic_config(db_url), "0009_device_identity")
    inspector = sa.inspect(engine)
    assert "revalidation" not in inspector.get_table_names()
    columns = {c["name"] for c in inspector.get_columns("inference_record")}
    assert not {"model_version", "shadow_outputs"} & columns
    engine.dispose()
    command.upgrade(alembic_config(db_url), "head")
    inspector = sa.inspect(engine)
    assert "revalidation" in inspector.get_table_names()
    assert {"model_version", "shadow_outputs"} <= {
        c["name"] for c in inspector.get_columns("inference_record")
    }
    # The partial unique index keeps one open revalidation per deployment in the store itself.
    assert any(i["name"] == "uq_revalidation_open" for i in inspector.get_indexes("revalidation"))
    engine.dispose()
