"""An alert in words: what, since when, how sure, what to check; escaped; known keys only."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from phase4.alerts.notify.render import (
    AlertContext,
    checklist,
    payload,
    render_alert,
    render_digest,
)
from phase4.monitor.store.models import Alert
from tests.alerts.conftest import drift_evidence, settings_for

OPENED = datetime(2026, 3, 12, 10, 30, tzinfo=UTC)


def _alert(**kw: Any) -> Alert:
    fields: dict[str, Any] = {
        "id": 42,
        "deployment_id": "lesion-ai@site-a",
        "stream": "features.injected_activity_mbq",
        "cause": "drift",
        "severity": "warning",
        "status": "open",
        "title": "features.injected_activity_mbq rose (detected by cusum)",
        "evidence": drift_evidence(),
        "opened_at": OPENED,
    }
    fields.update(kw)
    return Alert(**fields)


def test_a_drift_alert_says_what_since_when_how_sure_and_what_to_check() -> None:
    settings = settings_for()
    r = render_alert(_alert(), AlertContext(site_id="site-a"), settings)
    # the headline: world dates and the delay (no size: this evidence predates sizes)
    sentence = (
        "Injected activity at site-a rose from about 10 Mar (detected 12 Mar 2026, 2 days later)"
    )
    assert r.subject == f"[phase4 WARNING] {sentence} (alert 42)"
    text = r.text
    assert text.splitlines()[0] == sentence + "."
    assert "Delay from the change's start to its detection: 2.1 days." in text
    assert "2026-03-12" not in text.split("Since when".upper())[0]  # no processing time first
    assert "Estimated start of the change: 2026-03-10 09:00 UTC" in text
    assert "reached 9.3, beyond its threshold of 6.1" in text
    assert "at most 1 false alarm(s) per deployment per year" in text
    assert "shared by 6 streams. This detector holds 50% of its stream's share." in text
    assert "once every 12 years" in text  # 87600 / 20 / 365
    assert "dose calibrator" in text
    assert "Alert 999: features.reconstruction" in text  # a linked event, with its link
    assert "http://phase4.test:8000/ui/alerts/999" in text
    assert "http://phase4.test:8000/ui/alerts/42" in text
    assert "/v1/alerts/42/report" not in text  # no report attached
    assert "http://phase4.test:8000/ui/alerts/42" in r.html
    assert r.html.startswith("<!DOCTYPE html>")
    # evidence with "detectors_sharing" (a budget shared by detectors) still reads
    old = drift_evidence()
    old["budget"] = {
        "detectors_sharing": 12,
        "false_alarms_per_year": 1.0,
        "observations_per_day": 20.0,
        "arl0": 87600.0,
    }
    legacy = render_alert(_alert(evidence=old), AlertContext(site_id="site-a"), settings).text
    assert "shared by 12 detectors. This stream sees about 20" in legacy

    with_report = render_alert(_alert(), AlertContext(site_id="site-a", has_report=True), settings)
    assert "http://phase4.test:8000/ui/alerts/42/report" in with_report.text
    assert "http://phase4.test:8000/v1/alerts/42/report" in with_report.text
    web = payload(_alert(), AlertContext(site_id="site-a", has_report=True), settings)
    assert web["links"] == {
        "dashboard": "http://phase4.test:8000/ui/alerts/42",
        "report": "http://phase4.test:8000/ui/alerts/42/report",
        "report_api": "http://phase4.test:8000/v1/alerts/42/report",
    }


def test_only_known_evidence_keys_are_rendered_and_everything_is_escaped() -> None:
    evidence = drift_evidence()
    evidence["free_text"] = "DECOY-PATIENT Jane Doe"
    evidence["detail"] = {"comment": "DECOY-COMMENT", "value": 3}
    evidence["linked"][0]["what"] = "DECOY-LINKED-TITLE"
    evidence["budget"]["explanation"] = "DECOY-EXPLANATION"
    alert = _alert(
        stream="features.<script>alert(1)</script>",
        evidence=evidence,
        deployment_id="dep\r\nBcc: evil@example.org",
    )
    r = render_alert(alert, AlertContext(site_id="site-a"), settings_for())
    web = payload(alert, AlertContext(site_id="site-a"), settings_for())
    for out in (r.subject, r.text, r.html, str(web)):
        assert "DECOY" not in out
    assert "<script>" not in r.html
    assert "&lt;script&gt;" in r.html
    assert "\n" not in r.subject and "\r" not in r.subject


def test_checklists_follow_the_cause() -> None:
    recon = _alert(stream="features.reconstruction_method", evidence={})
    assert any("reconstruction protocol and software version" in c for c in checklist(recon))
    notice = _alert(
        stream="features.scanner_model",
        cause="new_condition:Vision 600",
        severity="warning",
        evidence={
            "kind": "notice",
            "detail": {"value": "Vision 600"},
            "stream_kind": "categorical",
        },
    )
    assert any("revalidate" in c for c in checklist(notice))
    assert (
        "New scanner model in lesion-ai@site-a: 'Vision 600'"
        in render_alert(notice, AlertContext(), settings_for()).subject
    )
    silence = _alert(stream="probe.heartbeat", cause="probe_silence", evidence={"silence_s": 7200})
    assert any("probe process" in c for c in checklist(silence))
    assert (
        "No records received from the probe of lesion-ai@site-a for 2.0 h"
        in render_alert(silence, AlertContext(), settings_for()).subject
    )
    perf = _alert(stream="performance.missed", cause="performance", severity="critical")
    assert any("Review recent cases" in c for c in checklist(perf))
    phantom = _alert(
        stream="phantom.flood.integral_uniformity",
        cause="phantom_qc",
        evidence={},
        deployment_id=None,
        device_id=3,
        title="Flood integral uniformity beyond its action level",
    )
    assert any("phantom result" in c for c in checklist(phantom))
    named = AlertContext(site_id="site-a", device_name="SIEMENS Symbia Intevo (A1)")
    rendered = render_alert(phantom, named, settings_for())
    assert (
        "Scanner SIEMENS Symbia Intevo (A1): Flood integral uniformity beyond its action level"
        in rendered.subject
    )
    assert "Scanner SIEMENS Symbia Intevo (A1) at site site-a" in rendered.text
    assert "device 3" not in rendered.subject.lower() + rendered.text.lower()
    # without a name (the device row is gone) the id is still marked as a scanner's
    bare = render_alert(phantom, AlertContext(site_id="site-a"), settings_for())
    assert "Scanner #3: Flood" in bare.subject
    latency = _alert(stream="latency_s", evidence={})
    assert any("AI server" in c for c in checklist(latency))


def test_escalation_and_digest_wording() -> None:
    settings = settings_for(escalate_after_s=4 * 3600)
    esc = render_alert(_alert(), AlertContext(), settings, "escalation")
    assert esc.subject.startswith("[phase4 ESCALATION WARNING]")
    assert "Nobody has acknowledged this alert in 4.0 h" in esc.text
    alerts = [
        (_alert(id=i, severity="critical" if i == 3 else "warning"), AlertContext())
        for i in range(7)
    ]
    digest = render_digest(alerts, settings)
    assert digest.subject == "[phase4 CRITICAL] lesion-ai@site-a: 7 new alerts"
    for i in range(7):
        assert f"http://phase4.test:8000/ui/alerts/{i}" in digest.text


def test_a_silence_over_a_closed_day_says_how_much_was_closed() -> None:
    evidence = {
        "kind": "heartbeat",
        "last_record_at": "2026-03-06T17:00:00+00:00",
        "silence_s": 3 * 86400 + 19.5 * 3600,
        "closed_s": 86400.0,
        "usual_gap_s": 63 * 3600.0,
        "allowed_silence_s": 94.5 * 3600,
        "expected_arrivals": 10.0,
        "weeks_compared": 3,
        "rule": "weekly",
    }
    alert = _alert(
        stream="probe.heartbeat", cause="probe_silence", title="No records", evidence=evidence
    )
    text = render_alert(alert, AlertContext(site_id="site-a"), settings_for()).text
    assert "days the clinic is closed (not counted)" in text
    evidence["closed_s"] = 0.0
    plain = render_alert(alert, AlertContext(site_id="site-a"), settings_for()).text
    assert "not counted" not in plain


def test_a_stored_headline_heads_the_email_and_the_webhook_with_the_size_as_data() -> None:
    evidence = drift_evidence()
    sentence = (
        "Injected activity at University Hospital A rose 8.1% (95% CI 6.0 to 10.2%) from about "
        "10 Mar (detected 12 Mar 2026, 2 days later); linked to: new reconstruction 'Q' from "
        "the same day."
    )
    evidence["headline"] = sentence
    evidence["change"] = {
        "kind": "numeric",
        "stated": "pct",
        "size": 8.1,
        "ci95": [6.0, 10.2],
        "before": 274.0,
        "after": 296.2,
        "n_before": 500,
        "n_after": 40,
        "quantity": "injected activity",
        "unit": "MBq",
        "method": "difference of means with Welch's 95% interval",
        "began": "2026-03-10T09:00:00+00:00",
        "detected": "2026-03-12T10:20:00+00:00",
        "through": "2999-01-01T00:00:00+00:00",  # a clock gone wrong: never shown as a date
        "free_text": "DECOY",
    }
    evidence["last_timestamp"] = "2999-01-01T00:00:00+00:00"
    evidence["repeats"] = 3
    alert = _alert(evidence=evidence)
    r = render_alert(alert, AlertContext(site_id="site-a"), settings_for())
    assert r.text.splitlines()[0] == sentence
    assert r.subject == (
        "[phase4 WARNING] Injected activity at University Hospital A rose 8.1% (95% CI 6.0 to "
        "10.2%) from about 10 Mar (detected 12 Mar 2026, 2 days later) (alert 42)"
    )
    assert "Before: mean 274 MBq; since the change: mean 296 MBq (500 reference values; 40" in (
        r.text
    )
    assert "2999" not in r.text and "a date in the future" in r.text
    web = payload(alert, AlertContext(site_id="site-a"), settings_for())
    assert web["headline"] == web["alert"]["headline"] == sentence
    assert web["change"]["size"] == 8.1 and web["change"]["ci95"] == [6.0, 10.2]
    assert web["change"]["through"] is None and "free_text" not in web["change"]
    assert web["alert"]["delay_days"] == 2.1
