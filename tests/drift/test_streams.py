"""Streams and the deployment engine: references, state round trips, dating, the budget."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from scipy import stats

from phase4.monitor.drift.budget import share
from phase4.monitor.drift.detectors import Cusum
from phase4.monitor.drift.reference import (
    NumericReference,
    RateReference,
    ReferenceFitError,
    z_to_uniform,
)
from phase4.monitor.drift.state import StreamState
from phase4.monitor.drift.streams import (
    DETECTOR_WEIGHTS,
    ConfigError,
    DeploymentMonitor,
    MonitorConfig,
    StreamSpec,
)


@pytest.mark.parametrize(
    "draw",
    [
        lambda g, n: g.normal(2.2, 0.25, n),  # liver SUVmean
        lambda g, n: g.lognormal(np.log(250), 0.2, n),  # injected activity, skewed
        lambda g, n: g.poisson(2.0, n).astype(float),  # lesion count: discrete
        # TMTV: exactly 0 when nothing is found, else skewed: a point mass and a continuum
        lambda g, n: np.where(g.random(n) < 0.55, 0.0, g.lognormal(np.log(35), 0.9, n)),
    ],
)
def test_normal_scores_are_standard_normal_in_control(draw) -> None:  # type: ignore[no-untyped-def]
    g = np.random.default_rng(3)
    ref = NumericReference.fit(draw(g, 2000))
    z = np.array([ref.z(v, i, "s") for i, v in enumerate(draw(g, 4000))])
    assert abs(z.mean()) < 0.1
    assert 0.9 < z.std() < 1.1
    assert stats.kstest(z, "norm").pvalue > 1e-4


@pytest.mark.parametrize(
    "draw",
    [
        lambda g, n: g.normal(2.2, 0.25, n),
        lambda g, n: g.lognormal(np.log(250), 0.4, n),
    ],
)
def test_normal_scores_keep_the_reference_spread_and_tails(draw) -> None:  # type: ignore[no-untyped-def]
    """References of 400 values, as a deployment has them: z has about unit spread (0.99 over
    40 references; a kernel CDF alone inflates the variance by the bandwidth²); |z| > 2.75 is
    about as common as it should be; and a value beyond every reference value (saturated
    score) is about as common as the half count it is scored as, 1/n on each side. The kernel
    tail alone made |z| > 3.5 two to three times likelier than nominal, and |z| > 4 ten
    times: docs/STATISTICS.md, "normal scores"."""
    g = np.random.default_rng(11)
    sds, beyond, capped = [], [], []
    for _ in range(12):
        ref = NumericReference.fit(draw(g, 400))
        z = np.array([ref.z(float(v)) for v in draw(g, 40_000)])
        sds.append(z.std())
        beyond.append(np.mean(np.abs(z) > 2.75))
        capped.append(np.mean(np.abs(z) >= ref.z_cap - 1e-9))
    assert 0.95 < float(np.mean(sds)) < 1.03
    assert 0.4 < float(np.mean(beyond)) / (2 * stats.norm.sf(2.75)) < 1.5
    # at most about 2/(n+1), the chance a new value exceeds all n reference values (the
    # Gaussian tail reaches the cap somewhat beyond the most extreme reference value)
    assert 0.1 < float(np.mean(capped)) / (2 / 401) < 1.5


def test_scores_saturate_beyond_the_reference() -> None:
    """A value beyond every reference value scores as the half count the discrete scores give
    it, however far beyond: 500 values cannot say how rare it is, only that it is beyond."""
    g = np.random.default_rng(1)
    ref = NumericReference.fit(g.normal(10, 1, 500))
    cap = stats.norm.isf(0.5 / 500)
    assert ref.z(10) == pytest.approx(0, abs=0.2)
    assert 2.0 < ref.z(12.0) < ref.z(12.5) < ref.z(12.7) < cap
    assert ref.z(14) == ref.z(100) == pytest.approx(cap)
    assert ref.z(-90) == pytest.approx(-cap)
    restored = NumericReference.from_dict(json.loads(json.dumps(ref.to_dict())))
    assert "z_cap" not in ref.to_dict()
    assert restored.z(100) == pytest.approx(cap)


def test_the_median_shown_is_the_samples_and_the_transform_keeps_its_own_centre() -> None:
    """A TMTV reference that is 80% zeros has a median of 0: that is what people are shown.
    The transform standardises the positive values by their own median (``location``)."""
    g = np.random.default_rng(21)
    values = np.where(g.random(500) < 0.8, 0.0, g.lognormal(np.log(35), 0.9, 500))
    ref = NumericReference.fit(values)
    assert ref.atoms == [0.0]
    assert ref.median == float(np.median(values)) == 0.0
    assert ref.mad_sigma == 0.0
    assert ref.location == pytest.approx(float(np.median(values[values > 0])))
    assert ref.location > 10
    assert ref.describe().startswith("n = 500, median 0, robust SD 0;")
    assert "values exactly at 0 (" in ref.describe()
    restored = NumericReference.from_dict(json.loads(json.dumps(ref.to_dict())))
    assert restored == ref and restored.z(0.0, 3, "s") == ref.z(0.0, 3, "s")
    assert RateReference(500, 12).describe() == (
        "n = 500, 12 events; rate the chart was designed on, (events + ½)/(n + 1) = 2.50%"
    )


def test_reference_refuses_what_cannot_be_a_reference() -> None:
    with pytest.raises(ReferenceFitError, match="at least 30"):
        NumericReference.fit([1.0] * 10)
    with pytest.raises(ReferenceFitError, match="single value"):
        NumericReference.fit([3.0] * 100)


def test_budget_arithmetic_is_explained() -> None:
    s = share(streams=100, false_alarms_per_year=1, observations_per_day=40)
    assert s.arl0 == 100 * 365 * 40
    assert "100 × 365 × 40 / 1 = 1,460,000" in s.explain()
    ewma = s.for_detector("ewma", 0.25)
    assert ewma.arl0 == 4 * 100 * 365 * 40
    assert "ewma holds 25% of the stream's false-alarm rate" in ewma.explain()
    assert "1,460,000 / 0.25 = 5,840,000" in ewma.explain()
    # the rates of a stream's detectors add up to the stream's share
    weights = DETECTOR_WEIGHTS["numeric"]
    assert sum(1 / s.for_detector(d, w).arl0 for d, w in weights.items()) == pytest.approx(
        1 / s.arl0
    )
    # a state saved before weights (equal shares per detector) still reads: tests/drift/
    # test_state_migration.py
    with pytest.raises(ValueError, match="at least one stream"):
        share(streams=0, false_alarms_per_year=1, observations_per_day=40)


def test_config_errors_name_the_problem() -> None:
    with pytest.raises(ConfigError, match="at least one stream"):
        MonitorConfig(streams=())
    with pytest.raises(ConfigError, match="repeat"):
        MonitorConfig(streams=(StreamSpec("a", "numeric"), StreamSpec("a", "numeric")))
    with pytest.raises(ConfigError, match="kind must be"):
        MonitorConfig.from_dict({"streams": [{"field": "x", "kind": "ordinal"}]})


def _feed(monitor: DeploymentMonitor, records, start: int = 0):  # type: ignore[no-untyped-def]
    alarms = []
    for i, rec in enumerate(records, start):
        alarms += monitor.observe(rec, f"2026-01-01T00:00:{i:06d}", row=i)
    return alarms


def _records(g: np.random.Generator, n: int, shift_at: int | None = None, shift: float = 0.0):  # type: ignore[no-untyped-def]
    out = []
    for i in range(n):
        s = shift if shift_at is not None and i >= shift_at else 0.0
        out.append(
            {
                "features": {
                    "liver_suvmean": float(g.normal(2.2 * (1 + s), 0.22)),
                    "reconstruction": "OSEM" if i < (shift_at or n) or s == 0 else "BSREM",
                },
                "outputs": {"positive": bool(g.random() < 0.3)},
                "error": None,
            }
        )
    return out


def _config(**kw) -> MonitorConfig:  # type: ignore[no-untyped-def]
    return MonitorConfig(
        streams=(
            StreamSpec("features.liver_suvmean", "numeric"),
            StreamSpec("features.reconstruction", "categorical"),
            StreamSpec("outputs.positive", "binary"),
        ),
        studies_per_day=40,
        reference_size=300,
        **kw,
    )


def test_a_step_change_is_detected_and_dated() -> None:
    g = np.random.default_rng(5)
    monitor = DeploymentMonitor.new(_config())
    records = _records(g, 3000, shift_at=2000, shift=0.10)  # liver SUV +10% (≈1σ)
    alarms = _feed(monitor, records)
    notices = [a for a in alarms if a.alarm.kind == "notice"]
    assert [(a.stream, a.alarm.detail["value"], a.alarm.index) for a in notices] == [
        ("features.reconstruction", "BSREM", 2000)
    ]
    suv = [a for a in alarms if a.stream == "features.liver_suvmean"]
    assert suv, "the SUV shift was not detected"
    first = min(suv, key=lambda a: a.alarm.index)
    assert 2000 <= first.alarm.index < 2150
    assert abs(first.alarm.change_index_estimate - 2000) < 60
    assert first.change_at == f"2026-01-01T00:00:{first.alarm.change_index_estimate:06d}"
    assert first.alarm.direction == "up"
    assert first.budget is not None and "ARL0" in first.budget["explanation"]
    # the evidence names the alarming detector's part of its stream's share
    weight = DETECTOR_WEIGHTS["numeric"][first.alarm.detector]
    assert first.budget["detector"] == first.alarm.detector
    assert first.budget["arl0"] == pytest.approx(first.budget["stream_arl0"] / weight)
    assert f"holds {weight:.0%} of the stream's false-alarm rate" in first.budget["explanation"]
    assert all(a.alarm.index >= 2000 for a in alarms), "false alarm before the change"


def test_state_survives_a_json_round_trip_mid_stream() -> None:
    g = np.random.default_rng(9)
    records = _records(g, 2500, shift_at=1800, shift=0.08)
    straight = DeploymentMonitor.new(_config())
    expected = [a.to_dict() for a in _feed(straight, records)]

    first = DeploymentMonitor.new(_config())
    got = [a.to_dict() for a in _feed(first, records[:1900])]
    restored = DeploymentMonitor.from_dict(json.loads(json.dumps(first.to_dict())))
    got += [a.to_dict() for a in _feed(restored, records[1900:], start=1900)]
    assert got == expected
    assert expected


def test_state_per_stream_stays_small() -> None:
    g = np.random.default_rng(2)
    monitor = DeploymentMonitor.new(_config())
    _feed(monitor, _records(g, 1000))
    for name, stream in monitor.streams.items():
        size = len(json.dumps(stream.to_dict()))
        assert size < 4096, (name, size)


def test_whole_deployment_false_alarm_rate_stays_within_budget() -> None:
    """20 streams of each kind, two simulated years in control, a budget of 120 false alarms
    per year (high, so that a test-sized run sees enough alarms to measure the rate)."""
    days, per_day, budget = 730, 30, 120.0
    specs = [StreamSpec(f"features.n{i}", "numeric") for i in range(20)]
    specs += [StreamSpec(f"features.b{i}", "binary") for i in range(20)]
    specs += [StreamSpec(f"features.c{i}", "categorical") for i in range(20)]
    config = MonitorConfig(
        streams=tuple(specs),
        studies_per_day=per_day,
        false_alarms_per_year=budget,
        reference_size=400,
    )
    monitor = DeploymentMonitor.new(config)
    g = np.random.default_rng(20261122)
    n = days * per_day + 2000  # plus the references (binary ones wait for 50 events)
    numeric = np.where(
        np.arange(20) % 2 == 0, g.normal(size=(n, 20)), g.lognormal(0, 0.4, size=(n, 20))
    )
    binary = g.random((n, 20)) < 0.05
    cats = np.array(["Q.Clear", "VPFX", "OSEM", "FBP"])[
        g.choice(4, size=(n, 20), p=[0.5, 0.3, 0.15, 0.05])
    ]
    monitored = Counter[str]()
    alarms = Counter[str]()
    for r in range(n):
        record = {
            "features": {
                **{f"n{i}": numeric[r, i] for i in range(20)},
                **{f"b{i}": bool(binary[r, i]) for i in range(20)},
                **{f"c{i}": str(cats[r, i]) for i in range(20)},
            }
        }
        for a in monitor.observe(record, str(r), row=r):
            if a.alarm.kind == "alarm":
                alarms[a.kind] += 1
        for s in monitor.streams.values():
            if s.monitoring:
                monitored[s.spec.kind] += 1
    # Observed false alarms per year, from stream-observations actually monitored.
    kinds = ("numeric", "binary", "categorical")
    rate_per_year = sum(alarms[kind] / (monitored[kind] / 20 / per_day / 365) for kind in kinds)
    assert rate_per_year <= budget * 1.1, (rate_per_year, alarms)
    assert rate_per_year >= budget * 0.4, "calibration is far too conservative"


def test_heavy_tailed_streams_stay_near_their_budget() -> None:
    """Features whose tails no 400-value reference can measure: Student t with 3 degrees of
    freedom, and a latency with stalls (3% of values three times slower). Scores saturate
    beyond the reference, which keeps them at about 0.8 and 1.2 times their budget; unsaturated
    scores run them at 7 and 2 times (the EWMA above all; docs/STATISTICS.md)."""
    days, per_day, budget = 730, 30, 60.0
    specs = tuple(StreamSpec(f"features.h{i}", "numeric") for i in range(20))
    config = MonitorConfig(
        streams=specs, studies_per_day=per_day, false_alarms_per_year=budget, reference_size=400
    )
    monitor = DeploymentMonitor.new(config)
    g = np.random.default_rng(20261123)
    n = days * per_day + 400
    t3 = g.standard_t(3, size=(n, 10))
    stalls = np.where(
        g.random((n, 10)) < 0.03, g.lognormal(np.log(3), 0.5, (n, 10)), g.lognormal(0, 0.2, (n, 10))
    )
    values = np.hstack([t3, stalls])
    alarms = 0
    for r in range(n):
        record = {"features": {f"h{i}": float(values[r, i]) for i in range(20)}}
        alarms += sum(a.alarm.kind == "alarm" for a in monitor.observe(record, str(r), row=r))
    years = (n - 400) / per_day / 365
    assert alarms / years <= budget * 1.4, (alarms / years, budget)


def test_cusum_state_round_trip() -> None:
    c = Cusum.calibrated(1000.0)
    for z in (0.3, 1.2, 2.0):
        c.update(z)
    assert Cusum.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    assert z_to_uniform(0.0) == 0.5


def test_a_stream_that_cannot_be_calibrated_grows_its_reference_and_others_go_on() -> None:
    """A 60-value reference cannot hold a budget of 1.46 million observations per stream (2.1
    million for its CUSUM; its own mean error alone would alarm far sooner): the stream says
    so, keeps its values and collects twice as many; the other stream is monitored meanwhile,
    and the state survives a JSON round trip."""
    config = MonitorConfig(
        streams=(
            StreamSpec("features.small", "numeric", reference_size=60),
            StreamSpec("features.large", "numeric", reference_size=400),
        ),
        studies_per_day=20,
        false_alarms_per_year=0.01,
    )
    monitor = DeploymentMonitor.new(config)
    g = np.random.default_rng(5)

    def feed(rows: range) -> None:
        for i in rows:
            rec = {"features": {"small": float(g.normal()), "large": float(g.normal())}}
            monitor.observe(rec, f"2026-01-01T00:00:{i:06d}", row=i)

    feed(range(130))
    monitor = DeploymentMonitor.from_dict(json.loads(json.dumps(monitor.to_dict())))
    small = monitor.streams["features.small"]
    assert not small.monitoring
    assert small.budget is not None
    assert "larger reference is needed" in small.budget["not_calibratable"]
    assert small.budget["achievable_arl0"] < small.budget["target_arl0"]
    assert small.budget["next_reference_size"] == small.reference_size == 240
    assert len(small.reference_values) == 130  # nothing collected is thrown away
    feed(range(130, 450))
    small, large = monitor.streams["features.small"], monitor.streams["features.large"]
    assert large.monitoring
    assert small.monitoring
    assert small.reference is not None and small.reference["n"] == 240
    assert small.budget is not None and small.budget["arl0"] == pytest.approx(2 * 365 * 20 / 0.01)


def test_a_stream_gives_up_after_sixteen_times_its_reference() -> None:
    config = MonitorConfig(
        streams=(StreamSpec("error", "binary", reference_size=30, p1=0.05),),
        reference_events_min=1,
    )
    monitor = DeploymentMonitor.new(config)
    g = np.random.default_rng(6)
    for i in range(700):
        monitor.observe({"error": bool(g.random() < 0.5)}, str(i), row=i)
    stream = monitor.streams["error"]
    assert stream.budget is not None
    assert stream.state is StreamState.ABANDONED
    assert "must lie between the reference rate" in stream.budget["not_calibratable"]
    assert "Gave up after a reference of 480 values" in stream.budget["not_calibratable"]
    assert stream.reference_values == []
    assert not stream.monitoring


def test_reference_saved_with_explicit_knots_still_scores() -> None:
    """States that keep their knots in ``xs`` (not evenly spaced) load, score by those knots,
    and agree with a new fit of the same values."""
    g = np.random.default_rng(12)
    values = g.normal(2.2, 0.25, 500)
    new = NumericReference.fit(values)
    assert new.knot_x == [] and len(new.knot_range) == 2 and len(new.knot_z) == 33
    first, last = new.knot_range
    old = dict(new.to_dict(), knot_x=np.linspace(first, last, len(new.knot_z)).tolist())
    old["knot_range"] = []
    restored = NumericReference.from_dict(old)
    for v in (1.0, 1.9, 2.2, 2.61, 3.5, 9.0):
        assert restored.z(v) == pytest.approx(new.z(v), abs=1e-9)


def test_numeric_stream_state_is_within_two_and_three_eighths_kilobytes() -> None:
    # 2 KB until the fourth detector (spread: its sums, thresholds and the times it may date a
    # change to add ~240 bytes), then the times of the reference's first and last observation
    # (~80 bytes, shown to people with every reference); docs/BENCHMARKS.md, "State per stream"
    config = MonitorConfig(streams=(StreamSpec("v", "numeric"),))
    monitor = DeploymentMonitor.new(config)
    g = np.random.default_rng(13)
    sizes = []
    for i, v in enumerate(g.lognormal(np.log(250), 0.2, 1500).tolist()):
        monitor.observe({"v": v}, "2026-01-05T08:00:00+00:00", row=i)
        if i >= 500:
            sizes.append(len(json.dumps(monitor.streams["v"].to_dict())))
    assert max(sizes) <= 2432
