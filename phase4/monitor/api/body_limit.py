"""A cap on request bodies, enforced while the body is read (RFC 9110 §15.5.14, 413).

A ``Content-Length`` over the limit is refused before a byte of the body is read; a chunked body
(no length) is counted as it arrives and cut as soon as it passes the limit. Either way the
answer is the JSON error ``body_too_large`` and nothing is stored. Starlette's own
``RequestBodyLimitMiddleware`` answers in plain text, hence this one.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from phase4.monitor.api.errors import BodyTooLarge, error_body


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            if not declared.isdigit():
                await JSONResponse(
                    error_body("invalid_request", "Content-Length: not a number of bytes"), 400
                )(scope, receive, send)
                return
            if int(declared) > self.max_body_bytes:
                await JSONResponse(
                    error_body("body_too_large", BodyTooLarge(self.max_body_bytes).detail),
                    413,
                    headers={"Connection": "close"},
                )(scope, receive, send)
                return
        received = 0

        async def receive_counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        await self.app(scope, receive_counted, send)
