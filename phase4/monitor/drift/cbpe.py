"""Performance without labels: confidence-based performance estimation (the idea of NannyML's CBPE).

If the AI's score is calibrated — p = P(malignant | score) — then over a window of records with
binary calls ŷ the expected confusion matrix is known without any label:

    E[TP] = Σ p·ŷ,   E[FN] = Σ p·(1-ŷ),   E[TN] = Σ (1-p)(1-ŷ),   E[FP] = Σ (1-p)·ŷ
    expected sensitivity = Σ p·ŷ / Σ p,   expected specificity = Σ (1-p)(1-ŷ) / Σ (1-p)

The calibration is fitted once, by isotonic regression of confirmed truth on score (B. Zadrozny
& C. Elkan 2002, "Transforming classifier scores into accurate multiclass probability
estimates", Proc. KDD '02:694–699), from the first labelled outcomes. The estimate moves when
the case mix or the score distribution moves (more borderline scores mean more expected
errors): exactly the early warning wanted while labels are weeks away. It cannot see a change
in P(malignant | score) itself — that needs the labelled-performance streams.

Each window's estimate is compared with the spread of estimates over windows drawn (bootstrap)
from the labelled reference period, by one chart per metric
(``phase4.monitor.drift.detectors.expected_performance``): the limit is z = Φ⁻¹(1 − α/2) with
α = window / ARL0, the per-look level of the false-alarm budget, as for the other windowed
tests. The spread is widened by √(1 + W/N): a window's estimate minus the reference mean varies
as sd²·(1 + W/N), the reference mean being itself an estimate from the N labelled pairs on which
the calibration was fitted.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from scipy.special import ndtri

from phase4.monitor.drift.detectors.base import Alarm
from phase4.monitor.drift.detectors.expected_performance import ExpectedPerformanceChart

BOOTSTRAP_WINDOWS = 400
# the metrics estimated, in the order expected_rates returns them
METRICS = ("sensitivity", "specificity")


def _interp(xs: list[float], ys: list[float], x: float) -> float:
    if x <= xs[0]:
        return ys[0]
    if x >= xs[-1]:
        return ys[-1]
    j = bisect_right(xs, x)
    t = (x - xs[j - 1]) / (xs[j] - xs[j - 1])
    return ys[j - 1] + t * (ys[j] - ys[j - 1])


def expected_rates(p: np.ndarray, yhat: np.ndarray) -> tuple[float, float]:
    """Expected sensitivity and specificity of calls ``yhat`` given probabilities ``p``."""
    pos = float(p.sum())
    neg = float((1 - p).sum())
    sens = float((p * yhat).sum()) / pos if pos > 0 else math.nan
    spec = float(((1 - p) * (1 - yhat)).sum()) / neg if neg > 0 else math.nan
    return sens, spec


@dataclass
class PerformanceEstimator:
    """Expected sensitivity and specificity per window of unlabelled records, each watched by
    its :class:`ExpectedPerformanceChart` (the estimator is the charts' front end: it turns
    records into window estimates; the charts decide)."""

    calibration_x: list[float]
    calibration_y: list[float]
    window: int
    labelled_pairs: int
    charts: dict[str, ExpectedPerformanceChart]
    # the current window's calibrated probabilities and calls
    probs: list[float] = field(default_factory=list)
    calls: list[int] = field(default_factory=list)
    first: int = 0
    n: int = 0

    @classmethod
    def fit(
        cls,
        scores: list[float],
        truths: list[bool],
        calls: list[bool],
        *,
        window: int,
        arl0: float,
        seed: int = 0,
    ) -> PerformanceEstimator:
        from sklearn.isotonic import IsotonicRegression

        x = np.asarray(scores, dtype=float)
        y = np.asarray(truths, dtype=float)
        if len(set(truths)) < 2:
            raise ValueError("calibration needs both confirmed positives and negatives")
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(x, y)
        cx = [float(v) for v in iso.X_thresholds_]
        cy = [float(v) for v in iso.y_thresholds_]
        p = np.array([_interp(cx, cy, float(s)) for s in x])
        yhat = np.asarray(calls, dtype=float)
        rng = np.random.default_rng(seed)
        draws = np.array(
            [
                expected_rates(p[idx], yhat[idx])
                for idx in rng.integers(0, len(p), (BOOTSTRAP_WINDOWS, window))
            ]
        )
        alpha = min(0.5, window / arl0)
        z_limit = float(ndtri(1 - alpha / 2))
        # A window's estimate minus the reference mean varies as sd²(1 + W/N): the reference
        # mean is itself an estimate from N labelled pairs, on which the calibration was fitted.
        inflation = math.sqrt(1 + window / len(p))
        charts = {
            metric: ExpectedPerformanceChart(
                metric=metric,
                mean=float(np.nanmean(draws[:, column])),
                sd=float(np.nanstd(draws[:, column], ddof=1)) * inflation,
                z_limit=z_limit,
            )
            for column, metric in enumerate(METRICS)
        }
        return cls(cx, cy, window, len(p), charts)

    def probability(self, score: float) -> float:
        return _interp(self.calibration_x, self.calibration_y, score)

    def update(self, score: float, call: bool, index: int | None = None) -> list[Alarm]:
        """Take one record's score and call; at the end of each window, the alarms of the two
        charts (dated at the window's first record)."""
        i = self.n if index is None else index
        self.n += 1
        if not self.probs:
            self.first = i
        self.probs.append(round(self.probability(score), 5))
        self.calls.append(int(call))
        if len(self.probs) < self.window:
            return []
        estimates = expected_rates(np.array(self.probs), np.array(self.calls, dtype=float))
        self.probs, self.calls = [], []
        alarms = []
        for metric, value in zip(METRICS, estimates, strict=True):
            alarm = self.charts[metric].update(value, i)
            if alarm is not None:
                alarms.append(replace(alarm, change_index_estimate=self.first))
        return alarms

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # the charts too (dataclasses), as their own to_dict

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PerformanceEstimator:
        """From :meth:`to_dict` of the current state version (see
        ``phase4.monitor.drift.state``)."""
        charts = {m: ExpectedPerformanceChart.from_dict(c) for m, c in d["charts"].items()}
        return cls(**{**d, "charts": charts})
