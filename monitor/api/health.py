"""GET /healthz: the process is up and the database answers."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from monitor.api.errors import database_unavailable, error_responses
from monitor.db import current_revision
from monitor.schemas import Health

router = APIRouter(tags=["health"])
log = logging.getLogger("monitor.api")


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
