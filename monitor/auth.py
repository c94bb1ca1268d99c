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
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from enum import StrEnum

from sqlmodel import Session, select

from monitor.audit import record_action
from monitor.models import ApiToken, Site

TOKEN_PREFIX = "p4_"


class Role(StrEnum):
    PROBE = "probe"
    VIEWER = "viewer"
    REVIEWER = "reviewer"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's name, role and (for probes) site."""

    name: str
    role: Role
    site_id: str | None

    @property
    def actor(self) -> str:
        return f"token:{self.name}"

    def can_write_site(self, site_id: str) -> bool:
        if self.role is Role.ADMIN:
            return True
        return self.role is Role.PROBE and self.site_id == site_id

    def can_read_site(self, site_id: str) -> bool:
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


class TokenError(ValueError):
    """A token cannot be created as asked (unknown site, probe without site...)."""


def token_digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def create_token(
    session: Session, *, name: str, role: Role | str, site_id: str | None, actor: str = "cli"
) -> str:
    """Store a new token's hash and return the secret (the only time it is seen)."""
    role = Role(role)
    if role is Role.PROBE and not site_id:
        raise TokenError("a probe token needs --site: a probe writes only for its own site")
    if site_id is not None and session.get(Site, site_id) is None:
        raise TokenError(f"unknown site {site_id!r}: create a deployment at that site first")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(name=name, role=role.value, site_id=site_id, token_sha256=token_digest(raw))
    session.add(token)
    session.flush()
    record_action(
        session,
        actor=actor,
        action="token.create",
        entity_type="api_token",
        entity_id=str(token.id),
        new_value={"name": name, "role": role.value, "site_id": site_id},
    )
    return raw


def authenticate(session: Session, raw: str) -> Principal | None:
    """The principal for a presented secret, or None if unknown or revoked."""
    if not raw.startswith(TOKEN_PREFIX):
        return None
    token = session.exec(select(ApiToken).where(ApiToken.token_sha256 == token_digest(raw))).first()
    if token is None or token.revoked_at is not None:
        return None
    return Principal(name=token.name, role=Role(token.role), site_id=token.site_id)
