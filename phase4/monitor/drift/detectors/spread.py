"""Two-sided CUSUM for a change of spread: Page's scale CUSUM on squared normal scores.

A model's scores becoming more dispersed, or a feature's between-patient spread narrowing, can
leave the mean where it was: the mean CUSUM and EWMA do not see it, and a windowed KS test sees
it slowly. In control the stream's normal scores z_t are N(0, 1); a change of spread by a factor
s makes them N(0, s²). The log-likelihood ratio of one score for N(0, s²) against N(0, 1) is
−log s + z²·(1 − 1/s²)/2, and Page's CUSUM of it is the optimal detector of that change
(E. S. Page 1954, "Continuous inspection schemes", Biometrika 41:100–115; G. V. Moustakides
1986, Ann. Statist. 14:1379–1387). Designed for s = ``ratio`` (×1.5) upward and s = 1/ratio
downward, with y_t = min(|z_t|, z_cap)², in nats:

    S⁺_t = max(0, S⁺_{t−1} + a⁺·(y_t − k⁺)),   a⁺ = (1 − 1/r²)/2,  k⁺ = 2·log r/(1 − 1/r²)
    S⁻_t = max(0, S⁻_{t−1} + c·a⁻·(k⁻ − y_t)), a⁻ = (r² − 1)/2,    k⁻ = 2·log r/(r² − 1)

(the CUSUM of squared deviations of D. M. Hawkins & D. H. Olwell 1998, "Cumulative Sum Charts
and Charting for Quality Improvement", Springer, on normal scores). The chart alarms
when either exceeds h, then restarts. The upper side holds 80% of the detector's false-alarm
rate (``UP_SHARE``: a wider spread is the change that matters most, and the lower side, whose
increments are at most log r per observation, is slow whatever its share), the lower side
20%; h is the upper side's threshold and c = h⁺/h⁻ rescales the lower side to share it. Both
thresholds are solved from the budget by ``phase4.monitor.drift.arl.calibrate_scale_cusum_side``
(Page's integral equation by product integration, with the scores capped as here), never
guessed. The scores are capped at ``z_cap`` (the score of a value beyond every reference value,
±3.09 for 500) because that is all a reference can say about such a value, and so that one
value's weight is bounded whatever the feature's tail.

The alarm has no direction up or down (the quantity neither rose nor fell): its detail says
``{"spread": "wider"}`` or ``"narrower"``. The change is dated at the first observation after
the alarming side last stood at zero.

Scores of ±2 after three at 0: each adds 0.2778·(4 − 1.4597) = 0.706 nats to S⁺, which passes
h = 2 at the third; the three zeros had each added log 1.5 = 0.405 to S⁻.

>>> chart = SpreadCusum(h=2.0, down_scale=1.0, z_cap=3.09)
>>> alarms = [chart.update(z) for z in [0.0, 0.0, 0.0, 2.0, -2.0, 2.0]]
>>> [i for i, a in enumerate(alarms) if a]
[5]
>>> alarms[5].detail, alarms[5].change_index_estimate, round(alarms[5].statistic, 3)
({'spread': 'wider'}, 3, 2.117)
>>> [round(v, 3) for v in chart.replay([0.0] * 5)]  # narrower: log 1.5 per score at 0
[0.405, 0.811, 1.216, 1.622, 2.027]

Calibrated to an in-control ARL of 1,000 with the reference known exactly:

>>> chart = SpreadCusum.calibrated(arl0=1000.0)
>>> round(chart.h, 2), round(chart.down_scale, 3)
(4.26, 0.691)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, ClassVar, Self

from scipy.special import ndtri

from phase4.monitor.drift.arl import ScaleCusumDesign, calibrate_scale_cusum_side
from phase4.monitor.drift.detectors.base import (
    Alarm,
    Detector,
    DetectorMode,
    DetectorSummary,
    Parameter,
)

DESIGN_RATIO = 1.5
# The share of the detector's false-alarm rate held by the upper side (spread ×ratio). A wider
# spread (scores dispersing, a noisier acquisition) is the change that matters most and the one
# the lower side is slow on anyway (its increments are at most log(ratio) per observation):
# docs/STATISTICS.md, "Numeric streams", has the measurement.
UP_SHARE = 0.8


def score_cap(reference_size: int | None) -> float | None:
    """The cap on |z| for a reference of n values: Φ⁻¹(1 − 0.5/n), that of a value beyond every
    reference value (``phase4.monitor.drift.reference.continuous_z_cap``); None: uncapped."""
    return None if reference_size is None else float(ndtri(1 - 0.5 / reference_size))


@lru_cache(maxsize=256)
def _thresholds(
    arl0: float, ratio: float, reference_size: int | None, up_share: float
) -> tuple[float, float]:
    design = ScaleCusumDesign(ratio, score_cap(reference_size))
    # the upper side holds the share up_share of the rate: its ARL0 is arl0 / up_share
    up = calibrate_scale_cusum_side(design, "up", arl0 / up_share, reference_size)
    down = calibrate_scale_cusum_side(design, "down", arl0 / (1 - up_share), reference_size)
    return up, down


def _digits(x: float) -> float:
    return float(f"{x:.7g}")


@lru_cache(maxsize=16)
def _constants(ratio: float) -> tuple[float, float, float, float]:
    r2 = ratio * ratio
    return (
        (1 - 1 / r2) / 2,
        2 * math.log(ratio) / (1 - 1 / r2),
        (r2 - 1) / 2,
        2 * math.log(ratio) / (r2 - 1),
    )


@dataclass(slots=True)
class SpreadCusum(Detector[float]):
    """Two-sided scale CUSUM on normal scores (see the module), reset after each alarm.

    ``h`` is in nats of the upper side's log-likelihood ratio; ``down_scale`` = h⁺/h⁻ rescales
    the lower side onto it. ``z_cap``: the cap on |z| (None: uncapped)."""

    name: ClassVar[str] = "spread"
    mode: ClassVar[DetectorMode] = DetectorMode.SEQUENTIAL
    h: float
    down_scale: float = 1.0
    z_cap: float | None = None
    ratio: float = DESIGN_RATIO
    s_up: float = 0.0
    s_down: float = 0.0
    n: int = 0
    start_up: int = 0
    start_down: int = 0

    @classmethod
    def calibrated(
        cls,
        arl0: float,
        reference_size: int | None = None,
        ratio: float = DESIGN_RATIO,
        up_share: float = UP_SHARE,
    ) -> SpreadCusum:
        """The chart whose expected in-control ARL over references of ``reference_size``
        values (None: known exactly, and scores uncapped) is ``arl0``, the share ``up_share``
        of its false-alarm rate on the upper side (wider) and the rest on the lower."""
        if not 0 < up_share < 1:
            raise ValueError(f"up_share must lie in (0, 1) (got {up_share})")
        up, down = _thresholds(float(arl0), float(ratio), reference_size, float(up_share))
        cap = score_cap(reference_size)
        # seven significant digits (the calibration's own accuracy is ~0.001 nats): a numeric
        # stream's saved state is small, and these are saved as they are used
        return cls(
            h=_digits(up),
            down_scale=_digits(up / down),
            z_cap=None if cap is None else _digits(cap),
            ratio=ratio,
        )

    def update(self, x: float, index: int | None = None) -> Alarm | None:
        i = self.n if index is None else index
        self.n += 1
        a_up, k_up, a_down, k_down = _constants(self.ratio)
        cap = self.z_cap
        y = x * x
        if cap is not None and y > cap * cap:
            y = cap * cap
        was_up, was_down = self.s_up, self.s_down
        up = was_up + a_up * (y - k_up)
        down = was_down + self.down_scale * a_down * (k_down - y)
        if up <= 0.0:
            up = 0.0
        elif was_up == 0.0:
            self.start_up = i
        if down <= 0.0:
            down = 0.0
        elif was_down == 0.0:
            self.start_down = i
        self.s_up, self.s_down = up, down
        if up > self.h or down > self.h:
            wider = up >= down
            alarm = Alarm(
                self.name,
                i,
                up if wider else down,
                self.h,
                self.start_up if wider else self.start_down,
                detail={"spread": "wider" if wider else "narrower"},
            )
            self.s_up = self.s_down = 0.0
            return alarm
        return None

    @property
    def statistic(self) -> float:
        """The larger of the two one-sided sums (the lower one rescaled onto h)."""
        return max(self.s_up, self.s_down)

    @property
    def threshold(self) -> float:
        return self.h

    def describe(self) -> DetectorSummary:
        a_up, k_up, a_down, k_down = _constants(self.ratio)
        cap = "" if self.z_cap is None else f", scores capped at ±{self.z_cap:.2f}"
        return DetectorSummary(
            kind=self.name,
            mode=self.mode,
            statistic=self.statistic,
            threshold=self.h,
            unit="nats",
            parameters=(
                Parameter("h", self.h, "nats", "decision interval"),
                Parameter("ratio", self.ratio, "1", "change of spread aimed at (×, and ÷)"),
                Parameter("down_scale", self.down_scale, "1", "lower side's rescaling h⁺/h⁻"),
                Parameter("k_up", k_up, "z²", "allowance of the upper side"),
                Parameter("k_down", k_down, "z²", "allowance of the lower side"),
            ),
            text=(
                "two-sided CUSUM for a change of spread (Page 1954) on the squared normal "
                f"scores y = z²{cap}: S⁺ = max(0, S⁺ + {a_up:.3f}·(y − {k_up:.3f})) for a "
                f"spread ×{self.ratio:g}, S⁻ = max(0, S⁻ + {self.down_scale * a_down:.3f}·"
                f"({k_down:.3f} − y)) for ÷{self.ratio:g}; alarms when either exceeds "
                f"h = {self.h:.3g} nats"
            ),
            now=f"{self.statistic:.2f} of threshold {self.h:.2f}",
        )

    def restarted(self) -> Self:
        return replace(self, s_up=0.0, s_down=0.0, n=0, start_up=0, start_down=0)

    def to_dict(self) -> dict[str, Any]:
        d = Detector.to_dict(self)  # the fields (no super(): a slotted dataclass is a new class)
        if d["ratio"] == DESIGN_RATIO:  # (from_dict restores the default)
            del d["ratio"]
        return d

    def candidate_starts(self) -> set[int]:
        return {s for s, v in ((self.start_up, self.s_up), (self.start_down, self.s_down)) if v > 0}
