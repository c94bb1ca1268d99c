"""Two-sided tabular CUSUM of normal scores.

On normal scores z_t (N(0, 1) in control, ``phase4.monitor.drift.reference``), with allowance
k and decision interval h, both in reference standard deviations:

    S⁺_t = max(0, S⁺_{t−1} + z_t − k),    S⁻_t = max(0, S⁻_{t−1} − z_t − k),    S±_0 = 0

and the chart alarms when S⁺_t > h or S⁻_t > h, then restarts at zero. This is Page's
cumulative-sum scheme (E. S. Page 1954, "Continuous inspection schemes", Biometrika 41:100–115)
run as two one-sided charts, the tabular form whose average run lengths Lucas & Crosier tabulate
(J. M. Lucas & R. B. Crosier 1982, Technometrics 24:199–205, Table 1). h is solved from the
false-alarm budget by ``phase4.monitor.drift.arl.calibrate_cusum_h`` (Page's integral equation),
never guessed.

The change is dated at the first observation after the alarming side last stood at zero: the
maximum-likelihood change point for a step shift (Page 1954; D. M. Hawkins & D. H. Olwell 1998,
"Cumulative Sum Charts and Charting for Quality Improvement", Springer).

A step of +1.5σ after three in-control values: S⁺ rises by 1.5 − 0.5 = 1 per observation and
passes h = 4 at the fifth shifted value; the change is dated at the first of them (index 3).

>>> chart = Cusum(h=4.0, k=0.5)
>>> alarms = [chart.update(z) for z in [0.0, 0.0, 0.0] + [1.5] * 6]
>>> [i for i, a in enumerate(alarms) if a]
[7]
>>> alarm = alarms[7]
>>> alarm.statistic, alarm.threshold, alarm.direction, alarm.change_index_estimate
(5.0, 4.0, 'up', 3)
>>> chart.replay([0.0, 0.0, 0.0] + [1.5] * 6)
[0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 1.0]

Calibrated to an in-control ARL of 465, h is 5 (Lucas & Crosier's Table 1, k = 0.5):

>>> round(Cusum.calibrated(arl0=465.0).h, 2)
5.0
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import ClassVar, Self

from phase4.monitor.drift.arl import calibrate_cusum_h
from phase4.monitor.drift.detectors.base import (
    Alarm,
    Detector,
    DetectorMode,
    DetectorSummary,
    Parameter,
)


@lru_cache(maxsize=256)
def _cusum_h(arl0: float, k: float, reference_size: int | None) -> float:
    return calibrate_cusum_h(arl0, k, reference_size)


@dataclass(slots=True)
class Cusum(Detector[float]):
    """Two-sided tabular CUSUM on normal scores (see the module), reset after each alarm."""

    name: ClassVar[str] = "cusum"
    mode: ClassVar[DetectorMode] = DetectorMode.SEQUENTIAL
    h: float
    k: float = 0.5
    s_hi: float = 0.0
    s_lo: float = 0.0
    n: int = 0
    start_hi: int = 0
    start_lo: int = 0

    @classmethod
    def calibrated(cls, arl0: float, k: float = 0.5, reference_size: int | None = None) -> Cusum:
        """The chart whose expected in-control ARL, over references of ``reference_size``
        values (None: a reference known exactly), is ``arl0``."""
        return cls(h=_cusum_h(float(arl0), k, reference_size), k=k)

    def update(self, x: float, index: int | None = None) -> Alarm | None:
        i = self.n if index is None else index
        self.n += 1
        k = self.k
        was_hi, was_lo = self.s_hi, self.s_lo
        hi = was_hi + x - k
        lo = was_lo - x - k
        # max(0, ·) written out: this runs on every observation of every numeric stream
        if hi <= 0.0:
            hi = 0.0
        elif was_hi == 0.0:
            self.start_hi = i
        if lo <= 0.0:
            lo = 0.0
        elif was_lo == 0.0:
            self.start_lo = i
        self.s_hi, self.s_lo = hi, lo
        if hi > self.h or lo > self.h:
            up = self.s_hi >= self.s_lo
            alarm = Alarm(
                self.name,
                i,
                self.s_hi if up else self.s_lo,
                self.h,
                self.start_hi if up else self.start_lo,
                direction="up" if up else "down",
            )
            self.s_hi = self.s_lo = 0.0
            return alarm
        return None

    @property
    def statistic(self) -> float:
        """The larger of the two one-sided sums, S⁺ and S⁻."""
        return max(self.s_hi, self.s_lo)

    @property
    def threshold(self) -> float:
        return self.h

    def describe(self) -> DetectorSummary:
        return DetectorSummary(
            kind=self.name,
            mode=self.mode,
            statistic=self.statistic,
            threshold=self.h,
            unit="reference SD",
            parameters=(
                Parameter("h", self.h, "reference SD", "decision interval"),
                Parameter("k", self.k, "reference SD", "allowance (half the shift aimed at)"),
            ),
            text=(
                "two-sided CUSUM of the stream's normal scores (Page 1954): "
                "S⁺ = max(0, S⁺ + z − k) and S⁻ = max(0, S⁻ − z − k) with "
                f"k = {self.k:g}; alarms when either exceeds h = {self.h:.3g} reference SD"
            ),
            now=f"{self.statistic:.2f} of threshold {self.h:.2f}",
        )

    def restarted(self) -> Self:
        return replace(self, s_hi=0.0, s_lo=0.0, n=0, start_hi=0, start_lo=0)

    def candidate_starts(self) -> set[int]:
        return {s for s, v in ((self.start_hi, self.s_hi), (self.start_lo, self.s_lo)) if v > 0}
