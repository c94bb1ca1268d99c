"""Streaming detectors, one per module, all keeping the contract of :class:`Detector`
(``base``): ``update(x) -> Alarm | None``, ``statistic``, ``threshold``, ``describe()``,
``replay(values)``, ``to_dict``/``from_dict``.

- ``cusum``: two-sided tabular CUSUM of normal scores (Page 1954);
- ``ewma``: two-sided EWMA of normal scores (Roberts 1959; Lucas & Saccucci 1990);
- ``spread``: two-sided CUSUM for a change of spread, on squared normal scores (Page 1954);
- ``ks``: windowed Kolmogorov–Smirnov test of PIT values (Kolmogorov 1933; Smirnov 1939);
- ``bernoulli``: Bernoulli CUSUM for a rise in an event rate (Reynolds & Stoumbos 1999);
- ``chi_square``: windowed G-test of category counts (Wilks 1938);
- ``new_category``: notice of a value never seen in the reference;
- ``expected_performance``: chart of a performance metric estimated without labels (CBPE).

Each is built from a target in-control ARL0 (in observations) by a numerical method
(``phase4.monitor.drift.arl``) or, for the windowed tests, from an exact per-look null
distribution with the per-look level α = window / ARL0, so that repeated looks spend the budget
once. :data:`DETECTORS` maps each detector's ``name`` (the key its state is saved under) to its
class.
"""

from __future__ import annotations

from typing import Any

from phase4.monitor.drift.detectors.base import (
    Alarm,
    Detector,
    DetectorMode,
    DetectorSummary,
    Parameter,
    Trace,
    trace,
)
from phase4.monitor.drift.detectors.bernoulli import BernoulliCusum
from phase4.monitor.drift.detectors.chi_square import WindowedChiSquare
from phase4.monitor.drift.detectors.cusum import Cusum
from phase4.monitor.drift.detectors.ewma import Ewma
from phase4.monitor.drift.detectors.expected_performance import ExpectedPerformanceChart
from phase4.monitor.drift.detectors.ks import WindowedKS, ks_effective_size
from phase4.monitor.drift.detectors.new_category import NewCategory
from phase4.monitor.drift.detectors.spread import SpreadCusum

__all__ = [
    "DETECTORS",
    "Alarm",
    "BernoulliCusum",
    "Cusum",
    "Detector",
    "DetectorMode",
    "DetectorSummary",
    "Ewma",
    "ExpectedPerformanceChart",
    "NewCategory",
    "Parameter",
    "SpreadCusum",
    "Trace",
    "WindowedChiSquare",
    "WindowedKS",
    "detector_from_dict",
    "ks_effective_size",
    "trace",
]

DETECTORS: dict[str, type[Detector[Any]]] = {
    c.name: c
    for c in (
        Cusum,
        Ewma,
        SpreadCusum,
        WindowedKS,
        BernoulliCusum,
        NewCategory,
        WindowedChiSquare,
        ExpectedPerformanceChart,
    )
}


def detector_from_dict(name: str, d: dict[str, Any]) -> Detector[Any]:
    """The detector saved under ``name`` (its ``to_dict`` of the current state version)."""
    return DETECTORS[name].from_dict(d)
