"""Dependencies: the database session and the calling principal (as in the FastAPI template)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import BackgroundTasks, Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.engine import Engine
from sqlmodel import Session

from monitor.api.errors import ApiError
from monitor.auth import Principal, Role, TokenRefused, check_token, note_use
from monitor.settings import Settings

# Row ids are INTEGER columns: 32-bit signed on PostgreSQL (SQLite's are 64-bit, but never get
# past what PostgreSQL can hold either). A larger id in a path, query or body is refused as
# malformed (422) before it reaches the driver, which would fail on it (a 500).
MAX_DB_ID = 2**31 - 1


def path_id(description: str) -> Any:
    """A path parameter that is a row id (1 .. 2**31-1)."""
    return Path(ge=1, le=MAX_DB_ID, description=description)


def query_id(description: str) -> Any:
    """A query parameter that is a row id (1 .. 2**31-1)."""
    return Query(ge=1, le=MAX_DB_ID, description=description)


_bearer = HTTPBearer(auto_error=False, description="A token from `phase4 token create`.")


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(engine: Annotated[Engine, Depends(get_engine)]) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_principal(
    session: SessionDep,
    engine: Annotated[Engine, Depends(get_engine)],
    background: BackgroundTasks,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller, from the bearer token (401 missing, invalid, revoked or expired).

    The token's last use is recorded after the response is sent, so it never slows a request."""
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        raise ApiError(
            401,
            "unauthorized",
            "missing bearer token: send 'Authorization: Bearer <token>'",
            challenge,
        )
    try:
        principal = check_token(session, credentials.credentials)
    except TokenRefused as exc:
        challenge = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        raise ApiError(401, "unauthorized", str(exc), challenge) from exc
    background.add_task(note_use, engine, principal)
    return principal


def require_role(*roles: Role) -> Callable[[Principal], Principal]:
    def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if principal.role not in roles:
            allowed = ", ".join(r.value for r in roles)
            raise ApiError(
                403,
                "forbidden",
                f"token {principal.name!r} has role {principal.role.value}; this needs {allowed}",
            )
        return principal

    return check


Reader = Annotated[
    Principal, Depends(require_role(Role.ADMIN, Role.VIEWER, Role.REVIEWER, Role.PROBE))
]
Reviewer = Annotated[Principal, Depends(require_role(Role.ADMIN, Role.REVIEWER))]
Writer = Annotated[Principal, Depends(require_role(Role.ADMIN, Role.PROBE))]
Admin = Annotated[Principal, Depends(require_role(Role.ADMIN))]
