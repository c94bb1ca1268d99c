"""The deployment page's charts, read from the plotly JSON the page sends (SQLite and
PostgreSQL): an alerted stream's first chart is its quantity in its unit against its reference
band, with its estimated change and one marker per alert however often it alarmed; rates on
their own 0-100% axis with Wilson bands; one chart per model output; performance with Wilson
intervals and the validated baseline when configured; the streams still collecting their
reference in one line; the site's events on the time axis."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from phase4.monitor.core.statuses import AlertStatus
from phase4.monitor.store.db import session_scope
from phase4.monitor.store.models import Alert, Deployment
from phase4.monitor.surveillance.detection import load_state
from phase4.monitor.ui.timeseries import chart_time
from tests.conftest import Fixture
from tests.ui.conftest import ui_app
from tests.ui.data import UiData
from tests.ui.demo_like import DemoLike, load_demo_like, stream_alerts
from tests.ui.test_ui_http import login

FIGURE = re.compile(r'<script type="application/json" data-chart="([^"]+)">(.*?)</script>', re.S)
EPISODE_MARKERS = "alert detected (one marker per alert)"


def figures(html: str) -> list[tuple[str, dict[str, Any]]]:
    """The page's figures in the order they appear."""
    return [(fid, json.loads(text)) for fid, text in FIGURE.findall(html)]


def trace(fig: dict[str, Any], name: str) -> dict[str, Any]:
    found = [t for t in fig["data"] if t.get("name", "").startswith(name)]
    assert len(found) == 1, (name, [t.get("name") for t in fig["data"]])
    return found[0]


def title(fig: dict[str, Any]) -> str:
    return str(fig["layout"]["title"]["text"])


def y_title(fig: dict[str, Any]) -> str:
    return str(fig["layout"]["yaxis"]["title"]["text"])


def change_lines(fig: dict[str, Any]) -> list[str]:
    return [
        s["x0"]
        for s in fig["layout"]["shapes"]
        if s["type"] == "line" and s["line"]["color"] == "#e07b00"
    ]


def test_an_alerted_streams_first_chart_is_its_quantity_against_its_reference(
    ui_client: TestClient, world: Fixture, ui_data: UiData
) -> None:
    stream = "features.liver_suvmean"
    with session_scope(world.engine) as s:
        # the drift persists: many alarms since, and an earlier episode already resolved
        drift = s.get(Alert, ui_data.drift_alert)
        assert drift is not None and drift.stream == stream
        drift.evidence = {**drift.evidence, "repeats": 37}
        change = drift.evidence["change_timestamp"]
        earlier = drift.opened_at - timedelta(days=9)
        s.add(
            Alert(
                deployment_id=ui_data.drifting,
                stream=stream,
                cause="drift",
                severity="warning",
                status=AlertStatus.RESOLVED,
                title=f"{stream} rose (detected by ewma)",
                evidence={
                    "detector": "ewma",
                    "timestamp": (earlier + timedelta(hours=20)).isoformat(),
                    "change_timestamp": earlier.isoformat(),
                },
                opened_at=earlier + timedelta(hours=21),
            )
        )
    with Session(world.engine) as s:
        alerted = {
            a.stream for a in s.exec(select(Alert).where(Alert.deployment_id == ui_data.drifting))
        }
        n_alerts = len(stream_alerts(s, ui_data.drifting, stream))
    assert n_alerts == 2
    login(ui_client, world.reviewer)
    html = ui_client.get(f"/ui/deployments/{ui_data.drifting}").text
    figs = figures(html)
    first_id, first = figs[0]
    assert first_id == "stream-0" and title(first) in alerted
    # the quantity against the reference: a band and the reference median or rate
    (band,) = [t for t in first["data"] if t.get("fill") and t["name"].startswith("reference ")]
    assert band["fill"] == "toself" and len(band["x"]) == 4
    assert [
        t for t in first["data"] if t["name"].startswith(("reference median", "reference rate"))
    ]
    assert first["data"][0] is not None and trace(first, EPISODE_MARKERS)

    liver = next(f for _, f in figs if title(f) == stream)
    assert y_title(liver) == "liver_suvmean (SUV)"
    ref = trace(liver, "reference interquartile range (25-75%)")
    assert ref["name"].endswith(" SUV") and ref["fill"] == "toself"
    median = trace(liver, "reference median")
    assert "SUV" in median["name"] and median["line"]["dash"] == "dash"
    daily = trace(liver, "median per day (SUV)")
    assert trace(liver, "interquartile range per day")["fill"] == "toself"
    assert len(daily["x"]) >= 15 and all(n >= 1 for n, _, _ in daily["customdata"])
    # one marker per alert, though the drift alarmed many times (37 repeats, and the replay)
    markers = trace(liver, EPISODE_MARKERS)
    assert len(markers["x"]) == n_alerts == 2 and markers["yaxis"] == "y2"
    assert chart_time(change) in change_lines(liver) and len(change_lines(liver)) == 2
    since = trace(liver, f"since the change (alert {ui_data.drift_alert}): median")
    level = since["y"][0]
    # the data's SUVs are 25% high after the change: the level sits above the reference band
    assert level > max(ref["y"]) and since["x"][0] == chart_time(change)

    # the detector's statistic is folded under the quantity chart, for the statistician
    statistic_id = f"stream-{[f for _, f in figs if title(f) in alerted].index(liver)}-statistic"
    folded = re.findall(r'<details class="statistic">(.*?)</details>', html, re.S)
    assert any(f'data-chart="{statistic_id}"' in d for d in folded)
    assert "The replay ends where the stored detector state is." in html
    statistic = dict(figs)[statistic_id]
    assert len(trace(statistic, EPISODE_MARKERS)["x"]) == 2
    assert trace(statistic, "threshold")


def test_rates_have_their_own_percent_axis_and_outputs_never_share_one(
    ui_client: TestClient, world: Fixture, ui_data: UiData
) -> None:
    login(ui_client, world.reviewer)
    figs = dict(figures(ui_client.get(f"/ui/deployments/{ui_data.drifting}").text))
    outputs = {title(f): f for fid, f in figs.items() if fid.startswith("output-")}
    assert set(outputs) == {"outputs.malignancy_score", "outputs.positive", "inference_error"}
    for name, fig in outputs.items():
        # one quantity per chart: its centre line and its band, nothing of another scale
        quantities = [t for t in fig["data"] if t.get("fill") != "toself"]
        assert len(quantities) == 1, (name, [t["name"] for t in quantities])
    for name in ("outputs.positive", "inference_error"):
        fig = outputs[name]
        axis = fig["layout"]["yaxis"]
        assert axis["ticksuffix"] == "%" and axis["range"][0] == 0 and axis["range"][1] <= 100
        assert y_title(fig).endswith("(%)")
        share = trace(fig, "share per ")
        band = trace(fig, "Wilson 95% interval per ")
        assert band["fill"] == "toself"
        assert all(0 <= y <= 100 for y in share["y"] + band["y"])
        for y, (_, low, high) in zip(share["y"], share["customdata"], strict=True):
            assert low - 0.01 <= y <= high + 0.01
    assert "ticksuffix" not in outputs["outputs.malignancy_score"]["layout"]["yaxis"]
    # a yes/no stream's own chart: its rate per bucket against the reference rate, in %
    positive = next(
        f for fid, f in figs.items() if fid.startswith("stream") and title(f) == "outputs.positive"
    )
    assert positive["layout"]["yaxis"]["ticksuffix"] == "%"
    assert trace(positive, "reference Wilson 95% interval")["fill"] == "toself"
    assert 0 < trace(positive, "reference rate")["y"][0] < 100


def _wilson(k: int, n: int) -> tuple[float, float]:
    z = 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half) * 100, min(1.0, centre + half) * 100


def test_performance_has_wilson_intervals_and_the_validated_baseline_when_stated(
    ui_client: TestClient, world: Fixture, ui_data: UiData
) -> None:
    login(ui_client, world.reviewer)
    page = f"/ui/deployments/{ui_data.drifting}"
    perf = dict(figures(ui_client.get(page).text))["performance"]
    assert perf["layout"]["yaxis"]["ticksuffix"] == "%"
    for metric in ("sensitivity", "specificity", "PPV"):
        band = trace(perf, f"{metric} Wilson 95% interval")
        assert band["fill"] == "toself"
        line = trace(perf, f"{metric} (")
        for y, (k, n, low, high) in zip(line["y"], line["customdata"], strict=True):
            lo, hi = _wilson(k, n)
            assert math.isclose(y, 100 * k / n, abs_tol=0.05)
            assert math.isclose(low, lo, abs_tol=0.05) and math.isclose(high, hi, abs_tol=0.05)
    assert not [t for t in perf["data"] if "validated baseline" in t["name"]]

    with session_scope(world.engine) as s:
        dep = s.get(Deployment, ui_data.drifting)
        assert dep is not None
        performance = {
            **dep.monitoring["performance"],
            "validated_baseline": {"sensitivity": 0.9, "specificity": 85},
        }
        dep.monitoring = {**dep.monitoring, "performance": performance}
        s.add(dep)
    perf = dict(figures(ui_client.get(page).text))["performance"]
    assert trace(perf, "sensitivity validated baseline 90%")["y"] == [90.0, 90.0]
    assert trace(perf, "specificity validated baseline 85%")["y"] == [85.0, 85.0]
    assert not [t for t in perf["data"] if t["name"].startswith("PPV validated")]


def test_streams_collecting_their_reference_are_summarised_in_one_line(
    ui_client: TestClient, world: Fixture, ui_data: UiData
) -> None:
    with Session(world.engine) as s:
        _, monitor = load_state(s, ui_data.collecting)
    assert monitor is not None
    n = sum(1 for st in monitor.streams.values() if st.spec.source == "record")
    login(ui_client, world.reviewer)
    html = ui_client.get(f"/ui/deployments/{ui_data.collecting}").text
    summary = re.search(r'<p id="collecting-summary">(.*?)</p>', html, re.S)
    assert summary is not None
    assert f"{n} streams collecting their reference: 40 of 100 values so far;" in summary.group(1)
    assert "2 labelled-performance streams collecting their reference: 0 of 40 labelled " in html
    assert "collecting the reference (" not in html and "<article" not in html  # no panels


@pytest.fixture
def demo(world: Fixture) -> DemoLike:
    return load_demo_like(world)


@pytest.fixture
def demo_client(db_url: str, world: Fixture, demo: DemoLike) -> Iterator[TestClient]:
    with TestClient(ui_app(db_url, world), follow_redirects=False) as c:
        yield c


def test_a_demo_like_deployment_marks_its_events_and_one_marker_for_a_lasting_shift(
    demo_client: TestClient, world: Fixture, demo: DemoLike
) -> None:
    ui_client = demo_client
    with Session(world.engine) as s:
        (noise,) = stream_alerts(s, demo.drifting, "features.image_noise_cv")
    assert noise.evidence.get("repeats", 0) > 10  # a lasting shift alarms again and again
    login(ui_client, world.reviewer)
    html = ui_client.get(f"/ui/deployments/{demo.drifting}").text
    figs = figures(html)
    fid, first = figs[0]
    assert fid == "stream-0" and title(first) == "features.image_noise_cv"
    assert y_title(first) == "image_noise_cv"  # a coefficient of variation has no unit
    assert len(trace(first, EPISODE_MARKERS)["x"]) == 1
    statistic = dict(figs)["stream-0-statistic"]
    assert len(trace(statistic, "alarm (")["x"]) > 10  # the alarms stay in the folded chart
    ref = trace(first, "reference interquartile range")
    since = trace(first, f"since the change (alert {noise.id}): median")
    assert since["y"][0] < min(ref["y"])  # the new reconstruction's noise is lower
    new_values = trace(first, "new software, reconstruction or other category")
    assert any("Q.Clear beta550" in t for t in new_values["text"])
    scanner = trace(first, "phantom QC / canary alert of a site scanner")
    assert len(scanner["x"]) == 1 and "Discovery MI" in scanner["text"][0]
    assert all(0 < y < 1 for y in new_values["y"] + scanner["y"])  # on the edge axis
    # the listener-like deployment: its streams in one line
    html = ui_client.get(f"/ui/deployments/{demo.collecting}").text
    assert re.search(
        r'<p id="collecting-summary">.*?\d+ streams collecting their reference: 40 of 500 values '
        r"so far",
        html,
        re.S,
    )
    assert "<article" not in html
    leaked = [i for i in demo.identifiers if i in html]
    assert not leaked
