"""The revalidation gate's paired statistics against independent implementations: Tango's score
interval against a brute-force inversion of the score test (the restricted maximum likelihood
found numerically with scipy, the bounds by root finding), McNemar's exact test against
statsmodels, non-inferiority verdicts on constructed data, and the coverage of the intervals
by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize, stats
from statsmodels.stats.contingency_tables import mcnemar

from phase4.monitor.drift.paired import (
    PairedCase,
    compare,
    mcnemar_exact,
    tango_interval,
)

Z = stats.norm.ppf(0.975)


def _score_z(b: int, c: int, n: int, delta: float) -> float:
    """The score statistic for H0: p10 - p01 = delta, written from the likelihood: the cells
    (p11, p10, p01, p00) with p10 = p01 + delta; maximise over p01 (p11 + p00 profile out to
    their observed share of the rest), then Z = (dhat - delta) / sqrt((p10 + p01 - delta^2)/n)."""
    a_d = n - b - c  # concordant pairs

    def negloglik(p01: float) -> float:
        p10 = p01 + delta
        rest = 1 - p10 - p01
        if min(p01, p10, rest) <= 0:
            return math.inf
        ll = b * math.log(p10) + c * math.log(p01)
        if a_d:
            ll += a_d * math.log(rest)
        return -ll

    lo = max(0.0, -delta) + 1e-12
    hi = (1 - delta) / 2 - 1e-12
    p01 = optimize.minimize_scalar(negloglik, bounds=(lo, hi), method="bounded").x
    p10 = p01 + delta
    var = (p10 + p01 - delta**2) / n
    return ((b - c) / n - delta) / math.sqrt(var)


def _brute_force(b: int, c: int, n: int) -> tuple[float, float]:
    dhat = (b - c) / n
    low = optimize.brentq(lambda d: _score_z(b, c, n, d) - Z, -1 + 1e-6, dhat - 1e-9)
    high = optimize.brentq(lambda d: _score_z(b, c, n, d) + Z, dhat + 1e-9, 1 - 1e-6)
    return low, high


@pytest.mark.parametrize(
    ("b", "c", "n"),
    [(12, 3, 100), (1, 7, 21), (40, 20, 160), (5, 5, 50), (0, 4, 30), (9, 1, 400), (3, 0, 12)],
)
def test_tango_interval_matches_brute_force_inversion(b: int, c: int, n: int) -> None:
    ours = tango_interval(b, c, n)
    low, high = _brute_force(b, c, n)
    assert ours.estimate == pytest.approx((b - c) / n)
    assert ours.low == pytest.approx(low, abs=2e-4)
    assert ours.high == pytest.approx(high, abs=2e-4)


def test_tango_interval_at_the_edges() -> None:
    everything_lost = tango_interval(0, 10, 10)
    assert everything_lost.low == -1.0 and everything_lost.high < 0
    nothing_discordant = tango_interval(0, 0, 50)
    assert nothing_discordant.low < 0 < nothing_discordant.high
    with pytest.raises(ValueError):
        tango_interval(6, 6, 10)


@pytest.mark.parametrize(("b", "c"), [(12, 3), (0, 0), (1, 9), (25, 25), (0, 6), (30, 11)])
def test_mcnemar_exact_matches_statsmodels(b: int, c: int) -> None:
    table = [[50, b], [c, 40]]
    assert mcnemar_exact(b, c) == pytest.approx(mcnemar(table, exact=True).pvalue)


def _cases(sens: tuple[int, int, int, int], spec: tuple[int, int, int, int]) -> list[PairedCase]:
    """Counts (both right, accepted only, candidate only, both wrong) among truth 1 and 0."""
    out: list[PairedCase] = []
    for truth, (both, acc, cand, neither) in ((1, sens), (0, spec)):
        right, wrong = truth, 1 - truth
        out += [PairedCase(truth, right, right)] * both
        out += [PairedCase(truth, right, wrong)] * acc
        out += [PairedCase(truth, wrong, right)] * cand
        out += [PairedCase(truth, wrong, wrong)] * neither
    return out


def test_non_inferiority_verdicts_on_constructed_data() -> None:
    # Sensitivity: the candidate finds 6 lesions the accepted missed and misses 2: better.
    # Specificity: 25 new false positives among 300 negatives, 1 fewer: 8 points worse.
    cases = _cases((180, 2, 6, 12), (260, 25, 1, 14))
    out = compare(cases, {"sensitivity": 0.05, "specificity": 0.05, "ppv": 0.20})
    by = {r.criterion: r for r in out.results}
    assert by["sensitivity"].verdict == "pass"
    assert by["sensitivity"].difference is not None and by["sensitivity"].difference.low > -0.05
    assert by["specificity"].verdict == "fail"
    assert by["specificity"].difference is not None
    assert by["specificity"].difference.estimate == pytest.approx(-24 / 300)
    assert by["specificity"].p_value is not None and by["specificity"].p_value < 0.001
    assert out.verdict == "fail" and out.failed() == ["specificity"]
    # The same data pass when the margin is wide enough.
    assert compare(cases, {"specificity": 0.15}).verdict == "pass"


def test_dice_and_rate_change() -> None:
    g = np.random.default_rng(3)
    cases = []
    for _ in range(150):
        acc = float(np.clip(g.normal(0.80, 0.06), 0, 1))
        cases.append(PairedCase(None, 1, 1, acc, float(np.clip(acc + g.normal(-0.01, 0.02), 0, 1))))
    out = compare(cases, {"dice": 0.03, "positive_rate_change": 0.05})
    dice, rate = out.results
    assert dice.criterion == "dice" and dice.verdict == "pass"
    assert dice.difference is not None and -0.02 < dice.difference.estimate < 0
    assert rate.verdict == "pass" and rate.difference is not None
    # A Dice loss of 0.05 fails a margin of 0.03.
    worse = [PairedCase(None, 1, 1, x.accepted_dice, (x.accepted_dice or 0) - 0.05) for x in cases]
    assert compare(worse, {"dice": 0.03}).results[0].verdict == "fail"


def test_not_evaluable_fails_the_gate() -> None:
    out = compare([PairedCase(0, 0, 0)] * 20, {"sensitivity": 0.05})
    assert out.results[0].verdict == "not evaluable" and out.verdict == "fail"
    with pytest.raises(ValueError, match="unknown criteria"):
        compare([], {"accuracy": 0.1})


def test_tango_coverage_by_simulation() -> None:
    """A 95% interval covers the true paired difference in 93-97.5% of 1,000 samples."""
    g = np.random.default_rng(11)
    probs = np.array([0.70, 0.06, 0.10, 0.14])  # both, first only, second only, neither
    truth = probs[1] - probs[2]
    hits = 0
    runs = 1000
    for _ in range(runs):
        _, b, c, _ = g.multinomial(120, probs)
        i = tango_interval(int(b), int(c), 120)
        hits += i.low <= truth <= i.high
    assert 0.93 <= hits / runs <= 0.975


def test_bootstrap_dice_coverage_by_simulation() -> None:
    """The paired bootstrap interval of the mean Dice difference covers the truth in about 95%
    of 150 simulated validation sets (B reduced to 400 for speed; bounds wide for 150 runs)."""
    g = np.random.default_rng(5)
    hits, runs = 0, 150
    for run in range(runs):
        acc = g.beta(16, 4, 80)
        cand = np.clip(acc + g.normal(-0.01, 0.03, 80), 0, 1)
        cases = [PairedCase(None, 1, 1, float(a), float(c)) for a, c in zip(acc, cand, strict=True)]
        d = compare(cases, {"dice": 0.1}, b=400, seed=run).results[0].difference
        assert d is not None
        hits += d.low <= -0.01 <= d.high
    assert 0.88 <= hits / runs <= 0.99


def test_bootstrap_is_reproducible() -> None:
    cases = _cases((50, 3, 2, 5), (60, 4, 1, 10))
    one = compare(cases, {"ppv": 0.1}).results[0]
    two = compare(cases, {"ppv": 0.1}).results[0]
    assert one.difference == two.difference
