"""The protocol of bench/detection_delay.py for binary streams: phase4's reference is the
product's (the first 500 observations; with ``--binary-rule growth`` grown inside the
DeploymentMonitor), and a scenario's
own change position τ is where its delays are measured from (artifact_late: row 1,500)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import detection_delay as dd

from phase4.monitor.drift.streams import MonitorConfig

SEED = 20260105


@pytest.fixture
def old_rule():
    dd.BINARY_RULE = "old"
    yield
    dd.BINARY_RULE = "product"


@pytest.fixture
def growth_rule():
    dd.BINARY_RULE = "growth"
    yield
    dd.BINARY_RULE = "product"


def test_the_bench_runs_phase4_with_the_products_binary_reference_rule() -> None:
    cfg = dd.phase4_config("binary")
    assert cfg.reference_events_min == MonitorConfig.reference_events_min == 0
    assert cfg.reference_events_target == MonitorConfig.reference_events_target == 0
    rep = dd.make_replicate(dd.SCENARIOS["artifact"], (3, 2, 0, 0), SEED, 10, 0)
    assert rep.ref.size == dd.REFERENCE_SIZE


def test_the_old_rule_waits_for_50_events_and_does_not_grow(old_rule: None) -> None:
    cfg = dd.phase4_config("binary")
    assert (cfg.reference_events_min, cfg.reference_events_target) == (50, 0)
    scen = dd.SCENARIOS["artifact"]
    rep = dd.make_replicate(scen, (3, 2, 0, 0), SEED, 10, 0)
    assert rep.ref.sum() == 50 and rep.ref[-1] == 1 and rep.ref.size > dd.REFERENCE_SIZE
    mon, _ = dd.phase4_monitor(scen, rep.ref)  # starts monitoring exactly there (checked)
    assert mon.streams["v"].growth is None


def test_artifact_late_changes_at_row_1500_of_the_stream() -> None:
    late, early = dd.SCENARIOS["artifact_late"], dd.SCENARIOS["artifact"]
    assert (late.p0, late.p1, late.kind) == (early.p0, early.p1, early.kind)
    assert late.design == "artifact" and early.tau == dd.TAU == 500
    assert dd.REFERENCE_SIZE + late.tau == 1500
    rep = dd.make_replicate(late, (3, 2, 0, 0), SEED, late.tau, 200)
    stream = np.concatenate((rep.ref, rep.delayed(late.tau)))
    assert stream.size == 1500 + 200
    assert np.array_equal(stream[:500], rep.ref)
    assert np.array_equal(stream[500:1500], rep.ic[: late.tau])
    assert np.array_equal(stream[1500:], rep.post)
    # the same deployments as artifact: the same reference and in-control continuation
    other = dd.make_replicate(early, (3, 2, 0, 0), SEED, late.tau, 200)
    assert np.array_equal(rep.ref, other.ref) and np.array_equal(rep.ic, other.ic)


def test_phase4_grows_its_binary_reference_from_the_continuation(growth_rule: None) -> None:
    scen = dd.SCENARIOS["artifact_late"]
    grown = 0
    for r in range(6):
        rep = dd.make_replicate(scen, (3, 2, 0, r), SEED, 4000, 0)
        mon, conv = dd.phase4_monitor(scen, rep.ref)
        stream = mon.streams["v"]
        assert stream.reference["n"] == dd.REFERENCE_SIZE and stream.growth is not None
        for v in rep.ic.tolist():
            if mon.observe({"v": conv(v)}, at=dd.STAMP):
                break  # an in-control alarm holds growth
        for step in stream.grown:  # only from observations at least a guard lag old
            assert step["row"] - step["added"]["last_row"] >= step["guard"]
        grown += bool(stream.grown)
    assert grown >= 3


def test_delays_are_counted_from_the_scenarios_own_change() -> None:
    scen = dd.SCENARIOS["artifact_late"]
    res = dd.run_task(("artifact_late", dd.Setting("oracle"), "oracle", 0, 2, SEED, True))
    assert len(res["delays"]) == 2
    horizon = int(dd.IC_HORIZON_FACTOR * dd.TARGET_ARL0)
    sidx = dd.scenario_index("artifact")
    expected, j, extra = [], 0, 0
    while len(expected) < 2:
        if j < 2:
            rep = dd.make_replicate(scen, (sidx, 2, 0, j), SEED, horizon, dd.DELAY_HORIZON)
            j += 1
        else:
            rep = dd.make_replicate(scen, (sidx, 3, 0, extra), SEED, 1000, dd.DELAY_HORIZON)
            extra += 1
        if dd.oracle_first_alarm(scen, rep.ic[:1000], dd.TARGET_ARL0) is not None:
            continue  # an alarm before row 1,500: excluded
        i = dd.oracle_first_alarm(scen, rep.delayed(1000), dd.TARGET_ARL0)
        expected.append(dd.DELAY_HORIZON if i is None else i - 1000 + 1)
    assert res["delays"] == expected
    assert res["excluded_pre_change_alarm"] == j + extra - 2


def test_old_blind_runs_the_old_rule_on_the_growth_rules_streams(old_rule: None) -> None:
    dd.BINARY_RULE = "old-blind"
    scen = dd.SCENARIOS["artifact_late"]
    rep = dd.make_replicate(scen, (3, 2, 0, 4), SEED, scen.tau, 2000)
    assert rep.ref.size == dd.REFERENCE_SIZE  # every other method's reference is unchanged
    # on this seed the old reference (50 events: about 1,800 rows) absorbs the change at row
    # 1,500, so phase4 cannot alarm before it, and its delay counts the blind time
    i = dd.phase4_first_alarm(scen, rep.ref, rep.delayed(scen.tau))
    assert i is not None and i - scen.tau + 1 > 50
