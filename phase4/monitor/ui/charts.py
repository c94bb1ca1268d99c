"""Plotly figures, built on the server and sent as JSON (drawn by /ui/static/ui.js, no CDN).

Each function returns the figure's JSON, escaped so that it can sit inside a
``<script type="application/json">`` block (no inline script runs: the page's CSP forbids it).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import plotly.graph_objects as go
from markupsafe import Markup

from phase4.monitor.core.statuses import AlertStatus, PhantomVerdict, Severity
from phase4.monitor.store.models import Alert
from phase4.monitor.surveillance.headline import WorldTimes, headline, world_times
from phase4.monitor.ui.queries import MetricChart, Series, StreamPath

COLORS = {
    "series": "#1f5fa8",
    "threshold": "#b00020",
    "alarm": "#b00020",
    "change": "#e07b00",
    "ok": "#2e7d32",
    "tolerance": "#e07b00",
    "action": "#b00020",
}
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


def metric_chart(chart: MetricChart) -> Markup:
    fig = go.Figure()
    tol = chart.tolerance
    x0, x1 = chart.times[0], chart.times[-1]
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
            fig.add_trace(
                go.Scatter(
                    x=[x0, x1],
                    y=[value, value],
                    mode="lines",
                    name=f"{label} level {value:g} (v{tol.version})",
                    line={"color": color, "dash": "dash" if label == "tolerance" else "solid"},
                )
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
    unit = f" ({tol.unit})" if tol is not None and tol.unit else ""
    _layout(fig, f"{chart.kind}: {chart.metric}", f"{chart.metric}{unit}")
    return to_json(fig)


def _first(*values: float | None) -> float:
    return next(v for v in values if v is not None)


def alerts_timeline(alerts: Sequence[Alert]) -> Markup:
    """Each alert at its detection date, a line back to its change's estimated start: the
    world's dates (the studies', the scans'), not when phase4 processed them. An alert whose
    times lie after the present is left out (they are not shown as dates)."""
    fig = go.Figure()
    placed = [(a, world_times(a)) for a in alerts]
    placed = [(a, w) for a, w in placed if w.detected is not None]
    spans_x: list[str | None] = []
    spans_y: list[str | None] = []
    for a, w in placed:
        if w.began is not None and w.detected is not None and w.began < w.detected:
            spans_x += [w.began.isoformat(), w.detected.isoformat(), None]
            spans_y += [_subject(a), _subject(a), None]
    if spans_x:
        fig.add_trace(
            go.Scatter(
                x=spans_x,
                y=spans_y,
                mode="lines",
                name="from the change's start",
                line={"color": "#999", "width": 3},
                hoverinfo="skip",
            )
        )
    by_sev: dict[str, list[tuple[Alert, WorldTimes]]] = {}
    for a, w in placed:
        by_sev.setdefault(a.severity, []).append((a, w))
    for severity, items in sorted(by_sev.items()):
        fig.add_trace(
            go.Scatter(
                x=[w.detected.isoformat() for _, w in items if w.detected is not None],
                y=[_subject(a) for a, _ in items],
                mode="markers",
                name=severity,
                text=[f"#{a.id} {a.status}: {headline(a)}" for a, _ in items],
                hoverinfo="text",
                marker={
                    "color": SEVERITY_COLORS.get(severity, "#555"),
                    "size": 11,
                    "symbol": [
                        "circle" if a.status == AlertStatus.OPEN else "circle-open"
                        for a, _ in items
                    ],
                },
            )
        )
    _layout(
        fig,
        "Alerts by detection date; the line goes back to the change's estimated start "
        "(filled: open)",
        "",
        height=300,
    )
    fig.update_yaxes(type="category")
    return to_json(fig)


def _subject(a: Alert) -> str:
    if a.deployment_id:
        return a.deployment_id
    return f"device {a.device_id}" if a.device_id is not None else "-"
