"""The spool writer thread: captures in memory -> the spool file, by group commit.

Every capture goes through the spool, whatever the monitor does: the writer wakes every
``commit_interval_s`` (default 0.1 s), takes everything queued, encodes it and appends it to the
spool in one SQLite transaction. The sender posts from the spool only. So a SIGKILL of the
model's process loses at most the captures of the last commit interval (those still in memory),
never the ones waiting behind a slow POST (a 10 s POST does not hold the captures of those 10 s
in memory).

Durable mode (``Probe(durable=True)``) is group commit as databases do it (Gray & Reuter,
*Transaction Processing*, 1993, section 9.4.7 "group commit"): ``record`` wakes the writer and
waits until the transaction holding its capture has committed; captures that arrive meanwhile
share the next transaction, so the cost of a commit is spread over all of them. Committed means
written to the SQLite WAL with ``synchronous=NORMAL``: it survives the death of the process
(SIGKILL, OOM killer, a crash in native code), not a power cut or kernel panic, for which
SQLite documents that WAL commits since the last checkpoint may roll back.

Tickets: ``Counters.enqueued`` numbers captures as they are queued; ``durable_through`` is the
highest number that has left the queue into a committed transaction (or was dropped). Since
the queue is FIFO, every capture numbered at or below it is settled in the spool.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable

from phase4.probes.capture import CapturedTuple, Pending, UnencodableRecord, encode
from phase4.probes.log import OnceLog
from phase4.probes.sanitise import StripReport
from phase4.probes.spool import Spool
from phase4.probes.stats import Counters

SPOOL_CHUNK = 1000  # captures taken from the queue per transaction (bounds the lock hold)


class SpoolWriter:
    """Owns the writer thread; ``wake``, ``stop`` and ``wait_durable`` are thread-safe."""

    def __init__(
        self,
        *,
        queue: collections.deque[CapturedTuple],
        spool: Spool,
        deployment: str,
        counters: Counters,
        commit_interval_s: float,
        on_commit: Callable[[int], None],
    ) -> None:
        self._queue = queue
        self._spool = spool
        self._deployment = deployment
        self._counters = counters
        self._commit_interval_s = commit_interval_s
        self._on_commit = on_commit  # called with the spool depth after each commit
        self._once = OnceLog()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._finished = threading.Event()
        # The last range of tickets whose transaction failed: not durable though settled.
        self._failed_tickets = (0, 0)
        self._thread = threading.Thread(
            target=self._run, name="phase4-probe-spool-writer", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        if not self._wake.is_set():  # a plain read; set() takes a lock
            self._wake.set()

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    def stop(self, timeout_s: float) -> bool:
        """Commit what is queued and stop; True if done within ``timeout_s``."""
        self._stopping.set()
        self._wake.set()
        return self._finished.wait(max(0.0, timeout_s))

    def wait_durable(self, ticket: int, timeout_s: float) -> bool:
        """Block until capture ``ticket`` is committed; False on timeout or a failed write."""
        counters = self._counters
        self.wake()
        with counters.lock:
            if counters.durable_through < ticket:
                counters.changed.wait_for(lambda: counters.durable_through >= ticket, timeout_s)
            if counters.durable_through < ticket:
                return False
        first, last = self._failed_tickets
        return not first <= ticket <= last

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                self._wake.wait(self._commit_interval_s)
                self._wake.clear()
                stopping = self._stopping.is_set()
                try:
                    self._commit_queue()
                except Exception as exc:  # the thread must survive to commit the next group
                    self._internal_error("spool writer", exc)
                if stopping:
                    return
        finally:
            self._finished.set()

    def _commit_queue(self) -> None:
        """Commit everything queued, one chunk per transaction."""
        counters = self._counters
        while True:
            with counters.lock:
                count = min(len(self._queue), SPOOL_CHUNK)
                taken = [self._queue.popleft() for _ in range(count)]
                through = counters.enqueued - len(self._queue)
            if not taken:
                with counters.lock:  # captures dropped by overflow also leave the queue
                    counters.durable_through = max(counters.durable_through, through)
                    counters.changed.notify_all()
                return
            items = [p for p in (self._encode(raw) for raw in taken) if p is not None]
            written = self._store(items)
            if not written:
                self._failed_tickets = (through - count + 1, through)
            with counters.lock:
                counters.durable_through = through
                counters.changed.notify_all()
            self._on_commit(self._spool.depth)

    def _store(self, items: list[Pending]) -> bool:
        """Append to the spool; False if the transaction failed (the items are lost)."""
        if not items:
            return True
        try:
            dropped = self._spool.append(items)
        except Exception as exc:
            self._internal_error("spool write", exc)
            self._counters.settle(dropped=len(items))
            return False
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
        return True

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
