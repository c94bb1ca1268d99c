"""Email over SMTP (stdlib ``smtplib``): plain, STARTTLS or implicit TLS, optional AUTH.

One call sends one message to one recipient and either returns or raises
:class:`DeliveryError` with a detail fit for the attempts table (no password, bounded length).
Retries, backoff and the record of each attempt are the dispatcher's.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from phase4.alerts.config import NotifySettings
from phase4.alerts.notify.render import Rendered

# Server answers that every message would get (as opposed to "try this one later").
_CHANNEL_ERRORS = (
    smtplib.SMTPAuthenticationError,
    smtplib.SMTPConnectError,
    smtplib.SMTPHeloError,
    smtplib.SMTPSenderRefused,
)


class DeliveryError(RuntimeError):
    """A delivery attempt failed; ``str(exc)`` is safe to store and show.

    ``channel_down``: the failure is the channel's, not this message's (cannot connect, TLS or
    AUTH failed, the server hung up): other messages on the channel would fail the same way.
    """

    def __init__(self, detail: str, *, channel_down: bool = False) -> None:
        super().__init__(detail)
        self.channel_down = channel_down


def scrub(detail: str, settings: NotifySettings, limit: int = 500) -> str:
    """An error detail without secrets, on one line, bounded."""
    for secret in (settings.smtp_password, settings.webhook_secret):
        value = secret.get_secret_value() if secret is not None else ""
        if value:
            detail = detail.replace(value, "***")
    detail = " ".join(detail.split())
    return detail if len(detail) <= limit else detail[: limit - 1] + "…"


def build_message(
    settings: NotifySettings,
    rendered: Rendered,
    to: str,
    *,
    alert_ids: list[int] | None = None,
    purpose: str = "opened",
) -> EmailMessage:
    """multipart/alternative: the text part first, the HTML part preferred by mail readers."""
    msg = EmailMessage()
    msg["Subject"] = rendered.subject
    msg["From"] = settings.mail_from
    msg["To"] = to
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    domain = settings.mail_from.rpartition("@")[2] or "localhost"
    msg["Message-ID"] = make_msgid("phase4", domain=domain)
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Phase4-Purpose"] = purpose
    if alert_ids:
        msg["X-Phase4-Alert-Ids"] = ",".join(str(i) for i in alert_ids)
    msg.set_content(rendered.text)
    msg.add_alternative(rendered.html, subtype="html")
    return msg


def tls_context(settings: NotifySettings) -> ssl.SSLContext:
    """Verifying context: the system's CAs, or only ``smtp_ca_file`` when it is set."""
    if settings.smtp_ca_file is not None:
        return ssl.create_default_context(cafile=str(settings.smtp_ca_file))
    return ssl.create_default_context()


def send_email(settings: NotifySettings, msg: EmailMessage, to: str) -> str:
    """Send ``msg`` to ``to``; return the server's acceptance as a short detail."""
    if not settings.smtp_host:
        raise DeliveryError("email channel off: no smtp_host")
    host, port, timeout = settings.smtp_host, settings.smtp_port, settings.smtp_timeout_s
    try:
        smtp: smtplib.SMTP
        if settings.smtp_ssl:
            smtp = smtplib.SMTP_SSL(host, port, timeout=timeout, context=tls_context(settings))
        else:
            smtp = smtplib.SMTP(host, port, timeout=timeout)
        with smtp:
            smtp.ehlo()
            if settings.smtp_starttls:
                smtp.starttls(context=tls_context(settings))
                smtp.ehlo()
            if settings.smtp_username:
                password = settings.smtp_password
                smtp.login(settings.smtp_username, password.get_secret_value() if password else "")
            refused = smtp.send_message(msg, from_addr=settings.mail_from, to_addrs=[to])
        if refused:
            code, reply = next(iter(refused.values()))
            raise DeliveryError(scrub(f"recipient refused: {code} {reply!r}", settings))
    except DeliveryError:
        raise
    except smtplib.SMTPResponseException as exc:
        error = exc.smtp_error
        text = error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error)
        raise DeliveryError(
            scrub(f"{type(exc).__name__}: {exc.smtp_code} {text}", settings),
            channel_down=isinstance(exc, _CHANNEL_ERRORS),
        ) from exc
    except smtplib.SMTPRecipientsRefused as exc:
        raise DeliveryError(scrub(f"recipient refused: {exc.recipients!r}", settings)) from exc
    except (TimeoutError, smtplib.SMTPException, OSError, ssl.SSLError) as exc:
        raise DeliveryError(
            scrub(f"{type(exc).__name__}: {exc}", settings), channel_down=True
        ) from exc
    return f"accepted by {host}:{port}"
