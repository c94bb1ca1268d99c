"""A stream takes whatever a record holds: unusable values are missing for it, and a stream
whose update raises is quarantined alone, once, with its reason kept in the state."""

from __future__ import annotations

import json
import math

import numpy as np

from phase4.monitor.drift.streams import DeploymentMonitor, MonitorConfig, StreamSpec, finite_float

CONFIG = MonitorConfig(
    streams=(
        StreamSpec("features.suv", "numeric"),
        StreamSpec("features.scanner", "categorical"),
        StreamSpec("error", "binary"),
    ),
    reference_size=40,
)


def test_values_beyond_float_range_and_non_finite_are_missing() -> None:
    assert finite_float(10**400) is None and finite_float(-(10**400)) is None
    assert finite_float(math.nan) is None and finite_float(math.inf) is None
    assert finite_float(3) == 3.0 and finite_float(True) == 1.0
    assert finite_float("3.0") is None and finite_float([1.0]) is None
    monitor = DeploymentMonitor.new(CONFIG)
    odd = [10**400, math.nan, -math.inf, [1.0], {"v": 1}, "2.2"]
    for i, value in enumerate(odd):
        assert (
            monitor.observe({"features": {"suv": value, "scanner": [1]}}, f"2026-01-01T0{i}") == []
        )
    suv = monitor.streams["features.suv"]
    assert suv.observations == 0 and suv.unusable == len(odd) and suv.quarantine is None
    assert monitor.streams["features.scanner"].unusable == len(odd)
    monitor.observe({"features": {"suv": 2.2, "scanner": "A"}}, "2026-01-02")
    assert suv.observations == 1


def test_a_stream_whose_update_raises_is_quarantined_and_the_others_go_on() -> None:
    g = np.random.default_rng(4)
    monitor = DeploymentMonitor.new(CONFIG)
    for i in range(20):
        monitor.observe({"features": {"suv": float(g.normal(2, 0.2)), "scanner": "A"}}, f"t{i}")
    # a saved state no update could have written: restored, it makes the next update raise
    state = monitor.to_dict()
    state["streams"]["features.suv"]["reference_size"] = "high"
    monitor = DeploymentMonitor.from_dict(json.loads(json.dumps(state)))
    alarms = monitor.observe({"features": {"suv": 2.1, "scanner": "A"}}, "2026-02-03T10:00:00")
    [notice] = alarms
    assert notice.alarm.kind == "quarantine" and notice.stream == "features.suv"
    reason = notice.alarm.detail["reason"]
    assert reason.startswith("stream 'features.suv' stopped:")
    assert "on 2026-02-03" in reason and "the other 2 streams continues" in reason
    assert "high" not in reason  # the failure is named, never the value
    seen = monitor.streams["features.suv"].seen_records
    scanner = monitor.streams["features.scanner"].seen_records
    for i in range(5):
        assert monitor.observe({"features": {"suv": 2.0, "scanner": "A"}}, f"u{i}") == []
    assert monitor.streams["features.suv"].seen_records == seen  # no more updates
    assert monitor.streams["features.scanner"].seen_records == scanner + 5
    again = DeploymentMonitor.from_dict(json.loads(json.dumps(monitor.to_dict())))
    assert again.streams["features.suv"].quarantine == monitor.streams["features.suv"].quarantine


def test_a_binary_reference_completes_the_same_however_often_the_state_is_reloaded() -> None:
    """A pass reloads the state at every chunk, so the count of reference events is saved with
    it: otherwise, with small chunks (several workers, steady ingest), a binary reference would
    wait for 50 events within one chunk, and the result would depend on the chunking."""
    config = MonitorConfig(streams=(StreamSpec("outputs.positive", "binary"),), reference_size=300)
    g = np.random.default_rng(9)
    events = [bool(e) for e in g.random(1200) < 0.1]

    def run(reload_every: int) -> dict[str, object]:
        monitor = DeploymentMonitor.new(config)
        for i, e in enumerate(events):
            if reload_every and i % reload_every == 0:
                monitor = DeploymentMonitor.from_dict(json.loads(json.dumps(monitor.to_dict())))
            monitor.observe({"outputs": {"positive": e}}, f"2026-01-01T00:00:{i:04d}")
        return monitor.to_dict()

    whole = run(0)
    assert whole["streams"]["outputs.positive"]["reference"] is not None  # monitoring
    assert run(7) == whole
