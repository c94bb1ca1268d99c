"""Windowed Kolmogorov–Smirnov test of probability-integral-transform values against U(0, 1).

Each non-overlapping window of m values u_1..u_m (the PIT Φ(z) of the stream's normal scores,
uniform in control), sorted as u_(1) ≤ … ≤ u_(m), is tested with the Kolmogorov distance

    D = max_j max(j/m − u_(j), u_(j) − (j − 1)/m)

(A. N. Kolmogorov 1933, "Sulla determinazione empirica di una legge di distribuzione", Giornale
dell'Istituto Italiano degli Attuari 4:83–91), and the window alarms when D exceeds the exact
upper-α quantile of D for a sample of effective size

    n_eff = round(n·m / (n + m))

where n is the reference's size: the reference is itself a sample, and the two-sample distance
of samples of sizes n and m has the one-sample distance's distribution at size n·m/(n + m)
(N. V. Smirnov 1939, "On the estimation of the discrepancy between empirical curves of
distribution for two independent samples", Bull. Math. Univ. Moscou 2:3–14). The quantile is
scipy's exact Kolmogorov distribution (``scipy.stats.kstwo``; R. Simard & P. L'Ecuyer 2011,
J. Statistical Software 39(11)). The per-look level is α = window / ARL0, so that the looks
made in ARL0 observations spend the detector's false-alarm share once. The change is dated at
the window's first observation.

A window of ten evenly spread values passes; a window of ten values near 1 (the stream's
values all above the reference's 95th percentile) alarms, dated at its first value:

>>> test = WindowedKS.calibrated(arl0=1000, reference_size=1000, window=10)
>>> test.alpha, ks_effective_size(1000, 10), round(test.critical_d, 3)
(0.01, 10, 0.489)
>>> steady = [0.05 + 0.1 * j for j in range(10)]
>>> high = [0.95 + 0.004 * j for j in range(10)]
>>> alarms = [test.update(u) for u in steady + high]
>>> [i for i, a in enumerate(alarms) if a]
[19]
>>> round(alarms[19].statistic, 2), alarms[19].change_index_estimate
(0.95, 10)
>>> round(test.statistic, 2)  # the last window's distance, until the next window is judged
0.95
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, ClassVar, Self

from scipy import stats

from phase4.monitor.drift.detectors.base import (
    Alarm,
    Detector,
    DetectorMode,
    DetectorSummary,
    Parameter,
    field_names,
    plain_copy,
)

# PIT values are taken rounded to 5 decimals, and saved as integers in these units (5 digits
# each instead of 7: a numeric stream's saved state stays within 2 KB with a window filling)
BUFFER_UNITS = 100_000


def ks_effective_size(reference_size: int, window: int) -> int:
    """round(n·m / (n + m)), at least 1: the one-sample size whose Kolmogorov distribution the
    two-sample distance of a window of m against a reference of n follows (Smirnov 1939)."""
    return max(1, round(reference_size * window / (reference_size + window)))


@lru_cache(maxsize=256)
def ks_critical_distance(alpha: float, n_eff: int) -> float:
    """The exact upper-α quantile of the Kolmogorov distance at sample size ``n_eff``
    (costly, milliseconds: computed once per calibration, not at every window)."""
    return float(stats.kstwo.isf(alpha, n_eff))


@dataclass(slots=True)
class WindowedKS(Detector[float]):
    """Kolmogorov–Smirnov test of each non-overlapping window of PIT values (see the module)."""

    name: ClassVar[str] = "ks"
    mode: ClassVar[DetectorMode] = DetectorMode.WINDOWED
    window: int
    alpha: float
    reference_size: int
    critical_d: float
    buffer: list[float] = field(default_factory=list)
    first: int = 0
    n: int = 0
    # the distance of the last window judged; None before the first (or, in a state saved
    # before it was kept, before the first window since)
    last_d: float | None = None

    @classmethod
    def calibrated(cls, arl0: float, reference_size: int, window: int = 50) -> WindowedKS:
        alpha = min(0.5, window / arl0)
        critical = ks_critical_distance(alpha, ks_effective_size(reference_size, window))
        return cls(window=window, alpha=alpha, reference_size=reference_size, critical_d=critical)

    def update(self, x: float, index: int | None = None) -> Alarm | None:
        i = self.n if index is None else index
        self.n += 1
        if not self.buffer:
            self.first = i
        self.buffer.append(round(x, 5))  # saved as round(x · BUFFER_UNITS)
        if len(self.buffer) < self.window:
            return None
        values = sorted(self.buffer)
        m = len(values)
        d = max(max((j + 1) / m - v, v - j / m) for j, v in enumerate(values))
        self.buffer = []
        self.last_d = d
        if d > self.critical_d:
            p = float(stats.kstwo.sf(d, ks_effective_size(self.reference_size, m)))
            return Alarm(self.name, i, d, self.critical_d, self.first, detail={"p_value": p})
        return None

    @property
    def statistic(self) -> float:
        """The Kolmogorov distance D of the last window judged (0 before the first)."""
        return self.last_d or 0.0

    @property
    def threshold(self) -> float:
        return self.critical_d

    def describe(self) -> DetectorSummary:
        n_eff = ks_effective_size(self.reference_size, self.window)
        now = f"window {len(self.buffer)} of {self.window} filled"
        if self.last_d is not None:
            now += f"; last window D = {self.last_d:.3f} (critical {self.critical_d:.3f})"
        return DetectorSummary(
            kind=self.name,
            mode=self.mode,
            statistic=self.statistic,
            threshold=self.critical_d,
            unit="Kolmogorov distance",
            parameters=(
                Parameter("window", self.window, "observations", "values per test"),
                Parameter("alpha", self.alpha, "1", "level of each window's test"),
                Parameter("n_eff", n_eff, "observations", "effective two-sample size"),
                Parameter("critical_d", self.critical_d, "1", "critical distance"),
            ),
            text=(
                f"Kolmogorov–Smirnov test of each window of {self.window} values against the "
                f"reference of {self.reference_size} (effective size n·m/(n + m) = {n_eff}): "
                f"alarms when the distance D exceeds {self.critical_d:.3f}, the level "
                f"α = {self.alpha:.3g} quantile"
            ),
            now=now,
        )

    def restarted(self) -> Self:
        return replace(self, buffer=[], first=0, n=0, last_d=None)

    def to_dict(self) -> dict[str, Any]:
        d = {
            name: plain_copy(getattr(self, name)) if name != "buffer" else None
            for name in field_names(type(self))
        }
        # exact: round(x, 5) · 10⁵ is within an ulp of an integer, and that integer / 10⁵ is
        # the double nearest the 5-decimal value again
        d["buffer"] = [round(u * BUFFER_UNITS) for u in self.buffer]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        return cls(**{**d, "buffer": [k / BUFFER_UNITS for k in d["buffer"]]})

    def candidate_starts(self) -> set[int]:
        return {self.first} if self.buffer else set()
