"""The store on SQLite and PostgreSQL: migrations match the models, times are UTC, the audit
chain detects tampering, tokens are stored as hashes only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Engine
from sqlmodel import select

from phase4.monitor.domain.registry import RegistryError, create_deployment
from phase4.monitor.store.audit import record_action, verify_chain
from phase4.monitor.store.auth import Role, TokenError, authenticate, create_token, token_digest
from phase4.monitor.store.db import (
    SCHEMA_HEAD,
    DatabaseURLError,
    alembic_config,
    create_db_engine,
    current_revision,
    session_scope,
    upgrade,
)
from phase4.monitor.store.models import ApiToken, InferenceRecord


def test_migrations_match_the_models(db_url: str) -> None:
    upgrade(db_url)  # idempotent on an already-migrated database
    command.check(alembic_config(db_url))  # raises if models and migrations differ


def test_schema_head_is_alembics_head_and_a_stale_store_is_still_migrated(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from alembic.script import ScriptDirectory

    url = f"sqlite:///{tmp_path / 'store.db'}"
    assert ScriptDirectory.from_config(alembic_config(url)).get_current_head() == SCHEMA_HEAD
    upgrade(url)
    engine = create_db_engine(url)
    assert current_revision(engine) == SCHEMA_HEAD
    # The fast path (the stamp equals the head) must not hide an older store: step one back.
    command.downgrade(alembic_config(url), "-1")
    assert current_revision(engine) not in (None, SCHEMA_HEAD)
    upgrade(url)
    assert current_revision(engine) == SCHEMA_HEAD
    engine.dispose()


def test_sqlite_is_wal_with_foreign_keys(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = create_db_engine(f"sqlite:///{tmp_path}/x.db")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_unsupported_database_is_named() -> None:
    with pytest.raises(DatabaseURLError, match="'mysql' is not supported"):
        create_db_engine("mysql://root@localhost/db")


def _record(deployment: str, acquired_at: datetime) -> InferenceRecord:
    return InferenceRecord(
        record_id="r1",
        deployment_id=deployment,
        acquired_at=acquired_at,
        inferred_at=acquired_at,
        features={"a": 1},
        outputs={},
    )


def test_times_round_trip_as_utc_and_naive_times_are_refused(engine: Engine) -> None:
    cet = timezone(timedelta(hours=1))
    with session_scope(engine) as s:
        create_deployment(
            s, deployment_id="d@s", site_id="s", model_name="m", model_version="1", actor="t"
        )
        s.add(_record("d@s", datetime(2026, 1, 5, 10, 30, tzinfo=cet)))
    with session_scope(engine) as s:
        got = s.exec(select(InferenceRecord)).one()
        assert got.acquired_at == datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
        assert got.acquired_at.tzinfo is UTC
    with pytest.raises(sa.exc.StatementError, match="naive datetime"), session_scope(engine) as s:
        s.add(_record("d@s", datetime(2026, 1, 5, 10, 30)))
        s.flush()


def test_foreign_keys_are_enforced(engine: Engine) -> None:
    with pytest.raises(sa.exc.IntegrityError), session_scope(engine) as s:
        s.add(_record("no-such-deployment", datetime(2026, 1, 5, tzinfo=UTC)))
        s.flush()


def test_tokens_are_stored_hashed_and_probe_tokens_need_a_site(engine: Engine) -> None:
    with session_scope(engine) as s:
        create_deployment(
            s, deployment_id="d@s", site_id="s", model_name="m", model_version="1", actor="t"
        )
        raw = create_token(s, name="p", role=Role.PROBE, site_id="s")
    with session_scope(engine) as s:
        (row,) = s.exec(select(ApiToken)).all()
        assert row.token_sha256 == token_digest(raw)
        assert raw not in str(row.model_dump())
        principal = authenticate(s, raw)
        assert principal is not None and principal.site_id == "s"
        assert authenticate(s, raw + "x") is None
        with pytest.raises(TokenError, match="needs --site"):
            create_token(s, name="p2", role=Role.PROBE, site_id=None)
        with pytest.raises(TokenError, match="unknown site 'zz'"):
            create_token(s, name="p3", role=Role.VIEWER, site_id="zz")


def test_redefining_a_deployment_for_another_model_is_refused(engine: Engine) -> None:
    with session_scope(engine) as s:
        create_deployment(
            s, deployment_id="d@s", site_id="s", model_name="m", model_version="1", actor="t"
        )
        again = create_deployment(
            s, deployment_id="d@s", site_id="s", model_name="m", model_version="1", actor="t"
        )
        assert again.id == "d@s"
        with pytest.raises(RegistryError, match="already exists"):
            create_deployment(
                s, deployment_id="d@s", site_id="s", model_name="m", model_version="2", actor="t"
            )


def _fill_audit(engine: Engine, n: int = 6) -> None:
    with session_scope(engine) as s:
        for i in range(n):
            record_action(
                s,
                actor="physicist:ada",
                action="tolerance.set",
                entity_type="tolerance",
                entity_id=f"t{i}",
                reason="annual review",
                old_value={"iu_pct": 5.0 + i},
                new_value={"iu_pct": 4.5 + i, "note": "ünïcödé"},
            )


def _verdict(engine: Engine):  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        return verify_chain(s)


def test_audit_chain_verifies_and_names_the_first_tampered_entry(engine: Engine) -> None:
    _fill_audit(engine)
    ok = _verdict(engine)
    assert ok.ok and ok.entries_checked == 6

    with engine.begin() as conn:  # edit the reason of entry 3 behind phase4's back
        conn.execute(sa.text("UPDATE audit_entry SET reason = 'nothing to see' WHERE seq = 3"))
    edited = _verdict(engine)
    assert (edited.ok, edited.first_broken_seq) == (False, 3)
    assert "content" in (edited.problem or "")


def test_audit_chain_detects_deletion(engine: Engine) -> None:
    _fill_audit(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_entry WHERE seq = 4"))
    deleted = _verdict(engine)
    assert (deleted.ok, deleted.first_broken_seq) == (False, 4)
    assert "missing" in (deleted.problem or "")


def test_audit_chain_detects_reordering(engine: Engine) -> None:
    _fill_audit(engine)
    with engine.begin() as conn:  # swap the timestamps and payloads of entries 2 and 5
        rows = {
            r.seq: r
            for r in conn.execute(
                sa.text("SELECT seq, entity_id FROM audit_entry WHERE seq IN (2, 5)")
            )
        }
        conn.execute(
            sa.text("UPDATE audit_entry SET entity_id = :e WHERE seq = 2"), {"e": rows[5].entity_id}
        )
        conn.execute(
            sa.text("UPDATE audit_entry SET entity_id = :e WHERE seq = 5"), {"e": rows[2].entity_id}
        )
    reordered = _verdict(engine)
    assert (reordered.ok, reordered.first_broken_seq) == (False, 2)
