"""Plotly figures, built on the server and sent as JSON (drawn by /ui/static/ui.js, no CDN).

Each function returns the figure's JSON, escaped so that it can sit inside a
``<script type="application/json">`` block (no inline script runs: the page's CSP forbids it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime

import plotly.graph_objects as go
from markupsafe import Markup

from phase4.monitor.core.statuses import AlertStatus, PhantomVerdict, Severity
from phase4.monitor.domain.device_names import unknown_device
from phase4.monitor.store.models import Alert
from phase4.monitor.ui.queries import CanaryChart, MetricChart, Series, SiteEvent, StreamPath

COLORS = {
    "series": "#1f5fa8",
    "threshold": "#b00020",
    "alarm": "#b00020",
    "change": "#e07b00",
    "ok": "#2e7d32",
    "tolerance": "#e07b00",
    "action": "#b00020",
    "event": "#6a3d9a",
}
# The EARL accreditation bands on NEMA IQ recovery charts (phase4.phantoms.earl).
EARL_COLORS = {"EARL1": "#1f5fa8", "EARL2": "#2e7d32"}
# A value axis spans at least ±2% of the values' centre (or the levels drawn, if wider).
MIN_RELATIVE_SPAN = 0.02
SEVERITY_COLORS = {
    Severity.CRITICAL: "#b00020",
    Severity.WARNING: "#e07b00",
    Severity.INFO: "#1f5fa8",
}


def _layout(fig: go.Figure, title: str, y_title: str, height: int = 320) -> None:
    fig.update_layout(
        template="plotly_white",
        title={"text": title, "font": {"size": 14}},
        height=height,
        margin={"l": 60, "r": 20, "t": 40, "b": 40},
        legend={"orientation": "h", "y": -0.2},
        yaxis_title=y_title,
        hovermode="closest",
    )


def to_json(fig: go.Figure) -> Markup:
    text = fig.to_json() or "{}"
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    # <, > and & are escaped above: the JSON cannot close its <script> block.
    return Markup(text)


def stream_chart(name: str, path: StreamPath, alerts: Sequence[Alert]) -> Markup:
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=path.times,
            y=path.values,
            mode="lines",
            name=path.label,
            line={"color": COLORS["series"], "width": 1.5},
        )
    )
    if path.times:
        fig.add_trace(
            go.Scatter(
                x=[path.times[0], path.times[-1]],
                y=[path.threshold, path.threshold],
                mode="lines",
                name=f"threshold {path.threshold:.2f}",
                line={"color": COLORS["threshold"], "dash": "dash"},
            )
        )
    if path.alarms:
        fig.add_trace(
            go.Scatter(
                x=[t for t, _ in path.alarms],
                y=[s for _, s in path.alarms],
                mode="markers",
                name="alarm",
                marker={"color": COLORS["alarm"], "size": 10, "symbol": "x"},
            )
        )
    _mark_alerts(fig, alerts, path.threshold)
    _layout(fig, name, "statistic")
    return to_json(fig)


def _mark_alerts(fig: go.Figure, alerts: Sequence[Alert], y: float) -> None:
    """Alerts as markers (other detectors' too) and each estimated change date as a line."""
    xs, texts = [], []
    for a in alerts:
        ev = a.evidence or {}
        if ev.get("timestamp"):
            xs.append(ev["timestamp"])
            texts.append(f"alert {a.id}: {ev.get('detector', a.cause)} ({a.status})")
        if ev.get("change_timestamp"):
            fig.add_vline(
                x=_epoch_ms(ev["change_timestamp"]),
                line={"color": COLORS["change"], "dash": "dot", "width": 2},
                annotation_text="estimated change",
                annotation_position="top left",
            )
    if xs:
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=[y] * len(xs),
                mode="markers",
                name="alert raised",
                text=texts,
                hoverinfo="text+x",
                marker={"color": COLORS["alarm"], "size": 12, "symbol": "triangle-down"},
            )
        )


def _epoch_ms(stamp: str) -> float:
    """add_vline on a date axis wants a number (plotly cannot average ISO strings)."""
    return datetime.fromisoformat(stamp).timestamp() * 1000


def series_chart(title: str, series: Sequence[Series], y_title: str, percent: bool) -> Markup:
    fig = go.Figure()
    for s in series:
        fig.add_trace(
            go.Scatter(
                x=s.times,
                y=s.values,
                mode="lines+markers",
                name=s.label,
                customdata=s.counts,
                hovertemplate="%{x}: %{y:.3f} (n = %{customdata})<extra>" + s.label + "</extra>",
            )
        )
    _layout(fig, title, y_title)
    if percent:
        fig.update_yaxes(tickformat=".0%", rangemode="tozero")
    return to_json(fig)


def metric_chart(chart: MetricChart, events: Sequence[SiteEvent] = ()) -> Markup:
    fig = go.Figure()
    tol = chart.tolerance
    x0, x1 = chart.times[0], chart.times[-1]
    levels: list[float] = []
    if tol is not None:
        if tol.lower_tolerance is not None or tol.upper_tolerance is not None:
            lo = _first(tol.lower_tolerance, tol.lower_action, min(chart.values))
            hi = _first(tol.upper_tolerance, tol.upper_action, max(chart.values))
            fig.add_hrect(
                y0=lo, y1=hi, fillcolor=COLORS["ok"], opacity=0.08, line_width=0, layer="below"
            )
        for value, label, color in (
            (tol.lower_tolerance, "tolerance", COLORS["tolerance"]),
            (tol.upper_tolerance, "tolerance", COLORS["tolerance"]),
            (tol.lower_action, "action", COLORS["action"]),
            (tol.upper_action, "action", COLORS["action"]),
        ):
            if value is None:
                continue
            levels.append(value)
            fig.add_trace(
                go.Scatter(
                    x=[x0, x1],
                    y=[value, value],
                    mode="lines",
                    name=f"{label} level {value:g} (v{tol.version})",
                    line={"color": color, "dash": "dash" if label == "tolerance" else "solid"},
                )
            )
    for standard, (lo, hi) in chart.earl.items():
        levels += [lo, hi]
        fig.add_hrect(
            y0=lo,
            y1=hi,
            fillcolor=EARL_COLORS.get(standard, "#888"),
            opacity=0.14,
            line={"color": EARL_COLORS.get(standard, "#888"), "width": 1, "dash": "dot"},
            layer="below",
            name=f"{standard} band {lo:g}–{hi:g}",
            showlegend=True,
        )
    fig.add_trace(
        go.Scatter(
            x=chart.times,
            y=chart.values,
            mode="lines+markers",
            name="value",
            text=[
                f"{v} ({'signed off' if r else 'not signed off'})"
                for v, r in zip(chart.verdicts, chart.reviewed, strict=True)
            ],
            line={"color": COLORS["series"], "width": 1.5},
            marker={"size": 5},
        )
    )
    for verdict, label, color in (
        (PhantomVerdict.OUTSIDE_ACTION, "failed (action level)", COLORS["action"]),
        (PhantomVerdict.OUTSIDE_TOLERANCE, "outside tolerance", COLORS["tolerance"]),
    ):
        idx = [i for i, v in enumerate(chart.verdicts) if v == verdict]
        if idx:
            fig.add_trace(
                go.Scatter(
                    x=[chart.times[i] for i in idx],
                    y=[chart.values[i] for i in idx],
                    mode="markers",
                    name=label,
                    marker={"color": color, "size": 12, "symbol": "x"},
                )
            )
    _mark_events(fig, events, x0)
    unit = f" ({tol.unit})" if tol is not None and tol.unit else ""
    _layout(fig, f"{chart.kind}: {chart.metric}", f"{chart.metric}{unit}")
    y_range = value_range(chart.values, levels)
    if y_range is not None:
        fig.update_yaxes(range=y_range, autorange=False)
    return to_json(fig)


def value_range(
    values: Sequence[float], levels: Sequence[float] = (), min_relative: float = MIN_RELATIVE_SPAN
) -> list[float] | None:
    """A y-axis range that shows the values and the levels drawn (tolerance, action, EARL
    bands) and spans at least ±``min_relative`` of the values' centre: a change of 2e-8
    (rounding) is then drawn as the flat line it is, not as a step across the whole chart.
    None (plotly's own range) when everything is zero."""
    finite = [v for v in (*values, *levels) if math.isfinite(v)]
    if not finite:
        return None
    data = [v for v in values if math.isfinite(v)] or finite
    centre = (min(data) + max(data)) / 2
    half = abs(centre) * min_relative
    lo, hi = min(*finite, centre - half), max(*finite, centre + half)
    if not hi > lo:
        return None
    pad = (hi - lo) * 0.06
    return [lo - pad, hi + pad]


def _mark_events(fig: go.Figure, events: Sequence[SiteEvent], since: str) -> None:
    """The site's events (new reconstruction, scanner, protocol values an AI deployment saw)
    as labelled vertical lines, from the chart's first point on."""
    first = _epoch_ms(since)
    for e in events:
        at = _epoch_ms(e.at)
        if at < first:
            continue
        fig.add_vline(
            x=at,
            line={"color": COLORS["event"], "dash": "dashdot", "width": 1.5},
            annotation_text=f"{e.label} (alert {e.alert_id})",
            annotation_position="top right",
            annotation_font={"size": 10, "color": COLORS["event"]},
        )


def canary_chart(chart: CanaryChart, events: Sequence[SiteEvent] = ()) -> Markup:
    """Per sphere, the AI's SUVmax over the true SUV on each canary scan, with the canary's
    alerts and the site's events."""
    fig = go.Figure()
    for diameter, ratios in sorted(chart.spheres.items()):
        volumes = chart.volumes.get(diameter, [None] * len(ratios))
        fig.add_trace(
            go.Scatter(
                x=chart.times,
                y=ratios,
                mode="lines+markers",
                name=f"{diameter:g} mm sphere",
                customdata=[
                    [f"{v:.2f}" if v is not None else "not found", f"{d} of {t}"]
                    for v, d, t in zip(volumes, chart.detected, chart.total, strict=True)
                ],
                hovertemplate="%{x}: SUVmax ratio %{y:.3f}, volume ratio %{customdata[0]}, "
                "spheres found %{customdata[1]}<extra>" + f"{diameter:g} mm</extra>",
                marker={"size": 5},
            )
        )
    for at, words, _ in chart.alerts:
        fig.add_vline(
            x=_epoch_ms(at),
            line={"color": COLORS["alarm"], "dash": "dot", "width": 2},
            annotation_text=f"canary {words}",
            annotation_position="bottom right",
            annotation_font={"size": 10, "color": COLORS["alarm"]},
        )
    if chart.times:
        _mark_events(fig, events, chart.times[0])
    _layout(
        fig,
        f"AI canary on the {chart.kind} phantom: the AI's SUVmax / true SUV per sphere",
        "AI SUVmax / true SUV",
        height=360,
    )
    ratios = [v for series in chart.spheres.values() for v in series if v is not None]
    y_range = value_range(ratios)
    if y_range is not None:
        fig.update_yaxes(range=y_range, autorange=False)
    return to_json(fig)


def _first(*values: float | None) -> float:
    return next(v for v in values if v is not None)


def alerts_timeline(alerts: Sequence[Alert], device_names: Mapping[int, str]) -> Markup:
    fig = go.Figure()
    by_sev: dict[str, list[Alert]] = {}
    for a in alerts:
        by_sev.setdefault(a.severity, []).append(a)
    for severity, items in sorted(by_sev.items()):
        fig.add_trace(
            go.Scatter(
                x=[a.opened_at.isoformat() for a in items],
                y=[_subject(a, device_names) for a in items],
                mode="markers",
                name=severity,
                text=[f"#{a.id} {a.status}: {a.title}" for a in items],
                hoverinfo="text+x",
                marker={
                    "color": SEVERITY_COLORS.get(severity, "#555"),
                    "size": 11,
                    "symbol": [
                        "circle" if a.status == AlertStatus.OPEN else "circle-open" for a in items
                    ],
                },
            )
        )
    _layout(fig, "Alerts opened (filled: open)", "", height=300)
    fig.update_yaxes(type="category")
    return to_json(fig)


def _subject(a: Alert, device_names: Mapping[int, str]) -> str:
    if a.deployment_id:
        return a.deployment_id
    if a.device_id is None:
        return "-"
    return device_names.get(a.device_id) or unknown_device(a.device_id)
