"""The HTTP edge: body size enforced while reading, JSON 503 for a busy database and JSON 500
for anything unforeseen, no record values in any log line, 405 with the right Allow.

Against a real uvicorn server on 127.0.0.1 where the wire matters (raw sockets for the body
cap), a real SQLite write lock held by another connection, a real refused PostgreSQL port."""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from phase4.monitor.core.settings import Settings, sqlite_url
from phase4.monitor.server import ThreadedServer, free_port
from phase4.monitor.store.db import create_db_engine, upgrade
from phase4.service import create_app
from tests.conftest import Fixture, populate
from tests.conftest import _truncate_postgres as _truncate
from tests.monitor.test_ingest_api import rec

LIMIT_BYTES = 64 * 1024


@pytest.fixture
def small_body_server(world: Fixture, db_url: str) -> Iterator[ThreadedServer]:
    settings = Settings(database_url=db_url, detection_interval_s=0, max_body_bytes=LIMIT_BYTES)
    with ThreadedServer(create_app(settings, engine=world.engine)) as server:
        yield server


def _exchange(server: ThreadedServer, head: str, chunks: list[bytes]) -> bytes:
    """Send a request head and body pieces without finishing the body; the server's answer."""
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(head.encode())
        for chunk in chunks:
            sock.sendall(chunk)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            part = sock.recv(65536)
            if not part:
                break
            answer += part
        return answer


def _count(world: Fixture) -> int:
    with world.engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM inference_record")).scalar_one()


def test_a_declared_length_over_the_limit_is_refused_before_reading(
    small_body_server: ThreadedServer, world: Fixture
) -> None:
    # Only the head is sent: a server that waited for the 50 MB body would time out.
    head = (
        "POST /v1/records HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {world.probe_a}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {50 * 1024 * 1024}\r\n\r\n"
    )
    answer = _exchange(small_body_server, head, [])
    assert answer.startswith(b"HTTP/1.1 413")
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["code"] == "body_too_large"
    assert f"more than {LIMIT_BYTES} bytes (PHASE4_MAX_BODY_BYTES)" in body["error"]["message"]
    assert _count(world) == 0


def test_a_chunked_body_is_cut_when_it_passes_the_limit(
    small_body_server: ThreadedServer, world: Fixture
) -> None:
    head = (
        "POST /v1/records HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {world.probe_a}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    piece = b'{"records": [' + b" " * 16_000
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    # 80 kB sent, the body never finished: the answer must come from the limit alone.
    answer = _exchange(small_body_server, head, [chunk] * 5)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"body_too_large"' in answer
    assert _count(world) == 0
    # Under the limit, a chunked body is read as usual.
    good = json.dumps({"records": [rec(world.deployment_a, 1)]}).encode()
    answer = _exchange(
        small_body_server, head, [f"{len(good):x}\r\n".encode() + good + b"\r\n0\r\n\r\n"]
    )
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    assert _count(world) == 1


@pytest.fixture
def locked_store(tmp_path: Path) -> Iterator[tuple[TestClient, Fixture, str]]:
    """A SQLite store whose API engine gives up on a held write lock after 0.2 s."""
    path = tmp_path / "busy.db"
    url = sqlite_url(path)
    upgrade(url)
    engine = create_db_engine(url, sqlite_busy_timeout_s=0.2)
    world = populate(engine)
    app = create_app(Settings(database_url=url, detection_interval_s=0), engine=engine)
    with TestClient(app) as client:
        yield client, world, str(path)
    engine.dispose()


def test_a_locked_database_is_a_json_503_with_retry_after(
    locked_store: tuple[TestClient, Fixture, str], caplog: pytest.LogCaptureFixture
) -> None:
    client, world, path = locked_store
    caplog.set_level(logging.DEBUG)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process's write lock, held
    try:
        busy = client.post(
            "/v1/records",
            json={"records": [rec(world.deployment_a, 1, features={"x": 314159.2653})]},
            headers=world.auth(world.probe_a),
        )
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert busy.status_code == 503, busy.text
    assert busy.headers["retry-after"] == "5"
    assert busy.json()["error"]["code"] == "database_unavailable"
    assert _count(world) == 0
    assert "314159.2653" not in caplog.text
    again = client.post(
        "/v1/records",
        json={"records": [rec(world.deployment_a, 1)]},
        headers=world.auth(world.probe_a),
    )
    assert again.status_code == 200 and _count(world) == 1


@pytest.mark.postgres
def test_a_postgresql_lock_timeout_is_a_json_503(postgres_url: str) -> None:
    setup = create_db_engine(postgres_url)
    _truncate(setup)
    world = populate(setup)
    engine = create_db_engine(postgres_url, postgres_lock_timeout_s=0.2)
    app = create_app(Settings(database_url=postgres_url, detection_interval_s=0), engine=engine)
    holder = setup.connect()
    holder.exec_driver_sql("BEGIN")
    holder.exec_driver_sql("LOCK TABLE inference_record IN ACCESS EXCLUSIVE MODE")
    try:
        with TestClient(app) as client:
            busy = client.post(
                "/v1/records",
                json={"records": [rec(world.deployment_a, 1)]},
                headers=world.auth(world.probe_a),
            )
    finally:
        holder.rollback()
        holder.close()
    assert busy.status_code == 503, busy.text
    assert busy.json()["error"]["code"] == "database_unavailable"
    assert busy.headers["retry-after"] == "5"
    with setup.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM inference_record")).scalar_one() == 0
    engine.dispose()
    setup.dispose()


def test_an_unreachable_postgresql_is_a_json_503_on_every_route() -> None:
    engine = create_db_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none")
    app = create_app(Settings(database_url=str(engine.url), detection_interval_s=0), engine=engine)
    auth = {"Authorization": "Bearer p4_anything"}
    with TestClient(app) as client:
        for method, path in (
            ("POST", "/v1/records"),
            ("GET", "/v1/records?deployment=d"),
            ("GET", "/v1/deployments"),
            ("GET", "/v1/alerts"),
            ("GET", "/healthz"),
        ):
            kwargs: dict[str, Any] = {"json": {"records": []}} if method == "POST" else {}
            response = client.request(method, path, headers=auth, **kwargs)
            assert response.status_code == 503, (path, response.text)
            assert response.json()["error"]["code"] == "database_unavailable"
            assert response.headers["retry-after"] == "5"
    engine.dispose()


def test_no_record_value_reaches_any_log_when_sql_fails(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """A statement that fails inside SQL, with SQLAlchemy's log at DEBUG and a real uvicorn:
    neither the captured logs nor the server's own output hold the record's values."""
    url = sqlite_url(tmp_path / "logs.db")
    upgrade(url)
    engine = create_db_engine(url, sqlite_busy_timeout_s=0.2)
    world = populate(engine)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.engine")
    app = create_app(Settings(database_url=url, detection_interval_s=0), engine=engine)
    secret_feature, secret_output = "OSEM-7f3a9c-SECRET", 271828.18284
    holder = sqlite3.connect(tmp_path / "logs.db", isolation_level=None)
    body = {
        "records": [
            rec(
                world.deployment_a,
                1,
                features={"reconstruction": secret_feature},
                outputs={"score": secret_output},
            )
        ]
    }
    with ThreadedServer(app) as server:
        holder.execute("BEGIN IMMEDIATE")
        try:
            response = httpx.post(
                f"{server.url}/v1/records", json=body, headers=world.auth(world.probe_a)
            )
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        # Stored, then read back with SQLAlchemy's row log on.
        stored = httpx.post(
            f"{server.url}/v1/records", json=body, headers=world.auth(world.probe_a)
        )
        page = httpx.get(
            f"{server.url}/v1/records",
            params={"deployment": world.deployment_a},
            headers=world.auth(world.viewer),
        )
    engine.dispose()
    assert response.status_code == 503
    assert stored.status_code == 200 and secret_feature in page.text
    out, err = capfd.readouterr()
    logged = caplog.text + out + err
    assert "INSERT INTO" in caplog.text and "FROM inference_record" in caplog.text
    assert "database_unavailable on POST /v1/records" in caplog.text
    for value in (secret_feature, str(secret_output), world.probe_a):
        assert value not in logged


def test_an_unforeseen_failure_is_a_json_500_with_an_error_id(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    app: Any = client.app

    @app.get("/v1/test-boom")
    def boom() -> None:
        raise RuntimeError("value 0.8123 of a record")

    caplog.set_level(logging.DEBUG)
    response = client.get("/v1/test-boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "internal_error"
    error_id = error["message"].split("error id ")[1].split()[0]
    assert f"internal_error {error_id} on GET /v1/test-boom" in caplog.text
    assert "builtins.RuntimeError" in caplog.text and "in boom" in caplog.text
    assert "0.8123" not in caplog.text


def test_a_method_a_path_lacks_is_405_with_all_its_methods(client: TestClient) -> None:
    for method in ("OPTIONS", "DELETE", "PUT"):
        response = client.request(method, "/v1/records")
        assert response.status_code == 405
        assert response.headers["allow"] == "GET, POST"
        assert response.json()["error"]["code"] == "method_not_allowed"
    assert client.options("/healthz").headers["allow"] == "GET"
    assert client.options("/v1/nowhere").status_code == 404
