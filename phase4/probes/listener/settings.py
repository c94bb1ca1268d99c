"""What an operator configures on the DICOM listener: who may send, TLS, size limits.

Read from the environment with the ``PHASE4_LISTENER_`` prefix (pydantic-settings), so the
``phase4 probe dicom-listen`` command and a site's service unit configure it the same way.

Who may send: DICOM's own access control is the calling AE title of the association request
(PS3.8 §7.1.1.3), optionally tied to the peer's address. An empty allow-list refuses every
association: the listener receives pixel data and patient identifiers, so a hospital has to
name its senders (the PACS or router) before anything is accepted.

TLS follows the DICOM secure transport connection profiles (PS3.15 Annex B, BCP 195): TLS 1.2
or later; with a CA file, the sender must present a certificate signed by it (mutual TLS).
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MIB = 1024 * 1024


class ListenerSettings(BaseSettings):
    """Every field can be set as ``PHASE4_LISTENER_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="PHASE4_LISTENER_", extra="ignore")

    calling_ae_titles: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Senders allowed to associate, comma-separated: 'PACS' (any address) or "
        "'PACS@10.1.2.3' (that AE title from that address only). Empty: every association is "
        "refused.",
    )
    max_instance_bytes: int = Field(
        512 * MIB, gt=0, description="Largest encoded instance accepted (C-STORE data set)."
    )
    max_element_bytes: int = Field(
        16 * MIB,
        gt=0,
        description="Largest single data element other than PixelData (bounds text, sequences "
        "and encapsulated documents).",
    )
    max_study_bytes: int = Field(
        8192 * MIB, gt=0, description="Largest study held on disk before instances are refused."
    )
    tls_cert_file: Path | None = Field(
        None, description="PEM certificate (chain) of the listener; set with the key: TLS only."
    )
    tls_key_file: Path | None = Field(None, description="PEM private key of the listener.")
    tls_ca_file: Path | None = Field(
        None, description="PEM CA certificates: senders must present a certificate they sign."
    )

    @field_validator("calling_ae_titles", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("calling_ae_titles")
    @classmethod
    def _check_titles(cls, entries: list[str]) -> list[str]:
        for entry in entries:
            title = entry.partition("@")[0]
            if not title or len(title) > 16 or "\\" in title or not title.isprintable():
                raise ValueError(
                    f"calling AE title {title!r}: 1-16 printable characters, no backslash"
                )
        return entries

    def tls_context(self) -> ssl.SSLContext | None:
        """A server context when a certificate and key are configured, else None."""
        if self.tls_cert_file is None and self.tls_key_file is None:
            return None
        if self.tls_cert_file is None or self.tls_key_file is None:
            raise ValueError("TLS needs both PHASE4_LISTENER_TLS_CERT_FILE and _TLS_KEY_FILE")
        try:
            return server_tls_context(self.tls_cert_file, self.tls_key_file, self.tls_ca_file)
        except (OSError, ssl.SSLError) as exc:  # a missing file, or one that is not PEM
            files = "PHASE4_LISTENER_TLS_CERT_FILE, _TLS_KEY_FILE or _TLS_CA_FILE"
            raise ValueError(f"{files} cannot be loaded: {exc.strerror or exc}") from None


def server_tls_context(cert: Path, key: Path, ca: Path | None = None) -> ssl.SSLContext:
    """TLS 1.2+ server context (BCP 195); with ``ca``, client certificates are required."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if ca is not None:
        context.load_verify_locations(ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def allowed_peers(entries: list[str]) -> dict[str, set[str] | None]:
    """AE title -> allowed peer addresses (None: any address)."""
    peers: dict[str, set[str] | None] = {}
    for entry in entries:
        title, _, address = entry.partition("@")
        title = title.strip()
        if not address:
            peers[title] = None
        elif peers.get(title, set()) is not None:
            peers.setdefault(title, set()).add(address.strip())  # type: ignore[union-attr]
    return peers
