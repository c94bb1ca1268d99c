"""Bernoulli CUSUM for a rise in an event rate from p0 to p1, on integer-scaled increments.

Each observation x_t is an event (1) or not (0). The log-likelihood-ratio CUSUM of
M. R. Reynolds & Z. G. Stoumbos (1999, "A CUSUM chart for monitoring a proportion when
inspecting continuously", J. Quality Technology 31:87–108) adds log(p1/p0) on an event and
log((1 − p1)/(1 − p0)) (negative) on a non-event:

    S_t = max(0, S_{t−1} + x_t·log(p1/p0) + (1 − x_t)·log((1 − p1)/(1 − p0))),   S_0 = 0

phase4 runs it on integers: +up on an event, −down on a non-event, where up : down approximates
log(p1/p0) : −log((1 − p1)/(1 − p0)) with the smaller of the two scaled to 8 units, and alarms
when S_t ≥ h (integer units), then restarts at zero. Integer steps make the chart itself a
finite Markov chain (the approach of D. Brook & D. A. Evans 1972, "An approach to the
probability distribution of cusum run length", Biometrika 59:539–549), so its in-control ARL
is exact (``phase4.monitor.drift.arl.bernoulli_cusum_arl``) and h is the smallest integer that
meets the budget. Statistics and thresholds are reported in nats of log-likelihood ratio:
integer units divided by ``scale`` = down / −log((1 − p1)/(1 − p0)).

The change is dated at the first observation after the sum last stood at zero.

From p0 = 10% to p1 = 30%: log(0.7/0.9) = −0.251 is scaled to −8 units, log(3) = 1.099 to 35.
With h = 100 units, non-events keep the sum at zero and the third event in a row alarms
(35, 70, 105), dated at the first:

>>> chart = BernoulliCusum(p0=0.1, p1=0.3, up=35, down=8, h=100)
>>> alarms = [chart.update(x) for x in [False] * 5 + [True] * 3]
>>> [i for i, a in enumerate(alarms) if a]
[7]
>>> round(alarms[7].statistic, 2), round(alarms[7].threshold, 2), alarms[7].change_index_estimate
(3.3, 3.14, 5)
>>> [round(v, 2) for v in chart.replay([True, False, True, True, True])]
[1.1, 0.85, 1.95, 3.05, 4.15]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import ClassVar, Self

from phase4.monitor.drift.arl import bernoulli_cusum_arl, calibrate_bernoulli_cusum_uncertain
from phase4.monitor.drift.detectors.base import (
    Alarm,
    Detector,
    DetectorMode,
    DetectorSummary,
    Parameter,
)


@lru_cache(maxsize=1024)
def _bernoulli_design(
    p0: float, p1: float, arl0: float, reference: tuple[int, int] | None
) -> tuple[int, int, int]:
    """(up, down, h) of the Bernoulli CUSUM: hundreds of sparse solves, and the same for every
    stream with the same reference counts and budget share (a rare event stream with no events
    in its reference, say, at each of a thousand deployments): solved once per process."""
    design = calibrate_bernoulli_cusum_uncertain(p0, p1, arl0, reference)
    return design.up, design.down, design.h


@dataclass(slots=True)
class BernoulliCusum(Detector[bool]):
    """Bernoulli CUSUM for a rise in an event rate from p0 to p1 (see the module)."""

    name: ClassVar[str] = "bernoulli_cusum"
    mode: ClassVar[DetectorMode] = DetectorMode.SEQUENTIAL
    p0: float
    p1: float
    up: int
    down: int
    h: int
    s: int = 0
    n: int = 0
    start: int = 0

    @classmethod
    def calibrated(
        cls, p0: float, p1: float, arl0: float, reference: tuple[int, int] | None = None
    ) -> BernoulliCusum:
        """The chart whose in-control ARL is at least ``arl0``: at the rate p0, or, when p0 was
        estimated from ``reference`` = (trials, events), in expectation over its posterior."""
        up, down, h = _bernoulli_design(
            float(p0), float(p1), float(arl0), tuple(reference) if reference else None
        )
        return cls(p0=p0, p1=p1, up=up, down=down, h=h)

    def arl(self, p: float) -> float:
        """The exact ARL of this chart at event rate ``p``."""
        return bernoulli_cusum_arl(self.up, self.down, self.h, p)

    def update(self, x: bool, index: int | None = None) -> Alarm | None:
        i = self.n if index is None else index
        self.n += 1
        was = self.s
        self.s = max(0, self.s + (self.up if x else -self.down))
        if was == 0 and self.s > 0:
            self.start = i
        if self.s >= self.h:
            alarm = Alarm(
                self.name,
                i,
                self.s / self.scale,
                self.h / self.scale,
                self.start,
                direction="up",
                detail={"p0": self.p0, "p1": self.p1},
            )
            self.s = 0
            return alarm
        return None

    @property
    def scale(self) -> float:
        """Integer units per nat of log-likelihood ratio (statistics are reported in nats)."""
        return self.down / -math.log((1 - self.p1) / (1 - self.p0))

    @property
    def statistic(self) -> float:
        """The sum S, in nats of log-likelihood ratio."""
        return self.s / self.scale

    @property
    def threshold(self) -> float:
        """h, in nats of log-likelihood ratio (the chart alarms when S reaches it)."""
        return self.h / self.scale

    def describe(self) -> DetectorSummary:
        return DetectorSummary(
            kind=self.name,
            mode=self.mode,
            statistic=self.statistic,
            threshold=self.threshold,
            unit="nats (log-likelihood ratio)",
            parameters=(
                Parameter("p0", self.p0, "1", "in-control event rate the chart was designed on"),
                Parameter("p1", self.p1, "1", "event rate the chart is designed to detect"),
                Parameter("up", self.up, "integer units", "step on an event"),
                Parameter("down", self.down, "integer units", "step down on a non-event"),
                Parameter("h", self.h, "integer units", "decision interval"),
                Parameter("scale", self.scale, "integer units per nat", "integer scaling"),
            ),
            text=(
                "Bernoulli CUSUM for a rise in the event rate (Reynolds & Stoumbos 1999) from "
                f"p0 = {self.p0:.2%} to p1 = {self.p1:.2%}: the sum of log-likelihood ratios "
                f"(+{self.up} units per event, −{self.down} per non-event, {self.scale:.3g} "
                f"units per nat) alarms when it reaches h = {self.threshold:.3g} nats"
            ),
            now=f"{self.statistic:.2f} of threshold {self.threshold:.2f}",
        )

    def restarted(self) -> Self:
        return replace(self, s=0, n=0, start=0)

    def candidate_starts(self) -> set[int]:
        return {self.start} if self.s > 0 else set()
