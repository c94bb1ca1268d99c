"""The drift report attached to an alert agrees with the alert or says why not: on a store with
a known injected shift, it opens on the alerted feature, compares the records since the alert's
change estimate (topped up after the detection when few) with the stream's reference records,
lists the other fields most changed first, explains with the window test's power exactly when
that test does not reject, never prints evidently's summary as a raw dict, and a report built
by the earlier code is served under a banner and then rebuilt."""

from __future__ import annotations

import gzip
import re
import uuid
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlmodel import Session, col, select

from phase4.monitor.drift.window_tests import WindowTest
from phase4.monitor.store.db import session_scope
from phase4.monitor.store.models import (
    Alert,
    Deployment,
    DetectorState,
    DriftReport,
    InferenceRecord,
)
from phase4.monitor.surveillance.detection import detect_deployment
from phase4.monitor.surveillance.report_page import (
    Comparison,
    ReportPage,
    Sensitivity,
    Subject,
    render,
)
from phase4.monitor.surveillance.reports import (
    MIN_WINDOW,
    attach_reports,
    report_html,
    report_sentence,
    reports_pending,
)
from phase4.monitor.ui.queries import explain_evidence
from tests.conftest import Fixture

MONITORING = {"studies_per_day": 20, "false_alarms_per_year": 1, "reference_size": 200}
STREAM = "features.liver_suvmean"
SPACING = timedelta(hours=1.2)
RAW_DICT = re.compile(r"\{'count'|'share':|\{\"count\"")


def _configure(world: Fixture) -> None:
    with session_scope(world.engine) as s:
        dep = s.get(Deployment, world.deployment_b)
        assert dep is not None
        dep.monitoring = MONITORING
        s.add(dep)


def _records(
    world: Fixture, g: np.random.Generator, start: datetime, rows: range, change: int
) -> None:
    """Records ``rows`` of site B, one every 1.2 h from ``start``: from row ``change`` on, the
    dose calibrator reads high and liver SUVs are 25% low, and the AI's scores move with them."""
    with session_scope(world.engine) as s:
        for i in rows:
            changed = i >= change
            liver = float(g.normal(2.2, 0.2)) * (0.75 if changed else 1.0)
            score = float(1 / (1 + np.exp(-(g.normal(0, 1) - (0.8 if changed else 0.0)))))
            at = start + SPACING * i
            s.add(
                InferenceRecord(
                    record_id=uuid.uuid4().hex,
                    deployment_id=world.deployment_b,
                    study_pseudonym=uuid.uuid4().hex,
                    acquired_at=at,
                    inferred_at=at + timedelta(minutes=5),
                    received_at=at + timedelta(minutes=10),
                    features={
                        "liver_suvmean": round(liver, 3),
                        "uptake_time_s": round(float(g.normal(3700, 400))),
                        "weight_kg": round(float(g.lognormal(np.log(78), 0.2)), 1),
                        "scanner_model": "Discovery MI",
                    },
                    outputs={"malignancy_score": round(score, 4), "positive": score >= 0.5},
                    latency_s=float(g.lognormal(-0.5, 0.3)),
                )
            )


def _alert(world: Fixture, stream: str = STREAM) -> Alert:
    with Session(world.engine) as s:
        alert = s.exec(
            select(Alert)
            .where(Alert.deployment_id == world.deployment_b, Alert.stream == stream)
            .order_by(col(Alert.id))
        ).first()
        assert alert is not None, f"no alert on {stream}"
        return alert


def _report(world: Fixture, alert_id: int) -> tuple[DriftReport, str]:
    with Session(world.engine) as s:
        row = s.exec(select(DriftReport).where(DriftReport.alert_id == alert_id)).one()
    html = report_html(world.engine, alert_id)
    assert html is not None
    return row, html.decode("utf-8")


def _opening(html: str) -> str:
    start = html.index('<section id="phase4-report">')
    return html[start : html.index("</section>", start)]


def _text(fragment: str) -> str:
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", fragment)))


def _acquired(world: Fixture, start: datetime, end: datetime) -> list[datetime]:
    with Session(world.engine) as s:
        return list(
            s.exec(
                select(InferenceRecord.acquired_at)
                .where(
                    InferenceRecord.deployment_id == world.deployment_b,
                    col(InferenceRecord.acquired_at) >= start,
                    col(InferenceRecord.acquired_at) <= end,
                )
                .order_by(col(InferenceRecord.acquired_at))
            )
        )


def _shifted_store(world: Fixture, n: int = 520, change: int = 400) -> datetime:
    _configure(world)
    start = datetime(2026, 1, 5, 8, tzinfo=UTC)
    _records(world, np.random.default_rng(21), start, range(n), change)
    detect_deployment(world.engine, world.deployment_b)
    return start


def test_the_report_opens_on_the_alerted_feature_over_the_records_since_the_change(
    world: Fixture,
) -> None:
    start = _shifted_store(world)
    assert attach_reports(world.engine) >= 1
    alert = _alert(world)
    assert alert.id is not None
    ev = alert.evidence
    change = datetime.fromisoformat(ev["change_timestamp"])
    detected = datetime.fromisoformat(ev["timestamp"])
    assert abs(change - (start + SPACING * 400)) <= SPACING * 5, "the injected change is dated"
    row, html = _report(world, alert.id)
    report = ev["report"]

    # The windows: from the change estimate to the detection, topped up after it to MIN_WINDOW.
    since = _acquired(world, change, detected)
    assert report["since_change"] == len(since) < MIN_WINDOW
    assert report["current_rows"] == MIN_WINDOW == report["window_test"]["n_window"]
    assert datetime.fromisoformat(report["window"][0]) == since[0]
    assert report["after_detection"] == MIN_WINDOW - len(since)
    assert report["reference_rows"] == 200 == row.reference_rows  # the stream's reference

    # It opens on the alerted feature, in its unit, with the window test that agrees.
    opening = _opening(html)
    body = html.index("<body")
    assert body < html.index('<section id="phase4-report">') < html.index('<div id="root', body)
    first_heading = re.search(r"<h2[^>]*>(.*?)</h2>", opening)
    assert first_heading and STREAM in first_heading.group(1) and "SUV" in first_heading.group(1)
    verdict = _text(re.search(r'id="subject-test">(.*?)</p>', opening).group(1))  # type: ignore[union-attr]
    assert "agrees with the alert" in verdict and "Kolmogorov" in verdict and "D = " in verdict
    assert report["window_test"]["rejects"] is True and report["window_test"]["test"] == "ks"
    assert 'class="dist"' in opening  # the before/after chart
    assert 'id="less-sensitive"' not in html

    # The other fields follow, most changed first; evidently's panels in the same order.
    fields = re.findall(r'<tr data-field="([^"]+)"', opening)
    assert fields[0] == STREAM and STREAM not in fields[1:]
    columns = row.summary["columns"]
    keys = [(columns[f]["value"] if columns[f]["value"] is not None else 2.0) for f in fields[1:]]
    assert keys == sorted(keys), "most changed (smallest p-value) first"
    assert row.summary["order"] == fields[1:]
    panels = [html.find(f"Drift in column '{f}'") for f in fields if columns[f]["method"]]
    assert all(p > 0 for p in panels) and panels == sorted(panels)

    # evidently's count in words, after the explanation; no raw dict anywhere.
    words = re.search(r"\d+ of \d+ features \(\d+%\) drifted in the window test", _text(opening))
    assert words is not None
    assert _text(opening).index("agrees with the alert") < _text(opening).index(words.group(0))
    assert report["summary"] == words.group(0)
    assert not RAW_DICT.search(_text(opening))
    sentences = " ".join(explain_evidence(alert))
    assert words.group(0) in sentences and not RAW_DICT.search(sentences)


def test_the_less_sensitive_explanation_appears_exactly_when_the_window_test_does_not_reject(
    world: Fixture,
) -> None:
    """The same alert twice: with the detector's change estimate, and with one 180 records too
    early (most of the window before the change: what a poor estimate gives)."""
    start = _shifted_store(world)
    alert = _alert(world)
    assert alert.id is not None
    attach_reports(world.engine)
    _, agreeing = _report(world, alert.id)
    with Session(world.engine) as s:
        stored = s.get(Alert, alert.id)
        assert stored is not None
        early = (start + SPACING * 220).isoformat()
        stored.evidence = {**stored.evidence, "change_timestamp": early}
        s.add(stored)
        s.execute(sa.delete(DriftReport).where(col(DriftReport.alert_id) == alert.id))
        s.commit()
    assert attach_reports(world.engine) == 1
    row, disagreeing = _report(world, alert.id)

    seen = set()
    for html in (agreeing, disagreeing):
        opening = _opening(html)
        rejects = "agrees with the alert" in opening
        explained = 'id="less-sensitive"' in opening
        assert explained is (not rejects)
        seen.add(rejects)
        if explained:
            text = _text(opening[opening.index('id="less-sensitive"') :])
            assert re.search(r"The (CUSUM|EWMA) accumulates evidence", text)
            assert re.search(
                r"A two-sample test on the \d+ records since the change, against 200 reference "
                r"records, would detect a change of this size with probability "
                r"(more than |less than )?\d+(\.\d)?%",
                text,
            )
            assert "with 80% probability" in text and "reference SD, about" in text
            sensitivity = row.summary["subject"]["sensitivity"]
            assert 0 <= sensitivity["power"] <= 1 and sensitivity["detectable"] > 0
    assert seen == {True, False}, "one report agrees, the other does not"
    assert row.summary["subject"]["test"]["rejects"] is False


def test_a_few_records_since_the_change_are_topped_up_when_later_ones_arrive(
    world: Fixture,
) -> None:
    """Built right after the detection, the window holds few records; the report is built again
    once the records that followed have arrived, and then no more."""
    _configure(world)
    now = datetime.now(UTC)
    start = now - SPACING * 460
    g = np.random.default_rng(22)
    _records(world, g, start, range(405), change=400)
    detect_deployment(world.engine, world.deployment_b)
    assert attach_reports(world.engine) >= 1
    alert = _alert(world)
    assert alert.id is not None
    row, html = _report(world, alert.id)
    first = alert.evidence["report"]
    assert first["current_rows"] < MIN_WINDOW and "extend_until" in row.summary
    assert "this report is built again when more have arrived" in _text(_opening(html))
    assert not reports_pending(world.engine), "nothing new yet: no report process"

    _records(world, g, start, range(405, 460), change=400)
    assert reports_pending(world.engine)
    assert attach_reports(world.engine) >= 1
    row, html = _report(world, alert.id)
    again = _alert(world).evidence["report"]
    assert again["current_rows"] == MIN_WINDOW and again["after_detection"] > 0
    assert again["since_change"] == first["since_change"]
    assert "extend_until" not in row.summary
    assert "that followed the detection" in _text(_opening(html))
    assert not reports_pending(world.engine)


OLD_EVIDENCE = {
    "drifted_columns": {"count": 7.0, "share": 0.4666666666666667},
    "window": ["2026-08-12T12:57:44+00:00", "2026-08-18T09:11:58+00:00"],
    "reference_rows": 500,
    "current_rows": 100,
    "path": "/v1/alerts/1/report",
}


def _old_report(world: Fixture, alert_id: int) -> None:
    with Session(world.engine) as s:
        alert = s.get(Alert, alert_id)
        assert alert is not None
        alert.evidence = {**alert.evidence, "report": OLD_EVIDENCE}
        s.add(alert)
        s.execute(sa.delete(DriftReport).where(col(DriftReport.alert_id) == alert_id))
        s.add(
            DriftReport(
                alert_id=alert_id,
                reference_rows=500,
                current_rows=100,
                summary={"drifted_columns": {"count": 7.0, "share": 0.4667}, "columns": {}},
                html_gzip=gzip.compress(
                    b"<html><body><h1>Dataset Drift is NOT detected</h1></body></html>"
                ),
            )
        )
        s.commit()


def test_a_report_built_by_the_old_code_shows_under_a_banner_and_is_rebuilt(
    world: Fixture,
) -> None:
    _shifted_store(world)
    attach_reports(world.engine)
    alert = _alert(world)
    assert alert.id is not None
    _old_report(world, alert.id)

    old = report_html(world.engine, alert.id)
    assert old is not None
    text = old.decode("utf-8")
    assert text.index('id="phase4-old-report"') < text.index("Dataset Drift is NOT detected")
    assert "rebuilds it from the alert's change estimate" in text
    sentences = " ".join(explain_evidence(_alert(world)))
    assert "7 of 15 features (47%) drifted in the window test" in sentences
    assert not RAW_DICT.search(sentences)

    assert reports_pending(world.engine)
    assert attach_reports(world.engine) == 1
    row, html = _report(world, alert.id)
    assert row.summary["layout"] == 2 and row.current_rows == MIN_WINDOW
    assert 'id="phase4-old-report"' not in html and '<section id="phase4-report">' in html
    assert "of" in _alert(world).evidence["report"]["drifted_columns"]
    assert not reports_pending(world.engine)


def test_an_old_report_that_cannot_be_rebuilt_stays_under_its_banner(world: Fixture) -> None:
    _shifted_store(world)
    attach_reports(world.engine)
    alert = _alert(world)
    assert alert.id is not None
    _old_report(world, alert.id)
    with Session(world.engine) as s:  # the detector state is gone (a reference reset)
        s.execute(sa.delete(DetectorState).where(col(DetectorState.deployment_id).is_not(None)))
        s.commit()
    assert reports_pending(world.engine)
    assert attach_reports(world.engine) == 0
    assert not reports_pending(world.engine), "tried once, not at every tick"
    html = report_html(world.engine, alert.id)
    assert html is not None and b"could not be rebuilt" in html


@pytest.mark.parametrize(
    ("report", "words"),
    [
        (OLD_EVIDENCE, "7 of 15 features (47%) drifted in the window test, comparing 100 recent"),
        ({"drifted_columns": {"count": 0.0, "share": 0.0}}, "0 feature(s) drifted"),
        ({"drifted_columns": 1}, "1 feature(s) drifted in the window test"),
        (
            {
                "drifted_columns": {"count": 3, "share": 0.2, "of": 15},
                "summary": "3 of 15 features (20%) drifted in the window test",
                "since_change": 34,
                "after_detection": 16,
                "current_rows": 50,
                "reference_rows": 500,
                "window_test": {"test": "ks", "name": "KS test", "p_value": 3.7e-5, "rejects": 1},
            },
            "3 of 15 features (20%) drifted in the window test, comparing the 50 records since "
            "the change (16 of them after the detection) with 500 reference records. On the "
            "alerted feature its KS test rejects at 5% (p = 3.7 × 10⁻⁵).",
        ),
        ({"window": []}, None),
    ],
)
def test_the_alert_page_sentence_reads_every_version_of_the_evidence(
    report: dict[str, Any], words: str | None
) -> None:
    sentence = report_sentence(report)
    if words is None:
        assert sentence is None
    else:
        assert sentence is not None and words in sentence
        assert not RAW_DICT.search(sentence)


def _page(test: WindowTest, sensitivity: Sensitivity | None, detector: str) -> str:
    kind = "numeric" if test.test == "ks" else "binary"
    values: list[Any] = [1.0, 2.0, 3.0] if kind == "numeric" else [True, False, False]
    comparison = Comparison("features.injected_activity_mbq", kind, values, values, test)
    subject = Subject(comparison.field, comparison.field, comparison, None, sensitivity)
    now = datetime(2026, 8, 18, tzinfo=UTC)
    page = ReportPage(
        alert_id=1,
        title="features.injected_activity_mbq rose",
        stream=comparison.field,
        detector=detector,
        detected_at=now,
        change_at=now - timedelta(days=4),
        since_records=34,
        since_values=34,
        after_records=16,
        after_values=16,
        wanted=MIN_WINDOW,
        extension_open=False,
        extend_until=now,
        reference_records=500,
        reference_values=500,
        reference_from=None,
        reference_to=None,
        reference_note=None,
        unit_word="records",
        subject=subject,
        others=[],
        built_at=now,
    )
    return _text(render(page))


@pytest.mark.parametrize("p_value", [0.001, 0.04, 0.06, 0.5])
@pytest.mark.parametrize("detector", ["cusum", "ewma", "ks", "bernoulli_cusum"])
def test_the_page_explains_exactly_the_window_tests_that_do_not_reject(
    p_value: float, detector: str
) -> None:
    binary = detector == "bernoulli_cusum"
    test = WindowTest("z" if binary else "ks", 0.2, p_value, 500, 50)
    sensitivity = Sensitivity(
        detector=detector,
        accumulated=34,
        window=50,
        reference=500,
        kind="binary" if binary else "numeric",
        shift=None if detector == "ks" else 0.3 if binary else 0.6,
        shift_source="its estimate",
        power=None if detector == "ks" else 0.55,
        detectable=0.35 if binary else 0.5,
        shift_unit=None if binary or detector == "ks" else 31.0,
        detectable_unit=None if binary else 26.0,
        reference_rate=0.1 if binary else None,
        smoothing=0.2 if detector == "ewma" else None,
    )
    text = _page(test, sensitivity if p_value >= 0.05 else None, detector)
    rejects = p_value < 0.05
    assert ("agrees with the alert" in text) is rejects
    assert ("does not reject at the 5% level" in text) is not rejects
    explanation = "with 80% probability" in text
    assert explanation is not rejects
    if not rejects and detector != "ks":
        assert "would detect a change of this size with probability 55.0%" in text
        assert "0.60 reference SD, about 31.0 MBq" in text or binary
    if not rejects and detector == "ks":
        assert "judged its own window" in text and "probability 55" not in text
