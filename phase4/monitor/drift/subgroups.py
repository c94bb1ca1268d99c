"""Subgroup performance and the disparity monitor: pure statistics (no SQL, no HTTP, no clock).

**Per-group performance.** For each subgroup (a site, a scanner, a sex, an age band) the
output (positive-call) rate and, from labelled cases, sensitivity, specificity and PPV, each
with Wilson's 95% score interval (E. B. Wilson 1927, "Probable inference, the law of
succession, and statistical inference", JASA 22:209–212), and the gap to the rest of the
deployment (rest − group, in points of the metric) with Newcombe's hybrid score interval for a
difference of independent proportions (R. G. Newcombe 1998, Statistics in Medicine
17:873–890, method 10); both from ``phase4.monitor.drift.magnitude``.

**The disparity monitor** asks, for each group g and metric m (sensitivity, specificity),
whether the group has fallen more than a declared margin δ below the rest. It is a one-sided
Bernoulli CUSUM (M. R. Reynolds & Z. G. Stoumbos 1999, "A CUSUM chart for monitoring a
proportion when inspecting continuously", J. Quality Technology 31:87–108) on the group's
labelled cases in acquisition order, counting an *error* (a miss among confirmed positives for
sensitivity, a false positive among confirmed negatives for specificity):

    in control (the margin's boundary):  p0 = q_rest + δ
    out of control (twice the margin):   p1 = q_rest + 2δ
    S_t = max(0, S_{t−1} + log(p1/p0)·x_t + log((1 − p1)/(1 − p0))·(1 − x_t)),  alarm at S_t ≥ h

where q_rest is the rest's error rate. The null hypothesis is a gap *at* the margin, so a gap
of zero (or any gap within the margin) alarms still less often. The increments are scaled to
integers, which makes the chart a finite Markov chain with an exact ARL (D. Brook & D. A. Evans
1972, Biometrika 59:539–549; ``phase4.monitor.drift.arl``). q_rest is itself an estimate: h is
the smallest threshold whose *expected* false-alarm rate, over the Jeffreys posterior
Beta(e + ½, n − e + ½) of the rest's rate shifted by δ, meets the budget (as the binary
streams' thresholds do).

**Budget and multiplicity** (docs/SUBGROUPS.md): the disparity monitor is one share of the
deployment's false-alarm budget, F / S' per year (S' the deployment's shares, streams plus
this one); that share is split equally over its K = groups × metrics charts (Bonferroni on the
rate: the union of K charts alarms at most K times a chart's rate), so chart (g, m), which sees
r labelled cases of its kind a day, gets

    ARL0 = K · 365 · r / (F / S')      (in the group's cases)

**Small groups.** No verdict until the group has as many cases of the metric's kind as make
the margin resolvable: the smallest n whose Wilson 95% interval, at the rest's rate, has a
half-width of at most δ (:func:`cases_needed`). Before that the chart still runs, but cannot
alarm.

>>> design = design_disparity(rest_errors=20, rest_n=200, margin=0.10, arl0=2000)
>>> round(design.p0, 3), round(design.p1, 3), design.up, design.down
(0.202, 0.302, 24, 8)
>>> run = run_disparity([False] * 40, design, min_cases=10)
>>> run.alarm_index is None, run.statistic
(True, 0.0)
>>> run = run_disparity([True, False] * 40, design, min_cases=10)
>>> run.alarm_index is not None and run.change_index == 0
True
>>> cases_needed(0.10, 0.9)
37
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from phase4.monitor.drift.arl import (
    CalibrationError,
    _bernoulli_increments,
    _rate_quadrature,
    _smallest_threshold,
    bernoulli_cusum_arl,
)
from phase4.monitor.drift.budget import DAYS_PER_YEAR
from phase4.monitor.drift.magnitude import LEVEL, newcombe_interval, wilson_interval

# The metrics the disparity monitor watches, with the error each counts. PPV is reported, not
# monitored: it moves with the group's prevalence, which may differ between groups legitimately.
DISPARITY_METRICS = ("sensitivity", "specificity")
METRICS = ("positive_rate", "sensitivity", "specificity", "ppv")
METRIC_LABELS = {
    "positive_rate": "positive-call rate",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
    "ppv": "PPV",
}
# Rates of the chart are kept inside (0, 1) whatever the rest's rate and the margin.
RATE_CAP = 0.995


@dataclass(frozen=True)
class Counts:
    """One group's cases: all of them, with a positive call, and the labelled confusion matrix."""

    n: int = 0
    positive_calls: int = 0
    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0

    @property
    def labelled(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    def minus(self, other: Counts) -> Counts:
        return Counts(
            self.n - other.n,
            self.positive_calls - other.positive_calls,
            self.tp - other.tp,
            self.fp - other.fp,
            self.tn - other.tn,
            self.fn - other.fn,
        )

    def plus(self, other: Counts) -> Counts:
        return Counts(
            self.n + other.n,
            self.positive_calls + other.positive_calls,
            self.tp + other.tp,
            self.fp + other.fp,
            self.tn + other.tn,
            self.fn + other.fn,
        )

    def fraction(self, metric: str) -> tuple[int, int]:
        """(successes, trials) of ``metric``.

        >>> Counts(n=10, positive_calls=4, tp=3, fp=1, tn=5, fn=1).fraction("sensitivity")
        (3, 4)
        """
        if metric == "positive_rate":
            return self.positive_calls, self.n
        if metric == "sensitivity":
            return self.tp, self.tp + self.fn
        if metric == "specificity":
            return self.tn, self.tn + self.fp
        if metric == "ppv":
            return self.tp, self.tp + self.fp
        raise ValueError(f"unknown metric {metric!r}")


def rate(successes: int, trials: int, level: float = LEVEL) -> dict[str, Any]:
    """A proportion with Wilson's interval, as people read it (None when nothing was counted).

    >>> r = rate(8, 10)
    >>> r["value"], [round(x, 4) for x in r["ci95"]], r["n"]
    (0.8, [0.4902, 0.9433], 10)
    """
    if trials <= 0:
        return {"value": None, "ci95": None, "successes": 0, "n": 0}
    ci = wilson_interval(successes, trials, level)
    return {"value": successes / trials, "ci95": ci.to_list(), "successes": successes, "n": trials}


def gap_to_rest(
    group: tuple[int, int], rest: tuple[int, int], level: float = LEVEL
) -> dict[str, Any] | None:
    """rest − group of a proportion, in its own scale (0.1 is 10 points), with Newcombe's
    interval; positive when the group does worse. None when either side has no cases.

    >>> g = gap_to_rest((48, 80), (56, 70))
    >>> round(g["value"], 4), [round(x, 4) for x in g["ci95"]]
    (0.2, [0.0524, 0.3339])
    """
    (gs, gn), (rs, rn) = group, rest
    if gn <= 0 or rn <= 0:
        return None
    ci = newcombe_interval(gs, gn, rs, rn, level)
    return {"value": rs / rn - gs / gn, "ci95": ci.to_list()}


def wilson_half_width(p: float, n: int, level: float = LEVEL) -> float:
    """Half the width of Wilson's interval at an observed proportion ``p`` of ``n`` trials."""
    z = float(_z(level))
    z2n = z * z / n
    return z * math.sqrt(p * (1 - p) / n + z2n / (4 * n)) / (1 + z2n)


def _z(level: float) -> float:
    from scipy.special import ndtri

    return float(ndtri(0.5 + level / 2))


@lru_cache(maxsize=4096)
def cases_needed(margin: float, p: float, level: float = LEVEL) -> int:
    """The smallest number of cases whose Wilson interval at proportion ``p`` is at most
    ``margin`` either side: fewer cannot tell a gap of the margin from none.

    >>> cases_needed(0.10, 0.5), cases_needed(0.05, 0.9)
    (93, 141)
    """
    if not 0 < margin < 1:
        raise ValueError(f"margin must lie in (0, 1) (got {margin})")
    p = min(max(p, 0.0), 1.0)
    n = 1
    while wilson_half_width(p, n, level) > margin:
        n += 1
    return n


def disparity_arl0(*, charts: int, false_alarms_per_year: float, cases_per_day: float) -> float:
    """One chart's in-control ARL, in the group's cases, when ``charts`` charts share
    ``false_alarms_per_year`` equally (Bonferroni on the rate).

    >>> disparity_arl0(charts=10, false_alarms_per_year=0.05, cases_per_day=0.5)
    36500.0
    """
    if charts < 1 or false_alarms_per_year <= 0 or cases_per_day <= 0:
        raise ValueError("need charts ≥ 1 and positive rates")
    return charts * DAYS_PER_YEAR * cases_per_day / false_alarms_per_year


@dataclass(frozen=True)
class DisparityDesign:
    """A group's chart: +up on an error, −down otherwise (integer units), alarm at h."""

    p0: float
    p1: float
    up: int
    down: int
    h: int
    scale: float
    arl0: float
    margin: float
    rest_rate: float

    @property
    def h_llr(self) -> float:
        return self.h / self.scale

    def to_dict(self) -> dict[str, Any]:
        return {
            "p0": self.p0,
            "p1": self.p1,
            "up": self.up,
            "down": self.down,
            "h": self.h,
            "threshold": self.h_llr,
            "arl0": self.arl0,
            "margin": self.margin,
            "rest_error_rate": self.rest_rate,
        }


@lru_cache(maxsize=4096)
def design_disparity(
    *, rest_errors: int, rest_n: int, margin: float, arl0: float, resolution: int = 8
) -> DisparityDesign:
    """The chart for a group against a rest with ``rest_errors`` errors in ``rest_n`` cases.

    Raises ``CalibrationError`` when no threshold in the validated range reaches ``arl0``."""
    if rest_n < 1 or not 0 <= rest_errors <= rest_n:
        raise ValueError(f"{rest_errors} errors in {rest_n} cases")
    q = (rest_errors + 0.5) / (rest_n + 1)  # the Jeffreys posterior mean
    p0 = min(q + margin, RATE_CAP - margin)
    p1 = min(p0 + margin, RATE_CAP)
    up, down, scale = _bernoulli_increments(p0, p1, resolution)
    rates, weights = _rate_quadrature((rest_n, rest_errors))
    shifted = [min(float(r) + margin, RATE_CAP) for r in rates]

    def mean_rate(h: int) -> float:
        return float(
            sum(
                w / bernoulli_cusum_arl(up, down, h, r)
                for r, w in zip(shifted, weights, strict=True)
            )
        )

    h = _smallest_threshold(mean_rate, up, down, scale, arl0, rest_n)
    return DisparityDesign(p0, p1, up, down, h, scale, arl0, margin, q)


@dataclass(frozen=True)
class DisparityRun:
    """The chart over a group's cases: where it stands, and its first alarm (with the index of
    the case its change is dated at: the first after the sum last stood at zero)."""

    statistic: float
    threshold: float
    cases: int
    alarm_index: int | None = None
    change_index: int | None = None


def run_disparity(
    errors: Sequence[bool], design: DisparityDesign, *, min_cases: int
) -> DisparityRun:
    """Feed the group's cases (True: an error) in order; stop at the first alarm, which needs
    at least ``min_cases`` cases (the small-group rule: a crossing before then waits)."""
    s = 0
    last_zero = 0
    for i, error in enumerate(errors):
        s = max(0, s + (design.up if error else -design.down))
        if s == 0:
            last_zero = i + 1
        if s >= design.h and i + 1 >= min_cases:
            return DisparityRun(s / design.scale, design.h_llr, i + 1, i, last_zero)
    return DisparityRun(s / design.scale, design.h_llr, len(errors))


def verdict_words(verdict: str, needed_more: int = 0, kind: str = "labelled cases") -> str:
    """What a group's verdict means, in words."""
    if verdict == "too_few":
        return f"needs {needed_more} more {kind}"
    if verdict == "gap":
        return "gap beyond the margin"
    if verdict == "within":
        return "no gap beyond the margin detected"
    if verdict == "no_rest":
        return "no other group to compare with"
    if verdict == "not_calibratable":
        return "the rest has too few cases to calibrate the test"
    return verdict


def error_kind(metric: str) -> str:
    """The labelled cases a metric counts."""
    return {"sensitivity": "confirmed-positive", "specificity": "confirmed-negative"}.get(
        metric, "labelled"
    )


def summarise(design: DisparityDesign | None) -> Mapping[str, Any] | None:
    return design.to_dict() if design is not None else None


__all__ = [
    "DISPARITY_METRICS",
    "METRICS",
    "CalibrationError",
    "Counts",
    "DisparityDesign",
    "DisparityRun",
    "cases_needed",
    "design_disparity",
    "disparity_arl0",
    "gap_to_rest",
    "rate",
    "run_disparity",
]
