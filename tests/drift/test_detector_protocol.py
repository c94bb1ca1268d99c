"""Every detector keeps the one contract: update, statistic, threshold, describe, replay, state.

Each is run on a sequence that makes it alarm; what the views print (``describe``, ``replay``,
``statistic``, ``threshold``) must agree with what ``update`` decided.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from phase4.monitor.drift.detectors import (
    DETECTORS,
    BernoulliCusum,
    Cusum,
    Detector,
    DetectorMode,
    Ewma,
    ExpectedPerformanceChart,
    NewCategory,
    SpreadCusum,
    WindowedChiSquare,
    WindowedKS,
    detector_from_dict,
    trace,
)
from phase4.monitor.drift.detectors.ks import BUFFER_UNITS
from phase4.monitor.drift.detectors.spread import DESIGN_RATIO as SPREAD_DESIGN_RATIO

G = np.random.default_rng(2026)
SHIFTED = [float(v) for v in np.concatenate([G.normal(0, 1, 60), G.normal(2.5, 1, 40)])]
WIDER = [float(v) for v in np.concatenate([G.normal(0, 1, 60), G.normal(0, 2.5, 60)])]
U_SHIFTED = [float(v) for v in np.concatenate([G.random(100), 0.9 + 0.1 * G.random(100)])]
EVENTS = [bool(v) for v in np.concatenate([G.random(200) < 0.05, G.random(100) < 0.4])]
CATEGORIES = [str(v) for v in G.choice(["A", "B"], 100)] + ["A"] * 90 + ["C"] * 10

CASES: dict[str, tuple[Callable[[], Detector[Any]], list[Any]]] = {
    "cusum": (lambda: Cusum(h=5.0, k=0.5), SHIFTED),
    "ewma": (lambda: Ewma(multiplier_l=3.0, lam=0.2), SHIFTED),
    "spread": (lambda: SpreadCusum(h=5.0, down_scale=0.9, z_cap=3.09), WIDER),
    "ks": (lambda: WindowedKS.calibrated(arl0=2_000, reference_size=500, window=20), U_SHIFTED),
    "bernoulli_cusum": (
        lambda: BernoulliCusum.calibrated(p0=0.05, p1=0.15, arl0=2_000.0),
        EVENTS,
    ),
    "chi_square": (
        lambda: WindowedChiSquare.calibrated(2_000, {"A": 250, "B": 250}, window=50),
        CATEGORIES,
    ),
    "new_category": (lambda: NewCategory(seen=["A", "B"]), CATEGORIES),
    "cbpe": (
        lambda: ExpectedPerformanceChart("sensitivity", mean=0.8, sd=0.05, z_limit=3.0),
        [0.8, 0.78, 0.83, 0.75, 0.6, 0.81, 0.95],
    ),
}


def test_every_registered_detector_is_exercised_here() -> None:
    assert set(CASES) == set(DETECTORS)
    assert all(issubclass(cls, Detector) for cls in DETECTORS.values())
    assert all(DETECTORS[name].name == name for name in DETECTORS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_replay_agrees_with_update_and_leaves_the_detector_alone(name: str) -> None:
    make, values = CASES[name]
    detector = make()
    alarms = [detector.update(x) for x in values]
    fired = [i for i, a in enumerate(alarms) if a is not None]
    assert fired, "the sequence must make the detector alarm"
    before = detector.to_dict()
    run = trace(detector, values)
    assert detector.to_dict() == before  # replay restarted a copy
    assert run.alarms == fired
    assert run.path == detector.replay(values)
    assert len(run.path) == len(values)
    for i in fired:  # at an alarm the path shows the value that crossed the threshold
        assert run.path[i] == pytest.approx(abs(alarms[i].statistic))  # type: ignore[union-attr]
    # the restarted run ends where the detector itself is
    assert run.end.n == detector.n
    assert run.end.statistic == pytest.approx(detector.statistic)


@pytest.mark.parametrize("name", sorted(CASES))
def test_describe_statistic_and_threshold_say_the_same(name: str) -> None:
    make, values = CASES[name]
    detector = make()
    for x in values:
        alarm = detector.update(x)
        summary = detector.describe()
        assert summary.kind == name == detector.name
        assert summary.mode is detector.mode
        assert summary.statistic == detector.statistic >= 0
        assert summary.threshold == detector.threshold
        assert summary.text and summary.now and summary.unit
        assert all(p.name and p.unit and p.meaning for p in summary.parameters)
        if alarm is not None and alarm.kind == "alarm":
            assert alarm.threshold == pytest.approx(detector.threshold)
            assert abs(alarm.statistic) > detector.threshold or (
                name == "bernoulli_cusum" and alarm.statistic >= alarm.threshold
            )
    json.dumps(detector.describe().to_dict())


@pytest.mark.parametrize("name", sorted(CASES))
def test_state_round_trips_through_json(name: str) -> None:
    make, values = CASES[name]
    detector = make()
    for x in values[: len(values) // 2 + 7]:
        detector.update(x)
    restored = detector_from_dict(name, json.loads(json.dumps(detector.to_dict())))
    assert restored == detector
    rest = values[len(values) // 2 + 7 :]
    assert [restored.update(x) for x in rest] == [detector.update(x) for x in rest]


def test_sequential_detectors_are_the_charts() -> None:
    sequential = {n for n, c in DETECTORS.items() if c.mode is DetectorMode.SEQUENTIAL}
    assert sequential == {"cusum", "ewma", "spread", "bernoulli_cusum"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_saved_state_is_the_fields_deep_copied(name: str) -> None:
    """``to_dict`` skips ``dataclasses.asdict``'s generic walk (it was most of the cost of
    saving a state) but gives the same document, in the same key order, and shares nothing
    mutable with the detector."""
    make, values = CASES[name]
    detector = make()
    for x in values[: len(values) // 2 + 7]:
        detector.update(x)
    expected = dataclasses.asdict(detector)  # type: ignore[call-overload]
    if name == "ks":  # saved as integers in units of 10⁻⁵ (state version 2)
        expected["buffer"] = [round(u * BUFFER_UNITS) for u in expected["buffer"]]
    if name == "spread" and expected["ratio"] == SPREAD_DESIGN_RATIO:  # the default is not saved
        del expected["ratio"]
    saved = detector.to_dict()
    assert saved == expected
    assert list(saved) == list(expected)
    assert json.dumps(saved) == json.dumps(expected)
    for key, value in saved.items():
        if isinstance(value, list | dict):
            assert value is not getattr(detector, key), key
    for x in values[len(values) // 2 + 7 :]:
        detector.update(x)
    assert saved == expected  # a later update does not reach the saved document
