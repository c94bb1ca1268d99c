"""The subgroup table and the disparity monitor over the store (SQLite and PostgreSQL): an age
band whose sensitivity falls is named, with a gap whose interval covers the injected truth and
the date the change began; a group too small for the margin says how many more cases it needs;
a second pass opens nothing new; a resolved alert restarts its chart."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from phase4.alerts.notify.render import what_to_check
from phase4.monitor.core.statuses import AlertCause, AlertStatus
from phase4.monitor.store.db import alembic_config
from phase4.monitor.store.models import (
    Alert,
    Deployment,
    Feedback,
    InferenceRecord,
    SubgroupSnapshot,
)
from phase4.monitor.surveillance.detection import detect_all
from phase4.monitor.surveillance.subgroups import process_subgroups, subgroup_table
from tests.conftest import Fixture

T0 = datetime(2026, 1, 5, 8, tzinfo=UTC)
BANDS = ("<18", "18-39", "40-64", "65-79", "80+")
SHARES = (0.004, 0.25, 0.4, 0.25, 0.096)
SENSITIVITY, SPECIFICITY = 0.9, 0.88
DRIFTED = 0.5  # the 65-79 band's sensitivity after the change
DAYS, PER_DAY, CHANGE_DAY = 300, 12, 120
CONFIG = {
    "studies_per_day": PER_DAY,
    "false_alarms_per_year": 1,
    "reference_size": 200,
    "streams": [{"field": "outputs.malignancy_score", "kind": "numeric"}],
    "performance": {
        "prediction": "positive",
        "truth": "malignant",
        "score": "malignancy_score",
        "dice": False,
    },
    "subgroups": {"margin": 0.10},
}


def fill(engine: Engine, deployment: str, *, drift: bool = True, seed: int = 11) -> None:
    """A year of records at one site, half of them labelled; from CHANGE_DAY the 65-79 band's
    malignant studies are found with probability DRIFTED instead of SENSITIVITY."""
    rng = np.random.default_rng(seed)
    with Session(engine) as s:
        dep = s.get(Deployment, deployment)
        assert dep is not None
        dep.monitoring = CONFIG
        s.add(dep)
        labels: list[Feedback] = []
        for i in range(DAYS * PER_DAY):
            at = T0 + timedelta(days=i / PER_DAY)
            band = str(rng.choice(BANDS, p=SHARES))
            truth = bool(rng.random() < 0.45)
            changed = drift and band == "65-79" and i >= CHANGE_DAY * PER_DAY
            sens = DRIFTED if changed else SENSITIVITY
            call = bool(rng.random() < sens) if truth else bool(rng.random() > SPECIFICITY)
            score = float(np.clip(rng.normal(0.75 if call else 0.25, 0.1), 0.01, 0.99))
            record_id = uuid.uuid4().hex
            s.add(
                InferenceRecord(
                    record_id=record_id,
                    deployment_id=deployment,
                    acquired_at=at,
                    inferred_at=at,
                    features={
                        "patient_sex": "F" if rng.random() < 0.5 else "M",
                        "patient_age_band": band,
                        "scanner_model": "Biograph Vision 600",
                    },
                    outputs={"positive": call, "malignancy_score": round(score, 4)},
                )
            )
            if rng.random() < 0.5:
                labels.append(
                    Feedback(
                        feedback_id=uuid.uuid4().hex,
                        record_id=record_id,
                        verdict="accepted",
                        ground_truth={"malignant": truth},
                        given_at=at + timedelta(days=7),
                    )
                )
        s.flush()
        s.add_all(labels)
        s.commit()


def _disparity_alerts(engine: Engine) -> list[Alert]:
    with Session(engine) as s:
        return list(s.exec(select(Alert).where(Alert.cause == AlertCause.DISPARITY)))


def _row(table: dict[str, Any], dimension: str, group: str) -> dict[str, Any]:
    return next(r for r in table["groups"] if r["dimension"] == dimension and r["group"] == group)


def test_a_falling_age_band_is_named_with_a_gap_that_covers_the_truth(
    engine: Engine, world: Fixture
) -> None:
    fill(engine, world.deployment_a)
    detect_all(engine)
    first = process_subgroups(engine)
    alerts = _disparity_alerts(engine)
    assert [a.stream for a in alerts] == ["subgroups.age_band=65-79.sensitivity"], [
        a.title for a in alerts
    ]
    alert = alerts[0]
    assert first.alerts_opened == [alert.id]
    ev = alert.evidence
    assert ev["group"] == "65-79" and ev["dimension"] == "age_band"
    low, high = ev["gap"]["ci95"]
    assert low <= SENSITIVITY - DRIFTED <= high, ev["gap"]
    assert low > 0.10  # beyond the margin
    began = datetime.fromisoformat(ev["change_timestamp"])
    change = T0 + timedelta(days=CHANGE_DAY)
    assert change - timedelta(days=30) <= began <= datetime.fromisoformat(ev["timestamp"])
    assert "age band 65-79" in alert.title and "points below the rest" in alert.title
    assert f"since {began.date().isoformat()}" in alert.title
    assert ev["headline"] == alert.title
    assert "subgroup page" in what_to_check(alert)[0]  # the email's checklist
    # the share of the budget and its split are in the evidence
    # one stream, two performance streams, two estimated without labels, the monitor
    assert ev["budget"]["shares"] == 1 + 2 + 2 + 1
    assert ev["charts_sharing"] == 2 * (2 + 5)  # sex F/M and five bands, two metrics each

    # a second pass opens nothing new and counts no repeat
    assert process_subgroups(engine).alerts_opened == []
    assert len(_disparity_alerts(engine)) == 1
    assert "repeats" not in _disparity_alerts(engine)[0].evidence

    # the table says the same
    with Session(engine) as s:
        dep = s.get(Deployment, world.deployment_a)
        assert dep is not None
        table = subgroup_table(s, dep)
    row = _row(table, "age_band", "65-79")
    assert row["disparity"]["sensitivity"]["verdict"] == "gap"
    assert _row(table, "age_band", "40-64")["disparity"]["sensitivity"]["verdict"] == "within"
    sens = row["rates"]["sensitivity"]
    assert sens["ci95"][0] <= sens["value"] <= sens["ci95"][1]
    assert row["gaps"]["sensitivity"]["value"] > 0.2
    # without labels: the drift pass's calibration, per group, with the realised value's range
    estimated = row["estimated"]["sensitivity"]
    low, high = estimated["range95"]
    assert low <= estimated["value"] <= high and high - low < 0.3
    assert table["disparity"]["on"] is True


def test_a_small_group_says_how_many_more_labelled_cases_it_needs(
    engine: Engine, world: Fixture
) -> None:
    fill(engine, world.deployment_a, drift=False)
    detect_all(engine)
    assert process_subgroups(engine).alerts_opened == []
    with Session(engine) as s:
        dep = s.get(Deployment, world.deployment_a)
        assert dep is not None
        table = subgroup_table(s, dep)
    chart = _row(table, "age_band", "<18")["disparity"]["sensitivity"]
    assert chart["verdict"] == "too_few"
    assert chart["cases"] < chart["cases_needed"]
    assert chart["needed_more"] == chart["cases_needed"] - chart["cases"] > 0
    assert chart["words"] == f"needs {chart['needed_more']} more confirmed-positive labelled cases"
    # a group with enough cases has a verdict
    assert _row(table, "sex", "female")["disparity"]["sensitivity"]["verdict"] == "within"


def test_a_resolved_alert_restarts_its_chart(engine: Engine, world: Fixture) -> None:
    fill(engine, world.deployment_a)
    detect_all(engine)
    process_subgroups(engine)
    (alert,) = _disparity_alerts(engine)
    with Session(engine) as s:
        row = s.get(Alert, alert.id)
        assert row is not None
        row.status = AlertStatus.RESOLVED
        s.add(row)
        s.commit()
    process_subgroups(engine)
    alerts = sorted(_disparity_alerts(engine), key=lambda a: a.id or 0)
    # the gap persists after the first alarm, so the restarted chart alarms again, on cases
    # after those the first alarm counted
    assert len(alerts) == 2, [a.title for a in alerts]
    assert alerts[1].evidence["change_timestamp"] > alerts[0].evidence["timestamp"]
    assert alerts[1].status == AlertStatus.OPEN


def test_migration_0011_creates_and_drops_the_snapshot_table(
    engine: Engine, world: Fixture, db_url: str
) -> None:
    fill(engine, world.deployment_a, drift=False)
    detect_all(engine)
    process_subgroups(engine)
    with Session(engine) as s:
        saved = s.get(SubgroupSnapshot, world.deployment_a)
        assert saved is not None and saved.snapshot["deployment"] == world.deployment_a
    engine.dispose()
    command.downgrade(alembic_config(db_url), "0010_revalidation")
    assert "subgroup_snapshot" not in sa.inspect(engine).get_table_names()
    engine.dispose()
    command.upgrade(alembic_config(db_url), "head")
    columns = {c["name"] for c in sa.inspect(engine).get_columns("subgroup_snapshot")}
    assert columns == {"deployment_id", "snapshot", "updated_at"}
    engine.dispose()
