"""A worker keeps each deployment's monitor between chunks (``MonitorCache``) instead of reading
and parsing the stored state every chunk. That must change nothing: the same records fed in
many small chunks give exactly the same saved states and alerts with the cache, without it,
and with two workers (two caches) taking turns on one store, each finding the state the other
wrote. A chunk that fails after its analysis changed the kept monitor leaves nothing of it
behind: the next chunk reads the stored state."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from phase4.monitor.core.settings import sqlite_url
from phase4.monitor.domain.registry import create_deployment
from phase4.monitor.store.db import create_db_engine, session_scope, upgrade
from phase4.monitor.store.models import Alert, DetectorState, InferenceRecord
from phase4.monitor.surveillance.detection import (
    MonitorCache,
    detect_deployment,
    detect_isolated,
)
from tests.conftest import _truncate_postgres

T0 = datetime(2026, 3, 2, 7, tzinfo=UTC)
DEPLOYMENTS = ["lesion-ai@site-a", "lesion-ai@site-b"]
RECORDS = 420  # per deployment
STEP = 23  # records per deployment arriving between passes
CHUNK = 9  # records per chunk: several chunks per pass
MONITORING = {
    "streams": [
        {"field": "features.liver_suvmean", "kind": "numeric"},
        {"field": "features.injected_activity_mbq", "kind": "numeric"},
        {"field": "outputs.positive", "kind": "binary"},
        {"field": "outputs.lesion_site", "kind": "categorical"},
    ],
    "reference_size": 80,
    "studies_per_day": 20,
}


def _rows() -> list[dict[str, Any]]:
    g = np.random.default_rng(11)
    rows = []
    for i in range(RECORDS):
        for d, dep in enumerate(DEPLOYMENTS):
            shift = 0.4 if d == 0 and i >= 250 else 0.0  # site a drifts: alerts, sized
            at = T0 + timedelta(minutes=41 * i + d)
            rows.append(
                {
                    "record_id": f"{d:02d}{i:030d}",
                    "deployment_id": dep,
                    "acquired_at": at,
                    "inferred_at": at,
                    "received_at": at,
                    "features": {
                        "liver_suvmean": round(float(g.normal(2.2 + shift, 0.2)), 4),
                        "injected_activity_mbq": round(float(g.normal(250, 25)), 2),
                    },
                    "outputs": {
                        "positive": bool(g.random() < 0.3 + shift / 2),
                        "lesion_site": str(g.choice(["lung", "liver", "bone"])),
                    },
                }
            )
    return rows


ROWS = _rows()


def _create(engine: Engine) -> None:
    with session_scope(engine) as s:
        for dep in DEPLOYMENTS:
            create_deployment(
                s,
                deployment_id=dep,
                site_id=dep.split("@")[1],
                model_name="PETLesionDetect",
                model_version="2.1.0",
                actor="test",
                monitoring=MONITORING,
            )


def _run(engine: Engine, workers: list[MonitorCache | None], claim: bool) -> None:
    """Records arrive STEP per deployment at a time; after each arrival one worker (in turn)
    makes a pass over every deployment, in chunks of CHUNK records."""
    _create(engine)
    per_round = STEP * len(DEPLOYMENTS)
    for turn, start in enumerate(range(0, len(ROWS), per_round)):
        with Session(engine) as s:
            s.execute(sa.insert(InferenceRecord), ROWS[start : start + per_round])
            s.commit()
        cache = workers[turn % len(workers)]
        for dep in DEPLOYMENTS:
            result = detect_isolated(engine, dep, claim=claim, batch_records=CHUNK, cache=cache)
            assert not result.failed and not result.skipped


def _outcome(engine: Engine) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    """Every saved state, and every alert with its evidence (less the pass's clock)."""
    with Session(engine) as s:
        states = {r.deployment_id: r.state for r in s.exec(select(DetectorState))}
        alerts = [
            (
                a.deployment_id,
                a.stream,
                a.cause,
                a.status,
                a.title,
                {k: v for k, v in a.evidence.items() if k not in CLOCK_KEYS},
            )
            for a in s.exec(select(Alert).order_by(Alert.id))
        ]
    return states, alerts


# evidence fields written from the wall clock of the pass, not from the records
CLOCK_KEYS = {"headline", "headline_at", "sized_at"}


@pytest.fixture
def pg_engine(postgres_url: str) -> Iterator[Engine]:
    eng = create_db_engine(postgres_url)
    _truncate_postgres(eng)
    yield eng
    _truncate_postgres(eng)
    eng.dispose()


def test_kept_monitors_give_the_same_states_as_reading_them_every_chunk(
    pg_engine: Engine,
) -> None:
    engine = pg_engine
    _run(engine, [None], claim=True)
    expected_states, expected_alerts = _outcome(engine)
    assert sorted(expected_states) == DEPLOYMENTS
    assert all(s["records"] == RECORDS for s in expected_states.values())
    assert any(a[2] == "drift" for a in expected_alerts)  # site a's drift was detected

    _truncate_postgres(engine)
    one = MonitorCache(10)
    _run(engine, [one], claim=True)
    assert _outcome(engine) == (expected_states, expected_alerts)
    assert one.misses == 0 and one.hits > 100  # its own states: never read back

    _truncate_postgres(engine)
    a, b = MonitorCache(10), MonitorCache(10)
    _run(engine, [a, b], claim=True)
    assert _outcome(engine) == (expected_states, expected_alerts)
    # each worker's first chunk of a pass finds the other's state (read), then keeps its own
    assert a.misses >= 2 and b.misses >= 2 and a.hits > 0 and b.hits > 0


def test_a_failed_chunk_leaves_no_kept_monitor_behind(pg_engine: Engine) -> None:
    """A real failure after the analysis: a trigger refuses the state's write once, after
    the chunk's records changed the kept monitor. The chunk rolls back; had the changed
    monitor been kept, the next chunk would feed those records to it a second time."""
    engine = pg_engine
    _run(engine, [None], claim=True)
    expected = _outcome(engine)

    _truncate_postgres(engine)
    # armed by setting the sequence back to 1: sequences ignore the rollback of the failing
    # transaction, so the trigger fires once per arming
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE SEQUENCE test_fail_once START 2"))
        conn.execute(
            sa.text(
                "CREATE OR REPLACE FUNCTION test_fail_once() RETURNS trigger AS $$ BEGIN "
                "IF nextval('test_fail_once') = 1 THEN RAISE EXCEPTION 'refused once'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"
            )
        )
        conn.execute(
            sa.text(
                "CREATE TRIGGER test_fail_once BEFORE UPDATE ON detector_state "
                "FOR EACH ROW EXECUTE FUNCTION test_fail_once()"
            )
        )
    try:
        cache = MonitorCache(10)
        failures = 0
        _create(engine)
        per_round = STEP * len(DEPLOYMENTS)
        for turn, start in enumerate(range(0, len(ROWS), per_round)):
            with Session(engine) as s:
                s.execute(sa.insert(InferenceRecord), ROWS[start : start + per_round])
                s.commit()
            if turn in (3, 9):  # the next state write fails (its own transaction rolls back)
                with engine.begin() as conn:
                    conn.execute(sa.text("SELECT setval('test_fail_once', 1, false)"))
            for dep in DEPLOYMENTS:
                if turn in (3, 9) and dep == DEPLOYMENTS[0]:
                    assert dep in cache  # the failing chunk starts from a kept monitor...
                    with pytest.raises(sa.exc.DBAPIError, match="refused once"):
                        detect_deployment(engine, dep, claim=True, batch_records=CHUNK, cache=cache)
                    assert dep not in cache  # ...which its analysis changed: not kept
                    failures += 1
                    continue
                detect_deployment(engine, dep, claim=True, batch_records=CHUNK, cache=cache)
        assert failures == 2
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TRIGGER IF EXISTS test_fail_once ON detector_state"))
            conn.execute(sa.text("DROP FUNCTION IF EXISTS test_fail_once()"))
            conn.execute(sa.text("DROP SEQUENCE IF EXISTS test_fail_once"))
    # the failed chunks' records were analysed by the next passes, once
    assert _outcome(engine) == expected


def test_kept_monitors_on_sqlite_give_the_same_states(tmp_path: Path) -> None:
    """SQLite: the state is read before the write lock and written by a conditional UPDATE
    under it; two workers taking turns, with and without caches, end equal."""
    outcomes = []
    for name, workers in (("none", [None]), ("two", [MonitorCache(10), MonitorCache(10)])):
        engine = create_db_engine(sqlite_url(tmp_path / f"{name}.db"))
        upgrade(str(engine.url))
        _run(engine, workers, claim=False)
        outcomes.append(_outcome(engine))
        engine.dispose()
    assert outcomes[0] == outcomes[1]
    assert all(s["records"] == RECORDS for s in outcomes[0][0].values())
