"""The subgroup statistics: Wilson intervals against statsmodels, the small-group rule, and the
disparity chart's false-alarm rate against its budget by simulation (seeded), at a gap equal to
the margin (the null's boundary) and at no gap, and its detection of a real gap."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.proportion import proportion_confint

from phase4.monitor.drift.subgroups import (
    Counts,
    cases_needed,
    design_disparity,
    disparity_arl0,
    gap_to_rest,
    rate,
    run_disparity,
    wilson_half_width,
)

MARGIN = 0.10
REST_N = 400  # the rest's labelled cases of the metric's kind
REST_Q = 0.12  # the rest's error rate (a miss rate: sensitivity 88%)
ARL0 = 1_500  # one chart's budget, in the group's cases
REPLICATIONS = 3_000
HORIZON = 3_000  # cases per replication


@pytest.mark.parametrize(
    ("successes", "n"), [(0, 10), (1, 10), (8, 10), (44, 100), (30, 50), (199, 200), (5, 5)]
)
def test_wilson_intervals_match_statsmodels(successes: int, n: int) -> None:
    low, high = proportion_confint(successes, n, alpha=0.05, method="wilson")
    shown = rate(successes, n)
    assert shown["ci95"] == pytest.approx([low, high], abs=1e-12)
    assert shown["value"] == successes / n


def test_counts_give_each_metric_its_own_denominator() -> None:
    c = Counts(n=100, positive_calls=40, tp=20, fp=5, tn=25, fn=10)
    assert c.labelled == 60
    assert c.fraction("positive_rate") == (40, 100)
    assert c.fraction("sensitivity") == (20, 30)
    assert c.fraction("specificity") == (25, 30)
    assert c.fraction("ppv") == (20, 25)
    assert rate(0, 0)["value"] is None


def test_gap_is_rest_minus_group_with_newcombes_interval() -> None:
    gap = gap_to_rest((40, 80), (300, 340))  # 50% against 88%
    assert gap is not None
    assert gap["value"] == pytest.approx(300 / 340 - 0.5)
    low, high = gap["ci95"]
    assert low < gap["value"] < high and low > 0.2
    assert gap_to_rest((0, 0), (1, 2)) is None


def test_small_group_rule_is_the_wilson_half_width_at_the_margin() -> None:
    for p in (0.5, 0.88, 0.95):
        n = cases_needed(MARGIN, p)
        assert wilson_half_width(p, n) <= MARGIN < wilson_half_width(p, n - 1)
    # a narrower margin needs more cases
    assert cases_needed(0.05, 0.88) > 3 * cases_needed(0.10, 0.88)


def test_budget_splits_the_share_over_the_charts() -> None:
    one = disparity_arl0(charts=1, false_alarms_per_year=0.1, cases_per_day=1.0)
    twelve = disparity_arl0(charts=12, false_alarms_per_year=0.1, cases_per_day=1.0)
    assert one == pytest.approx(3650) and twelve == pytest.approx(12 * 3650)


def _simulate(gap: float, rng: np.random.Generator) -> tuple[float, list[int]]:
    """Alarms per case over REPLICATIONS charts (each calibrated on its own simulated rest,
    restarting after each alarm, as a renewal process), and each chart's first alarm."""
    rest_errors = rng.binomial(REST_N, REST_Q, size=REPLICATIONS)
    q_group = REST_Q + gap
    alarms = 0
    first: list[int] = []
    for errors in np.unique(rest_errors):
        design = design_disparity(rest_errors=int(errors), rest_n=REST_N, margin=MARGIN, arl0=ARL0)
        reps = int((rest_errors == errors).sum())
        x = rng.random((HORIZON, reps)) < q_group
        s = np.zeros(reps, dtype=np.int64)
        first_alarm = np.full(reps, -1)
        for t in range(HORIZON):
            s = np.maximum(0, s + np.where(x[t], design.up, -design.down))
            hit = s >= design.h
            alarms += int(hit.sum())
            first_alarm[hit & (first_alarm < 0)] = t + 1
            s[hit] = 0
        first.extend(int(v) for v in first_alarm)
    return alarms / (REPLICATIONS * HORIZON), first


def test_false_alarm_rate_at_the_margin_is_within_the_budget() -> None:
    """At a gap equal to the margin (the null's boundary) the charts alarm at most at the budget's
    rate 1/ARL0 (9 million simulated cases: Monte Carlo error about 2% of the rate); at no gap,
    far less."""
    rng = np.random.default_rng(20261205)
    at_margin, _ = _simulate(MARGIN, rng)
    assert at_margin * ARL0 <= 1.05, at_margin * ARL0
    assert at_margin * ARL0 >= 0.5  # calibrated, not merely conservative
    no_gap, _ = _simulate(0.0, rng)
    assert no_gap * ARL0 < 0.1 * at_margin * ARL0


def test_a_real_gap_is_detected() -> None:
    """A group whose sensitivity is 30 points below the rest's (three margins): every chart
    alarms, in a median of well under a tenth of its in-control run length."""
    rng = np.random.default_rng(7)
    _, first = _simulate(3 * MARGIN, rng)
    first_arr = np.array(first)
    assert (first_arr > 0).mean() > 0.99
    assert np.median(first_arr[first_arr > 0]) < ARL0 / 10


def test_run_needs_the_minimum_cases_before_a_verdict() -> None:
    design = design_disparity(rest_errors=48, rest_n=400, margin=MARGIN, arl0=ARL0)
    errors = [True] * 60
    early = run_disparity(errors, design, min_cases=1)
    late = run_disparity(errors, design, min_cases=40)
    assert early.alarm_index is not None and early.alarm_index < 39
    assert late.alarm_index == 39
    assert late.change_index == 0
    quiet = run_disparity([False] * 60, design, min_cases=1)
    assert quiet.alarm_index is None and quiet.statistic == 0
