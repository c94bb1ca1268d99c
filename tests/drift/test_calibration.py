"""Detector calibration against published tables and against Monte Carlo of the streaming code.

Tables: J. M. Lucas & R. B. Crosier 1982, Technometrics 24:199–205, Table 1 (the two-sided
tabular CUSUM, k = 0.5); J. M. Lucas & M. S. Saccucci 1990, Technometrics 32:1–12 (the EWMA).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from phase4.monitor.drift.arl import (
    BERNOULLI_H_LLR_MAX,
    CUSUM_H_MAX,
    BernoulliCusumDesign,
    CalibrationError,
    bernoulli_cusum_arl,
    calibrate_bernoulli_cusum,
    calibrate_bernoulli_cusum_uncertain,
    calibrate_cusum_h,
    calibrate_ewma_l,
    cusum_arl,
    cusum_arl_one_sided,
    ewma_arl,
    expected_false_alarm_rate,
)
from phase4.monitor.drift.detectors import BernoulliCusum, Cusum, Ewma
from tests.reference import spc

SHIFTS = spc.CUSUM_SHIFTS_SIGMA
TABLE = spc.CUSUM_TWO_SIDED_ARL


@pytest.mark.parametrize("h", [4, 5])
@pytest.mark.parametrize("i", range(len(SHIFTS)))
def test_two_sided_cusum_arl_reproduces_the_published_table(h: int, i: int) -> None:
    computed = cusum_arl(h, k=spc.CUSUM_K, shift=SHIFTS[i])
    assert computed == pytest.approx(TABLE[h][i], rel=0.02)


def test_siegmund_approximation_is_close_for_one_side() -> None:
    # Siegmund (1985): ARL ≈ (exp(-2Δb) + 2Δb - 1) / (2Δ²), Δ = δ - k, b = h + 1.166.
    for delta in (0.0, 0.5, 1.0, 2.0):
        d, b = delta - 0.5, 5 + 1.166
        approx = b * b if d == 0 else (math.exp(-2 * d * b) + 2 * d * b - 1) / (2 * d * d)
        assert cusum_arl_one_sided(5, 0.5, delta) == pytest.approx(approx, rel=0.05)


def test_calibration_inverts_the_arl() -> None:
    assert calibrate_cusum_h(168.0) == pytest.approx(4.0, abs=0.01)
    assert calibrate_cusum_h(465.0) == pytest.approx(5.0, abs=0.01)
    h = calibrate_cusum_h(100_000.0)
    assert cusum_arl(h) == pytest.approx(100_000, rel=1e-4)


def test_estimated_reference_costs_a_larger_threshold() -> None:
    known = calibrate_cusum_h(10_000.0)
    estimated = calibrate_cusum_h(10_000.0, reference_size=200)
    assert estimated > known + 0.1


def test_ewma_arl_matches_lucas_and_saccucci() -> None:
    # Lucas & Saccucci (1990), Table 3: λ = 0.10, L = 2.814: ARL 500 in control, 10.3 at 1σ.
    lam, limit = spc.EWMA_LAMBDA, spc.EWMA_L
    assert ewma_arl(limit, lam) == pytest.approx(spc.EWMA_ARL_IN_CONTROL, rel=0.01)
    assert ewma_arl(limit, lam, shift=1.0) == pytest.approx(spc.EWMA_ARL_AT_ONE_SIGMA, rel=0.02)
    assert calibrate_ewma_l(spc.EWMA_ARL_IN_CONTROL, lam) == pytest.approx(limit, abs=0.005)


def _run_lengths(make, draw, runs: int, rng: np.random.Generator) -> np.ndarray:  # type: ignore[no-untyped-def]
    lengths = np.empty(runs)
    for r in range(runs):
        det = make()
        t = 0
        while True:
            t += 1
            if det.update(draw(rng)) is not None:
                break
        lengths[r] = t
    return lengths


@pytest.mark.parametrize(("h", "shift", "runs"), [(4, 0.0, 2000), (4, 1.0, 4000), (5, 1.0, 4000)])
def test_streaming_cusum_agrees_with_the_computed_arl(h: float, shift: float, runs: int) -> None:
    rng = np.random.default_rng(20261122 + int(10 * h + shift))
    lengths = _run_lengths(lambda: Cusum(h=h), lambda g: g.normal(shift, 1.0), runs, rng)
    mean, se = lengths.mean(), lengths.std(ddof=1) / math.sqrt(runs)
    assert abs(mean - cusum_arl(h, 0.5, shift)) < 3 * se


def test_streaming_ewma_agrees_with_the_computed_arl() -> None:
    rng = np.random.default_rng(7)
    runs = 3000
    lengths = _run_lengths(
        lambda: Ewma(multiplier_l=2.5, lam=0.2), lambda g: g.normal(0.5, 1.0), runs, rng
    )
    se = lengths.std(ddof=1) / math.sqrt(runs)
    # The Markov chain approximation is accurate to about 1%; allow for it beside the MC error.
    assert abs(lengths.mean() - ewma_arl(2.5, 0.2, 0.5)) < 3 * se + 0.01 * lengths.mean()


def test_bernoulli_cusum_chain_is_exact_for_the_streaming_chart() -> None:
    design = calibrate_bernoulli_cusum(0.05, 0.15, arl0=200.0)
    assert bernoulli_cusum_arl(design.up, design.down, design.h, 0.05) >= 200.0
    assert bernoulli_cusum_arl(design.up, design.down, design.h - 1, 0.05) < 200.0
    rng = np.random.default_rng(11)
    runs = 3000
    for p in (0.05, 0.15):
        lengths = _run_lengths(
            lambda: BernoulliCusum(p0=0.05, p1=0.15, up=design.up, down=design.down, h=design.h),
            lambda g, p=p: bool(g.random() < p),
            runs,
            rng,
        )
        se = lengths.std(ddof=1) / math.sqrt(runs)
        assert (
            abs(lengths.mean() - bernoulli_cusum_arl(design.up, design.down, design.h, p)) < 3 * se
        )


def test_bernoulli_cusum_detects_an_artifact_rate_rise() -> None:
    design = calibrate_bernoulli_cusum(0.02, 0.06, arl0=50_000.0)
    in_control = bernoulli_cusum_arl(design.up, design.down, design.h, 0.02)
    out_of_control = bernoulli_cusum_arl(design.up, design.down, design.h, 0.06)
    assert in_control >= 50_000
    assert out_of_control < in_control / 50


def _expected_rate_bernoulli(design: BernoulliCusumDesign, reference: tuple[int, int]) -> float:
    n, events = reference
    post = stats.beta(events + 0.5, n - events + 0.5)
    p = np.linspace(post.ppf(1e-6), min(post.isf(1e-6), 0.999), 801)
    w = post.pdf(p)
    rates = np.array(
        [1 / bernoulli_cusum_arl(design.up, design.down, design.h, float(x)) for x in p]
    )
    return float(np.sum(w * rates) / np.sum(w))


def test_bernoulli_calibration_with_a_small_reference_reaches_its_target() -> None:
    """A performance stream with 20 misses in 60 labels (p0 = 0.336) and a budget of 10,000
    observations reaches its target: the chains of the safest rates are singular in floating
    point (NaN), which must not end the search as "out of reach"."""
    reference = (60, 20)
    p0, p1 = 20.5 / 61, 41 / 61
    design = calibrate_bernoulli_cusum_uncertain(p0, p1, 10_000.0, reference)
    assert _expected_rate_bernoulli(design, reference) <= 1 / 10_000 * 1.05
    assert design.h_llr < BERNOULLI_H_LLR_MAX


def test_cusum_calibration_with_a_small_reference_stays_numerically_sound() -> None:
    """reference_size 100 and a large budget ask the Nyström solve for a decision interval
    where 64 nodes do not resolve the kernel (the in-control ARL comes out negative there): the
    calibration still ends with a finite threshold on target, not "math domain error"."""
    h = calibrate_cusum_h(109_500.0, 0.25, reference_size=100)
    assert math.isfinite(h)
    rate = expected_false_alarm_rate(
        lambda mu, sigma: cusum_arl(h / sigma, 0.25 / sigma, mu / sigma, nodes=600), 100
    )
    assert 1 / rate == pytest.approx(109_500.0, rel=0.01)


def test_nystrom_solve_is_accurate_across_the_validated_range() -> None:
    for h in (30.0, 60.0, CUSUM_H_MAX):
        for shift in (0.3, 0.6):
            assert cusum_arl_one_sided(h, 0.25, shift) == pytest.approx(
                cusum_arl_one_sided(h, 0.25, shift, nodes=int(6 * h)), rel=1e-4
            )
        assert cusum_arl_one_sided(h, 0.25, 0.0) >= 1.0


def test_an_unreachable_target_is_a_calibration_error_with_a_plain_reason() -> None:
    with pytest.raises(CalibrationError, match="reference") as err:
        calibrate_cusum_h(1e7, 0.25, reference_size=30)
    assert err.value.achievable_arl0 is not None
    assert err.value.achievable_arl0 < 1e7
    with pytest.raises(CalibrationError, match="reference"):
        calibrate_bernoulli_cusum_uncertain(0.3, 0.32, 1e7, (30, 9))
