"""Engines and schema migrations for SQLite (default) and PostgreSQL (production).

SQLite is opened in WAL mode with foreign keys enforced and a busy timeout, so the API's worker
threads and a reader (the UI, the detectors) do not trip over each other.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

if TYPE_CHECKING:
    from alembic.config import Config

# The newest migration. ``upgrade`` compares the store's stamp with it and imports Alembic (a
# quarter of a second, with Mako and Pygments) only when they differ, so a CLI command on an
# up-to-date store starts without it; tests/monitor/test_store.py checks it is Alembic's head.
SCHEMA_HEAD = "0011_subgroups"


class DatabaseURLError(ValueError):
    """The configured database URL names a backend phase4 does not support."""


def _check_url(url: str) -> sa.URL:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() not in {"sqlite", "postgresql"}:
        raise DatabaseURLError(
            f"PHASE4_DATABASE_URL backend {parsed.get_backend_name()!r} is not supported: "
            "use sqlite:///path or postgresql+psycopg://user@host:port/db"
        )
    if parsed.get_backend_name() == "postgresql" and parsed.drivername != "postgresql+psycopg":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


DEFAULT_SQLITE_BUSY_TIMEOUT_S = 10.0


def _no_result_rows(record: logging.LogRecord) -> bool:
    """SQLAlchemy's DEBUG log prints every row a query returns (a record's features and
    outputs); hide_parameters does not cover rows, so they are dropped here."""
    return record.msg != "Row %r"


logging.getLogger("sqlalchemy.engine.Engine").addFilter(_no_result_rows)


def _sqlite_pragmas(busy_timeout_s: float) -> Any:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        cursor.close()

    return on_connect


def create_db_engine(
    url: str,
    *,
    sqlite_busy_timeout_s: float = DEFAULT_SQLITE_BUSY_TIMEOUT_S,
    postgres_lock_timeout_s: float | None = None,
) -> Engine:
    """An engine for ``url``; for SQLite the parent folder is created if missing.

    ``postgres_lock_timeout_s``: PostgreSQL's ``lock_timeout`` for this engine's sessions
    (None: PostgreSQL's default, wait for ever); a statement that waited longer fails, and the
    API answers 503 ``database_unavailable``.

    ``hide_parameters``: a failed statement's error (and SQLAlchemy's own log, at any level)
    shows the SQL but never its parameters, which are a record's features and outputs."""
    parsed = _check_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            parsed,
            connect_args={"check_same_thread": False, "timeout": sqlite_busy_timeout_s},
            pool_pre_ping=True,
            hide_parameters=True,
        )
        sa.event.listen(engine, "connect", _sqlite_pragmas(sqlite_busy_timeout_s))
        return engine
    connect_args = {}
    if postgres_lock_timeout_s is not None:
        connect_args["options"] = f"-c lock_timeout={int(postgres_lock_timeout_s * 1000)}"
    return sa.create_engine(
        parsed,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=10,
        hide_parameters=True,
        connect_args=connect_args,
    )


def alembic_config(url: str) -> Config:
    """Alembic configuration pointing at the migrations shipped inside the package."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option(
        "script_location", str(resources.files("phase4.monitor.store") / "migrations")
    )
    # '%' is alembic's interpolation character: escape it in URLs with encoded characters.
    cfg.set_main_option(
        "sqlalchemy.url", _check_url(url).render_as_string(False).replace("%", "%%")
    )
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the schema at ``url`` up to ``revision`` (idempotent)."""
    parsed = _check_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    if revision == "head" and _stamped_revision(parsed) == SCHEMA_HEAD:
        return
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def _stamped_revision(url: sa.URL) -> str | None:
    """The store's Alembic stamp, read with plain SQL; None if there is none or it can't be read
    (Alembic then creates or reports what is wrong)."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool, hide_parameters=True)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    except sa.exc.SQLAlchemyError:
        return None
    finally:
        engine.dispose()
    return rows[0][0] if len(rows) == 1 else None


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session committed on success and rolled back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
