"""Email to a real SMTP server on 127.0.0.1 (aiosmtpd): MIME structure, STARTTLS, AUTH."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from phase4.alerts.notify.email import DeliveryError, build_message, send_email
from phase4.alerts.notify.render import AlertContext, Rendered, render_alert
from phase4.alerts.notify.sink import LocalSMTPSink
from phase4.monitor.store.models import Alert
from tests.alerts.conftest import TLSFiles, drift_evidence, settings_for


def _message(settings_kw: dict[str, Any] | None = None) -> tuple[Alert, Rendered]:
    alert = Alert(
        id=7,
        deployment_id="lesion-ai@site-a",
        stream="features.injected_activity_mbq",
        cause="drift",
        severity="warning",
        status="open",
        title="t",
        evidence=drift_evidence(),
        opened_at=datetime(2026, 3, 12, tzinfo=UTC),
    )
    settings = settings_for(**(settings_kw or {}))
    return alert, render_alert(alert, AlertContext(site_id="site-a"), settings)


def test_a_message_is_multipart_alternative_with_text_and_html(tmp_path: Path) -> None:
    with LocalSMTPSink(folder=tmp_path / "mail") as sink:
        settings = settings_for(sink, mail_from="phase4@hospital.example")
        _, rendered = _message()
        msg = build_message(settings, rendered, "physicist@example.org", alert_ids=[7])
        assert send_email(settings, msg, "physicist@example.org").startswith("accepted by")
        [got] = sink.wait_for(1)
    assert got.rcpt_tos == ("physicist@example.org",)
    assert got.mail_from == "phase4@hospital.example"
    assert got.message.get_content_type() == "multipart/alternative"
    assert got.subject.startswith("[phase4 WARNING] Injected activity at site-a rose")
    assert "What to check first".upper() in got.part("plain")
    assert "<h3" in got.part("html")
    assert got.message["Auto-Submitted"] == "auto-generated"
    assert got.message["X-Phase4-Alert-Ids"] == "7"
    assert len(list((tmp_path / "mail").glob("*.eml"))) == 1


def test_starttls_with_a_trusted_ca_and_auth(tls_files: TLSFiles) -> None:
    with LocalSMTPSink(
        tls_context=tls_files.server_context,
        require_starttls=True,
        logins={"phase4": "s3cret-pw"},
    ) as sink:
        ok = settings_for(
            sink,
            smtp_starttls=True,
            smtp_ca_file=tls_files.ca_file,
            smtp_username="phase4",
            smtp_password="s3cret-pw",
        )
        _, rendered = _message()
        send_email(ok, build_message(ok, rendered, "a@example.org"), "a@example.org")
        assert len(sink.wait_for(1)) == 1

        # The server's certificate is verified: another CA's trust store refuses it.
        untrusted = ok.model_copy(update={"smtp_ca_file": tls_files.other_ca_file})
        with pytest.raises(DeliveryError) as refused:
            send_email(untrusted, build_message(ok, rendered, "a@example.org"), "a@example.org")
        assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value)
        assert refused.value.channel_down

        # A wrong password fails, and the detail never repeats a password.
        wrong = settings_for(
            sink,
            smtp_starttls=True,
            smtp_ca_file=tls_files.ca_file,
            smtp_username="phase4",
            smtp_password="wrong-pw",
        )
        with pytest.raises(DeliveryError) as denied:
            send_email(wrong, build_message(wrong, rendered, "a@example.org"), "a@example.org")
        assert "535" in str(denied.value) and denied.value.channel_down
        assert "wrong-pw" not in str(denied.value)

        # Without STARTTLS the server refuses to go on.
        plain = settings_for(sink, smtp_username="phase4", smtp_password="s3cret-pw")
        with pytest.raises(DeliveryError):
            send_email(plain, build_message(plain, rendered, "a@example.org"), "a@example.org")
    assert len(sink.messages) == 1


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_auth_over_plain_loopback() -> None:
    with LocalSMTPSink(logins={"phase4": "pw"}) as sink:
        settings = settings_for(sink, smtp_username="phase4", smtp_password="pw")
        _, rendered = _message()
        send_email(settings, build_message(settings, rendered, "a@example.org"), "a@example.org")
        assert len(sink.wait_for(1)) == 1


def test_settings_refuse_ssl_and_starttls_together() -> None:
    with pytest.raises(ValueError, match="exclude each other"):
        settings_for(smtp_ssl=True, smtp_starttls=True)
