"""405 answers with the right ``Allow`` header (RFC 9110 §15.5.6), OPTIONS included.

Starlette answers a method a path does not have with the methods of the *first* route matching
the path: ``/v1/records`` is two routes (GET and POST), so a DELETE there would be told
``Allow: POST``. This middleware rewrites the header of every 405 with the methods of all the
path's routes. OPTIONS is answered the same way (405 with ``Allow``): the monitor serves probes
and its own same-origin dashboard, never another origin's scripts, so it has no CORS preflight.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def allowed_methods(routes: list[BaseRoute], scope: Scope) -> list[str]:
    """Every method some route of ``scope``'s path answers (asked of the routes themselves, so
    included routers count too)."""
    return [
        method
        for method in METHODS
        if any(route.matches({**scope, "method": method})[0] is Match.FULL for route in routes)
    ]


class AllowHeader:
    def __init__(self, app: ASGIApp, router: Router) -> None:
        self.app = app
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_fixed(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                allow = ", ".join(allowed_methods(self.router.routes, scope)).encode()
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                message = {**message, "headers": [*headers, (b"allow", allow)]}
            await send(message)

        await self.app(scope, receive, send_fixed)
