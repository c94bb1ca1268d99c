"""A store built like the one the fleet page's review was made on (the demo's year, shortened).

- ``lesion-ai@site-b``: 1 critical and 8 warning alerts not resolved, the critical one's change
  began 96 days ago; a new-value notice (a new reconstruction) at its site.
- ``lesion-ai@site-a``: 2 warning alerts not resolved.
- Both have 10 days of studies, 20 a day by acquisition time, all of which *arrived* in the last
  hour (a backlog): counted by arrival, 24 h would equal 7 d.
- ``lesion-ai-dicom@site-a``: 74 studies over a year (the DICOM sidecar), analysed by the real
  engine: every stream collects a 500-value reference it will not have for years.
- Scanner 1 (site A, SIEMENS Biograph Vision 600): a cylinder a working day; 3 of the last 4
  outside tolerance, the very last one passing; a critical action-level alert open since its
  change 40 days ago.
- Scanner 2 (site B, GE Discovery MI): cylinders that pass, a NEMA IQ phantom every week through
  the AI (the canary), whose 37 mm recovery moves by 2e-8 at the reconstruction upgrade
  (rounding, not a change); a critical canary alert.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine

from phase4.monitor.core.statuses import AlertCause, AlertStatus, PhantomVerdict, Severity
from phase4.monitor.domain.registry import create_deployment
from phase4.monitor.store.db import session_scope
from phase4.monitor.store.models import (
    Alert,
    Device,
    InferenceRecord,
    PhantomResult,
    PhantomTolerance,
)
from phase4.monitor.surveillance.detection import detect_deployment
from tests.conftest import Fixture

DICOM = "lesion-ai-dicom@site-a"
SPHERES_MM = (10.0, 13.0, 17.0, 22.0, 28.0, 37.0)
CYLINDER_LEVELS = {
    "lower_action": 0.90,
    "lower_tolerance": 0.95,
    "upper_tolerance": 1.05,
    "upper_action": 1.10,
}


@dataclass
class FleetData:
    now: datetime
    drifting: str  # 1 critical + 8 warnings
    warned: str  # 2 warnings
    dicom: str
    scanner_a: int  # 3 of 4 last cylinders out of tolerance, a critical alert
    scanner_b: int  # the canary
    scanner_a_name: str
    scanner_b_name: str
    critical_since: datetime  # change start of scanner A's critical alert
    drifting_since: datetime  # change start of the deployment's critical alert
    device_alert: int
    canary_alert: int
    acquired_24h: dict[str, int] = field(default_factory=dict)
    acquired_7d: dict[str, int] = field(default_factory=dict)
    arrived: dict[str, int] = field(default_factory=dict)


def _alert(
    *,
    deployment: str | None = None,
    device: int | None = None,
    stream: str,
    cause: str,
    severity: str,
    change: datetime,
    opened: datetime,
    status: str = AlertStatus.OPEN,
    evidence: dict[str, Any] | None = None,
) -> Alert:
    return Alert(
        deployment_id=deployment,
        device_id=device,
        stream=stream,
        cause=cause,
        severity=severity,
        status=status,
        title=f"{stream} ({cause})",
        evidence={
            "detector": "cusum",
            "timestamp": (change + timedelta(days=2)).isoformat(),
            "change_timestamp": change.isoformat(),
            **(evidence or {}),
        },
        opened_at=opened,
        acknowledged_by="dr-curie" if status == AlertStatus.ACKNOWLEDGED else None,
        acknowledged_at=opened + timedelta(minutes=5)
        if status == AlertStatus.ACKNOWLEDGED
        else None,
    )


def _records(
    g: np.random.Generator, deployment: str, now: datetime, days: int, per_day: int
) -> list[InferenceRecord]:
    out = []
    for i in range(days * per_day):
        acquired = now - timedelta(days=days) + timedelta(hours=24 * i / per_day + 0.5)
        out.append(
            InferenceRecord(
                record_id=uuid.uuid4().hex,
                deployment_id=deployment,
                study_pseudonym=uuid.uuid4().hex,
                acquired_at=acquired,
                inferred_at=acquired + timedelta(minutes=5),
                received_at=now - timedelta(minutes=30) + timedelta(seconds=i),
                features={"liver_suvmean": round(float(g.normal(2.2, 0.2)), 3)},
                outputs={"positive": bool(g.random() < 0.4)},
                latency_s=1.0,
            )
        )
    return out


def _dicom_records(g: np.random.Generator, now: datetime) -> list[InferenceRecord]:
    """74 studies over the last year (about 6 in the last 30 days), all arrived today."""
    out = []
    for i in range(74):
        acquired = now - timedelta(days=365) + timedelta(days=365 * (i + 0.5) / 74)
        out.append(
            InferenceRecord(
                record_id=uuid.uuid4().hex,
                deployment_id=DICOM,
                study_pseudonym=uuid.uuid4().hex,
                acquired_at=acquired,
                inferred_at=acquired,
                received_at=now - timedelta(minutes=20),
                features={
                    "suv_max": round(float(g.normal(8.0, 1.0)), 3),
                    "uptake_min": round(float(g.normal(62, 5)), 1),
                    "reconstruction": "OSEM",
                },
                outputs={"output_present": True},
            )
        )
    return out


def _blurred_centre(radius_mm: float, fwhm_mm: float) -> float:
    """The recovery at the centre of a uniform ball blurred by a Gaussian (closed form)."""
    s = fwhm_mm / 2.3548
    r = radius_mm / s
    return math.erf(r / math.sqrt(2)) - math.sqrt(2 / math.pi) * r * math.exp(-(r**2) / 2)


def load(world: Fixture, now: datetime | None = None) -> FleetData:
    now = now or datetime.now(UTC)
    g = np.random.default_rng(3)
    engine: Engine = world.engine
    data = FleetData(
        now=now,
        drifting=world.deployment_b,
        warned=world.deployment_a,
        dicom=DICOM,
        scanner_a=0,
        scanner_b=0,
        scanner_a_name="SIEMENS Biograph Vision 600 (SA-PETCT-01)",
        scanner_b_name="GE MEDICAL SYSTEMS Discovery MI (SB-PETCT-01)",
        critical_since=(now - timedelta(days=40)).replace(hour=7, minute=15, microsecond=0),
        drifting_since=(now - timedelta(days=96)).replace(microsecond=0),
        device_alert=0,
        canary_alert=0,
    )
    with session_scope(engine) as s:
        create_deployment(
            s,
            deployment_id=DICOM,
            site_id="site-a",
            model_name="PETLesionDetect",
            model_version="2.1.0",
            actor="test",
            # as the demo declares it: one site-A study in a hundred (74 a year)
            monitoring={"studies_per_day": 0.2},
        )
        s.add_all(_dicom_records(g, now))
    detect_deployment(engine, DICOM)  # every stream collecting its reference

    with session_scope(engine) as s:
        records = _records(g, world.deployment_a, now, 10, 20) + _records(
            g, world.deployment_b, now, 10, 20
        )
        s.add_all(records)
        for dep in (world.deployment_a, world.deployment_b):
            mine = [r for r in records if r.deployment_id == dep]
            data.acquired_24h[dep] = sum(r.acquired_at >= now - timedelta(days=1) for r in mine)
            data.acquired_7d[dep] = sum(r.acquired_at >= now - timedelta(days=7) for r in mine)
            data.arrived[dep] = sum(r.received_at >= now - timedelta(days=1) for r in mine)
        opened = now - timedelta(hours=2)
        s.add(
            _alert(
                deployment=world.deployment_b,
                stream="performance.false_positive",
                cause=AlertCause.PERFORMANCE,
                severity=Severity.CRITICAL,
                change=data.drifting_since,
                opened=opened,
                status=AlertStatus.ACKNOWLEDGED,
            )
        )
        for i in range(8):
            s.add(
                _alert(
                    deployment=world.deployment_b,
                    stream=f"features.feature_{i}",
                    cause=AlertCause.DRIFT,
                    severity=Severity.WARNING,
                    change=now - timedelta(days=120 - i),
                    opened=opened,
                )
            )
        recon_at = now - timedelta(days=30)
        s.add(
            _alert(
                deployment=world.deployment_b,
                stream="features.reconstruction",
                cause=AlertCause.new_condition("Q.Clear beta550"),
                severity=Severity.WARNING,
                change=recon_at,
                opened=opened,
                status=AlertStatus.RESOLVED,
                evidence={"kind": "notice", "detail": {"value": "Q.Clear beta550"}},
            )
        )
        for i in range(2):
            s.add(
                _alert(
                    deployment=world.deployment_a,
                    stream=f"features.feature_{i}",
                    cause=AlertCause.DRIFT,
                    severity=Severity.WARNING,
                    change=now - timedelta(days=30 + i),
                    opened=opened,
                )
            )

        scanner_a = Device(
            site_id="site-a",
            manufacturer="SIEMENS",
            model="Biograph Vision 600",
            serial="SA-PETCT-01",
        )
        scanner_b = Device(
            site_id="site-b",
            manufacturer="GE MEDICAL SYSTEMS",
            model="Discovery MI",
            serial="SB-PETCT-01",
        )
        s.add_all([scanner_a, scanner_b])
        s.flush()
        assert scanner_a.id is not None and scanner_b.id is not None
        data.scanner_a, data.scanner_b = scanner_a.id, scanner_b.id
        s.add(
            PhantomTolerance(
                kind="cylinder",
                metric="recovery_ratio",
                version=1,
                unit="measured/expected",
                created_by="physicist",
                **CYLINDER_LEVELS,
            )
        )
        days = 60
        for dev in (scanner_a, scanner_b):
            for day in range(days):
                at = (now - timedelta(days=days - day)).replace(hour=7, minute=15, microsecond=0)
                ratio = round(float(g.normal(1.0, 0.012)), 4)
                if dev is scanner_a and day >= days - 4:
                    ratio = (0.93, 0.92, 0.94, 0.97)[day - (days - 4)]
                verdict = (
                    PhantomVerdict.OUTSIDE_ACTION
                    if not 0.90 <= ratio <= 1.10
                    else PhantomVerdict.OUTSIDE_TOLERANCE
                    if not 0.95 <= ratio <= 1.05
                    else PhantomVerdict.PASS
                )
                s.add(
                    PhantomResult(
                        result_id=uuid.uuid4().hex,
                        device_id=dev.id or 0,
                        kind="cylinder",
                        acquired_at=at,
                        metrics={"recovery_ratio": ratio},
                        verdicts={
                            "recovery_ratio": {
                                "verdict": verdict,
                                "value": ratio,
                                "tolerance_version": 1,
                            }
                        },
                        tolerance_version=1,
                    )
                )
                if day % 7 or dev is scanner_a:
                    continue
                upgraded = at >= recon_at
                fwhm = 5.0 if upgraded else 7.0
                rc37 = 1.0 if upgraded else 0.99999998  # rounding, not a change
                metrics = {
                    "rc_max_37mm": rc37,
                    "rc_max_10mm": round(_blurred_centre(5.0, fwhm), 6),
                    "rc_mean_10mm": round(_blurred_centre(5.0, fwhm) * 0.7, 6),
                }
                truth = {
                    "spheres": [
                        {"diameter_mm": d, "volume_ml": 4 / 3 * math.pi * (d / 2) ** 3 / 1000,
                         "suv": 8.0}
                        for d in SPHERES_MM
                    ]
                }  # fmt: skip
                lesions = [
                    {
                        "suv_max": 8.0
                        * _blurred_centre(d / 2, fwhm)
                        * (1 + (0.05 * 6 / d if upgraded else 0.0))
                        * float(g.normal(1, 0.005)),
                        "volume_ml": 4 / 3 * math.pi * (d / 2) ** 3 / 1000,
                    }
                    for d in SPHERES_MM
                ]
                s.add(
                    PhantomResult(
                        result_id=uuid.uuid4().hex,
                        device_id=dev.id or 0,
                        kind="nema-iq",
                        acquired_at=at + timedelta(minutes=30),
                        metrics={**metrics, "_truth": truth},
                        verdicts={
                            m: {"verdict": PhantomVerdict.NO_TOLERANCE, "value": v}
                            for m, v in metrics.items()
                        },
                        ai_outputs={"lesions": lesions},
                    )
                )
        critical = _alert(
            device=scanner_a.id,
            stream="phantom.cylinder.recovery_ratio",
            cause=AlertCause.PHANTOM_ACTION,
            severity=Severity.CRITICAL,
            change=data.critical_since,
            opened=now - timedelta(hours=1),
            status=AlertStatus.ACKNOWLEDGED,
        )
        warning = _alert(
            device=scanner_a.id,
            stream="phantom.cylinder.recovery_ratio",
            cause=AlertCause.PHANTOM_TOLERANCE,
            severity=Severity.WARNING,
            change=data.critical_since - timedelta(days=10),
            opened=now - timedelta(hours=1),
        )
        canary = _alert(
            device=scanner_b.id,
            stream="canary.nema-iq",
            cause=AlertCause.AI_CANARY,
            severity=Severity.CRITICAL,
            change=recon_at + timedelta(days=3),
            opened=now - timedelta(hours=1),
        )
        s.add_all([critical, warning, canary])
        s.flush()
        data.device_alert, data.canary_alert = critical.id or 0, canary.id or 0
    return data
