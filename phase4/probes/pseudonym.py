"""Keyed pseudonymisation of study identifiers, done at capture time.

Why keyed: DICOM UIDs are structured (org root + device + date + counter), so a plain hash of
one can be reversed by enumerating candidates. An HMAC-SHA256 keyed with a per-site secret that
never leaves the site keeps the pseudonym stable (repeat inferences on one study link up at the
monitor) while making it useless to anyone without the secret - including the monitor itself.

Why at capture: the raw identifier must never sit in the in-memory queue, the spool file or a
log line, so it is replaced before the record leaves the model's call.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os

SITE_SECRET_ENV = "PHASE4_SITE_SECRET"
# Below this length a leaked (uid, pseudonym) pair makes brute-forcing the key practical.
RECOMMENDED_SECRET_BYTES = 16

_log = logging.getLogger("phase4.probe")


def pseudonymise(identifier: str, secret: bytes) -> str:
    """Return the hex HMAC-SHA256 of ``identifier`` (UTF-8) under ``secret``.

    Equal to ``hmac.new(secret, identifier.encode(), hashlib.sha256).hexdigest()``; the one-shot
    ``hmac.digest`` form is used because it runs entirely in C, which matters on the hot path.
    """
    return hmac.digest(secret, identifier.encode("utf-8"), "sha256").hex()


class Pseudonymiser:
    """``pseudonymise`` with the key schedule done once, for the capture hot path.

    HMAC(K, m) = H((K ^ opad) || H((K ^ ipad) || m)). The two padded-key hash states are
    computed here and copied per call, which halves the cost of the one-shot ``hmac.digest``
    (that re-derives them every time). Same output, checked against ``hmac`` in the tests.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, secret: bytes) -> None:
        block_bytes = hashlib.sha256().block_size
        key = hashlib.sha256(secret).digest() if len(secret) > block_bytes else secret
        key = key.ljust(block_bytes, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def __call__(self, identifier: str) -> str:
        inner = self._inner.copy()
        inner.update(identifier.encode("utf-8"))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


def resolve_site_secret(site_secret: bytes | str | None) -> bytes:
    """Return the per-site secret as bytes, from the argument or ``PHASE4_SITE_SECRET``.

    Raises ValueError when neither is set: a probe without a secret could only send raw or
    unkeyed identifiers, and failing at construction (not on the hot path) is the safe choice.
    """
    if site_secret is None:
        site_secret = os.environ.get(SITE_SECRET_ENV) or None
    if site_secret is None:
        raise ValueError(
            f"no site secret: pass site_secret=... to Probe or set {SITE_SECRET_ENV}; "
            "it keys the HMAC that pseudonymises study identifiers"
        )
    if isinstance(site_secret, str):
        site_secret = site_secret.encode("utf-8")
    if not isinstance(site_secret, bytes):
        raise ValueError(f"site_secret must be bytes or str, not {type(site_secret).__name__}")
    if not site_secret:
        raise ValueError("site_secret must not be empty")
    if len(site_secret) < RECOMMENDED_SECRET_BYTES:
        _log.warning(
            "site secret is %d bytes; use at least %d random bytes so pseudonyms cannot be "
            "brute-forced",
            len(site_secret),
            RECOMMENDED_SECRET_BYTES,
        )
    return site_secret
