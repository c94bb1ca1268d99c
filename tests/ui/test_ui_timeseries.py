"""What the deployment page charts, without a database: units from stream names, daily medians
or single values, the bucket a rate is counted in, one episode per alert however often it
repeated, the collecting streams in one line, and the validated baseline read defensively."""

from __future__ import annotations

import doctest
from datetime import UTC, datetime, timedelta

import numpy as np

from phase4.monitor.drift.streams import MonitorConfig, Stream, StreamSpec
from phase4.monitor.store.models import Alert
from phase4.monitor.ui import units
from phase4.monitor.ui.timeseries import (
    CollectingSummary,
    episodes_of,
    numeric_summary,
    quantity_chart,
    rate_bucket,
    rate_summary,
    reference_band,
    validated_baseline,
)

T0 = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday


def test_units_come_from_the_stream_names() -> None:
    assert doctest.testmod(units).failed == 0
    assert units.unit_of("features.weight_kg") == "kg"
    assert units.unit_of("outputs.tmtv_ml") == "mL"
    assert units.unit_of("features.image_noise_cv") is None  # dimensionless
    assert units.unit_of("outputs.lesion_suvmax") == "SUV"
    assert units.unit_of("features.suv_p90") == "SUV"
    assert units.unit_of("latency_s") == "s"
    assert units.format_value(270.94, "MBq") == "270.9 MBq"
    assert units.format_value(0.5, "%") == "0.5%"


def test_daily_median_and_quartiles_or_each_value() -> None:
    many = [(T0 + timedelta(days=d, minutes=10 * i), float(i)) for d in range(3) for i in range(9)]
    s = numeric_summary(many)
    assert s.bucket == "day" and s.banded
    assert s.centre == [4.0, 4.0, 4.0] and s.low == [2.0] * 3 and s.high == [6.0] * 3
    assert s.counts == [9, 9, 9] and s.labels[0] == "2026-03-02"
    assert s.times[0] == "2026-03-02 00:40:00"  # drawn at its values' mean time
    few = [(T0 + timedelta(days=d), 1.0 + d) for d in range(10)]
    s = numeric_summary(few)
    assert s.bucket == "value" and not s.banded and s.centre == [1.0 + d for d in range(10)]


def test_a_rate_is_counted_per_day_week_or_month_to_hold_enough() -> None:
    daily = [T0 + timedelta(days=d, minutes=m) for d in range(30) for m in range(60)]
    assert rate_bucket(daily, len(daily), 50) == "day"
    weekly = [T0 + timedelta(days=d, minutes=m) for d in range(60) for m in range(10)]
    assert rate_bucket(weekly, len(weekly), 50) == "week"
    monthly = [T0 + timedelta(days=3 * d) for d in range(100)]
    assert rate_bucket(monthly, len(monthly), 50) == "month"
    s = rate_summary([(t, i % 4 == 0) for i, t in enumerate(weekly)])
    assert s.bucket == "week" and s.labels[0] == "week of 2026-03-02"
    for centre, low, high in zip(s.centre, s.low, s.high, strict=True):
        assert 0 <= low <= centre <= high <= 1
    assert abs(s.centre[0] - 0.25) < 0.03


def _alert(i: int, change: datetime, repeats: int, status: str = "open") -> Alert:
    return Alert(
        id=i,
        deployment_id="d",
        stream="features.liver_suvmean",
        cause="drift",
        severity="warning",
        status=status,
        title="features.liver_suvmean rose (detected by cusum)",
        evidence={
            "detector": "cusum",
            "timestamp": (change + timedelta(days=2)).isoformat(),
            "change_timestamp": change.isoformat(),
            "repeats": repeats,
            "last_timestamp": (change + timedelta(days=20)).isoformat(),
        },
        opened_at=change + timedelta(days=2),
    )


def _numeric_stream(values: list[float]) -> Stream:
    config = MonitorConfig(streams=(StreamSpec("features.liver_suvmean", "numeric"),))
    stream = Stream(spec=config.streams[0], reference_size=len(values))
    for i, v in enumerate(values):
        stream.observe({"features": {"liver_suvmean": v}}, i, T0.isoformat(), config, i + 1)
    assert stream.monitoring
    return stream


def test_one_episode_per_alert_with_the_level_since_its_change() -> None:
    g = np.random.default_rng(2)
    stream = _numeric_stream([float(v) for v in g.normal(2.2, 0.2, 300)])
    values = [
        (T0 + timedelta(hours=2 * i), float(g.normal(2.2 if i < 200 else 2.6, 0.2)))
        for i in range(300)
    ]
    change = T0 + timedelta(hours=400)
    later = _alert(8, change, repeats=57)
    earlier = _alert(3, T0 + timedelta(hours=100), repeats=0, status="resolved")
    episodes = episodes_of([later, earlier])
    assert [e.alert_id for e in episodes] == [3, 8]  # by the start of their change
    assert episodes[1].repeats == 57 and "57 more alarm(s)" in episodes[1].text
    chart = quantity_chart(stream, values, [later, earlier], T0)
    assert chart is not None and chart.unit == "SUV"
    first, second = chart.episodes
    assert second.after is not None and abs(second.after - 2.6) < 0.1  # since its change
    assert first.after is not None and abs(first.after - 2.2) < 0.1  # up to the next change
    assert first.after_until is not None and first.after_until < second.change_at
    ref = chart.reference
    assert ref is not None and ref.low < ref.centre < ref.high
    assert "interquartile" in ref.band_label and "SUV" in ref.centre_label


def test_single_values_are_compared_with_the_references_95_percent_range() -> None:
    g = np.random.default_rng(3)
    stream = _numeric_stream([float(v) for v in g.normal(2.2, 0.2, 300)])
    few = numeric_summary([(T0 + timedelta(days=d), 2.2) for d in range(20)])
    band = reference_band(stream, few)
    assert band is not None and "2.5-97.5% range" in band.band_label
    assert 1.7 < band.low < 1.9 and 2.5 < band.high < 2.7


def test_collecting_streams_in_one_line() -> None:
    specs = [StreamSpec(f"features.f{i}", "numeric") for i in range(67)]
    config = MonitorConfig(streams=(*specs, StreamSpec("features.flag", "binary")))
    summary = CollectingSummary()
    assert not summary
    for spec in config.streams[:67]:
        stream = Stream(spec=spec, reference_size=500, reference_values=[1.0] * 74)
        summary.add(stream, 50)
    assert summary.line == "67 streams collecting their reference: 74 of 500 values so far."
    flag = Stream(spec=config.streams[67], reference_size=500, reference_values=[False] * 600)
    summary.add(flag, 50)
    assert summary.line.endswith(
        "; 1 yes/no stream has its reference values and waits for 50 events."
    )
    one = CollectingSummary()
    one.add(Stream(spec=config.streams[0], reference_size=300, reference_values=[1.0] * 12), 50)
    one.add(Stream(spec=config.streams[1], reference_size=500, reference_values=[1.0] * 80), 50)
    assert one.line == "2 streams collecting their reference: 12 to 80 of 300 to 500 values so far."
    missed = Stream(
        spec=StreamSpec("performance.missed", "binary", source="feedback"),
        reference_size=100,
        reference_values=[False] * 7,
    )
    one.add(missed, 50)
    assert one.line.endswith(
        "; 1 labelled-performance stream collecting its reference: 7 of 100 labelled outcomes "
        "so far."
    )
    assert one.all_names == ["features.f0", "features.f1", "performance.missed"]


def test_the_validated_baseline_is_read_only_when_it_is_stated() -> None:
    assert validated_baseline({}) == {}
    assert validated_baseline({"validated_baseline": 0.9}) == {}
    assert validated_baseline(
        {"validated_baseline": {"Sensitivity": 0.91, "specificity": 85, "ppv": {"value": 0.7}}}
    ) == {"sensitivity": 0.91, "specificity": 0.85, "ppv": 0.7}
    assert validated_baseline({"validated_baseline": {"sensitivity": "high", "x": 140}}) == {}
