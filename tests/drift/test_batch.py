"""drift.batch: a numeric column fed at once gives what Stream.observe gives row by row.

Same alarms (index, statistic, change estimate, timestamps, evidence, description), in the same
order, and the same stream state afterwards, on streams of every reference family, with missing
values and with changes that make every detector alarm several times; the normal scores and
PIT values bit for bit; and ``phase4 replay`` writing the same files with and without it.
"""

from __future__ import annotations

import copy
import csv
import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from phase4.monitor.drift.batch import (
    batchable,
    normal_scores,
    observe_column,
    pit_rounded,
    uniforms_from_indices,
)
from phase4.monitor.drift.reference import _uniform_from_index, z_to_uniform
from phase4.monitor.drift.streams import DeploymentMonitor, MonitorConfig, StreamSpec
from phase4.monitor.surveillance.replay import convert_value, infer_kind, numeric_column, replay

N = 12_000
T0 = datetime(2025, 3, 1, tzinfo=UTC)


def _columns(n: int = N, seed: int = 11) -> dict[str, np.ndarray]:
    """Seven families, each with a change a third of the way in (and another at two thirds):
    the mean, the spread and the shape move, so that every detector alarms."""
    g = np.random.default_rng(seed)
    t = np.arange(n)
    late, later = t >= n // 3, t >= 2 * n // 3
    tmtv = np.exp(g.normal(3.0, 1.0 + 0.6 * later, n))
    return {
        "normal": g.normal(2.2 + 0.25 * late - 0.5 * later, 0.3, n),
        "lognormal": np.exp(g.normal(1.0, np.where(late, 0.6, 0.4), n)),
        "rounded": np.round(g.normal(12.0, 2.0 * np.where(later, 0.6, 1.0), n), 1),
        "count": g.poisson(np.where(late, 5.0, 4.0), n).astype(float),
        "tmtv": np.round(np.where(g.random(n) < np.where(late, 0.25, 0.4), 0.0, tmtv), 2),
        # the same mean and SD (3, 1.73), another shape
        "shape": np.where(late, g.gamma(0.5, 2.45, n) + 1.78, g.gamma(3.0, 1.0, n)),
        "missing": np.where(g.random(n) < 0.1, np.nan, g.normal(0.0, 1.0 + 0.5 * later, n)),
    }


def _record(cols: dict[str, np.ndarray], p: int) -> dict[str, Any]:
    return {c: None if math.isnan(v[p]) else float(v[p]) for c, v in cols.items()}


@pytest.fixture(scope="module")
def monitored() -> tuple[DeploymentMonitor, dict[str, np.ndarray], list[int], list[str], int]:
    """A monitor whose streams have just completed their references, the columns, each row's
    index (not in time order, and 0 among them late) and time, and the first row to feed."""
    cols = _columns()
    config = MonitorConfig(streams=tuple(StreamSpec(c, "numeric") for c in cols))
    monitor = DeploymentMonitor.new(config)
    rows = list(np.random.default_rng(3).permutation(N).tolist())
    stamps = [(T0 + timedelta(minutes=30 * p)).isoformat() for p in range(N)]
    p = 0
    while not all(s.monitoring for s in monitor.streams.values()):
        monitor.observe(_record(cols, p), stamps[p], row=rows[p])
        p += 1
    return monitor, cols, rows, stamps, p


def test_every_family_and_detector_alarms_as_row_by_row(monitored: Any) -> None:
    monitor, cols, rows, stamps, start = monitored
    streaming = copy.deepcopy(monitor)
    expected = []
    for p in range(start, N):
        for a in streaming.observe(_record(cols, p), stamps[p], row=rows[p]):
            expected.append((p, a.to_dict()))
    batched = copy.deepcopy(monitor)
    got = []
    for order, (name, stream) in enumerate(batched.streams.items()):
        assert batchable(stream)
        result = observe_column(stream, cols[name][start:], rows[start:], stamps[start:])
        assert result.stopped is None
        got += [(start + pos, order, k, a) for pos, k, a in result.alarms]
    got.sort(key=lambda t: t[:3])
    batched.records = streaming.records
    assert [(p, a.to_dict()) for p, _, _, a in got] == expected
    fired = Counter((a["stream"], a["detector"]) for _, a in expected)
    for detector in ("cusum", "ewma", "spread", "ks"):
        assert sum(n for (_, d), n in fired.items() if d == detector) >= 3, detector
    assert {s for s, _ in fired} >= {"normal", "lognormal", "rounded", "count", "tmtv", "shape"}
    # every alarm is dated: its change time was kept until the alarm was dated, even when its
    # detector restarted on a row where the kept times were pruned
    assert all(a["change_timestamp"] is not None for _, a in expected)
    # the same states: detectors, counters, the kept times (all of them, not only the live)
    assert batched.to_dict() == streaming.to_dict()
    for name, stream in batched.streams.items():
        assert stream.times == streaming.streams[name].times
        assert list(stream.times) == list(streaming.streams[name].times)


def test_a_column_taken_mid_excursion_and_in_two_parts(monitored: Any) -> None:
    """Detectors part-way (sums above 0, a KS window part-filled, times kept) when the batch
    starts, and a column fed in two parts, end where row by row ends."""
    monitor, cols, rows, stamps, start = monitored
    streaming = copy.deepcopy(monitor)
    for p in range(start, start + 1237):
        streaming.observe(_record(cols, p), stamps[p], row=rows[p])
    begin, middle = start + 1237, start + 5003
    batched = copy.deepcopy(streaming)
    expected = []
    for p in range(begin, N):
        for a in streaming.observe(_record(cols, p), stamps[p], row=rows[p]):
            expected.append((p, a.to_dict()))
    got = []
    for order, (name, stream) in enumerate(batched.streams.items()):
        assert len(stream.detectors["ks"].buffer) > 0 or name == "missing"
        for lo, hi in ((begin, middle), (middle, N)):
            result = observe_column(stream, cols[name][lo:hi], rows[lo:hi], stamps[lo:hi])
            got += [(lo + pos, order, k, a) for pos, k, a in result.alarms]
    got.sort(key=lambda t: t[:3])
    batched.records = streaming.records
    assert [(p, a.to_dict()) for p, _, _, a in got] == expected
    assert batched.to_dict() == streaming.to_dict()
    for name, stream in batched.streams.items():
        assert stream.times == streaming.streams[name].times


def test_the_reference_families_are_all_present(monitored: Any) -> None:
    monitor = monitored[0]
    refs = {name: s._numeric_ref for name, s in monitor.streams.items()}
    assert refs["count"].discrete
    assert refs["rounded"].grid
    assert refs["tmtv"].atoms
    assert not refs["normal"].discrete and not refs["normal"].grid and not refs["normal"].atoms


def test_scores_and_pit_values_are_those_of_the_scalar_path(monitored: Any) -> None:
    monitor, cols, rows, _, start = monitored
    for name, stream in monitor.streams.items():
        ref = stream._numeric_ref
        assert ref is not None
        values = cols[name][start:]
        keep = ~np.isnan(values)
        at = [r for r, k in zip(rows[start:], keep.tolist(), strict=True) if k]
        z, bad = normal_scores(ref, values[keep], at, name)
        assert not bad.any()
        scalar = [ref.z(v, r, name) for v, r in zip(values[keep].tolist(), at, strict=True)]
        assert z.tolist() == scalar, name  # bit for bit
        assert pit_rounded(z).tolist() == [round(z_to_uniform(v), 5) for v in scalar]
    assert uniforms_from_indices("s:grid", range(5000)).tolist() == [
        _uniform_from_index("s:grid", i) for i in range(5000)
    ]


def test_a_value_it_cannot_score_hands_the_rest_to_the_streaming_path(monitored: Any) -> None:
    monitor, cols, rows, stamps, start = monitored
    values = cols["normal"][start:].copy()
    values[700] = 1.7e308  # standardised, beyond float range: the scalar path raises
    streaming = copy.deepcopy(monitor.streams["normal"])
    batched = copy.deepcopy(monitor.streams["normal"])
    config, total = monitor.config, monitor.records

    def fed(stream: Any, p: int) -> list[dict[str, Any]]:
        try:
            return [
                a.to_dict()
                for a in stream.observe(
                    {"normal": float(values[p])}, rows[start + p], stamps[start + p], config, total
                )
            ]
        except OverflowError:
            return ["raised"]  # DeploymentMonitor.observe would quarantine the stream here

    expected = [(p, a) for p in range(len(values)) for a in fed(streaming, p)]
    result = observe_column(batched, values, rows[start:], stamps[start:])
    assert result.stopped == 700
    got = [(p, a.to_dict()) for p, _, a in result.alarms]
    got += [(p, a) for p in range(700, len(values)) for a in fed(batched, p)]
    assert got == expected
    assert ["raised"] in [[a] for _, a in expected]


def test_unusable_values_are_counted(monitored: Any) -> None:
    monitor, cols, rows, stamps, start = monitored
    stream = copy.deepcopy(monitor.streams["missing"])
    values = cols["missing"][start : start + 500]
    unusable = np.isnan(values) & (np.arange(values.size) % 2 == 0)
    before = (stream.seen_records, stream.observations, stream.unusable)
    observe_column(stream, values, rows[start : start + 500], stamps[start : start + 500], unusable)
    assert stream.seen_records == before[0] + 500
    assert stream.observations == before[1] + int((~np.isnan(values)).sum())
    assert stream.unusable == before[2] + int(unusable.sum())


def _write_events(path: Path, n: int = 6000, huge_at: int | None = None) -> None:
    cols = _columns(n, seed=5)
    if huge_at is not None:  # a value whose normal score the scalar path cannot compute
        cols["normal"][huge_at] = 1.7e308
    g = np.random.default_rng(9)
    t = np.arange(n)
    cols["artifact"] = (g.random(n) < np.where(t >= n // 2, 0.15, 0.05)).astype(float)
    recon = np.where(t >= 2 * n // 3, g.choice(["OSEM", "BSREM"], n), "OSEM")
    order = g.permutation(n)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", *cols, "reconstruction"])
        for i in order.tolist():  # shuffled: replay sorts by time
            cells = ["" if math.isnan(v[i]) else repr(float(v[i])) for v in cols.values()]
            cells[list(cols).index("artifact")] = str(int(cols["artifact"][i]))
            w.writerow([(T0 + timedelta(hours=i)).isoformat(), *cells, recon[i]])


@pytest.mark.parametrize("huge_at", [None, 4321])
def test_replay_writes_the_same_files_with_and_without_the_batch(
    tmp_path: Path, huge_at: int | None
) -> None:
    events = tmp_path / "events.csv"
    _write_events(events, huge_at=huge_at)
    outs = {}
    for batch in (True, False):
        out = tmp_path / f"alarms-{batch}.jsonl"
        summary = replay(
            events,
            out,
            reference_size=300,
            studies_per_day=20,
            false_alarms_per_year=1,
            batch=batch,
        )
        outs[batch] = (out.read_text(), summary.references_out.read_text(), summary.alarms)
        assert summary.streams["artifact"] == "binary"
        assert summary.streams["reconstruction"] == "categorical"
    assert outs[True] == outs[False]
    assert outs[True][2] > 50
    # the stream the value stopped: quarantined at its row, as row by row
    assert ('"kind": "quarantine"' in outs[True][0]) == (huge_at is not None)


def test_numeric_cells_are_read_as_convert_value_reads_them() -> None:
    cells = ["1.5", " 2 ", "", None, "nan", "inf", "-1e400", "1_000", "\x1c3\x1c", "abc", "7"]
    expected = [convert_value("numeric", c or "") for c in cells]
    got = numeric_column(cells)
    assert [None if math.isnan(v) else v for v in got.tolist()] == expected
    assert numeric_column(["1.25", "", None, " 4"]).tolist()[::3] == [1.25, 4.0]


@pytest.mark.parametrize(
    ("cells", "kind"),
    [
        (["1", "0", " yes", ""], "binary"),
        (["1.5", " 2 ", "", "1_000"], "numeric"),
        (["1.5", "nan"], "categorical"),
        (["1.5", "1e400"], "categorical"),
        (["", " "], "categorical"),
        (["OSEM", "2.0"], "categorical"),
    ],
)
def test_kinds_are_inferred_as_before(cells: list[str], kind: str) -> None:
    assert infer_kind(cells) == kind
