"""A simulated FDG-PET clinic and the lesion-detection AI it runs, with realistic changes.

Magnitudes, of the size reported for real changes:
- Reconstruction upgrade OSEM -> BSREM (EARL1 -> EARL2-like): small-lesion SUVmax +25%,
  metabolic tumour volume -22%, liver SUVmean nearly unchanged (+3%), image noise down (EARL1 to
  EARL2: SUV +23-30%, MTV -22%, Kaalep et al. 2019, EJNMMI Physics).
- Dose-calibrator error: the recorded injected activity reads 8% high, so every SUV computed from
  it is 1/1.08 = -7.4% (EARL tolerates +-10%: it passes a loose check and still biases the AI).
- Uptake time: tumour FDG keeps accumulating; SUVmax rises ~0.6%/min around 60 min here.

Patients carry synthetic names, IDs, birth dates and accession numbers *on purpose*: the probe
must strip them at the edge, and the tests check that none reaches the store. What the site
hands the monitor about the patient is coarse: the sex (DICOM PatientSex, here taken from the
synthetic given name) and an age band computed at the edge from the birth date on the day of
the study (never the birth date itself), the bands of the surveillance report's subgroups.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

F18_HALF_LIFE_S = 6586.2


@dataclass(frozen=True)
class Change:
    """A change injected into one site's data from a given day on."""

    site_id: str
    start_day: int
    kind: str
    description: str
    lesion_suv_factor: float = 1.0
    liver_suv_factor: float = 1.0
    noise_factor: float = 1.0
    mtv_factor: float = 1.0
    recorded_activity_factor: float = 1.0
    reconstruction: str | None = None

    def affects(self, stream: str) -> bool:
        """Whether this change moves ``stream``, by the physics of the simulation: anything that
        moves lesion SUVs moves every AI output and its performance."""
        moved: set[str] = set()
        suvs_move = self.lesion_suv_factor != 1 or self.recorded_activity_factor != 1
        if suvs_move or self.mtv_factor != 1:
            moved |= {"outputs.", "performance.", "estimated."}
        if self.liver_suv_factor != 1 or self.recorded_activity_factor != 1:
            moved.add("features.liver_suvmean")
        if self.recorded_activity_factor != 1:
            moved.add("features.injected_activity_mbq")
        if self.noise_factor != 1:
            moved.add("features.image_noise_cv")
        if self.reconstruction:
            moved.add("features.reconstruction")
        return any(stream.startswith(m) for m in moved)


@dataclass(frozen=True)
class SiteProfile:
    site_id: str
    name: str
    scanner_manufacturer: str
    scanner_model: str
    software_version: str
    reconstruction: str
    noise_cv_ref: float
    studies_per_weekday: float


@dataclass
class Study:
    """One FDG-PET study: what is in the DICOM header, what the image holds, and the truth."""

    site_id: str
    day: int
    acquired_at: datetime
    study_uid: str
    header: dict[str, Any]
    image: dict[str, float]
    malignant: bool
    true_lesion_count: int
    phi: dict[str, str] = field(repr=False)


def default_sites(studies_per_weekday: float) -> list[SiteProfile]:
    return [
        SiteProfile(
            "site-a",
            "University Hospital A",
            "SIEMENS",
            "Biograph Vision 600",
            "VG80B",
            "OSEM3D 4i5s PSF+TOF",
            0.095,
            studies_per_weekday,
        ),
        SiteProfile(
            "site-b",
            "Regional Clinic B",
            "GE MEDICAL SYSTEMS",
            "Discovery MI",
            "pet_coreload.50",
            "VPFX-S OSEM 3i16s",
            0.110,
            studies_per_weekday,
        ),
    ]


def default_changes(days: int) -> list[Change]:
    return [
        Change(
            site_id="site-b",
            start_day=days // 2,
            kind="reconstruction upgrade",
            description="site B's reconstruction upgraded from OSEM (VPFX-S) to BSREM (Q.Clear): "
            "lesion SUVmax +25%, tumour volume -22%, image noise -20%",
            lesion_suv_factor=1.25,
            liver_suv_factor=1.03,
            noise_factor=0.80,
            mtv_factor=0.78,
            reconstruction="Q.Clear beta550",
        ),
        Change(
            site_id="site-a",
            start_day=int(days * 0.70),
            kind="dose calibrator error",
            description="site A's dose calibrator reads 8% high: recorded activity +8%, "
            "so every SUV is 7.4% low",
            recorded_activity_factor=1.08,
        ),
    ]


def _active(changes: list[Change], site_id: str, day: int) -> list[Change]:
    return [c for c in changes if c.site_id == site_id and day >= c.start_day]


def _uid(rng: np.random.Generator) -> str:
    return "2.25." + str(int(rng.integers(10**17, 10**18))) + str(int(rng.integers(10**17, 10**18)))


GIVEN_NAMES = ["ANNA", "JONAS", "MARIA", "PIETER", "SOFIA", "LUCA", "EMMA", "NOAH"]
FEMALE_GIVEN_NAMES = frozenset({"ANNA", "MARIA", "SOFIA", "EMMA"})


def patient_sex(study: Study) -> str:
    """DICOM PatientSex (F or M) of the study's synthetic patient."""
    given = study.phi["PatientName"].split("^", 1)[1]
    return "F" if given in FEMALE_GIVEN_NAMES else "M"


def patient_age_band(study: Study) -> str:
    """The patient's age band on the day of the study, computed where the birth date is known
    (the site) so that only the band travels: the surveillance report's bands."""
    birth = datetime.strptime(study.phi["PatientBirthDate"], "%Y%m%d").date()
    on = study.acquired_at.date()
    age = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    for upper, label in ((18, "<18"), (40, "18-39"), (65, "40-64"), (80, "65-79")):
        if age < upper:
            return label
    return "80+"


def _synthetic_phi(rng: np.random.Generator) -> dict[str, str]:
    given = GIVEN_NAMES
    family = ["DEVRIES", "MUELLER", "ROSSI", "NOWAK", "DUBOIS", "JANSEN", "SILVA", "BERG"]
    birth = date(1940, 1, 1) + timedelta(days=int(rng.integers(0, 365 * 60)))
    return {
        "PatientName": f"{family[rng.integers(len(family))]}^{given[rng.integers(len(given))]}",
        "PatientID": f"MRN{int(rng.integers(10**6, 10**7))}",
        "PatientBirthDate": birth.strftime("%Y%m%d"),
        "AccessionNumber": f"ACC{int(rng.integers(10**7, 10**8))}",
    }


def simulate_site(
    site: SiteProfile, changes: list[Change], start: date, days: int, rng: np.random.Generator
) -> Iterator[Study]:
    """Studies of one site, day by day, in acquisition order. Weekends have no PET list."""
    for day in range(days):
        today = start + timedelta(days=day)
        if today.weekday() >= 5:
            continue
        active = _active(changes, site.site_id, day)
        n = int(rng.poisson(site.studies_per_weekday))
        times = np.sort(rng.uniform(7.5 * 3600, 17.5 * 3600, size=n))
        for t in times:
            yield _study(site, active, day, today, float(t), rng)


def _study(
    site: SiteProfile,
    active: list[Change],
    day: int,
    today: date,
    t_s: float,
    rng: np.random.Generator,
) -> Study:
    prod = math.prod
    lesion_f = prod(c.lesion_suv_factor for c in active)
    liver_f = prod(c.liver_suv_factor for c in active)
    noise_f = prod(c.noise_factor for c in active)
    mtv_f = prod(c.mtv_factor for c in active)
    recorded_f = prod(c.recorded_activity_factor for c in active)
    recon = next((c.reconstruction for c in reversed(active) if c.reconstruction), None)

    weight_kg = float(np.clip(rng.lognormal(math.log(78), 0.2), 40, 160))
    height_m = float(np.clip(rng.normal(1.72, 0.09), 1.45, 2.05))
    activity_mbq = float(np.clip(3.5 * weight_kg * rng.normal(1.0, 0.06), 150, 450))
    uptake_s = float(np.clip(rng.normal(62, 7), 45, 100) * 60)
    malignant = bool(rng.random() < 0.45)

    # SUVs as the scanner measures them, before the dose-calibrator error in the recorded activity.
    uptake_gain = 1 + 0.006 * (uptake_s / 60 - 60)
    if malignant:
        true_count = 1 + int(rng.poisson(2.0))
        suvmax = float(rng.lognormal(math.log(8.0), 0.45)) * uptake_gain * lesion_f
        mtv_ml = float(rng.lognormal(math.log(35.0), 0.9)) * mtv_f
    else:
        true_count = 0
        suvmax = float(rng.lognormal(math.log(3.2), 0.30)) * uptake_gain * lesion_f
        mtv_ml = 0.0
    liver = float(rng.normal(2.2, 0.22)) * liver_f
    # Noise scales as 1/sqrt(counts): injected activity per kg (the real activity) and time.
    noise_cv = (
        site.noise_cv_ref
        * noise_f
        * math.sqrt((3.5 * weight_kg) / activity_mbq)
        * float(rng.lognormal(0, 0.08))
    )
    # SUVs are computed from the *recorded* activity: a calibrator reading high biases them low.
    recorded_activity_mbq = activity_mbq * recorded_f
    suv_bias = 1 / recorded_f

    acquired_at = datetime(today.year, today.month, today.day, tzinfo=UTC) + timedelta(seconds=t_s)
    header = {
        "Modality": "PT",
        "Manufacturer": site.scanner_manufacturer,
        "scanner_model": site.scanner_model,
        "software_version": site.software_version,
        "reconstruction": recon or site.reconstruction,
        "radiopharmaceutical": "Fluorodeoxyglucose F^18^",
        "injected_activity_mbq": round(recorded_activity_mbq, 1),
        "uptake_time_s": round(uptake_s),
        "weight_kg": round(weight_kg, 1),
        "height_m": round(height_m, 2),
    }
    image = {
        "liver_suvmean": round(liver * suv_bias, 3),
        "image_noise_cv": round(noise_cv, 4),
        "hottest_focus_suvmax": suvmax * suv_bias,
        "mtv_ml": mtv_ml,
    }
    return Study(
        site_id=site.site_id,
        day=day,
        acquired_at=acquired_at,
        study_uid=_uid(rng),
        header=header,
        image=image,
        malignant=malignant,
        true_lesion_count=true_count,
        phi=_synthetic_phi(rng),
    )


class LesionAI:
    """The deployed AI: finds FDG-avid lesions, scores malignancy, measures TMTV.

    Its malignancy score rests on SUVmax, so anything that moves SUVs (reconstruction,
    calibration, uptake time) moves its answers: that is what phase4 is there to notice.
    """

    name = "PETLesionDetect"
    version = "2.1.0"
    manufacturer = "Example Medical AI B.V."
    intended_use = "Detection and malignancy scoring of FDG-avid lesions in whole-body PET/CT"

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, study: Study) -> dict[str, Any]:
        suvmax = study.image["hottest_focus_suvmax"]
        logit = 2.6 * (math.log(suvmax) - math.log(4.6)) + float(self.rng.normal(0, 0.35))
        score = 1 / (1 + math.exp(-logit))
        detected = int(self.rng.binomial(study.true_lesion_count, 0.9))
        false_pos = int(self.rng.poisson(0.15 * (suvmax / 3.2) ** 2)) if not study.malignant else 0
        count = detected + false_pos
        tmtv = study.image["mtv_ml"] * float(self.rng.lognormal(0, 0.1)) if detected else 0.0
        return {
            "malignancy_score": round(score, 4),
            "positive": score >= 0.5,
            "lesion_count": count,
            "lesion_suvmax": round(suvmax, 2) if count else None,
            "tmtv_ml": round(tmtv, 1),
        }
