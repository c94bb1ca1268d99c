"""The background sender thread: in-memory queue -> (spool) -> monitor.

Two modes keep delivery oldest-first without touching disk when all is well:

* direct: the spool is empty and no backoff is pending, so batches go straight from the queue
  to the monitor;
* degraded: the spool holds records or a retry is pending, so everything captured is appended
  to the spool first (bounded memory, survives a restart) and the spool is drained oldest-first
  once the backoff expires. New records only reach the monitor directly after the spool empties.

Hand-over on close: ``stop`` asks the thread to finish and spool what is left. If the thread is
stuck in an HTTP call (a monitor that accepts and never answers), the closing thread takes over
under ``_handover``: it spools the in-flight batch and the queue itself, and the thread, once its
call returns, only reconciles (deletes rows the monitor did accept) and closes the spool.
"""

from __future__ import annotations

import collections
import importlib.metadata
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from probes.backoff import Backoff
from probes.capture import CapturedTuple, Pending, UnencodableRecord, encode
from probes.log import LOG, OnceLog
from probes.sanitise import StripReport
from probes.spool import Spool
from probes.stats import Counters
from probes.transport import Outcome, Transport, Verdict

SPOOL_CHUNK = 1000  # records encoded and written per spool transaction
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
        queue: collections.deque[CapturedTuple],
        spool: Spool,
        transport_factory: Callable[[], Transport],
        deployment: str,
        counters: Counters,
        batch_size: int,
        flush_interval_s: float,
        backoff: Backoff,
    ) -> None:
        self._queue = queue
        self._spool = spool
        self._transport_factory = transport_factory
        self._deployment = deployment
        self._counters = counters
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._backoff = backoff
        self._once = OnceLog()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._handover = threading.RLock()
        self._in_flight: list[Pending] | None = None
        self._abandoned = False
        self._finished = False
        self._retry_at = 0.0  # time.monotonic() before which no send is attempted
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

    def request_attempt(self) -> None:
        """Send now even if a backoff is pending (used by ``flush``)."""
        self._attempt_now = True
        self._wake.set()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stopping.is_set()

    def stop(self, timeout_s: float) -> bool:
        """Stop the thread; True if it finished (and spooled the rest) within ``timeout_s``."""
        self._stopping.set()
        self._wake.set()
        self._thread.join(max(0.0, timeout_s))
        with self._handover:
            if self._finished:
                return True
            self._abandoned = True
            in_flight, self._in_flight = self._in_flight, None
            if in_flight:
                self._store(in_flight)
            self._spool_queue(by_closer=True)
        LOG.warning(
            "probe sender still busy at close (a slow monitor or a long backlog); undelivered "
            "records were spooled to %s",
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
            self._finish(transport)

    def _finish(self, transport: Transport | None) -> None:
        with self._handover:
            if not self._abandoned:
                try:
                    if self._in_flight:
                        self._store(self._in_flight)
                        self._in_flight = None
                    self._spool_queue()
                except Exception as exc:
                    self._internal_error("spool at close", exc)
                self._finished = True
        if transport is not None:
            transport.close()
        if self._abandoned:
            self._spool.close()  # the closer left the spool to us, since we were still using it

    def _wait_s(self) -> float:
        pending_s = self._retry_at - time.monotonic()
        if pending_s > 0:
            return max(_MIN_WAIT_S, min(self._flush_interval_s, pending_s))
        return self._flush_interval_s

    def _cycle(self, transport: Transport) -> None:
        now = time.monotonic()
        if self._spool.depth > 0 or now < self._retry_at:
            self._spool_queue()
            if now < self._retry_at and not self._attempt_now:
                return
            self._attempt_now = False
            if not self._drain_spool(transport):
                return
        self._attempt_now = False
        self._drain_queue(transport)

    def _drain_spool(self, transport: Transport) -> bool:
        """Send the spool oldest-first; False when a send failed (a retry is scheduled)."""
        while not self._stopping.is_set():
            self._spool_queue()  # keeps memory bounded while a long backlog drains
            batch = self._spool.head(self._batch_size)
            if not batch:
                return True
            if self._deliver(transport, batch):
                return False
            self._backoff.reset()
        return False

    def _drain_queue(self, transport: Transport) -> None:
        while not self._stopping.is_set():
            with self._handover:
                if self._abandoned:
                    return
                batch = self._take(self._batch_size)
                if not batch:
                    return
                self._in_flight = batch
            unsettled = self._deliver(transport, batch)
            with self._handover:
                if self._abandoned:
                    return  # the closer spooled the in-flight batch
                self._in_flight = None
                if unsettled:
                    self._store(unsettled)
            if unsettled:
                self._spool_queue()
                return
            self._backoff.reset()

    def _deliver(self, transport: Transport, batch: Sequence[Pending]) -> list[Pending]:
        """POST ``batch`` (splitting on 400/413/422); return the unsettled suffix, in order."""
        self._counters.add(send_attempts=1)
        outcome = transport.post(batch, probe=self._health())
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

    def _health(self) -> dict[str, Any]:
        """The health report sent with every batch (the monitor exports it on /metrics)."""
        return {
            "queue_depth": len(self._queue),
            "spool_depth": self._spool.depth,
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
        direct = [item for item in batch if item.seq is None]
        if direct:
            with self._handover:
                if self._abandoned:
                    self._spool.delete_record_ids(item.record_id for item in direct)
                elif self._in_flight is not None:
                    self._in_flight = self._in_flight[len(direct) :]
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
                "monitor unavailable (%s); spooling records, retry in %.2f s",
                outcome.error,
                delay_s,
            )
        self._healthy = False
        self._retry_at = time.monotonic() + delay_s
        self._counters.note_error(outcome.error or "send failed", internal=False)

    # -- queue and spool helpers (callers hold _handover where ordering matters) -----------

    def _take(self, limit: int) -> list[Pending]:
        batch: list[Pending] = []
        while len(batch) < limit:
            try:
                captured = self._queue.popleft()
            except IndexError:
                break
            pending = self._encode(captured)
            if pending is not None:
                batch.append(pending)
        return batch

    def _spool_queue(self, *, by_closer: bool = False) -> None:
        """Move the whole queue to the spool, one locked chunk at a time.

        The lock is dropped between chunks so ``stop`` can take over a long backlog; once it
        has (``_abandoned``), only the closer keeps moving records, which preserves order.
        """
        while True:
            with self._handover:
                if self._abandoned and not by_closer:
                    return
                batch = self._take(SPOOL_CHUNK)
                if not batch:
                    return
                self._store(batch)

    def _store(self, items: Sequence[Pending]) -> None:
        try:
            dropped = self._spool.append(items)
        except Exception as exc:
            self._internal_error("spool write", exc)
            self._counters.settle(dropped=len(items))
            return
        self._counters.add(spooled=len(items))
        if dropped:
            self._counters.settle(dropped=dropped)
            self._once.log(
                "spool-full",
                "probe spool %s is full (%d records): dropped the %d oldest",
                self._spool.path,
                self._spool.max_records,
                dropped,
            )

    def _encode(self, captured: CapturedTuple) -> Pending | None:
        report = StripReport()
        try:
            pending = encode(captured, self._deployment, report)
        except UnencodableRecord as exc:
            self._once.log(f"refused:{exc.field}", "refused a record: %s", exc)
            self._counters.settle(rejected=1)
            return None
        except Exception as exc:
            self._internal_error("encode", exc)
            self._counters.settle(dropped=1)
            return None
        if report.phi_keys or report.dropped_values:
            self._counters.add(
                phi_keys_stripped=len(report.phi_keys),
                values_stripped=len(report.dropped_values),
            )
            for path in report.phi_keys:
                self._once.log(f"phi:{path}", "stripped PHI key %s (value not sent)", path)
            for path in report.dropped_values:
                self._once.log(f"value:{path}", "dropped unencodable value at %s", path)
        return pending

    def _internal_error(self, step: str, exc: BaseException) -> None:
        # Type only: messages from encoders or the spool can quote record content.
        message = f"probe internal error in {step}: {type(exc).__name__}"
        self._counters.note_error(message, internal=True)
        self._once.log(f"internal:{step}:{type(exc).__name__}", message, level=logging.ERROR)
