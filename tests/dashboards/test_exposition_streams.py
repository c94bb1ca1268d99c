"""What /metrics says of a deployment's streams is what their detectors say, from a state of any
saved version; the reference rate is the one the binary chart was designed on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from phase4.monitor.api.metrics import extract_streams
from phase4.monitor.drift.reference import RateReference
from phase4.monitor.drift.streams import DeploymentMonitor, MonitorConfig, StreamSpec

V1_STATE = Path(__file__).parents[1] / "drift" / "data" / "state_v1.json"


def _monitor() -> DeploymentMonitor:
    config = MonitorConfig(
        streams=(
            StreamSpec("features.suv", "numeric"),
            StreamSpec("outputs.positive", "binary"),
            StreamSpec("features.scanner", "categorical"),
        ),
        reference_size=200,
        reference_events_min=10,
    )
    monitor = DeploymentMonitor.new(config)
    g = np.random.default_rng(8)
    for i in range(400):
        record = {
            "features": {"suv": float(g.normal(2.2, 0.2)), "scanner": str(g.choice(["A", "B"]))},
            "outputs": {"positive": bool(g.random() < 0.1)},
        }
        monitor.observe(record, f"2026-02-01T00:00:{i:05d}", row=i)
    return monitor


def test_statistics_thresholds_and_rate_come_from_the_detectors() -> None:
    monitor = _monitor()
    samples = {s.stream: s for s in extract_streams(json.loads(json.dumps(monitor.to_dict())))}
    suv = monitor.streams["features.suv"]
    assert samples["features.suv"].monitoring
    # sequential detectors only (the KS and G tests have no running statistic between windows)
    assert samples["features.suv"].detectors == tuple(
        (name, suv.detectors[name].statistic, suv.detectors[name].threshold)
        for name in ("cusum", "ewma", "spread")
    )
    assert samples["features.suv"].ewma_z == suv.detectors["ewma"].z  # type: ignore[attr-defined]
    assert samples["features.scanner"].detectors == ()
    positive = monitor.streams["outputs.positive"]
    assert positive.reference is not None
    n, events = positive.reference["n"], positive.reference["events"]
    rate = samples["outputs.positive"].reference_rate
    assert rate == RateReference(n, events).rate == pytest.approx((events + 0.5) / (n + 1))
    assert rate != events / n
    assert rate == positive.detectors["bernoulli_cusum"].p0  # type: ignore[attr-defined]


def test_a_state_saved_before_state_versions_is_shown_with_its_streams_states() -> None:
    saved = json.loads(V1_STATE.read_text())["state"]
    samples = {s.stream: s for s in extract_streams(saved)}
    assert samples["features.suv"].monitoring
    assert {name for name, _, _ in samples["features.suv"].detectors} == {"cusum", "ewma"}
    # collecting, given up, collecting again or stopped: not watched by detectors
    for name in ("features.const", "flaky", "features.broken", "features.small[lesions=0.0]"):
        assert not samples[name].monitoring, name
    old_ewma = saved["streams"]["features.suv"]["detectors"]["ewma"]
    lam = old_ewma["lam"]
    threshold = dict((d, t) for d, _, t in samples["features.suv"].detectors)["ewma"]
    assert threshold == pytest.approx(old_ewma["limit"] * (lam / (2 - lam)) ** 0.5)
    assert extract_streams({}) == ()
    assert extract_streams({"state_version": 99, "streams": {}}) == ()


def test_reference_size_events_and_growth_steps_are_shown() -> None:
    """A 5% stream's 200-study reference grows in steps; /metrics shows its size, its events and
    the steps taken, as the saved state holds them."""
    config = MonitorConfig(
        streams=(StreamSpec("outputs.artifact", "binary"),),
        reference_size=200,
        reference_events_target=200,
    )
    monitor = DeploymentMonitor.new(config)
    g = np.random.default_rng(5)
    steps = 0
    for i in range(4000):
        monitor.observe({"outputs": {"artifact": bool(g.random() < 0.05)}}, f"t{i}", row=i)
        steps += len(monitor.take_growth_steps())
    assert steps >= 2
    (sample,) = extract_streams(json.loads(json.dumps(monitor.to_dict())))
    ref = monitor.streams["outputs.artifact"].reference
    assert ref is not None and ref["n"] > 200
    assert sample.reference_observations == ref["n"]
    assert sample.reference_events == ref["events"]
    assert sample.growth_steps == steps
