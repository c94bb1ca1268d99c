"""Plotly figures, built on the server and sent as JSON (drawn by /ui/static/ui.js, no CDN).

Each function returns the figure's JSON, escaped so that it can sit inside a
``<script type="application/json">`` block (no inline script runs: the page's CSP forbids it).

A deployment's stream is charted as its quantity, in its unit, against its reference's band
(``quantity_chart``); the detector's statistic is a second chart for the statistician
(``stream_chart``). Rates have their own 0-100% axis with Wilson 95% bands, and quantities of
different scales never share an axis. An alert is drawn once, however many alarms it holds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import plotly.graph_objects as go
from markupsafe import Markup

from phase4.monitor.core.statuses import AlertStatus, PhantomVerdict, Severity
from phase4.monitor.domain.device_names import unknown_device
from phase4.monitor.store.models import Alert
from phase4.monitor.surveillance.headline import WorldTimes, headline, world_times
from phase4.monitor.ui.queries import CanaryChart, MetricChart, SiteEvent, StreamPath
from phase4.monitor.ui.timeseries import EVENT_KINDS, Episode, Event, Performance, QuantityChart
from phase4.monitor.ui.units import format_value, with_unit

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


# --- a stream's quantity, its statistic, the outputs and performance ------------------------------
#
# These figures are plain plotly JSON (dicts), not ``go.Figure``: a deployment page holds dozens
# of them, and plotly's Python validation and template copying cost a second of page time for
# no change in what the browser draws.

Trace = dict[str, Any]
Layout = dict[str, Any]

# Episode and event markers sit on a hidden second axis spanning the plot's height (0 bottom,
# 1 top), so they stay at the top or bottom edge whatever the quantity's scale.
EDGE_AXIS = {"overlaying": "y", "range": [0, 1], "visible": False, "fixedrange": True}
EVENT_SYMBOLS = {"categorical": "diamond", "model": "star", "scanner": "square"}
EVENT_COLORS = {"categorical": "#6a3d9a", "model": "#12355b", "scanner": "#8a4b00"}
METRIC_COLORS = {"sensitivity": "#1f5fa8", "specificity": "#2e7d32", "PPV": "#6a3d9a"}
GRID = "#e5eaf2"


def _epoch_ms(stamp: str) -> float:
    """add_vline on a date axis wants a number (plotly cannot average ISO strings)."""
    return datetime.fromisoformat(stamp).timestamp() * 1000


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _short(values: Sequence[float]) -> list[float | None]:
    """Four significant digits (enough for a chart, a third of the page's weight); None for a
    value that is not finite (JSON has no NaN or infinity)."""
    return [float(f"{v:.4g}") if math.isfinite(v) else None for v in values]


def _figure(data: list[Trace], layout: Layout) -> Markup:
    text = json.dumps({"data": data, "layout": layout}, separators=(",", ":"), allow_nan=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    # <, > and & are escaped above: the JSON cannot close its <script> block.
    return Markup(text)


def _base_layout(title: str, y_title: str, height: int) -> Layout:
    return {
        "title": {"text": title, "font": {"size": 14}, "x": 0.01},
        "height": height,
        "margin": {"l": 64, "r": 20, "t": 40, "b": 40},
        "paper_bgcolor": "#fff",
        "plot_bgcolor": "#fff",
        "font": {"family": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"},
        "hovermode": "closest",
        "legend": {"orientation": "h", "y": -0.16, "font": {"size": 11}},
        "xaxis": {"type": "date", "gridcolor": GRID, "linecolor": "#aab", "automargin": True},
        "yaxis": {
            "title": {"text": y_title},
            "gridcolor": GRID,
            "zerolinecolor": GRID,
            "automargin": True,
        },
        "yaxis2": EDGE_AXIS,
        "shapes": [],
        "annotations": [],
    }


def _band(x: Sequence[str], low: Sequence[float], high: Sequence[float], **kw: Any) -> Trace:
    """A filled band between ``low`` and ``high`` (one closed polygon, one legend entry)."""
    return {
        "type": "scatter",
        "x": list(x) + list(reversed(x)),
        "y": _short(list(high) + list(reversed(low))),
        "fill": "toself",
        "mode": "lines",
        "line": {"width": 0},
        "hoverinfo": "skip",
        **kw,
    }


def _line(x: Sequence[str], y: Sequence[float], **kw: Any) -> Trace:
    return {"type": "scatter", "x": list(x), "y": _short(y), "mode": "lines", **kw}


def _vline(layout: Layout, at: str, text: str, color: str, dash: str, width: float) -> None:
    """A vertical line across the plot at ``at``, labelled at its top (or bottom) end."""
    layout["shapes"].append(
        {
            "type": "line",
            "xref": "x",
            "yref": "paper",
            "x0": at,
            "x1": at,
            "y0": 0,
            "y1": 1,
            "line": {"color": color, "dash": dash, "width": width},
        }
    )
    top = color != "#888"
    layout["annotations"].append(
        {
            "x": at,
            "xref": "x",
            "y": 1 if top else 0,
            "yref": "paper",
            "text": text,
            "showarrow": False,
            "xanchor": "right",
            "yanchor": "top" if top else "bottom",
            "font": {"size": 10, "color": color},
        }
    )


def _percent_axis(layout: Layout, highs: Sequence[float]) -> None:
    """A rate's own axis, in %, from 0 (to 100% when the rates reach past 60%)."""
    top = max((h for h in highs if math.isfinite(h)), default=0.0)
    upper = 100.0 if top > 60 else min(100.0, max(5.0, math.ceil(top * 1.15 / 5) * 5))
    layout["yaxis"].update({"range": [0, upper], "ticksuffix": "%", "rangemode": "tozero"})


def quantity_chart(q: QuantityChart, events: Sequence[Event] = (), height: int = 380) -> Markup:
    """A stream's (or an output's) quantity in its unit: daily median and interquartile band
    (or each value), or a rate per bucket with Wilson 95% band, against the reference's
    median and band; each alert once (its estimated change, its detection, the level since);
    the site's events along the bottom edge."""
    data: list[Trace] = []
    layout = _base_layout(q.name, q.axis_title, height)
    scale = 100.0 if q.is_rate else 1.0
    unit = "%" if q.is_rate else (q.unit or "")
    s = q.summary
    x0, x1 = q.first, q.last
    highs: list[float] = []
    if q.reference is not None and x0 and x1:
        r = q.reference
        data.append(
            _band(
                [x0, x1],
                [r.low * scale] * 2,
                [r.high * scale] * 2,
                name=r.band_label,
                fillcolor=_rgba(COLORS["ok"], 0.13),
                legendgroup="reference",
            )
        )
        data.append(
            _line(
                [x0, x1],
                [r.centre * scale] * 2,
                name=r.centre_label,
                line={"color": COLORS["ok"], "dash": "dash", "width": 1.5},
                legendgroup="reference",
                hoverinfo="name",
            )
        )
        highs.append(r.high * scale)
    centre = [v * scale for v in s.centre]
    if s.banded:
        low, high = [v * scale for v in s.low], [v * scale for v in s.high]
        per = "day" if not q.is_rate else s.bucket
        band_name = f"Wilson 95% interval per {per}" if q.is_rate else "interquartile range per day"
        data.append(
            _band(s.times, low, high, name=band_name, fillcolor=_rgba(COLORS["series"], 0.2))
        )
        what = "share" if q.is_rate else "median"
        spread = "95% CI" if q.is_rate else "IQR"
        data.append(
            _line(
                s.times,
                centre,
                mode="lines+markers" if len(s.times) < 200 else "lines",
                name=f"share per {per} (%)" if q.is_rate else with_unit("median per day", q.unit),
                line={"color": COLORS["series"], "width": 1.5},
                marker={"size": 4},
                text=s.labels,
                customdata=[
                    [n, lo, hi]
                    for n, lo, hi in zip(s.counts, _short(low), _short(high), strict=True)
                ],
                hovertemplate=(
                    f"%{{text}}: {what} %{{y:.4g}} {unit} ({spread} %{{customdata[1]:.4g}} to "
                    f"%{{customdata[2]:.4g}}, n = %{{customdata[0]}})<extra></extra>"
                ),
            )
        )
        highs += high
    else:
        data.append(
            {
                "type": "scatter",
                "x": s.times,
                "y": _short(centre),
                "mode": "markers",
                "name": with_unit("each value", q.unit),
                "marker": {"color": COLORS["series"], "size": 5, "opacity": 0.7},
                "hovertemplate": f"%{{x}}: %{{y:.4g}} {unit}<extra></extra>",
            }
        )
        highs += centre
    if q.monitoring_from:
        _vline(layout, q.monitoring_from, "monitoring from", "#888", "dot", 1)
    data += _episodes(layout, q, scale)
    data += _events(events)
    if q.is_rate:
        _percent_axis(layout, highs)
    return _figure(data, layout)


def _episodes(layout: Layout, q: QuantityChart, scale: float) -> list[Trace]:
    """Each alert once: a dotted line at its estimated change, the level since the change, and
    one marker at its detection (a repeat is not another marker)."""
    data: list[Trace] = []
    for e in q.episodes:
        if e.change_at:
            text = f"estimated change (alert {e.alert_id})"
            _vline(layout, e.change_at, text, COLORS["change"], "dot", 2)
        if e.after is not None and e.start and e.after_until:
            level = f"{e.after:.1%}" if q.is_rate else format_value(e.after, q.unit)
            data.append(
                _line(
                    [e.start, e.after_until],
                    [e.after * scale] * 2,
                    name=f"since the change (alert {e.alert_id}): "
                    f"{'rate' if q.is_rate else 'median'} {level}",
                    line={"color": COLORS["change"], "width": 3},
                    hoverinfo="name",
                )
            )
    marker = _episode_markers(q.episodes)
    return data + ([marker] if marker else [])


def _episode_markers(episodes: Sequence[Episode]) -> Trace | None:
    shown = [e for e in episodes if e.detected_at]
    if not shown:
        return None
    return {
        "type": "scatter",
        "x": [e.detected_at for e in shown],
        "y": [0.97] * len(shown),
        "yaxis": "y2",
        "mode": "markers",
        "name": "alert detected (one marker per alert)",
        "text": [e.text for e in shown],
        "hovertemplate": "%{x}: %{text}<extra></extra>",
        "marker": {"color": COLORS["alarm"], "size": 13, "symbol": "triangle-down"},
    }


def _events(events: Sequence[Event]) -> list[Trace]:
    by_kind: dict[str, list[Event]] = {}
    for e in events:
        by_kind.setdefault(e.kind, []).append(e)
    return [
        {
            "type": "scatter",
            "x": [e.at for e in items],
            "y": [0.03] * len(items),
            "yaxis": "y2",
            "mode": "markers",
            "name": EVENT_KINDS[kind],
            "text": [e.text for e in items],
            "hovertemplate": "%{x}: %{text}<extra></extra>",
            "marker": {
                "color": EVENT_COLORS[kind],
                "size": 11,
                "symbol": EVENT_SYMBOLS[kind],
                "line": {"color": "#fff", "width": 1},
            },
        }
        for kind, items in by_kind.items()
    ]


def stream_chart(name: str, path: StreamPath, episodes: Sequence[Episode]) -> Markup:
    """The detector's statistic over the monitored observations against its threshold (the
    replay), for the statistician: each alarm a small dot, each alert one marker."""
    layout = _base_layout(f"{name}: {path.detector} statistic", "statistic", 300)
    data = [
        _line(
            path.times, path.values, name=path.label, line={"color": COLORS["series"], "width": 1}
        )
    ]
    if path.times:
        data.append(
            _line(
                [path.times[0], path.times[-1]],
                [path.threshold] * 2,
                name=f"threshold {path.threshold:.2f}",
                line={"color": COLORS["threshold"], "dash": "dash"},
            )
        )
    if path.alarms:
        data.append(
            {
                "type": "scatter",
                "x": [t for t, _ in path.alarms],
                "y": _short([v for _, v in path.alarms]),
                "mode": "markers",
                "name": f"alarm ({len(path.alarms)}; the chart restarts after each)",
                "marker": {"color": COLORS["alarm"], "size": 4},
            }
        )
    for e in episodes:
        if e.change_at:
            text = f"estimated change (alert {e.alert_id})"
            _vline(layout, e.change_at, text, COLORS["change"], "dot", 2)
    marker = _episode_markers(episodes)
    if marker:
        data.append(marker)
    return _figure(data, layout)


def performance_chart(perf: Performance) -> Markup:
    """Sensitivity, specificity and PPV per bucket on one 0-100% axis, each with its Wilson
    95% band, and the validated baseline of each when the configuration states one."""
    layout = _base_layout(f"Performance from labelled feedback, per {perf.bucket}", "%", 380)
    layout["yaxis"].update({"range": [0, 101], "ticksuffix": "%"})
    data: list[Trace] = []
    first = min((s.times[0] for s in perf.series if s.times), default=None)
    last = max((s.times[-1] for s in perf.series if s.times), default=None)
    for s in perf.series:
        color = METRIC_COLORS.get(s.label, COLORS["series"])
        low, high = [v * 100 for v in s.low], [v * 100 for v in s.high]
        data.append(
            _band(
                s.times,
                low,
                high,
                name=f"{s.label} Wilson 95% interval",
                fillcolor=_rgba(color, 0.15),
                legendgroup=s.label,
            )
        )
        data.append(
            _line(
                s.times,
                [v * 100 for v in s.values],
                mode="lines+markers",
                name=f"{s.label} ({s.what})",
                legendgroup=s.label,
                line={"color": color, "width": 1.5},
                marker={"size": 4},
                text=s.labels,
                customdata=[
                    [k, n, lo, hi]
                    for k, n, lo, hi in zip(
                        s.successes, s.counts, _short(low), _short(high), strict=True
                    )
                ],
                hovertemplate=(
                    f"%{{text}}: {s.label} %{{y:.1f}}% (%{{customdata[0]}} of %{{customdata[1]}}; "
                    "95% CI %{customdata[2]:.1f} to %{customdata[3]:.1f}%)<extra></extra>"
                ),
            )
        )
        baseline = perf.baseline.get(s.label.lower())
        if baseline is not None and first and last:
            data.append(
                _line(
                    [first, last],
                    [baseline * 100] * 2,
                    name=f"{s.label} validated baseline {baseline:.0%}",
                    legendgroup=s.label,
                    line={"color": color, "dash": "dash", "width": 1.5},
                    hoverinfo="name",
                )
            )
    return _figure(data, layout)


def dice_chart(perf: Performance) -> Markup | None:
    """The mean Dice of physicians' edits per bucket, with its normal 95% interval (0-1)."""
    s = perf.dice
    if s is None:
        return None
    layout = _base_layout("Dice of physicians' edits", "Dice (0-1)", 300)
    layout["yaxis"]["range"] = [0, 1.01]
    data = [
        _band(s.times, s.low, s.high, name="95% interval", fillcolor=_rgba(COLORS["series"], 0.2)),
        _line(
            s.times,
            s.values,
            mode="lines+markers",
            name=f"mean Dice per {perf.bucket}",
            text=s.labels,
            customdata=s.counts,
            hovertemplate="%{text}: %{y:.3f} (n = %{customdata})<extra></extra>",
            line={"color": COLORS["series"]},
        ),
    ]
    return _figure(data, layout)


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
            spans_y += [_subject(a, device_names), _subject(a, device_names), None]
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
                y=[_subject(a, device_names) for a, _ in items],
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


def _subject(a: Alert, device_names: Mapping[int, str]) -> str:
    if a.deployment_id:
        return a.deployment_id
    if a.device_id is None:
        return "-"
    return device_names.get(a.device_id) or unknown_device(a.device_id)
