"""The service: the monitor's app with its background work wired in, beside the CLI that runs it.

Every ``detection_interval_s`` the worker runs the drift engine over what arrived, the phantom QC
charts and the AI canary, attaches evidently reports to new alerts, looks for silent probes, and
tells people (email, webhook, escalation). Each step fails alone: it is logged and retried at the
next tick, and never stops the API or the other steps."""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections.abc import Callable

from fastapi import FastAPI
from sqlalchemy.engine import Engine

from phase4.alerts.config import NotifySettings
from phase4.alerts.heartbeat import check_heartbeats
from phase4.alerts.notify import notify_pending
from phase4.monitor.app import create_api
from phase4.monitor.core.settings import Settings
from phase4.monitor.store.db import create_db_engine
from phase4.monitor.surveillance.detection import (
    DetectionSettings,
    MonitorCache,
    PassResult,
    detect_all,
)
from phase4.monitor.surveillance.phantom_qc import process_phantom_qc
from phase4.monitor.surveillance.reports import attach_reports, attach_reports_at, reports_pending
from phase4.monitor.surveillance.subgroups import process_subgroups

log = logging.getLogger("phase4.worker")

REPORTS_TIMEOUT_S = 900.0  # a report process still running then is ended; retried next tick


class DetectionWorker:
    def __init__(
        self,
        engine: Engine,
        interval_s: float,
        notify: NotifySettings | None = None,
        *,
        detects: bool = True,
    ) -> None:
        self.engine = engine
        self.interval_s = interval_s
        self.notify = notify
        # False: `phase4 detect --loop` processes analyse; this worker does the other steps.
        self.detects = detects
        # the deployments' monitors kept between passes (only this thread uses it)
        self.cache = MonitorCache(DetectionSettings().cache_deployments)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="phase4-detection", daemon=True)
        self._thread.start()

    def _detect(self) -> None:
        # claim: `phase4 detect --loop` workers may share the store (PostgreSQL)
        for result in detect_all(self.engine, claim=True, cache=self.cache):
            if result.alarms:
                log.info(
                    "%s: %d records, %d alarms, %d new alerts",
                    result.deployment,
                    result.records,
                    len(result.alarms),
                    len(result.alerts_opened),
                )

    def _phantoms(self) -> None:
        qc = process_phantom_qc(self.engine)
        if qc.alerts_opened:
            log.info("phantom QC: %d results, %d new alerts", qc.results, len(qc.alerts_opened))

    def _reports(self) -> None:
        """Build the missing evidently reports in a child process (spawned, so it shares no
        interpreter, lock or connection with the API's threads); a store only this process can
        open (SQLite in memory) builds them here."""
        if not reports_pending(self.engine):
            return
        url = self.engine.url
        if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
            attach_reports(self.engine)
            return
        child = multiprocessing.get_context("spawn").Process(
            target=attach_reports_at,
            args=(url.render_as_string(hide_password=False),),
            name="phase4-reports",
            daemon=True,
        )
        child.start()
        deadline = time.monotonic() + REPORTS_TIMEOUT_S
        while child.is_alive() and not self._stop.is_set() and time.monotonic() < deadline:
            child.join(0.5)
        if child.is_alive():  # stopping, or stuck: its transaction rolls back
            child.kill()
            child.join()
        elif child.exitcode:
            raise RuntimeError(f"the report process ended with exit code {child.exitcode}")

    def _heartbeats(self) -> None:
        if self.notify is not None:
            check_heartbeats(self.engine, self.notify)

    def _notify(self) -> None:
        if self.notify is not None:
            notify_pending(self.engine, self.notify)

    def run_once(self) -> None:
        steps: list[tuple[str, Callable[[], object]]] = [
            *([("detection", self._detect)] if self.detects else []),
            ("phantom QC", self._phantoms),
            ("subgroups", lambda: process_subgroups(self.engine)),
            ("reports", self._reports),
            ("heartbeat", self._heartbeats),
            ("notifications", self._notify),
        ]
        for name, step in steps:
            if self._stop.is_set():
                return
            try:
                step()
            except Exception:  # one step's failure must not stop the others or the API
                log.exception("%s pass failed; retrying at the next interval", name)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.run_once()

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)


def run_detection_loop(
    engine: Engine,
    interval_s: float,
    *,
    stop_when_idle: bool = False,
    on_pass: Callable[[list[PassResult]], None] | None = None,
    cache: MonitorCache | None = None,
) -> int:
    """Detection passes until interrupted (or, with ``stop_when_idle``, until a pass finds
    nothing to analyse and no deployment held by another worker); returns the passes run.
    The deployments' monitors are kept between passes (``cache``, by default one of
    ``PHASE4_DETECTION_CACHE_DEPLOYMENTS``)."""
    if cache is None:
        cache = MonitorCache(DetectionSettings().cache_deployments)
    passes = 0
    try:
        while True:
            started = time.monotonic()
            results = detect_all(engine, claim=True, cache=cache)
            passes += 1
            if on_pass is not None:
                on_pass(results)
            worked = any(r.records or r.feedback for r in results)
            # a deployment another worker holds may still have records when that worker dies
            waiting = any(r.skipped for r in results)
            if stop_when_idle and not worked and not waiting:
                return passes
            if not worked:
                time.sleep(max(0.0, interval_s - (time.monotonic() - started)))
    except KeyboardInterrupt:
        return passes


def create_app(
    settings: Settings | None = None,
    engine: Engine | None = None,
    notify: NotifySettings | None = None,
) -> FastAPI:
    """The whole service: the monitor's app, and (when ``detection_interval_s`` > 0) the
    background work every interval. The schema must already be migrated (``phase4 db upgrade``).

    ``notify`` says who is told of alerts and how (default: from ``PHASE4_*`` variables)."""
    settings = settings or Settings()
    notify = notify or NotifySettings()
    if engine is None:
        engine = create_db_engine(
            settings.resolved_database_url(),
            sqlite_busy_timeout_s=settings.sqlite_busy_timeout_s,
            postgres_lock_timeout_s=settings.postgres_lock_timeout_s,
        )
        owned: Engine | None = engine
    else:
        owned = None
    worker = DetectionWorker(
        engine, settings.detection_interval_s, notify, detects=settings.detection_in_server
    )
    app = create_api(
        settings,
        engine,
        background=_Service(worker if settings.detection_interval_s > 0 else None, owned),
    )
    app.state.notify = notify
    app.state.worker = worker
    return app


class _Service:
    """Starts the worker with the app; stops it, then disposes of an engine the app made."""

    def __init__(self, worker: DetectionWorker | None, owned_engine: Engine | None) -> None:
        self.worker = worker
        self.owned_engine = owned_engine

    def start(self) -> None:
        if self.worker is not None:
            self.worker.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.worker is not None:
            self.worker.stop(timeout_s)
        if self.owned_engine is not None:
            self.owned_engine.dispose()
