"""The service's background detection: every ``detection_interval_s``, run the drift engine over
what arrived and attach evidently reports to new alerts. A failure is logged and retried at
the next tick; it never stops the API."""

from __future__ import annotations

import logging
import threading

from sqlalchemy.engine import Engine

from monitor.detection import detect_all
from monitor.reports import attach_reports

log = logging.getLogger("phase4.worker")


class DetectionWorker:
    def __init__(self, engine: Engine, interval_s: float) -> None:
        self.engine = engine
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="phase4-detection", daemon=True)
        self._thread.start()

    def run_once(self) -> None:
        for result in detect_all(self.engine):
            if result.alarms:
                log.info(
                    "%s: %d records, %d alarms, %d new alerts",
                    result.deployment,
                    result.records,
                    len(result.alarms),
                    len(result.alerts_opened),
                )
        attach_reports(self.engine)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.run_once()
            except Exception:  # keep the service up; the next tick retries
                log.exception("detection pass failed; retrying at the next interval")

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
