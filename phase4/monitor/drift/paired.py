"""Paired comparisons of two versions of a model on the same cases: the statistics of the
revalidation gate (docs/REVALIDATION.md).

Both versions read the same studies, so their results are paired and the comparison must use
the pairing (it is far more precise than two independent samples):

- a **difference of paired proportions** (sensitivity, specificity, the rate of positive calls)
  with the **score interval of Tango (1998)**, "Equivalence test and confidence interval for
  the difference in proportions for the paired-sample design", Statistics in Medicine
  17:891-908, obtained by inverting his score test (restricted maximum likelihood of the
  discordant cell under each hypothesised difference), and **McNemar's exact test** (McNemar
  1947, Psychometrika 12:153-157: the conditional binomial test on the discordant pairs);
- a **difference of positive predictive values** by the **paired bootstrap** over cases
  (Efron & Tibshirani 1993, An Introduction to the Bootstrap, ch. 13, percentile interval):
  the PPVs' denominators (each version's positive calls) differ and overlap, so PPV is not a
  paired proportion; resampling whole cases keeps every correlation. (The closed-form
  alternative is Moskowitz & Pepe 2006, Clinical Trials 3:272-279; the bootstrap needs no
  delta-method approximation and matches the Dice interval's method.)
- a **difference of mean Dice** by the same paired bootstrap.

Every interval is two-sided 95 %; a margin ``m`` is met (non-inferiority) when the lower bound
of candidate − accepted exceeds −m, i.e. a one-sided test at 2.5 % (CPMP/EWP/482/99; FDA 2016
guidance on non-inferiority trials). The bootstrap uses ``BOOTSTRAP_B`` = 2,000 resamples from
a fixed seed, so the same evidence always gives the same numbers.

No SQL, no HTTP: cases in, numbers out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.special import ndtri
from scipy.stats import binom

BOOTSTRAP_B = 2000
BOOTSTRAP_SEED = 20260101
CONFIDENCE = 0.95


@dataclass(frozen=True)
class PairedCase:
    """One case read by both versions: truth (None when unlabelled), each version's call (0/1)
    and, when measured, each version's Dice against the reference segmentation."""

    truth: int | None
    accepted_call: int
    candidate_call: int
    accepted_dice: float | None = None
    candidate_dice: float | None = None


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float


def _z(confidence: float = CONFIDENCE) -> float:
    return float(ndtri(0.5 + confidence / 2))


def wilson(successes: int, n: int, confidence: float = CONFIDENCE) -> Interval:
    """Wilson's score interval of one proportion (Wilson 1927).

    >>> i = wilson(45, 50)
    >>> round(i.estimate, 3), round(i.low, 3), round(i.high, 3)
    (0.9, 0.786, 0.957)
    """
    if n <= 0:
        raise ValueError("no cases")
    z = _z(confidence)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half))


def _tango_z(b: int, c: int, n: int, delta: float) -> float:
    """Tango's score statistic for H0: p_b - p_c = delta (b: first version only right, c:
    second only)."""
    a_ = 2.0 * n
    b_ = -b - c + (2.0 * n - b + c) * delta
    c_ = -c * delta * (1.0 - delta)
    q21 = (math.sqrt(max(b_ * b_ - 4 * a_ * c_, 0.0)) - b_) / (2 * a_)
    numerator = b - c - n * delta
    variance = n * (2 * q21 + delta * (1 - delta))
    if numerator == 0:
        return 0.0
    if variance <= 0:
        return math.copysign(math.inf, numerator)
    return numerator / math.sqrt(variance)


def _solve(f: Callable[[float], float], lo: float, hi: float) -> float:
    """The root of a decreasing ``f`` on [lo, hi] by bisection (f(lo) >= 0 >= f(hi))."""
    for _ in range(200):
        mid = (lo + hi) / 2
        if f(mid) > 0:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def tango_interval(b: int, c: int, n: int, confidence: float = CONFIDENCE) -> Interval:
    """Tango's (1998) score interval for the paired difference (b - c) / n.

    ``b``: pairs where the first version succeeds and the second does not; ``c``: the reverse;
    ``n``: all pairs. The bounds are where the score statistic equals ∓z.

    >>> i = tango_interval(12, 3, 100)
    >>> round(i.estimate, 3), round(i.low, 4), round(i.high, 4)
    (0.09, 0.016, 0.1737)
    >>> tango_interval(0, 0, 20).low < 0 < tango_interval(0, 0, 20).high
    True
    """
    if n <= 0 or b < 0 or c < 0 or b + c > n:
        raise ValueError("need 0 <= b, c and b + c <= n, n > 0")
    z = _z(confidence)
    est = (b - c) / n
    eps = 1e-12
    low = -1.0 if est <= -1 + eps else _solve(lambda d: _tango_z(b, c, n, d) - z, -1 + eps, est)
    high = 1.0 if est >= 1 - eps else _solve(lambda d: _tango_z(b, c, n, d) + z, est, 1 - eps)
    return Interval(est, low, high)


def mcnemar_exact(b: int, c: int) -> float:
    """McNemar's exact two-sided p-value: the discordant pairs are Binomial(b + c, 1/2) under
    no difference.

    >>> round(mcnemar_exact(12, 3), 4)
    0.0352
    >>> mcnemar_exact(0, 0)
    1.0
    """
    k = b + c
    if k == 0:
        return 1.0
    return float(min(1.0, 2 * binom.cdf(min(b, c), k, 0.5)))


def bootstrap_difference(
    cases: Sequence[Any],
    statistic: Callable[[np.ndarray], tuple[float, float] | None],
    index_count: int,
    *,
    b: int = BOOTSTRAP_B,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> tuple[Interval, Interval, Interval] | None:
    """Percentile bootstrap of (accepted, candidate, candidate - accepted) over resampled cases.

    ``statistic(indices)`` gives (accepted, candidate) on the cases at ``indices``, or None when
    undefined there (a resample without a positive call has no PPV: it is dropped, as in
    Efron & Tibshirani §6.6). None when the statistic is undefined on the cases themselves."""
    del cases
    full = statistic(np.arange(index_count))
    if full is None or index_count == 0:
        return None
    rng = np.random.default_rng(seed)
    acc, cand, diff = [], [], []
    for _ in range(b):
        got = statistic(rng.integers(0, index_count, index_count))
        if got is None:
            continue
        acc.append(got[0])
        cand.append(got[1])
        diff.append(got[1] - got[0])
    if len(diff) < b // 2:
        return None
    tail = (1 - confidence) / 2 * 100

    def ci(values: list[float], estimate: float) -> Interval:
        lo, hi = np.percentile(values, [tail, 100 - tail])
        return Interval(float(estimate), float(lo), float(hi))

    return ci(acc, full[0]), ci(cand, full[1]), ci(diff, full[1] - full[0])


# --- the criteria ----------------------------------------------------------------------------

CRITERIA = ("sensitivity", "specificity", "ppv", "dice", "positive_rate_change")
UNITS = {
    "sensitivity": "proportion",
    "specificity": "proportion",
    "ppv": "proportion",
    "dice": "Dice coefficient",
    "positive_rate_change": "proportion of studies called positive",
}


@dataclass
class CriterionResult:
    """One criterion: each version's estimate, the difference (candidate − accepted), each with
    its 95 % interval, the margin and the verdict ('pass', 'fail', 'not evaluable')."""

    criterion: str
    unit: str
    n: int
    margin: float
    accepted: Interval | None
    candidate: Interval | None
    difference: Interval | None
    verdict: str
    method: str
    p_value: float | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Comparison:
    results: list[CriterionResult] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """'pass' when every declared criterion passes; 'fail' otherwise."""
        ok = self.results and all(r.verdict == "pass" for r in self.results)
        return "pass" if ok else "fail"

    def failed(self) -> list[str]:
        return [r.criterion for r in self.results if r.verdict != "pass"]

    def as_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "results": [r.as_dict() for r in self.results]}


def non_inferior(difference: Interval, margin: float) -> bool:
    """Non-inferior when the lower bound of candidate − accepted exceeds −margin.

    >>> non_inferior(Interval(-0.01, -0.04, 0.02), 0.05)
    True
    >>> non_inferior(Interval(-0.01, -0.06, 0.02), 0.05)
    False
    """
    return difference.low > -margin


def paired_proportion(
    pairs: Sequence[tuple[int, int]], criterion: str, margin: float, *, equivalence: bool = False
) -> CriterionResult:
    """(accepted success, candidate success) pairs → Wilson intervals for each version, Tango's
    for the difference, McNemar's exact p. ``equivalence``: both bounds within ±margin."""
    n = len(pairs)
    unit = UNITS[criterion]
    tango = "Tango (1998) score interval; McNemar exact test"
    if n == 0:
        return CriterionResult(
            criterion, unit, 0, margin, None, None, None, "not evaluable", tango, note="no cases"
        )
    b = sum(1 for a, c in pairs if c and not a)  # candidate right only
    c = sum(1 for a, c_ in pairs if a and not c_)  # accepted right only
    diff = tango_interval(b, c, n)
    within = diff.low > -margin and diff.high < margin
    ok = within if equivalence else non_inferior(diff, margin)
    return CriterionResult(
        criterion,
        unit,
        n,
        margin,
        wilson(sum(a for a, _ in pairs), n),
        wilson(sum(c_ for _, c_ in pairs), n),
        diff,
        "pass" if ok else "fail",
        tango,
        p_value=mcnemar_exact(b, c),
    )


def _ppv(cases: Sequence[PairedCase], margin: float, b: int, seed: int) -> CriterionResult:
    labelled = [x for x in cases if x.truth is not None]
    method = f"paired percentile bootstrap over cases, B={b}"
    truth = np.array([x.truth for x in labelled], dtype=float)
    acc = np.array([x.accepted_call for x in labelled], dtype=float)
    cand = np.array([x.candidate_call for x in labelled], dtype=float)

    def stat(ix: np.ndarray) -> tuple[float, float] | None:
        a_pos, c_pos = acc[ix].sum(), cand[ix].sum()
        if a_pos == 0 or c_pos == 0:
            return None
        return float((acc[ix] * truth[ix]).sum() / a_pos), float(
            (cand[ix] * truth[ix]).sum() / c_pos
        )

    got = bootstrap_difference(labelled, stat, len(labelled), b=b, seed=seed)
    n = int(((acc + cand) > 0).sum()) if labelled else 0
    if got is None:
        return CriterionResult(
            "ppv", UNITS["ppv"], n, margin, None, None, None, "not evaluable", method,
            note="a version made no positive call",
        )  # fmt: skip
    a, c, d = got
    return CriterionResult(
        "ppv", UNITS["ppv"], n, margin, a, c, d, "pass" if non_inferior(d, margin) else "fail",
        method,
    )  # fmt: skip


def _dice(cases: Sequence[PairedCase], margin: float, b: int, seed: int) -> CriterionResult:
    both = [
        (x.accepted_dice, x.candidate_dice)
        for x in cases
        if x.accepted_dice is not None and x.candidate_dice is not None
    ]
    method = f"paired percentile bootstrap of the mean, B={b}"
    acc = np.array([p[0] for p in both], dtype=float)
    cand = np.array([p[1] for p in both], dtype=float)

    def stat(ix: np.ndarray) -> tuple[float, float] | None:
        return float(acc[ix].mean()), float(cand[ix].mean())

    got = bootstrap_difference(both, stat, len(both), b=b, seed=seed) if both else None
    if got is None:
        return CriterionResult(
            "dice", UNITS["dice"], len(both), margin, None, None, None, "not evaluable", method,
            note="no case with both versions' Dice",
        )  # fmt: skip
    a, c, d = got
    return CriterionResult(
        "dice", UNITS["dice"], len(both), margin, a, c, d,
        "pass" if non_inferior(d, margin) else "fail", method,
    )  # fmt: skip


def compare(
    cases: Sequence[PairedCase],
    margins: dict[str, float],
    *,
    b: int = BOOTSTRAP_B,
    seed: int = BOOTSTRAP_SEED,
) -> Comparison:
    """Evaluate each declared criterion (``margins``: criterion → margin; absent: not declared).

    Sensitivity on cases with truth 1, specificity on truth 0 (a correct call is 0), PPV on the
    labelled cases, Dice on cases with both Dice, and the change in the rate of positive calls
    on every case, labelled or not (an equivalence criterion: the whole interval within ±m).

    >>> cases = [PairedCase(1, 1, 1)] * 40 + [PairedCase(0, 0, 0)] * 50 + [PairedCase(0, 0, 1)] * 10
    >>> out = compare(cases, {"sensitivity": 0.10, "specificity": 0.05})
    >>> [(r.criterion, r.verdict) for r in out.results], out.verdict
    ([('sensitivity', 'pass'), ('specificity', 'fail')], 'fail')
    """
    unknown = set(margins) - set(CRITERIA)
    if unknown:
        raise ValueError(f"unknown criteria: {', '.join(sorted(unknown))}")
    out = Comparison()
    for name in CRITERIA:
        if name not in margins:
            continue
        m = float(margins[name])
        if name == "sensitivity":
            pairs = [(x.accepted_call, x.candidate_call) for x in cases if x.truth == 1]
            out.results.append(paired_proportion(pairs, name, m))
        elif name == "specificity":
            pairs = [(1 - x.accepted_call, 1 - x.candidate_call) for x in cases if x.truth == 0]
            out.results.append(paired_proportion(pairs, name, m))
        elif name == "ppv":
            out.results.append(_ppv(cases, m, b, seed))
        elif name == "dice":
            out.results.append(_dice(cases, m, b, seed))
        else:
            pairs = [(x.accepted_call, x.candidate_call) for x in cases]
            out.results.append(paired_proportion(pairs, name, m, equivalence=True))
    return out
