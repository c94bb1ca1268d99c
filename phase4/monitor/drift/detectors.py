"""Streaming detectors with one contract: ``update(x) -> Alarm | None``, ``to_dict``/``from_dict``.

Each is built from a target in-control ARL0 (in observations) by a numerical method
(``phase4.monitor.drift.arl``) or, for the windowed tests, from an exact per-look null distribution
with
the per-look level α = stride / ARL0, so that repeated looks spend the budget once.

>>> det = Cusum.calibrated(arl0=465.0)
>>> round(det.h, 2)
5.0
>>> [det.update(0.0) for _ in range(3)]
[None, None, None]
>>> alarm = None
>>> for i in range(20):
...     alarm = alarm or det.update(3.0)
>>> alarm.detector, alarm.change_index_estimate
('cusum', 3)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any, ClassVar

from scipy import stats

from phase4.monitor.drift.arl import (
    bernoulli_cusum_arl,
    calibrate_bernoulli_cusum_uncertain,
    calibrate_cusum_h,
    calibrate_ewma_l,
)


@dataclass(frozen=True, slots=True)
class Alarm:
    """A detector fired (``kind='alarm'``) or saw something new (``kind='notice'``)."""

    detector: str
    index: int
    statistic: float
    threshold: float
    change_index_estimate: int
    kind: str = "alarm"
    direction: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@lru_cache(maxsize=256)
def _cusum_h(arl0: float, k: float, reference_size: int | None) -> float:
    return calibrate_cusum_h(arl0, k, reference_size)


@lru_cache(maxsize=1024)
def _bernoulli_design(
    p0: float, p1: float, arl0: float, reference: tuple[int, int] | None
) -> tuple[int, int, int]:
    """(up, down, h) of the Bernoulli CUSUM: hundreds of sparse solves, and the same for every
    stream with the same reference counts and budget share (a rare event stream with no events
    in its reference, say, at each of a thousand deployments): solved once per process."""
    design = calibrate_bernoulli_cusum_uncertain(p0, p1, arl0, reference)
    return design.up, design.down, design.h


@lru_cache(maxsize=256)
def _ewma_l(arl0: float, lam: float, reference_size: int | None) -> float:
    return calibrate_ewma_l(arl0, lam, reference_size)


@dataclass(slots=True)
class Cusum:
    """Two-sided tabular CUSUM on normal scores (Page 1954), reset after each alarm.

    The change is dated at the first observation after the alarming side last stood at zero:
    the maximum-likelihood change point for a step shift (Page 1954; Hawkins & Olwell 1998).
    """

    name: ClassVar[str] = "cusum"
    h: float
    k: float = 0.5
    s_hi: float = 0.0
    s_lo: float = 0.0
    n: int = 0
    start_hi: int = 0
    start_lo: int = 0

    @classmethod
    def calibrated(cls, arl0: float, k: float = 0.5, reference_size: int | None = None) -> Cusum:
        return cls(h=_cusum_h(float(arl0), k, reference_size), k=k)

    def update(self, z: float, index: int | None = None) -> Alarm | None:
        i = self.n if index is None else index
        self.n += 1
        k = self.k
        was_hi, was_lo = self.s_hi, self.s_lo
        hi = was_hi + z - k
        lo = was_lo - z - k
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

    def candidate_starts(self) -> set[int]:
        return {s for s, v in ((self.start_hi, self.s_hi), (self.start_lo, self.s_lo)) if v > 0}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Cusum:
        return cls(**d)


@dataclass(slots=True)
class Ewma:
    """Two-sided EWMA on normal scores with asymptotic limits (Lucas & Saccucci 1990).

    The change is dated at the start of the current excursion: the last time the EWMA crossed
    zero before the alarm.
    """

    name: ClassVar[str] = "ewma"
    limit: float
    lam: float = 0.1
    z: float = 0.0
    n: int = 0
    last_cross: int = 0

    @classmethod
    def calibrated(cls, arl0: float, lam: float = 0.1, reference_size: int | None = None) -> Ewma:
        return cls(limit=_ewma_l(float(arl0), lam, reference_size), lam=lam)

    @property
    def control_limit(self) -> float:
        return self.limit * math.sqrt(self.lam / (2 - self.lam))

    def update(self, x: float, index: int | None = None) -> Alarm | None:
        i = self.n if index is None else index
        self.n += 1
        previous = self.z
        lam = self.lam
        self.z = lam * x + (1 - lam) * previous
        if previous == 0.0 or (previous > 0) != (self.z > 0):
            self.last_cross = i
        if abs(self.z) > self.limit * math.sqrt(lam / (2 - lam)):
            alarm = Alarm(
                self.name,
                i,
                self.z,
                self.control_limit,
                self.last_cross,
                direction="up" if self.z > 0 else "down",
            )
            self.z = 0.0
            return alarm
        return None

    def candidate_starts(self) -> set[int]:
        return {self.last_cross} if self.z != 0.0 else set()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Ewma:
        return cls(**d)


@dataclass(slots=True)
class WindowedKS:
    """Kolmogorov–Smirnov test of each non-overlapping window of PIT values against U(0, 1).

    The reference is itself a sample, so the window is compared as in a two-sample test: the
    statistic's null distribution is that of a one-sample test of effective size
    n·m/(n+m) (Kolmogorov's two-sample limit). Per-look level α = window / ARL0.
    """

    name: ClassVar[str] = "ks"
    window: int
    alpha: float
    reference_size: int
    critical_d: float = 0.0
    buffer: list[float] = field(default_factory=list)
    first: int = 0
    n: int = 0

    @classmethod
    def calibrated(cls, arl0: float, reference_size: int, window: int = 50) -> WindowedKS:
        alpha = min(0.5, window / arl0)
        n_eff = max(1, round(reference_size * window / (reference_size + window)))
        # The exact Kolmogorov quantile is costly (ms): computed once, not at every window.
        critical = _ks_critical(alpha, n_eff)
        return cls(window=window, alpha=alpha, reference_size=reference_size, critical_d=critical)

    def update(self, u: float, index: int | None = None) -> Alarm | None:
        i = self.n if index is None else index
        self.n += 1
        if not self.buffer:
            self.first = i
        self.buffer.append(round(u, 5))
        if len(self.buffer) < self.window:
            return None
        values = sorted(self.buffer)
        m = len(values)
        d = max(max((j + 1) / m - v, v - j / m) for j, v in enumerate(values))
        self.buffer = []
        if d > self.critical_d:
            n_eff = max(1, round(self.reference_size * m / (self.reference_size + m)))
            p = float(stats.kstwo.sf(d, n_eff))
            return Alarm(self.name, i, d, self.critical_d, self.first, detail={"p_value": p})
        return None

    def candidate_starts(self) -> set[int]:
        return {self.first} if self.buffer else set()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WindowedKS:
        det = cls(**d)
        if det.critical_d <= 0:  # state saved before the critical value was stored
            n_eff = max(
                1, round(det.reference_size * det.window / (det.reference_size + det.window))
            )
            det.critical_d = _ks_critical(det.alpha, n_eff)
        return det


@lru_cache(maxsize=256)
def _ks_critical(alpha: float, n_eff: int) -> float:
    return float(stats.kstwo.isf(alpha, n_eff))


@dataclass(slots=True)
class BernoulliCusum:
    """Bernoulli CUSUM for a rise in an event rate from p0 to p1 (Reynolds & Stoumbos 1999)."""

    name: ClassVar[str] = "bernoulli_cusum"
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
        up, down, h = _bernoulli_design(
            float(p0), float(p1), float(arl0), tuple(reference) if reference else None
        )
        return cls(p0=p0, p1=p1, up=up, down=down, h=h)

    def arl(self, p: float) -> float:
        return bernoulli_cusum_arl(self.up, self.down, self.h, p)

    def update(self, event: bool, index: int | None = None) -> Alarm | None:
        i = self.n if index is None else index
        self.n += 1
        was = self.s
        self.s = max(0, self.s + (self.up if event else -self.down))
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
        """Integer units per unit of log-likelihood ratio (statistics are reported in LLR)."""
        return self.down / -math.log((1 - self.p1) / (1 - self.p0))

    def candidate_starts(self) -> set[int]:
        return {self.start} if self.s > 0 else set()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BernoulliCusum:
        return cls(**d)


@dataclass(slots=True)
class NewCategory:
    """A value never seen in the reference: a notice (a substantial change that calls for
    revalidation), not a statistical alarm. Each new value is announced once."""

    name: ClassVar[str] = "new_category"
    seen: list[str]
    n: int = 0

    def update(self, value: str, index: int | None = None) -> Alarm | None:
        i = self.n if index is None else index
        self.n += 1
        if value in self.seen:
            return None
        self.seen.append(value)
        return Alarm(self.name, i, 1.0, 1.0, i, kind="notice", detail={"value": value})

    def candidate_starts(self) -> set[int]:
        return set()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NewCategory:
        return cls(**d)


@dataclass(slots=True)
class WindowedChiSquare:
    """G-test of each non-overlapping window's category counts against the reference counts
    (a 2×K contingency table, so the reference's own sampling error is accounted for).
    Per-look level α = window / ARL0. Categories unseen in the reference are pooled."""

    name: ClassVar[str] = "chi_square"
    window: int
    alpha: float
    reference: dict[str, int]
    counts: dict[str, int] = field(default_factory=dict)
    filled: int = 0
    first: int = 0
    n: int = 0

    @classmethod
    def calibrated(
        cls, arl0: float, reference: dict[str, int], window: int = 100
    ) -> WindowedChiSquare:
        return cls(window=window, alpha=min(0.5, window / arl0), reference=dict(reference))

    def update(self, value: str, index: int | None = None) -> Alarm | None:
        i = self.n if index is None else index
        self.n += 1
        if self.filled == 0:
            self.first = i
        key = value if value in self.reference else "(other)"
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
        if p < self.alpha:
            dof = len(keys) - 1
            return Alarm(
                self.name,
                i,
                float(g),
                float(stats.chi2.isf(self.alpha, dof)),
                self.first,
                detail={"p_value": float(p)},
            )
        return None

    def candidate_starts(self) -> set[int]:
        return {self.first} if self.filled else set()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WindowedChiSquare:
        return cls(**d)


DETECTORS: dict[str, Any] = {
    c.name: c for c in (Cusum, Ewma, WindowedKS, BernoulliCusum, NewCategory, WindowedChiSquare)
}


def detector_from_dict(name: str, d: dict[str, Any]) -> Any:
    return DETECTORS[name].from_dict(d)
