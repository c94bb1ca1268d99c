"""One POST of a batch to the monitor, classified into what the sender should do next.

The wire contract (``POST {url}/v1/records``) is fixed by the monitor; this module is the only
place that knows status codes:

* 200 -> per-record results (created / duplicate / rejected);
* 400/413/422 on the whole batch -> SPLIT: one bad record must not poison its neighbours;
* 401/403, and other unexpected 4xx such as 404 -> RETRY with the maximum backoff: a wrong
  token or URL will not fix itself in half a second, and the records must stay spooled;
* 429, 5xx (among them 503 ``database_unavailable``), connection errors, timeouts, unreadable
  200 bodies -> RETRY with backoff, no sooner than the server's Retry-After (re-sending is
  safe: the monitor deduplicates on record_id). The records stay spooled; none is counted lost.

HTTP is the standard library's (``http.client``: HTTP/1.1 with a kept-alive connection, RFC 9112)
so that the probe adds no package to the model's environment. HTTPS verifies the monitor against
the system's trust store (``ssl.create_default_context``; OpenSSL's ``SSL_CERT_FILE`` and
``SSL_CERT_DIR`` point it elsewhere). A proxy is taken from the environment as urllib reads it
(``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, ``NO_PROXY``): HTTPS goes through a CONNECT
tunnel (RFC 9110 section 9.3.6), plain HTTP as an absolute-form request.
"""

from __future__ import annotations

import base64
import email.utils
import enum
import http.client
import json
import math
import ssl
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

from phase4.probes.capture import Pending

MAX_ERROR_CHARS = 300
SPLIT_STATUSES = frozenset({400, 413, 422})
CONFIG_STATUSES = frozenset({401, 403})


class Verdict(enum.Enum):
    DELIVERED = "delivered"
    SPLIT = "split"
    RETRY = "retry"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one POST achieved; ``statuses`` pairs with the batch when DELIVERED."""

    verdict: Verdict
    statuses: tuple[tuple[str, str | None], ...] = ()
    error: str | None = None
    retry_after_s: float | None = None
    config_problem: bool = False


class ConnectError(OSError):
    """The monitor (or the proxy in front of it) could not be reached: nothing was sent."""


@dataclass(frozen=True, slots=True)
class Reply:
    """A monitor's answer: status, headers and the whole body."""

    status: int
    headers: Message
    content: bytes


# A kept-alive connection the monitor has since closed fails on its next request in one of
# these ways before any answer arrives: the request is then sent once more on a new connection.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class Transport:
    """One kept-alive HTTP(S) connection to one monitor; used only from the sender thread.

    Constructing it never raises (the sender builds it in its thread): a URL or proxy that
    cannot work shows up as a failed POST, in ``ProbeStats.last_error``.
    """

    def __init__(self, url: str, token: str, timeout_s: float) -> None:
        self.endpoint = url.rstrip("/") + "/v1/records"
        self._timeout_s = timeout_s
        self._target = urlsplit(self.endpoint)
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self._proxy = _proxy_for(self._target)
        self._tls: ssl.SSLContext | None = None
        self._connection: http.client.HTTPConnection | None = None

    def post(self, batch: Sequence[Pending], probe: Mapping[str, Any] | None = None) -> Outcome:
        """POST the batch, with the probe's health report (``probe``) when given."""
        health = "" if probe is None else ',"probe":' + json.dumps(dict(probe))
        records = ",".join(item.body for item in batch)
        try:
            body = ('{"records":[' + records + "]" + health + "}").encode("utf-8")
        except UnicodeEncodeError:
            # Cannot happen for bodies from phase4.probes.capture.encode; if it does, splitting
            # isolates the one record instead of losing the batch.
            return Outcome(Verdict.SPLIT, error="a record has no UTF-8 form")
        try:
            response = self._exchange(body)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            # OSError: refused, reset, timed out, TLS refused; ValueError: a header (the
            # token) that HTTP cannot carry
            return Outcome(Verdict.RETRY, error=_short(f"{type(exc).__name__}: {exc}"))
        status = response.status
        if 200 <= status < 300:
            return _parse_results(response.content, len(batch))
        text = response.content.decode("utf-8", errors="replace")
        detail = _short(f"HTTP {status} from {self.endpoint}: {text}")
        if status in SPLIT_STATUSES:
            return Outcome(Verdict.SPLIT, error=detail)
        if status == 429 or status >= 500:
            retry_after_s = _retry_after_s(response.headers.get("Retry-After"))
            return Outcome(Verdict.RETRY, error=detail, retry_after_s=retry_after_s)
        return Outcome(Verdict.RETRY, error=detail, config_problem=True)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    # -- one exchange ----------------------------------------------------------------------

    def _exchange(self, body: bytes) -> Reply:
        reused = self._connection is not None
        try:
            return self._request(body)
        except _STALE:
            if not reused:
                raise
            return self._request(body)  # the monitor closed the idle connection: a new one

    def _request(self, body: bytes) -> Reply:
        connection = self._connection or self._connect()
        self._connection = connection
        target, headers = self._request_line()
        try:
            connection.request("POST", target, body=body, headers=headers)
            response = connection.getresponse()
            reply = Reply(response.status, response.headers, response.read())
        except BaseException:
            self.close()
            raise
        if response.will_close:
            self.close()
        return reply

    def _request_line(self) -> tuple[str, dict[str, str]]:
        """The request target and headers: absolute-form through a plain-HTTP proxy."""
        path = self._target.path + (f"?{self._target.query}" if self._target.query else "")
        if self._proxy is None or self._target.scheme == "https":
            return path, self._headers
        return self.endpoint, {**self._headers, **_proxy_authorization(self._proxy)}

    def _connect(self) -> http.client.HTTPConnection:
        https = self._target.scheme == "https"
        host = self._target.hostname or ""
        port = self._target.port or (443 if https else 80)
        connection: http.client.HTTPConnection
        if self._proxy is not None:
            if self._proxy.scheme != "http" or not self._proxy.hostname:
                port_part = f":{self._proxy.port}" if self._proxy.port else ""
                where = f"{self._proxy.scheme}://{self._proxy.hostname or ''}{port_part}"
                raise ConnectError(f"unsupported proxy {where} (an http:// proxy is needed)")
            via = (self._proxy.hostname, self._proxy.port or 80)
        else:
            via = (host, port)
        try:
            if https:
                if self._tls is None:
                    self._tls = ssl.create_default_context()
                connection = http.client.HTTPSConnection(
                    *via, timeout=self._timeout_s, context=self._tls
                )
                if self._proxy is not None:
                    connection.set_tunnel(host, port, headers=_proxy_authorization(self._proxy))
            else:
                connection = http.client.HTTPConnection(*via, timeout=self._timeout_s)
            connection.connect()
        except (OSError, http.client.HTTPException) as exc:
            proxy = "" if self._proxy is None else f" through the proxy {via[0]}:{via[1]}"
            raise ConnectError(f"cannot connect to {host}:{port}{proxy}: {exc}") from exc
        return connection


def _proxy_for(target: SplitResult) -> SplitResult | None:
    """The environment's proxy for ``target``, None for a direct connection."""
    try:
        proxies = urllib.request.getproxies()
        proxy = proxies.get(target.scheme) or proxies.get("all")
        if not proxy or urllib.request.proxy_bypass(target.netloc):
            return None
    except (OSError, ValueError):
        return None  # an unreadable proxy setting: connect directly
    return urlsplit(proxy if "://" in proxy else f"http://{proxy}")


def _proxy_authorization(proxy: SplitResult) -> dict[str, str]:
    """Basic credentials (RFC 7617) from the proxy URL's user information, if it has any."""
    if proxy.username is None:
        return {}
    pair = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}".encode()
    return {"Proxy-Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}


def _parse_results(content: bytes, batch_len: int) -> Outcome:
    """Map results back to batch positions; anything missing makes the whole batch retry."""
    try:
        results = json.loads(content)["results"]
        statuses: list[tuple[str, str | None] | None] = [None] * batch_len
        for position, result in enumerate(results):
            index = result.get("index", position)
            if type(index) is not int or not 0 <= index < batch_len:
                raise ValueError(f"result index {index!r} outside the batch")
            status = result["status"]
            if status not in ("created", "duplicate", "rejected"):
                raise ValueError(f"unknown status {status!r}")
            error = result.get("error")
            statuses[index] = (status, None if error is None else _short(str(error)))
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        return Outcome(Verdict.RETRY, error=_short(f"unreadable monitor response: {exc!r}"))
    if any(status is None for status in statuses):
        return Outcome(Verdict.RETRY, error="monitor response lacks a result for some records")
    return Outcome(Verdict.DELIVERED, statuses=tuple(s for s in statuses if s is not None))


def _retry_after_s(header: str | None) -> float | None:
    """Retry-After as seconds (RFC 9110 section 10.2.3: delay-seconds or an HTTP-date)."""
    value = (header or "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None  # unreadable: plain backoff
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _short(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."
