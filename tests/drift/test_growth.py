"""A binary reference that grows in audited steps (phase4.monitor.drift.growth): it starts at its
size, grows only from observations past the guard lag and while the chart's sum is at zero,
never past a change estimate, never after an alarm until released, and never forgets."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from phase4.monitor.drift.growth import ReferenceGrowth
from phase4.monitor.drift.state import upgrade_state
from phase4.monitor.drift.streams import DeploymentMonitor, MonitorConfig, StreamSpec
from phase4.monitor.surveillance.replay import replay

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _monitor(**kw: object) -> DeploymentMonitor:
    """A binary stream whose reference grows toward 200 events (an option; off by default)."""
    kw = {"reference_events_target": 200, **kw}
    config = MonitorConfig(streams=(StreamSpec("art", "binary"),), studies_per_day=20, **kw)
    return DeploymentMonitor.new(config)


def _feed(monitor: DeploymentMonitor, events: np.ndarray, start: int = 0) -> tuple[list, list]:
    alarms, steps = [], []
    for i, e in enumerate(events.tolist(), start=start):
        found = monitor.observe({"art": bool(e)}, (T0 + timedelta(hours=i)).isoformat(), row=i)
        alarms += [(i, a) for a in found]
        steps += monitor.take_growth_steps()
    return alarms, steps


def test_a_rare_stream_monitors_from_its_size_and_grows_to_its_target_in_steps() -> None:
    events = np.random.default_rng(2).random(12_000) < 0.02
    # a budget of one false alarm in ten years (ARL0 73,000), so that in-control data reach
    # the target without an alarm holding growth
    monitor = _monitor(false_alarms_per_year=0.1)
    stream = monitor.streams["art"]
    _feed(monitor, events[:500])
    assert stream.monitoring  # no waiting for 50 events: about 10 are enough to start
    assert stream.reference is not None and stream.reference["n"] == 500
    assert stream.reference_span == [T0.isoformat(), (T0 + timedelta(hours=499)).isoformat()]
    alarms, steps = _feed(monitor, events[500:], start=500)
    assert not alarms
    assert 3 <= len(steps) <= 12  # a handful of steps, each one calibration
    n, joined_to = 500, 499
    for k, step in enumerate(steps, start=1):
        added, before, after = step["added"], step["reference_before"], step["reference_after"]
        assert step["step"] == k
        # never sliding, never forgetting: counts only grow, by exactly what joined
        assert before["n"] == n and after["n"] == n + added["observations"]
        assert after["events"] == before["events"] + added["events"]
        # contiguous: the next unjoined observation first, none skipped, none twice
        assert added["first_row"] == joined_to + 1
        # every joined row had cleared the guard when the step was taken
        assert step["row"] - added["last_row"] >= step["guard"] >= 500
        n, joined_to = after["n"], added["last_row"]
    assert steps[-1]["done"] and steps[-1]["reference_after"]["events"] >= 200
    assert stream.growth is not None and stream.growth.done
    assert int(events[: steps[-1]["reference_after"]["n"]].sum()) == stream.reference["events"]
    chart = stream.detectors["bernoulli_cusum"]
    assert chart.p0 == pytest.approx(steps[-1]["p0"]) and chart.p1 == pytest.approx(2 * chart.p0)


def test_an_alarm_drops_what_waits_and_holds_growth_until_released() -> None:
    g = np.random.default_rng(5)
    monitor = _monitor()
    _feed(monitor, g.random(1500) < 0.02)
    # a burst of events: the chart alarms
    alarms, _ = _feed(monitor, np.ones(40, dtype=bool), start=1500)
    assert alarms
    growth = monitor.streams["art"].growth
    assert growth is not None and growth.hold is not None and growth.blocks == []
    first_hold = growth.hold
    alarm_row = alarms[0][0]
    assert monitor.held_growth() == {"art"}
    # held: nothing joins however long it runs, and nothing waits
    _, steps = _feed(monitor, g.random(3000) < 0.02, start=1540)
    assert steps == [] and growth.blocks == []
    assert growth.hold == first_hold  # the first alarm's time, not a later one's
    monitor.release_growth({"art"})
    _, steps = _feed(monitor, g.random(6000) < 0.02, start=4540)
    assert steps, "growth resumes once the alert is resolved"
    # nothing from before the release joins: not the burst, not the held stretch
    assert all(s["added"]["first_row"] >= 4540 > alarm_row for s in steps)


def test_growth_survives_a_save_and_reload_exactly() -> None:
    events = np.random.default_rng(8).random(9000) < 0.03
    straight = _monitor()
    _, steps_straight = _feed(straight, events)
    saved = _monitor()
    _, steps_a = _feed(saved, events[:2700])
    reloaded = DeploymentMonitor.from_dict(json.loads(json.dumps(saved.to_dict())))
    _, steps_b = _feed(reloaded, events[2700:], start=2700)
    assert steps_a + steps_b == steps_straight
    assert reloaded.to_dict() == straight.to_dict()


def test_a_version_3_stream_keeps_its_reference_and_does_not_grow() -> None:
    monitor = _monitor(reference_events_min=50)
    _feed(monitor, np.random.default_rng(9).random(3000) < 0.02)
    state = monitor.to_dict()
    state["state_version"] = 3
    for s in state["streams"].values():
        for key in ("reference_span", "reference_first_at", "growth"):
            s.pop(key, None)
    upgraded = upgrade_state(state)
    assert upgraded["streams"]["art"]["growth"] is None
    again = DeploymentMonitor.from_dict(state)
    assert again.streams["art"].growth is None and again.streams["art"].reference_span is None
    _, steps = _feed(again, np.random.default_rng(10).random(5000) < 0.02, start=3000)
    assert steps == []


def test_growth_bookkeeping_waits_for_enough_events_or_rows() -> None:
    growth = ReferenceGrowth.start(target=200, guard=100)
    assert growth.block == 50
    for i in range(300):
        growth.add(i % 50 == 0, i, f"t{i}", i + 1)
    # 6 blocks closed; those ending at least 100 observations ago: 4 blocks, 200 rows, 4 events
    step = growth.ready(300, reference_n=500, reference_events=10)
    assert step is None  # 4 events < max(5, 10 / 2) and 200 rows < the reference's 500
    step = growth.ready(300, reference_n=150, reference_events=10)
    assert step is not None and (step.n, step.events, step.first_row, step.last_row) == (
        200,
        4,
        0,
        199,
    )


def _write_rare_csv(path: Path, seed: int, change_row: int = 1500, rows: int = 5000) -> None:
    g = np.random.default_rng(seed)
    rate = np.where(np.arange(rows) < change_row, 0.02, 0.06)
    events = g.random(rows) < rate
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "art"])
        for i, e in enumerate(events.tolist()):
            w.writerow([(T0 + timedelta(hours=i)).isoformat(), int(e)])


@pytest.mark.parametrize("seed", range(12))
def test_replay_never_grows_a_reference_past_a_change_estimate_or_after_an_alarm(
    tmp_path: Path, seed: int
) -> None:
    """2% → 6% at row 1,500, a 500-row reference (the case that used to extend its reference
    past the change to hold 50 events): every row that joins precedes the first alarm's change
    estimate, no step follows the first alarm, and the sidecar says so."""
    events = tmp_path / "events.csv"
    _write_rare_csv(events, seed)
    out = tmp_path / "alarms.jsonl"
    summary = replay(
        events,
        out,
        reference_size=500,
        studies_per_day=20,
        false_alarms_per_year=1,
        binary="art",
        reference_events_target=200,
    )
    alarms = [json.loads(line) for line in out.read_text().splitlines()]
    assert alarms, "a tripling of the rate is detected within 3,500 rows"
    first = alarms[0]
    side = json.loads(summary.references_out.read_text())[0]  # type: ignore[union-attr]
    assert side["reference_rows"] == 500 and side["last_row"] == 499
    assert side["growth_held_at"] == first["timestamp"]
    for step in side["growth_steps"]:
        assert step["added"]["last_row"] < first["change_index_estimate"]
        assert step["row"] < first["index"]
        assert step["added"]["last_at"] < first["change_timestamp"]
    assert side["final_rows"] == 500 + sum(s["added"]["observations"] for s in side["growth_steps"])
    assert side["final_rows"] <= first["change_index_estimate"]


@pytest.mark.parametrize("rate", [0.01, 0.05])
def test_a_growing_binary_stream_state_stays_within_two_kilobytes(rate: float) -> None:
    """Waiting observations are kept as blocks, and those past the guard merged into one:
    however long a step waits for its events, a monitoring binary stream's saved state stays
    within 2 KB (docs/BENCHMARKS.md, "State per stream")."""
    monitor = _monitor()
    g = np.random.default_rng(3)
    sizes = []
    for i, e in enumerate((g.random(12_000) < rate).tolist()):
        monitor.observe({"art": e}, (T0 + timedelta(hours=i)).isoformat(), row=i)
        monitor.take_growth_steps()
        stream = monitor.streams["art"]
        if stream.monitoring:
            sizes.append(len(json.dumps(stream.to_dict())))
            assert stream.growth is None or len(stream.growth.blocks) <= 12
    assert max(sizes) <= 2048
