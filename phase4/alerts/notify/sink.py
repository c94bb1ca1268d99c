"""A real SMTP server on 127.0.0.1 that keeps what it receives: for tests and the demo.

``aiosmtpd``'s Controller runs the server in a thread; messages are parsed (``email.policy.
default``) and kept in memory, and written as ``.eml`` files to a folder if one is given::

    with LocalSMTPSink(folder=Path("phase4-data/mail")) as sink:
        settings = NotifySettings(**sink.settings(), recipients=["physicist@example.org"])
        notify_pending(engine, settings)
        print(sink.messages[0].subject)

Options for testing delivery: ``refuse_first`` answers the first N messages with
``451 4.3.0 try again later``; ``tls_context`` offers STARTTLS (``require_starttls`` insists on
it); ``logins`` ({user: password}) turns on AUTH PLAIN/LOGIN and requires it.
"""

from __future__ import annotations

import email
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass(frozen=True)
class SinkMessage:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    raw: bytes

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    def part(self, subtype: str) -> str:
        """The ``text/<subtype>`` body ('plain' or 'html'), decoded."""
        body = self.message.get_body(preferencelist=(subtype,))
        if body is None or body.get_content_subtype() != subtype:
            return ""
        return str(body.get_content())  # type: ignore[attr-defined]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class _Handler:
    def __init__(self, sink: LocalSMTPSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return self.sink._receive(envelope)


class LocalSMTPSink:
    """SMTP on ``127.0.0.1:<free port>``, collecting messages; a context manager."""

    def __init__(
        self,
        folder: Path | None = None,
        *,
        host: str = "127.0.0.1",
        refuse_first: int = 0,
        tls_context: ssl.SSLContext | None = None,
        require_starttls: bool = False,
        logins: dict[str, str] | None = None,
    ) -> None:
        self.folder = folder
        self.host = host
        self.refuse_remaining = refuse_first
        self.refused = 0
        self.tls_context = tls_context
        self.require_starttls = require_starttls
        self.logins = dict(logins or {})
        self.messages: list[SinkMessage] = []
        self.auth_failures = 0
        self._lock = threading.Lock()
        self._controller: Controller | None = None
        self.port = 0

    # --- server side ---------------------------------------------------------------------

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword):
            user = data.login.decode("utf-8", "replace")
            if self.logins.get(user) == data.password.decode("utf-8", "replace"):
                return AuthResult(success=True, auth_data=user)
        with self._lock:
            self.auth_failures += 1
        return AuthResult(success=False, handled=False)

    def _receive(self, envelope: Envelope) -> str:
        with self._lock:
            if self.refuse_remaining > 0:
                self.refuse_remaining -= 1
                self.refused += 1
                return "451 4.3.0 try again later"
        raw = envelope.original_content or b""
        if isinstance(envelope.content, bytes) and not raw:
            raw = envelope.content
        parsed = email.message_from_bytes(raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        item = SinkMessage(
            mail_from=str(envelope.mail_from or ""),
            rcpt_tos=tuple(envelope.rcpt_tos),
            message=parsed,
            raw=raw,
        )
        with self._lock:
            self.messages.append(item)
            n = len(self.messages)
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / f"{time.strftime('%Y%m%dT%H%M%S')}-{n:04d}.eml").write_bytes(raw)
        return "250 2.0.0 OK"

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> LocalSMTPSink:
        kwargs: dict[str, Any] = {}
        if self.tls_context is not None:
            kwargs["tls_context"] = self.tls_context
            kwargs["require_starttls"] = self.require_starttls
        if self.logins:
            kwargs["authenticator"] = self._authenticate
            kwargs["auth_required"] = True
            kwargs["auth_require_tls"] = self.tls_context is not None
        last: Exception | None = None
        for _ in range(5):  # another process may take the free port between probe and bind
            port = free_port(self.host)
            controller = Controller(
                _Handler(self), hostname=self.host, port=port, ready_timeout=10.0, **kwargs
            )
            try:
                controller.start()
            except (OSError, RuntimeError) as exc:
                last = exc
                continue
            self._controller, self.port = controller, port
            return self
        raise RuntimeError(f"could not start the SMTP sink: {last}")

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> LocalSMTPSink:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- client side ---------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        """``NotifySettings`` fields that point at this sink."""
        return {"smtp_host": self.host, "smtp_port": self.port}

    def wait_for(self, count: int, timeout_s: float = 5.0) -> list[SinkMessage]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.02)
        with self._lock:
            return list(self.messages)
