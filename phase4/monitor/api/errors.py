"""One JSON error shape for every failure: {"error": {"code", "message", "details"}}.

Domain errors (``ApiError``), refused actions (``ActionRefused``, raised by the domain
wherever a route calls it: 404, 409 or 422 as the refusal says), request validation, HTTP
errors (404, 405, 413) and the body parser's failures are answered by exception handlers, so
routes let them rise instead of wrapping them. A request validation error's message names
each field as ``monitoring.streams[2].kind: ...`` (``phase4.monitor.core.problems``).

Anything else reaches ``JsonFailures``, a pure ASGI middleware just inside Starlette's own
error middleware, so that no failure is ever a plain-text 500 and no traceback with values
reaches the server's log:

- a busy or unreachable database (SQLite 'database is locked', PostgreSQL lock timeouts,
  serialisation failures, refused connections, an exhausted pool) is **503**
  ``database_unavailable`` with ``Retry-After``: the request may be sent again as it is;
- anything unforeseen is **500** ``internal_error`` with an opaque error id, logged with the
  traceback's frames and exception types but never exception messages, which may carry the
  values of a record (SQL parameters, a pydantic input).
"""

from __future__ import annotations

import logging
import secrets
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from phase4.monitor.core.problems import problem
from phase4.monitor.core.refusals import ActionRefused
from phase4.monitor.domain.schemas import ErrorResponse

log = logging.getLogger("phase4.monitor.api")

# Seconds a client should wait before re-sending a request refused with 503 (a lock held by a
# detection pass or another writer is released within seconds).
RETRY_AFTER_S = 5


class ApiError(Exception):
    def __init__(
        self, status_code: int, code: str, message: str, headers: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.headers = headers


class BodyTooLarge(StarletteHTTPException):
    """The request body passed PHASE4_MAX_BODY_BYTES while it was being read."""

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(
            413,
            f"request body: more than {limit_bytes} bytes (PHASE4_MAX_BODY_BYTES); "
            "send smaller batches",
        )


def error_body(
    code: str, message: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


_body = error_body

_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "batch_too_large",
}


def is_database_busy(exc: BaseException) -> bool:
    """Whether the database refused for now (locked, timed out, unreachable), not for good."""
    if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError | sa.exc.TimeoutError):
        return True
    return isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated


def database_unavailable() -> JSONResponse:
    return JSONResponse(
        _body(
            "database_unavailable",
            "the database is busy or unreachable; nothing was stored by this request: "
            f"send it again after {RETRY_AFTER_S} s",
        ),
        503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _frames(tb: TracebackType | None) -> list[str]:
    lines = []
    while tb is not None:
        code = tb.tb_frame.f_code
        lines.append(f"  {code.co_filename}:{tb.tb_lineno} in {code.co_name}")
        tb = tb.tb_next
    return lines


def safe_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` and its causes: types, files, lines and functions; no messages
    (they may hold a record's values), only the SQL text of a failed statement."""
    parts = []
    for link in reversed(_chain(exc)):
        name = f"{type(link).__module__}.{type(link).__qualname__}"
        parts.append(f"{name} (message withheld: it may hold request values)")
        if isinstance(link, sa.exc.StatementError) and link.statement:
            parts.append(f"  SQL: {' '.join(str(link.statement).split())[:500]}")
        parts.extend(_frames(link.__traceback__))
    return "\n".join(parts)


class JsonFailures:
    """Answer any exception the app lets through as JSON 503 or 500 (see the module doc)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracked)
        except Exception as exc:  # the last boundary: every failure becomes JSON
            where = f"{scope.get('method', '?')} {scope.get('path', '?')}"
            if is_database_busy(exc):
                log.warning("database_unavailable on %s: %s", where, type(exc).__name__)
                response = database_unavailable()
            else:
                error_id = secrets.token_hex(8)
                log.error("internal_error %s on %s\n%s", error_id, where, safe_traceback(exc))
                response = JSONResponse(
                    _body(
                        "internal_error",
                        f"unexpected failure; quote error id {error_id} to the operator "
                        "(the server log has the details)",
                    ),
                    500,
                )
            if not started:
                await response(scope, receive, send)


def _parse_failure(exc: StarletteHTTPException) -> str | None:
    """The message for FastAPI's 'There was an error parsing the body', by its cause."""
    cause = exc.__cause__
    if isinstance(cause, RecursionError):
        return "request body: JSON nested too deeply to parse (see PHASE4_MAX_JSON_DEPTH)"
    if isinstance(cause, UnicodeDecodeError):
        return "request body: not UTF-8 text"
    if isinstance(cause, ValueError):  # e.g. an integer of more than 4300 digits
        return f"request body: not JSON this API can read ({str(cause).split(';')[0][:200]})"
    return None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(_body(exc.code, exc.message), exc.status_code, headers=exc.headers)

    @app.exception_handler(ActionRefused)
    async def _refused(_: Request, exc: ActionRefused) -> JSONResponse:
        error = refused(exc)
        return JSONResponse(_body(error.code, error.message), error.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        details = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in errors]
        summary = "; ".join(problem(e, _field_loc(e.get("loc", ()))) for e in errors[:5])
        return JSONResponse(_body("invalid_request", summary or "invalid request", details), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = str(exc.detail)
        if isinstance(exc, BodyTooLarge):
            code = "body_too_large"
        elif exc.status_code == 400:
            message = _parse_failure(exc) or message
        return JSONResponse(_body(code, message), exc.status_code, headers=exc.headers)

    app.add_middleware(JsonFailures)


def _field_loc(loc: Any) -> list[Any]:
    """A body field's location as the client wrote it (without FastAPI's leading "body");
    query, path and header locations keep theirs."""
    parts = list(loc)
    return parts[1:] if parts[:1] == ["body"] and len(parts) > 1 else parts


def refused(exc: ActionRefused) -> ApiError:
    """The API error for a refused domain action (404 not_found, 409 conflict, 422 invalid)."""
    code = {404: "not_found", 409: "conflict"}.get(exc.status_code, "invalid_request")
    return ApiError(exc.status_code, code, str(exc))


_TEXT = {
    400: "The body is not JSON this API can read (nested too deeply, not UTF-8...)",
    401: "Missing or invalid bearer token",
    403: "The token's role or site does not allow this",
    404: "Not found",
    405: "Method not allowed (the Allow header lists the path's methods)",
    409: "The action does not fit the current state",
    413: "Body over PHASE4_MAX_BODY_BYTES, or too many items in one batch",
    422: "The request is malformed",
    500: "Unexpected failure: the message has an error id for the operator",
    503: "The database is busy or unreachable: send the request again after Retry-After",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error responses a route can give."""
    out: dict[int | str, dict[str, Any]] = {}
    for c in codes:
        out[c] = {"model": ErrorResponse, "description": _TEXT[c]}
        if c == 503:
            out[c]["headers"] = {
                "Retry-After": {
                    "description": "Seconds to wait before sending the request again",
                    "schema": {"type": "integer"},
                }
            }
    return out


# What every route can answer, whoever owns it (app.include_router(..., responses=...)).
COMMON_ERRORS = (400, 413, 422, 500, 503)
