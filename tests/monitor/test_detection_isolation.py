"""Whatever the store holds, one bad value, stream or deployment never stops detection of the
others (SQLite and PostgreSQL): values beyond float range are missing, a stream whose update
raises is quarantined with one plain-words alert, a deployment whose configuration or state
cannot be read gets one alert and is skipped while the others go on."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from phase4.monitor.store.models import Alert, Deployment, DetectorState, InferenceRecord
from phase4.monitor.surveillance.detection import detect_all, reset_reference
from phase4.service import DetectionWorker
from tests.conftest import Fixture

T0 = datetime(2026, 3, 2, 8, tzinfo=UTC)
HUGE = 10**400  # a JSON integer of 401 digits: valid JSON, beyond float range
STREAMS = [
    {"field": "features.liver_suvmean", "kind": "numeric"},
    {"field": "features.injected_activity_mbq", "kind": "numeric"},
    {"field": "outputs.positive", "kind": "binary"},
]
MONITORING = {"streams": STREAMS, "reference_size": 30, "studies_per_day": 20}


def _configure(engine: Engine, deployment: str, monitoring: dict[str, Any]) -> None:
    with Session(engine) as s:
        dep = s.get(Deployment, deployment)
        assert dep is not None
        dep.monitoring = monitoring
        s.add(dep)
        s.commit()


def _insert(
    engine: Engine, deployment: str, n: int, *, start: int = 0, bad_at: int | None = None
) -> None:
    """Records written straight into the store, as an older API version may have let in."""
    g = np.random.default_rng(start + len(deployment))
    with Session(engine) as s:
        for i in range(start, start + n):
            at = T0 + timedelta(hours=i)
            liver: Any = round(float(g.normal(2.2, 0.2)), 3)
            if i == bad_at:
                liver = HUGE
            s.add(
                InferenceRecord(
                    record_id=uuid.uuid4().hex,
                    deployment_id=deployment,
                    acquired_at=at,
                    inferred_at=at + timedelta(minutes=5),
                    features={
                        "liver_suvmean": liver,
                        "injected_activity_mbq": round(float(g.normal(250, 25)), 1),
                    },
                    outputs={"positive": bool(g.random() < 0.3)},
                )
            )
        s.commit()


def _processed(engine: Engine, deployment: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM inference_record WHERE deployment_id = :d "
                    "AND drift_processed_at IS NOT NULL"
                ),
                {"d": deployment},
            ).scalar_one()
        )


def _streams(engine: Engine, deployment: str) -> dict[str, Any]:
    with Session(engine) as s:
        row = s.exec(select(DetectorState).where(DetectorState.deployment_id == deployment)).one()
        return dict(row.state["streams"])


def _alerts(engine: Engine, deployment: str) -> list[Alert]:
    with Session(engine) as s:
        return list(s.exec(select(Alert).where(Alert.deployment_id == deployment)))


def test_a_value_beyond_float_range_is_missing_at_its_site_and_both_sites_go_on(
    world: Fixture, caplog: pytest.LogCaptureFixture
) -> None:
    """The review's case: one accepted 400-digit integer stopped detection at both sites (0 of
    60 records analysed, the worker failing every pass)."""
    for dep in (world.deployment_a, world.deployment_b):
        _configure(world.engine, dep, MONITORING)
    _insert(world.engine, world.deployment_a, 60, bad_at=5)  # site A sorts first
    _insert(world.engine, world.deployment_b, 60)
    caplog.set_level(logging.INFO)
    results = {r.deployment: r for r in detect_all(world.engine)}
    assert results[world.deployment_a].records == 60
    assert results[world.deployment_b].records == 60
    assert _processed(world.engine, world.deployment_a) == 60
    assert _processed(world.engine, world.deployment_b) == 60
    liver = _streams(world.engine, world.deployment_a)["features.liver_suvmean"]
    assert liver["observations"] == 59 and liver["unusable"] == 1
    assert liver["quarantine"] is None
    assert _streams(world.engine, world.deployment_b)["features.liver_suvmean"]["unusable"] == 0
    assert str(HUGE)[:30] not in caplog.text
    # the service's worker runs the same pass: no step fails
    worker = DetectionWorker(world.engine, interval_s=3600)
    _insert(world.engine, world.deployment_a, 5, start=60, bad_at=61)
    worker.run_once()
    assert "pass failed" not in caplog.text
    assert _processed(world.engine, world.deployment_a) == 65


def test_an_unknown_stream_kind_skips_only_its_deployment_with_one_alert(world: Fixture) -> None:
    """The review's second case: a configuration naming an unknown stream kind stopped every
    deployment sorted after it."""
    broken = {**MONITORING, "streams": [*STREAMS, {"field": "features.x", "kind": "histogram"}]}
    _configure(world.engine, world.deployment_a, broken)
    _configure(world.engine, world.deployment_b, MONITORING)
    _insert(world.engine, world.deployment_a, 60)
    _insert(world.engine, world.deployment_b, 60)
    analysed_b = 0
    for _ in range(2):  # skipped at every pass, alerted once
        results = {r.deployment: r for r in detect_all(world.engine)}
        analysed_b += results[world.deployment_b].records
        assert results[world.deployment_a].records == 0
    assert analysed_b == 60
    assert _processed(world.engine, world.deployment_b) == 60
    assert _processed(world.engine, world.deployment_a) == 0
    [alert] = _alerts(world.engine, world.deployment_a)
    assert alert.cause == "config_error"
    assert "monitoring configuration" in alert.title and "kind must be" in alert.title
    assert "other deployments" in alert.title
    # configuration corrected: the deployment's waiting records are analysed at the next pass
    _configure(world.engine, world.deployment_a, MONITORING)
    results = {r.deployment: r for r in detect_all(world.engine)}
    assert results[world.deployment_a].records == 60
    assert _processed(world.engine, world.deployment_a) == 60


def test_a_stream_whose_update_raises_is_quarantined_once_and_the_others_go_on(
    world: Fixture,
) -> None:
    _configure(world.engine, world.deployment_b, MONITORING)
    _insert(world.engine, world.deployment_b, 40)
    detect_all(world.engine)
    # A state no update could have written (edited, restored from elsewhere): the stream's
    # reference size is text, so its next update raises TypeError.
    with Session(world.engine) as s:
        row = s.exec(
            select(DetectorState).where(DetectorState.deployment_id == world.deployment_b)
        ).one()
        state = dict(row.state)
        streams = dict(state["streams"])
        streams["features.liver_suvmean"] = {
            **streams["features.liver_suvmean"],
            "reference_size": "many",
            "reference": None,
        }
        state["streams"] = streams
        row.state = state
        s.add(row)
        s.commit()
    before = _streams(world.engine, world.deployment_b)
    _insert(world.engine, world.deployment_b, 10, start=40)
    detect_all(world.engine)
    after = _streams(world.engine, world.deployment_b)
    liver = after["features.liver_suvmean"]
    assert liver["quarantine"] is not None
    assert "stream 'features.liver_suvmean' stopped" in liver["quarantine"]["reason"]
    assert "the other 2 streams continues" in liver["quarantine"]["reason"]
    activity = "features.injected_activity_mbq"
    assert after[activity]["seen_records"] == before[activity]["seen_records"] + 10
    assert _processed(world.engine, world.deployment_b) == 50
    [alert] = _alerts(world.engine, world.deployment_b)
    assert alert.cause == "stream_stopped" and alert.stream == "features.liver_suvmean"
    assert alert.title.startswith("stream 'features.liver_suvmean' stopped")
    assert "on 2026-03-04" in alert.title  # the day the first record after it was acquired
    # no further updates, no second alert
    _insert(world.engine, world.deployment_b, 10, start=50)
    detect_all(world.engine)
    again = _streams(world.engine, world.deployment_b)
    assert again["features.liver_suvmean"]["seen_records"] == liver["seen_records"]
    assert again[activity]["seen_records"] == after[activity]["seen_records"] + 10
    assert len(_alerts(world.engine, world.deployment_b)) == 1
    # a reset starts the stream again
    reset_reference(world.engine, world.deployment_b, actor="physicist", reason="state repaired")
    _insert(world.engine, world.deployment_b, 10, start=60)
    detect_all(world.engine)
    liver = _streams(world.engine, world.deployment_b)["features.liver_suvmean"]
    assert liver["quarantine"] is None


def test_a_state_that_cannot_be_read_skips_its_deployment_with_one_alert(
    world: Fixture, caplog: pytest.LogCaptureFixture
) -> None:
    for dep in (world.deployment_a, world.deployment_b):
        _configure(world.engine, dep, MONITORING)
    _insert(world.engine, world.deployment_a, 40)
    _insert(world.engine, world.deployment_b, 40)
    detect_all(world.engine)
    with Session(world.engine) as s:
        row = s.exec(
            select(DetectorState).where(DetectorState.deployment_id == world.deployment_a)
        ).one()
        row.state = {"streams": {"x": {"spec": {"kind": "numeric"}}}, "secret": "0451-PATIENT"}
        s.add(row)
        s.commit()
    _insert(world.engine, world.deployment_a, 10, start=40)
    _insert(world.engine, world.deployment_b, 10, start=40)
    caplog.set_level(logging.INFO)
    for _ in range(2):
        detect_all(world.engine)
    assert _processed(world.engine, world.deployment_b) == 50
    assert _processed(world.engine, world.deployment_a) == 40  # waiting, not lost
    [alert] = _alerts(world.engine, world.deployment_a)
    assert alert.cause == "detection_failed"
    assert "other deployments" in alert.title
    assert "0451-PATIENT" not in caplog.text and "0451-PATIENT" not in alert.title
    assert world.deployment_a in caplog.text
