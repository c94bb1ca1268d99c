"""DICOM over TLS (PS3.15 Annex B): a real handshake with a certificate made in the test."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from phase4.probes import Probe
from phase4.probes.listener.extract import extract_study_record
from phase4.probes.listener.scp import DicomListener
from phase4.probes.listener.settings import ListenerSettings
from tests.listener.conftest import DCMTK_AE_TITLES
from tests.listener.peer import REFUSED_ASSOCIATION, echo


def _self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
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
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _client(server_cert: Path, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=server_cert)
    if cert is not None:
        context.load_cert_chain(*cert)
    return context


def test_the_listener_speaks_tls_and_requires_the_senders_certificate(
    tmp_path: Path, offline_probe: Probe
) -> None:
    server = _self_signed(tmp_path, "listener")
    pacs = _self_signed(tmp_path, "pacs")
    stranger = _self_signed(tmp_path, "stranger")
    settings = ListenerSettings(
        calling_ae_titles=DCMTK_AE_TITLES,
        tls_cert_file=server[0],
        tls_key_file=server[1],
        tls_ca_file=pacs[0],  # mutual TLS: only the PACS's certificate is trusted
    )
    with DicomListener(
        probe=offline_probe,
        extract=extract_study_record,
        port=0,
        workdir=tmp_path / "work",
        settings=settings,
    ) as listener:
        assert echo(listener.port, tls=_client(server[0], pacs)) == 0
        assert echo(listener.port, tls=_client(server[0], stranger)) == REFUSED_ASSOCIATION
        assert echo(listener.port, tls=_client(server[0])) == REFUSED_ASSOCIATION
        assert echo(listener.port) == REFUSED_ASSOCIATION  # plain TCP to a TLS port


def test_tls_needs_both_certificate_and_key(tmp_path: Path) -> None:
    cert, _ = _self_signed(tmp_path, "listener")
    with pytest.raises(ValueError, match="both"):
        ListenerSettings(tls_cert_file=cert).tls_context()
