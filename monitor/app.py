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
from monitor.api.errors import install_error_handlers
from monitor.db import create_db_engine
from monitor.metrics import build_registry
from monitor.settings import Settings
from monitor.worker import DetectionWorker

DESCRIPTION = """
phase4 monitor: ingest of what deployed nuclear-medicine AI sees and says, and what the
surveillance found. Every `/v1` endpoint needs `Authorization: Bearer <token>`
(`phase4 token create`). Errors always have the shape `{"error": {"code", "message", "details"}}`.
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
    engine = engine or create_db_engine(settings.resolved_database_url())

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
    install_error_handlers(app)
    for module in (health, records, feedback, deployments, alerts, incidents, phantoms, tokens):
        app.include_router(module.router)
    app.include_router(ui.router)

    @app.get(
        "/metrics",
        tags=["health"],
        summary="Prometheus exposition (no token: it holds no identifiers)",
        response_class=Response,
        responses={
            200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}
        },
    )
    def metrics() -> Response:
        # The store's families written directly, then the in-process metrics: the same text
        # as generate_latest(registry), several times faster (docs/METRICS.md, Cost).
        return Response(registry.exposition(), media_type=CONTENT_TYPE_LATEST)

    return app
