"""An alert in words a person can act on: subject, plain text and HTML, and the webhook payload.

The alert's headline (``phase4.monitor.surveillance.headline``: what changed, by how much with
its 95% interval, since when and linked to what, in world dates) is the subject (without its
linked alerts) and the message's first line, and the webhook's ``headline``; then what changed,
since when, how sure (statistic against threshold, and the false-alarm budget in plain words),
what to check first, what else happened around then, and where to look.

Only known evidence keys are read, each checked for its type; free strings are cleaned of control
characters, shortened and (in HTML) escaped. Nothing else from the evidence is copied into a
message, so a string that reached the evidence from a record can only appear where phase4 put it
on purpose (a new category's value). Records themselves are never read here: no record id, no
study pseudonym, no individual values.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from phase4.alerts.config import NO_PUBLIC_ADDRESS, NotifySettings
from phase4.monitor.core.headline import FUTURE
from phase4.monitor.core.statuses import PHANTOM_CAUSES, AlertCause, Severity
from phase4.monitor.store.models import Alert, utcnow
from phase4.monitor.surveillance.headline import headline as alert_headline
from phase4.monitor.surveillance.headline import subject_line, world_times

Purpose = Literal["opened", "escalation"]

DETECTOR_NAMES = {
    "cusum": "CUSUM (cumulative sum) chart",
    "ewma": "EWMA (exponentially weighted moving average) chart",
    "spread": "CUSUM for a change of spread",
    "ks": "windowed Kolmogorov-Smirnov test",
    "bernoulli_cusum": "Bernoulli CUSUM on the event rate",
    "chi_square": "windowed G-test of category frequencies",
    "new_category": "new-value check",
    "cbpe": "estimated performance (CBPE)",
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def clean(value: Any, limit: int = 120) -> str:
    """One line of text: control characters (newlines too) replaced, length bounded."""
    text = _CONTROL.sub(" ", str(value)).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _when(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def fmt_time(value: datetime) -> str:
    """A world time; one after the present is never shown as a time."""
    if value > utcnow():
        return FUTURE
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def fmt_duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _g(x: float) -> str:
    return f"{x:.3g}"


@dataclass(frozen=True)
class Section:
    """A heading and its lines (paragraphs or list items)."""

    heading: str
    lines: tuple[str, ...]
    bullets: bool = False


@dataclass(frozen=True)
class Link:
    label: str
    url: str


@dataclass(frozen=True)
class AlertContext:
    """What the renderer needs besides the alert row (read by the dispatcher)."""

    site_id: str | None = None
    has_report: bool = False
    # the scanner's name (``phase4.monitor.domain.device_names``) for a device's alert
    device_name: str | None = None


@dataclass
class Rendered:
    subject: str
    text: str
    html: str
    links: list[Link] = field(default_factory=list)
    links_note: str | None = None  # why there is no link, when there is none


# --- plain-language pieces --------------------------------------------------------------------


def _subject_of(alert: Alert, ctx: AlertContext | None = None) -> str:
    if alert.deployment_id:
        return f"Deployment {clean(alert.deployment_id, 100)}"
    if alert.device_id is not None:
        if ctx is not None and ctx.device_name:
            return f"Scanner {clean(ctx.device_name, 120)}"
        return f"Scanner #{alert.device_id}"
    return "No deployment"


def _stream_label(stream: str) -> str:
    return clean(stream, 120)


def _is_notice(alert: Alert) -> bool:
    notice = AlertCause.of(alert.cause) is AlertCause.NEW_CONDITION
    return notice or alert.evidence.get("kind") == "notice"


def headline(alert: Alert, site: str | None = None) -> str:
    """The alert's sentence (``phase4.monitor.surveillance.headline``), as every surface says it."""
    return alert_headline(alert, site=site)


def _size_lines(ev: Mapping[str, Any]) -> list[str]:
    """The numbers behind the headline's size: each side's mean or rate and its count."""
    change = ev.get("change")
    if not isinstance(change, dict):
        return []
    n_before, n_after = _num(change.get("n_before")), _num(change.get("n_after"))
    before, after = _num(change.get("before")), _num(change.get("after"))
    unit = clean(change.get("unit") or "", 20)
    unit = f" {unit}" if unit and unit != "%" else unit
    kind = change.get("kind")
    lines = []
    if before is not None and after is not None:
        if kind in ("binary", "categorical", "estimate"):
            text = f"Before: {100 * before:.1f}%; since the change: {100 * after:.1f}%"
        else:
            text = f"Before: mean {_g(before)}{unit}; since the change: mean {_g(after)}{unit}"
        counts = (
            f" ({int(n_before):,} reference values; {int(n_after):,} since the change)"
            if n_before is not None and n_after is not None
            else ""
        )
        lines.append(text + counts + ".")
    method = change.get("method")
    if isinstance(method, str):
        lines.append(f"How the size was estimated: {clean(method, 300)}.")
    return lines


def _what_changed(alert: Alert, ctx: AlertContext | None = None) -> list[str]:
    ev = alert.evidence
    stream = _stream_label(alert.stream)
    lines = _size_lines(ev)
    if alert.cause == AlertCause.PROBE_SILENCE:
        last = _when(ev.get("last_record_at"))
        if last is not None:
            lines.append(
                f"The last record from this deployment's probe arrived at {fmt_time(last)}."
            )
        return lines
    kind = ev.get("stream_kind")
    if _is_notice(alert):
        lines.append(
            f"{stream} took a value never seen among the deployment's reference records. "
            "The AI may not have been validated for it."
        )
    elif kind == "binary":
        lines.append(f"{stream} is a yes/no quantity: its rate moved away from the reference rate.")
    elif stream.startswith("performance."):
        lines.append("This is measured performance, from physicians' feedback on the AI's output.")
    elif stream.startswith("estimated."):
        lines.append("This performance is estimated from the AI's scores, without labels (CBPE).")
    detail = ev.get("detail") if isinstance(ev.get("detail"), dict) else {}
    estimate, ref = _num(detail.get("estimate")), _num(detail.get("reference_mean"))
    if estimate is not None and ref is not None:
        lines.append(f"Estimate now {_g(estimate)}, against {_g(ref)} in the reference.")
    repeats = _num(ev.get("repeats"))
    if repeats:
        last = _when(ev.get("last_timestamp"))
        since = f", most recently at {fmt_time(last)}" if last else ""
        lines.append(f"The detectors fired {int(repeats)} more time(s) since it opened{since}.")
    return lines


def _since_when(alert: Alert) -> list[str]:
    """World times only (the studies', the scans'): when phase4 processed them is in the audit
    trail, not here."""
    ev = alert.evidence
    lines = []
    if alert.cause == AlertCause.PROBE_SILENCE:
        lines.append(f"Noticed at {fmt_time(alert.opened_at)}.")
    change, fired = _when(ev.get("change_timestamp")), _when(ev.get("timestamp"))
    if change is not None:
        lines.append(f"Estimated start of the change: {fmt_time(change)}.")
    if fired is not None and fired != change:
        lines.append(f"Detected on the study acquired at {fmt_time(fired)}.")
    delay = world_times(alert).delay_days
    if delay is not None and change is not None and fired is not None and fired != change:
        lines.append(f"Delay from the change's start to its detection: {delay:g} days.")
    return lines


def _how_sure(alert: Alert) -> list[str]:
    ev = alert.evidence
    if alert.cause == AlertCause.PROBE_SILENCE:
        lines = []
        silence = _num(ev.get("silence_s"))
        usual = _num(ev.get("usual_gap_s"))
        allowed = _num(ev.get("allowed_silence_s"))
        expected = _num(ev.get("expected_arrivals"))
        closed = _num(ev.get("closed_s"))
        if silence is not None:
            of_closed = (
                f", of which {fmt_duration(closed)} on days the clinic is closed (not counted)"
                if closed
                else ""
            )
            lines.append(f"Silent for {fmt_duration(silence)}{of_closed}.")
        if usual is not None and allowed is not None:
            lines.append(
                f"The longest usual gap between arrivals over the recent weeks was "
                f"{fmt_duration(usual)}; silence beyond {fmt_duration(allowed)} is not usual."
            )
        if expected is not None:
            lines.append(
                f"In the same hours of past weeks this deployment received on average "
                f"{expected:.1f} batches of records; none came this time."
            )
        return lines
    if _is_notice(alert):
        return [
            "Certain, not statistical: the value was observed. A new-value notice takes no share "
            "of the false-alarm budget."
        ]
    lines = []
    detector = ev.get("detector")
    name = DETECTOR_NAMES.get(str(detector), "the detector") if detector else "the detector"
    stat, thr = _num(ev.get("statistic")), _num(ev.get("threshold"))
    if stat is not None and thr is not None:
        lines.append(
            f"The {name} reached {_g(stat)}, beyond its threshold of {_g(thr)} "
            f"({abs(stat) / thr:.1f} times the threshold)."
            if thr
            else f"The {name} reached {_g(stat)} (threshold {_g(thr)})."
        )
    detail = ev.get("detail") if isinstance(ev.get("detail"), dict) else {}
    p = _num(detail.get("p_value"))
    if p is not None:
        lines.append(f"p-value of the windowed test: {p:.2g}.")
    budget = ev.get("budget") if isinstance(ev.get("budget"), dict) else {}
    f_year = _num(budget.get("false_alarms_per_year"))
    # evidence may carry "detectors_sharing" (a budget shared by detectors) instead of streams
    sharing = _num(budget.get("streams_sharing", budget.get("detectors_sharing")))
    shared_by = "streams" if "streams_sharing" in budget else "detectors"
    per_day = _num(budget.get("observations_per_day"))
    arl0 = _num(budget.get("arl0"))
    weight = _num(budget.get("weight"))
    if f_year and sharing and per_day and arl0:
        part = (
            f" This detector holds {weight:.0%} of its stream's share."
            if weight is not None and weight < 1
            else ""
        )
        lines.append(
            f"The monitoring is tuned to at most {f_year:g} false alarm(s) per deployment per "
            f"year, shared by {int(sharing)} {shared_by}.{part} This stream sees about "
            f"{per_day:g} observations a day, so this detector fires falsely about once in "
            f"{arl0:,.0f} observations: once every {arl0 / per_day / 365:.0f} years. An alarm "
            "is therefore unlikely to be chance, but it says that something changed, not why."
        )
    return lines


# --- what to check first ----------------------------------------------------------------------

_CHECKS: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
    (
        ("injected", "activity", "mbq", "dose"),
        (
            "Check the dose calibrator: its daily constancy test and the last accuracy test.",
            "Check how injected activity is recorded (residual activity in the syringe, "
            "the assay time, manual entry).",
            "Check the cross-calibration of the dose calibrator against the scanner.",
        ),
    ),
    (
        ("suv", "liver", "background"),
        (
            "Check the scanner/dose-calibrator cross-calibration and the daily QC of the scanner.",
            "Check the dose calibrator's constancy test and the injected activities recorded.",
            "Check uptake times and patient preparation (fasting, blood glucose).",
        ),
    ),
    (
        (
            "recon",
            "iteration",
            "subset",
            "filter",
            "fwhm",
            "software",
            "kernel",
            "voxel",
            "slice",
            "matrix",
            "rows",
            "columns",
            "model",
            "manufacturer",
            "scanner",
        ),
        (
            "Check the scanner's reconstruction protocol and software version: was there a "
            "service visit, an upgrade or a protocol edit around the estimated start?",
            "Compare with the protocol the AI was validated with (the manufacturer's "
            "instructions for use).",
        ),
    ),
    (
        ("uptake",),
        ("Check the time between injection and scan (scheduling, delays, a new workflow).",),
    ),
    (
        ("weight", "height", "bmi", "per_kg"),
        (
            "Check whether the patient population changed (a new referral pathway, paediatric "
            "or research patients).",
        ),
    ),
    (
        ("noise", "_cv"),
        ("Check acquisition time per bed position, injected activity and reconstruction.",),
    ),
    (
        ("latency",),
        ("Check the AI server: load, queue, GPU, and the network between PACS and the AI.",),
    ),
    (
        ("inference_error", "error"),
        ("Check the AI service's logs for failing studies and any recent AI software update.",),
    ),
    (
        ("flag_", "artifact", "missing", "saturat"),
        (
            "Check the flagged series: incomplete transfers, missing slices, truncation or "
            "scanner artefacts.",
        ),
    ),
]

_NEW_VALUE = (
    "Find out what the new value is: a new scanner, protocol, software version or tracer?",
    "Check that the AI's intended use covers it; if unsure, revalidate on local cases before "
    "relying on the AI for such studies.",
    "If it is a validated, lasting change, have the reference replaced (audited) so that the "
    "monitoring learns it.",
)
_PERFORMANCE = (
    "Review recent cases with the physicians' feedback: which findings were missed or wrong?",
    "Compare with the performance measured at acceptance, and look at the linked events: did "
    "the case mix or the images change?",
    "If confirmed, consider whether this is a reportable incident and tell the manufacturer.",
)
_DISPARITY = (
    "Open the deployment's subgroup page: the group's cases since the gap opened, its rates and "
    "the rest's, with their intervals.",
    "Look for what sets the group apart since then: its images (protocol, uptake time, "
    "reconstruction, scanner), its case mix, and how its outcomes were confirmed.",
    "If confirmed, consider restricting use for this group, whether this is a reportable "
    "incident, and tell the manufacturer.",
)
_SILENCE = (
    "Check that the probe process runs at the site (service status, its log).",
    "Check the probe's spool for a backlog and the network path from the probe to the monitor "
    "(firewall, certificates, the probe's token).",
    "Check whether studies are still being acquired and sent to the AI (PACS routing), or "
    "whether the department is simply closed (a holiday: add it to PHASE4_CLOSED_DAYS, or to "
    "the site's own list in PHASE4_SITE_CLOSED_DAYS where it has one).",
)
_PHANTOM = (
    "Look at the phantom result on the dashboard: which metric is outside its tolerance or "
    "action level?",
    "Repeat the phantom scan if the acquisition may have been faulty; follow the QC procedure "
    "for results beyond the action level before further clinical use.",
)
_OUTPUTS = (
    "The AI's output changed: look at the linked events first (a change in the images often "
    "explains it), and check whether the AI's version changed.",
    "Review a sample of recent cases.",
)
_DEFAULT = (
    "Look at the stream's chart on the dashboard and at what changed around the estimated start "
    "(service log, protocol changes, staff, new equipment).",
)
_REVALIDATION = (
    "Open the deployment's page on the dashboard and its revalidation: the acceptance criteria "
    "must be declared before any evidence is attached.",
    "Attach the locked validation set or the shadow traffic, evaluate, and have a named reviewer "
    "of the site decide: accept, accept with conditions, or reject (docs/REVALIDATION.md).",
    "Until a reviewer accepts it, the new version's records are kept out of the drift "
    "references and the performance: they do not count.",
)
_CLOSE = (
    "When you know more, acknowledge the alert on the dashboard and later resolve it, saying "
    "what you found and did."
)


def what_to_check(alert: Alert) -> list[str]:
    """What to check first, by cause and by what the stream measures (the email's section, the
    webhook's ``checklist`` and the alert's page on the dashboard)."""
    cause, stream = alert.cause, alert.stream.lower()
    if cause == AlertCause.PROBE_SILENCE:
        items = list(_SILENCE)
    elif cause == AlertCause.REVALIDATION:
        items = list(_REVALIDATION)
    elif AlertCause.of(cause) in PHANTOM_CAUSES or stream.startswith("phantom"):
        items = list(_PHANTOM)
    elif _is_notice(alert):
        items = list(_NEW_VALUE)
    elif cause == AlertCause.DISPARITY:  # docs/SUBGROUPS.md
        items = list(_DISPARITY)
    elif cause == AlertCause.PERFORMANCE or stream.startswith(("performance.", "estimated.")):
        items = list(_PERFORMANCE)
    else:
        field_name = stream.split("[", 1)[0]
        items = []
        for keys, checks in _CHECKS:
            if any(k in field_name for k in keys):
                items += [c for c in checks if c not in items]
        if field_name.startswith("outputs."):
            items = list(_OUTPUTS) + items
        items = items or list(_DEFAULT)
    return items


def checklist(alert: Alert) -> list[str]:
    """What to check first, then what to do when one knows more (the email's list)."""
    return [*what_to_check(alert), _CLOSE]


def _linked(alert: Alert, settings: NotifySettings) -> list[str]:
    raw = alert.evidence.get("linked")
    if not isinstance(raw, list):
        return []
    lines = []
    for item in raw[:10]:
        if not isinstance(item, dict):
            continue
        other = item.get("alert_id")
        at = _when(item.get("at"))
        stream = item.get("stream")
        cause = item.get("cause")
        if not isinstance(other, int) or not isinstance(stream, str):
            continue
        when = f" (from {fmt_time(at)})" if at else ""
        kind = f", {clean(cause, 60)}" if isinstance(cause, str) else ""
        lines.append(
            f"Alert {other}: {clean(stream, 100)}{kind}{when}"
            + _dash_url(settings, f"/ui/alerts/{other}")
        )
    return lines


def _dash_url(settings: NotifySettings, path: str) -> str:
    """`` - <url>`` after a line, or nothing when links are left out."""
    url = settings.dashboard_url(path)
    return f" - {url}" if url else ""


def links_note(settings: NotifySettings, what: str) -> str | None:
    """The sentence a message carries instead of its links (None when it has links)."""
    if settings.links_base() is not None:
        return None
    return (
        f"No link: {NO_PUBLIC_ADDRESS} for the dashboard (PHASE4_PUBLIC_BASE_URL). "
        f"Find {what} in the dashboard's alert list."
    )


# --- messages ---------------------------------------------------------------------------------


def links(alert: Alert, ctx: AlertContext, settings: NotifySettings) -> list[Link]:
    """The alert's page; its drift report in the dashboard (a logged-in browser) and in the API
    (a bearer token), when it has one. None when no public address is configured."""
    base = settings.links_base()
    if base is None:
        return []
    out = [Link("Open the alert on the dashboard", f"{base}/ui/alerts/{alert.id}")]
    if ctx.has_report:
        out.append(Link("Drift report", f"{base}/ui/alerts/{alert.id}/report"))
        out.append(Link("Drift report (API)", f"{base}/v1/alerts/{alert.id}/report"))
    return out


def sections(
    alert: Alert, ctx: AlertContext, settings: NotifySettings, purpose: Purpose = "opened"
) -> list[Section]:
    """The message body of one alert, in order."""
    out: list[Section] = []
    if purpose == "escalation":
        delay = settings.escalation_delay_s(alert.severity)
        out.append(
            Section(
                "Escalation",
                (
                    f"Nobody has acknowledged this alert in {fmt_duration(delay)}. You are "
                    "receiving it as the second contact: please make sure someone takes it on.",
                ),
            )
        )
    site = clean(ctx.site_id, 64) if ctx.site_id else "unknown"
    out.append(
        Section(
            "Alert",
            (
                f"Alert {alert.id}, severity {clean(alert.severity, 16)}, status "
                f"{clean(alert.status, 16)}.",
                f"{_subject_of(alert, ctx)} at site {site}; stream {_stream_label(alert.stream)}.",
            ),
        )
    )
    out.append(Section("What changed", tuple(_what_changed(alert, ctx))))
    out.append(Section("Since when", tuple(_since_when(alert))))
    sure = _how_sure(alert)
    if sure:
        out.append(Section("How sure", tuple(sure)))
    out.append(Section("What to check first", tuple(checklist(alert)), bullets=True))
    linked = _linked(alert, settings)
    if linked:
        out.append(Section("Other alerts around the same time", tuple(linked), bullets=True))
    return out


def _subject_prefix(severity: str, purpose: Purpose) -> str:
    tag = "ESCALATION " if purpose == "escalation" else ""
    return f"[phase4 {tag}{clean(severity, 16).upper()}]"


def render_alert(
    alert: Alert,
    ctx: AlertContext,
    settings: NotifySettings,
    purpose: Purpose = "opened",
) -> Rendered:
    """Subject, text and HTML of one alert."""
    line = subject_line(alert, site=ctx.site_id)
    if alert.deployment_id is None and alert.device_id is not None:
        line = f"{_subject_of(alert, ctx)}: {line}"  # the scanner by name, first
    subject = clean(f"{_subject_prefix(alert.severity, purpose)} {line} (alert {alert.id})", 200)
    first = headline(alert, ctx.site_id)
    secs = sections(alert, ctx, settings, purpose)
    lnks = links(alert, ctx, settings)
    note = links_note(settings, f"alert {alert.id}")
    return Rendered(
        subject,
        _text(first, secs, lnks, note),
        _html(first, secs, lnks, subject, note),
        lnks,
        note,
    )


def render_digest(
    alerts: Sequence[tuple[Alert, AlertContext]],
    settings: NotifySettings,
    purpose: Purpose = "opened",
) -> Rendered:
    """One message for many alerts of one deployment: a summary line each, then each in full."""
    first = alerts[0][0]
    worst = max((a.severity for a, _ in alerts), key=lambda s: Severity.rank_of(s, default=0))
    scanners = {ctx.device_name for a, ctx in alerts if a.deployment_id is None}
    if first.deployment_id:
        where = clean(first.deployment_id, 100)
    elif len(scanners) == 1 and None not in scanners:
        where = _subject_of(first, alerts[0][1])
    else:
        where = "scanners"
    subject = clean(f"{_subject_prefix(worst, purpose)} {where}: {len(alerts)} new alerts", 200)
    summary = tuple(
        f"Alert {a.id} ({clean(a.severity, 16)}): {headline(a, ctx.site_id)}"
        + _dash_url(settings, f"/ui/alerts/{a.id}")
        for a, ctx in alerts
    )
    secs: list[Section] = [
        Section(
            "Summary",
            (
                f"{len(alerts)} alerts opened for {where} at about the same time; they often share "
                "one cause, so look at the earliest estimated start first.",
            ),
        ),
        Section("Alerts", summary, bullets=True),
    ]
    base = settings.links_base()
    all_links = [] if base is None else [Link("All open alerts", f"{base}/ui/alerts")]
    note = links_note(settings, "these alerts")
    for a, ctx in alerts:
        for s in sections(a, ctx, settings, purpose):
            heading = f"Alert {a.id}" if s.heading == "Alert" else f"Alert {a.id}: {s.heading}"
            secs.append(Section(heading, s.lines, s.bullets))
    return Rendered(
        subject,
        _text(subject, secs, all_links, note),
        _html(subject, secs, all_links, note=note),
        all_links,
        note,
    )


_FOOTER = (
    "Sent by phase4 post-market surveillance. This message names no patient: "
    "deployments, sites, streams and numbers only."
)


def _text(
    first: str, secs: Sequence[Section], lnks: Sequence[Link], note: str | None = None
) -> str:
    """The plain text: ``first`` (an alert's headline, a digest's subject) on the first line."""
    parts = [first, ""]
    for s in secs:
        parts.append(s.heading.upper())
        parts += [f"  - {line}" if s.bullets else line for line in s.lines]
        parts.append("")
    parts.append("LINKS")
    parts += [f"{link.label}: {link.url}" for link in lnks]
    if note:
        parts.append(note)
    parts += ["", "-- ", _FOOTER, ""]
    return "\n".join(parts)


def _html(
    first: str,
    secs: Sequence[Section],
    lnks: Sequence[Link],
    subject: str | None = None,
    note: str | None = None,
) -> str:
    e = html.escape
    subject = subject or first
    body = [f'<h2 style="font-family:sans-serif">{e(first)}</h2>']
    for s in secs:
        body.append(f'<h3 style="font-family:sans-serif;margin-bottom:4px">{e(s.heading)}</h3>')
        if s.bullets:
            body.append("<ul>" + "".join(f"<li>{e(line)}</li>" for line in s.lines) + "</ul>")
        else:
            body += [f'<p style="margin:2px 0">{e(line)}</p>' for line in s.lines]
    if lnks:
        body.append(
            "<p>"
            + " | ".join(
                f'<a href="{e(link.url, quote=True)}">{e(link.label)}</a>' for link in lnks
            )
            + "</p>"
        )
    if note:
        body.append(f"<p><em>{e(note)}</em></p>")
    body.append(f'<hr><p style="color:#666;font-size:small">{e(_FOOTER)}</p>')
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        f"<title>{e(subject)}</title></head><body>" + "".join(body) + "</body></html>"
    )


# --- webhook payload --------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def payload(
    alert: Alert,
    ctx: AlertContext,
    settings: NotifySettings,
    purpose: Purpose = "opened",
) -> dict[str, Any]:
    """The webhook's JSON: the same known facts as the email, as data, plus a text summary
    (``text``: Slack/Mattermost-compatible incoming webhooks show it)."""
    ev: Mapping[str, Any] = alert.evidence
    budget = ev.get("budget") if isinstance(ev.get("budget"), dict) else {}
    times = world_times(alert)
    change, fired = times.began, times.detected
    linked = []
    for item in ev.get("linked") or []:
        if isinstance(item, dict) and isinstance(item.get("alert_id"), int):
            at = _when(item.get("at"))
            linked.append(
                {
                    "alert_id": item["alert_id"],
                    "stream": clean(item.get("stream", ""), 120),
                    "at": _iso(at),
                }
            )
    lnks = links(alert, ctx, settings)
    note = links_note(settings, f"alert {alert.id}")
    event = "alert.escalated" if purpose == "escalation" else "alert.opened"
    where = f" - {lnks[0].url}" if lnks else f" ({NO_PUBLIC_ADDRESS})"
    return {
        "event": event,
        "text": f"{_subject_prefix(alert.severity, purpose)} "
        f"{subject_line(alert, site=ctx.site_id)}{where}",
        "headline": headline(alert, ctx.site_id),
        "change": change_data(ev),
        "alert": {
            "id": alert.id,
            "deployment": alert.deployment_id,
            "site": ctx.site_id,
            "stream": clean(alert.stream, 200),
            "cause": clean(alert.cause, 100),
            "severity": alert.severity,
            "status": alert.status,
            "headline": headline(alert, ctx.site_id),
            "opened_at": _iso(alert.opened_at),
            "escalated_at": _iso(alert.escalated_at),
            "change_at": _iso(change),
            "detected_at": _iso(fired),
            "delay_days": times.delay_days,
            "detector": clean(ev["detector"], 40) if isinstance(ev.get("detector"), str) else None,
            "direction": ev.get("direction") if ev.get("direction") in ("up", "down") else None,
            "statistic": _num(ev.get("statistic")),
            "threshold": _num(ev.get("threshold")),
            "budget": {
                k: _num(budget.get(k))
                for k in (
                    "false_alarms_per_year",
                    "streams_sharing",
                    "detectors_sharing",
                    "observations_per_day",
                    "stream_arl0",
                    "weight",
                    "arl0",
                )
                if k in budget
            }
            if budget
            else None,
            "silence_s": _num(ev.get("silence_s")),
            "linked": linked,
            "checklist": what_to_check(alert),
        },
        "links": dict(
            zip(("dashboard", "report", "report_api"), (k.url for k in lnks), strict=False)
        ),
        "links_note": note,
    }


_CHANGE_NUMBERS = (
    "size",
    "before",
    "after",
    "delta",
    "delta_pct",
    "n_before",
    "n_after",
    "delay_days",
    "level",
)
_CHANGE_INTERVALS = ("ci95", "delta_ci95", "delta_pct_ci95", "before_ci95", "after_ci95")
_CHANGE_WORDS = ("kind", "stated", "quantity", "unit", "unit_note", "category", "method")


def change_data(ev: Mapping[str, Any]) -> dict[str, Any] | None:
    """The size of the change (``evidence["change"]``) as data: its known keys, each checked for
    its type (numbers finite, intervals of two numbers, words cleaned), times of the world
    (none after the present)."""
    change = ev.get("change")
    if not isinstance(change, dict):
        return None
    out: dict[str, Any] = {k: _num(change.get(k)) for k in _CHANGE_NUMBERS if k in change}
    for k in _CHANGE_INTERVALS:
        ci = change.get(k)
        if isinstance(ci, list) and len(ci) == 2:
            low, high = _num(ci[0]), _num(ci[1])
            out[k] = [low, high] if low is not None and high is not None else None
    for k in _CHANGE_WORDS:
        if isinstance(change.get(k), str):
            out[k] = clean(change[k], 300 if k == "method" else 80)
    if isinstance(change.get("new"), bool):
        out["new"] = change["new"]
    now = utcnow()
    for k in ("began", "detected", "through"):
        when = _when(change.get(k))
        out[k] = _iso(when) if when is not None and when <= now else None
    return out
