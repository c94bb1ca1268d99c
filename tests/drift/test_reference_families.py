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
| normal | 0.95, 0.92 / 0.97, 0.96 | 1.02, 1.17 / 1.03, 1.11 |
| lognormal (σ_log 0.5) | 0.91, 0.55 / 0.96, 0.99 | 1.00, 1.03 / 1.02, 1.10 |
| bimodal (±2, sd 1) | 0.65, 0.43 / 0.66, 0.45 | 0.91, 0.94 / 0.93, 0.96 |
| Student t₃ | 0.96, 1.47 / 0.96, 1.45 | 1.06, 1.26 / 1.04, 1.26 |
| exponential | 0.03, 0.00 / 0.91, 0.66 | 0.53, 0.00 / 1.02, 1.05 |
| gamma (shape 0.5) | 0.00, 0.00 / 0.76, 0.26 | 0.00, 0.00 / 1.03, 1.10 |

Before, Silverman's density bandwidth oversmoothed each mode of a bimodal feature and the
Gaussian tail continued beyond the 5th/95th percentiles was too light for it (and for the
lognormal's lower side) and too heavy for a t₃. Not fixed: the side of a feature that ends at
a hard edge (the exponential's 0), where the kernel CDF leaks mass past the edge and values
near it score as less rare than they are (under-spending, i.e. slower, not breaking the
budget). Reflecting the kernel CDF at an edge the data show fixed the exponential (1.14, 1.19)
but made the scores of a density that is unbounded at its edge (gamma of shape < 1) far too
extreme: 2.79 and 5.30 times the nominal at shape 0.5, whose streams spent 5 times their
budget (docs/BENCHMARKS.md). The gamma row guards that side: whatever is done at an edge
must not score such a feature as rarer than it is.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.special import ndtr

from phase4.monitor.drift.reference import NumericReference

FAMILIES = {
    "normal": (lambda g, n: g.normal(10.0, 2.0, n), stats.norm(10.0, 2.0).cdf),
    "lognormal": (lambda g, n: g.lognormal(1.0, 0.5, n), stats.lognorm(0.5, scale=np.e).cdf),
    "bimodal": (
        lambda g, n: g.normal(0.0, 1.0, n) + np.where(g.random(n) < 0.5, -2.0, 2.0),
        lambda x: 0.5 * stats.norm.cdf(x - 2.0) + 0.5 * stats.norm.cdf(x + 2.0),
    ),
    "student_t3": (lambda g, n: g.standard_t(3, n), stats.t(3).cdf),
    "exponential": (lambda g, n: g.exponential(1.0, n), stats.expon.cdf),
    "gamma_0.5": (lambda g, n: g.gamma(0.5, 1.0, n), stats.gamma(0.5).cdf),
}
# the sides that end at a hard edge: their tail is too light (see the module), never too heavy
EDGES = {"exponential": "lower", "gamma_0.5": "lower"}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_scores_tails_are_nominal_against_the_exact_distribution(family: str) -> None:
    draw, cdf = FAMILIES[family]
    g = np.random.default_rng(2026)
    levels = (2.0, 2.5)
    lower, upper = np.zeros(len(levels)), np.zeros(len(levels))
    references = 40
    for _ in range(references):
        ref = NumericReference.fit(draw(g, 500))
        for j, c in enumerate(levels):
            nominal = float(ndtr(-c))
            lower[j] += float(cdf(ref.quantile(nominal))) / nominal
            upper[j] += (1.0 - float(cdf(ref.quantile(1.0 - nominal)))) / nominal
    lower, upper = lower / references, upper / references
    for side, rates in (("lower", lower), ("upper", upper)):
        assert np.all(rates <= 1.35), (family, side, rates)
        if EDGES.get(family) != side:
            assert np.all(rates >= 0.8), (family, side, rates)
