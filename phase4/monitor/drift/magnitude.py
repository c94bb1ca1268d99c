"""The size of a change: how far a stream moved from its reference, with 95% confidence intervals.

A detector says *that* a stream changed; people need *how much*, in the stream's unit, and how
sure that number is. Given the reference sample and the values since the estimated start of the
change, this module gives:

- **numeric streams**: the difference of means, after − before, with Welch's interval
  (B. L. Welch 1947, "The generalization of 'Student's' problem when several different population
  variances are involved", Biometrika 34:28–35; the Welch–Satterthwaite degrees of freedom), and
  the same change as a percentage of the reference mean, 100·(μ_after/μ_before − 1), with
  **Fieller's interval** for the ratio of two independent means (E. C. Fieller 1954, "Some
  problems in interval estimation", J. R. Stat. Soc. B 16:175–185), computed by inverting Welch's
  test: the interval holds every ratio ρ for which Welch's test of μ_after − ρ·μ_before = 0 does
  not reject at 5%, each ρ with its own degrees of freedom.

  Fieller rather than the delta method: the delta method's interval, ρ̂ ± t·SE(ρ̂), is symmetric
  and treats the reference mean as nearly exact; it under-covers when the reference mean is
  imprecise relative to its size, and it gives a finite interval even when the reference mean is
  indistinguishable from zero and the ratio means nothing. Fieller's interval is exact for normal
  means (and Welch-approximate here), asymmetric when it should be, and says so when no finite
  interval exists (:attr:`MeanShift.ratio_ci` is None; the change is then stated in the unit, not
  in percent). With a reference of 500 values the two differ in the third digit; they part ways
  on small or noisy references. Means rather than the Hodges–Lehmann shift of location: the
  changes that matter here are multiplicative (a dose calibrator reading 8% high lowers every SUV
  by 1 − 1/1.08 = 7.4%, so the mean by exactly that share), Welch's interval needs only the
  reference's n, mean and SD (which the alert keeps), and with tens of values after the change the
  central limit theorem covers the skew of SUVs (the coverage test in tests/drift/test_magnitude.py
  runs on log-normal values too).
- **binary streams**: the rate before and after, each with Wilson's score interval (E. B. Wilson
  1927, "Probable inference, the law of succession, and statistical inference", JASA 22:209–212),
  and the difference after − before with Newcombe's hybrid score interval (R. G. Newcombe 1998,
  "Interval estimation for the difference between independent proportions: comparison of eleven
  methods", Statistics in Medicine 17:873–890, method 10), which keeps its coverage near 95% with
  few events, where the Wald interval does not.
- **categorical streams**: the category whose share moved most (a new category, absent from the
  reference, is one of them), its share before and after with Wilson's interval and the
  difference with Newcombe's.

Everything here is pure arithmetic on numbers given to it (no SQL, no time): the drift pass
(``phase4.monitor.surveillance.change_size``) reads the values from the store.

A dose-calibrator error of +8% seen on liver SUVmean (reference mean 2.20, SD 0.22):

>>> before = Moments(n=500, mean=2.20, sd=0.22)
>>> after = Moments(n=40, mean=2.20 / 1.08, sd=0.22 / 1.08)
>>> shift = mean_shift(before, after)
>>> round(shift.delta, 3), [round(x, 3) for x in shift.delta_ci.to_list()]
(-0.163, [-0.231, -0.095])
>>> round(shift.delta_pct, 1), [round(x, 1) for x in shift.delta_pct_ci.to_list()]
(-7.4, [-10.5, -4.3])

A positive-call rate from 44 of 100 to 30 of 50:

>>> rates = rate_shift(44, 100, 30, 50)
>>> round(rates.delta, 2), [round(x, 3) for x in rates.delta_ci.to_list()]
(0.16, [-0.009, 0.315])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scipy.special import ndtri
from scipy.stats import t as student_t

LEVEL = 0.95
# Fixed-point iterations of Fieller's bounds with their own degrees of freedom (they settle to
# 1e-12 in three or four; the cap only guards against a pathological input).
FIELLER_ITERATIONS = 60

MEAN_METHOD = (
    "difference of means with Welch's 95% interval; percentage of the reference mean with "
    "Fieller's 95% interval for the ratio of means (inverting Welch's test)"
)
RATE_METHOD = (
    "rates with Wilson's 95% score intervals; difference with Newcombe's hybrid score 95% interval"
)
SHARE_METHOD = (
    "the category whose share moved most: shares with Wilson's 95% score intervals, "
    "difference with Newcombe's hybrid score 95% interval"
)


@dataclass(frozen=True, slots=True)
class Interval:
    """A closed interval [low, high]."""

    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def to_list(self) -> list[float]:
        return [self.low, self.high]

    def scaled(self, factor: float, offset: float = 0.0) -> Interval:
        """(x + offset)·factor for each end, ends kept in order."""
        a, b = (self.low + offset) * factor, (self.high + offset) * factor
        return Interval(min(a, b), max(a, b))


@dataclass(frozen=True, slots=True)
class Moments:
    """A sample's size, mean and standard deviation (the n − 1 one)."""

    n: int
    mean: float
    sd: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Moments:
        """The moments of ``values`` (two passes, compensated sums).

        >>> Moments.of([1.0, 2.0, 3.0, 4.0])
        Moments(n=4, mean=2.5, sd=1.2909944487358056)
        """
        n = len(values)
        if n == 0:
            raise ValueError("no values")
        mean = math.fsum(values) / n
        if n < 2:
            return cls(n, mean, 0.0)
        ss = math.fsum((v - mean) ** 2 for v in values)
        return cls(n, mean, math.sqrt(ss / (n - 1)))

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "mean": self.mean, "sd": self.sd}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Moments:
        return cls(int(d["n"]), float(d["mean"]), float(d["sd"]))


def _t(level: float, df: float) -> float:
    q = 0.5 + level / 2
    return float(ndtri(q)) if math.isinf(df) else float(student_t.ppf(q, df))


def welch_df(var_a: float, n_a: int, var_b: float, n_b: int) -> float:
    """Welch–Satterthwaite degrees of freedom of var_a/n_a + var_b/n_b (variances of the
    samples, not of their means); infinite when neither sample varies.

    >>> round(welch_df(1.0, 10, 4.0, 20), 2)
    27.98
    """
    ua, ub = var_a / n_a, var_b / n_b
    den = (ua * ua / (n_a - 1) if n_a > 1 else 0.0) + (ub * ub / (n_b - 1) if n_b > 1 else 0.0)
    return math.inf if den == 0 else (ua + ub) ** 2 / den


def welch_interval(before: Moments, after: Moments, level: float = LEVEL) -> Interval | None:
    """Welch's interval for μ_after − μ_before; None with fewer than two values on a side or
    when neither side varies (nothing to estimate a spread from).

    >>> ci = welch_interval(Moments(10, 5.0, 1.0), Moments(20, 6.0, 2.0))
    >>> [round(x, 4) for x in ci.to_list()]
    [-0.122, 2.122]
    """
    if before.n < 2 or after.n < 2:
        return None
    va, vb = after.sd**2, before.sd**2
    se = math.sqrt(va / after.n + vb / before.n)
    if se == 0:
        return None
    t = _t(level, welch_df(va, after.n, vb, before.n))
    delta = after.mean - before.mean
    return Interval(delta - t * se, delta + t * se)


def fieller_interval(before: Moments, after: Moments, level: float = LEVEL) -> Interval | None:
    """Fieller's interval for μ_after / μ_before: the ratios ρ that Welch's test of
    μ_after − ρ·μ_before = 0 does not reject, each with the degrees of freedom of its own
    variance, var_after/n_after + ρ²·var_before/n_before. None when that set is not a finite
    interval (the reference mean is not distinguishable from zero) or cannot be estimated.

    With an exactly known reference mean (SD 0) it is the t interval of the after mean
    (2.2 ± 2.064 × 0.5/√25), divided by the reference mean:

    >>> ci = fieller_interval(Moments(100, 2.0, 0.0), Moments(25, 2.2, 0.5))
    >>> [round(x, 4) for x in ci.to_list()]
    [0.9968, 1.2032]
    >>> fieller_interval(Moments(10, 0.1, 1.0), Moments(10, 1.0, 1.0)) is None
    True
    """
    if before.n < 2 or after.n < 2 or before.mean == 0:
        return None
    a, b = after.mean, before.mean
    va, vb = after.sd**2 / after.n, before.sd**2 / before.n
    if va == 0 and vb == 0:
        return None

    def t_at(rho: float) -> float:
        return _t(level, welch_df(after.sd**2, after.n, rho * rho * before.sd**2, before.n))

    def bounds(t: float) -> tuple[float, float] | None:
        den = b * b - t * t * vb
        if den <= 0:
            return None
        disc = t * t * (a * a * vb + b * b * va - t * t * va * vb)
        root = math.sqrt(max(disc, 0.0))
        return (a * b - root) / den, (a * b + root) / den

    first = bounds(t_at(a / b))
    if first is None:
        return None
    low, high = first
    for _ in range(FIELLER_ITERATIONS):
        lo_b, hi_b = bounds(t_at(low)), bounds(t_at(high))
        if lo_b is None or hi_b is None:
            return None
        new_low, new_high = lo_b[0], hi_b[1]
        done = abs(new_low - low) <= 1e-13 * max(1.0, abs(low)) and abs(
            new_high - high
        ) <= 1e-13 * max(1.0, abs(high))
        low, high = new_low, new_high
        if done:
            break
    return Interval(low, high)


@dataclass(frozen=True, slots=True)
class MeanShift:
    """A numeric stream's change: means before and after, their difference and its ratio."""

    before: Moments
    after: Moments
    delta_ci: Interval | None
    ratio_ci: Interval | None
    level: float = LEVEL

    @property
    def delta(self) -> float:
        return self.after.mean - self.before.mean

    @property
    def ratio(self) -> float | None:
        return self.after.mean / self.before.mean if self.before.mean != 0 else None

    @property
    def delta_pct(self) -> float | None:
        """The change as a percentage of the reference mean (None when that mean is 0)."""
        r = self.ratio
        return None if r is None else 100.0 * (r - 1.0)

    @property
    def delta_pct_ci(self) -> Interval | None:
        ci = self.ratio_ci
        return None if ci is None else ci.scaled(100.0, -1.0)

    def to_dict(self) -> dict[str, Any]:
        pct_ci = self.delta_pct_ci
        return {
            "before": self.before.mean,
            "after": self.after.mean,
            "delta": self.delta,
            "delta_ci95": self.delta_ci.to_list() if self.delta_ci else None,
            "delta_pct": self.delta_pct,
            "delta_pct_ci95": pct_ci.to_list() if pct_ci else None,
            "n_before": self.before.n,
            "n_after": self.after.n,
            "sd_before": self.before.sd,
            "sd_after": self.after.sd,
            "method": MEAN_METHOD,
        }


def mean_shift(
    before: Moments | Sequence[float], after: Moments | Sequence[float], level: float = LEVEL
) -> MeanShift:
    """The change of a numeric stream's mean, from its reference (``before``) to the values
    since the change (``after``); samples or their moments."""
    b = before if isinstance(before, Moments) else Moments.of(before)
    a = after if isinstance(after, Moments) else Moments.of(after)
    return MeanShift(b, a, welch_interval(b, a, level), fieller_interval(b, a, level), level)


def wilson_interval(events: int, n: int, level: float = LEVEL) -> Interval:
    """Wilson's score interval for a proportion ``events``/``n``.

    >>> [round(x, 4) for x in wilson_interval(0, 10).to_list()]
    [0.0, 0.2775]
    >>> [round(x, 4) for x in wilson_interval(8, 10).to_list()]
    [0.4902, 0.9433]
    """
    if n <= 0:
        raise ValueError("a proportion needs at least one trial")
    if not 0 <= events <= n:
        raise ValueError(f"{events} events in {n} trials")
    z = float(ndtri(0.5 + level / 2))
    p = events / n
    z2n = z * z / n
    centre = (p + z2n / 2) / (1 + z2n)
    half = z * math.sqrt(p * (1 - p) / n + z2n / (4 * n)) / (1 + z2n)
    return Interval(max(0.0, centre - half), min(1.0, centre + half))


def newcombe_interval(
    before_events: int, before_n: int, after_events: int, after_n: int, level: float = LEVEL
) -> Interval:
    """Newcombe's hybrid score interval (his method 10) for p_after − p_before.

    His first example, 56/70 against 48/80 (difference 0.2000): 0.0524 to 0.3339.

    >>> [round(x, 4) for x in newcombe_interval(48, 80, 56, 70).to_list()]
    [0.0524, 0.3339]
    """
    p1, p2 = before_events / before_n, after_events / after_n
    w1 = wilson_interval(before_events, before_n, level)
    w2 = wilson_interval(after_events, after_n, level)
    d = p2 - p1
    low = d - math.sqrt((p2 - w2.low) ** 2 + (w1.high - p1) ** 2)
    high = d + math.sqrt((w2.high - p2) ** 2 + (p1 - w1.low) ** 2)
    return Interval(low, high)


@dataclass(frozen=True, slots=True)
class RateShift:
    """A binary stream's change: events in trials before and after."""

    before_events: int
    before_n: int
    after_events: int
    after_n: int
    level: float = LEVEL

    @property
    def before(self) -> float:
        return self.before_events / self.before_n

    @property
    def after(self) -> float:
        return self.after_events / self.after_n

    @property
    def delta(self) -> float:
        return self.after - self.before

    @property
    def before_ci(self) -> Interval:
        return wilson_interval(self.before_events, self.before_n, self.level)

    @property
    def after_ci(self) -> Interval:
        return wilson_interval(self.after_events, self.after_n, self.level)

    @property
    def delta_ci(self) -> Interval:
        return newcombe_interval(
            self.before_events, self.before_n, self.after_events, self.after_n, self.level
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "before": self.before,
            "after": self.after,
            "before_ci95": self.before_ci.to_list(),
            "after_ci95": self.after_ci.to_list(),
            "delta": self.delta,
            "delta_ci95": self.delta_ci.to_list(),
            "events_before": self.before_events,
            "events_after": self.after_events,
            "n_before": self.before_n,
            "n_after": self.after_n,
            "method": RATE_METHOD,
        }


def rate_shift(
    before_events: int, before_n: int, after_events: int, after_n: int, level: float = LEVEL
) -> RateShift:
    """The change of a binary stream's rate (events in trials, before and after)."""
    for events, n in ((before_events, before_n), (after_events, after_n)):
        if n <= 0 or not 0 <= events <= n:
            raise ValueError(f"{events} events in {n} trials")
    return RateShift(before_events, before_n, after_events, after_n, level)


@dataclass(frozen=True, slots=True)
class ShareShift:
    """A categorical stream's change: the category whose share moved most."""

    category: str
    # absent from the reference
    new: bool
    rates: RateShift

    def to_dict(self) -> dict[str, Any]:
        return {**self.rates.to_dict(), "category": self.category, "new": self.new,
                "method": SHARE_METHOD}  # fmt: skip


def share_shift(
    before_counts: Mapping[str, int], after_counts: Mapping[str, int], level: float = LEVEL
) -> ShareShift | None:
    """The category whose share changed most between the reference counts and the counts since
    the change (ties, as a new category's rise against the fall of the one it replaces: the
    category absent from the reference, then the larger count after, then the name); None if
    either side is empty.

    >>> s = share_shift({"OSEM": 500}, {"OSEM": 10, "BSREM": 90})
    >>> s.category, s.new, s.rates.before, s.rates.after
    ('BSREM', True, 0.0, 0.9)
    """
    n_before, n_after = sum(before_counts.values()), sum(after_counts.values())
    if n_before <= 0 or n_after <= 0:
        return None
    categories = set(before_counts) | set(after_counts)

    def key(c: str) -> tuple[float, bool, int, str]:
        moved = after_counts.get(c, 0) / n_after - before_counts.get(c, 0) / n_before
        # rounded: 0.3 and -0.30000000000000004 are the same move
        return (-round(abs(moved), 12), before_counts.get(c, 0) > 0, -after_counts.get(c, 0), c)

    top = min(categories, key=key)
    rates = rate_shift(
        before_counts.get(top, 0), n_before, after_counts.get(top, 0), n_after, level
    )
    return ShareShift(top, before_counts.get(top, 0) == 0, rates)


def estimate_shift(
    reference_mean: float, reference_sd: float, estimate: float, level: float = LEVEL
) -> Interval | None:
    """The interval of a windowed estimate's departure from its reference, estimate − mean,
    when the reference gives the estimate's own spread (the SD of the reference windows'
    estimates, e.g. CBPE's expected sensitivity): ± z·SD (normal approximation; the reference
    mean, from many windows, taken as known). None without a spread.

    >>> [round(x, 3) for x in estimate_shift(0.886, 0.0256, 0.800).to_list()]
    [-0.136, -0.036]
    """
    if not (reference_sd > 0 and math.isfinite(reference_sd)):
        return None
    z = float(ndtri(0.5 + level / 2))
    delta = estimate - reference_mean
    return Interval(delta - z * reference_sd, delta + z * reference_sd)
