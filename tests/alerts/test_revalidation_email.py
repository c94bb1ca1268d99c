"""A revalidation is told by email through the ordinary notification path (a real SMTP server
on loopback): once when a new model version's revalidation opens, once when a reviewer
decides it."""

from __future__ import annotations

from fastapi.testclient import TestClient

from phase4.alerts.notify import notify_pending
from phase4.alerts.notify.sink import LocalSMTPSink
from tests.alerts.conftest import settings_for
from tests.conftest import Fixture

CSV = "case_id,truth,accepted_call,candidate_call\n" + "".join(
    f"c{i},{i % 2},{i % 2},{i % 2}\n" for i in range(400)
)


def test_opening_and_deciding_are_emailed(
    client: TestClient, world: Fixture, sink: LocalSMTPSink
) -> None:
    settings = settings_for(sink)
    reviewer = world.auth(world.reviewer)
    base = f"/v1/deployments/{world.deployment_a}/revalidations"
    r = client.post(base, json={"candidate_version": "2.2.0"}, headers=reviewer)
    assert r.status_code == 201, r.text
    one = f"{base}/{r.json()['id']}"

    summary = notify_pending(world.engine, settings)
    assert summary.delivered == 1
    [opened] = sink.wait_for(1)
    assert opened.rcpt_tos == ("physicist@example.org",)
    body = opened.part("plain")
    assert "2.2.0" in opened.subject + body and "pending revalidation" in body
    assert "have a named reviewer" in body and "scanner's reconstruction" not in body

    client.post(f"{one}/criteria", json={"sensitivity": 0.05}, headers=reviewer)
    client.post(f"{one}/validation-set", json={"csv": CSV}, headers=reviewer)
    client.post(f"{one}/evaluate", headers=reviewer)
    r = client.post(f"{one}/decision", json={"decision": "accept"}, headers=reviewer)
    assert r.status_code == 200, r.text

    assert notify_pending(world.engine, settings).delivered == 1
    decided = sink.wait_for(2)[1]
    text = decided.part("plain")
    assert "was accepted by dr-curie" in text and "2.2.0" in text
    # Nothing more is due.
    assert notify_pending(world.engine, settings).delivered == 0
