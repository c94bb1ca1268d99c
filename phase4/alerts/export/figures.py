"""The surveillance report's trend figures, drawn with fpdf2's own vector primitives.

A periodic safety update report (MDR Art. 86) and the AI Act's post-market monitoring (Art. 72)
are read for trends: whether performance stays at the validated level month after month, and
what happened when. Two figures show them, from the report's JSON only (so they show exactly
the numbers of its tables):

- performance per month (sensitivity, specificity, PPV): the estimate, its 95 % Wilson band,
  the validated value and the value less the plan's margin, months below marked;
- volume and findings over time: studies per month as bars, and below them on the same time
  axis the drift findings (estimated start to detection), phantom QC episodes, incidents, and
  pauses recorded.

Vector drawing keeps the PDF small and its numbers exact, and needs no plotting library (no
new dependency: fpdf2 is already the PDF writer). Colours are kept apart from the tables'
greys so that a rendered page shows the figures (the tests look for them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from fpdf import FPDF

from phase4.alerts.export.psur import MIN_LABELLED

BLUE = (31, 94, 168)
BAND = (190, 212, 240)
GREEN = (0, 128, 64)
RED = (200, 30, 30)
ORANGE = (230, 120, 0)
PURPLE = (120, 60, 160)
BAR = (120, 150, 190)
AXIS = (60, 60, 60)
GRID = (215, 215, 215)
THIN = (150, 150, 150)
PERFORMANCE_HEIGHT = 56.0  # mm, the panels and their legend


def _text(pdf: FPDF, x: float, y: float, text: str, size: float = 6, align: str = "L") -> None:
    pdf.set_font("Helvetica", size=size)
    width = pdf.get_string_width(text)
    if align == "C":
        x -= width / 2
    elif align == "R":
        x -= width
    pdf.text(x, y, text)


def _month_label(month: str) -> str:
    return month[2:].replace("-", "/")  # 2026-03 -> 26/03


def _range(values: Sequence[float]) -> tuple[float, float]:
    lo = min(values, default=0.5)
    lo = max(0.0, min(lo - 0.05, 0.8))
    return (int(lo * 10) / 10, 1.0)


def performance_panel(
    pdf: FPDF,
    x: float,
    y: float,
    w: float,
    h: float,
    title: str,
    months: Sequence[Mapping[str, Any]],
    metric: str,
    baseline: Mapping[str, Any] | None,
    margin: float,
    below: Sequence[str],
    min_n: int = MIN_LABELLED,
) -> None:
    """One metric per month: estimate and 95 % band, the validated value (and less the margin)."""
    known = [(i, m[metric]) for i, m in enumerate(months) if m[metric].get("value") is not None]
    # A month with too few labelled cases is shown as a hollow grey mark, without its band,
    # and does not set the scale: its interval is too wide to say anything.
    points = [(i, b) for i, b in known if b["n"] >= min_n]
    thin = [(i, b) for i, b in known if b["n"] < min_n]
    lows = [b["ci_low"] for _, b in points]
    if baseline is not None:
        lows.append(baseline["value"] - margin)
    y_lo, y_hi = _range(lows)
    left, bottom = x + 9, y + h - 7
    pw, ph = w - 11, h - 13
    top = bottom - ph
    n = max(1, len(months))

    def px(i: float) -> float:
        return left + (i + 0.5) * pw / n

    def py(v: float) -> float:
        return bottom - (min(max(v, y_lo), y_hi) - y_lo) / (y_hi - y_lo) * ph

    pdf.set_text_color(0)
    pdf.set_font("Helvetica", "B", 7)
    pdf.text(left, y + 3, title)
    # grid and axes
    pdf.set_line_width(0.1)
    step = 0.1 if y_hi - y_lo > 0.3 else 0.05
    v = y_lo
    while v <= y_hi + 1e-9:
        pdf.set_draw_color(*GRID)
        pdf.line(left, py(v), left + pw, py(v))
        _text(pdf, left - 1, py(v) + 1, f"{100 * v:.0f}%", 5.5, "R")
        v = round(v + step, 6)
    pdf.set_draw_color(*AXIS)
    pdf.line(left, top, left, bottom)
    pdf.line(left, bottom, left + pw, bottom)
    label_every = 1 if n <= 13 else 2
    for i, m in enumerate(months):
        if i % label_every == 0:
            _text(pdf, px(i), bottom + 3.5, _month_label(m["month"]), 5, "C")
    # the 95 % band, one polygon per run of months with data
    runs: list[list[tuple[int, Mapping[str, Any]]]] = []
    for i, b in points:
        if runs and runs[-1][-1][0] == i - 1:
            runs[-1].append((i, b))
        else:
            runs.append([(i, b)])
    pdf.set_fill_color(*BAND)
    pdf.set_draw_color(*BAND)
    for run in runs:
        if len(run) == 1:
            i, b = run[0]
            pdf.rect(px(i) - 1, py(b["ci_high"]), 2, py(b["ci_low"]) - py(b["ci_high"]), style="F")
            continue
        upper = [(px(i), py(b["ci_high"])) for i, b in run]
        lower = [(px(i), py(b["ci_low"])) for i, b in reversed(run)]
        pdf.polygon(upper + lower, style="F")
    # the validated value and the value less the margin
    if baseline is not None:
        pdf.set_draw_color(*GREEN)
        pdf.set_line_width(0.35)
        pdf.set_dash_pattern(dash=1.5, gap=1)
        pdf.line(left, py(baseline["value"]), left + pw, py(baseline["value"]))
        if margin:
            pdf.set_line_width(0.2)
            pdf.set_dash_pattern(dash=0.5, gap=1)
            pdf.line(
                left, py(baseline["value"] - margin), left + pw, py(baseline["value"] - margin)
            )
        pdf.set_dash_pattern()
    # the estimate
    pdf.set_draw_color(*BLUE)
    pdf.set_line_width(0.4)
    for run in runs:
        if len(run) > 1:
            pdf.polyline([(px(i), py(b["value"])) for i, b in run])
    for i, b in points:
        month = months[i]["month"]
        pdf.set_fill_color(*(RED if month in below else BLUE))
        pdf.rect(px(i) - 0.7, py(b["value"]) - 0.7, 1.4, 1.4, style="F")
    pdf.set_draw_color(*THIN)
    pdf.set_line_width(0.3)
    for i, b in thin:
        pdf.rect(px(i) - 0.7, py(b["value"]) - 0.7, 1.4, 1.4, style="D")
    pdf.set_line_width(0.2)
    pdf.set_draw_color(0)


def performance_figure(
    pdf: FPDF, months: Sequence[Mapping[str, Any]], comparison: Mapping[str, Any]
) -> float:
    """Three panels side by side at the current position; returns the height used."""
    x, y = pdf.l_margin, pdf.get_y()
    w = (pdf.w - pdf.l_margin - pdf.r_margin) / 3
    h = PERFORMANCE_HEIGHT - 5
    for k, row in enumerate(comparison["metrics"]):
        title = {"sensitivity": "Sensitivity", "specificity": "Specificity", "ppv": "PPV"}[
            row["metric"]
        ]
        performance_panel(
            pdf,
            x + k * w,
            y,
            w - 3,
            h,
            title,
            months,
            row["metric"],
            row["baseline"],
            comparison["margin"],
            row["months_below"],
        )
    _legend(
        pdf,
        x,
        y + h + 1,
        [
            (BLUE, "monthly estimate"),
            (BAND, "95 % Wilson interval"),
            (GREEN, "validated value (dashed), less the plan's margin (dotted)"),
            (RED, "month below the validated value"),
            (THIN, f"month with fewer than {MIN_LABELLED} labelled cases (no band)"),
        ],
    )
    return h + 5


def _legend(
    pdf: FPDF, x: float, y: float, entries: Sequence[tuple[tuple[int, int, int], str]]
) -> None:
    for colour, label in entries:
        pdf.set_fill_color(*colour)
        pdf.rect(x, y + 0.5, 3, 2, style="F")
        _text(pdf, x + 4, y + 2.3, label, 6)
        x += 8 + pdf.get_string_width(label)
    pdf.set_fill_color(255)


def _when(stamp: str | None) -> datetime | None:
    if not stamp:
        return None
    at = datetime.fromisoformat(stamp)
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def timeline_figure(pdf: FPDF, report: Mapping[str, Any]) -> float:
    """Studies per month as bars, and the findings on the same time axis below; returns the
    height used."""
    period = report["period"]
    lo = _when(period["from_utc"])
    hi = _when(period["until_utc_exclusive"])
    assert lo is not None and hi is not None
    x0, y0 = pdf.l_margin, pdf.get_y()
    width = pdf.w - pdf.l_margin - pdf.r_margin
    left = x0 + 32
    pw = width - 34
    span = (hi - lo).total_seconds()

    def tx(at: datetime) -> float:
        return left + min(max((at - lo).total_seconds() / span, 0.0), 1.0) * pw

    # bars: studies per month
    bars_h, bars_top = 30.0, y0 + 4
    bottom = bars_top + bars_h
    months = report["usage"]["by_month"]
    peak = max((m["records"] for m in months), default=0) or 1
    pdf.set_font("Helvetica", "B", 7)
    pdf.text(x0, y0 + 3, "Studies per month")
    pdf.set_draw_color(*AXIS)
    pdf.set_line_width(0.1)
    pdf.line(left, bars_top, left, bottom)
    pdf.line(left, bottom, left + pw, bottom)
    _text(pdf, left - 1, bars_top + 2, str(peak), 5.5, "R")
    _text(pdf, left - 1, bottom, "0", 5.5, "R")
    pdf.set_fill_color(*BAR)
    for m in months:
        start = datetime.fromisoformat(m["month"] + "-01").replace(tzinfo=UTC)
        end = (
            start.replace(year=start.year + 1, month=1)
            if start.month == 12
            else start.replace(month=start.month + 1)
        )
        a, b = tx(max(start, lo)), tx(min(end, hi))
        height = m["records"] / peak * (bars_h - 3)
        if b - a > 0.6 and height > 0:
            pdf.rect(a + 0.3, bottom - height, b - a - 0.6, height, style="F")
        if b - a > 6:
            _text(pdf, (a + b) / 2, bottom + 3, _month_label(m["month"]), 5, "C")
            if m["records"]:
                _text(pdf, (a + b) / 2, bottom - height - 0.8, str(m["records"]), 5, "C")
    # lanes: drift findings, phantom QC, incidents, pauses
    lanes_top = bottom + 6
    lane_h = 5.5
    lanes = [
        ("Drift findings", ORANGE),
        ("Phantom QC out of tolerance", RED),
        ("Incidents (awareness)", PURPLE),
        ("Pause recorded", (0, 0, 0)),
    ]
    for k, (name, _) in enumerate(lanes):
        yy = lanes_top + k * lane_h
        pdf.set_draw_color(*GRID)
        pdf.line(left, yy + lane_h / 2, left + pw, yy + lane_h / 2)
        pdf.set_text_color(0)
        _text(pdf, x0, yy + lane_h / 2 + 1, name, 6)
    drift_y = lanes_top + lane_h / 2
    pdf.set_line_width(0.6)
    for d in report["drift_findings"]:
        start, detected = _when(d["change_start"]), _when(d["detected_at"])
        if detected is None:
            continue
        pdf.set_draw_color(*ORANGE)
        pdf.set_fill_color(*ORANGE)
        if start is not None and start < detected:
            pdf.line(tx(start), drift_y, tx(detected), drift_y)
        x = tx(detected)
        pdf.polygon(
            [(x, drift_y - 1.6), (x - 1.2, drift_y + 1.2), (x + 1.2, drift_y + 1.2)], style="F"
        )
    qc_y = drift_y + lane_h
    pdf.set_draw_color(*RED)
    pdf.set_line_width(0.3)
    for f in report["phantom_qc"]["failures"]:
        at = _when(f["acquired_at"])
        if at is not None:
            pdf.line(tx(at), qc_y - 1.5, tx(at), qc_y + 1.5)
    inc_y = qc_y + lane_h
    pdf.set_fill_color(*PURPLE)
    for inc in report["incidents"]:
        at = _when(inc["aware_at"])
        if at is not None:
            x = tx(at)
            pdf.polygon(
                [(x, inc_y - 1.6), (x + 1.6, inc_y), (x, inc_y + 1.6), (x - 1.6, inc_y)], style="F"
            )
    pause_y = inc_y + lane_h
    pdf.set_fill_color(0)
    for p in report["usage"]["pauses"]:
        at = _when(p["recorded_at"])
        if at is not None:
            pdf.rect(tx(at) - 1, pause_y - 1.2, 2, 2.4, style="F")
    # time axis
    axis_y = lanes_top + len(lanes) * lane_h + 1
    pdf.set_draw_color(*AXIS)
    pdf.set_line_width(0.1)
    pdf.line(left, axis_y, left + pw, axis_y)
    _text(pdf, left, axis_y + 3, period["from"], 5.5, "L")
    _text(pdf, left + pw, axis_y + 3, period["to"], 5.5, "R")
    pdf.set_line_width(0.2)
    pdf.set_draw_color(0)
    pdf.set_fill_color(255)
    return axis_y + 5 - y0
