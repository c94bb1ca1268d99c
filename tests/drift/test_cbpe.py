"""Performance estimated without labels (CBPE), checked against closed-form truth."""

from __future__ import annotations

import numpy as np
import pytest

from phase4.monitor.drift.cbpe import PerformanceEstimator, expected_rates
from phase4.monitor.drift.streams import DeploymentMonitor, MonitorConfig, StreamSpec


def _labelled(g: np.random.Generator, n: int) -> tuple[list[float], list[bool], list[bool]]:
    s = g.random(n)
    truth = g.random(n) < s  # perfectly calibrated: P(malignant | s) = s
    return s.tolist(), truth.tolist(), (s >= 0.5).tolist()


def test_expected_rates_match_the_closed_form() -> None:
    # s ~ U(0,1), call = s >= 1/2: sensitivity = ∫½¹ s ds / ∫₀¹ s ds = 0.375 / 0.5 = 0.75.
    s = np.linspace(0.0005, 0.9995, 1000)
    sens, spec = expected_rates(s, (s >= 0.5).astype(float))
    assert sens == pytest.approx(0.75, abs=1e-3)
    assert spec == pytest.approx(0.75, abs=1e-3)


def test_calibrated_estimate_tracks_the_realised_performance() -> None:
    g = np.random.default_rng(1)
    est = PerformanceEstimator.fit(*_labelled(g, 3000), window=2000, arl0=1e6)
    s, truth, calls = _labelled(g, 2000)
    for score, call in zip(s, calls, strict=True):
        est.update(score, call)
    truth_arr, calls_arr = np.array(truth), np.array(calls)
    realised = (calls_arr & truth_arr).sum() / truth_arr.sum()
    p = np.array([est.probability(x) for x in s])
    sens, _ = expected_rates(p, calls_arr.astype(float))
    assert sens == pytest.approx(realised, abs=0.03)
    assert sens == pytest.approx(0.75, abs=0.03)


def test_borderline_case_mix_lowers_expected_performance_and_alarms() -> None:
    g = np.random.default_rng(2)
    est = PerformanceEstimator.fit(*_labelled(g, 1000), window=200, arl0=20_000)
    in_control = []
    for score, call in zip(*_labelled(g, 4000)[::2], strict=True):
        in_control += est.update(score, call)
    assert len(in_control) <= 1  # 20 looks per metric at α = 0.01
    shifted = g.uniform(0.3, 0.7, 400)  # scanner change: scores crowd the threshold
    alarms = []
    for score in shifted:
        alarms += est.update(float(score), bool(score >= 0.5))
    metrics = {a.detail["metric"] for a in alarms}
    assert metrics == {"sensitivity", "specificity"}
    assert all(a.direction == "down" for a in alarms)
    assert all(a.detail["estimate"] < a.detail["reference_mean"] for a in alarms)


def test_deployment_monitor_fits_cbpe_from_feedback_and_watches_records() -> None:
    config = MonitorConfig(
        streams=(StreamSpec("outputs.score", "numeric"),),
        studies_per_day=50,
        reference_size=100,
        cbpe={
            "score": "outputs.score",
            "prediction": "outputs.call",
            "reference_size": 400,
            "window": 100,
        },
    )
    monitor = DeploymentMonitor.new(config)
    g = np.random.default_rng(3)
    s, truth, calls = _labelled(g, 400)
    for i, (score, t, c) in enumerate(zip(s, truth, calls, strict=True)):
        monitor.observe(
            {"cbpe": {"score": score, "truth": t, "call": c}}, f"fb{i}", source="feedback"
        )
    assert monitor.cbpe is not None and monitor.cbpe_pairs == []
    alarms = []
    for i, score in enumerate(g.uniform(0.35, 0.65, 600)):
        alarms += monitor.observe(
            {"outputs": {"score": float(score), "call": bool(score >= 0.5)}}, f"r{i}", row=i
        )
    names = {a.stream for a in alarms}
    assert {"estimated.sensitivity", "estimated.specificity"} <= names
    first = min(
        (a for a in alarms if a.stream.startswith("estimated.")), key=lambda a: a.alarm.index
    )
    assert first.change_at == f"r{first.alarm.change_index_estimate}"
    assert first.budget is not None and first.budget["streams_sharing"] == 1 + 2
    restored = DeploymentMonitor.from_dict(monitor.to_dict())
    assert restored.cbpe == monitor.cbpe
    assert restored.to_dict() == monitor.to_dict()
