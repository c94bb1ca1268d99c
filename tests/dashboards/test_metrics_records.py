"""/metrics reads the record table at a cost that does not grow with it, and stays exact.

The record counters come from a tally kept between scrapes (records are insert-only): each
scrape reads the largest id, the rows added since, and the ids that were absent when counted
(a PostgreSQL batch that commits after a later one). Checked against a full GROUP BY on
SQLite and PostgreSQL, with a real out-of-order commit on PostgreSQL, and by the query plans
of a warm scrape (no full scan of inference_record).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from phase4.monitor.api.metrics import StoreCollector
from phase4.monitor.domain.registry import create_deployment
from phase4.monitor.store.db import create_db_engine, session_scope
from phase4.monitor.store.models import InferenceRecord

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
DEPLOYMENTS = ("lesion-ai@site-a", "lesion-ai@site-b")


def _setup(engine: Engine) -> None:
    with session_scope(engine) as session:
        for dep in DEPLOYMENTS:
            create_deployment(
                session,
                deployment_id=dep,
                site_id=dep.split("@")[1],
                model_name="PETLesionDetect",
                model_version="2.1.0",
                actor="test",
            )


def _row(i: int, *, with_id: bool = True) -> dict[str, Any]:
    row: dict[str, Any] = {
        "record_id": f"rec-{i}",
        "deployment_id": DEPLOYMENTS[i % 3 == 0],
        "acquired_at": T0 + timedelta(minutes=i),
        "inferred_at": T0 + timedelta(minutes=i),
        "received_at": T0 + timedelta(minutes=i, seconds=(i * 37) % 50),
        "features": {"liver_suvmean": 2.0},
        "outputs": {},
    }
    if with_id:
        row["id"] = i
    return row


def _insert(engine: Engine, ids: list[int]) -> None:
    with engine.begin() as conn:
        conn.execute(sa.insert(InferenceRecord), [_row(i) for i in ids])


def _truth(engine: Engine) -> dict[str, tuple[int, datetime | None]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                InferenceRecord.deployment_id,
                sa.func.count(),
                sa.func.max(InferenceRecord.received_at),
            ).group_by(InferenceRecord.deployment_id)
        ).all()
    return {dep: (count, last) for dep, count, last in rows}


def _scrape(collector: StoreCollector) -> dict[str, tuple[int, datetime | None]]:
    return dict(collector._read().records)


def test_counts_stay_exact_across_scrapes_holes_and_late_rows(engine: Engine) -> None:
    _setup(engine)
    collector = StoreCollector(engine)
    assert _scrape(collector) == {}
    _insert(engine, [i for i in range(1, 41) if i not in (10, 11, 12, 25)])
    assert _scrape(collector) == _truth(engine)
    # Rows appear in the holes (a batch that committed late) and above the old maximum.
    _insert(engine, [11, 25, *range(41, 60)])
    assert _scrape(collector) == _truth(engine)
    assert _scrape(collector) == _truth(engine)  # unchanged store, unchanged counts
    _insert(engine, [10, 12, 70])  # fills the last holes and leaves 60-69 absent
    assert _scrape(collector) == _truth(engine)
    assert collector._records is not None and collector._records.holes == [(60, 69)]
    _insert(engine, [65])
    assert _scrape(collector) == _truth(engine)
    assert collector._records.holes == [(60, 64), (66, 69)]


@pytest.mark.postgres
def test_a_batch_committed_after_a_later_one_is_still_counted(postgres_url: str) -> None:
    engine = create_db_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE inference_record, deployment, site, ai_model CASCADE"))
    try:
        _setup(engine)
        collector = StoreCollector(engine)
        _insert_serial(engine, range(1, 21))
        assert _scrape(collector) == _truth(engine)
        slow = engine.connect()
        slow_tx = slow.begin()
        slow.execute(sa.insert(InferenceRecord), [_row(i, with_id=False) for i in range(21, 26)])
        _insert_serial(engine, range(26, 31))  # takes later ids and commits first
        assert _scrape(collector) == _truth(engine)
        slow_tx.commit()
        slow.close()
        assert sum(c for c, _ in _truth(engine).values()) == 30
        assert _scrape(collector) == _truth(engine)
    finally:
        engine.dispose()


def _insert_serial(engine: Engine, numbers: range) -> None:
    with engine.begin() as conn:
        conn.execute(sa.insert(InferenceRecord), [_row(i, with_id=False) for i in numbers])


def _warm_scrape_statements(engine: Engine) -> list[tuple[str, Any]]:
    _setup(engine)
    collector = StoreCollector(engine)
    _insert(engine, [i for i in range(1, 400) if i % 50])
    collector._read()
    _insert(engine, list(range(400, 420)))
    seen: list[tuple[str, Any]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if "inference_record" in statement:
            seen.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", capture)
    try:
        collector._read()
    finally:
        sa.event.remove(engine, "before_cursor_execute", capture)
    assert seen
    return seen


def test_a_warm_scrape_does_not_scan_the_record_table_sqlite(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from phase4.monitor.core.settings import sqlite_url
    from phase4.monitor.store.db import upgrade

    url = sqlite_url(tmp_path / "plans.db")
    upgrade(url)
    engine = create_db_engine(url)
    try:
        statements = _warm_scrape_statements(engine)
        with engine.connect() as conn:
            for statement, parameters in statements:
                plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
                text = " | ".join(str(row[-1]) for row in plan)
                assert "SCAN inference_record" not in text, (statement, text)
                assert "inference_record" in text or "SEARCH" in text, (statement, text)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_warm_scrape_does_not_scan_the_record_table_postgres(postgres_url: str) -> None:
    engine = create_db_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE inference_record, deployment, site, ai_model CASCADE"))
    try:
        statements = _warm_scrape_statements(engine)
        with engine.connect() as conn:
            # A table this small would be read sequentially anyway: forbid that, so that a plan
            # still reading the whole table means there is no index path for the query.
            conn.exec_driver_sql("SET enable_seqscan = off")
            for statement, parameters in statements:
                plan = [
                    str(row[0]).strip()
                    for row in conn.exec_driver_sql("EXPLAIN " + statement, parameters)
                ]
                text = " | ".join(plan)
                assert "Seq Scan on inference_record" not in text, (statement, text)
                # every read of the table is bounded by its index (a full index scan, as a
                # count(*) makes, has no condition)
                for line, below in zip(plan, [*plan[1:], ""], strict=True):
                    if " on inference_record" in line:
                        assert below.startswith(("Index Cond:", "Recheck Cond:")), (line, text)
    finally:
        engine.dispose()
