"""``Probe``: captures each inference of a deployed model and ships it to the monitor.

The contract with the model's code path: capturing is a lock-guarded ``deque.append`` of a
small tuple (plus a uuid4, an HMAC of the study id and a timestamp), and nothing the probe does
can raise into the model. Everything slow or fallible - PHI stripping, JSON encoding, SQLite -
happens in the spool writer thread (``phase4.probes.spool_writer``), and HTTP in the sender thread
(``phase4.probes.sender``), which posts from the spool.

Durability (what a SIGKILL of the model's process can lose):

* default: the captures of the last ``spool_commit_interval_s`` (0.1 s), the ones not yet
  committed to the spool. The spool is committed on that clock whatever the monitor does, and
  the next probe opened on the same spool file delivers what the dead one left.
* ``durable=True``: nothing once ``record`` has returned a record id: ``record`` waits for the
  group commit that holds its capture (median about 0.3 ms, p99 tens of milliseconds on a
  loaded 2-core machine: docs/BENCHMARKS.md). If the commit does not come within
  ``durable_wait_max_s`` (a stuck disk) ``record`` returns None instead of blocking the model
  longer: the capture may still be delivered, but the probe does not promise it.
"""

from __future__ import annotations

import atexit
import collections
import logging
import re
import threading
import time
import weakref
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from phase4.probes.backoff import Backoff
from phase4.probes.capture import CapturedTuple, describe_error, new_record_id, snapshot
from phase4.probes.inference import Extractor, Inference, Watcher
from phase4.probes.log import LOG, OnceLog
from phase4.probes.pseudonym import Pseudonymiser, resolve_site_secret
from phase4.probes.sanitise import storable_text
from phase4.probes.sender import Sender
from phase4.probes.spool import Spool
from phase4.probes.spool_writer import SpoolWriter
from phase4.probes.stats import Counters, ProbeStats
from phase4.probes.transport import Transport

MAX_BATCH_SIZE = 1000  # the monitor accepts at most this many records per request
DEFAULT_SPOOL_DIR = Path("phase4-data")
CLOSE_GRACE_S = 0.2  # minimum time close() gives the sender to stop by itself
MAX_COMMIT_INTERVAL_S = 10.0
CLOSE_COMMIT_MAX_S = 60.0  # how long close() waits for the spool writer past its own timeout


def default_spool_path(deployment: str) -> Path:
    """``./phase4-data/probe-<deployment-slug>.spool.sqlite``."""
    slug = re.sub(r"[^a-z0-9]+", "-", deployment.lower()).strip("-") or "deployment"
    return DEFAULT_SPOOL_DIR / f"probe-{slug}.spool.sqlite"


class Probe:
    """Sidecar in the model's process; see the package docstring for usage."""

    def __init__(
        self,
        url: str,
        token: str,
        deployment: str,
        site_secret: bytes | str | None = None,
        spool_path: str | Path | None = None,
        *,
        batch_size: int = 500,
        flush_interval_s: float = 0.5,
        max_queue: int = 100_000,
        spool_max_records: int = 1_000_000,
        timeout_s: float = 10.0,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        send_error_messages: bool = False,
        durable: bool = False,
        spool_commit_interval_s: float = 0.1,
        durable_wait_max_s: float = 1.0,
    ) -> None:
        _validate(url, token, deployment, batch_size, flush_interval_s, max_queue, timeout_s)
        if not 0 < spool_commit_interval_s <= MAX_COMMIT_INTERVAL_S:
            raise ValueError(f"spool_commit_interval_s must be in (0, {MAX_COMMIT_INTERVAL_S}]")
        if not durable_wait_max_s > 0:
            raise ValueError("durable_wait_max_s must be > 0")
        backoff = Backoff(backoff_base_s, backoff_max_s)  # validates before any file is opened
        self.deployment = deployment
        # Exception messages may quote identifying text: sent only if the site opts in.
        self.send_error_messages = send_error_messages
        self._pseudonymiser = Pseudonymiser(resolve_site_secret(site_secret))
        self._spool = Spool(spool_path or default_spool_path(deployment), spool_max_records)
        self.spool_path = self._spool.path
        if self._spool.dropped_total:
            LOG.warning(
                "probe spool %s has dropped %d records over its lifetime (full spool)",
                self.spool_path,
                self._spool.dropped_total,
            )
        self._counters = Counters(inherited=self._spool.depth)
        self._queue: collections.deque[CapturedTuple] = collections.deque()
        self._max_queue = max_queue
        self._batch_size = batch_size
        self._closed = False
        self._close_result: bool | None = None
        self._close_lock = threading.Lock()
        self._once = OnceLog()
        self.durable = durable
        self._durable_wait_max_s = durable_wait_max_s
        self._sender = Sender(
            queue_depth=self._queue.__len__,
            spool=self._spool,
            transport_factory=lambda: Transport(url, token, timeout_s),
            counters=self._counters,
            batch_size=batch_size,
            flush_interval_s=flush_interval_s,
            backoff=backoff,
        )
        self._writer = SpoolWriter(
            queue=self._queue,
            spool=self._spool,
            deployment=deployment,
            counters=self._counters,
            commit_interval_s=spool_commit_interval_s,
            on_commit=self._sender.spool_committed,
        )
        self._writer.start()
        self._sender.start()
        _OPEN_PROBES.add(self)

    # -- capture (the model's hot path) ---------------------------------------------------

    def record(
        self,
        features: dict[str, Any] | None = None,
        outputs: dict[str, Any] | None = None,
        study_uid: str | None = None,
        acquired_at: datetime | None = None,
        latency_s: float | None = None,
        error: BaseException | str | None = None,
        record_id: str | None = None,
        model_version: str | None = None,
        shadow_outputs: dict[str, dict[str, Any]] | None = None,
    ) -> str | None:
        """Capture one inference; returns its record_id, or None if it was not captured.

        ``model_version``: the version that produced ``outputs`` (omit it to mean the
        deployment's accepted version); ``shadow_outputs``: other versions' outputs on the same
        study, by version (shadow traffic for a revalidation, docs/REVALIDATION.md).

        Never raises. ``study_uid`` is HMAC-pseudonymised here, before anything is queued. With
        ``durable=True`` it returns once the capture is committed to the spool (None if that
        took over ``durable_wait_max_s``); see the module docstring.
        """
        try:
            if record_id is None or type(record_id) is not str:
                if record_id is not None:
                    self._internal_error("record_id", TypeError("record_id must be str"))
                record_id = new_record_id()
            pseudonym = None
            if study_uid is not None:
                pseudonym = self._pseudonymise(study_uid)
            captured: CapturedTuple = (  # a plain tuple on purpose: see phase4.probes.capture
                record_id,
                pseudonym,
                acquired_at,
                time.time(),
                snapshot(features),
                snapshot(outputs),
                latency_s,
                None
                if error is None
                else describe_error(error, with_message=self.send_error_messages),
                model_version,
                None
                if not isinstance(shadow_outputs, dict)
                else tuple((k, snapshot(v)) for k, v in shadow_outputs.items()),
            )
            ticket = self._enqueue(captured)
            if not ticket:
                return None
            if self.durable and not self._writer.wait_durable(ticket, self._durable_wait_max_s):
                self._once.log(
                    "durable-timeout",
                    "capture not committed to the spool within %.3f s; record() returned None",
                    self._durable_wait_max_s,
                )
                return None
            return record_id
        except Exception as exc:
            self._internal_error("capture", exc)
            return None

    def inference(
        self,
        study_uid: str | None = None,
        features: dict[str, Any] | None = None,
        acquired_at: datetime | None = None,
        outputs: dict[str, Any] | None = None,
        record_id: str | None = None,
    ) -> Inference:
        """Context manager timing the block and capturing it on exit (errors re-raised)."""
        return Inference(self, study_uid, features, acquired_at, outputs, record_id)

    def watch(
        self,
        fn: Any = None,
        /,
        *,
        features: Extractor | None = None,
        outputs: Extractor | None = None,
        study_uid: Extractor | None = None,
        acquired_at: Extractor | None = None,
    ) -> Any:
        """Decorator: ``@probe.watch(features=lambda x: {...}, outputs=lambda y: {...})``.

        Input extractors get the call's arguments, ``outputs`` gets the return value. Also
        usable bare (``@probe.watch``) when no extraction is wanted.
        """
        watcher = Watcher(self, features, outputs, study_uid, acquired_at)
        if fn is not None:
            return watcher.wrap(fn)
        return watcher.wrap

    # -- delivery control ------------------------------------------------------------------

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything captured so far is delivered or rejected.

        Sends now (ignoring a pending backoff) and keeps retrying until ``timeout_s``. False on
        timeout (records stay queued/spooled and are retried later) and also when any record
        was dropped by overflow, since then not everything was delivered.
        """
        return self._flush(timeout_s, give_up_on_failure=False)

    def close(self, timeout_s: float = 10.0) -> bool:
        """Flush, then stop the sender; undelivered records stay in the spool file.

        Everything still in memory is committed to the spool first. Unlike ``flush`` it does
        not keep retrying an unavailable monitor: one failed attempt and the rest stays spooled
        for the next probe on this spool path, so shutting a model down never waits out a
        monitor outage. Returns whether everything was delivered; idempotent (later calls
        return the first answer).
        """
        with self._close_lock:
            if self._close_result is not None:
                return self._close_result
            deadline = time.monotonic() + max(0.0, timeout_s)
            delivered = self._flush(timeout_s, give_up_on_failure=True)
            with self._counters.lock:
                self._closed = True
            try:
                committed = self._writer.stop(max(CLOSE_GRACE_S, deadline - time.monotonic()))
                if not committed:
                    committed = self._commit_at_close()
                finished = self._sender.stop(max(CLOSE_GRACE_S, deadline - time.monotonic()))
                if finished and committed:
                    self._spool.close()
            except Exception as exc:
                self._internal_error("close", exc)
            if not delivered:
                LOG.warning(
                    "probe closed with records undelivered; %d remain in %s for the next probe",
                    self._spool.depth,
                    self.spool_path,
                )
            _OPEN_PROBES.discard(self)
            self._close_result = delivered
            return delivered

    def _commit_at_close(self) -> bool:
        """Wait for the writer past close's timeout: that bounds waiting for the monitor, not
        local disk work, and a process that exits next would lose what is still in memory."""
        LOG.warning(
            "probe close: committing %d captures still in memory to %s",
            len(self._queue),
            self.spool_path,
        )
        if self._writer.stop(CLOSE_COMMIT_MAX_S):
            return True
        LOG.error(
            "probe close: the spool writer did not finish within %.0f s; %d captures in memory "
            "are lost if the process exits now",
            CLOSE_COMMIT_MAX_S,
            len(self._queue),
        )
        return False

    def _flush(self, timeout_s: float, *, give_up_on_failure: bool) -> bool:
        try:
            counters = self._counters
            with counters.lock:
                target = counters.intake
                ticket = counters.enqueued
            deadline = time.monotonic()
            if self._sender.alive:
                deadline += max(0.0, timeout_s)
                # Commit what is queued first, so that the attempt below carries it.
                self._writer.wait_durable(ticket, max(0.0, deadline - time.monotonic()))
                self._sender.request_attempt()
            settled = counters.wait_settled(target, deadline, give_up_on_failure=give_up_on_failure)
            with counters.lock:
                return settled and counters.dropped == 0
        except Exception as exc:
            self._internal_error("flush", exc)
            return False

    def stats(self) -> ProbeStats:
        return self._counters.snapshot(
            queue_depth=len(self._queue),
            spool_depth=self._spool.depth,
            spool_dropped_total=self._spool.dropped_total,
        )

    def __enter__(self) -> Probe:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Probe(deployment={self.deployment!r}, spool_path={str(self.spool_path)!r})"

    # -- internals -------------------------------------------------------------------------

    def _pseudonymise(self, study_uid: object) -> str | None:
        if isinstance(study_uid, str):
            return self._pseudonymiser(str.__str__(study_uid))
        # Never str() it: a non-str identifier (e.g. a pydicom element) can embed PHI.
        self._internal_error("study_uid", TypeError("study_uid must be str"))
        return None

    def _enqueue(self, captured: CapturedTuple) -> int:
        """Append to the queue (dropping the oldest if full); returns the capture's ticket
        (``Counters.enqueued``), 0 if the probe is closed."""
        counters = self._counters
        queue = self._queue
        ticket = 0
        with counters.lock:
            counters.captured += 1
            if self._closed:
                counters.dropped += 1
                counters.changed.notify_all()
                closed = True
            else:
                closed = False
                if len(queue) >= self._max_queue:
                    queue.popleft()  # oldest first, as for the spool: recent data matters most
                    counters.dropped += 1
                    counters.changed.notify_all()
                queue.append(captured)
                counters.enqueued += 1
                ticket = counters.enqueued
        if closed:
            self._once.log("closed", "record captured after Probe.close(); dropped")
        return ticket

    def _internal_error(self, step: str, exc: BaseException) -> None:
        """Count and log a probe failure by type only (messages may quote patient data)."""
        try:
            message = f"probe internal error in {step}: {type(exc).__name__}"
            self._counters.note_error(message, internal=True)
            self._once.log(f"{step}:{type(exc).__name__}", message)
        except Exception:  # the last line of defence must not raise either
            pass


def _validate(
    url: str,
    token: str,
    deployment: str,
    batch_size: int,
    flush_interval_s: float,
    max_queue: int,
    timeout_s: float,
) -> None:
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise ValueError(f"url must be an http(s) base URL, got {url!r}")
    if not isinstance(token, str) or not token:
        raise ValueError("token must be a non-empty bearer token (role probe)")
    if not isinstance(deployment, str) or not deployment or not storable_text(deployment):
        raise ValueError("deployment must be a non-empty string with a UTF-8 form and no NUL")
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch_size must be in 1..{MAX_BATCH_SIZE}")
    if flush_interval_s <= 0 or timeout_s <= 0:
        raise ValueError("flush_interval_s and timeout_s must be > 0")
    if max_queue < 1:
        raise ValueError("max_queue must be >= 1")


_OPEN_PROBES: weakref.WeakSet[Probe] = weakref.WeakSet()
AT_EXIT_TIMEOUT_S = 1.0


@atexit.register
def _close_open_probes() -> None:
    """At interpreter exit, give each open probe a short flush and spool the rest.

    The sender is a daemon thread, so without this the in-memory queue would vanish on exit.
    """
    for probe in list(_OPEN_PROBES):
        try:
            probe.close(AT_EXIT_TIMEOUT_S)
        except Exception:
            logging.getLogger("phase4.probe").exception("probe close at exit failed")
