"""The drift report's window tests give evidently's p-values, and their power is what it says:
the level at no shift, monotone in the shift, below a comparison of means (the KS test is the
less efficient against a pure shift), exact for the z-test, and the smallest detectable shift
detected 80% of the time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from phase4.monitor.drift.window_tests import (
    ALPHA,
    chi_square_test,
    ks_detectable_shift,
    ks_power,
    ks_test,
    mean_shift_power,
    z_detectable_rate,
    z_power,
    z_test,
)


def test_the_p_values_are_evidentlys() -> None:
    from evidently.legacy.calculations.stattests.chisquare_stattest import _chi_stat_test
    from evidently.legacy.calculations.stattests.ks_stattest import _ks_stat_test
    from evidently.legacy.calculations.stattests.z_stattest import _z_stat_test

    g = np.random.default_rng(3)
    ref, win = g.normal(0, 1, 400), g.normal(0.3, 1, 60)
    assert ks_test(ref, win).p_value == pytest.approx(
        _ks_stat_test(pd.Series(ref), pd.Series(win), "num", ALPHA)[0], rel=1e-12
    )
    b_ref, b_win = list(g.random(400) < 0.2), list(g.random(60) < 0.35)
    assert z_test(b_ref, b_win).p_value == pytest.approx(
        _z_stat_test(pd.Series(b_ref), pd.Series(b_win), "cat", ALPHA)[0], rel=1e-9
    )
    c_ref = list(g.choice(["OSEM", "BSREM", "PSF"], 400, p=[0.6, 0.3, 0.1]))
    c_win = list(g.choice(["OSEM", "BSREM", "PSF"], 60, p=[0.4, 0.4, 0.2]))
    assert chi_square_test(c_ref, c_win).p_value == pytest.approx(
        _chi_stat_test(pd.Series(c_ref), pd.Series(c_win), "cat", ALPHA)[0], rel=1e-9
    )
    new = chi_square_test(c_ref, [*c_win, "Q.Clear"])
    assert new.p_value == 0.0 and new.rejects and new.to_dict()["statistic"] is None


def test_the_z_statistic_is_signed_by_the_windows_rate() -> None:
    up = z_test([True] * 10 + [False] * 90, [True] * 9 + [False] * 11)
    down = z_test([True] * 10 + [False] * 90, [False] * 20)
    assert up.statistic > 0 > down.statistic
    flat = z_test([False] * 100, [False] * 20)
    assert (flat.statistic, flat.p_value, flat.rejects) == (0.0, 1.0, False)


@pytest.mark.parametrize(("n", "m"), [(500, 34), (200, 185), (1000, 60)])
def test_ks_power_holds_its_level_grows_with_the_shift_and_trails_a_means_test(
    n: int, m: int
) -> None:
    assert ks_power(0.0, n, m) <= ALPHA + 0.02  # Smirnov's effective-size null: about the level
    powers = [ks_power(d, n, m) for d in (0.1, 0.2, 0.4, 0.8, 1.6)]
    assert powers == sorted(powers) and powers[-1] > 0.99
    for d in (0.2, 0.4, 0.6):
        assert ks_power(d, n, m) <= mean_shift_power(d, n, m) + 0.03


def test_ks_power_matches_a_simulation_of_scipys_test() -> None:
    """The power's simulation decides as scipy's exact test does, within Monte Carlo error."""
    g = np.random.default_rng(9)
    n, m, shift = 300, 40, 0.5
    rejects = [
        stats.ks_2samp(g.standard_normal(n), g.standard_normal(m) + shift).pvalue < ALPHA
        for _ in range(600)
    ]
    assert ks_power(shift, n, m) == pytest.approx(np.mean(rejects), abs=0.06)


def test_the_smallest_detectable_shift_is_detected_80_percent_of_the_time() -> None:
    d = ks_detectable_shift(500, 50)
    assert ks_power(d, 500, 50) >= 0.8 > ks_power(d - 0.02, 500, 50)
    assert ks_detectable_shift(500, 400) < d < ks_detectable_shift(500, 20)


def test_z_power_is_exact() -> None:
    g = np.random.default_rng(4)
    n, m, p0, p1 = 300, 50, 0.1, 0.25
    x, y = g.binomial(n, p0, 20_000), g.binomial(m, p1, 20_000)
    pooled = (x + y) / (n + m)
    z = (y / m - x / n) / np.sqrt(pooled * (1 - pooled) * (1 / n + 1 / m))
    simulated = np.mean(2 * stats.norm.sf(np.abs(z)) < ALPHA)
    assert z_power(p0, p1, n, m) == pytest.approx(simulated, abs=0.01)
    assert z_power(p0, p0, n, m) < 0.07
    rate = z_detectable_rate(p0, n, m)
    assert rate is not None and z_power(p0, rate, n, m) >= 0.8 > z_power(p0, rate - 0.01, n, m)
    assert z_detectable_rate(0.02, 300, 3, up=False) is None  # 3 records cannot show a fall
