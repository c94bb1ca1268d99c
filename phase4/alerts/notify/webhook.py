"""Webhook: the alert as JSON, POSTed to one URL, signed with HMAC-SHA256 when a secret is set.

Headers:

- ``X-Phase4-Event``: ``alert.opened`` or ``alert.escalated``;
- ``X-Phase4-Delivery``: a fresh id per attempt (receivers may drop repeats by alert id);
- ``X-Phase4-Signature``: ``sha256=<hex>``, the HMAC-SHA256 of the raw request body under the
  shared secret (:func:`verify_signature` shows how to check it). The body carries ``sent_at``,
  so a receiver can also refuse stale replays.

A 2xx answer is success; anything else, a timeout or a connection error raises
:class:`~phase4.alerts.notify.email.DeliveryError`. Redirects are not followed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from phase4.alerts.config import NotifySettings
from phase4.alerts.notify.email import DeliveryError, scrub

SIGNATURE_HEADER = "X-Phase4-Signature"


def sign(secret: str | bytes, body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify_signature(secret: str | bytes, body: bytes, header: str | None) -> bool:
    """What a receiver does: recompute the HMAC of the raw body and compare in constant time."""
    return header is not None and hmac.compare_digest(sign(secret, body), header)


def encode(payload: dict[str, Any]) -> bytes:
    body = dict(payload)
    body["sent_at"] = datetime.now(UTC).isoformat()
    return json.dumps(body, ensure_ascii=False, sort_keys=True, default=str).encode("utf-8")


def post_webhook(settings: NotifySettings, payload: dict[str, Any]) -> str:
    """POST ``payload``; return a short detail of the success or raise ``DeliveryError``."""
    if not settings.webhook_url:
        raise DeliveryError("webhook channel off: no webhook_url")
    body = encode(payload)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "phase4-notify",
        "X-Phase4-Event": str(payload.get("event", "alert")),
        "X-Phase4-Delivery": uuid.uuid4().hex,
    }
    if settings.webhook_secret is not None:
        headers[SIGNATURE_HEADER] = sign(settings.webhook_secret.get_secret_value(), body)
    try:
        response = httpx.post(
            settings.webhook_url,
            content=body,
            headers=headers,
            timeout=settings.webhook_timeout_s,
            follow_redirects=False,
        )
    except httpx.HTTPError as exc:
        # The exception text may repeat the URL (and a token in it): name only its type.
        raise DeliveryError(
            scrub(f"{type(exc).__name__} posting to {settings.webhook_label()}", settings),
            channel_down=True,
        ) from exc
    if not 200 <= response.status_code < 300:
        raise DeliveryError(
            scrub(f"HTTP {response.status_code} {response.reason_phrase}", settings),
            channel_down=True,
        )
    return f"HTTP {response.status_code}"
