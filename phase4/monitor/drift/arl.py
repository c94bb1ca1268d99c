"""Average run lengths (ARL) of control charts, computed numerically, and calibration to a target.

- Tabular CUSUM on N(δ, 1) observations: Page's integral equation for the ARL of the one-sided
  chart (E. S. Page 1954, "Continuous inspection schemes", Biometrika 41:100–115), solved by the
  Nyström method with Gauss–Legendre quadrature (A. L. Goel & S. M. Wu 1971, Technometrics
  13:221–230; L. C. Vance 1986, J. Quality Technology 18:189–193). Two one-sided charts combine
  as 1/ARL = 1/ARL⁺ + 1/ARL⁻, as J. M. Lucas & R. B. Crosier (1982, Technometrics 24:199–205)
  combine them for their Table 1, which this reproduces within 0.5%.
- EWMA on N(δ, 1): the Markov chain approximation of J. M. Lucas & M. S. Saccucci (1990,
  Technometrics 32:1–12), the method of D. Brook & D. A. Evans (1972, Biometrika 59:539–549).
- Bernoulli CUSUM (M. R. Reynolds & Z. G. Stoumbos 1999, J. Quality Technology 31:87–108): the
  chart on integer-scaled log-likelihood-ratio increments is itself a finite Markov chain
  (Brook & Evans 1972), so its ARL is exact for the scaled chart.

>>> round(cusum_arl(4.0, k=0.5), 1), round(cusum_arl(4.0, k=0.5, shift=1.0), 2)  # L&C: 168, 8.38
(167.7, 8.38)
>>> round(ewma_arl(2.814, 0.10))  # Lucas & Saccucci: 500
499

Calibration inverts these with a bracketing root finder: a threshold is never a guessed constant.
It searches only the range where the numerical methods are validated (``CUSUM_H_MAX``,
``EWMA_L_MAX``, ``BERNOULLI_H_LLR_MAX``); a target beyond it raises :class:`CalibrationError`
with a plain reason and the largest ARL0 the range reaches, never a bare numerical failure.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import optimize, sparse, stats
from scipy.sparse import linalg as splinalg
from threadpoolctl import threadpool_limits

# Validated ranges. Beyond them a small reference's own error, not the threshold, sets the
# false-alarm rate (the chart is then also too slow to be worth running): the remedy is a larger
# reference, and calibration says so instead of searching on.
CUSUM_H_MAX = 100.0  # decision interval, in in-control standard deviations
EWMA_L_MAX = 12.0  # limit multiplier
SCALE_CUSUM_H_MAX = 40.0  # scale CUSUM threshold, in nats (e^40 is far past ARL_CEILING)
BERNOULLI_H_LLR_MAX = 100.0  # threshold, in nats of log-likelihood ratio
# An ARL beyond this is infinite for every budget: the linear solve that computes it is then
# ill-conditioned (a negative or NaN "ARL" from a singular system), and its exact value is moot.
ARL_CEILING = 1e12


class CalibrationError(ValueError):
    """No threshold in the validated range keeps the false-alarm rate within the target.

    ``achievable_arl0`` is the largest (expected) in-control ARL the range reaches, when known.
    """

    def __init__(self, reason: str, *, arl0: float, achievable_arl0: float | None = None):
        super().__init__(reason)
        self.arl0 = arl0
        self.achievable_arl0 = achievable_arl0


def _sound(arl: float) -> float:
    """The ARL, or infinity where the solve has lost it to ill-conditioning (see ARL_CEILING)."""
    return arl if math.isfinite(arl) and 1.0 <= arl <= ARL_CEILING else math.inf


# ---------------------------------------------------------------------------------------------
# Tabular CUSUM


@lru_cache(maxsize=64)
def _gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(n)


def cusum_arl_one_sided(h: float, k: float, shift: float = 0.0, nodes: int = 64) -> float:
    """ARL of the upper chart S_t = max(0, S_{t-1} + x_t - k), alarm when S_t > h, S_0 = 0,
    with x_t ~ N(δ, 1), δ = ``shift``.

    L(z), the ARL from S = z, solves Page's (1954) integral equation

        L(z) = 1 + L(0)·Φ(k − z − δ) + ∫₀ʰ L(y)·φ(y − z + k − δ) dy,    0 ≤ z ≤ h

    (one step, then: back to 0 with probability Φ(k − z − δ), to y in (0, h] with density
    φ(y − z + k − δ), beyond h: the alarm), and the ARL is L(0). Nyström (Goel & Wu 1971;
    Vance 1986): the integral becomes the Gauss–Legendre sum Σ_j w_j·L(y_j)·φ(y_j − z + k − δ)
    over nodes y_j in [0, h], and the equation at z = 0 and at each node is a linear system
    for L(0) and the L(y_j).

    ``nodes`` is a minimum: the kernel is one standard deviation wide, so the rule uses at least
    2·h nodes (64 nodes over h = 60 misplace the ARL at a shift of 0.3 by 4%). An ARL beyond
    ``ARL_CEILING`` is returned as infinity.
    """
    if h <= 0:
        return 1.0
    nodes = max(nodes, math.ceil(2 * h))
    u, w = _gauss_legendre(nodes)
    y = h / 2 * (u + 1)  # nodes mapped to [0, h]
    wy = w * h / 2
    mean = shift - k
    # Unknowns: L at the quadrature nodes, and L(0).
    points = np.concatenate(([0.0], y))
    # Density of moving from z to y: φ(y - z - mean); mass at 0: Φ(-z - mean).
    dens = stats.norm.pdf(y[None, :] - points[:, None] - mean) * wy[None, :]
    at_zero = stats.norm.cdf(-points - mean)
    n = points.size
    a = np.eye(n)
    a[:, 0] -= at_zero
    a[:, 1:] -= dens
    sol = np.linalg.solve(a, np.ones(n))
    return _sound(float(sol[0]))


def cusum_arl(h: float, k: float = 0.5, shift: float = 0.0, nodes: int = 64) -> float:
    """ARL of the two-sided tabular CUSUM (two one-sided charts, same h and k):
    1/ARL = 1/ARL⁺(δ) + 1/ARL⁻(δ) with ARL⁻(δ) = ARL⁺(−δ), as Lucas & Crosier (1982) combine
    them (it neglects the runs on which both sums are positive at once)."""
    up = cusum_arl_one_sided(h, k, shift, nodes)
    down = cusum_arl_one_sided(h, k, -shift, nodes)
    rate = 1.0 / up + 1.0 / down
    return 1.0 / rate if rate > 0 else math.inf


def expected_false_alarm_rate(
    arl_at: Callable[[float, float], float],
    reference_size: int | None,
    mean_nodes: int = 7,
    scale_nodes: int = 3,
) -> float:
    """E[1/ARL] over the errors of a reference estimated from ``reference_size`` in-control
    observations: the standardised data are then N(ε, σ²) rather than N(0, 1), with
    ε ~ N(0, 1/n) and log σ ~ N(0, 1/(2n)) (the large-sample distributions of a mean and of a
    log standard deviation), integrated by Gauss–Hermite quadrature over both.
    ``arl_at(shift, sigma)`` gives the ARL for data N(shift, sigma²). With n = None the
    reference is known exactly.

    A reference estimated from a finite sample shortens the in-control run length (L. A. Jones,
    C. W. Champ & S. E. Rigdon 2004, "The run length distribution of the CUSUM with estimated
    parameters", J. Quality Technology 36:95–108); calibrating to this expectation keeps the
    false-alarm *rate* on budget.
    """
    if reference_size is None:
        return 1.0 / arl_at(0.0, 1.0)
    xm, wm = np.polynomial.hermite_e.hermegauss(mean_nodes)
    xs, ws = np.polynomial.hermite_e.hermegauss(scale_nodes)
    sd_mean = 1.0 / math.sqrt(reference_size)
    sd_log_scale = 1.0 / math.sqrt(2 * reference_size)
    total = 0.0
    for eps, w_eps in zip(xm * sd_mean, wm, strict=True):
        for log_sigma, w_sigma in zip(xs * sd_log_scale, ws, strict=True):
            total += w_eps * w_sigma / arl_at(float(eps), math.exp(float(log_sigma)))
    return float(total / (wm.sum() * ws.sum()))


def calibrate_cusum_h(
    arl0: float, k: float = 0.5, reference_size: int | None = None, nodes: int = 64
) -> float:
    """The decision interval h whose two-sided in-control false-alarm rate is 1/arl0."""
    if arl0 <= 1:
        raise ValueError(f"arl0 must exceed 1 (got {arl0})")

    def gap(h: float) -> float:
        # Data N(μ, σ²) under a chart (h, k) behave as N(μ/σ, 1) under (h/σ, k/σ).
        rate = expected_false_alarm_rate(
            lambda mu, sigma: cusum_arl(h / sigma, k / sigma, mu / sigma, nodes), reference_size
        )
        return _log_gap(rate, arl0)

    return _bracketed_root(
        gap, 0.05, 1.0, CUSUM_H_MAX, arl0, "CUSUM decision interval h", reference_size
    )


def _log_gap(rate: float, arl0: float) -> float:
    """log(ARL0 reached / ARL0 wanted); a rate of 0 (every ARL beyond the ceiling) is a
    large positive gap, not a domain error."""
    if not rate > 0:
        return math.log(ARL_CEILING) - math.log(arl0)
    return math.log(1.0 / rate) - math.log(arl0)


def _out_of_reach(
    what: str, limit: float, arl0: float, achievable: float, reference_size: int | None
) -> CalibrationError:
    source = (
        f"a reference of {reference_size} observations"
        if reference_size is not None
        else "the reference"
    )
    return CalibrationError(
        f"the false-alarm budget asks for an in-control ARL of {arl0:,.0f} observations, but "
        f"with {source} even the largest {what} in the validated range ({limit:g}) reaches only "
        f"{achievable:,.0f}: the reference's own estimation error sets the false-alarm rate. "
        "A larger reference is needed.",
        arl0=arl0,
        achievable_arl0=achievable,
    )


def _bracketed_root(
    gap: Callable[[float], float],
    lo: float,
    hi: float,
    limit: float,
    arl0: float,
    what: str,
    reference_size: int | None,
    xtol: float = 1e-5,
) -> float:
    """Root of an increasing ``gap`` (log ARL0 reached - log ARL0 wanted) in (0, ``limit``]:
    widen ``hi`` until the sign changes, then Brent; :class:`CalibrationError` when even
    ``limit`` falls short.

    BLAS is held to one thread: the solves are small, and a threaded BLAS on a busy machine
    spends more time contending for cores than solving (4x slower measured here).
    """
    with threadpool_limits(limits=1, user_api="blas"):
        while (g := gap(hi)) < 0:
            if hi >= limit:
                raise _out_of_reach(what, limit, arl0, arl0 * math.exp(g), reference_size)
            lo, hi = hi, min(hi * 1.5, limit)
        return float(optimize.brentq(gap, lo, hi, xtol=xtol))


# ---------------------------------------------------------------------------------------------
# EWMA


def ewma_arl(limit_l: float, lam: float, shift: float = 0.0, states: int = 201) -> float:
    """ARL of the two-sided EWMA Z_t = λx_t + (1-λ)Z_{t-1}, Z_0 = 0, alarm when
    |Z_t| > L·sqrt(λ/(2-λ)) (asymptotic limits), x_t ~ N(δ, 1), δ = ``shift``.

    Markov chain (Lucas & Saccucci 1990; Brook & Evans 1972): the in-control interval (−UCL,
    UCL) is cut into ``states`` (odd) cells of width w = 2·UCL/states with centres c_i; from
    c_i, Z moves into cell j = [l_j, u_j) with probability

        P_ij = Φ((u_j − (1 − λ)c_i)/λ − δ) − Φ((l_j − (1 − λ)c_i)/λ − δ)

    and the ARLs from each cell solve (I − P)·L = 1; the chart's is the middle cell's (Z_0 = 0).
    """
    if states % 2 == 0:
        states += 1
    ucl = limit_l * math.sqrt(lam / (2 - lam))
    width = 2 * ucl / states
    centres = -ucl + width * (np.arange(states) + 0.5)
    # P(move from centre i to cell j) = P(lower_j < λx + (1-λ)c_i < upper_j)
    lower = centres - width / 2
    upper = centres + width / 2
    base = (1 - lam) * centres[:, None]
    p = stats.norm.cdf((upper[None, :] - base) / lam - shift) - stats.norm.cdf(
        (lower[None, :] - base) / lam - shift
    )
    sol = np.linalg.solve(np.eye(states) - p, np.ones(states))
    return _sound(float(sol[states // 2]))


def calibrate_ewma_l(
    arl0: float, lam: float = 0.1, reference_size: int | None = None, states: int = 201
) -> float:
    """The limit multiplier L whose two-sided in-control false-alarm rate is 1/arl0."""

    def gap(limit: float) -> float:
        # Data N(μ, σ²) against limits L·σ_Z behave as N(μ/σ, 1) against L/σ.
        rate = expected_false_alarm_rate(
            lambda mu, sigma: ewma_arl(limit / sigma, lam, mu / sigma, states), reference_size
        )
        return _log_gap(rate, arl0)

    return _bracketed_root(
        gap, 0.5, 1.0, EWMA_L_MAX, arl0, "EWMA limit multiplier L", reference_size
    )


# ---------------------------------------------------------------------------------------------
# Bernoulli CUSUM


@dataclass(frozen=True)
class BernoulliCusumDesign:
    """A Bernoulli CUSUM for a rise in a rate from p0 to p1, on integer-scaled LLR increments.

    Increments: +up on an event, -down on a non-event; alarm when the sum reaches h (integers).
    """

    p0: float
    p1: float
    up: int
    down: int
    h: int
    scale: float

    @property
    def h_llr(self) -> float:
        return self.h / self.scale


def _bernoulli_increments(p0: float, p1: float, resolution: int) -> tuple[int, int, float]:
    """(up, down, c): the log-likelihood-ratio steps log(p1/p0) and −log((1 − p1)/(1 − p0))
    scaled by c = resolution / (the smaller of the two) and rounded to integers (at least 1)."""
    llr_event = math.log(p1 / p0)
    llr_none = math.log((1 - p1) / (1 - p0))  # negative for p1 > p0
    scale = resolution / min(llr_event, -llr_none)
    return max(1, round(llr_event * scale)), max(1, round(-llr_none * scale)), scale


def bernoulli_cusum_arl(up: int, down: int, h: int, p: float) -> float:
    """Exact ARL of S_t = max(0, S_{t-1} + up·x_t - down·(1-x_t)), alarm when S_t ≥ h,
    S_0 = 0, x_t ~ Bernoulli(p). The chain (Brook & Evans 1972) has the h transient states
    0..h−1 and two moves from each: to s + up (or the alarm) with probability p, to
    max(0, s − down) with 1 − p; the ARLs solve (I − Q)·L = 1 and the chart's is L(0).
    An ARL beyond ``ARL_CEILING`` (where the system is singular in floating point) is infinity."""
    if h <= 0:
        return 1.0
    idx = np.arange(h)
    up_to = idx + up
    ok = up_to < h
    rows = np.concatenate((idx[ok], idx))
    cols = np.concatenate((up_to[ok], np.maximum(idx - down, 0)))
    vals = np.concatenate((np.full(int(ok.sum()), p), np.full(h, 1 - p)))
    m = sparse.csc_matrix((vals, (rows, cols)), shape=(h, h))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", splinalg.MatrixRankWarning)
        sol = splinalg.spsolve(sparse.identity(h, format="csc") - m, np.ones(h))
    return _sound(float(sol[0]))


def calibrate_bernoulli_cusum(
    p0: float, p1: float, arl0: float, resolution: int = 8
) -> BernoulliCusumDesign:
    """The smallest integer threshold whose in-control ARL is at least ``arl0``.

    ``resolution`` is the smaller LLR increment in integer units: larger is closer to the
    unscaled chart and costs a bigger (still exact) chain.
    """
    if not 0 < p0 < p1 < 1:
        raise ValueError(f"need 0 < p0 < p1 < 1 (got p0={p0}, p1={p1})")
    up, down, scale = _bernoulli_increments(p0, p1, resolution)
    h = _smallest_threshold(
        lambda h: 1 / bernoulli_cusum_arl(up, down, h, p0), up, down, scale, arl0, None
    )
    return BernoulliCusumDesign(p0=p0, p1=p1, up=up, down=down, h=h, scale=scale)


def _smallest_threshold(
    rate_at: Callable[[int], float],
    up: int,
    down: int,
    scale: float,
    arl0: float,
    reference_size: int | None,
) -> int:
    """The smallest integer h with ``rate_at(h) <= 1/arl0`` (the rate falls with h), searched
    up to ``BERNOULLI_H_LLR_MAX`` nats."""
    limit = max(max(up, down) * 4, math.ceil(BERNOULLI_H_LLR_MAX * scale))
    lo, hi = 1, max(up, down) * 4
    while (rate := rate_at(hi)) > 1 / arl0:
        if hi >= limit:
            raise _out_of_reach(
                "Bernoulli CUSUM threshold (nats)",
                BERNOULLI_H_LLR_MAX,
                arl0,
                1 / rate,
                reference_size,
            )
        lo, hi = hi, min(hi * 2, limit)
    while lo < hi:  # the rate is non-increasing in h
        mid = (lo + hi) // 2
        if rate_at(mid) <= 1 / arl0:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _rate_quadrature(reference: tuple[int, int], nodes: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights for integrating over the Jeffreys posterior Beta(events + 1/2,
    n - events + 1/2) of the true in-control rate: Gauss–Legendre on the p axis between the
    posterior's 1e-5 and 1 - 1e-5 quantiles, weighted by its density. The false-alarm rate
    1/ARL(p) grows steeply with p, so the upper tail must be integrated, not sampled."""
    n, events = reference
    post = stats.beta(events + 0.5, n - events + 0.5)
    lo, hi = float(post.ppf(1e-5)), float(min(post.isf(1e-5), 0.999))
    u, w = _gauss_legendre(nodes)
    p = lo + (hi - lo) * (u + 1) / 2
    weights = w * (hi - lo) / 2 * post.pdf(p)
    return p, weights / weights.sum()


def calibrate_bernoulli_cusum_uncertain(
    p0: float,
    p1: float,
    arl0: float,
    reference: tuple[int, int] | None = None,
    resolution: int = 8,
) -> BernoulliCusumDesign:
    """Like :func:`calibrate_bernoulli_cusum`, but when p0 was estimated from ``reference`` =
    (trials, events) the threshold keeps the *expected* false-alarm rate, over the posterior of
    the true rate, at 1/arl0. With 10 events in 500 trials the true rate could well be 3%, and a
    chart tuned to exactly 2% would then alarm far more often than promised."""
    if reference is None:
        return calibrate_bernoulli_cusum(p0, p1, arl0, resolution)
    if not 0 < p0 < p1 < 1:
        raise ValueError(f"need 0 < p0 < p1 < 1 (got p0={p0}, p1={p1})")
    up, down, scale = _bernoulli_increments(p0, p1, resolution)
    rates, weights = _rate_quadrature(reference)

    def mean_rate(h: int) -> float:
        return float(
            sum(
                w / bernoulli_cusum_arl(up, down, h, float(r))
                for r, w in zip(rates, weights, strict=True)
            )
        )

    h = _smallest_threshold(mean_rate, up, down, scale, arl0, reference[0])
    return BernoulliCusumDesign(p0=p0, p1=p1, up=up, down=down, h=h, scale=scale)


# ---------------------------------------------------------------------------------------------
# Scale (spread) CUSUM on squared normal scores


@dataclass(frozen=True)
class ScaleCusumDesign:
    """Page's CUSUMs for a change of scale of N(0, 1) scores to N(0, ratio²) (up) and to
    N(0, 1/ratio²) (down), in nats of log-likelihood ratio.

    For scores z, the log-likelihood ratio of N(0, s²) against N(0, 1) is
    −log s + z²·(1 − 1/s²)/2. Written as a·(y − k) with y = z²:

    - up (s = ratio > 1): a⁺ = (1 − 1/ratio²)/2, k⁺ = 2·log(ratio)/(1 − 1/ratio²);
    - down (s = 1/ratio): the increment a⁻·(k⁻ − y), a⁻ = (ratio² − 1)/2,
      k⁻ = 2·log(ratio)/(ratio² − 1).

    ``z_cap``: the scores are capped at ±z_cap before squaring (as the stream's normal scores
    are, beyond every reference value), so y = min(z², z_cap²); None: uncapped.
    """

    ratio: float
    z_cap: float | None = None

    @property
    def up(self) -> tuple[float, float]:
        r2 = self.ratio**2
        return (1 - 1 / r2) / 2, 2 * math.log(self.ratio) / (1 - 1 / r2)

    @property
    def down(self) -> tuple[float, float]:
        r2 = self.ratio**2
        return (r2 - 1) / 2, 2 * math.log(self.ratio) / (r2 - 1)


def _squared_score_cdf(t: np.ndarray, mean: float, sigma: float, cap: float | None) -> np.ndarray:
    """P(min(z², cap²) ≤ t) for z ~ N(mean, sigma²)."""
    root = np.sqrt(np.clip(t, 0.0, None))
    g = stats.norm.cdf((root - mean) / sigma) - stats.norm.cdf((-root - mean) / sigma)
    g = np.where(t < 0, 0.0, g)
    if cap is not None:
        g = np.where(t >= cap * cap, 1.0, g)
    return g


def cusum_arl_general(
    cdf: Callable[[np.ndarray], np.ndarray], h: float, cells: int | None = None
) -> float:
    """ARL of S_t = max(0, S_{t−1} + X_t), alarm when S_t > h, S_0 = 0, for i.i.d. increments
    X with distribution function F = ``cdf`` (vectorised): any distribution, also with atoms or
    an unbounded density (a squared normal score's), since only F and its integral enter.

    Page's integral equation L(s) = 1 + F(−s)·L(0) + ∫₀ʰ L(y) dF(y − s) is solved by product
    integration, collocation with piecewise-linear L on a grid s_i = i·w, w = h/m (the kind of
    collocation S. Knoth 2006, "Computation of the ARL for CUSUM-S² schemes", Comput. Stat.
    Data Anal. 51:499–512, uses for the same chart): on each cell L is linear, and its integral
    against dF is exact given F at the grid and ∫F over each cell,
    ∫ (y − s_j)/w dF(y − s_i) = F(s_{j+1} − s_i) − (1/w)·∫_{s_j}^{s_{j+1}} F(y − s_i) dy (by
    parts), the cell integrals of F by 8-point Gauss–Legendre. The Brook–Evans chain's error
    oscillates with the lattice (±20% between 200 and 400 states at a threshold of 14 nats);
    this one settles: m = max(100, 30·h) cells (w ≤ 1/30 nat) is within 0.1% of the converged
    ARL at ARLs near 10³ and within 3% near 10⁷ (checked against 1,600 cells), i.e. within
    0.03 nats of the threshold. Past h = 20 the cells stay at 600 (a solve then costs tens of
    milliseconds, not seconds): such thresholds serve only small references, whose own error
    sets the rate, and ARLs there are beyond 10⁸. An ARL beyond ``ARL_CEILING`` is infinity.
    """
    if h <= 0:
        return 1.0
    m = cells if cells is not None else min(max(100, math.ceil(30 * h)), 600)
    return _sound(_product_integration_arl(cdf, h, m))


def _product_integration_arl(cdf: Callable[[np.ndarray], np.ndarray], h: float, m: int) -> float:
    w = h / m
    offsets = np.arange(-m, m + 1)
    f_at = cdf(offsets * w)  # F at every grid difference s_j − s_i = d·w, d = −m..m
    u, wt = _gauss_legendre(8)
    points = offsets[:-1, None] * w + w * (u[None, :] + 1) / 2
    cell_integral = (cdf(points) * wt[None, :]).sum(axis=1) * w / 2  # ∫ F over [d·w, (d+1)·w]
    i = np.arange(m + 1)[:, None]
    d = np.arange(m)[None, :] - i + m  # index of the cell [s_j − s_i, s_{j+1} − s_i]
    upper = f_at[d + 1]
    b = upper - cell_integral[d] / w  # weight of L(s_{j+1})
    a = upper - f_at[d] - b  # weight of L(s_j)
    system = np.eye(m + 1)
    system[:, 0] -= f_at[m - np.arange(m + 1)]  # F(−s_i): back to 0
    system[:, :-1] -= a
    system[:, 1:] -= b
    return float(np.linalg.solve(system, np.ones(m + 1))[0])


def scale_cusum_arl_sides(
    design: ScaleCusumDesign,
    h_up: float,
    h_down: float,
    mean: float = 0.0,
    sigma: float = 1.0,
    cells: int | None = None,
) -> tuple[float, float]:
    """(ARL⁺, ARL⁻) of the two one-sided scale CUSUMs of ``design`` (thresholds in nats) on
    scores z ~ N(mean, sigma²); either threshold ≤ 0 leaves that side out (infinite ARL)."""
    a_up, k_up = design.up
    a_dn, k_dn = design.down
    cap = design.z_cap
    up = (
        cusum_arl_general(
            lambda x: _squared_score_cdf(k_up + x / a_up, mean, sigma, cap), h_up, cells
        )
        if h_up > 0
        else math.inf
    )
    # X = a⁻(k⁻ − y) ≤ x  ⇔  y ≥ k⁻ − x/a⁻ (the atom at the cap falls on no cell edge)
    down = (
        cusum_arl_general(
            lambda x: 1.0 - _squared_score_cdf(k_dn - x / a_dn, mean, sigma, cap), h_down, cells
        )
        if h_down > 0
        else math.inf
    )
    return up, down


def scale_cusum_arl(
    design: ScaleCusumDesign,
    h_up: float,
    h_down: float,
    mean: float = 0.0,
    sigma: float = 1.0,
    cells: int | None = None,
) -> float:
    """ARL of the two-sided scale CUSUM: 1/ARL = 1/ARL⁺ + 1/ARL⁻ (as for the mean CUSUM)."""
    up, down = scale_cusum_arl_sides(design, h_up, h_down, mean, sigma, cells)
    rate = 1.0 / up + 1.0 / down
    return 1.0 / rate if rate > 0 else math.inf


def calibrate_scale_cusum_side(
    design: ScaleCusumDesign,
    side: str,
    arl0: float,
    reference_size: int | None = None,
    cells: int | None = None,
) -> float:
    """The threshold (nats) of one side (``"up"`` or ``"down"``) of the scale CUSUM whose
    expected in-control false-alarm rate, over references of ``reference_size`` values
    (``expected_false_alarm_rate``), is 1/arl0."""
    if arl0 <= 1:
        raise ValueError(f"arl0 must exceed 1 (got {arl0})")
    if side not in ("up", "down"):
        raise ValueError(f"side must be 'up' or 'down' (got {side!r})")

    def one_side(h: float, mu: float, sigma: float) -> float:
        up, down = scale_cusum_arl_sides(
            design, h if side == "up" else 0.0, h if side == "down" else 0.0, mu, sigma, cells
        )
        return up if side == "up" else down

    def gap(h: float) -> float:
        # the scale error dominates (z² moves with σ², with ε only at second order): 3 × 5
        # nodes agree with 7 × 9 within 0.01% of the rate
        rate = expected_false_alarm_rate(
            lambda mu, s: one_side(h, mu, s), reference_size, mean_nodes=3, scale_nodes=5
        )
        return _log_gap(rate, arl0)

    # A CUSUM of log-likelihood ratios has ARL0 ≥ e^h (Wald), about e^h·(a few): the root lies
    # near log(arl0); 0.001 nats is a 0.1% change of ARL.
    guess = max(1.0, math.log(arl0))
    lo = 0.5 * guess
    with threadpool_limits(limits=1, user_api="blas"):
        if gap(lo) > 0:
            lo = 0.05
    return _bracketed_root(
        gap,
        lo,
        guess,
        SCALE_CUSUM_H_MAX,
        arl0,
        "scale CUSUM threshold (nats)",
        reference_size,
        xtol=1e-3,
    )
