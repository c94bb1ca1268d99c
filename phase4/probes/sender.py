"""The background sender thread: spool -> monitor, oldest first.

Every capture reaches the spool first (``phase4.probes.spool_writer`` commits it within one commit
interval), and this thread posts batches of the spool's oldest rows, deleting them once the
monitor has answered for each. A record is deleted only after its answer, so a crash between
the POST and the delete re-sends it: delivery is at least once on the wire and exactly once in
the store, which de-duplicates on record_id.

The sender wakes every ``flush_interval_s``, when the spool holds a full batch, or when
``flush`` asks; after a failure it waits out its backoff (or the server's Retry-After) first.
Stopping never waits for an HTTP call: what is not confirmed stays in the spool for the next
probe on the same file, and the thread, once its call returns, closes the spool itself.
"""

from __future__ import annotations

import importlib.metadata
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from phase4.probes.backoff import Backoff
from phase4.probes.capture import Pending
from phase4.probes.log import LOG, OnceLog
from phase4.probes.spool import Spool
from phase4.probes.stats import Counters
from phase4.probes.transport import Outcome, Transport, Verdict

_MIN_WAIT_S = 0.001


def _probe_version() -> str:
    try:
        return importlib.metadata.version("phase4")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


PROBE_VERSION = _probe_version()


class Sender:
    """Owns the sender thread; all methods except the ``_``-prefixed loop are thread-safe."""

    def __init__(
        self,
        *,
        queue_depth: Callable[[], int],
        spool: Spool,
        transport_factory: Callable[[], Transport],
        counters: Counters,
        batch_size: int,
        flush_interval_s: float,
        backoff: Backoff,
    ) -> None:
        self._queue_depth = queue_depth
        self._spool = spool
        self._transport_factory = transport_factory
        self._counters = counters
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._backoff = backoff
        self._once = OnceLog()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._lifecycle = threading.Lock()
        self._abandoned = False
        self._finished = False
        self._retry_at = 0.0  # time.monotonic() before which no send is attempted
        self._server_retry_at = 0.0  # the part of _retry_at a Retry-After asked for
        self._attempt_now = False
        self._healthy = True
        self._thread = threading.Thread(target=self._run, name="phase4-probe-sender", daemon=True)

    # -- control, called from other threads ------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        if self._spool.depth:
            self._wake.set()  # records left by a previous probe: deliver them now

    def wake(self) -> None:
        if not self._wake.is_set():  # a plain read; set() takes a lock
            self._wake.set()

    def spool_committed(self, spool_depth: int) -> None:
        """Called by the spool writer after each commit: a full batch is worth a POST now."""
        if spool_depth >= self._batch_size:
            self.wake()

    def request_attempt(self) -> None:
        """Send now, ignoring our own backoff but not a server's Retry-After (``flush``)."""
        self._attempt_now = True
        self._wake.set()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stopping.is_set()

    def stop(self, timeout_s: float) -> bool:
        """Stop the thread; True if it finished within ``timeout_s`` (then the caller closes
        the spool). Otherwise the thread closes the spool when its HTTP call returns."""
        self._stopping.set()
        self._wake.set()
        self._thread.join(max(0.0, timeout_s))
        with self._lifecycle:
            if self._finished:
                return True
            self._abandoned = True
        LOG.warning(
            "probe sender still busy at close (a slow monitor); undelivered records stay "
            "in %s for the next probe",
            self._spool.path,
        )
        return False

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        transport: Transport | None = None
        try:
            transport = self._transport_factory()
            while not self._stopping.is_set():
                self._wake.wait(self._wait_s())
                self._wake.clear()
                if self._stopping.is_set():
                    break
                try:
                    self._cycle(transport)
                except Exception as exc:
                    self._internal_error("sender", exc)
                    self._retry_at = time.monotonic() + self._backoff.next_delay_s()
        except Exception as exc:
            self._internal_error("sender start", exc)
        finally:
            if transport is not None:
                transport.close()
            with self._lifecycle:
                self._finished = True
                abandoned = self._abandoned
            if abandoned:
                self._spool.close()  # the closer left the spool to us, since we still used it

    def _wait_s(self) -> float:
        pending_s = self._retry_at - time.monotonic()
        if pending_s > 0:
            return max(_MIN_WAIT_S, min(self._flush_interval_s, pending_s))
        return self._flush_interval_s

    def _cycle(self, transport: Transport) -> None:
        now = time.monotonic()
        if now < self._retry_at and (not self._attempt_now or now < self._server_retry_at):
            return
        self._attempt_now = False
        while not self._stopping.is_set():
            batch = self._spool.head(self._batch_size)
            if not batch:
                return
            if self._deliver(transport, batch):
                return  # a retry is scheduled
            self._backoff.reset()

    def _deliver(self, transport: Transport, batch: Sequence[Pending]) -> list[Pending]:
        """POST ``batch`` (splitting on 400/413/422); return the unsettled suffix, in order."""
        self._counters.add(send_attempts=1)
        outcome = transport.post(batch, probe=self._health(len(batch)))
        if outcome.verdict is Verdict.DELIVERED:
            self._settle(batch, outcome.statuses)
            return []
        if outcome.verdict is Verdict.SPLIT and not self._stopping.is_set():
            if len(batch) == 1:
                self._settle(batch, (("rejected", outcome.error),))
                return []
            middle = len(batch) // 2
            rest = self._deliver(transport, batch[:middle])
            if rest:
                return [*rest, *batch[middle:]]
            return self._deliver(transport, batch[middle:])
        self._on_failure(outcome)
        return list(batch)

    def _health(self, batch_len: int) -> dict[str, Any]:
        """The health report sent with every batch (the monitor exports it on /metrics).

        ``spool_depth`` is the backlog behind this batch: the batch itself is in the spool
        until answered, and counting it would show a backlog on a healthy probe.
        """
        return {
            "queue_depth": self._queue_depth(),
            "spool_depth": max(0, self._spool.depth - batch_len),
            "dropped_total": self._counters.dropped,
            "probe_version": PROBE_VERSION,
        }

    def _settle(self, batch: Sequence[Pending], statuses: Sequence[tuple[str, str | None]]) -> None:
        counts = {"created": 0, "duplicate": 0, "rejected": 0}
        for item, (status, error) in zip(batch, statuses, strict=True):
            counts[status] += 1
            if status == "rejected":
                LOG.warning("monitor rejected record %s: %s", item.record_id, error)
        self._spool.delete_seqs(item.seq for item in batch if item.seq is not None)
        self._counters.settle(
            sent=counts["created"], duplicates=counts["duplicate"], rejected=counts["rejected"]
        )
        if not self._healthy:
            self._healthy = True
            LOG.info("monitor reachable again; delivering spooled records")

    def _on_failure(self, outcome: Outcome) -> None:
        if outcome.config_problem:
            delay_s = self._backoff.max_delay_s()
            LOG.error(
                "monitor refused the probe (%s). Check the probe's URL and token (role probe); "
                "records stay spooled, retrying in %.1f s",
                outcome.error,
                delay_s,
            )
        else:
            delay_s = self._backoff.next_delay_s(outcome.retry_after_s)
            level = logging.WARNING if self._healthy else logging.DEBUG
            LOG.log(
                level,
                "monitor unavailable (%s); records stay spooled, retry in %.2f s",
                outcome.error,
                delay_s,
            )
        self._healthy = False
        now = time.monotonic()
        self._retry_at = now + delay_s
        if outcome.retry_after_s is not None:  # flush() must not cut a server's wish short
            self._server_retry_at = now + min(outcome.retry_after_s, delay_s)
        self._counters.note_error(outcome.error or "send failed", internal=False)

    def _internal_error(self, step: str, exc: BaseException) -> None:
        # Type only: messages from encoders or the spool can quote record content.
        message = f"probe internal error in {step}: {type(exc).__name__}"
        self._counters.note_error(message, internal=True)
        self._once.log(f"internal:{step}:{type(exc).__name__}", message, level=logging.ERROR)
