"""Browser sign-in for the dashboard: the API token in a cookie, and CSRF protection.

- ``POST /ui/login`` takes the same bearer token as the API and, if it is valid, sets it as the
  cookie ``p4_ui`` (``HttpOnly``: page scripts cannot read it; ``SameSite=Strict``: the browser
  does not send it with requests started by another site; ``Path=/ui``; ``Secure`` when the
  request came over HTTPS). The token itself is in the cookie: on a hospital LAN behind TLS this
  is no weaker than the bearer header the API takes, and the token is checked on every page:
  revoking it, or its expiry, ends the session at the next request.
- Every state-changing form carries a CSRF token derived from the session's token
  (SHA-256 of a fixed label and the token: a page of another site can neither read nor compute
  it), and every POST must come from this origin (``Origin``, else ``Referer``, must match the
  ``Host`` the request was sent to). With ``SameSite=Strict`` that is three locks on one door.
- Probe tokens cannot sign in: they are machine credentials.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import Request
from sqlmodel import Session

from phase4.monitor.store.auth import Principal, Role, authenticate, note_use

COOKIE = "p4_ui"
COOKIE_PATH = "/ui"
COOKIE_MAX_AGE_S = 12 * 3600
CSRF_FIELD = "csrf_token"
MAX_FORM_BYTES = 16_384


class UiError(Exception):
    """A page cannot be shown: rendered as an HTML error page with this status."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


class LoginRequired(UiError):
    """No valid session: the browser is sent to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(401, "sign in first")
        self.next_path = next_path


def csrf_token(raw_token: str) -> str:
    return hashlib.sha256(f"phase4-ui-csrf:{raw_token}".encode()).hexdigest()


def login_url(next_path: str) -> str:
    return f"/ui/login?next={quote(next_path, safe='/')}"


def safe_next(value: str | None) -> str:
    """Only a path inside the dashboard (never another host) is a place to go after sign-in."""
    if not value or not value.startswith("/ui") or value.startswith("//") or "\\" in value:
        return "/ui"
    return value


def current_path(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def session_token(request: Request) -> str | None:
    return request.cookies.get(COOKIE) or None


def principal_from_cookie(session: Session, request: Request) -> Principal:
    """The signed-in principal, or ``LoginRequired``."""
    raw = session_token(request)
    principal = authenticate(session, raw) if raw else None
    if principal is None or principal.role is Role.PROBE:
        raise LoginRequired(current_path(request))
    note_use(request.app.state.engine, principal)
    return principal


def same_origin(request: Request) -> bool:
    """The POST came from a page of this server (Origin, else Referer, names our host)."""
    host = request.headers.get("host", "")
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        referer = request.headers.get("referer")
        if not referer:
            return False
        origin = referer
    parts = urlsplit(origin)
    return bool(host) and parts.netloc == host and parts.scheme in ("http", "https")


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (the only kind these forms send)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        return {}
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise UiError(413, "form too large")
    parsed = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items() if v}


def check_csrf(request: Request, form: dict[str, str]) -> None:
    """Refuse a state-changing POST that did not come from one of our own forms."""
    if not same_origin(request):
        raise UiError(403, "this form must be sent from the dashboard itself (origin mismatch)")
    raw = session_token(request)
    sent = form.get(CSRF_FIELD, "")
    if not raw or not hmac.compare_digest(sent, csrf_token(raw)):
        raise UiError(403, "the form's CSRF token is missing or wrong: reload the page")
