"""The fleet page and the scanner pages on a store built like the review's
(``tests/ui/fleet_data``), over HTTP (SQLite and PostgreSQL): the worst open alert and since
when, one badge per severity, studies counted by acquisition time, a scanner's verdict from its
alerts and last results with the reason; EARL bands and minimum axis spans on the NEMA IQ
charts, the AI canary's chart, the site's events on the scanner's charts; scanners named (never
"device 1") on pages, in emails and in the export; and the streams whose reference will not be
complete in time flagged on the deployment page, in /metrics (checked by promtool) and in the
export."""

from __future__ import annotations

import csv
import json
import re
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from phase4.alerts.export import export_deployment
from phase4.alerts.notify.dispatcher import notify_pending
from phase4.alerts.notify.sink import LocalSMTPSink
from phase4.monitor.core.monitoring import MonitoringConfigError, parse_monitoring
from phase4.monitor.ui.charts import value_range
from phase4.monitor.ui.queries import day_words
from phase4.phantoms.earl import EARL_BANDS
from tests.alerts.conftest import settings_for
from tests.conftest import Fixture
from tests.dashboards.conftest import tool
from tests.ui.conftest import ui_app
from tests.ui.fleet_data import FleetData, load

ORIGIN = {"Origin": "http://testserver"}
DEVICE_NUMBER = re.compile(r"\bdevice\s*#?\d", re.IGNORECASE)


@pytest.fixture
def fleet(world: Fixture) -> FleetData:
    return load(world)


@pytest.fixture
def signed_in(db_url: str, world: Fixture, fleet: FleetData) -> Iterator[TestClient]:
    with TestClient(ui_app(db_url, world), follow_redirects=False) as c:
        r = c.post("/ui/login", data={"token": world.reviewer, "next": "/ui"}, headers=ORIGIN)
        assert r.status_code == 303, r.text
        yield c


def table_row(html: str, table_id: str, key: str) -> str:
    """The ``<tr>`` of table ``table_id`` that mentions ``key``."""
    table = re.search(rf'<table id="{table_id}">(.*?)</table>', html, re.S)
    assert table, table_id
    rows = [r for r in table.group(1).split("<tr")[1:] if key in r]
    assert len(rows) == 1, (key, len(rows))
    return rows[0]


def text_of(fragment: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", fragment)).strip()


def figures(html: str) -> dict[str, dict[str, Any]]:
    """Each chart's plotly figure on the page, by its title."""
    out = {}
    for body in re.findall(
        r'<script type="application/json" data-chart="[^"]+">(.*?)</script>', html, re.S
    ):
        fig = json.loads(body)
        out[fig["layout"]["title"]["text"]] = fig
    return out


def test_the_fleet_page_shows_the_worst_open_alert_since_when_with_a_badge_per_severity(
    signed_in: TestClient, fleet: FleetData
) -> None:
    html = signed_in.get("/ui").text
    drifting = table_row(html, "deployments", f">{fleet.drifting}<")
    warned = table_row(html, "deployments", f">{fleet.warned}<")
    dicom = table_row(html, "deployments", f">{fleet.dicom}<")
    assert 'data-worst="critical"' in drifting and 'data-worst="warning"' in warned
    assert 'data-worst="ok"' in dicom
    # one badge per severity, with its count: 1 critical + 8 warnings is not 2 warnings
    assert "sev-critical" in drifting and "sev-critical" not in warned
    assert "1 critical" in text_of(drifting) and "8 warning" in text_of(drifting)
    assert "2 warning" in text_of(warned)
    assert f"since {day_words(fleet.drifting_since)}" in text_of(drifting)
    assert "alerting" not in html  # the word that hid the difference


def test_studies_are_counted_by_acquisition_time_not_arrival(
    signed_in: TestClient, fleet: FleetData
) -> None:
    html = signed_in.get("/ui").text
    for dep in (fleet.drifting, fleet.warned):
        row = table_row(html, "deployments", f">{dep}<")
        day = re.search(r'class="num acquired-24h">(\d+)<', row)
        week = re.search(r'class="num acquired-7d">(\d+)<', row)
        assert day and week
        assert int(day.group(1)) == fleet.acquired_24h[dep] == 20
        assert int(week.group(1)) == fleet.acquired_7d[dep] == 140
        assert fleet.arrived[dep] == 200  # by arrival, 24 h and 7 d would both be 200


def test_a_scanner_with_3_of_4_results_out_and_a_critical_alert_is_critical_with_the_reason(
    signed_in: TestClient, fleet: FleetData
) -> None:
    html = signed_in.get("/ui").text
    row = table_row(html, "devices", fleet.scanner_a_name)
    assert 'data-verdict="critical"' in row and "sev-critical" in row
    reason = text_of(row)
    assert "3 of last 4 cylinder results outside tolerance" in reason
    assert f"critical alert open since {day_words(fleet.critical_since)}" in reason
    assert ">pass<" not in row  # its very last result passed: not the verdict any more
    canary = table_row(html, "devices", fleet.scanner_b_name)
    assert 'data-verdict="critical"' in canary
    assert "critical alert open since" in text_of(canary)


def test_nema_iq_charts_carry_the_earl_bands_as_the_tolerance_shown(
    signed_in: TestClient, fleet: FleetData
) -> None:
    html = signed_in.get(f"/ui/devices/{fleet.scanner_b}").text
    figs = figures(html)
    for metric in ("rc_max_37mm", "rc_max_10mm", "rc_mean_10mm"):
        fig = figs[f"nema-iq: {metric}"]
        kind, diameter = metric.rsplit("_", 1)
        bands = {
            shape["name"].split(" ")[0]: (shape["y0"], shape["y1"])
            for shape in fig["layout"]["shapes"]
            if shape.get("name", "").startswith("EARL")
        }
        assert bands == {
            std: EARL_BANDS[std][kind][float(diameter.removesuffix("mm"))]
            for std in ("EARL1", "EARL2")
        }, metric
    captions = re.findall(r"<figcaption>(nema-iq [^<]*)</figcaption>", html)
    assert len(captions) == 3
    assert all("tolerance shown: EARL bands EARL1" in c for c in captions)
    assert not any("no tolerance set" in c for c in captions)
    # the cylinder keeps its own tolerance, and no EARL band
    assert not any(
        s.get("name", "").startswith("EARL")
        for s in figs["cylinder: recovery_ratio"]["layout"].get("shapes", [])
    )


def test_value_axes_span_at_least_two_percent(signed_in: TestClient, fleet: FleetData) -> None:
    lo, hi = value_range([0.99999998, 1.0]) or (0.0, 0.0)
    assert hi - lo >= 0.04 and lo < 0.98 and hi > 1.02
    lo, hi = value_range([0.5, 0.5], [0.3, 0.9]) or (0.0, 0.0)
    assert lo <= 0.3 and hi >= 0.9  # the levels drawn are inside
    assert value_range([0.0, 0.0]) is None  # plotly's own range
    html = signed_in.get(f"/ui/devices/{fleet.scanner_b}").text
    fig = figures(html)["nema-iq: rc_max_37mm"]
    values = [v for t in fig["data"] if t.get("name") == "value" for v in t["y"]]
    assert max(values) - min(values) < 1e-7  # the 2e-8 step of the store
    lo, hi = fig["layout"]["yaxis"]["range"]
    assert hi - lo >= 0.04 and fig["layout"]["yaxis"]["autorange"] is False


def test_the_ai_canary_is_charted_with_its_alert_and_the_site_events_are_marked(
    signed_in: TestClient, fleet: FleetData
) -> None:
    html = signed_in.get(f"/ui/devices/{fleet.scanner_b}").text
    assert 'data-chart="canary-0"' in html
    figs = figures(html)
    canary = figs["AI canary on the nema-iq phantom: the AI's SUVmax / true SUV per sphere"]
    assert sorted(t["name"] for t in canary["data"]) == sorted(
        f"{d:g} mm sphere" for d in (10, 13, 17, 22, 28, 37)
    )
    assert all(len(t["y"]) == len(t["x"]) > 5 for t in canary["data"])
    notes = [a["text"] for a in canary["layout"]["annotations"]]
    assert any(f"canary alert {fleet.canary_alert}" in n for n in notes)
    # the new reconstruction at the scanner's site, on every chart of the scanner
    for title, fig in figs.items():
        notes = [a["text"] for a in fig["layout"].get("annotations", [])]
        assert any("new reconstruction 'Q.Clear beta550'" in n for n in notes), title
    # site A had no new value: nothing marked on its scanner
    other = signed_in.get(f"/ui/devices/{fleet.scanner_a}").text
    assert "new reconstruction" not in other


def test_scanners_are_named_never_numbered_on_pages(
    signed_in: TestClient, fleet: FleetData
) -> None:
    for path in (
        "/ui",
        "/ui/alerts",
        "/ui/alerts?status=all",
        f"/ui/alerts/{fleet.device_alert}",
        f"/ui/alerts/{fleet.canary_alert}",
        f"/ui/devices/{fleet.scanner_a}",
    ):
        html = signed_in.get(path).text
        assert not DEVICE_NUMBER.search(text_of(html)), (path, DEVICE_NUMBER.search(text_of(html)))
    page = signed_in.get(f"/ui/alerts/{fleet.device_alert}").text
    assert f'<a href="/ui/devices/{fleet.scanner_a}">{fleet.scanner_a_name}</a>' in page
    listing = signed_in.get("/ui/alerts").text
    assert fleet.scanner_b_name in listing
    (timeline,) = [f for title, f in figures(listing).items() if title.startswith("Alerts by")]
    assert fleet.scanner_a_name in {y for t in timeline["data"] for y in t["y"]}


def test_alert_emails_name_the_scanner(world: Fixture, fleet: FleetData) -> None:
    with LocalSMTPSink() as sink:
        summary = notify_pending(world.engine, settings_for(sink))
        assert fleet.device_alert in summary.notified
        messages = sink.wait_for(len(summary.notified))
    mails = [(m.subject, m.part("plain"), m.part("html")) for m in messages]
    for subject, plain, html in mails:
        for part in (subject, plain, html):
            assert not DEVICE_NUMBER.search(part), (subject, DEVICE_NUMBER.search(part))
    everything = " ".join(" ".join(m) for m in mails)
    assert fleet.scanner_a_name in everything and fleet.scanner_b_name in everything
    subjects = " ".join(s for s, _, _ in mails)
    assert fleet.scanner_a_name in subjects or "scanners" in subjects


def test_the_reference_horizon_flag_on_the_page_in_metrics_and_in_the_export(
    signed_in: TestClient, world: Fixture, fleet: FleetData, tmp_path: Path
) -> None:
    page = signed_in.get(f"/ui/deployments/{fleet.dicom}").text
    flag = re.search(
        r'<section class="note reference-flag" id="reference-flag".*?</section>', page, re.S
    )
    assert flag, "the flag block"
    words = text_of(flag.group(0))
    found = re.search(
        r"(\d+) streams will not complete their reference within 90 days at (\d+) studies/year "
        r"\((?:about )?([\d.]+)(?: to ([\d.]+))? years more\): consider a smaller reference "
        r"\(reference_size\) or declaring a baseline",
        words,
    )
    assert found, words
    n = int(found.group(1))
    assert n >= 5 and 50 <= int(found.group(2)) <= 100  # 74 a year, ~6 in the last 30 days
    assert 4 <= float(found.group(3)) <= 8  # 426 values at ~74 a year
    assert page.index('id="reference-flag"') < page.index('id="streams-h"')  # near the top
    # the monitored deployments are not flagged
    assert 'id="reference-flag"' not in signed_in.get(f"/ui/deployments/{fleet.drifting}").text
    overview = table_row(signed_in.get("/ui").text, "deployments", f">{fleet.dicom}<")
    assert f"{n} streams will not complete their reference within 90 days" in text_of(overview)

    metrics = signed_in.get("/metrics").text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
    }
    key = ("phase4_streams_reference_hopeless", (("deployment", fleet.dicom), ("site", "site-a")))
    assert samples[key] == n
    assert (
        samples[
            (
                "phase4_streams_reference_hopeless",
                (("deployment", fleet.drifting), ("site", "site-b")),
            )
        ]
        == 0
    )
    etas = {
        dict(labels)["stream"]: v
        for (name, labels), v in samples.items()
        if name == "phase4_stream_reference_eta_seconds"
        and dict(labels)["deployment"] == fleet.dicom
    }
    assert len(etas) >= n and all(v > 90 * 86400 for v in etas.values())
    assert (
        samples[
            (
                "phase4_deployment_reference_horizon_seconds",
                (("deployment", fleet.dicom), ("site", "site-a")),
            )
        ]
        == 90 * 86400
    )
    lint = subprocess.run(
        [tool("promtool"), "check", "metrics"], input=metrics, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert lint.returncode == 0 and not (lint.stdout + lint.stderr).strip(), (
        lint.stdout + lint.stderr
    )

    today = fleet.now.date()
    result = export_deployment(
        world.engine,
        fleet.dicom,
        today - timedelta(days=365),
        today,
        {"json", "csv"},
        tmp_path,
        actor="qa:grace",
    )
    report = json.loads((result.directory / "report.json").read_text())
    outlook = report["reference_outlook"]
    assert outlook["streams_not_complete_within_horizon"] == n and outlook["horizon_days"] == 90
    assert outlook["summary"].startswith(f"{n} streams will not complete their reference")
    with (result.directory / "csv" / "reference_outlook.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    late = [r for r in rows if r["completes_within_horizon"] == "false"]
    assert len(late) == n and all(r["horizon_days"] == "90" for r in rows)


def test_the_horizon_is_a_monitoring_setting() -> None:
    assert parse_monitoring({}).reference_horizon_days == 90
    assert parse_monitoring({"reference_horizon_days": 365}).reference_horizon_days == 365
    with pytest.raises(MonitoringConfigError, match="reference_horizon_days"):
        parse_monitoring({"reference_horizon_days": 0})
    with pytest.raises(MonitoringConfigError, match="reference_horizon_dayz"):
        parse_monitoring({"reference_horizon_dayz": 30})
