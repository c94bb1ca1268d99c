"""API tokens for admins: list them, create one (its secret shown once), revoke one (audited).

The same operations as ``phase4 token list|create|revoke``. A listing never holds a secret or
its hash; a revoked or expired token is refused at the next request, API and dashboard alike.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from phase4.monitor.api.deps import Authorized, SessionDep, path_id
from phase4.monitor.api.errors import error_responses
from phase4.monitor.domain.schemas import UtcTime
from phase4.monitor.store.auth import (
    MAX_EXPIRY_DAYS,
    NAME_MAX_CHARS,
    Role,
    TokenInfo,
    issue_token,
    list_tokens,
    token_expiry,
)
from phase4.monitor.store.auth import revoke_token as revoke
from phase4.monitor.store.models import utcnow

router = APIRouter(prefix="/v1/tokens", tags=["tokens"])
TokenId = Annotated[int, path_id("The token's id (from GET /v1/tokens)")]


class TokenOut(BaseModel):
    id: int
    name: str
    role: str
    site_id: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None = Field(description="To the minute; None: never used.")
    state: str = Field(description="active, expired or revoked")

    @classmethod
    def of(cls, info: TokenInfo, now: datetime) -> TokenOut:
        return cls(
            id=info.id,
            name=info.name,
            role=info.role,
            site_id=info.site_id,
            created_at=info.created_at,
            expires_at=info.expires_at,
            revoked_at=info.revoked_at,
            last_used_at=info.last_used_at,
            state=info.state(now),
        )


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=NAME_MAX_CHARS, description="Who holds it.")
    role: Role
    site_id: str | None = Field(None, max_length=64, description="Required for a probe.")
    expires_at: UtcTime | None = Field(None, description="Refused from then on.")
    expires_in_days: int | None = Field(None, ge=1, le=MAX_EXPIRY_DAYS)

    def expiry(self) -> datetime | None:
        return token_expiry(expires_in_days=self.expires_in_days, expires_at=self.expires_at)


class TokenCreated(TokenOut):
    token: str = Field(description="The secret: shown this once, only its hash is kept.")


class RevokeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000, description="Why (kept in the audit).")


@router.get(
    "",
    response_model=list[TokenOut],
    summary="Every token: name, role, site, dates, state (never a secret or its hash)",
    responses=error_responses(401, 403),
)
def get_tokens(session: SessionDep, principal: Authorized) -> list[TokenOut]:
    now = utcnow()
    return [TokenOut.of(t, now) for t in list_tokens(session)]


@router.post(
    "",
    response_model=TokenCreated,
    status_code=201,
    summary="Create a token; the response holds its secret, shown this once (audited)",
    responses=error_responses(401, 403, 422),
)
def post_token(
    body: TokenCreate, response: Response, session: SessionDep, principal: Authorized
) -> TokenCreated:
    raw, info = issue_token(
        session,
        name=body.name,
        role=body.role,
        site_id=body.site_id,
        actor=principal.actor,
        expires_at=body.expiry(),
    )
    session.commit()
    response.headers["Cache-Control"] = "no-store"
    return TokenCreated(**TokenOut.of(info, utcnow()).model_dump(), token=raw)


@router.post(
    "/{token_id}/revoke",
    response_model=TokenOut,
    summary="Revoke a token with a reason: refused from the next request on (audited)",
    responses=error_responses(401, 403, 404, 409, 422),
)
def revoke_token(
    token_id: TokenId, body: RevokeIn, session: SessionDep, principal: Authorized
) -> TokenOut:
    info = revoke(session, token_id, reason=body.reason, actor=principal.actor)
    session.commit()
    return TokenOut.of(info, utcnow())
