"""A deployment monitor recalibrated to the observed rate of studies
(phase4.monitor.drift.rate; docs/STATISTICS.md, "The false-alarm budget"): every monitoring
stream's ARL0 scales with the rate (ARL0_stream = S · 365 · r / F, Montgomery, *Introduction
to Statistical Quality Control*, §9.1), its detectors are rebuilt at it and restart from zero,
and the state round-trips."""

from __future__ import annotations

import json

import numpy as np
import pytest

from phase4.monitor.drift.state import StreamState
from phase4.monitor.drift.streams import DeploymentMonitor
from tests.drift.test_streams import _config, _feed, _records


def _monitoring() -> DeploymentMonitor:
    monitor = DeploymentMonitor.new(_config())
    _feed(monitor, _records(np.random.default_rng(3), 400))
    assert all(s.state is StreamState.MONITORING for s in monitor.streams.values())
    return monitor


def test_recalibration_scales_every_streams_arl0_with_the_rate() -> None:
    monitor = _monitoring()
    before = {n: dict(s.budget or {}) for n, s in monitor.streams.items()}
    thresholds = {
        n: {d: det.to_dict() for d, det in s.detectors.items()} for n, s in monitor.streams.items()
    }
    changes = monitor.recalibrate(400.0)  # configured 40 a day
    assert monitor.config.studies_per_day == 400.0
    assert set(changes) == set(monitor.streams)
    for name, stream in monitor.streams.items():
        budget = stream.budget or {}
        assert budget["arl0"] == pytest.approx(10 * before[name]["arl0"])
        assert changes[name]["new_arl0"] == pytest.approx(10 * changes[name]["old_arl0"])
        assert budget["observations_per_day"] == pytest.approx(
            10 * before[name]["observations_per_day"]
        )
        # rebuilt at the new ARL0: the calibrated detectors differ from before
        assert {d: det.to_dict() for d, det in stream.detectors.items()} != thresholds[name]
    cusum = monitor.streams["features.liver_suvmean"].detectors["cusum"]
    assert cusum.to_dict()["h"] > thresholds["features.liver_suvmean"]["cusum"]["h"]


def test_a_recalibrated_monitor_survives_a_round_trip_and_keeps_detecting() -> None:
    monitor = _monitoring()
    monitor.recalibrate(4.0)
    saved = json.loads(json.dumps(monitor.to_dict()))
    again = DeploymentMonitor.from_dict(saved)
    assert again.to_dict() == monitor.to_dict()
    g = np.random.default_rng(4)
    shifted = _records(g, 400, shift_at=0, shift=0.3)
    alarms = _feed(again, shifted, start=400)
    assert any(a.stream == "features.liver_suvmean" for a in alarms)
