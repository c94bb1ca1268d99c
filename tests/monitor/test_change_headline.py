"""The size of a change, measured from the store when the drift pass opens an alert and again as
it repeats, and the alert's one-sentence headline (SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from phase4.monitor.store.models import Alert, Deployment, InferenceRecord
from phase4.monitor.surveillance.detection import detect_deployment, reset_reference
from phase4.monitor.surveillance.headline import headline, world_times
from tests.conftest import Fixture

T0 = datetime(2026, 1, 5, 8, tzinfo=UTC)
TRUTH_PCT = 100 * (1 / 1.08 - 1)  # a dose calibrator reading 8% high: SUVs 7.4% low
MONITORING: dict[str, Any] = {
    "studies_per_day": 20,
    "false_alarms_per_year": 1,
    "reference_size": 200,
    "streams": [
        {"field": "features.liver_suvmean", "kind": "numeric"},
        {"field": "outputs.positive", "kind": "binary"},
    ],
}


def _records(
    deployment: str, start: int, n: int, *, biased_from: int | None, seed: int
) -> list[InferenceRecord]:
    g = np.random.default_rng(seed)
    out = []
    for i in range(start, start + n):
        biased = biased_from is not None and i >= biased_from
        liver = float(g.normal(2.2, 0.22)) / (1.08 if biased else 1.0)
        positive = bool(g.random() < (0.6 if biased else 0.3))
        at = T0 + timedelta(hours=1.2 * i)
        out.append(
            InferenceRecord(
                record_id=uuid.uuid4().hex,
                deployment_id=deployment,
                acquired_at=at,
                inferred_at=at + timedelta(minutes=5),
                features={"liver_suvmean": round(liver, 4)},
                outputs={"positive": positive},
            )
        )
    return out


def _setup(engine: Engine, deployment: str, monitoring: dict[str, Any] = MONITORING) -> None:
    with Session(engine) as s:
        dep = s.get(Deployment, deployment)
        assert dep is not None
        dep.monitoring = monitoring
        s.add(dep)
        s.commit()


def _add(engine: Engine, records: list[InferenceRecord]) -> None:
    with Session(engine) as s:
        s.add_all(records)
        s.commit()


def _alert(engine: Engine, deployment: str, stream: str) -> Alert:
    with Session(engine) as s:
        return s.exec(
            select(Alert)
            .where(Alert.deployment_id == deployment, Alert.stream == stream)
            .order_by(col(Alert.id))
        ).one()


def test_a_drift_alert_states_its_size_with_an_interval_that_covers_the_truth(
    world: Fixture,
) -> None:
    dep = world.deployment_a
    _setup(world.engine, dep)
    _add(world.engine, _records(dep, 0, 400, biased_from=300, seed=3))
    detect_deployment(world.engine, dep)
    liver = _alert(world.engine, dep, "features.liver_suvmean")
    change = liver.evidence["change"]
    assert change["stated"] == "pct" and change["kind"] == "numeric"
    assert change["reference"]["source"] == "reference"  # read back and recognised
    assert change["n_before"] == 200
    low, high = change["ci95"]
    assert low <= TRUTH_PCT <= high
    assert change["delta_pct_ci95"] == change["ci95"]
    assert change["unit"] == "SUV" and change["quantity"] == "liver SUVmean"
    began = datetime.fromisoformat(change["began"])
    detected = datetime.fromisoformat(change["detected"])
    assert began <= detected and change["delay_days"] == round(
        (detected - began).total_seconds() / 86400, 1
    )
    text = liver.evidence["headline"]
    assert text.startswith("Liver SUVmean at site-a fell ")
    assert "(95% CI " in text and "from about " in text and "(detected " in text
    assert headline(liver) == text
    first_n = change["n_after"]

    # The change persists: the alert repeats, and its size is measured again on more values.
    _add(world.engine, _records(dep, 400, 300, biased_from=300, seed=4))
    detect_deployment(world.engine, dep)
    again = _alert(world.engine, dep, "features.liver_suvmean")
    refreshed = again.evidence["change"]
    assert again.evidence.get("repeats", 0) >= 1
    assert refreshed["n_after"] > first_n
    assert refreshed["began"] == change["began"] and refreshed["reference"] == change["reference"]
    assert refreshed["ci95"][1] - refreshed["ci95"][0] < high - low  # sharper
    assert refreshed["ci95"][0] <= TRUTH_PCT <= refreshed["ci95"][1]
    assert again.evidence["headline"] != text  # the sentence follows the size

    rate = _alert(world.engine, dep, "outputs.positive")
    c = rate.evidence["change"]
    assert c["stated"] == "points" and c["n_before"] >= 200
    assert c["ci95"][0] <= 30.0 <= c["ci95"][1]  # 30% -> 60%
    assert c["before_ci95"][0] <= c["before"] <= c["before_ci95"][1]
    assert rate.evidence["headline"].startswith("AI positive-call rate at site-a rose from ")


def test_a_reference_that_cannot_be_read_back_is_replaced_by_the_values_before_the_change(
    world: Fixture,
) -> None:
    """After a reset the reference is not the deployment's first records: the size is then
    measured against the values just before the change, and the method says so."""
    dep = world.deployment_a
    _setup(world.engine, dep)
    _add(world.engine, _records(dep, 0, 250, biased_from=None, seed=5))
    detect_deployment(world.engine, dep)
    reset_reference(world.engine, dep, actor="test", reason="validated protocol change")
    _add(world.engine, _records(dep, 250, 450, biased_from=600, seed=6))
    detect_deployment(world.engine, dep)
    change = _alert(world.engine, dep, "features.liver_suvmean").evidence["change"]
    assert change["reference"]["source"] == "before"
    assert "just before the change" in change["method"]
    assert change["ci95"][0] <= TRUTH_PCT <= change["ci95"][1]


def test_a_time_after_the_present_is_never_shown_as_a_date(world: Fixture) -> None:
    future = datetime.now(UTC) + timedelta(days=3)
    alert = Alert(
        id=5,
        deployment_id=world.deployment_a,
        stream="performance.false_positive",
        cause="performance",
        severity="critical",
        title="t",
        evidence={
            "stream_kind": "binary",
            "direction": "up",
            "timestamp": future.isoformat(),
            "change_timestamp": (future - timedelta(days=10)).isoformat(),
        },
    )
    text = headline(alert, site="site-a")
    assert future.strftime("%b") not in text.split("(detected")[1]
    assert "a date in the future" in text
    times = world_times(alert)
    assert times.future and times.detected is None and times.delay_days is None
