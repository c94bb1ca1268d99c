"""The demo's subgroup story: at site A, the AI starts missing cancers in patients aged 65-79.

From half-way through the simulated period, each malignant study of a 65-79-year-old at site A
is called negative with probability ``MISS_PROBABILITY`` (its score pulled below the
threshold), whatever its SUVs: a failure confined to one age band (a change of protocol for
older patients, say, or a software path they take) that moves the site's overall sensitivity by
a few points while the band's falls by about 35. The disparity monitor (docs/SUBGROUPS.md;
Reynolds & Stoumbos 1999 for the chart, Newcombe 1998 for the gap's interval) is there to
notice it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from phase4.demo.simulate import Change, Study, patient_age_band

SITE = "site-a"
AGE_BAND = "65-79"
MISS_PROBABILITY = 0.4
MARGIN = 0.10


@dataclass(frozen=True)
class SubgroupDrift(Change):
    """Where and from when the band's sensitivity falls: a ``Change`` of the demo, so that its
    summary tells the alerts it explains from false alarms."""

    age_band: str = AGE_BAND
    miss_probability: float = MISS_PROBABILITY
    # The chart dates a change within about ten of the band's labelled cases: two to three
    # weeks at the demo's rates (the demo's other changes are dated within days).
    slack_days: int = 30

    def affects(self, stream: str) -> bool:
        """The band's sensitivity chart, and the site's miss rate it moves."""
        band = f"subgroups.age_band={self.age_band}.sensitivity"
        return stream in (band, "performance.missed")

    def applies_to(self, study: Study) -> bool:
        return (
            study.site_id == self.site_id
            and study.day >= self.start_day
            and study.malignant
            and patient_age_band(study) == self.age_band
        )


def subgroup_drift(days: int) -> SubgroupDrift:
    """The demo's drift: site A, 65-79, from the middle of the period."""
    return SubgroupDrift(
        site_id=SITE,
        start_day=days // 2,
        kind=f"sensitivity drop in the {AGE_BAND} age band",
        description=f"the AI misses {MISS_PROBABILITY:.0%} of the cancers it found in "
        f"{AGE_BAND}-year-olds at site A",
    )


def monitoring(margin: float = MARGIN) -> dict[str, Any]:
    """The ``subgroups`` block of the demo's monitoring configuration: the sex and age-band
    tables, and the disparity monitor at a 10-point margin."""
    return {
        "subgroups": {
            "dimensions": {
                "site": "site",
                "scanner": "features.scanner_model",
                "sex": "features.patient_sex",
                "age_band": "features.patient_age_band",
            },
            "margin": margin,
        }
    }


class Missing:
    """Applies a :class:`SubgroupDrift` to the AI's outputs (its own random stream, so the rest
    of the simulation draws what it drew before)."""

    def __init__(self, drift: SubgroupDrift, seed: int) -> None:
        self.drift = drift
        self.rng = np.random.default_rng(seed + 1_000_003)

    def __call__(self, study: Study, outputs: dict[str, Any]) -> dict[str, Any]:
        if not self.drift.applies_to(study) or not outputs.get("positive"):
            return outputs
        if self.rng.random() >= self.drift.miss_probability:
            return outputs
        score = min(float(outputs["malignancy_score"]), 0.2 + 0.25 * self.rng.random())
        return {**outputs, "malignancy_score": round(score, 4), "positive": False}


def group_sensitivity(
    studies: list[Study], outputs: list[dict[str, Any]], *, changed: bool, drift: SubgroupDrift
) -> tuple[float, float]:
    """(the band's, the rest's) sensitivity at the drift's site, before or after its start, as
    the simulation made them: the truth a test compares the alert's gap with."""
    band, rest = [], []
    for s, o in zip(studies, outputs, strict=True):
        if s.site_id != drift.site_id or not s.malignant or (s.day >= drift.start_day) != changed:
            continue
        (band if patient_age_band(s) == drift.age_band else rest).append(bool(o["positive"]))
    return float(np.mean(band)), float(np.mean(rest))
