"""/metrics by the conventions, on a populated store: promtool lints it clean, every family is
there, no identifier leaks into a label, and a scrape costs a few aggregate queries."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from fastapi.testclient import TestClient

from phase4.monitor.api.metrics import device_label, extract_streams
from phase4.monitor.store.models import DetectorState
from phase4.monitor.surveillance.detection import detect_all
from tests.conftest import Fixture, LiveMonitor
from tests.dashboards import data
from tests.dashboards.conftest import tool

FAMILIES = {
    "phase4_deployment_info": "gauge",
    "phase4_deployment_status": "gauge",
    "phase4_records_stored": "counter",
    "phase4_deployment_last_record_age_seconds": "gauge",
    "phase4_alerts_open": "gauge",
    "phase4_deployment_alerts_open": "gauge",
    "phase4_stream_alerts_open": "gauge",
    "phase4_detector_statistic": "gauge",
    "phase4_detector_threshold": "gauge",
    "phase4_stream_ewma_zscore": "gauge",
    "phase4_stream_reference_event_ratio": "gauge",
    "phase4_stream_reference_observations": "gauge",
    "phase4_stream_reference_events": "gauge",
    "phase4_stream_reference_growth_steps": "gauge",
    "phase4_stream_monitoring": "gauge",
    "phase4_stream_observations": "counter",
    "phase4_phantom_metric": "gauge",
    "phase4_phantom_verdict_level": "gauge",
    "phase4_phantom_failing": "gauge",
    "phase4_phantom_last_acquired_age_seconds": "gauge",
    "phase4_phantom_tolerance": "gauge",
    "phase4_ingest_items": "counter",
    "phase4_inference_latency_seconds": "histogram",
    "phase4_inference_errors": "counter",
    "phase4_probe_queue_depth": "gauge",
    "phase4_probe_spool_depth": "gauge",
    "phase4_probe_dropped_records": "counter",
    "phase4_probe_last_report_age_seconds": "gauge",
    "phase4_probe_info": "gauge",
}
ALLOWED_LABELS = {
    "deployment",
    "site",
    "model",
    "model_version",
    "device",
    "kind",
    "metric",
    "bound",
    "stream",
    "detector",
    "severity",
    "status",
    "probe_version",
    "le",
    "dimension",  # subgroups (phase4/monitor/api/subgroup_metrics.py)
    "group",
}


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)", line)
        assert m, line
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def test_a_populated_exposition_passes_promtool(live_monitor: LiveMonitor, tmp_path: Path) -> None:
    data.load(live_monitor.url, live_monitor.world, tmp_path)
    text = httpx.get(f"{live_monitor.url}/metrics", timeout=30).text
    lint = subprocess.run(
        [tool("promtool"), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert lint.stdout.strip() == "" and lint.stderr.strip() == ""

    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
    for family, kind in FAMILIES.items():
        exposed = family + "_total" if kind == "counter" else family
        assert types.get(exposed) == kind, family
    samples = _samples(text)
    names = {name for name, _, _ in samples}
    for family in FAMILIES:
        assert any(n == family or n.startswith(family + "_") for n in names), f"{family}: empty"
    for name, labels, _ in samples:
        assert name.startswith("phase4_"), name
        assert set(labels) <= ALLOWED_LABELS, (name, labels)
    # No record id or pseudonym anywhere: labels come from bounded sets only.
    for record_id in live_monitor.stored_record_ids()[:50]:
        assert record_id not in text

    values = {(n, tuple(sorted(lb.items()))): v for n, lb, v in samples}

    def value(name: str, **labels: str) -> float:
        return values[name, tuple(sorted(labels.items()))]

    assert (
        value(
            "phase4_deployment_status", deployment=data.DRIFTING, site="site-b", status="alerting"
        )
        == 1
    )
    assert value("phase4_probe_spool_depth", deployment=data.DRIFTING) == 0
    assert value("phase4_probe_info", deployment=data.STEADY, probe_version="0.1.0") == 1
    assert value("phase4_ingest_items_total", kind="records", status="rejected") == 1
    failing = device_label("site-a", "Biograph Vision", "A2")
    assert value("phase4_phantom_failing", site="site-a", device=failing, kind="flood") == 1
    assert (
        value(
            "phase4_phantom_tolerance",
            site="site-a",
            device=failing,
            kind="flood",
            metric="integral_uniformity_ufov_pct",
            bound="upper_action",
        )
        == 5.0
    )  # the latest tolerance version is the one in force
    drifting_stats = [
        (lb["stream"], lb["detector"])
        for n, lb, _ in samples
        if n == "phase4_detector_statistic" and lb["deployment"] == data.DRIFTING
    ]
    assert ("features.liver_suvmean", "cusum") in drifting_stats
    assert ("outputs.positive", "bernoulli_cusum") in drifting_stats


def test_detector_statistics_follow_the_saved_state(client: TestClient, world: Fixture) -> None:
    data.configure(world.engine, data.DRIFTING)
    g = data.np.random.default_rng(5)
    records = []
    for i in range(400):
        s = data.study(g, i, changed=False)
        records.append(
            {
                "record_id": f"r{i}",
                "deployment": data.DRIFTING,
                "inferred_at": s["acquired_at"].isoformat(),
                "acquired_at": s["acquired_at"].isoformat(),
                "features": s["features"],
                "outputs": s["outputs"],
            }
        )
    headers = world.auth(world.probe_b)
    assert client.post("/v1/records", json={"records": records[:300]}, headers=headers).is_success
    detect_all(world.engine)
    first = client.get("/metrics").text
    assert client.post("/v1/records", json={"records": records[300:]}, headers=headers).is_success
    detect_all(world.engine)
    second = client.get("/metrics").text
    with world.engine.connect() as conn:
        state: dict[str, Any] = conn.execute(sa.select(DetectorState.state)).scalar_one()
    expected = {s.stream: s for s in extract_streams(state)}
    cusum = expected["features.liver_suvmean"].detectors[0]
    assert cusum[0] == "cusum"
    line = (
        f'phase4_detector_statistic{{deployment="{data.DRIFTING}",detector="cusum",'
        f'stream="features.liver_suvmean"}} {cusum[1]}'
    )
    assert line in second  # the cached extract was refreshed when the state changed
    assert first != second


def test_probe_health_is_optional_and_a_bad_report_never_costs_records(
    client: TestClient, world: Fixture
) -> None:
    def batch(i: int) -> list[dict[str, Any]]:
        return [
            {
                "record_id": f"p{i}",
                "deployment": world.deployment_a,
                "inferred_at": "2026-01-05T08:00:00+00:00",
                "features": {"x": 1.0},
            }
        ]

    headers = world.auth(world.probe_a)
    r = client.post("/v1/records", json={"records": batch(1)}, headers=headers)
    assert r.json()["created"] == 1
    assert "phase4_probe_queue_depth{" not in client.get("/metrics").text
    bad = {"queue_depth": -3, "spool_depth": "many"}
    r = client.post("/v1/records", json={"records": batch(2), "probe": bad}, headers=headers)
    assert r.status_code == 200 and r.json()["created"] == 1
    assert "phase4_probe_queue_depth{" not in client.get("/metrics").text
    health = {"queue_depth": 7, "spool_depth": 1234, "dropped_total": 2, "probe_version": "0.1.0"}
    r = client.post("/v1/records", json={"records": batch(3), "probe": health}, headers=headers)
    assert r.json()["created"] == 1
    text = client.get("/metrics").text
    assert f'phase4_probe_queue_depth{{deployment="{world.deployment_a}"}} 7.0' in text
    assert f'phase4_probe_spool_depth{{deployment="{world.deployment_a}"}} 1234.0' in text
    assert f'phase4_probe_dropped_records_total{{deployment="{world.deployment_a}"}} 2.0' in text
    assert world.deployment_b not in text.split("phase4_probe_queue_depth", 1)[1].split("#", 1)[0]
    # A batch whose every record is rejected attributes the report to no deployment.
    other = dict(batch(4)[0], deployment="no-such-deployment")
    r = client.post(
        "/v1/records",
        json={"records": [other], "probe": dict(health, queue_depth=99)},
        headers=headers,
    )
    assert r.json()["rejected"] == 1
    assert "} 99.0" not in client.get("/metrics").text


def test_a_scrape_is_a_few_aggregate_queries(live_monitor: LiveMonitor, tmp_path: Path) -> None:
    data.load(live_monitor.url, live_monitor.world, tmp_path, records=250)
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    sa.event.listen(live_monitor.engine, "before_cursor_execute", count)
    try:
        httpx.get(f"{live_monitor.url}/metrics", timeout=30).raise_for_status()
        cold = len(statements)
        statements.clear()
        httpx.get(f"{live_monitor.url}/metrics", timeout=30).raise_for_status()
        warm = statements
    finally:
        sa.event.remove(live_monitor.engine, "before_cursor_execute", count)
    # + the subgroup snapshots' versions (and, cold, their tables if any were saved)
    assert cold <= 9
    assert len(warm) <= 8  # unchanged detector state is not read again
    assert not any("detector_state.state" in s for s in warm)
