"""The monitor's FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy.engine import Engine

from alerts.config import NotifySettings
from monitor import ui
from monitor.api import alerts, deployments, feedback, health, incidents, phantoms, records, tokens
from monitor.api.body_limit import BodySizeLimit
from monitor.api.errors import COMMON_ERRORS, error_responses, install_error_handlers
from monitor.api.methods import AllowHeader
from monitor.db import create_db_engine
from monitor.metrics import build_registry
from monitor.settings import Settings
from monitor.worker import DetectionWorker

DESCRIPTION = """
phase4 monitor: ingest of what deployed nuclear-medicine AI sees and says, and what the
surveillance found. Every `/v1` endpoint needs `Authorization: Bearer <token>`
(`phase4 token create`). Errors always have the shape `{"error": {"code", "message", "details"}}`;
every route can also answer 400 (unreadable body), 413 (body over the limit), 422, 500 (with an
error id) and 503 `database_unavailable` (with `Retry-After`). Limits: docs/API.md.
"""


def create_app(
    settings: Settings | None = None,
    engine: Engine | None = None,
    notify: NotifySettings | None = None,
) -> FastAPI:
    """Build the app. The schema must already be migrated (``phase4 db upgrade``).

    ``notify`` says who is told of alerts and how (default: from ``PHASE4_*`` variables)."""
    settings = settings or Settings()
    notify = notify or NotifySettings()
    owns_engine = engine is None
    engine = engine or create_db_engine(
        settings.resolved_database_url(),
        sqlite_busy_timeout_s=settings.sqlite_busy_timeout_s,
        postgres_lock_timeout_s=settings.postgres_lock_timeout_s,
    )

    worker = DetectionWorker(engine, settings.detection_interval_s, notify)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if settings.detection_interval_s > 0:
            worker.start()
        yield
        worker.stop()
        if owns_engine:
            engine.dispose()

    app = FastAPI(
        title="phase4 monitor", version="0.1.0", description=DESCRIPTION, lifespan=lifespan
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.notify = notify
    app.state.worker = worker
    registry, ingest_metrics = build_registry(engine)
    app.state.metrics_registry = registry
    app.state.ingest_metrics = ingest_metrics
    # Outermost first to run: the Allow fix, the body cap, then JSON for every failure.
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(AllowHeader, router=app.router)
    common = error_responses(*COMMON_ERRORS)
    modules = (health, records, feedback, deployments, alerts, incidents, phantoms, tokens)
    for module in modules:
        app.include_router(module.router, responses=common)
    app.include_router(ui.router)

    @app.get(
        "/metrics",
        tags=["health"],
        summary="Prometheus exposition (no token: it holds no identifiers)",
        response_class=Response,
        responses={
            200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"},
            **error_responses(500, 503),
        },
    )
    def metrics() -> Response:
        # The store's families written directly, then the in-process metrics: the same text
        # as generate_latest(registry), several times faster (docs/METRICS.md, Cost).
        return Response(registry.exposition(), media_type=CONTENT_TYPE_LATEST)

    return app
