"""Two-sample tests of a window of records against the reference, and how much they can see.

A drift report (``phase4.monitor.surveillance.reports``) compares the records since an alert's
estimated change (the window, m values) with the stream's reference records (n values), one
feature at a time, with the tests evidently runs for its per-column verdicts
(``evidently.legacy.calculations.stattests``). They are computed again here so that the report
can show each test's statistic, not only its p-value, and say what the test could have seen:

- numeric: two-sample Kolmogorov–Smirnov, D = sup_x |F_ref(x) − F_win(x)| (``scipy.stats.
  ks_2samp``, called as evidently calls it: exact p-values for samples under 10,000);
- binary: two-proportion z-test with the pooled rate p̄, z = (p_win − p_ref) /
  √(p̄(1 − p̄)(1/n + 1/m)), p = 2(1 − Φ(|z|)) (evidently's ``z`` test);
- categorical: Pearson's χ² of the window's counts against those the reference's shares predict
  (evidently's ``chisquare``; a value never seen in the reference makes χ² infinite, p = 0).

Each rejects at p < 0.05, evidently's default per column, with no correction for the number of
features: per-column verdicts describe a window; phase4's detectors, calibrated to the
false-alarm budget, decide whether something changed.

**Why a window test may not reject when a sequential detector alarmed.** A test of m records
sees m records. A CUSUM accumulates the evidence of every record since the change and alarms
when the accumulated excess reaches its threshold, so it detects shifts that no single window of
the same records shows at 5% — and, when its estimate of the change's start is off, the window
the report takes holds fewer changed records than the detector weighed. How much the window test
could see is quantified by its power:

- **KS, against a shift of δ reference SD in normal scores** (the scale the numeric detectors
  work on, ``phase4.monitor.drift.reference``). The KS statistic depends on the data only through
  ranks, so its power against a normal-score shift is the same for every continuous feature:
  that of samples of sizes n and m from N(0, 1) and N(δ, 1). It is computed by simulation
  (``KS_DRAWS`` = 2,000 pairs of samples, fewer — never under 200 — when n + m exceeds 1,000, so
  that a report stays within seconds; a fixed seed, so the same report twice gives the same
  numbers; Monte Carlo standard error ≤ 1.1 points of power at 2,000 draws, ≤ 3.5 at 200), each
  draw rejecting when D
  exceeds the upper-α quantile of the one-sample Kolmogorov distribution at the effective size
  n·m/(n + m) — the two-sample null of Smirnov (1939), with scipy's exact Kolmogorov
  distribution (Simard & L'Ecuyer 2011), as the windowed KS detector (``detectors.ks``) uses it.
  For comparison, a two-sample comparison of means has power ≈ Φ(δ·√(n·m/(n + m)) − z₁₋α/₂)
  (the normal approximation, J. Cohen 1988, "Statistical Power Analysis for the Behavioral
  Sciences", 2nd ed., ch. 2); the KS test, which watches every quantile, needs a somewhat larger
  shift than that to reach the same power.
- **z-test, against a rate p₁ in the window when the reference's is p₀**: exact, the
  probability under Bin(n, p₀) × Bin(m, p₁) of the outcomes the test rejects.

The smallest shift (or rate) the test detects with 80% probability is found by bisection on the
same simulated samples (common random numbers make the simulated power monotone in δ).

A 0.5 SD shift is seen by a KS test of 40 window records against 500 reference records three
times in four (a comparison of means would see it 86% of the time), by one of 400 records
always; 40 records see 0.53 SD with 80% probability:

>>> round(ks_power(0.5, 500, 40), 2), round(mean_shift_power(0.5, 500, 40), 2)
(0.75, 0.86)
>>> round(ks_power(0.5, 500, 400), 2), round(ks_detectable_shift(500, 40), 2)
(1.0, 0.53)
>>> t = z_test([True] * 10 + [False] * 90, [True] * 9 + [False] * 11)
>>> t.test, round(t.statistic, 2), t.p_value < 0.05
('z', 3.91, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np
from scipy import stats

ALPHA = 0.05  # evidently's default threshold of a p-value test per column
POWER_TARGET = 0.8
KS_DRAWS = 2000
KS_CELLS = 2_000_000  # draws x (n + m) per simulated test: fewer draws for large samples
SEED = 20_160_817
TestName = Literal["ks", "z", "chisquare"]
TEST_NAMES: dict[str, str] = {
    "ks": "two-sample Kolmogorov–Smirnov test",
    "z": "two-proportion z-test",
    "chisquare": "Pearson's chi-square test",
}
STATISTIC_NAMES: dict[str, str] = {"ks": "D", "z": "z", "chisquare": "χ²"}


@dataclass(frozen=True, slots=True)
class WindowTest:
    """One feature's two-sample test: window against reference."""

    test: TestName
    statistic: float
    p_value: float
    n_reference: int
    n_window: int
    alpha: float = ALPHA

    @property
    def name(self) -> str:
        return TEST_NAMES[self.test]

    @property
    def statistic_name(self) -> str:
        return STATISTIC_NAMES[self.test]

    @property
    def rejects(self) -> bool:
        return self.p_value < self.alpha

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "name": self.name,
            "statistic": _finite_or_none(self.statistic),
            "rejects": self.rejects,
        }


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def ks_test(reference: Sequence[float], window: Sequence[float]) -> WindowTest:
    """The two-sample KS test, as evidently's ``ks`` runs it."""
    result = stats.ks_2samp(np.asarray(reference, float), np.asarray(window, float))
    return WindowTest(
        "ks", float(result.statistic), float(result.pvalue), len(reference), len(window)
    )


def _z_values(x: Any, n: int, y: Any, m: int) -> Any:
    """The pooled two-proportion z of x events in n (reference) and y in m (window); 0 where
    both samples hold a single value (no variation: nothing to test)."""
    pooled = (x + y) / (n + m)
    var = pooled * (1 - pooled) * (1 / n + 1 / m)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (y / m - x / n) / np.sqrt(var)
    return np.where(var > 0, z, 0.0)


def _two_sided(z: Any) -> Any:
    return 2 * stats.norm.sf(np.abs(z))


def z_test(reference: Sequence[bool], window: Sequence[bool]) -> WindowTest:
    """The two-proportion z-test, as evidently's ``z`` runs it; z > 0 when the window's rate is
    the higher (evidently reports the p-value only)."""
    n, m = len(reference), len(window)
    x, y = sum(bool(v) for v in reference), sum(bool(v) for v in window)
    z = float(_z_values(np.float64(x), n, np.float64(y), m))
    return WindowTest("z", z, float(_two_sided(z)), n, m)


def chi_square_test(reference: Sequence[str], window: Sequence[str]) -> WindowTest:
    """Pearson's χ² of the window's category counts against the reference's shares, as
    evidently's ``chisquare`` runs it (a category the reference never had: χ² = ∞, p = 0)."""
    n, m = len(reference), len(window)
    keys = sorted(set(reference) | set(window))
    ref = {k: 0 for k in keys}
    cur = {k: 0 for k in keys}
    for v in reference:
        ref[v] += 1
    for v in window:
        cur[v] += 1
    expected = np.array([ref[k] * m / n for k in keys])
    observed = np.array([cur[k] for k in keys], dtype=float)
    if np.any((expected == 0) & (observed > 0)):
        return WindowTest("chisquare", math.inf, 0.0, n, m)
    seen = expected > 0
    if seen.sum() < 2:
        return WindowTest("chisquare", 0.0, 1.0, n, m)
    chi2 = float(((observed[seen] - expected[seen]) ** 2 / expected[seen]).sum())
    return WindowTest("chisquare", chi2, float(stats.chi2.sf(chi2, int(seen.sum()) - 1)), n, m)


# --- power -----------------------------------------------------------------------------------


def ks_critical_d(n: int, m: int, alpha: float = ALPHA) -> float:
    """The distance D the two-sample KS test needs to reject at ``alpha``: the upper-α quantile
    of the Kolmogorov distribution at the effective size n·m/(n + m) (Smirnov 1939)."""
    effective = max(1, round(n * m / (n + m)))
    return float(stats.kstwo.isf(alpha, effective))


@lru_cache(maxsize=4)
def _ks_samples(n: int, m: int, draws: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((draws, n)), rng.standard_normal((draws, m))


def _ks_draws(n: int, m: int) -> int:
    return int(max(200, min(KS_DRAWS, KS_CELLS // (n + m))))


def _ks_distances(reference: np.ndarray, window: np.ndarray) -> np.ndarray:
    """D of each row pair (reference row i against window row i)."""
    n, m = reference.shape[1], window.shape[1]
    pooled = np.concatenate([reference, window], axis=1)
    order = np.argsort(pooled, axis=1, kind="stable")
    steps = np.where(order < n, 1.0 / n, -1.0 / m)
    return np.abs(np.cumsum(steps, axis=1)).max(axis=1)


def _ks_power_fn(n: int, m: int, alpha: float) -> Callable[[float], float]:
    reference, window = _ks_samples(n, m, _ks_draws(n, m), SEED)
    critical = ks_critical_d(n, m, alpha)

    def power(shift: float) -> float:
        return float((_ks_distances(reference, window + abs(shift)) > critical).mean())

    return power


def ks_power(shift: float, n: int, m: int, alpha: float = ALPHA) -> float:
    """Probability that the KS test of m window values against n reference values rejects at
    ``alpha`` when the window's normal scores are shifted by ``shift`` reference SD."""
    if n < 1 or m < 1:
        return 0.0
    return _ks_power_fn(n, m, alpha)(shift)


def _bisect(power: Callable[[float], float], lo: float, hi: float, target: float) -> float:
    for _ in range(30):
        mid = (lo + hi) / 2
        if power(mid) >= target:
            hi = mid
        else:
            lo = mid
        if hi - lo < 1e-3:
            break
    return hi


def ks_detectable_shift(n: int, m: int, power: float = POWER_TARGET, alpha: float = ALPHA) -> float:
    """The smallest normal-score shift (reference SD) the KS test of m window values against n
    reference values detects with probability ``power``."""
    fn = _ks_power_fn(n, m, alpha)
    hi = 1.0
    while fn(hi) < power and hi < 64:
        hi *= 2
    return _bisect(fn, 0.0, hi, power)


def mean_shift_power(shift: float, n: int, m: int, alpha: float = ALPHA) -> float:
    """The normal approximation to a two-sample comparison of means (Cohen 1988): the power
    against a shift of ``shift`` SD, for comparison with the KS test's."""
    effect = abs(shift) * math.sqrt(n * m / (n + m))
    z = stats.norm.isf(alpha / 2)
    return float(stats.norm.cdf(effect - z) + stats.norm.cdf(-effect - z))


def _binomial_support(n: int, p: float) -> tuple[np.ndarray, np.ndarray]:
    lo = int(stats.binom.ppf(1e-12, n, p)) if 0 < p < 1 else round(n * p)
    hi = int(stats.binom.isf(1e-12, n, p)) if 0 < p < 1 else round(n * p)
    k = np.arange(max(0, lo - 1), min(n, hi + 1) + 1)
    return k, stats.binom.pmf(k, n, p)


def z_power(p0: float, p1: float, n: int, m: int, alpha: float = ALPHA) -> float:
    """Exact probability that the z-test of m window records against n reference records
    rejects at ``alpha`` when the rates are p0 (reference) and p1 (window)."""
    if n < 1 or m < 1:
        return 0.0
    x, px = _binomial_support(n, min(max(p0, 0.0), 1.0))
    y, py = _binomial_support(m, min(max(p1, 0.0), 1.0))
    p = _two_sided(_z_values(x[:, None].astype(float), n, y[None, :].astype(float), m))
    return float((px[:, None] * py[None, :] * (p < alpha)).sum())


def z_detectable_rate(
    p0: float, n: int, m: int, *, up: bool = True, power: float = POWER_TARGET, alpha: float = ALPHA
) -> float | None:
    """The window rate closest to p0 (above it when ``up``) that the z-test detects with
    probability ``power``; None when no rate on that side is detected that often."""
    edge = 1.0 if up else 0.0
    if z_power(p0, edge, n, m, alpha) < power:
        return None
    lo, hi = 0.0, abs(edge - p0)

    def fn(d: float) -> float:
        return z_power(p0, p0 + d if up else p0 - d, n, m, alpha)

    d = _bisect(fn, lo, hi, power)
    return p0 + d if up else p0 - d
