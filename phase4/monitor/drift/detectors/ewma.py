"""Two-sided EWMA of normal scores, with asymptotic limits.

On normal scores z_t (N(0, 1) in control), with smoothing constant λ and limit multiplier L:

    Z_t = λ·z_t + (1 − λ)·Z_{t−1},   Z_0 = 0,   alarm when |Z_t| > L·√(λ / (2 − λ))

then Z restarts at zero. L·√(λ/(2−λ)) is L times the asymptotic standard deviation of Z_t in
control: the chart of S. W. Roberts (1959, "Control chart tests based on geometric moving
averages", Technometrics 1:239–250) with the asymptotic limits whose run lengths J. M. Lucas &
M. S. Saccucci evaluate by a Markov chain (1990, "Exponentially weighted moving average control
schemes: properties and enhancements", Technometrics 32:1–12). L is solved from the false-alarm
budget by ``phase4.monitor.drift.arl.calibrate_ewma_l``.

The change is dated at the start of the current excursion: the last time Z crossed (or left)
zero before the alarm.

With λ = 0.2 and L = 3 the limit is 3·√(0.2/1.8) = 1. A step of +2σ after three in-control
values: Z = 0.4, 0.72, 0.976, 1.1808 alarms at the fourth shifted value, dated at the first:

>>> chart = Ewma(multiplier_l=3.0, lam=0.2)
>>> round(chart.control_limit, 6)
1.0
>>> alarms = [chart.update(z) for z in [0.0, 0.0, 0.0] + [2.0] * 5]
>>> [i for i, a in enumerate(alarms) if a]
[6]
>>> round(alarms[6].statistic, 4), alarms[6].direction, alarms[6].change_index_estimate
(1.1808, 'up', 3)
>>> [round(v, 4) for v in chart.replay([0.0, 0.0, 0.0] + [2.0] * 5)]
[0.0, 0.0, 0.0, 0.4, 0.72, 0.976, 1.1808, 0.4]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import ClassVar, Self

from phase4.monitor.drift.arl import calibrate_ewma_l
from phase4.monitor.drift.detectors.base import (
    Alarm,
    Detector,
    DetectorMode,
    DetectorSummary,
    Parameter,
)


@lru_cache(maxsize=256)
def _ewma_l(arl0: float, lam: float, reference_size: int | None) -> float:
    return calibrate_ewma_l(arl0, lam, reference_size)


@dataclass(slots=True)
class Ewma(Detector[float]):
    """Two-sided EWMA on normal scores (see the module). ``multiplier_l`` is L, the limit in
    asymptotic standard deviations of Z; the limit itself is :attr:`control_limit`."""

    name: ClassVar[str] = "ewma"
    mode: ClassVar[DetectorMode] = DetectorMode.SEQUENTIAL
    multiplier_l: float
    lam: float = 0.1
    z: float = 0.0  # the signed EWMA Z_t: the shift from the reference, in reference SD
    n: int = 0
    last_cross: int = 0

    @classmethod
    def calibrated(cls, arl0: float, lam: float = 0.1, reference_size: int | None = None) -> Ewma:
        """The chart whose expected in-control ARL, over references of ``reference_size``
        values (None: a reference known exactly), is ``arl0``."""
        return cls(multiplier_l=_ewma_l(float(arl0), lam, reference_size), lam=lam)

    @property
    def control_limit(self) -> float:
        """The limit on |Z|: L·√(λ / (2 − λ))."""
        return self.multiplier_l * math.sqrt(self.lam / (2 - self.lam))

    def update(self, x: float, index: int | None = None) -> Alarm | None:
        i = self.n if index is None else index
        self.n += 1
        previous = self.z
        lam = self.lam
        self.z = lam * x + (1 - lam) * previous
        if previous == 0.0 or (previous > 0) != (self.z > 0):
            self.last_cross = i
        limit = self.multiplier_l * math.sqrt(lam / (2 - lam))  # control_limit, inlined
        if abs(self.z) > limit:
            alarm = Alarm(
                self.name,
                i,
                self.z,
                limit,
                self.last_cross,
                direction="up" if self.z > 0 else "down",
            )
            self.z = 0.0
            return alarm
        return None

    @property
    def statistic(self) -> float:
        """|Z|: the chart is two-sided (the signed value is :attr:`z`)."""
        return abs(self.z)

    @property
    def threshold(self) -> float:
        return self.control_limit

    def describe(self) -> DetectorSummary:
        limit = self.control_limit
        return DetectorSummary(
            kind=self.name,
            mode=self.mode,
            statistic=self.statistic,
            threshold=limit,
            unit="reference SD",
            parameters=(
                Parameter("lambda", self.lam, "1", "smoothing constant (weight of each value)"),
                Parameter("L", self.multiplier_l, "SD of Z", "limit multiplier"),
                Parameter("limit", limit, "reference SD", "control limit on |Z|"),
            ),
            text=(
                "EWMA of the stream's normal scores (Roberts 1959; Lucas & Saccucci 1990): "
                f"Z = λz + (1 − λ)Z with λ = {self.lam:g}; alarms when |Z| exceeds "
                f"L·√(λ/(2 − λ)) = {limit:.3g} reference SD (L = {self.multiplier_l:.3g})"
            ),
            now=f"{self.z:+.3f} (limits ±{limit:.3f})",
        )

    def restarted(self) -> Self:
        return replace(self, z=0.0, n=0, last_cross=0)

    def candidate_starts(self) -> set[int]:
        return {self.last_cross} if self.z != 0.0 else set()
