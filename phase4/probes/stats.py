"""Probe counters: updated from the hot path and the probe's threads, read as a snapshot.

One lock guards every counter because ``+=`` on an attribute is not atomic across threads and
``flush`` needs a consistent "settled >= intake" test. The lock is held for a few increments
only, so an uncontended acquire (tens of nanoseconds) is all the hot path pays.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProbeStats:
    """A point-in-time view of a probe.

    ``dropped`` counts records this probe lost (queue or spool overflow, capture after close);
    ``spool_dropped_total`` is the lifetime count persisted in the spool file. ``values_stripped``
    counts non-JSON values removed; ``phi_keys_stripped`` counts keys removed for naming PHI.
    ``spooled`` counts records committed to the spool file, which every capture passes through.
    """

    captured: int
    sent: int
    duplicates: int
    rejected: int
    spooled: int
    dropped: int
    phi_keys_stripped: int
    internal_errors: int
    queue_depth: int
    spool_depth: int
    send_attempts: int
    last_error: str | None
    values_stripped: int = 0
    spool_dropped_total: int = 0


class Counters:
    """Mutable counters behind ``ProbeStats``; ``settled`` drives ``flush``."""

    def __init__(self, inherited: int) -> None:
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.inherited = inherited  # records already in the spool when the probe opened
        self.captured = 0
        self.sent = 0
        self.duplicates = 0
        self.rejected = 0
        self.spooled = 0
        self.dropped = 0
        self.phi_keys_stripped = 0
        self.values_stripped = 0
        self.internal_errors = 0
        self.send_attempts = 0
        self.send_failures = 0
        self.enqueued = 0  # captures ever queued: the ticket of the latest one
        self.durable_through = 0  # tickets <= this have left the queue (see spool_writer)
        self.last_error: str | None = None

    @property
    def intake(self) -> int:
        """Records this probe is responsible for: inherited from the spool plus captured."""
        return self.inherited + self.captured

    @property
    def settled(self) -> int:
        """Records that have left the probe for good: delivered, rejected or dropped."""
        return self.sent + self.duplicates + self.rejected + self.dropped

    def settle(
        self, *, sent: int = 0, duplicates: int = 0, rejected: int = 0, dropped: int = 0
    ) -> None:
        with self.lock:
            self.sent += sent
            self.duplicates += duplicates
            self.rejected += rejected
            self.dropped += dropped
            self.changed.notify_all()

    def add(self, **increments: int) -> None:
        with self.lock:
            for name, increment in increments.items():
                setattr(self, name, getattr(self, name) + increment)

    def note_error(self, message: str, *, internal: bool) -> None:
        with self.lock:
            self.last_error = message
            if internal:
                self.internal_errors += 1
            else:
                self.send_failures += 1
                self.changed.notify_all()

    def wait_settled(self, target: int, deadline: float, *, give_up_on_failure: bool) -> bool:
        """Block until ``settled >= target`` or the monotonic ``deadline`` passes.

        With ``give_up_on_failure`` it also stops at the first failed send after the call:
        ``close`` uses that so a down monitor costs one attempt, not the whole timeout.
        """
        with self.lock:
            failures = self.send_failures
            while self.settled < target:
                remaining_s = deadline - time.monotonic()
                if remaining_s <= 0 or (give_up_on_failure and self.send_failures > failures):
                    return False
                self.changed.wait(remaining_s)
            return True

    def snapshot(self, queue_depth: int, spool_depth: int, spool_dropped_total: int) -> ProbeStats:
        with self.lock:
            return ProbeStats(
                captured=self.captured,
                sent=self.sent,
                duplicates=self.duplicates,
                rejected=self.rejected,
                spooled=self.spooled,
                dropped=self.dropped,
                phi_keys_stripped=self.phi_keys_stripped,
                internal_errors=self.internal_errors,
                queue_depth=queue_depth,
                spool_depth=spool_depth,
                send_attempts=self.send_attempts,
                last_error=self.last_error,
                values_stripped=self.values_stripped,
                spool_dropped_total=spool_dropped_total,
            )
