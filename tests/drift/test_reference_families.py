"""The normal scores' tails, family by family, against scipy's exact distribution functions.

A reference's normal score passes c exactly when the value passes the reference's quantile at
Φ(c) (``NumericReference.quantile``, the inverse of the scores); the true probability of that is
the family's own CDF there (scipy's, an implementation independent of phase4's), so the rate
at which the scores pass c is known without sampling fresh values. Averaged over references
(the budget is promised on average over them) it should be nominal, Φ(−c) on each side.

Measured (40 references of 500 each, seed 2026; the true rate over the nominal at c = 2, 2.5,
lower side / upper side):

| family | before (commit 5c4e952) | after |
|---|---|---|
| exponential | 0.03, 0.00 / 0.91, 0.66 | 1.14, 1.19 / 0.98, 0.98 |
| bimodal (±2, sd 1) | 0.65, 0.43 / 0.66, 0.45 | 0.91, 0.94 / 0.93, 0.96 |
| Student t₃ | 0.96, 1.47 / 0.96, 1.45 | 1.06, 1.26 / 1.04, 1.26 |
| lognormal (σ_log 0.5) | 0.91, 0.55 / 0.96, 0.99 | 1.00, 1.03 / 1.02, 1.10 |
| normal | 0.95, 0.92 / 0.97, 0.96 | 1.02, 1.17 / 1.03, 1.11 |

Before, Silverman's density bandwidth oversmoothed each mode of a bimodal feature, the kernel
CDF leaked mass past the exponential's hard edge at 0 (its scores never passed −2), and the
Gaussian tail continued beyond the 5th/95th percentiles was too heavy a t₃'s scores' tail.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats
from scipy.special import ndtr, ndtri

from phase4.monitor.drift.reference import NumericReference

FAMILIES = {
    "normal": (lambda g, n: g.normal(10.0, 2.0, n), stats.norm(10.0, 2.0).cdf),
    "lognormal": (lambda g, n: g.lognormal(1.0, 0.5, n), stats.lognorm(0.5, scale=np.e).cdf),
    "exponential": (lambda g, n: g.exponential(1.0, n), stats.expon.cdf),
    "bimodal": (
        lambda g, n: g.normal(0.0, 1.0, n) + np.where(g.random(n) < 0.5, -2.0, 2.0),
        lambda x: 0.5 * stats.norm.cdf(x - 2.0) + 0.5 * stats.norm.cdf(x + 2.0),
    ),
    "student_t3": (lambda g, n: g.standard_t(3, n), stats.t(3).cdf),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_scores_tails_are_nominal_against_the_exact_distribution(family: str) -> None:
    draw, cdf = FAMILIES[family]
    g = np.random.default_rng(2026)
    levels = (2.0, 2.5)
    lower, upper = np.zeros(len(levels)), np.zeros(len(levels))
    references = 40
    refs = []
    for _ in range(references):
        ref = NumericReference.fit(draw(g, 500))
        refs.append(ref)
        for j, c in enumerate(levels):
            nominal = float(ndtr(-c))
            lower[j] += float(cdf(ref.quantile(nominal))) / nominal
            upper[j] += (1.0 - float(cdf(ref.quantile(1.0 - nominal)))) / nominal
    lower, upper = lower / references, upper / references
    assert np.all((lower >= 0.8) & (lower <= 1.35)), (family, lower)
    assert np.all((upper >= 0.8) & (upper <= 1.35)), (family, upper)
    # a hard edge is the exponential's 0, and only that
    edges = [(r.lower_edge, r.upper_edge) for r in refs]
    if family == "exponential":
        assert all(edges_ == (True, False) for edges_ in edges)
    else:
        assert not any(lo or hi for lo, hi in edges), family


def test_an_edge_scores_below_it_at_the_cap_and_inverts() -> None:
    x = np.random.default_rng(5).exponential(1.0, 500)
    ref = NumericReference.fit(x)
    assert ref.lower_edge and not ref.upper_edge
    assert ref.z(-1.0) == -ref.z_cap  # below the edge: beyond every reference value
    assert ref.z(0.0) == -ref.z_cap
    # between the edge and the next knot the CDF is interpolated linearly, and the quantile
    # is its inverse
    for p in (0.0015, 0.005, 0.01, 0.02, 0.05, 0.5, 0.95):
        assert ref.z(ref.quantile(p)) == pytest.approx(float(ndtri(p)), abs=1e-6), p
    # scores increase through the edge's interval
    grid = np.linspace(float(x.min()), float(np.quantile(x, 0.1)), 200)
    zs = [ref.z(float(v)) for v in grid]
    assert bool(np.all(np.diff(zs) >= 0))
    # the edge is saved with the reference and restored; a reference saved without the
    # fields (before edges were detected) has none and scores as before
    saved = json.loads(json.dumps(ref.to_dict()))
    assert saved["lower_edge"] is True and "upper_edge" not in saved
    assert NumericReference.from_dict(saved) == ref
    normal = NumericReference.fit(np.random.default_rng(6).normal(0.0, 1.0, 500))
    assert "lower_edge" not in normal.to_dict()
    old = {k: v for k, v in ref.to_dict().items() if k != "lower_edge"}
    assert not NumericReference.from_dict(old).lower_edge


def test_an_upper_edge_mirrors_a_lower_one() -> None:
    x = np.random.default_rng(7).exponential(1.0, 500)
    low = NumericReference.fit(x)
    high = NumericReference.fit(-x)
    assert high.upper_edge and not high.lower_edge
    for v in (0.01, 0.05, 0.3, 1.0, 3.0):
        assert high.z(-v) == pytest.approx(-low.z(v), abs=0.05), v
