"""The false-alarm budget: "at most F false alarms per deployment per year" → each detector's ARL0.

Each statistical detector on the deployment is a renewal process that, in control, alarms on
average once every ARL0 of its observations. A detector on a stream that sees r observations a
day alarms falsely at 365·r/ARL0 per year. With S detectors sharing the budget equally,

    365 · r_i / ARL0_i = F / S   ⇒   ARL0_i = S · 365 · r_i / F.

New-category notices are not statistical alarms (they are certain, not probable) and take no
share of the budget.
"""

from __future__ import annotations

from dataclasses import dataclass

DAYS_PER_YEAR = 365.0


@dataclass(frozen=True)
class BudgetShare:
    """One detector's share of the deployment's budget, with the arithmetic shown."""

    detectors_sharing: int
    false_alarms_per_year: float
    observations_per_day: float
    arl0: float

    def explain(self) -> str:
        return (
            f"budget {self.false_alarms_per_year:g} false alarm(s)/year shared by "
            f"{self.detectors_sharing} detectors; this stream sees "
            f"{self.observations_per_day:g} observations/day, so ARL0 = "
            f"{self.detectors_sharing} × 365 × {self.observations_per_day:g} / "
            f"{self.false_alarms_per_year:g} = {self.arl0:,.0f} observations "
            f"(one false alarm every {self.arl0 / self.observations_per_day / 365:.0f} years "
            "for this detector)"
        )

    def numbers(self) -> dict[str, float | int]:
        """The share without its explanation (what detector state keeps)."""
        return {
            "detectors_sharing": self.detectors_sharing,
            "false_alarms_per_year": self.false_alarms_per_year,
            "observations_per_day": self.observations_per_day,
            "arl0": self.arl0,
        }

    def to_dict(self) -> dict[str, float | int | str]:
        return {
            "detectors_sharing": self.detectors_sharing,
            "false_alarms_per_year": self.false_alarms_per_year,
            "observations_per_day": self.observations_per_day,
            "arl0": self.arl0,
            "explanation": self.explain(),
        }


def share(
    *, detectors: int, false_alarms_per_year: float, observations_per_day: float
) -> BudgetShare:
    if detectors < 1:
        raise ValueError("a budget needs at least one detector to share it")
    if false_alarms_per_year <= 0:
        raise ValueError(f"false_alarms_per_year must be positive (got {false_alarms_per_year})")
    if observations_per_day <= 0:
        raise ValueError(f"observations per day must be positive (got {observations_per_day})")
    arl0 = detectors * DAYS_PER_YEAR * observations_per_day / false_alarms_per_year
    return BudgetShare(detectors, false_alarms_per_year, observations_per_day, arl0)
