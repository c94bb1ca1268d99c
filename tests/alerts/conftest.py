"""Fixtures for notification tests: a real SMTP server, a real HTTP receiver, alerts and records."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from phase4.alerts.config import NotifySettings
from phase4.alerts.notify.sink import LocalSMTPSink
from phase4.monitor.store.db import session_scope
from phase4.monitor.store.models import Alert, Deployment, InferenceRecord
from phase4.monitor.surveillance.detection import detect_deployment

T0 = datetime(2026, 3, 2, 8, tzinfo=UTC)  # a Monday


def settings_for(sink: LocalSMTPSink | None = None, **overrides: Any) -> NotifySettings:
    base: dict[str, Any] = {
        "recipients": ["physicist@example.org"],
        "escalation_recipients": ["head@example.org"],
        "retry_backoff_s": 0.01,
        "retry_backoff_max_s": 0.05,
        "smtp_timeout_s": 5.0,
        "webhook_timeout_s": 5.0,
        "public_base_url": "http://phase4.test:8000",
    }
    if sink is not None:
        base.update(sink.settings())
    base.update(overrides)
    return NotifySettings(**base)


@pytest.fixture
def sink() -> Iterator[LocalSMTPSink]:
    with LocalSMTPSink() as s:
        yield s


def make_alert(
    engine: Engine,
    deployment: str,
    *,
    stream: str = "features.injected_activity_mbq",
    cause: str = "drift",
    severity: str = "warning",
    opened_at: datetime | None = None,
    evidence: dict[str, Any] | None = None,
) -> int:
    with session_scope(engine) as s:
        alert = Alert(
            deployment_id=deployment,
            stream=stream,
            cause=cause,
            severity=severity,
            title=f"{stream} rose (detected by cusum)",
            evidence=evidence if evidence is not None else drift_evidence(stream),
            opened_at=opened_at or datetime.now(UTC),
        )
        s.add(alert)
        s.flush()
        assert alert.id is not None
        return alert.id


def drift_evidence(stream: str = "features.injected_activity_mbq") -> dict[str, Any]:
    """Evidence as ``StreamAlarm.to_dict`` and ``_raise_alert`` write it."""
    return {
        "stream": stream,
        "stream_kind": "numeric",
        "detector": "cusum",
        "kind": "alarm",
        "index": 412,
        "timestamp": "2026-03-12T10:20:00+00:00",
        "change_index_estimate": 377,
        "change_timestamp": "2026-03-10T09:00:00+00:00",
        "statistic": 9.3,
        "threshold": 6.1,
        "direction": "up",
        "detail": {},
        "budget": {
            "streams_sharing": 6,
            "false_alarms_per_year": 1.0,
            "observations_per_day": 20.0,
            "stream_arl0": 43800.0,
            "weight": 0.5,
            "detector": "cusum",
            "arl0": 87600.0,
            "explanation": "budget ...",
        },
        "linked": [
            {
                "what": "features.reconstruction: new value",
                "at": "2026-03-10T08:00:00+00:00",
                "alert_id": 999,
                "stream": "features.reconstruction",
                "cause": "new_condition:Q.Clear",
            }
        ],
    }


def insert_records(
    engine: Engine,
    deployment: str,
    received: list[datetime],
    features: list[dict[str, Any]] | None = None,
) -> list[tuple[str, str]]:
    """Records received at the given times; returns their (record_id, study_pseudonym)."""
    ids = []
    with session_scope(engine) as s:
        for i, at in enumerate(received):
            rid, pseudo = f"REC-{uuid.uuid4().hex}", f"PSEUDO-{uuid.uuid4().hex}"
            s.add(
                InferenceRecord(
                    record_id=rid,
                    deployment_id=deployment,
                    study_pseudonym=pseudo,
                    acquired_at=at - timedelta(minutes=20),
                    inferred_at=at - timedelta(minutes=10),
                    received_at=at,
                    features=features[i] if features else {"injected_activity_mbq": 300.0},
                    outputs={"lesion_count": 2},
                )
            )
            ids.append((rid, pseudo))
    return ids


def detected_alerts(engine: Engine, deployment: str) -> tuple[list[int], list[tuple[str, str]]]:
    """Real alerts from the drift engine: injected activity rises by 1.5 sigma after 150
    reference studies, and a new reconstruction appears. Returns alert ids and the records'
    identifiers (to prove that no message carries them)."""
    with Session(engine) as s:
        dep = s.get(Deployment, deployment)
        assert dep is not None
        dep.monitoring = {
            "reference_size": 100,
            "streams": [
                {"field": "features.injected_activity_mbq", "kind": "numeric"},
                {"field": "features.reconstruction", "kind": "categorical"},
            ],
        }
        s.add(dep)
        s.commit()
    g = np.random.default_rng(7)
    times = [T0 + timedelta(hours=1.2 * i) for i in range(260)]
    feats = [
        {
            "injected_activity_mbq": float(g.normal(300 + (45 if i >= 150 else 0), 30)),
            "reconstruction": "VPFX-S" if i < 200 else "Q.Clear <b>beta</b>",
        }
        for i in range(260)
    ]
    ids = insert_records(engine, deployment, times, feats)
    result = detect_deployment(engine, deployment)
    assert result.alerts_opened, "the engine should have opened alerts"
    return result.alerts_opened, ids


def alerts_by_id(engine: Engine) -> dict[int, Alert]:
    with Session(engine) as s:
        return {a.id: a for a in s.exec(select(Alert)) if a.id is not None}


# --- a real HTTP receiver for the webhook -------------------------------------------------------


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    fail_first: int = 0
    status_when_failing: int = 503
    received: list[Received] = field(default_factory=list)
    attempts: int = 0
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    state = WebhookReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with state.lock:
                state.attempts += 1
                fail = state.attempts <= state.fail_first
                if not fail:
                    state.received.append(Received(body, {k: v for k, v in self.headers.items()}))
            self.send_response(state.status_when_failing if fail else 200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/SECRET-TOKEN-IN-PATH"
    yield state
    server.shutdown()
    server.server_close()
    thread.join(5)


# --- TLS material for STARTTLS ----------------------------------------------------------------


@dataclass(frozen=True)
class TLSFiles:
    ca_file: Path
    server_context: ssl.SSLContext
    other_ca_file: Path


def _ca(name: str) -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it (cryptography is
    installed with evidently), and a second, unrelated CA."""
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder = tmp_path_factory.mktemp("tls")
    ca_key, ca_cert = _ca("phase4 test CA")
    _, other_cert = _ca("someone else's CA")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca_cert.public_bytes(pem))
    (folder / "other-ca.pem").write_bytes(other_cert.public_bytes(pem))
    (folder / "server.pem").write_bytes(cert.public_bytes(pem))
    (folder / "server.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(folder / "server.pem", folder / "server.key")
    return TLSFiles(folder / "ca.pem", ctx, folder / "other-ca.pem")
