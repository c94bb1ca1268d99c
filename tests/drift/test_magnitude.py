"""The size of a change: each interval against an independent implementation (scipy's Welch test
and Wilson interval, Welch's test inverted numerically for Fieller, Newcombe's published
examples), and each interval's coverage by simulation (2,000 runs: a 95% interval must cover the
truth in 93-97% of them)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize, stats

from phase4.monitor.drift.magnitude import (
    Moments,
    fieller_interval,
    mean_shift,
    newcombe_interval,
    rate_shift,
    share_shift,
    welch_interval,
    wilson_interval,
)

RUNS = 2000
COVERAGE = (0.93, 0.97)


def _coverage(hits: list[bool]) -> float:
    return sum(hits) / len(hits)


@pytest.mark.parametrize("seed", range(5))
def test_welch_interval_matches_scipy(seed: int) -> None:
    g = np.random.default_rng(seed)
    before = g.normal(2.2, 0.22, int(g.integers(20, 600)))
    after = g.normal(2.0, float(g.uniform(0.1, 0.5)), int(g.integers(2, 80)))
    ours = welch_interval(Moments.of(list(before)), Moments.of(list(after)))
    theirs = stats.ttest_ind(after, before, equal_var=False).confidence_interval(0.95)
    assert ours is not None
    assert ours.low == pytest.approx(theirs.low, rel=1e-9)
    assert ours.high == pytest.approx(theirs.high, rel=1e-9)


def _fieller_by_test_inversion(before: np.ndarray, after: np.ndarray) -> tuple[float, float]:
    """The ratios ρ Welch's test of mean(after) = ρ·mean(before) does not reject at 5%: scipy's
    Welch test on (after, ρ·before), its p-value solved for 0.05 on each side of the estimate."""
    rho_hat = after.mean() / before.mean()

    def p_minus_alpha(rho: float) -> float:
        return float(stats.ttest_ind(after, rho * before, equal_var=False).pvalue) - 0.05

    low = optimize.brentq(p_minus_alpha, rho_hat * 0.2, rho_hat, xtol=1e-14)
    high = optimize.brentq(p_minus_alpha, rho_hat, rho_hat * 5, xtol=1e-14)
    return low, high


@pytest.mark.parametrize("seed", range(5))
def test_fieller_interval_is_welchs_test_inverted(seed: int) -> None:
    g = np.random.default_rng(100 + seed)
    before = g.lognormal(math.log(8.0), 0.45, int(g.integers(30, 600)))
    after = g.lognormal(math.log(10.0), 0.45, int(g.integers(5, 60)))
    ours = fieller_interval(Moments.of(list(before)), Moments.of(list(after)))
    low, high = _fieller_by_test_inversion(before, after)
    assert ours is not None
    assert ours.low == pytest.approx(low, rel=1e-7)
    assert ours.high == pytest.approx(high, rel=1e-7)


def test_no_percentage_interval_when_the_reference_mean_may_be_zero() -> None:
    shift = mean_shift(Moments(20, 0.05, 1.0), Moments(20, 1.0, 1.0))
    assert shift.delta_ci is not None  # the difference still has its interval
    assert shift.ratio_ci is None and shift.delta_pct_ci is None
    assert mean_shift([1.0, 2.0, 3.0], [2.0]).delta_ci is None  # one value after: no spread


@pytest.mark.parametrize(("events", "n"), [(0, 10), (1, 10), (8, 10), (44, 100), (3, 500)])
def test_wilson_interval_matches_scipy(events: int, n: int) -> None:
    ours = wilson_interval(events, n)
    theirs = stats.binomtest(events, n).proportion_ci(0.95, method="wilson")
    assert ours.low == pytest.approx(theirs.low, abs=1e-12)
    assert ours.high == pytest.approx(theirs.high, abs=1e-12)


# Newcombe (1998), Table II, method 10: (events, n) of the first sample, of the second, and the
# interval for p1 - p2 as published (to 4 decimals).
NEWCOMBE_EXAMPLES = [
    ((56, 70), (48, 80), (0.0524, 0.3339)),
    ((9, 10), (3, 10), (0.1705, 0.8090)),
    ((5, 56), (0, 29), (-0.0381, 0.1926)),
    ((0, 10), (0, 20), (-0.1611, 0.2775)),
    ((10, 10), (0, 20), (0.6791, 1.0000)),
    ((10, 10), (0, 10), (0.6075, 1.0000)),
]


@pytest.mark.parametrize(("first", "second", "published"), NEWCOMBE_EXAMPLES)
def test_newcombe_interval_matches_the_published_examples(
    first: tuple[int, int], second: tuple[int, int], published: tuple[float, float]
) -> None:
    # ours is p_after - p_before: the first sample is "after"
    ci = newcombe_interval(second[0], second[1], first[0], first[1])
    assert (round(ci.low, 4), round(ci.high, 4)) == published


def test_newcombe_interval_from_scipys_wilson_limits() -> None:
    """The hybrid score formula written out again on scipy's Wilson limits."""
    for e1, n1, e2, n2 in [(50, 500, 12, 60), (0, 400, 3, 40), (221, 500, 71, 120)]:
        w1 = stats.binomtest(e1, n1).proportion_ci(method="wilson")
        w2 = stats.binomtest(e2, n2).proportion_ci(method="wilson")
        p1, p2 = e1 / n1, e2 / n2
        low = (p2 - p1) - math.hypot(p2 - w2.low, w1.high - p1)
        high = (p2 - p1) + math.hypot(w2.high - p2, p1 - w1.low)
        ci = newcombe_interval(e1, n1, e2, n2)
        assert ci.low == pytest.approx(low, abs=1e-12)
        assert ci.high == pytest.approx(high, abs=1e-12)


def test_share_shift_names_the_category_that_moved_most() -> None:
    shift = share_shift({"OSEM": 450, "OSEM+PSF": 50}, {"OSEM": 20, "BSREM": 70, "OSEM+PSF": 10})
    assert shift is not None
    assert shift.category == "BSREM" and shift.new
    assert shift.rates.before == 0 and shift.rates.after == pytest.approx(0.7)
    assert share_shift({"a": 3}, {}) is None


# --- coverage --------------------------------------------------------------------------------


def test_coverage_of_welchs_interval_and_fiellers_percentage_on_normal_values() -> None:
    """A liver SUVmean reference of 500 and 30 values after a -7.4% change (SD also scaled)."""
    g = np.random.default_rng(2024)
    truth_delta = 2.2 / 1.08 - 2.2
    truth_pct = 100 * (1 / 1.08 - 1)
    delta_hits, pct_hits = [], []
    for _ in range(RUNS):
        before = g.normal(2.2, 0.22, 500)
        after = g.normal(2.2 / 1.08, 0.22 / 1.08, 30)
        shift = mean_shift(list(before), list(after))
        assert shift.delta_ci is not None and shift.delta_pct_ci is not None
        delta_hits.append(shift.delta_ci.contains(truth_delta))
        pct_hits.append(shift.delta_pct_ci.contains(truth_pct))
    cover_delta, cover_pct = _coverage(delta_hits), _coverage(pct_hits)
    print(f"normal: Welch {cover_delta:.3f}, Fieller {cover_pct:.3f}")
    assert COVERAGE[0] <= cover_delta <= COVERAGE[1]
    assert COVERAGE[0] <= cover_pct <= COVERAGE[1]


def test_coverage_of_fiellers_percentage_on_skewed_values_and_a_small_reference() -> None:
    """Lesion SUVmax is log-normal (σ of the log 0.45): +25% with 40 values after, against a
    reference of only 60 (where the reference mean's own error matters)."""
    g = np.random.default_rng(7)
    sigma = 0.45
    truth_pct = 25.0
    hits = []
    for _ in range(RUNS):
        before = g.lognormal(math.log(8.0), sigma, 60)
        after = g.lognormal(math.log(8.0 * 1.25), sigma, 40)
        ci = mean_shift(list(before), list(after)).delta_pct_ci
        assert ci is not None
        hits.append(ci.contains(truth_pct))
    cover = _coverage(hits)
    print(f"log-normal: Fieller {cover:.3f}")
    assert COVERAGE[0] <= cover <= COVERAGE[1]


def test_coverage_of_wilson_and_newcombe_intervals() -> None:
    """A false-positive rate from 10% (reference of 500 outcomes) to 20% in 80 outcomes."""
    g = np.random.default_rng(11)
    p0, p1 = 0.10, 0.20
    after_hits, delta_hits = [], []
    for _ in range(RUNS):
        e0, e1 = int(g.binomial(500, p0)), int(g.binomial(80, p1))
        shift = rate_shift(e0, 500, e1, 80)
        after_hits.append(shift.after_ci.contains(p1))
        delta_hits.append(shift.delta_ci.contains(p1 - p0))
    cover_after, cover_delta = _coverage(after_hits), _coverage(delta_hits)
    print(f"binary: Wilson {cover_after:.3f}, Newcombe {cover_delta:.3f}")
    assert COVERAGE[0] <= cover_after <= COVERAGE[1]
    assert COVERAGE[0] <= cover_delta <= COVERAGE[1]


def test_coverage_of_a_new_categorys_share() -> None:
    """A new reconstruction taking 30% of 100 studies, against a reference without it."""
    g = np.random.default_rng(13)
    hits = []
    for _ in range(RUNS):
        new = int(g.binomial(100, 0.3))
        shift = share_shift({"OSEM": 500}, {"OSEM": 100 - new, "BSREM": new})
        # OSEM's fall is as large: the new category is named on the tie
        assert shift is not None and shift.category == "BSREM" and shift.new
        hits.append(shift.rates.delta_ci.contains(0.3))
    cover = _coverage(hits)
    print(f"categorical: Newcombe {cover:.3f}")
    assert COVERAGE[0] <= cover <= COVERAGE[1]
