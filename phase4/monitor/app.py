"""The monitor's FastAPI application: the API, /metrics and the web UI on one engine.

The background work (detection, phantom QC, reports, notifications) is not wired here but by
``phase4.service``, which passes it in as ``background``: the web layer imports nothing above it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy.engine import Engine

from phase4.monitor import ui
from phase4.monitor.api import (
    alerts,
    deployments,
    feedback,
    health,
    incidents,
    phantoms,
    records,
    revalidations,
    tokens,
)
from phase4.monitor.api.body_limit import BodySizeLimit
from phase4.monitor.api.errors import COMMON_ERRORS, error_responses, install_error_handlers
from phase4.monitor.api.methods import AllowHeader
from phase4.monitor.api.metrics import build_registry
from phase4.monitor.core.settings import Settings
from phase4.monitor.store.db import create_db_engine

DESCRIPTION = """
phase4 monitor: ingest of what deployed nuclear-medicine AI sees and says, and what the
surveillance found. Every `/v1` endpoint needs `Authorization: Bearer <token>`
(`phase4 token create`). Errors always have the shape `{"error": {"code", "message", "details"}}`;
every route can also answer 400 (unreadable body), 413 (body over the limit), 422, 500 (with an
error id) and 503 `database_unavailable` (with `Retry-After`). Limits: docs/API.md.
"""


class Background(Protocol):
    """Work the app starts with its lifespan and stops when it ends."""

    def start(self) -> None: ...

    def stop(self, timeout_s: float = 30.0) -> None: ...


def create_api(
    settings: Settings | None = None,
    engine: Engine | None = None,
    background: Background | None = None,
) -> FastAPI:
    """Build the app. The schema must already be migrated (``phase4 db upgrade``).

    ``background`` is started when the app starts and stopped when it stops."""
    settings = settings or Settings()
    owns_engine = engine is None
    engine = engine or create_db_engine(
        settings.resolved_database_url(),
        sqlite_busy_timeout_s=settings.sqlite_busy_timeout_s,
        postgres_lock_timeout_s=settings.postgres_lock_timeout_s,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if background is not None:
            background.start()
        yield
        if background is not None:
            background.stop()
        if owns_engine:
            engine.dispose()

    app = FastAPI(
        title="phase4 monitor", version="0.1.0", description=DESCRIPTION, lifespan=lifespan
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.background = background
    registry, ingest_metrics = build_registry(engine)
    app.state.metrics_registry = registry
    app.state.ingest_metrics = ingest_metrics
    # Outermost first to run: the Allow fix, the body cap, then JSON for every failure.
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(AllowHeader, router=app.router)
    common = error_responses(*COMMON_ERRORS)
    modules = (health, records, feedback, deployments, alerts, incidents, phantoms, tokens)
    modules += (revalidations,)
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
