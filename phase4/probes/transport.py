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
"""

from __future__ import annotations

import email.utils
import enum
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

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


class Transport:
    """A sync httpx client bound to one monitor; used only from the sender thread."""

    def __init__(self, url: str, token: str, timeout_s: float) -> None:
        self.endpoint = url.rstrip("/") + "/v1/records"
        self._client = httpx.Client(
            timeout=timeout_s,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )

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
            response = self._client.post(self.endpoint, content=body)
        except httpx.HTTPError as exc:
            return Outcome(Verdict.RETRY, error=_short(f"{type(exc).__name__}: {exc}"))
        status = response.status_code
        if 200 <= status < 300:
            return _parse_results(response, len(batch))
        detail = _short(f"HTTP {status} from {self.endpoint}: {response.text}")
        if status in SPLIT_STATUSES:
            return Outcome(Verdict.SPLIT, error=detail)
        if status == 429 or status >= 500:
            return Outcome(Verdict.RETRY, error=detail, retry_after_s=_retry_after_s(response))
        return Outcome(Verdict.RETRY, error=detail, config_problem=True)

    def close(self) -> None:
        self._client.close()


def _parse_results(response: httpx.Response, batch_len: int) -> Outcome:
    """Map results back to batch positions; anything missing makes the whole batch retry."""
    try:
        results = json.loads(response.content)["results"]
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


def _retry_after_s(response: httpx.Response) -> float | None:
    """Retry-After as seconds (RFC 9110 section 10.2.3: delay-seconds or an HTTP-date)."""
    value = response.headers.get("Retry-After", "").strip()
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
