"""Bearer tokens and roles.

- ``probe``: writes records and feedback for deployments of its own site; reads its site.
- ``viewer``: reads everything, writes nothing.
- ``reviewer``: a named person (medical physicist, physician, surveillance staff): reads, and
  acknowledges and resolves alerts, signs off phantom QC, records incidents — of its own site
  when the token names one, of every site otherwise. The token's name is the person's name in
  the audit trail, so give each person their own token.
- ``admin``: everything, including creating deployments.

A token is ``p4_`` + 256 random bits; only its SHA-256 is stored (a slow password hash buys
nothing for a secret of that entropy), and the secret is printed once at creation.

A token may carry an expiry (``expires_at``): from that instant it is refused ("token expired"),
as a revoked one is ("token revoked"). Creation and revocation are audited; listing shows
names, roles, sites and dates, never a secret or its hash. The time of last use is kept to the
minute (``LAST_USED_RESOLUTION_S``): writing it on every request would turn every read into a
write, and a minute is enough to tell a token in use from a forgotten one (NIST SP 800-63B
§7.1 asks that unused authenticators be found and revoked; NIST SP 800-53 AC-2(3) disables
accounts after a period of inactivity).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from phase4.monitor.core.refusals import ActionRefused
from phase4.monitor.core.roles import Role
from phase4.monitor.store.audit import record_action
from phase4.monitor.store.models import ApiToken, Site, utcnow

TOKEN_PREFIX = "p4_"
LAST_USED_RESOLUTION_S = 60.0
NAME_MAX_CHARS = 200
log = logging.getLogger("phase4.auth")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's name, role and (for probes) site."""

    name: str
    role: Role
    site_id: str | None
    token_id: int | None = None
    last_used_at: datetime | None = None

    @property
    def actor(self) -> str:
        return f"token:{self.name}"

    def can_write_site(self, site_id: str | None) -> bool:
        if self.role is Role.ADMIN:
            return True
        return self.role is Role.PROBE and self.site_id == site_id

    def can_read_site(self, site_id: str | None) -> bool:
        """May read this site's objects (None: an object of no site, for every-site tokens)."""
        if self.role in (Role.ADMIN, Role.VIEWER):
            return True
        if self.role is Role.REVIEWER and self.site_id is None:
            return True
        return self.site_id == site_id

    def can_review_site(self, site_id: str | None) -> bool:
        """May acknowledge and resolve alerts, sign off QC, record incidents of this site."""
        if self.role is Role.ADMIN:
            return True
        return self.role is Role.REVIEWER and (self.site_id is None or self.site_id == site_id)


class TokenError(ActionRefused):
    """A token cannot be created or revoked as asked (the message says why; 404/409/422)."""


class TokenRefused(Exception):
    """A presented secret is not accepted: unknown, revoked or expired (the message says which)."""


@dataclass(frozen=True)
class TokenInfo:
    """What may be shown of a token: never its secret nor the secret's hash."""

    id: int
    name: str
    role: str
    site_id: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def of(cls, t: ApiToken) -> TokenInfo:
        return cls(
            id=t.id or 0,
            name=t.name,
            role=t.role,
            site_id=t.site_id,
            created_at=t.created_at,
            expires_at=t.expires_at,
            revoked_at=t.revoked_at,
            last_used_at=t.last_used_at,
        )

    def state(self, now: datetime) -> str:
        """``active``, ``revoked`` or ``expired``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


def token_digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def _audit_view(t: ApiToken) -> dict[str, object]:
    return {
        "name": t.name,
        "role": t.role,
        "site_id": t.site_id,
        "expires_at": t.expires_at,
        "revoked_at": t.revoked_at,
    }


def create_token(
    session: Session,
    *,
    name: str,
    role: Role | str,
    site_id: str | None,
    actor: str = "cli",
    expires_at: datetime | None = None,
) -> str:
    """Store a new token's hash and return the secret (the only time it is seen)."""
    raw, _ = issue_token(
        session, name=name, role=role, site_id=site_id, actor=actor, expires_at=expires_at
    )
    return raw


def issue_token(
    session: Session,
    *,
    name: str,
    role: Role | str,
    site_id: str | None,
    actor: str,
    expires_at: datetime | None = None,
) -> tuple[str, TokenInfo]:
    """As ``create_token``, and what may be shown of the new token."""
    try:
        role = Role(role)
    except ValueError as exc:
        roles = ", ".join(r.value for r in Role)
        raise TokenError(f"role {role!r} is not one of {roles}") from exc
    name = name.strip()
    if not name or len(name) > NAME_MAX_CHARS:
        raise TokenError(f"name: give 1 to {NAME_MAX_CHARS} characters (who holds the token)")
    if name.isdigit():
        raise TokenError(f"name {name!r} is a number: 'token revoke' takes ids as numbers")
    if role is Role.PROBE and not site_id:
        raise TokenError("a probe token needs --site: a probe writes only for its own site")
    if site_id is not None and session.get(Site, site_id) is None:
        raise TokenError(f"unknown site {site_id!r}: create a deployment at that site first")
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise TokenError("expires_at needs a time zone, e.g. 2027-01-01T00:00:00Z")
        if expires_at <= utcnow():
            raise TokenError(f"expires_at {expires_at.isoformat()} is not in the future")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        name=name,
        role=role.value,
        site_id=site_id,
        token_sha256=token_digest(raw),
        expires_at=expires_at,
    )
    session.add(token)
    session.flush()
    record_action(
        session,
        actor=actor,
        action="token.create",
        entity_type="api_token",
        entity_id=str(token.id),
        new_value=_audit_view(token),
    )
    return raw, TokenInfo.of(token)


MAX_EXPIRY_DAYS = 3650


def token_expiry(
    *, expires_in_days: int | None = None, expires_at: str | datetime | None = None
) -> datetime | None:
    """The expiry asked for: in so many days, or at an ISO 8601 time with a zone (not both)."""
    if expires_in_days is not None and expires_at is not None:
        raise TokenError("give an expiry in days or an expiry time, not both")
    if expires_in_days is not None:
        if not 1 <= expires_in_days <= MAX_EXPIRY_DAYS:
            raise TokenError(f"expires in {expires_in_days} days: give 1 to {MAX_EXPIRY_DAYS}")
        return utcnow() + timedelta(days=expires_in_days)
    if isinstance(expires_at, str):
        try:
            expires_at = datetime.fromisoformat(expires_at)
        except ValueError as exc:
            raise TokenError(f"expires at {expires_at!r}: not an ISO 8601 time") from exc
    if expires_at is not None and expires_at.tzinfo is None:
        raise TokenError("expires_at needs a time zone, e.g. 2027-01-01T00:00:00Z")
    return expires_at


def list_tokens(session: Session) -> list[TokenInfo]:
    """Every token, oldest first, revoked and expired ones included."""
    return [TokenInfo.of(t) for t in session.exec(select(ApiToken).order_by(col(ApiToken.id)))]


def find_token(session: Session, ref: str | int) -> ApiToken:
    """The token with this id (a number) or, else, the one unrevoked token of this name."""
    if isinstance(ref, int) or ref.strip().isdigit():
        token_id = int(ref)
        token = session.get(ApiToken, token_id) if 1 <= token_id < 2**31 else None
        if token is None:
            raise TokenError(f"no token with id {token_id}", status_code=404)
        return token
    name = ref.strip()
    named = list(session.exec(select(ApiToken).where(ApiToken.name == name)))
    if not named:
        raise TokenError(f"no token named {name!r}", status_code=404)
    live = [t for t in named if t.revoked_at is None]
    if len(live) > 1:
        ids = ", ".join(str(t.id) for t in live)
        raise TokenError(f"{len(live)} tokens are named {name!r} (ids {ids}): give the id")
    return live[0] if live else named[-1]


def revoke_token(session: Session, ref: str | int, *, reason: str, actor: str) -> TokenInfo:
    """Revoke a token by id or name, with a reason (audited). It is refused from now on."""
    reason = (reason or "").strip()
    if not reason:
        raise TokenError("a reason is required: say why the token is revoked")
    token = find_token(session, ref)
    if token.revoked_at is not None:
        raise TokenError(
            f"token {token.id} ({token.name!r}) was already revoked at "
            f"{token.revoked_at.isoformat()}",
            status_code=409,
        )
    old = _audit_view(token)
    token.revoked_at = utcnow()
    session.add(token)
    record_action(
        session,
        actor=actor,
        action="token.revoke",
        entity_type="api_token",
        entity_id=str(token.id),
        reason=reason,
        old_value=old,
        new_value=_audit_view(token),
    )
    return TokenInfo.of(token)


def check_token(session: Session, raw: str) -> Principal:
    """The principal for a presented secret; ``TokenRefused`` says why it is not accepted."""
    if not raw.startswith(TOKEN_PREFIX):
        raise TokenRefused(f"invalid token: a phase4 token starts with {TOKEN_PREFIX!r}")
    token = session.exec(select(ApiToken).where(ApiToken.token_sha256 == token_digest(raw))).first()
    if token is None:
        raise TokenRefused("invalid token")
    if token.revoked_at is not None:
        raise TokenRefused("token revoked")
    if token.expires_at is not None and token.expires_at <= utcnow():
        raise TokenRefused("token expired")
    return Principal(
        name=token.name,
        role=Role(token.role),
        site_id=token.site_id,
        token_id=token.id,
        last_used_at=token.last_used_at,
    )


def authenticate(session: Session, raw: str) -> Principal | None:
    """The principal for a presented secret, or None if unknown, revoked or expired."""
    try:
        return check_token(session, raw)
    except TokenRefused:
        return None


def note_use(engine: Engine, principal: Principal) -> None:
    """Record that the token was used now, at most once a minute (best effort, own transaction).

    Called after the token was accepted; a busy database (SQLite's write lock held by a long
    detection pass) skips the update rather than failing or delaying the caller's request."""
    now = utcnow()
    stale = now - timedelta(seconds=LAST_USED_RESOLUTION_S)
    if principal.token_id is None or (
        principal.last_used_at is not None and principal.last_used_at > stale
    ):
        return
    table = ApiToken.__table__  # type: ignore[attr-defined]
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.update(table)
                .where(table.c.id == principal.token_id)
                .where(sa.or_(table.c.last_used_at.is_(None), table.c.last_used_at <= stale))
                .values(last_used_at=now)
            )
    except sa.exc.OperationalError as exc:  # database busy or gone: the next use retries
        log.warning("could not record the last use of token %s: %s", principal.token_id, exc)
