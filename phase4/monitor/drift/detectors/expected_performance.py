"""Chart of a performance metric estimated without labels, one window at a time.

``phase4.monitor.drift.cbpe.PerformanceEstimator`` turns each window of W unlabelled records
into an expected sensitivity or specificity (confidence-based performance estimation, after
NannyML's CBPE). This chart takes those window estimates as its observations x and
standardises each against the spread of estimates over windows drawn from the labelled
reference period (mean m, standard deviation s, bootstrap):

    z = (x − m) / s,   alarm when |z| > z_limit = Φ⁻¹(1 − α/2),   α = W / ARL0

a two-sided Shewhart chart (W. A. Shewhart 1931, "Economic Control of Quality of Manufactured
Product", Van Nostrand) on the window estimates, with the per-look level that spends the
metric's false-alarm share once in ARL0 records. (NannyML puts its limits at m ± 3s whatever
the number of looks.) The estimator dates the change at the window's first record.

With m = 0.80, s = 0.05 and z_limit = 3, an estimate of 0.70 (z = −2) passes and one of
0.62 (z = −3.6) alarms:

>>> chart = ExpectedPerformanceChart(metric="sensitivity", mean=0.80, sd=0.05, z_limit=3.0)
>>> [chart.update(x) is not None for x in (0.78, 0.70, 0.62)]
[False, False, True]
>>> round(chart.statistic, 2), chart.threshold
(3.6, 3.0)
>>> [round(v, 2) for v in chart.replay([0.78, 0.70, 0.62])]
[0.4, 2.0, 3.6]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import ClassVar, Self

from phase4.monitor.drift.detectors.base import (
    Alarm,
    Detector,
    DetectorMode,
    DetectorSummary,
    Parameter,
)


@dataclass(slots=True)
class ExpectedPerformanceChart(Detector[float]):
    """Standardised window estimates of one metric (sensitivity, specificity) against their
    reference spread (see the module)."""

    name: ClassVar[str] = "cbpe"
    mode: ClassVar[DetectorMode] = DetectorMode.WINDOWED
    metric: str
    mean: float
    sd: float
    z_limit: float
    z: float | None = None  # the last window's standardised estimate (None before the first)
    n: int = 0  # windows taken

    def update(self, x: float, index: int | None = None) -> Alarm | None:
        i = self.n if index is None else index
        self.n += 1
        if math.isnan(x) or self.sd <= 0:  # no positive (negative) expected in the window
            return None
        z = (x - self.mean) / self.sd
        self.z = z
        if abs(z) > self.z_limit:
            return Alarm(
                self.name,
                i,
                z,
                self.z_limit,
                i,
                direction="up" if z > 0 else "down",
                detail={
                    "metric": self.metric,
                    "estimate": x,
                    "reference_mean": self.mean,
                    "reference_sd": self.sd,
                },
            )
        return None

    @property
    def statistic(self) -> float:
        """|z| of the last window (0 before the first)."""
        return abs(self.z) if self.z is not None else 0.0

    @property
    def threshold(self) -> float:
        return self.z_limit

    def describe(self) -> DetectorSummary:
        now = "no window estimated yet"
        if self.z is not None:
            now = f"last window z = {self.z:+.2f} (limits ±{self.z_limit:.2f})"
        return DetectorSummary(
            kind=self.name,
            mode=self.mode,
            statistic=self.statistic,
            threshold=self.z_limit,
            unit="reference SD of the window estimate",
            parameters=(
                Parameter("mean", self.mean, "1", f"reference mean of expected {self.metric}"),
                Parameter("sd", self.sd, "1", "reference SD of a window's estimate"),
                Parameter("z_limit", self.z_limit, "SD", "control limit on |z|"),
            ),
            text=(
                f"expected {self.metric} of each window without labels (CBPE), standardised "
                f"against the reference windows (mean {self.mean:.3f}, SD {self.sd:.3f}): "
                f"alarms when |z| exceeds {self.z_limit:.2f}"
            ),
            now=now,
        )

    def restarted(self) -> Self:
        return replace(self, z=None, n=0)

    def candidate_starts(self) -> set[int]:
        return set()
