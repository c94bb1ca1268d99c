"""The spread detector: its run lengths, computed by product integration, against a published
table and against an independent simulation of the chart."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from phase4.monitor.drift.arl import (
    ScaleCusumDesign,
    cusum_arl_general,
    cusum_arl_one_sided,
    scale_cusum_arl,
)
from phase4.monitor.drift.detectors import SpreadCusum
from phase4.monitor.drift.detectors.spread import UP_SHARE, score_cap


def simulate_run_lengths(chart: SpreadCusum, sigma: float, runs: int, seed: int) -> np.ndarray:
    """Run lengths of ``chart``'s recursion on N(0, sigma²) scores, written independently of
    the detector (all runs advanced together, one observation at a time)."""
    r2 = chart.ratio**2
    a_up, k_up = (1 - 1 / r2) / 2, 2 * math.log(chart.ratio) / (1 - 1 / r2)
    a_dn, k_dn = (r2 - 1) / 2 * chart.down_scale, 2 * math.log(chart.ratio) / (r2 - 1)
    cap2 = math.inf if chart.z_cap is None else chart.z_cap**2
    rng = np.random.default_rng(seed)
    up = np.zeros(runs)
    down = np.zeros(runs)
    length = np.zeros(runs, dtype=np.int64)
    active = np.arange(runs)
    t = 0
    while active.size:
        t += 1
        y = np.minimum(rng.normal(0.0, sigma, active.size) ** 2, cap2)
        u = np.maximum(0.0, up[active] + a_up * (y - k_up))
        d = np.maximum(0.0, down[active] + a_dn * (k_dn - y))
        up[active], down[active] = u, d
        done = (u > chart.h) | (d > chart.h)
        length[active[done]] = t
        active = active[~done]
    return length


def test_product_integration_reproduces_lucas_and_crosier() -> None:
    # The one-sided normal CUSUM (h = 4, k = 0.5; Lucas & Crosier 1982, Table 1: two-sided
    # 167.7 in control, i.e. one-sided 335.4; 8.38 at a 1σ shift, where the lower side's
    # share is negligible) from F alone.
    for shift, published in ((0.0, 335.4), (1.0, 8.38)):
        arl = cusum_arl_general(lambda x, s=shift: stats.norm.cdf(x + 0.5 - s), 4.0)
        assert arl == pytest.approx(published, rel=0.005)
        assert arl == pytest.approx(cusum_arl_one_sided(4.0, 0.5, shift), rel=0.002)


def test_the_detector_runs_the_recursion_that_is_simulated() -> None:
    chart = SpreadCusum.calibrated(arl0=300.0, reference_size=500)
    values = np.random.default_rng(7).normal(0.0, 1.3, 3000)
    fired = [i for i, v in enumerate(values) if chart.update(float(v))]
    replica = SpreadCusum.calibrated(arl0=300.0, reference_size=500)
    gaps = np.diff([-1, *fired])
    assert len(fired) >= 10
    # the same alarms from the simulation's recursion, fed the same values piecewise
    start = 0
    for gap in gaps:
        segment = values[start : start + gap]
        assert [i for i, v in enumerate(segment) if replica.update(float(v))] == [gap - 1]
        start += gap


@pytest.mark.parametrize(("sigma", "runs"), [(1.0, 40_000), (1.5, 40_000)])
def test_run_length_matches_simulation(sigma: float, runs: int) -> None:
    """In control and at the ×1.5 change it is designed for: the computed ARL of the calibrated
    chart (scores capped at the 500-value reference's ±3.09) within 2% of 40,000 simulated
    runs (standard error 0.5%)."""
    chart = SpreadCusum.calibrated(arl0=400.0, reference_size=500)
    design = ScaleCusumDesign(chart.ratio, chart.z_cap)
    computed = scale_cusum_arl(design, chart.h, chart.h / chart.down_scale, sigma=sigma)
    lengths = simulate_run_lengths(chart, sigma, runs, seed=11 if sigma == 1.0 else 12)
    simulated = lengths.mean()
    se = lengths.std() / math.sqrt(runs)
    assert se < 0.006 * simulated
    assert computed == pytest.approx(simulated, rel=0.02), (computed, simulated, se)
    if sigma == 1.0:  # a reference known exactly: the expected-rate calibration is longer
        assert computed > 400.0
    else:
        assert computed < 40.0


def test_calibration_splits_the_rate_between_the_sides() -> None:
    chart = SpreadCusum.calibrated(arl0=2_000.0)  # reference known exactly, uncapped
    design = ScaleCusumDesign(chart.ratio, None)
    up = scale_cusum_arl(design, chart.h, 0.0)
    down = scale_cusum_arl(design, 0.0, chart.h / chart.down_scale)
    assert up == pytest.approx(2_000.0 / UP_SHARE, rel=0.01)  # 80% of the rate: wider
    assert down == pytest.approx(2_000.0 / (1 - UP_SHARE), rel=0.01)
    assert scale_cusum_arl(design, chart.h, chart.h / chart.down_scale) == pytest.approx(
        2_000.0, rel=0.01
    )
    assert score_cap(500) == pytest.approx(3.0902, abs=1e-4)
