"""Shared fixtures: real databases (SQLite file, PostgreSQL) and a real monitor on 127.0.0.1.

PostgreSQL tests run on the server ``PHASE4_TEST_POSTGRES_URL`` names; without it, the session
starts a throwaway one from the machine's PostgreSQL binaries (tests/postgres_server.py) and
stops it at the end, and they skip only where there are no such binaries. Each test session gets
its own database, created here and dropped at the end; each test starts from empty tables.
"""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

import phase4.monitor.store.models  # noqa: F401  (registers the tables)
from phase4.monitor.core.settings import Settings, sqlite_url
from phase4.monitor.domain.registry import create_deployment
from phase4.monitor.server import ThreadedServer
from phase4.monitor.store.auth import Role, create_token
from phase4.monitor.store.db import create_db_engine, session_scope, upgrade
from phase4.service import create_app
from tests.postgres_server import INSTALL_HINT, ThrowawayPostgres, find_binaries

POSTGRES_ENV = "PHASE4_TEST_POSTGRES_URL"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of the session's PostgreSQL: the one PHASE4_TEST_POSTGRES_URL names, or a
    throwaway server started here (and the variable set to it) and stopped at the end, whatever
    the tests did."""
    given = os.environ.get(POSTGRES_ENV)
    if given:
        yield given
        return
    bindir = find_binaries()
    if bindir is None:
        pytest.skip(f"no PostgreSQL server binaries (initdb, pg_ctl): {INSTALL_HINT}")
    server = ThrowawayPostgres(bindir)
    try:
        url = server.start()
        with pytest.MonkeyPatch.context() as env, _terminate_as_interrupt():
            env.setenv(POSTGRES_ENV, url)
            yield url
    finally:
        server.stop()


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """While it holds, SIGTERM (a CI timeout, a kill) ends the session like Ctrl-C does, through
    the fixtures' teardown, instead of leaving the throwaway server running."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield  # someone else handles it
        return
    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.fixture(scope="session")
def postgres_url(postgres_server: str) -> Iterator[str]:
    base = postgres_server
    name = f"phase4_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(base).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _truncate_postgres(engine: Engine) -> None:
    tables = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database: each test runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        url = sqlite_url(tmp_path / "phase4.db")
        upgrade(url)
        return url
    url = request.getfixturevalue("postgres_url")
    engine = create_db_engine(url)
    _truncate_postgres(engine)
    engine.dispose()
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = create_db_engine(db_url)
    yield eng
    eng.dispose()


@dataclass
class Fixture:
    """A monitor with two sites' deployments and a token of each kind."""

    engine: Engine
    deployment_a: str
    deployment_b: str
    probe_a: str
    probe_b: str
    viewer: str
    admin: str
    reviewer: str  # "dr-curie": reviews every site
    reviewer_b: str  # "physicist-b": reviews site B only

    def auth(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


def populate(engine: Engine) -> Fixture:
    with session_scope(engine) as s:
        for site in ("site-a", "site-b"):
            create_deployment(
                s,
                deployment_id=f"lesion-ai@{site}",
                site_id=site,
                model_name="PETLesionDetect",
                model_version="2.1.0",
                actor="test",
            )
        tokens = {
            "probe_a": create_token(s, name="probe-a", role=Role.PROBE, site_id="site-a"),
            "probe_b": create_token(s, name="probe-b", role=Role.PROBE, site_id="site-b"),
            "viewer": create_token(s, name="viewer", role=Role.VIEWER, site_id=None),
            "admin": create_token(s, name="admin", role=Role.ADMIN, site_id=None),
            "reviewer": create_token(s, name="dr-curie", role=Role.REVIEWER, site_id=None),
            "reviewer_b": create_token(s, name="physicist-b", role=Role.REVIEWER, site_id="site-b"),
        }
    return Fixture(
        engine=engine, deployment_a="lesion-ai@site-a", deployment_b="lesion-ai@site-b", **tokens
    )


@pytest.fixture
def world(engine: Engine) -> Fixture:
    return populate(engine)


@pytest.fixture
def client(world: Fixture, db_url: str) -> Iterator[TestClient]:
    app = create_app(Settings(database_url=db_url, detection_interval_s=0), engine=world.engine)
    with TestClient(app) as c:
        yield c


class LiveMonitor:
    """A real monitor (uvicorn on 127.0.0.1) that a test can stop and start on the same port."""

    def __init__(self, db_url: str, world: Fixture) -> None:
        self.db_url = db_url
        self.world = world
        self.engine = world.engine
        self.deployment = world.deployment_a
        self.probe_token = world.probe_a
        self.viewer_token = world.viewer
        self.admin_token = world.admin
        settings = Settings(database_url=db_url, detection_interval_s=0)
        self._server = ThreadedServer(create_app(settings, engine=self.engine))
        self.port = self._server.port

    @property
    def url(self) -> str:
        return self._server.url

    def start(self) -> LiveMonitor:
        self._server = ThreadedServer(self._server.app, port=self.port).start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def stored_record_ids(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.text("SELECT record_id FROM inference_record")).scalars())


@pytest.fixture
def live_monitor(db_url: str, world: Fixture) -> Iterator[LiveMonitor]:
    """A running monitor: ``.url``, ``.probe_token`` and ``.deployment`` (site A), ``.stop()``,
    ``.start()`` (same port), ``.stored_record_ids()``. Stopped at the end of the test."""
    live = LiveMonitor(db_url, world).start()
    yield live
    live.stop()
