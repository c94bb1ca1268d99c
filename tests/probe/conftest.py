"""Real loopback servers and a probe factory for the probe tests (no HTTP mocks).

* ``ContractServer``: a ThreadingHTTPServer implementing the monitor's ``POST /v1/records``
  contract (idempotent on record_id), stoppable and restartable on the same port. It speaks
  HTTP/1.0 so no keep-alive connection outlives ``stop()`` - "down" really is down.
* ``BlackHole``: accepts TCP connections, reads requests and never answers.

Every server started through a fixture is stopped at the end of its test.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from phase4.probes import Probe

TOKEN = "p4_probe_test_token"
SECRET = b"site-a-test-secret-0123456789abcdef"
DEPLOYMENT = "lesion-ai@site-a"  # tests compare against this literal
WAIT_S = 15.0  # generous bound for "eventually"; never a performance assertion


class ContractServer:
    """In-memory monitor: stores each record_id once, reports duplicates and rejections."""

    def __init__(self, port: int = 0, token: str = TOKEN) -> None:
        self.port = port
        self.token = token
        self.lock = threading.Lock()
        self.stored: dict[str, dict[str, Any]] = {}
        self.arrival: list[str] = []  # record_ids in first-stored order
        self.posted_ids: list[str] = []  # every record_id in every well-formed POST
        self.bodies: list[bytes] = []  # every request body received
        self.requests = 0
        self.poison_marker: str | None = None  # 422 any batch whose body contains this
        self.scripted_statuses: list[int] = []  # statuses to answer before behaving
        self.scripted_retry_after = "0"  # the Retry-After header of scripted answers
        self.request_times: list[float] = []  # time.monotonic() at each request's arrival
        self.max_features: int | None = None  # 413 any batch holding a record with more
        self.ok_status = 200  # 207 is the monitor's answer when some items were rejected
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ContractServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_POST(self) -> None:
                server.handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            assert self._thread is not None
            self._thread.join(5)
            self._httpd = None

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        body = request.rfile.read(int(request.headers.get("Content-Length", "0")))
        with self.lock:
            self.requests += 1
            self.request_times.append(time.monotonic())
            self.bodies.append(body)
            scripted = self.scripted_statuses.pop(0) if self.scripted_statuses else None
        if request.path != "/v1/records":
            return _reply(request, 404, {"detail": "not found"})
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _reply(request, 401, {"detail": "invalid token"})
        if scripted is not None:
            error = {"code": "database_unavailable" if scripted == 503 else "scripted"}
            headers = {"Retry-After": self.scripted_retry_after}
            return _reply(request, scripted, {"error": error}, headers)
        records = json.loads(body)["records"]
        if not 1 <= len(records) <= 1000:
            return _reply(request, 413, {"detail": "1..1000 records per request"})
        if self.max_features is not None and any(
            len(r.get("features", {})) > self.max_features for r in records
        ):
            message = f"a record has more than {self.max_features} features"
            error = {"code": "too_many_features", "message": message}
            return _reply(request, 413, {"error": error})
        if self.poison_marker is not None and self.poison_marker.encode() in body:
            return _reply(request, 422, {"detail": "batch contains an invalid record"})
        _reply(request, self.ok_status, self._ingest(records))

    def _ingest(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        results = []
        with self.lock:
            for index, record in enumerate(records):
                record_id = record.get("record_id")
                self.posted_ids.append(str(record_id))
                error = _validate(record)
                if error is not None:
                    status = "rejected"
                elif record_id in self.stored:
                    status = "duplicate"
                else:
                    status = "created"
                    self.stored[record_id] = record
                    self.arrival.append(record_id)
                results.append(
                    {"index": index, "record_id": record_id, "status": status, "error": error}
                )
        counts = {s: sum(r["status"] == s for r in results) for s in ("created", "duplicate")}
        return {
            "created": counts["created"],
            "duplicates": counts["duplicate"],
            "rejected": len(results) - sum(counts.values()),
            "results": results,
        }

    def all_bodies(self) -> bytes:
        with self.lock:
            return b"\n".join(self.bodies)


def _validate(record: dict[str, Any]) -> str | None:
    record_id = record.get("record_id")
    if not isinstance(record_id, str) or not 1 <= len(record_id) <= 64:
        return "record_id must be 1..64 chars"
    try:
        int(record_id, 16)
    except ValueError:
        return "record_id must be hex"
    for key in ("deployment", "inferred_at", "acquired_at", "features", "outputs"):
        if key not in record:
            return f"missing {key}"
    return None


def _reply(
    request: BaseHTTPRequestHandler,
    status: int,
    payload: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> None:
    data = json.dumps(payload).encode()
    request.send_response(status)
    request.send_header("Content-Type", "application/json")
    request.send_header("Content-Length", str(len(data)))
    for name, value in (headers or {}).items():
        request.send_header(name, value)
    request.end_headers()
    request.wfile.write(data)


class BlackHole:
    """Accepts connections and reads, never answers; ``stop`` hangs up on every client."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.02)
        self.port = self._listener.getsockname()[1]
        self.connections = 0
        self.received = bytearray()
        self.request_seen = threading.Event()
        self._clients: list[socket.socket] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                self._read_clients()
                continue
            client.settimeout(0.02)
            self._clients.append(client)
            self.connections += 1

    def _read_clients(self) -> None:
        for client in self._clients:
            try:
                chunk = client.recv(65536)
            except (TimeoutError, OSError):
                continue
            self.received.extend(chunk)
            if b"/v1/records" in self.received:
                self.request_seen.set()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        for client in self._clients:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            client.close()
        self._listener.close()


def reserve_port() -> int:
    """A loopback port with nothing listening (connections are refused until we bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """Poll until ``condition()``; fails the test (does not time it) if it never holds."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def servers() -> Iterator[Callable[..., ContractServer]]:
    """Factory for ContractServers (not started); all are stopped at teardown."""
    made: list[ContractServer] = []

    def make(port: int = 0, token: str = TOKEN) -> ContractServer:
        server = ContractServer(port, token)
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()


@pytest.fixture
def server(servers: Callable[..., ContractServer]) -> ContractServer:
    return servers().start()


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    hole = BlackHole()
    yield hole
    hole.stop()


@pytest.fixture
def make_probe(tmp_path: Path) -> Iterator[Callable[..., Probe]]:
    """Factory for probes with test-friendly timings; all are closed at teardown."""
    made: list[Probe] = []

    def make(url: str, **overrides: Any) -> Probe:
        options: dict[str, Any] = {
            "token": TOKEN,
            "deployment": DEPLOYMENT,
            "site_secret": SECRET,
            "spool_path": tmp_path / "probe.spool.sqlite",
            "flush_interval_s": 0.02,
            "backoff_base_s": 0.02,
            "backoff_max_s": 0.2,
            "timeout_s": 5.0,
        }
        options.update(overrides)
        probe = Probe(url, **options)
        made.append(probe)
        return probe

    yield make
    for probe in made:
        probe.close(timeout_s=1.0)


@pytest.fixture
def free_port() -> int:
    return reserve_port()


@pytest.fixture(name="wait_for")
def wait_for_fixture() -> Callable[..., None]:
    return wait_for


@pytest.fixture
def probe_secret() -> bytes:
    return SECRET


@pytest.fixture
def spool_files(tmp_path: Path) -> Callable[[], bytes]:
    """Raw bytes of the default test spool and its WAL/SHM side files."""

    def read() -> bytes:
        return b"".join(p.read_bytes() for p in sorted(tmp_path.glob("probe.spool.sqlite*")))

    return read
