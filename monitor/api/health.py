"""GET /healthz: the process is up and the database answers."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from monitor.db import current_revision
from monitor.schemas import ErrorResponse, Health

router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    response_model=Health,
    summary="Liveness and database check (no token needed)",
    responses={503: {"model": ErrorResponse, "description": "The database does not answer"}},
)
def healthz(request: Request) -> Health | JSONResponse:
    engine = request.app.state.engine
    try:
        revision = current_revision(engine)
    except Exception as exc:  # any driver error means "not healthy"; say which
        return JSONResponse(
            {
                "error": {
                    "code": "database_unavailable",
                    "message": f"{type(exc).__name__}: {exc}",
                    "details": None,
                }
            },
            503,
        )
    return Health(status="ok", database=engine.dialect.name, schema_revision=revision)
