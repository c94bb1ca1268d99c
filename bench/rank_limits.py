"""What any distribution-free rule can do on a large jump: a lower bound on its delay.

A monitor that promises a false-alarm budget whatever the shape of a feature's tail must
decide from what its reference shows. Beyond the most extreme of its n reference values a
reference shows nothing: a new value there has, in control, probability exactly 1/(n + 1) of
lying beyond the maximum (exchangeability), whatever the distribution. A rule whose decisions
depend on a value only through its rank among the reference ("distribution-free": its
in-control run length is the same for every continuous distribution, heavy tails included)
therefore cannot tell a value just beyond the reference maximum from one 10σ beyond it.

The bound. Take such a rule that treats every study alike: it alarms on a study whose rank
among the reference is r (r = 0 … n reference values below it) with probability a_r, whatever
came before. In control each rank has probability 1/(n + 1), so the rule alarms on a single
study with probability Σ a_r / (n + 1) averaged over references: that is its expected
false-alarm rate (what the product promises; the run length averaged over references is longer,
by Jensen), and holding it at 1/ARL0 needs Σ a_r ≤ (n + 1) / ARL0. After a step change the
first changed study has rank r with probability P1(r); the chance of alarming on it is Σ a_r
P1(r), largest (Neyman–Pearson) when the allowance (n + 1)/ARL0 goes to the ranks with the
largest P1(r) first, the top rank for an upward shift. Whatever happens next, an alarm that
does not come on the first changed study comes on the second at the earliest, so

    delay ≥ 1 · p_first + 2 · (1 − p_first) = 2 − p_first.

This is generous to the rule: all of the stream's budget goes to one side and to this one
first-study decision (a real stream must also watch the other side and small shifts), and
the second study is assumed to alarm for certain.

With n = 500 and ARL0 = 2,000 (the benchmark's stream), a_top ≤ 501/2000 = 0.25, and on the
+40% image-noise jump (3.9σ on the log scale) P1(top) ≈ 0.8: p_first ≤ 0.2, delay ≥ 1.8
observations, against the oracle's 1.4 that knows the tail (1.3×). A rule that also learned
the tail from later in-control studies has a larger effective n; :func:`first_alarm_bound`
takes any n.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy import integrate, stats


@dataclass(frozen=True)
class FirstAlarmBound:
    reference_size: int
    arl0: float
    shift_sd: float
    allowance: float  # Σ a_r ≤ (n + 1) / ARL0
    p_top: float  # P1(the first changed study lies beyond every reference value)
    p_first: float  # the largest attainable chance of alarming on the first changed study
    delay_lower_bound: float  # 2 − p_first


def rank_probability(rank: int, reference_size: int, shift_sd: float) -> float:
    """P(exactly ``rank`` of ``reference_size`` N(0, 1) reference values lie below a value
    drawn from N(shift_sd, 1)); 1/(n + 1) for every rank when shift_sd = 0."""
    n = reference_size
    if not 0 <= rank <= n:
        raise ValueError(f"rank must lie in 0..{n} (got {rank})")

    def integrand(y: float) -> float:
        return float(stats.norm.pdf(y - shift_sd) * stats.binom.pmf(rank, n, stats.norm.cdf(y)))

    # The mass sits where Φ(y) ≈ rank/n, shifted: integrate over a wide window in pieces.
    lo, hi = shift_sd - 12.0, shift_sd + 12.0
    centre = float(stats.norm.ppf(min(max((rank + 0.5) / (n + 1), 1e-12), 1 - 1e-12)))
    points = sorted({lo, hi, *(p for p in (centre, shift_sd) if lo < p < hi)})
    total = 0.0
    for a, b in itertools.pairwise(points):
        value, _ = integrate.quad(integrand, a, b, limit=200, epsabs=1e-13)
        total += value
    return total


def first_alarm_bound(shift_sd: float, reference_size: int, arl0: float) -> FirstAlarmBound:
    """The Neyman–Pearson bound above for an upward shift of ``shift_sd`` (in σ of the exact
    normal score) with a reference of ``reference_size`` values and an in-control ARL0."""
    if shift_sd <= 0:
        raise ValueError("the bound is stated for an upward shift (shift_sd > 0)")
    n = reference_size
    allowance = (n + 1) / arl0
    p_first = 0.0
    left = allowance
    p_top = rank_probability(n, n, shift_sd)
    rank = n
    # For an upward location shift P1(r)/P0(r) rises with r: fill from the top rank down.
    while left > 0 and rank >= 0:
        a = min(1.0, left)
        p_first += a * (p_top if rank == n else rank_probability(rank, n, shift_sd))
        left -= a
        rank -= 1
    p_first = min(1.0, p_first)
    return FirstAlarmBound(n, arl0, shift_sd, allowance, p_top, p_first, 2.0 - p_first)


def monte_carlo_p_top(
    shift_sd: float, reference_size: int, runs: int, seed: int = 0
) -> tuple[float, float]:
    """P1(beyond every reference value) by simulation: (estimate, standard error)."""
    rng = np.random.default_rng(seed)
    hits = 0
    done = 0
    while done < runs:
        m = min(20_000, runs - done)
        maxima = rng.standard_normal((m, reference_size)).max(axis=1)
        hits += int((rng.standard_normal(m) + shift_sd > maxima).sum())
        done += m
    p = hits / runs
    return p, math.sqrt(p * (1 - p) / runs)
