"""GET /healthz: the process is up and the database answers."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from phase4.monitor.api.errors import database_unavailable, error_responses
from phase4.monitor.domain.schemas import Health
from phase4.monitor.store.db import current_revision

router = APIRouter(tags=["health"])
log = logging.getLogger("phase4.monitor.api")


@router.get(
    "/healthz",
    response_model=Health,
    summary="Liveness and database check (no token needed)",
    responses=error_responses(503),
)
def healthz(request: Request) -> Health | JSONResponse:
    engine = request.app.state.engine
    try:
        revision = current_revision(engine)
    except Exception as exc:  # any driver error means "not healthy"; the type says which
        log.warning("healthz: the database does not answer (%s)", type(exc).__name__)
        return database_unavailable()
    return Health(status="ok", database=engine.dialect.name, schema_revision=revision)
