"""New-category notice: a value never seen in a categorical stream's reference.

A new scanner software version, reconstruction or tracer is a certain fact, not a probable
one: it is announced once, as a notice (a substantial change that calls for revalidation),
and takes no share of the false-alarm budget. There is no statistic to calibrate: the
"statistic" is 1 for an observation never seen before and 0 otherwise, and the threshold 1.

>>> notices = NewCategory(seen=["A", "B"])
>>> found = [notices.update(v) for v in ["A", "C", "C", "B", "D"]]
>>> [(i, a.kind, a.detail["value"]) for i, a in enumerate(found) if a]
[(1, 'notice', 'C'), (4, 'notice', 'D')]
>>> NewCategory(seen=["A"]).replay(["A", "C", "C"])
[0.0, 1.0, 0.0]
"""

from __future__ import annotations

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
class NewCategory(Detector[str]):
    """Announces each value never seen in the reference, once (see the module)."""

    name: ClassVar[str] = "new_category"
    mode: ClassVar[DetectorMode] = DetectorMode.NOTICE
    # the reference's categories, then each value announced since, in order
    seen: list[str]
    n: int = 0
    # how many of ``seen`` are the reference's (None: all of those given)
    reference_categories: int | None = None

    def __post_init__(self) -> None:
        if self.reference_categories is None:
            self.reference_categories = len(self.seen)

    def update(self, x: str, index: int | None = None) -> Alarm | None:
        i = self.n if index is None else index
        self.n += 1
        if x in self.seen:
            return None
        self.seen.append(x)
        return Alarm(self.name, i, 1.0, 1.0, i, kind="notice", detail={"value": x})

    @property
    def statistic(self) -> float:
        """0 between observations: a new value is announced when it arrives."""
        return 0.0

    @property
    def threshold(self) -> float:
        return 1.0

    def describe(self) -> DetectorSummary:
        return DetectorSummary(
            kind=self.name,
            mode=self.mode,
            statistic=0.0,
            threshold=1.0,
            unit="new values",
            parameters=(Parameter("known", len(self.seen), "categories", "values seen so far"),),
            text="announces, once, each value never seen in the reference (a notice)",
            now=f"{len(self.seen)} categories known",
        )

    def restarted(self) -> Self:
        """A copy that knows the reference's categories only."""
        return replace(self, seen=self.seen[: self.reference_categories], n=0)

    def candidate_starts(self) -> set[int]:
        return set()
