"""Windowed G-test of a categorical stream's counts against its reference counts.

Each non-overlapping window of w values is compared with the reference in a 2×K contingency
table (row 1: the reference's counts of the K categories, row 2: the window's; categories
unseen in the reference are pooled as "(other)"), so that the reference's own sampling error
counts. Half a count is added to every cell, so that an empty cell has a finite logarithm
(J. B. S. Haldane 1956, "The estimation and significance of the logarithm of a ratio of
frequencies", Annals of Human Genetics 20:309–311). The likelihood-ratio statistic

    G = 2 Σ_ij O_ij · log(O_ij / E_ij),   E_ij = (row total_i)(column total_j) / N

is referred to χ² with K − 1 degrees of freedom (S. S. Wilks 1938, "The large-sample
distribution of the likelihood ratio for testing composite hypotheses", Ann. Math. Statist.
9:60–62), computed by ``scipy.stats.chi2_contingency(lambda_="log-likelihood")``. The window
alarms when its p-value is below α = window / ARL0, the per-look level that spends the
detector's false-alarm share once in ARL0 observations; equivalently when G exceeds the upper-α
quantile of χ²_{K−1}. The change is dated at the window's first observation.

A window in the reference's proportions passes; a window of a single category alarms:

>>> test = WindowedChiSquare.calibrated(arl0=2000, reference={"A": 50, "B": 50}, window=20)
>>> test.alpha, round(test.threshold, 2)  # χ²₁ at 1%
(0.01, 6.63)
>>> alarms = [test.update(v) for v in ["A", "B"] * 10 + ["A"] * 20]
>>> [i for i, a in enumerate(alarms) if a]
[39]
>>> round(alarms[39].statistic, 1), alarms[39].change_index_estimate
(21.1, 20)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import ClassVar, Self

from scipy import stats

from phase4.monitor.drift.detectors.base import (
    Alarm,
    Detector,
    DetectorMode,
    DetectorSummary,
    Parameter,
)

OTHER = "(other)"


@lru_cache(maxsize=1024)
def _chi2_critical(alpha: float, dof: int) -> float:
    return float(stats.chi2.isf(alpha, dof))


@dataclass(slots=True)
class WindowedChiSquare(Detector[str]):
    """G-test of each non-overlapping window's counts against the reference (see the module)."""

    name: ClassVar[str] = "chi_square"
    mode: ClassVar[DetectorMode] = DetectorMode.WINDOWED
    window: int
    alpha: float
    reference: dict[str, int]
    counts: dict[str, int] = field(default_factory=dict)
    filled: int = 0
    first: int = 0
    n: int = 0
    # G and its degrees of freedom in the last window tested (None before the first)
    last_g: float | None = None
    last_dof: int | None = None

    @classmethod
    def calibrated(
        cls, arl0: float, reference: dict[str, int], window: int = 100
    ) -> WindowedChiSquare:
        return cls(window=window, alpha=min(0.5, window / arl0), reference=dict(reference))

    def update(self, x: str, index: int | None = None) -> Alarm | None:
        i = self.n if index is None else index
        self.n += 1
        if self.filled == 0:
            self.first = i
        key = x if x in self.reference else OTHER
        self.counts[key] = self.counts.get(key, 0) + 1
        self.filled += 1
        if self.filled < self.window:
            return None
        keys = sorted(set(self.reference) | set(self.counts))
        table = [
            [self.reference.get(c, 0) + 0.5 for c in keys],
            [self.counts.get(c, 0) + 0.5 for c in keys],
        ]
        self.counts, self.filled = {}, 0
        if len(keys) < 2:
            return None
        g, p, _, _ = stats.chi2_contingency(table, lambda_="log-likelihood", correction=False)
        dof = len(keys) - 1
        self.last_g, self.last_dof = float(g), dof
        if p < self.alpha:
            return Alarm(
                self.name,
                i,
                float(g),
                _chi2_critical(self.alpha, dof),
                self.first,
                detail={"p_value": float(p)},
            )
        return None

    @property
    def statistic(self) -> float:
        """G of the last window tested (0 before the first)."""
        return self.last_g or 0.0

    @property
    def threshold(self) -> float:
        """The upper-α quantile of χ² at the last window's degrees of freedom (K − 1 for the
        reference's K categories before the first window)."""
        dof = self.last_dof if self.last_dof is not None else max(1, len(self.reference) - 1)
        return _chi2_critical(self.alpha, dof)

    def describe(self) -> DetectorSummary:
        now = f"window {self.filled} of {self.window} filled"
        if self.last_g is not None:
            now += f"; last window G = {self.last_g:.2f} (critical {self.threshold:.2f})"
        return DetectorSummary(
            kind=self.name,
            mode=self.mode,
            statistic=self.statistic,
            threshold=self.threshold,
            unit="G (log-likelihood ratio statistic)",
            parameters=(
                Parameter("window", self.window, "observations", "values per test"),
                Parameter("alpha", self.alpha, "1", "level of each window's test"),
                Parameter("categories", len(self.reference), "1", "categories in the reference"),
            ),
            text=(
                f"G-test of each window of {self.window} values against the reference counts "
                f"of {len(self.reference)} categories (a 2×K table, new values pooled): alarms "
                f"when its p-value is below α = {self.alpha:.3g}"
            ),
            now=now,
        )

    def restarted(self) -> Self:
        return replace(self, counts={}, filled=0, first=0, n=0, last_g=None, last_dof=None)

    def candidate_starts(self) -> set[int]:
        return {self.first} if self.filled else set()
