"""The false-alarm budget: "at most F false alarms per deployment per year" → each detector's ARL0.

The budget is divided in two steps.

1. Equally across the deployment's S monitored streams (plus the two metrics of performance
   estimated without labels, when on). A stream that sees r observations a day and alarms
   falsely once in ARL0 of them alarms 365·r/ARL0 times a year, so its share F/S gives

       ARL0_stream = S · 365 · r / F.

2. Within a stream, across its detectors by fixed weights w_d (summing to 1): detector d gets
   the fraction w_d of the stream's false-alarm rate, ARL0_d = ARL0_stream / w_d. The stream
   alarms when any of its detectors does, and the rate of a union is at most the sum of the
   rates (Bonferroni), so the stream, and with it the deployment, stays within budget whatever
   the dependence between detectors; detectors watching the same values overlap, so the stream
   in fact runs somewhat below its share.

Unequal weights are a design choice (docs/STATISTICS.md, "The false-alarm budget"): most of a
numeric stream's rate goes to the CUSUM that detects small mean shifts, less to the EWMA (faster
on large shifts), and a small part to the distribution-shape test.

New-category notices are not statistical alarms (they are certain, not probable) and take no
share of the budget.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DAYS_PER_YEAR = 365.0


@dataclass(frozen=True)
class BudgetShare:
    """One stream's share of the deployment's budget (``weight`` = 1), or one detector's part
    of it (``weight`` < 1), with the arithmetic shown.

    ``arl0`` is the in-control average run length of whoever holds the share: the stream's when
    ``weight`` is 1, the detector's (``stream_arl0 / weight``) otherwise.
    """

    streams_sharing: int
    false_alarms_per_year: float
    observations_per_day: float
    stream_arl0: float
    weight: float = 1.0
    detector: str | None = None

    @property
    def arl0(self) -> float:
        return self.stream_arl0 / self.weight

    def for_detector(self, detector: str, weight: float) -> BudgetShare:
        """The part of this stream's share that ``detector`` holds."""
        if not 0 < weight <= 1:
            raise ValueError(f"a detector's weight must lie in (0, 1] (got {weight})")
        return BudgetShare(
            self.streams_sharing,
            self.false_alarms_per_year,
            self.observations_per_day,
            self.stream_arl0,
            weight,
            detector,
        )

    def explain(self) -> str:
        per_stream = self.false_alarms_per_year / self.streams_sharing
        text = (
            f"budget {self.false_alarms_per_year:g} false alarm(s)/year shared by "
            f"{self.streams_sharing} streams ({per_stream:.3g} each); this stream sees "
            f"{self.observations_per_day:g} observations/day, so its ARL0 = "
            f"{self.streams_sharing} × 365 × {self.observations_per_day:g} / "
            f"{self.false_alarms_per_year:g} = {self.stream_arl0:,.0f} observations"
        )
        if self.weight < 1:
            text += (
                f"; the {self.detector or 'detector'} holds {self.weight:.0%} of the stream's "
                f"false-alarm rate, so its ARL0 = {self.stream_arl0:,.0f} / {self.weight:g} = "
                f"{self.arl0:,.0f} observations"
            )
        years = self.arl0 / self.observations_per_day / DAYS_PER_YEAR
        return text + f" (one false alarm every {years:.0f} years for this detector)"

    def numbers(self) -> dict[str, Any]:
        """The share without its explanation (what detector state keeps)."""
        out: dict[str, Any] = {
            "streams_sharing": self.streams_sharing,
            "false_alarms_per_year": self.false_alarms_per_year,
            "observations_per_day": self.observations_per_day,
            "arl0": self.arl0,
        }
        if self.weight < 1:  # (the stream's own share: arl0 is the stream's ARL0)
            out["stream_arl0"] = self.stream_arl0
            out["weight"] = self.weight
            out["detector"] = self.detector
        return out

    def to_dict(self) -> dict[str, Any]:
        return {**self.numbers(), "explanation": self.explain()}

    @classmethod
    def from_numbers(cls, d: Mapping[str, Any]) -> BudgetShare:
        """From :meth:`numbers` (a state saved before weights is rewritten in this shape by
        ``phase4.monitor.drift.state.upgrade_state``)."""
        return cls(
            int(d["streams_sharing"]),
            float(d["false_alarms_per_year"]),
            float(d["observations_per_day"]),
            float(d.get("stream_arl0", d["arl0"])),
            float(d.get("weight", 1.0)),
            d.get("detector"),
        )


def share(
    *, streams: int, false_alarms_per_year: float, observations_per_day: float
) -> BudgetShare:
    """One stream's share of a budget of ``false_alarms_per_year`` over ``streams`` streams."""
    if streams < 1:
        raise ValueError("a budget needs at least one stream to share it")
    if false_alarms_per_year <= 0:
        raise ValueError(f"false_alarms_per_year must be positive (got {false_alarms_per_year})")
    if observations_per_day <= 0:
        raise ValueError(f"observations per day must be positive (got {observations_per_day})")
    arl0 = streams * DAYS_PER_YEAR * observations_per_day / false_alarms_per_year
    return BudgetShare(streams, false_alarms_per_year, observations_per_day, arl0)
