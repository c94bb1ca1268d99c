"""Dependencies: the database session and the calling principal (as in the FastAPI template).

Who may call a route is decided by ``phase4.monitor.api.authz``'s table, looked up by the matched
route's
method and path template: ``authorize`` applies its role part to every route that asks for a
principal, and ``Access.require_site`` its site part where a route has loaded its object."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import BackgroundTasks, Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.engine import Engine
from sqlmodel import Session

from phase4.monitor.api.authz import NoRule, Rule, SiteRule, rule_for
from phase4.monitor.api.errors import ApiError
from phase4.monitor.core.settings import Settings
from phase4.monitor.store.auth import Principal, TokenRefused, check_token, note_use

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
    """The request's session. Whatever a route raises (a refused action, a validation error)
    rolls back what it had written and releases its row locks before the error is answered,
    so routes need not catch anything to roll back."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
        except Exception:
            session.rollback()
            raise


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


def _rule(request: Request) -> Rule:
    route = request.scope.get("route")
    try:
        return rule_for(request.method, getattr(route, "path", ""))
    except NoRule as exc:  # fail closed: a route nobody gave a rule serves nobody
        raise ApiError(403, "forbidden", str(exc)) from exc


def authorize(
    request: Request, principal: Annotated[Principal, Depends(get_principal)]
) -> Principal:
    """The caller, if the table lets its role call this route (else 403)."""
    rule = _rule(request)
    if not rule.allows_role(principal):
        allowed = ", ".join(sorted(r.value for r in rule.roles or ()))
        raise ApiError(
            403,
            "forbidden",
            f"token {principal.name!r} has role {principal.role.value}; this needs {allowed}",
        )
    return principal


_VERBS = {SiteRule.READ: "read", SiteRule.WRITE: "write for", SiteRule.REVIEW: "review"}


@dataclass(frozen=True)
class Access:
    """The caller and the route's rule: checks an object's site when the route has loaded it."""

    principal: Principal
    rule: Rule

    def require_site(self, site_id: str | None, what: str) -> None:
        """403 unless the rule lets this caller act on ``what`` (e.g. 'alerts') of the site."""
        if not self.rule.allows_site(self.principal, site_id):
            verb = _VERBS.get(self.rule.site, "use")
            raise ApiError(
                403,
                "forbidden",
                f"token {self.principal.name!r} may not {verb} {what} of site {site_id!r}",
            )

    def sees(self, site_id: str | None) -> bool:
        """Whether a list shows an item of this site to the caller."""
        return self.principal.can_read_site(site_id)


def access(request: Request, principal: Annotated[Principal, Depends(authorize)]) -> Access:
    return Access(principal, _rule(request))


Authorized = Annotated[Principal, Depends(authorize)]
Caller = Annotated[Access, Depends(access)]
# The names the ingest routes (records, feedback) use: the table decides who passes, whatever
# the name says.
Reader = Writer = Authorized
