"""The dispatcher on SQLite and PostgreSQL: real SMTP and HTTP receivers on 127.0.0.1, every
attempt recorded, retries, escalation exactly once, digests, no resend, no patient data."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from sqlmodel import Session, col, select

from phase4.alerts.notify.dispatcher import notify_pending
from phase4.alerts.notify.sink import LocalSMTPSink, free_port
from phase4.alerts.notify.webhook import SIGNATURE_HEADER, verify_signature
from phase4.monitor.domain.alert_actions import acknowledge_alert, resolve_alert
from phase4.monitor.store.audit import verify_chain
from phase4.monitor.store.db import session_scope
from phase4.monitor.store.models import Alert, AuditEntry, DriftReport, NotificationAttempt
from tests.alerts.conftest import (
    WebhookReceiver,
    alerts_by_id,
    detected_alerts,
    make_alert,
    settings_for,
)
from tests.conftest import Fixture


def _attempts(world: Fixture, alert_id: int | None = None) -> list[NotificationAttempt]:
    with Session(world.engine) as s:
        q = select(NotificationAttempt).order_by(col(NotificationAttempt.id))
        if alert_id is not None:
            q = q.where(NotificationAttempt.alert_id == alert_id)
        return list(s.exec(q))


def test_new_alerts_are_mailed_once_with_links_and_no_patient_data(
    world: Fixture, sink: LocalSMTPSink
) -> None:
    alert_ids, record_ids = detected_alerts(world.engine, world.deployment_a)
    settings = settings_for(sink, recipients=["a@example.org", "b@example.org"])
    summary = notify_pending(world.engine, settings)
    assert sorted(summary.notified) == sorted(alert_ids)
    assert summary.failed_attempts == 0
    messages = sink.wait_for(2 * len(alert_ids))
    assert len(messages) == 2 * len(alert_ids)
    assert {m.rcpt_tos for m in messages} == {("a@example.org",), ("b@example.org",)}
    alerts = alerts_by_id(world.engine)
    for m in messages:
        [alert_id] = [int(i) for i in str(m.message["X-Phase4-Alert-Ids"]).split(",")]
        alert = alerts[alert_id]
        text, html = m.part("plain"), m.part("html")
        assert text and html
        assert f"http://phase4.test:8000/ui/alerts/{alert_id}" in text
        assert f"http://phase4.test:8000/ui/alerts/{alert_id}" in html
        assert "at site-a" in m.subject
        if alert.cause == "drift":
            assert "Estimated start of the change" in text
            assert "false alarm(s) per deployment per year" in text
            assert "dose calibrator" in text
        else:  # the new reconstruction: its value, escaped in HTML
            assert "Q.Clear <b>beta</b>" in text
            assert "Q.Clear &lt;b&gt;beta&lt;/b&gt;" in html
        raw = m.raw.decode("utf-8", "replace")
        for rid, pseudo in record_ids:
            assert rid not in raw and pseudo not in raw

    rows = _attempts(world)
    assert len(rows) == 2 * len(alert_ids)
    assert all(r.ok and r.channel == "email" and r.purpose == "opened" for r in rows)
    assert all(r.attempt == 1 and r.detail and r.detail.startswith("accepted") for r in rows)

    again = notify_pending(world.engine, settings)
    assert again.notified == [] and again.delivered == 0
    assert len(sink.messages) == 2 * len(alert_ids)


def test_a_refusing_server_is_retried_and_every_attempt_recorded(world: Fixture) -> None:
    alert_id = make_alert(world.engine, world.deployment_a)
    with session_scope(world.engine) as s:
        s.add(
            DriftReport(
                alert_id=alert_id, reference_rows=100, current_rows=100, summary={}, html_gzip=b""
            )
        )
    with LocalSMTPSink(refuse_first=2) as sink:
        summary = notify_pending(world.engine, settings_for(sink))
        [m] = sink.wait_for(1)
    assert f"http://phase4.test:8000/ui/alerts/{alert_id}/report" in m.part("plain")
    assert f"http://phase4.test:8000/v1/alerts/{alert_id}/report" in m.part("html")
    assert summary.failed_attempts == 2 and summary.delivered == 1
    rows = _attempts(world, alert_id)
    assert [(r.attempt, r.ok) for r in rows] == [(1, False), (2, False), (3, True)]
    assert rows[0].detail is not None and "451" in rows[0].detail
    assert all(r.recipient == "physicist@example.org" for r in rows)


def test_a_failed_pass_is_retried_at_a_later_pass_not_at_once(world: Fixture) -> None:
    alert_id = make_alert(world.engine, world.deployment_a)
    t0 = datetime.now(UTC)
    with LocalSMTPSink(refuse_first=3) as sink:
        settings = settings_for(sink, max_attempts=3, retry_after_s=300)
        first = notify_pending(world.engine, settings, now=t0)
        assert first.failed_attempts == 3 and first.delivered == 0
        soon = notify_pending(world.engine, settings, now=t0 + timedelta(seconds=60))
        assert soon.failed_attempts == 0 and soon.delivered == 0  # waits for retry_after_s
        later = notify_pending(world.engine, settings, now=t0 + timedelta(seconds=400))
        assert later.delivered == 1
        assert len(sink.wait_for(1)) == 1
    assert [r.attempt for r in _attempts(world, alert_id)] == [1, 2, 3, 4]
    # Given up after give_up_after_s: nothing more is tried, and the pass says so.
    other = make_alert(world.engine, world.deployment_b, stream="features.suv_mean")
    dead_port = free_port()
    dead = settings_for(smtp_host="127.0.0.1", smtp_port=dead_port, give_up_after_s=3600)
    notify_pending(world.engine, dead, now=t0)
    n = len(_attempts(world, other))
    assert n >= 1
    late = notify_pending(world.engine, dead, now=t0 + timedelta(hours=2))
    assert other in late.given_up and len(_attempts(world, other)) == n


def test_a_channel_that_is_down_is_left_for_the_next_pass(world: Fixture) -> None:
    ids = [make_alert(world.engine, world.deployment_a, stream=f"features.f{i}") for i in range(3)]
    settings = settings_for(
        smtp_host="127.0.0.1",
        smtp_port=free_port(),
        smtp_username="u",
        smtp_password="pw-never-shown",
        max_attempts=2,
    )
    summary = notify_pending(world.engine, settings)
    assert summary.channels_down == ["email"]
    rows = _attempts(world)
    assert [r.alert_id for r in rows] == [ids[0], ids[0]]  # the others were not tried
    assert all(not r.ok and r.detail and "pw-never-shown" not in r.detail for r in rows)
    assert rows[0].detail and "ConnectionRefusedError" in rows[0].detail


def test_webhook_is_retried_signed_and_free_of_identifiers(
    world: Fixture, receiver: WebhookReceiver
) -> None:
    alert_ids, record_ids = detected_alerts(world.engine, world.deployment_a)
    receiver.fail_first = 1
    settings = settings_for(webhook_url=receiver.url, webhook_secret="hook-secret")
    summary = notify_pending(world.engine, settings)
    assert summary.channels == ["webhook"]
    assert len(receiver.received) == len(alert_ids)
    for got in receiver.received:
        assert verify_signature("hook-secret", got.body, got.headers[SIGNATURE_HEADER])
        assert not verify_signature("other", got.body, got.headers[SIGNATURE_HEADER])
        body = got.json()
        assert body["event"] == "alert.opened"
        assert body["alert"]["deployment"] == "lesion-ai@site-a"
        assert body["alert"]["site"] == "site-a"
        assert body["links"]["dashboard"].startswith("http://phase4.test:8000/ui/alerts/")
        for rid, pseudo in record_ids:
            assert rid.encode() not in got.body and pseudo.encode() not in got.body
    rows = _attempts(world)
    assert [r.ok for r in rows].count(False) == 1
    assert rows[0].detail == "HTTP 503 Service Unavailable" and rows[0].attempt == 1
    # The webhook's path holds a token: attempts and logs keep scheme, host and port only.
    assert all("SECRET-TOKEN" not in r.recipient for r in rows)
    assert rows[0].recipient.startswith("http://127.0.0.1:")
    assert notify_pending(world.engine, settings).delivered == 0


def test_escalation_after_the_delay_exactly_once_and_audited(
    world: Fixture, sink: LocalSMTPSink
) -> None:
    t0 = datetime.now(UTC)
    warning = make_alert(world.engine, world.deployment_a, opened_at=t0)
    critical = make_alert(
        world.engine, world.deployment_a, stream="performance.missed", cause="performance",
        severity="critical", opened_at=t0,
    )  # fmt: skip
    acknowledged = make_alert(
        world.engine, world.deployment_b, stream="features.suv_mean", opened_at=t0
    )
    settings = settings_for(sink, escalate_after_s=4 * 3600, escalate_after_critical_s=3600)
    assert notify_pending(world.engine, settings, now=t0).escalated == []
    with session_scope(world.engine) as s:
        acknowledge_alert(s, acknowledged, user="physicist-b", reason="looking at it")

    one_h = notify_pending(world.engine, settings, now=t0 + timedelta(hours=1, minutes=1))
    assert one_h.escalated == [critical]
    five_h = notify_pending(world.engine, settings, now=t0 + timedelta(hours=5))
    assert five_h.escalated == [warning]
    assert notify_pending(world.engine, settings, now=t0 + timedelta(hours=9)).escalated == []

    messages = sink.wait_for(5)
    escalations = [m for m in messages if m.rcpt_tos == ("head@example.org",)]
    assert len(escalations) == 2
    assert all("ESCALATION" in m.subject for m in escalations)
    assert all(m.message["X-Phase4-Purpose"] == "escalation" for m in escalations)
    assert len(messages) == 5  # three opened, two escalations
    alerts = alerts_by_id(world.engine)
    assert alerts[warning].escalated_at is not None
    assert alerts[critical].escalated_at is not None
    assert alerts[acknowledged].escalated_at is None
    with Session(world.engine) as s:
        entries = list(s.exec(select(AuditEntry).where(AuditEntry.action == "alert.escalate")))
        assert sorted(int(e.entity_id) for e in entries) == sorted([warning, critical])
        assert all(e.actor == "phase4" for e in entries)
        assert verify_chain(s).ok
    esc_rows = [r for r in _attempts(world) if r.purpose == "escalation"]
    assert len(esc_rows) == 2 and all(r.ok for r in esc_rows)


def test_two_dispatchers_at_once_send_each_message_once(
    world: Fixture, sink: LocalSMTPSink, receiver: WebhookReceiver
) -> None:
    t0 = datetime.now(UTC) - timedelta(hours=5)
    ids = [
        make_alert(world.engine, dep, stream=f"features.f{i}", opened_at=t0)
        for i in range(4)
        for dep in (world.deployment_a, world.deployment_b)
    ]
    settings = settings_for(
        sink,
        recipients=["a@example.org", "b@example.org"],
        webhook_url=receiver.url,
    )
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            notify_pending(world.engine, settings)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    # Per alert: two opened emails, one escalation email, one opened and one escalated POST.
    expected_mail = 3 * len(ids)
    messages = sink.wait_for(expected_mail)
    assert len(messages) == expected_mail
    keys = [(m.message["X-Phase4-Alert-Ids"], m.rcpt_tos) for m in messages]
    assert len(set(keys)) == len(keys)
    assert len(receiver.received) == 2 * len(ids)
    events = [(r.json()["alert"]["id"], r.json()["event"]) for r in receiver.received]
    assert len(set(events)) == len(events)
    with Session(world.engine) as s:
        escalations = s.exec(select(AuditEntry).where(AuditEntry.action == "alert.escalate"))
        assert len(list(escalations)) == len(ids)
    assert all(r.ok for r in _attempts(world))


def test_many_alerts_of_one_deployment_go_as_one_digest(
    world: Fixture, sink: LocalSMTPSink
) -> None:
    ids = [make_alert(world.engine, world.deployment_a, stream=f"features.f{i}") for i in range(7)]
    single = make_alert(world.engine, world.deployment_b)
    summary = notify_pending(world.engine, settings_for(sink, digest_threshold=5))
    assert summary.digests == 1
    messages = sink.wait_for(2)
    assert len(messages) == 2
    digest = next(m for m in messages if "7 new alerts" in m.subject)
    text = digest.part("plain")
    for i in ids:
        assert f"/ui/alerts/{i}" in text
    rows = _attempts(world)
    assert sorted(r.alert_id for r in rows) == sorted([*ids, single])
    assert all(r.ok for r in rows)


def test_who_is_told_follows_site_severity_and_status(world: Fixture, sink: LocalSMTPSink) -> None:
    info = make_alert(world.engine, world.deployment_a, severity="info", stream="features.x")
    resolved = make_alert(world.engine, world.deployment_a, stream="features.y")
    site_b = make_alert(world.engine, world.deployment_b, stream="features.z")
    with session_scope(world.engine) as s:
        resolve_alert(s, resolved, user="dr-curie", reason="explained: calibrator replaced")
    settings = settings_for(
        sink,
        min_severity="warning",
        site_recipients={"site-b": ["physicist-b@example.org"]},
    )
    summary = notify_pending(world.engine, settings)
    assert summary.notified == [site_b]
    [m] = sink.wait_for(1)
    assert m.rcpt_tos == ("physicist-b@example.org",)
    assert info not in summary.notified


def test_no_channel_means_no_attempt(world: Fixture) -> None:
    make_alert(world.engine, world.deployment_a)
    summary = notify_pending(world.engine, settings_for())
    assert summary.channels == [] and summary.delivered == 0
    assert _attempts(world) == []
    with Session(world.engine) as s:
        assert s.exec(select(Alert)).first() is not None
