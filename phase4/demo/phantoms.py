"""The demo's phantom QC: each site's PET/CT scans a uniform cylinder every working day, and a
NEMA IQ phantom every week that also goes through the AI (the canary).

The physics follows the simulation's changes:
- site A's dose calibrator reads 8% high. The cylinder is filled from that calibrator, so the
  stated fill is 8% above the truth and the measured/expected ratio falls to 1/1.08 = 0.926:
  inside EARL's ±10% action level, outside the site's ±5% tolerance, and a shift the
  device's CUSUM sees within days.
- site B's reconstruction upgrade (OSEM → BSREM) sharpens the image (FWHM 7 → 5 mm with edge
  overshoot): the AI's SUVmax on the phantom's small spheres rises although the phantom did not
  change — the canary.

Cylinders are real images analysed by ``phantoms.PETCylinder`` (day-to-day fill accuracy
±1.5%); the canary's AI reads each sphere's maximum from the closed-form blurred sphere (the
image the AI would see), with the small spread (0.5% SUVmax, 1% volume) that the phantom's own
noise gives a deterministic AI from week to week.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import numpy as np

from phase4.demo.simulate import Change, SiteProfile
from phase4.phantoms.cylinder import PETCylinder
from phase4.phantoms.synthetic import CylinderSpec, blurred_ball, cylinder_volume

SPHERES_MM = (10.0, 13.0, 17.0, 22.0, 28.0, 37.0)
SPHERE_SUV = 8.0
FWHM_MM = {"OSEM": 7.0, "BSREM": 5.0}
CYLINDER = CylinderSpec(shape=(24, 40, 40), voxel_mm=(5.0, 6.0, 6.0), radius_mm=100.0)
CYLINDER_TOLERANCE = {
    "kind": "cylinder",
    "metric": "recovery_ratio",
    "lower_action": 0.90,
    "lower_tolerance": 0.95,
    "upper_tolerance": 1.05,
    "upper_action": 1.10,
    "unit": "measured/expected",
    "reason": "EARL: SUV calibration within ±10% (action); the site's own tolerance ±5%",
}


def device_of(site: SiteProfile) -> dict[str, str]:
    return {
        "manufacturer": site.scanner_manufacturer,
        "model": site.scanner_model,
        "serial": f"{site.site_id}-PETCT-01",
    }


def _truth() -> dict[str, Any]:
    return {
        "spheres": [
            {"diameter_mm": d, "volume_ml": 4 / 3 * np.pi * (d / 2) ** 3 / 1000, "suv": SPHERE_SUV}
            for d in SPHERES_MM
        ]
    }


def _ai_on_iq(fwhm_mm: float, overshoot: float, rng: np.random.Generator) -> dict[str, Any]:
    sigma = fwhm_mm / 2.3548
    lesions = []
    for d in SPHERES_MM:
        rc_max = float(blurred_ball(0.0, d / 2, sigma)) * (1 + overshoot * 6 / d)
        lesions.append(
            {
                "suv_max": SPHERE_SUV * rc_max * float(rng.normal(1, 0.005)),
                "volume_ml": 4 / 3 * np.pi * (d / 2) ** 3 / 1000 * float(rng.normal(1, 0.01)),
            }
        )
    return {"lesions": lesions}


def daily_phantoms(
    site: SiteProfile, changes: list[Change], start: date, days: int, seed: int
) -> list[dict[str, Any]]:
    """The year's phantom results of one site's scanner, as ``POST /v1/phantom-results``
    items."""
    rng = np.random.default_rng(seed)
    device = device_of(site)
    items: list[dict[str, Any]] = []
    for day in range(days):
        today = start + timedelta(days=day)
        if today.weekday() >= 5:
            continue
        active = [c for c in changes if c.site_id == site.site_id and day >= c.start_day]
        calibrator = np.prod([c.recorded_activity_factor for c in active])
        upgraded = any(c.reconstruction for c in active)
        at = datetime(today.year, today.month, today.day, 7, 15, tzinfo=UTC)
        # The stated fill is what the calibrator read; the true fill differs by the day's
        # filling accuracy and by the calibrator's error.
        spec = replace(
            CYLINDER,
            seed=seed * 1000 + day,
            calibration_error=float(rng.normal(0, 0.015)) + 1 / calibrator - 1,
        )
        cylinder = PETCylinder.from_array(cylinder_volume(spec), spec.voxel_mm).analyze(
            fill_kbq_ml=spec.fill_kbq_ml, fill_time=spec.fill_time, reference_time=spec.series_time
        )
        metrics = cylinder.metrics()
        items.append(
            {
                "result_id": f"cyl-{device['serial']}-{today.isoformat()}",
                "site": site.site_id,
                "device": device,
                "kind": "cylinder",
                "acquired_at": at.isoformat(),
                "metrics": {
                    k: round(float(metrics[k]), 6)
                    for k in ("recovery_ratio", "axial_max_deviation_pct")
                },
            }
        )
        if today.weekday() == 0:  # Monday: NEMA IQ, also through the AI
            fwhm = FWHM_MM["BSREM" if upgraded else "OSEM"]
            items.append(
                {
                    "result_id": f"iq-{device['serial']}-{today.isoformat()}",
                    "site": site.site_id,
                    "device": device,
                    "kind": "nema-iq",
                    "acquired_at": (at + timedelta(minutes=30)).isoformat(),
                    "metrics": {
                        "rc_max_37mm": float(blurred_ball(0.0, 18.5, fwhm / 2.3548)),
                        "rc_max_10mm": float(blurred_ball(0.0, 5.0, fwhm / 2.3548)),
                    },
                    "truth": _truth(),
                    "ai_outputs": _ai_on_iq(fwhm, 0.05 if upgraded else 0.0, rng),
                }
            )
    return items


def send_phantoms(
    api_url: str,
    probe_tokens: dict[str, str],
    reviewer_token: str,
    sites: list[SiteProfile],
    changes: list[Change],
    start: date,
    days: int,
    seed: int,
) -> int:
    """Set the default cylinder tolerance (the physicist) and send every site's results (each
    site's probe token). Returns the results stored."""
    stored = 0
    with httpx.Client(base_url=api_url, timeout=60) as client:
        client.post(
            "/v1/phantom-tolerances",
            json=CYLINDER_TOLERANCE,
            headers={"Authorization": f"Bearer {reviewer_token}"},
        ).raise_for_status()
        for k, site in enumerate(sites):
            items = daily_phantoms(site, changes, start, days, seed + 100 + k)
            for i in range(0, len(items), 100):
                response = client.post(
                    "/v1/phantom-results",
                    json={"results": items[i : i + 100]},
                    headers={"Authorization": f"Bearer {probe_tokens[site.site_id]}"},
                )
                response.raise_for_status()
                stored += response.json()["created"]
    return stored
