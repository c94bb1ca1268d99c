"""The probe's HTTP on the standard library: kept-alive connections, a monitor that hangs up an
idle connection, HTTPS against the system's trust store, and proxies from the environment.

Against real loopback servers speaking HTTP/1.1 (RFC 9112), a forwarding proxy that answers
CONNECT (RFC 9110 section 9.3.6), and a TLS server with a self-signed certificate.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import select
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from phase4.probes.capture import Pending
from phase4.probes.transport import Transport, Verdict

TOKEN = "p4_transport_test"
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


class Server(ThreadingHTTPServer):
    """An HTTP/1.1 monitor (``POST /v1/records``) that also answers absolute-form requests as a
    plain proxy would, and CONNECT as a tunnelling proxy; it records what it was asked."""

    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.tls = tls
        self.connections = 0
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # method, target, headers
        self.hang_up_after_reply = False  # close without saying so (a keep-alive timeout)
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.02})

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        self.connections += 1
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_side=True)
        return sock, address

    def start(self) -> Server:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(5)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.requests.append(("POST", self.path, dict(self.headers.items())))
        records = json.loads(body)["records"]
        results = [{"index": i, "status": "created"} for i in range(len(records))]
        data = json.dumps({"results": results}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        if self.server.hang_up_after_reply:
            self.close_connection = True

    def do_CONNECT(self) -> None:
        self.server.requests.append(("CONNECT", self.path, dict(self.headers.items())))
        host, _, port = self.path.rpartition(":")
        upstream = socket.create_connection((host, int(port)), timeout=5)
        self.send_response(200)
        self.end_headers()
        self.wfile.flush()
        _pipe(self.connection, upstream)
        self.close_connection = True


def _pipe(a: socket.socket, b: socket.socket) -> None:
    """Forward bytes both ways until either side closes."""
    with b:
        while True:
            readable, _, _ = select.select([a, b], [], [], 5)
            if not readable:
                return
            for source in readable:
                chunk = source.recv(65536)
                if not chunk:
                    return
                (b if source is a else a).sendall(chunk)


def _batch(n: int = 2) -> list[Pending]:
    return [Pending(f"{i:032x}", json.dumps({"record_id": f"{i:032x}"})) for i in range(n)]


@pytest.fixture(autouse=True)
def no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    made: list[Server] = []
    yield made
    for server in made:
        server.stop()


def _certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "monitor")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "monitor.crt", folder / "monitor.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _tls_server(tmp_path: Path, servers: list[Server]) -> tuple[Server, Path]:
    cert, key = _certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = Server(tls=context).start()
    servers.append(server)
    return server, cert


def test_batches_share_one_kept_alive_connection(servers: list[Server]) -> None:
    server = Server().start()
    servers.append(server)
    transport = Transport(f"http://127.0.0.1:{server.port}", TOKEN, 5.0)
    try:
        outcomes = [transport.post(_batch()) for _ in range(3)]
    finally:
        transport.close()
    assert [o.verdict for o in outcomes] == [Verdict.DELIVERED] * 3
    assert server.connections == 1
    method, target, headers = server.requests[0]
    assert (method, target) == ("POST", "/v1/records")
    assert headers["Authorization"] == f"Bearer {TOKEN}"


def test_a_connection_the_monitor_closed_while_idle_is_replaced(servers: list[Server]) -> None:
    server = Server().start()
    servers.append(server)
    server.hang_up_after_reply = True
    transport = Transport(f"http://127.0.0.1:{server.port}", TOKEN, 5.0)
    try:
        outcomes = [transport.post(_batch()) for _ in range(3)]
    finally:
        transport.close()
    assert [o.verdict for o in outcomes] == [Verdict.DELIVERED] * 3
    assert server.connections == 3 and len(server.requests) == 3


def test_a_refused_connection_is_a_retry_that_names_it() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    outcome = Transport(f"http://127.0.0.1:{port}", TOKEN, 5.0).post(_batch())
    assert outcome.verdict is Verdict.RETRY
    assert outcome.error is not None and outcome.error.startswith("ConnectError: ")
    assert f"127.0.0.1:{port}" in outcome.error


def test_https_verifies_the_monitor_against_the_trust_store(
    tmp_path: Path, servers: list[Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, cert = _tls_server(tmp_path, servers)
    url = f"https://127.0.0.1:{server.port}"
    refused = Transport(url, TOKEN, 5.0).post(_batch())
    assert refused.verdict is Verdict.RETRY
    assert "CERTIFICATE_VERIFY_FAILED" in (refused.error or "")
    assert server.requests == []  # nothing, not even the token, went to an unverified peer

    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the site's CA, as OpenSSL reads it
    transport = Transport(url, TOKEN, 5.0)
    try:
        assert transport.post(_batch()).verdict is Verdict.DELIVERED
    finally:
        transport.close()


def test_plain_http_goes_through_the_environments_proxy_with_its_credentials(
    servers: list[Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = Server().start()
    servers.append(proxy)
    monkeypatch.setenv("HTTP_PROXY", f"http://site%40proxy:p%20w@127.0.0.1:{proxy.port}")
    transport = Transport("http://monitor.invalid:8000", TOKEN, 5.0)
    try:
        assert transport.post(_batch()).verdict is Verdict.DELIVERED
    finally:
        transport.close()
    method, target, headers = proxy.requests[0]
    assert (method, target) == ("POST", "http://monitor.invalid:8000/v1/records")
    assert headers["Proxy-Authorization"] == "Basic " + base64.b64encode(b"site@proxy:p w").decode()
    assert headers["Authorization"] == f"Bearer {TOKEN}"


def test_https_goes_through_the_proxy_in_a_connect_tunnel(
    tmp_path: Path, servers: list[Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    monitor, cert = _tls_server(tmp_path, servers)
    proxy = Server().start()
    servers.append(proxy)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
    transport = Transport(f"https://127.0.0.1:{monitor.port}", TOKEN, 5.0)
    try:
        assert transport.post(_batch()).verdict is Verdict.DELIVERED
    finally:
        transport.close()
    assert [(m, t) for m, t, _ in proxy.requests] == [("CONNECT", f"127.0.0.1:{monitor.port}")]
    assert "Authorization" not in proxy.requests[0][2]  # the token travels inside the tunnel
    assert monitor.requests[0][:2] == ("POST", "/v1/records")


def test_no_proxy_names_the_hosts_reached_directly(
    servers: list[Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = Server().start()
    servers.append(server)
    with socket.socket() as sock:  # a proxy that would refuse every connection
        sock.bind(("127.0.0.1", 0))
        dead_proxy = sock.getsockname()[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{dead_proxy}")
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    transport = Transport(f"http://127.0.0.1:{server.port}", TOKEN, 5.0)
    try:
        assert transport.post(_batch()).verdict is Verdict.DELIVERED
    finally:
        transport.close()


def test_a_proxy_it_cannot_speak_to_is_named_not_bypassed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALL_PROXY", "socks5://user:secret@127.0.0.1:1080")
    outcome = Transport("http://monitor.invalid:8000", TOKEN, 5.0).post(_batch())
    assert outcome.verdict is Verdict.RETRY
    assert "unsupported proxy socks5://127.0.0.1:1080" in (outcome.error or "")
    assert "secret" not in (outcome.error or "")
