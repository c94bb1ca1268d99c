"""Links in emails and webhooks come from the configured public address, never from a moment's
port or (unless allowed) this machine's own name; without one, messages say so instead."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from phase4.alerts.config import NO_PUBLIC_ADDRESS, NotifySettings, link_base_problem
from phase4.alerts.notify.dispatcher import notify_pending
from phase4.alerts.notify.render import AlertContext, payload, render_alert, render_digest
from phase4.alerts.notify.sink import LocalSMTPSink
from phase4.monitor.store.models import Alert
from tests.alerts.conftest import WebhookReceiver, drift_evidence, make_alert, settings_for
from tests.conftest import Fixture


def _alert(alert_id: int = 42) -> Alert:
    return Alert(
        id=alert_id,
        deployment_id="lesion-ai@site-a",
        stream="features.injected_activity_mbq",
        cause="drift",
        severity="warning",
        status="open",
        title="features.injected_activity_mbq rose (detected by cusum)",
        evidence=drift_evidence(),
        opened_at=datetime(2026, 3, 12, 10, 30, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    ("url", "allow_local", "refused"),
    [
        ("https://phase4.hospital.example", False, False),
        ("https://phase4.hospital.example:8443/monitor", False, False),
        ("http://10.1.2.3:8000", False, False),
        ("http://phase4.test:32767", False, False),
        ("http://phase4.test:61000", False, False),
        ("http://phase4.test:32768", False, True),  # the ephemeral range's ends
        ("http://phase4.test:60999", False, True),
        ("http://127.0.0.1:45123", True, True),  # ephemeral even where local links are allowed
        ("http://127.0.0.1:8000", False, True),
        ("http://127.0.0.1:8000", True, False),
        ("http://localhost:8000", False, True),
        ("http://[::1]:8000", False, True),
        ("http://0.0.0.0:8000", False, True),
        ("http://127.0.0.2", False, True),
        (None, False, True),
        ("", True, True),
    ],
)
def test_which_addresses_links_may_be_built_on(
    url: str | None, allow_local: bool, refused: bool
) -> None:
    problem = link_base_problem(url, allow_local=allow_local)
    assert (problem is not None) == refused, problem
    if refused:
        assert problem is not None and problem.startswith(NO_PUBLIC_ADDRESS)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://phase4.example",
        "phase4.example",
        "http://",
        "https://h.example/?a=1",
        "http://h:99999",
    ],
)
def test_a_malformed_public_address_is_refused_at_start(url: str) -> None:
    with pytest.raises(ValidationError, match="public_base_url"):
        NotifySettings(public_base_url=url)


def test_the_address_is_read_from_the_environment_under_both_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PHASE4_DASHBOARD_BASE_URL", "https://old.example")
    assert NotifySettings().public_base_url == "https://old.example"
    monkeypatch.setenv("PHASE4_PUBLIC_BASE_URL", "https://phase4.hospital.example/")
    monkeypatch.setenv("PHASE4_ALLOW_LOCAL_LINKS", "true")
    settings = NotifySettings()
    assert settings.allow_local_links
    assert settings.dashboard_url("/ui/alerts/1") == "https://phase4.hospital.example/ui/alerts/1"
    monkeypatch.delenv("PHASE4_PUBLIC_BASE_URL")
    monkeypatch.delenv("PHASE4_DASHBOARD_BASE_URL")
    assert NotifySettings().public_base_url is None  # no default address any more


@pytest.mark.parametrize(
    "overrides",
    [
        {"public_base_url": None},
        {"public_base_url": "http://127.0.0.1:45123"},
        {"public_base_url": "http://localhost:8000"},
    ],
)
def test_without_a_public_address_messages_carry_a_note_and_no_link(
    overrides: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(**overrides)
    ctx = AlertContext(site_id="site-a", has_report=True)
    with caplog.at_level(logging.WARNING, logger="phase4.alerts"):
        r = render_alert(_alert(), ctx, settings)
        again = render_alert(_alert(43), ctx, settings)
    for text in (r.text, r.html, again.text):
        assert "http://" not in text.replace("http://www.w3.org", "")
        assert "no public address configured" in text
    assert r.links == [] and r.links_note is not None and "alert 42" in r.links_note
    assert "Alert 999: features.reconstruction" in r.text  # the linked alert, without its URL
    assert "What to check first".upper() in r.text
    warnings = [rec for rec in caplog.records if rec.levelno == logging.WARNING]
    assert len(warnings) == 1, "warned once per settings object, not once per message"
    assert NO_PUBLIC_ADDRESS in warnings[0].getMessage()

    web = payload(_alert(), ctx, settings)
    assert web["links"] == {} and web["links_note"] == r.links_note
    assert web["text"].endswith(f"({NO_PUBLIC_ADDRESS})")
    digest = render_digest([(_alert(i), ctx) for i in (1, 2)], settings)
    assert digest.links == [] and "these alerts" in (digest.links_note or "")
    assert "http://" not in digest.text


def test_a_configured_address_gives_links_and_no_note() -> None:
    settings = settings_for(public_base_url="https://phase4.hospital.example")
    r = render_alert(_alert(), AlertContext(site_id="site-a"), settings)
    assert r.links_note is None and "no public address" not in r.text
    assert "https://phase4.hospital.example/ui/alerts/42" in r.text
    local = settings_for(public_base_url="http://127.0.0.1:8000", allow_local_links=True)
    assert payload(_alert(), AlertContext(), local)["links"] == {
        "dashboard": "http://127.0.0.1:8000/ui/alerts/42"
    }


def test_sent_email_and_webhook_say_no_public_address_configured(
    world: Fixture, sink: LocalSMTPSink, receiver: WebhookReceiver
) -> None:
    alert_id = make_alert(world.engine, world.deployment_a)
    settings = settings_for(sink, public_base_url=None, webhook_url=receiver.url)
    notify_pending(world.engine, settings)
    [message] = sink.wait_for(1)
    [received] = receiver.received
    body = received.json()
    text, html = message.part("plain"), message.part("html")
    assert text and html
    for part in (text, html):
        assert "no public address configured" in part
        assert f"/ui/alerts/{alert_id}" not in part
    assert body["links"] == {} and "no public address configured" in body["links_note"]
