"""Several detection workers on one PostgreSQL (`phase4 detect --loop`, real processes): each
record is analysed exactly once, a worker SIGKILLed in the middle of a chunk loses nothing
(its transaction rolls back and another worker analyses the chunk), and the detector states
and alerts equal those of a single worker on the same data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
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
from phase4.monitor.surveillance.detection import detect_all
from tests.conftest import _truncate_postgres

T0 = datetime(2026, 2, 2, 7, tzinfo=UTC)
DEPLOYMENTS = [f"lesion-ai@site-{c}" for c in "abcd"]
RECORDS = 1200
BATCH = 200
MONITORING = {
    "streams": [
        {"field": "features.liver_suvmean", "kind": "numeric"},
        {"field": "features.injected_activity_mbq", "kind": "numeric"},
        {"field": "outputs.positive", "kind": "binary"},
    ],
    "reference_size": 200,
    "studies_per_day": 20,
}
pytestmark = pytest.mark.postgres


def _fill(engine: Engine) -> None:
    """The same deployments and records, in the same order, whatever the store."""
    with session_scope(engine) as s:
        for dep in DEPLOYMENTS:
            site = dep.split("@")[1]
            create_deployment(
                s,
                deployment_id=dep,
                site_id=site,
                model_name="PETLesionDetect",
                model_version="2.1.0",
                actor="test",
                monitoring=MONITORING,
            )
    g = np.random.default_rng(8)
    rows: list[dict[str, Any]] = []
    for d, dep in enumerate(DEPLOYMENTS):
        for i in range(RECORDS):
            shift = 0.3 if d % 2 == 0 and i >= 700 else 0.0  # half the sites drift
            at = T0 + timedelta(minutes=37 * i + d)
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
                    "outputs": {"positive": bool(g.random() < 0.3)},
                }
            )
    with Session(engine) as s:
        s.execute(sa.insert(InferenceRecord), rows)
        s.commit()


def _states(engine: Engine) -> dict[str, dict[str, Any]]:
    with Session(engine) as s:
        return {r.deployment_id: r.state for r in s.exec(select(DetectorState))}


def _alerts(engine: Engine) -> set[tuple[Any, ...]]:
    with Session(engine) as s:
        return {
            (
                a.deployment_id,
                a.stream,
                a.cause,
                a.evidence.get("timestamp"),
                a.evidence.get("change_timestamp"),
                a.evidence.get("repeats"),
            )
            for a in s.exec(select(Alert))
        }


def _worker(url: str, name: str) -> subprocess.Popen[bytes]:
    named = sa.make_url(url).update_query_dict({"application_name": name})
    cli = Path(sys.executable).parent / "phase4"
    return subprocess.Popen(
        [
            str(cli),
            "detect",
            "--loop",
            "--interval-s",
            "0.2",
            "--stop-when-idle",
            "--database-url",
            named.render_as_string(hide_password=False),
        ],
        env={**os.environ, "PHASE4_DETECTION_BATCH_RECORDS": str(BATCH)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _mid_chunk(engine: Engine, name: str) -> bool:
    """The worker's transaction holds the deployment claim and has read records."""
    with engine.connect() as conn:
        held = conn.execute(
            sa.text(
                "SELECT count(DISTINCT c.relname) FROM pg_locks l "
                "JOIN pg_stat_activity a ON a.pid = l.pid "
                "JOIN pg_class c ON c.oid = l.relation "
                "WHERE a.application_name = :n AND l.granted "
                "AND c.relname IN ('deployment', 'inference_record')"
            ),
            {"n": name},
        ).scalar_one()
    return int(held) == 2


def _connected(engine: Engine, name: str) -> bool:
    with engine.connect() as conn:
        return bool(
            conn.execute(
                sa.text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :n"),
                {"n": name},
            ).scalar_one()
        )


def _unprocessed(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.text("SELECT count(*) FROM inference_record WHERE drift_processed_at IS NULL")
            ).scalar_one()
        )


@pytest.fixture
def pg_engine(postgres_url: str) -> Iterator[Engine]:
    """PostgreSQL only: claims between processes are PostgreSQL's (SQLite has one writer)."""
    eng = create_db_engine(postgres_url)
    _truncate_postgres(eng)
    yield eng
    eng.dispose()


def test_three_workers_one_killed_mid_chunk_analyse_each_record_once(
    pg_engine: Engine, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, total = pg_engine, RECORDS * len(DEPLOYMENTS)
    _fill(engine)
    # worker 1 first, connected before the others start: on a loaded machine its start-up
    # (imports) could otherwise outlast the whole pass of the two others, leaving it no chunk
    workers = {"phase4-w1": _worker(postgres_url, "phase4-w1")}
    try:
        deadline = time.monotonic() + 120
        while not _connected(engine, "phase4-w1"):
            assert workers["phase4-w1"].poll() is None, "worker 1 ended before it connected"
            assert time.monotonic() < deadline, "worker 1 never connected"
            time.sleep(0.05)
        workers |= {name: _worker(postgres_url, name) for name in ("phase4-w2", "phase4-w3")}
        # killed holding a claim, after some chunks were committed: in the middle of the pass
        while not (_unprocessed(engine) < total and _mid_chunk(engine, "phase4-w1")):
            assert workers["phase4-w1"].poll() is None, "worker 1 ended before it was killed"
            assert time.monotonic() < deadline, "worker 1 never claimed a chunk"
            time.sleep(0.005)
        workers["phase4-w1"].send_signal(signal.SIGKILL)
        left_at_kill = _unprocessed(engine)
        for name in ("phase4-w2", "phase4-w3"):
            _, err = workers[name].communicate(timeout=300)
            assert workers[name].returncode == 0, err.decode()[-2000:]
    finally:
        for proc in workers.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert workers["phase4-w1"].wait() == -signal.SIGKILL
    assert 0 < left_at_kill < total  # killed mid-pass
    assert _unprocessed(engine) == 0
    states = _states(engine)
    assert sorted(states) == DEPLOYMENTS
    for dep, state in states.items():
        assert state["records"] == RECORDS, dep  # each record fed once, no more, no less
    # a single worker (in this process) on the same data in another store
    single = create_db_engine(sqlite_url(tmp_path / "single.db"))
    upgrade(str(single.url))
    _fill(single)
    monkeypatch.setenv("PHASE4_DETECTION_BATCH_RECORDS", str(BATCH))
    assert sum(r.records for r in detect_all(single)) == total
    assert _states(single) == states
    alerts = _alerts(engine)
    assert alerts == _alerts(single)
    assert any(a[2] == "drift" for a in alerts)  # the drifting sites were detected
    single.dispose()
