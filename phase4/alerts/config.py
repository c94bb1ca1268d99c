"""Who is told about alerts, how, and when: one settings object for notification and heartbeat.

Every field can be set in the environment as ``PHASE4_<FIELD>`` (the monitor's prefix; unknown
variables are ignored by both settings objects). Lists and mappings are JSON, for example::

    PHASE4_SMTP_HOST=smtp.hospital.example
    PHASE4_SMTP_PORT=587
    PHASE4_SMTP_STARTTLS=true
    PHASE4_SMTP_USERNAME=phase4
    PHASE4_SMTP_PASSWORD=...
    PHASE4_MAIL_FROM=phase4@hospital.example
    PHASE4_RECIPIENTS='["physicist@hospital.example"]'
    PHASE4_SITE_RECIPIENTS='{"site-b": ["physicist-b@hospital.example"]}'
    PHASE4_ESCALATION_RECIPIENTS='["head-of-nm@hospital.example"]'
    PHASE4_WEBHOOK_URL=https://chat.hospital.example/hooks/phase4
    PHASE4_WEBHOOK_SECRET=...
    PHASE4_CLOSED_DAYS='["2026-12-25", "2026-12-26", "2027-01-01"]'
    PHASE4_CLINIC_TIMEZONE=Europe/Berlin
    PHASE4_PUBLIC_BASE_URL=https://phase4.hospital.example

No SMTP host: the email channel is off. No webhook URL: the webhook channel is off. Both off:
alerts are still opened and shown on the dashboard, and ``notify_pending`` says so in the log.
No usable public address (``link_base_problem``): messages carry no link, say so, and the log
says why once.
"""

from __future__ import annotations

import ipaddress
import logging
from datetime import date, tzinfo
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, Field, PrivateAttr, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from phase4.monitor.core.statuses import Severity

log = logging.getLogger("phase4.alerts")
# Linux's default ephemeral port range (net.ipv4.ip_local_port_range): ports the operating
# system hands out for a moment, never a dashboard's lasting address.
EPHEMERAL_PORTS = range(32768, 61000)
NO_PUBLIC_ADDRESS = "no public address configured"


class ClinicCalendar:
    """A site's closed days, each from local midnight to midnight in its time zone."""

    __slots__ = ("closed", "zone")

    def __init__(self, closed: frozenset[date] = frozenset(), zone: tzinfo | None = None):
        self.closed = closed
        self.zone = zone or ZoneInfo("UTC")

    def __repr__(self) -> str:
        return f"ClinicCalendar({sorted(self.closed)}, {self.zone})"


def _zone(where: str, name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"{where}: {name!r} is not an IANA time zone (for example Europe/Berlin)"
        ) from exc


class NotifySettings(BaseSettings):
    """Notification channels, recipients, escalation and the probe heartbeat."""

    model_config = SettingsConfigDict(env_prefix="PHASE4_", extra="ignore", populate_by_name=True)
    _links_warned: bool = PrivateAttr(False)

    # --- email (SMTP) ---------------------------------------------------------------------
    smtp_host: str | None = Field(
        None, description="SMTP server. Unset: the email channel is off (logged once)."
    )
    smtp_port: int = Field(25, ge=1, le=65535, description="SMTP port (25, 587 STARTTLS, 465).")
    smtp_starttls: bool = Field(
        False, description="Upgrade the connection with STARTTLS before AUTH and sending."
    )
    smtp_ssl: bool = Field(False, description="Implicit TLS from the first byte (port 465).")
    smtp_ca_file: Path | None = Field(
        None,
        description="PEM file of CA certificates to trust for STARTTLS/SSL (a hospital CA); "
        "unset: the system's trust store. The server's certificate and host name are always "
        "verified.",
    )
    smtp_username: str | None = Field(None, description="AUTH user; unset: no AUTH.")
    smtp_password: SecretStr | None = Field(None, description="AUTH password (never logged).")
    smtp_timeout_s: float = Field(10.0, gt=0, description="Socket timeout of one SMTP attempt.")
    mail_from: str = Field("phase4@localhost", description="Envelope and From: address.")

    # --- who ------------------------------------------------------------------------------
    recipients: list[str] = Field(
        default_factory=list,
        description="Who is told when an alert opens (JSON list of addresses).",
    )
    site_recipients: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Per-site override of ``recipients``: JSON mapping site id -> addresses. "
        "A site listed here gets only its own list.",
    )
    escalation_recipients: list[str] = Field(
        default_factory=list,
        description="The second contact: told when an alert stays unacknowledged too long.",
    )
    site_escalation_recipients: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Per-site override of ``escalation_recipients`` (site id -> addresses).",
    )
    min_severity: Severity = Field(
        Severity.INFO,
        description="Alerts below this severity are not sent (still on the dashboard).",
    )

    # --- escalation -----------------------------------------------------------------------
    escalate_after_s: float = Field(
        4 * 3600.0,
        gt=0,
        description="A warning alert still open (not acknowledged) this long after it opened "
        "is escalated to the second contact.",
    )
    escalate_after_critical_s: float = Field(
        3600.0, gt=0, description="The same delay for critical alerts (sooner)."
    )

    # --- webhook --------------------------------------------------------------------------
    webhook_url: str | None = Field(
        None, description="POST each alert as JSON here (http/https). Unset: channel off."
    )
    webhook_secret: SecretStr | None = Field(
        None,
        description="Shared secret: each POST carries X-Phase4-Signature: sha256=<hex HMAC-SHA256 "
        "of the raw body>.",
    )
    webhook_timeout_s: float = Field(10.0, gt=0, description="Timeout of one webhook POST.")

    # --- retries --------------------------------------------------------------------------
    max_attempts: int = Field(
        3, ge=1, le=10, description="Attempts per delivery in one dispatch pass."
    )
    retry_backoff_s: float = Field(
        2.0,
        ge=0,
        description="Wait before the 2nd attempt in a pass; doubled for each further attempt.",
    )
    retry_backoff_max_s: float = Field(30.0, ge=0, description="Longest wait between attempts.")
    retry_after_s: float = Field(
        300.0,
        ge=0,
        description="After a pass whose attempts all failed, the next pass retries no sooner "
        "than this.",
    )
    give_up_after_s: float = Field(
        24 * 3600.0,
        gt=0,
        description="Stop retrying a delivery this long after its first attempt (logged as an "
        "error; the failed attempts stay visible on the alert).",
    )
    digest_threshold: int = Field(
        5,
        ge=1,
        description="More than this many alerts of one deployment to send one recipient in one "
        "pass: one digest email instead of one email each.",
    )

    # --- links ----------------------------------------------------------------------------
    public_base_url: str | None = Field(
        None,
        validation_alias=AliasChoices("PHASE4_PUBLIC_BASE_URL", "PHASE4_DASHBOARD_BASE_URL"),
        description="The address people open the dashboard at (e.g. "
        "https://phase4.hospital.example): links in messages are <base>/ui/alerts/<id> and "
        "<base>/v1/alerts/<id>/report. Unset, on an ephemeral port, or naming this machine only "
        "(without allow_local_links): messages carry no link and say so. "
        "PHASE4_DASHBOARD_BASE_URL is its older name.",
    )
    allow_local_links: bool = Field(
        False,
        description="Accept a public_base_url on localhost/127.0.0.1/::1: the people who read "
        "the messages open the dashboard on this machine (a single-machine install, the demo "
        "on a fixed port).",
    )

    # --- probe heartbeat ------------------------------------------------------------------
    heartbeat_enabled: bool = Field(True, description="Open probe-silence alerts at all.")
    heartbeat_lookback_days: float = Field(
        28.0, gt=0, description="History used to learn a deployment's usual arrival pattern."
    )
    heartbeat_min_arrivals: int = Field(
        20, ge=2, description="Arrivals needed in the lookback before silence is judged."
    )
    heartbeat_min_history_days: float = Field(
        7.0,
        ge=0,
        description="History (first to last arrival in the lookback) needed before silence is "
        "judged: a week, so that the usual gap has seen a weekend.",
    )
    heartbeat_gap_quantile: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Which gap between arrivals is 'usual': 1.0 = the longest in the lookback "
        "(covers nights, weekends and holidays in the history).",
    )
    heartbeat_factor: float = Field(
        1.5, ge=1, description="Silence longer than factor x usual gap is alarming."
    )
    heartbeat_min_silence_s: float = Field(
        1800.0, ge=0, description="Never alarm on a silence shorter than this."
    )
    heartbeat_expected_arrivals: float = Field(
        8.0,
        gt=0,
        description="Weekly rule: alarm when the same hours of the week brought on average at "
        "least this many arrivals in past weeks and none came now (Poisson P(0) = e^-8 = 3e-4).",
    )

    # --- the clinic's calendar -------------------------------------------------------------
    closed_days: list[date] = Field(
        default_factory=list,
        description="Days the clinics are closed on a working day (public holidays), as a JSON "
        "list of ISO dates: the heartbeat expects no records then, so a silence on them is "
        "not alarming, nor is the hours' silence they add to a weekend.",
    )
    site_closed_days: dict[str, list[date]] = Field(
        default_factory=dict,
        description="Per-site override of ``closed_days``: JSON mapping site id -> ISO dates. "
        "A site listed here gets only its own list.",
    )
    clinic_timezone: str = Field(
        "UTC",
        description="IANA time zone in which a closed day runs from midnight to midnight "
        "(e.g. Europe/Berlin, Australia/Sydney).",
    )
    site_timezones: dict[str, str] = Field(
        default_factory=dict,
        description="Per-site override of ``clinic_timezone`` (site id -> IANA zone).",
    )

    @model_validator(mode="after")
    def _check(self) -> NotifySettings:
        if self.smtp_ssl and self.smtp_starttls:
            raise ValueError("smtp_ssl and smtp_starttls exclude each other: choose one")
        if self.webhook_url and urlsplit(self.webhook_url).scheme not in {"http", "https"}:
            raise ValueError("webhook_url must be an http or https URL")
        if self.public_base_url:
            _check_base_url(self.public_base_url)
        for where, name in [("clinic_timezone", self.clinic_timezone)] + [
            (f"site_timezones[{site!r}]", zone) for site, zone in self.site_timezones.items()
        ]:
            _zone(where, name)
        return self

    def calendar_for(self, site_id: str | None) -> ClinicCalendar:
        """The closed days and time zone of ``site_id`` (the defaults for a site not listed)."""
        days = self.closed_days
        if site_id is not None and site_id in self.site_closed_days:
            days = self.site_closed_days[site_id]
        zone = self.site_timezones.get(site_id or "", self.clinic_timezone)
        return ClinicCalendar(frozenset(days), _zone("clinic_timezone", zone))

    @property
    def email_enabled(self) -> bool:
        return bool(self.smtp_host)

    @property
    def webhook_enabled(self) -> bool:
        return bool(self.webhook_url)

    def recipients_for(self, site_id: str | None) -> list[str]:
        """Who is told when an alert of ``site_id`` opens."""
        if site_id is not None and site_id in self.site_recipients:
            return list(self.site_recipients[site_id])
        return list(self.recipients)

    def escalation_recipients_for(self, site_id: str | None) -> list[str]:
        """The second contact for ``site_id``."""
        if site_id is not None and site_id in self.site_escalation_recipients:
            return list(self.site_escalation_recipients[site_id])
        return list(self.escalation_recipients)

    def escalation_delay_s(self, severity: str) -> float:
        if severity == Severity.CRITICAL:
            return self.escalate_after_critical_s
        return self.escalate_after_s

    def webhook_label(self) -> str:
        """The webhook as recorded in attempts and logs: scheme, host and port only (webhook
        paths and queries often carry a token)."""
        if not self.webhook_url:
            return "webhook"
        parts = urlsplit(self.webhook_url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}"

    @property
    def links_problem(self) -> str | None:
        """Why messages carry no link (None: they do): see ``link_base_problem``."""
        return link_base_problem(self.public_base_url, allow_local=self.allow_local_links)

    def links_base(self) -> str | None:
        """The base of every link in messages, or None when links must be left out (logged as
        a warning once per settings object: the service makes one at start)."""
        problem = self.links_problem
        if problem is None:
            return (self.public_base_url or "").rstrip("/")
        if not self._links_warned:
            self._links_warned = True
            log.warning("alert emails and webhooks carry no dashboard links: %s", problem)
        return None

    def dashboard_url(self, path: str) -> str | None:
        """``path`` on the public address, or None when links must be left out."""
        base = self.links_base()
        return None if base is None else base + path


def _check_base_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"public_base_url {url!r} must be an http or https URL with a host")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(
            f"public_base_url {url!r}: give scheme, host, port and path only (no query, "
            "fragment or user)"
        )
    try:
        parts.port  # noqa: B018  (raises on a port that is not a number in 0-65535)
    except ValueError as exc:
        raise ValueError(f"public_base_url {url!r}: {exc}") from exc


def _is_this_machine(host: str) -> bool:
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def link_base_problem(url: str | None, *, allow_local: bool = False) -> str | None:
    """Why links in messages must not be built on ``url`` (None: they may).

    A message is read later and elsewhere: a link must reach the dashboard from the reader's
    machine, days afterwards. An address on a port of the operating system's ephemeral range
    (``EPHEMERAL_PORTS``) was handed out for a moment (a test server, the demo's free port) and
    is gone when the process ends; an address of this machine only (localhost, 127.0.0.1, ::1)
    reaches the reader's own computer, unless they work here (``allow_local``).
    """
    if not url:
        return f"{NO_PUBLIC_ADDRESS} (set PHASE4_PUBLIC_BASE_URL)"
    parts = urlsplit(url)
    port = parts.port
    if port is not None and port in EPHEMERAL_PORTS:
        return (
            f"{NO_PUBLIC_ADDRESS}: {url} is on port {port}, in the operating system's "
            f"ephemeral range ({EPHEMERAL_PORTS.start}-{EPHEMERAL_PORTS.stop - 1}), an address "
            "that lasts as long as one process"
        )
    if _is_this_machine(parts.hostname or "") and not allow_local:
        return (
            f"{NO_PUBLIC_ADDRESS}: {url} reaches only the reader's own machine (set "
            "PHASE4_ALLOW_LOCAL_LINKS=true if people open the dashboard on this one)"
        )
    return None
