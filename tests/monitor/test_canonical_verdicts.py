"""Phantom verdicts are canonical in the store (SQLite and PostgreSQL): migration 0008 rewrites
the synonyms older rows hold, and readers then look verdicts up without normalising them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory
from sqlmodel import Session, col, select

from phase4.monitor.core.statuses import PhantomVerdict
from phase4.monitor.core.verdicts import stored_verdict, verdict_level
from phase4.monitor.domain.registry import ensure_device
from phase4.monitor.store.db import alembic_config, current_revision
from phase4.monitor.store.models import PhantomResult
from tests.conftest import Fixture

AT = datetime(2026, 3, 2, 7, 30, tzinfo=UTC)
# Stored before verdicts were enforced → what migration 0008 leaves.
ROWS: list[tuple[dict[str, Any], dict[str, Any]]] = [
    (
        {"iu": "OK", "du": "Within Tolerance", "cv": "warn", "x": "Outside-Action"},
        {"iu": "pass", "du": "pass", "cv": "tolerance", "x": "action"},
    ),
    (
        {"a": True, "b": False, "c": "fail", "d": "failed", "e": "warning"},
        {"a": "pass", "b": "action", "c": "action", "d": "action", "e": "tolerance"},
    ),
    (
        {
            "suv": {"verdict": "outside_tolerance", "value": 1.07, "tolerance_version": 2},
            "cv": {"status": "ok", "value": 4.0},
            "iu": {"verdict": "no_tolerance", "value": 2.1},
            "du": {"verdict": "unheard-of", "value": 1.0},
        },
        {
            "suv": {"verdict": "tolerance", "value": 1.07, "tolerance_version": 2},
            "cv": {"status": "ok", "value": 4.0, "verdict": "pass"},
            "iu": {"verdict": "no_tolerance", "value": 2.1},
            "du": {"verdict": "unheard-of", "value": 1.0},
        },
    ),
    (  # already canonical: untouched
        {"suv": {"verdict": "action", "value": 0.8}, "n": 3},
        {"suv": {"verdict": "action", "value": 0.8}, "n": 3},
    ),
]


def test_migration_0008_rewrites_synonyms_and_readers_look_them_up(
    world: Fixture, db_url: str
) -> None:
    engine = world.engine
    with Session(engine) as s:
        device = ensure_device(
            s, site_id="site-a", manufacturer="GE", model="Discovery MI", serial="D1", actor="t"
        )
        s.commit()
        device_id = device.id
    engine.dispose()
    command.downgrade(alembic_config(db_url), "0007_detection_claims")
    table = sa.table(
        "phantom_result",
        sa.column("result_id", sa.String()),
        sa.column("device_id", sa.Integer()),
        sa.column("kind", sa.String()),
        sa.column("acquired_at", sa.DateTime(timezone=True)),
        sa.column("metrics", sa.JSON()),
        sa.column("verdicts", sa.JSON()),
        sa.column("received_at", sa.DateTime(timezone=True)),
    )
    with engine.begin() as conn:
        conn.execute(
            sa.insert(table),
            [
                {
                    "result_id": f"old-{i}",
                    "device_id": device_id,
                    "kind": "flood",
                    "acquired_at": AT,
                    "metrics": {},
                    "verdicts": before,
                    "received_at": AT,
                }
                for i, (before, _) in enumerate(ROWS)
            ],
        )
    engine.dispose()
    command.upgrade(alembic_config(db_url), "head")
    assert (
        current_revision(engine)
        == ScriptDirectory.from_config(alembic_config(db_url)).get_current_head()
    )
    with Session(engine) as s:
        stored = {
            r.result_id: r.verdicts
            for r in s.exec(select(PhantomResult).order_by(col(PhantomResult.result_id)))
        }
    assert stored == {f"old-{i}": after for i, (_, after) in enumerate(ROWS)}
    levels = {k: verdict_level(v) for k, v in stored["old-1"].items()}
    assert levels == {"a": 0, "b": 2, "c": 2, "d": 2, "e": 1}
    assert stored_verdict(stored["old-2"]["iu"]) is PhantomVerdict.NO_TOLERANCE
    assert verdict_level(stored["old-2"]["du"]) is None  # not a verdict, then or now
    # a reader no longer normalises: a synonym written around the API is not a verdict
    assert verdict_level("fail") is None and verdict_level(True) is None
    # downgrading keeps the canonical words (every earlier reader knew them)
    engine.dispose()
    command.downgrade(alembic_config(db_url), "0007_detection_claims")
    with engine.connect() as conn:
        kept = conn.execute(sa.select(table.c.verdicts).where(table.c.result_id == "old-0"))
        assert kept.scalar_one() == ROWS[0][1]
    engine.dispose()
    command.upgrade(alembic_config(db_url), "head")
