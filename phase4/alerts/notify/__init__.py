"""Tell people about alerts: email (SMTP) and webhook, with retries, escalation and digests.

- :func:`phase4.alerts.notify.dispatcher.notify_pending`: one pass (what the service runs after
  detection);
- :mod:`phase4.alerts.notify.render`: an alert as subject, text and HTML;
- :class:`phase4.alerts.notify.sink.LocalSMTPSink`: a local SMTP server for tests and the demo
  (imported from its module: it needs ``aiosmtpd``).
"""

from phase4.alerts.notify.dispatcher import DispatchSummary, notify_pending

__all__ = ["DispatchSummary", "notify_pending"]
