"""The probe's logger, with first-occurrence-only warnings.

A failing feature extractor fails on every inference; logging a WARNING each time would cost
the model tens of microseconds per call and flood the log. The first occurrence of each kind is
a WARNING, repeats drop to DEBUG (a disabled DEBUG call is a cheap level check).

Messages name keys, steps and exception *types*, never values: exception messages from
extractors can embed patient data.
"""

from __future__ import annotations

import logging
import threading

LOG = logging.getLogger("phase4.probe")

_MAX_REMEMBERED = 1000  # bounded so an unbounded variety of keys cannot grow memory


class OnceLog:
    """Log at ``level`` the first time a key is seen, at DEBUG afterwards."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def log(self, key: str, message: str, *args: object, level: int = logging.WARNING) -> None:
        with self._lock:
            first = key not in self._seen and len(self._seen) < _MAX_REMEMBERED
            if first:
                self._seen.add(key)
        LOG.log(level if first else logging.DEBUG, message, *args)
