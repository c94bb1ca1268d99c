"""The false-alarm budget follows the observed arrival rate of studies
(phase4.monitor.drift.rate; docs/STATISTICS.md, "The false-alarm budget"): a deployment
configured for 20 studies a day that receives 200 keeps its budget of false alarms only when
its detectors are recalibrated to the rate it sees. Stationary data, so every alarm is false;
the expected number of false alarms is F × years, Poisson-distributed (Montgomery,
*Introduction to Statistical Quality Control*, §9.1: false alarms per unit time = observations
per unit time / ARL0)."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from phase4.monitor.core.statuses import AlertCause, Severity
from phase4.monitor.drift import rate as rate_rules
from phase4.monitor.store.models import Alert, AuditEntry, Deployment, InferenceRecord
from phase4.monitor.surveillance.detection import (
    MonitorCache,
    PassResult,
    detect_deployment,
    load_state,
)
from tests.conftest import Fixture

T0 = datetime(2026, 1, 5, tzinfo=UTC)
CONFIGURED = 20.0  # studies a day, in the configuration
ARRIVING = 200.0  # studies a day, in fact
F = 44.0  # false alarms a year: about 22 expected in the half year simulated
DAYS = 182.5
MONITORING = {
    "streams": [{"field": "features.liver_suvmean", "kind": "numeric"}],
    "studies_per_day": CONFIGURED,
    "false_alarms_per_year": F,
    # completes after 7.5 days at 200 a day, once the rate is measured (7 days)
    "reference_size": 1500,
}


def _ingest(engine: Engine, deployment: str, days: float, *, seed: int = 0) -> int:
    n = int(days * ARRIVING)
    g = np.random.default_rng(seed)
    values = g.normal(2.2, 0.2, n)
    step = timedelta(days=1 / ARRIVING)
    with Session(engine) as s:
        dep = s.get(Deployment, deployment)
        assert dep is not None
        dep.monitoring = MONITORING
        dep.accepted_at = None
        s.add(dep)
        s.commit()
    rows = [
        {
            "record_id": uuid.uuid4().hex,
            "deployment_id": deployment,
            "acquired_at": T0 + i * step,
            "inferred_at": T0 + i * step,
            "received_at": T0 + i * step,
            "features": {"liver_suvmean": round(float(values[i]), 4)},
            "outputs": {},
        }
        for i in range(n)
    ]
    with engine.begin() as conn:
        for i in range(0, n, 5000):
            conn.execute(sa.insert(InferenceRecord.__table__), rows[i : i + 5000])  # type: ignore[attr-defined]
    return n


def _false_alarms(result: PassResult) -> int:
    return sum(1 for a in result.alarms if a.alarm.kind not in ("notice", "quarantine"))


def _run(world: Fixture, cache: MonitorCache | None = None) -> PassResult:
    _ingest(world.engine, world.deployment_b, DAYS)
    return detect_deployment(world.engine, world.deployment_b, batch_records=1000, cache=cache)


def test_the_budget_holds_at_ten_times_the_configured_rate(world: Fixture) -> None:
    result = _run(world, MonitorCache(10))
    expected = F * DAYS / 365  # the budget over the simulated time
    alarms = _false_alarms(result)
    print(f"observed-rate budget: {alarms} false alarms, budget {expected:.1f}")
    # within budget, allowing three Poisson standard deviations at the expected count
    assert alarms <= expected + 3 * math.sqrt(expected)
    with Session(world.engine) as s:
        _, monitor = load_state(s, world.deployment_b)
    assert monitor is not None
    assert monitor.config.studies_per_day == pytest.approx(ARRIVING, rel=0.05)
    # the stream's ARL0 is the one the observed rate gives: S · 365 · r / F
    budget = monitor.streams["features.liver_suvmean"].budget
    assert budget is not None
    assert budget["arl0"] == pytest.approx(365 * ARRIVING / F, rel=0.05)


def test_without_following_the_rate_the_budget_is_overspent_tenfold(
    world: Fixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rate_rules, "MIN_DAYS", 1e9)  # the rate is never measured
    result = _run(world)
    expected = F * DAYS / 365
    alarms = _false_alarms(result)
    print(f"configured-rate budget: {alarms} false alarms, budget {expected:.1f}")
    assert alarms >= 5 * expected
    with Session(world.engine) as s:
        assert s.exec(select(Alert).where(Alert.cause == AlertCause.BUDGET_RATE)).first() is None


def test_the_recalibration_is_audited_once_and_the_notice_names_both_rates(
    world: Fixture,
) -> None:
    _ingest(world.engine, world.deployment_b, 40)
    cache = MonitorCache(10)
    detect_deployment(world.engine, world.deployment_b, batch_records=1000, cache=cache)
    with Session(world.engine) as s:
        entries = s.exec(
            select(AuditEntry)
            .where(AuditEntry.action == "budget.rate")
            .order_by(col(AuditEntry.seq))
        ).all()
        assert len(entries) == 1  # hysteresis: 200 a day stays within 2x of the rate in use
        entry = entries[0]
        assert entry.entity_id == world.deployment_b
        assert entry.old_value is not None and entry.new_value is not None
        assert entry.old_value["studies_per_day"] == CONFIGURED
        assert entry.new_value["studies_per_day"] == pytest.approx(ARRIVING, rel=0.05)
        ratio = entry.new_value["arl0_full_coverage"] / entry.old_value["arl0_full_coverage"]
        assert ratio == pytest.approx(ARRIVING / CONFIGURED, rel=0.05)
        notices = s.exec(
            select(Alert).where(
                Alert.deployment_id == world.deployment_b, Alert.cause == AlertCause.BUDGET_RATE
            )
        ).all()
        assert len(notices) == 1
        notice = notices[0]
        assert notice.severity == Severity.INFO
        assert "arrive at 200 a day" in notice.title
        assert "the configuration says 20" in notice.title
        assert "the budget now uses 200" in notice.title
    # the kept monitor is the stored one: recalibrated in both
    with Session(world.engine) as s:
        _, stored = load_state(s, world.deployment_b)
    kept = cache.take(world.deployment_b)
    assert stored is not None and kept is not None
    assert kept[1].to_dict() == stored.to_dict()
    assert stored.config.studies_per_day == pytest.approx(ARRIVING, rel=0.05)
