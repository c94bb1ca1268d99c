"""The opening of an alert's drift report, in words, tables and inline SVG: what the window test
says about the alerted feature, why it may disagree with the detector, the other fields most
changed first, and evidently's dataset-level count last.

Pure rendering: ``phase4.monitor.surveillance.reports`` computes every number (with
``phase4.monitor.drift.window_tests``) and hands a :class:`ReportPage` here. The page is placed
before evidently's own report in one HTML document, which the dashboard serves sandboxed
(scripts in an opaque origin): the opening needs no script, its charts are SVG drawn here, and
everything taken from the store is HTML-escaped.

Units are read from a field's name, the convention of the probes (``injected_activity_mbq``,
``uptake_time_s``, ``tmtv_ml``; an SUV has none): a field whose name carries no known suffix is
shown without one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from html import escape
from typing import Any

import numpy as np

from phase4.monitor.core.quantities import quantity_of
from phase4.monitor.drift.window_tests import POWER_TARGET, WindowTest

REFERENCE_COLOUR = "#7b8794"
WINDOW_COLOUR = "#c0392b"


def unit_of(name: str) -> str:
    """The unit a field's name states (``features.injected_activity_mbq`` → ``MBq``), or ''
    (``phase4.monitor.core.quantities``, the one suffix table)."""
    return quantity_of(name).unit


def fmt(x: float | None, unit: str = "", digits: int = 3) -> str:
    """A number to ``digits`` significant digits, with its unit."""
    if x is None or not math.isfinite(x):
        return "—"
    if x == 0:
        text = "0"
    else:
        magnitude = math.floor(math.log10(abs(x)))
        decimals = max(0, digits - 1 - magnitude)
        text = f"{x:,.{decimals}f}" if abs(x) < 1e6 else f"{x:.{digits}g}"
    if not unit:
        return text
    return f"{text} {unit}" if unit not in ("%",) else f"{text}{unit}"


def fmt_signed(x: float | None, unit: str = "") -> str:
    if x is None or not math.isfinite(x):
        return "—"
    return ("+" if x > 0 else "−" if x < 0 else "±") + fmt(abs(x), unit)


def fmt_p(p: float | None) -> str:
    """A p-value: two significant digits, powers of ten below 0.001, and a floor."""
    if p is None or not math.isfinite(p):
        return "—"
    if p < 1e-15:
        return "p < 10⁻¹⁵"
    if p < 1e-3:
        mantissa, exponent = f"{p:.1e}".split("e")
        sup = str(int(exponent)).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))
        return f"p = {mantissa} × 10{sup}"
    return f"p = {p:.2g}"


def fmt_share(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "—"
    return f"{100 * x:.1f}%" if x < 0.995 or x == 1 else f"{100 * x:.2f}%"


def fmt_when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else "—"


def statistic_text(test: WindowTest) -> str:
    if test.test == "chisquare" and not math.isfinite(test.statistic):
        return "χ² = ∞ (a value the reference never had)"
    digits = 2 if test.test != "chisquare" else 3
    return f"{test.statistic_name} = {fmt(test.statistic, digits=digits)}"


@dataclass
class Comparison:
    """One field compared in both windows: its usable values, its test (None when a window
    holds no value of it) and evidently's p-value for it, when evidently ran."""

    field: str
    kind: str
    reference: list[Any]
    window: list[Any]
    test: WindowTest | None
    evidently_p: float | None = None

    @property
    def unit(self) -> str:
        return unit_of(self.field) if self.kind == "numeric" else ""

    @property
    def distance(self) -> float:
        """How far apart the windows are, on [0, 1]: KS distance for a number, total variation
        distance of the shares for a yes/no or a category."""
        if self.test is None:
            return 0.0
        if self.kind == "numeric":
            return float(self.test.statistic)
        ref, win = shares(self.reference), shares(self.window)
        return 0.5 * sum(
            abs(ref.get(k, 0.0) - win.get(k, 0.0)) for k in sorted(set(ref) | set(win))
        )

    def order_key(self) -> tuple[int, float, float]:
        """Most changed first: smallest p-value, ties (p-values that underflow) by distance;
        fields without a test last."""
        if self.test is None:
            return (1, 1.0, 0.0)
        return (0, self.test.p_value, -self.distance)

    def summary(self, values: Sequence[Any]) -> str:
        if not values:
            return "no values"
        if self.kind == "numeric":
            x = np.asarray(values, float)
            q1, med, q3 = np.percentile(x, [25, 50, 75])
            return f"median {fmt(med, self.unit)} (IQR {fmt(q1)}–{fmt(q3)})"
        s = shares(values)
        if self.kind == "binary":
            return f"{fmt_share(s.get('true', 0.0))} yes"
        top = sorted(s.items(), key=lambda kv: -kv[1])[:2]
        return ", ".join(f"{escape_short(k)} {fmt_share(v)}" for k, v in top)

    def change(self) -> str:
        if not self.reference or not self.window:
            return "—"
        if self.kind == "numeric":
            ref = float(np.median(np.asarray(self.reference, float)))
            win = float(np.median(np.asarray(self.window, float)))
            rel = f" ({fmt_signed(100 * (win - ref) / abs(ref), '%')})" if ref else ""
            return f"median {fmt_signed(win - ref, self.unit)}{rel}"
        ref_s, win_s = shares(self.reference), shares(self.window)
        if self.kind == "binary":
            d = win_s.get("true", 0.0) - ref_s.get("true", 0.0)
            return f"{fmt_signed(100 * d)} points"
        # the category whose share moved most; on a tie, one the reference never had
        key = max(
            sorted(set(ref_s) | set(win_s)),
            key=lambda k: (round(abs(win_s.get(k, 0) - ref_s.get(k, 0)), 12), k not in ref_s),
        )
        return (
            f"{escape_short(key)}: {fmt_share(ref_s.get(key, 0.0))} → "
            f"{fmt_share(win_s.get(key, 0.0))}"
        )


def escape_short(value: Any, limit: int = 40) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shares(values: Sequence[Any]) -> dict[str, float]:
    counts: dict[str, int] = {}
    for v in values:
        key = ("true" if v else "false") if isinstance(v, bool) else str(v)
        counts[key] = counts.get(key, 0) + 1
    total = sum(counts.values()) or 1
    return {k: c / total for k, c in counts.items()}


@dataclass
class Sensitivity:
    """Why the window test may not see what the detector saw, in numbers.

    ``shift`` is what the detector found: for a number, a shift in reference SD of normal
    scores (``shift_unit`` the same in the feature's unit, about); for a yes/no, the window's
    rate (``reference_rate`` the reference's); None for a windowed detector, which states no
    shift of its own. ``power``: the window test's probability of rejecting at that shift with
    these sample sizes; ``detectable``: the shift (or rate) it detects with 80% probability
    (None: none on that side)."""

    detector: str
    accumulated: int
    window: int
    reference: int
    kind: str
    shift: float | None
    shift_source: str
    power: float | None
    detectable: float | None
    shift_unit: float | None = None
    detectable_unit: float | None = None
    observed: float | None = None  # the window's own shift on the same scale as ``shift``
    reference_rate: float | None = None
    smoothing: float | None = None  # an EWMA's λ


@dataclass
class Subject:
    """What the alert is about, in both windows."""

    stream: str
    label: str
    comparison: Comparison
    note: str | None = None
    sensitivity: Sensitivity | None = None


@dataclass
class ReportPage:
    alert_id: int
    title: str
    stream: str
    detector: str
    detected_at: datetime | None
    change_at: datetime | None
    since_records: int
    since_values: int
    after_records: int
    after_values: int
    wanted: int
    extension_open: bool
    extend_until: datetime
    reference_records: int
    reference_values: int
    reference_from: datetime | None
    reference_to: datetime | None
    reference_note: str | None
    unit_word: str  # "records" or "labelled outcomes"
    subject: Subject | None
    others: list[Comparison]
    built_at: datetime
    evidently_ran: bool = True
    evidently_note: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def tested(self) -> list[Comparison]:
        every = ([self.subject.comparison] if self.subject else []) + self.others
        return [c for c in every if c.test is not None]

    @property
    def drifted(self) -> int:
        """Features whose window test rejects (evidently's p when it ran: the same tests)."""
        n = 0
        for c in self.tested:
            p = c.evidently_p if c.evidently_p is not None else c.test.p_value  # type: ignore[union-attr]
            n += p < c.test.alpha  # type: ignore[union-attr]
        return n


def drifted_words(count: int, of: int) -> str:
    """'7 of 15 features (47%) drifted in the window test'."""
    if of <= 0:
        return "no feature could be tested in the window"
    return f"{count} of {of} features ({round(100 * count / of)}%) drifted in the window test"


# --- charts ----------------------------------------------------------------------------------

W, H = 600, 230
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 28, 44


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw)
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step) + 1)]


def _legend(x: float) -> str:
    return (
        f'<rect x="{x}" y="8" width="12" height="10" fill="{REFERENCE_COLOUR}" opacity="0.55"/>'
        f'<text x="{x + 16}" y="17">reference</text>'
        f'<rect x="{x + 90}" y="8" width="12" height="10" fill="none" '
        f'stroke="{WINDOW_COLOUR}" stroke-width="2"/>'
        f'<text x="{x + 106}" y="17">since the change</text>'
    )


def numeric_chart(reference: Sequence[float], window: Sequence[float], unit: str) -> str:
    """Both windows' histograms (share of each window per bin) on shared bins, with medians."""
    ref, win = np.asarray(reference, float), np.asarray(window, float)
    both = np.concatenate([ref, win])
    lo, hi = float(both.min()), float(both.max())
    if hi <= lo:
        lo, hi = float(both.min()) - 0.5, float(both.max()) + 0.5
    edges = np.linspace(lo, hi, 26)
    h_ref = np.histogram(np.clip(ref, lo, hi), edges)[0] / max(len(ref), 1)
    h_win = np.histogram(np.clip(win, lo, hi), edges)[0] / max(len(win), 1)
    top = max(float(h_ref.max()), float(h_win.max()), 1e-9) * 1.1
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def px(v: float) -> float:
        return LEFT + (v - lo) / (hi - lo) * pw

    def py(v: float) -> float:
        return TOP + ph - v / top * ph

    parts = [
        f'<svg class="dist" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
        f'aria-label="distribution before and after the change">',
        f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="#fafbfc" stroke="#dde"/>',
    ]
    for t in _ticks(0, top, 4):
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + pw}" y1="{py(t):.1f}" y2="{py(t):.1f}" '
            f'stroke="#e6e8eb"/><text x="{LEFT - 6}" y="{py(t) + 4:.1f}" '
            f'text-anchor="end">{round(100 * t)}%</text>'
        )
    for i, share in enumerate(h_ref):
        x0, x1 = px(edges[i]), px(edges[i + 1])
        parts.append(
            f'<rect x="{x0:.1f}" y="{py(share):.1f}" width="{x1 - x0:.1f}" '
            f'height="{TOP + ph - py(share):.1f}" fill="{REFERENCE_COLOUR}" opacity="0.55"/>'
        )
    path = [f"M{px(edges[0]):.1f},{py(0):.1f}"]
    for i, share in enumerate(h_win):
        path.append(f"L{px(edges[i]):.1f},{py(share):.1f}L{px(edges[i + 1]):.1f},{py(share):.1f}")
    path.append(f"L{px(edges[-1]):.1f},{py(0):.1f}")
    parts.append(
        f'<path d="{"".join(path)}" fill="none" stroke="{WINDOW_COLOUR}" stroke-width="2"/>'
    )
    for values, colour, label in (
        (ref, REFERENCE_COLOUR, "median"),
        (win, WINDOW_COLOUR, "median"),
    ):
        if len(values):
            m = float(np.clip(np.median(values), lo, hi))
            parts.append(
                f'<line x1="{px(m):.1f}" x2="{px(m):.1f}" y1="{TOP}" y2="{TOP + ph}" '
                f'stroke="{colour}" stroke-dasharray="5,3" stroke-width="1.5">'
                f"<title>{label} {escape(fmt(m, unit))}</title></line>"
            )
    for t in _ticks(float(lo), float(hi)):
        parts.append(
            f'<line x1="{px(t):.1f}" x2="{px(t):.1f}" y1="{TOP + ph}" y2="{TOP + ph + 4}" '
            f'stroke="#889"/><text x="{px(t):.1f}" y="{TOP + ph + 17}" '
            f'text-anchor="middle">{escape(fmt(t))}</text>'
        )
    axis = f"value ({escape(unit)})" if unit else "value"
    parts.append(
        f'<text x="{LEFT + pw / 2}" y="{H - 6}" text-anchor="middle">{axis}; dashed: medians</text>'
    )
    parts.append(_legend(LEFT + pw - 230))
    parts.append("</svg>")
    return "".join(parts)


def shares_chart(reference: Sequence[Any], window: Sequence[Any], limit: int = 8) -> str:
    """Each category's share of both windows, as paired horizontal bars."""
    ref, win = shares(reference), shares(window)
    keys = sorted(set(ref) | set(win), key=lambda k: (-max(ref.get(k, 0), win.get(k, 0)), k))
    if len(keys) > limit:
        rest = keys[limit - 1 :]
        keys = keys[: limit - 1]
        ref["(others)"] = sum(ref.get(k, 0) for k in rest)
        win["(others)"] = sum(win.get(k, 0) for k in rest)
        keys.append("(others)")
    row = 34
    height = TOP + row * len(keys) + 12
    label_w = 170
    pw = W - label_w - RIGHT - 60
    parts = [
        f'<svg class="dist" viewBox="0 0 {W} {height}" width="{W}" height="{height}" '
        'role="img" aria-label="shares before and after the change">'
    ]
    for i, k in enumerate(keys):
        y = TOP + i * row
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 19}" text-anchor="end">'
            f"{escape(escape_short(k, 24))}</text>"
        )
        for j, (s, colour) in enumerate(
            ((ref.get(k, 0.0), REFERENCE_COLOUR), (win.get(k, 0.0), WINDOW_COLOUR))
        ):
            yy = y + 3 + j * 14
            parts.append(
                f'<rect x="{label_w}" y="{yy}" width="{max(s * pw, 0.5):.1f}" height="12" '
                f'fill="{colour}" opacity="{0.55 if j == 0 else 0.9}"/>'
                f'<text x="{label_w + s * pw + 4:.1f}" y="{yy + 10}">{fmt_share(s)}</text>'
            )
    parts.append(
        f'<rect x="{W - 250}" y="8" width="12" height="10" fill="{REFERENCE_COLOUR}" '
        f'opacity="0.55"/><text x="{W - 234}" y="17">reference</text>'
        f'<rect x="{W - 160}" y="8" width="12" height="10" fill="{WINDOW_COLOUR}" '
        f'opacity="0.9"/><text x="{W - 144}" y="17">since the change</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def chart(c: Comparison) -> str:
    if not c.reference or not c.window:
        return ""
    if c.kind == "numeric":
        return numeric_chart(c.reference, c.window, c.unit)
    if c.kind == "binary":
        words = {True: "yes", False: "no"}
        return shares_chart(
            [words[bool(v)] for v in c.reference], [words[bool(v)] for v in c.window]
        )
    return shares_chart(c.reference, c.window)


# --- words -------------------------------------------------------------------------------------

DETECTOR_WORDS = {
    "cusum": "CUSUM",
    "ewma": "EWMA",
    "spread": "spread CUSUM",
    "ks": "windowed KS test",
    "bernoulli_cusum": "Bernoulli CUSUM",
    "chi_square": "windowed G-test",
    "cbpe": "chart of the estimated performance",
}


def detector_words(detector: str) -> str:
    return DETECTOR_WORDS.get(detector, detector or "detector")


def _size(s: Sensitivity, unit: str, value: float | None, in_unit: float | None) -> str:
    """A shift in reference SD (and about that in the unit), or a rate."""
    if value is None:
        return "—"
    if s.kind == "binary":
        return fmt_share(value)
    sd = f"{fmt(abs(value), digits=2)} reference SD"
    return f"{sd}, about {fmt(abs(in_unit), unit)}" if in_unit is not None and unit else sd


def fmt_probability(p: float) -> str:
    if p > 0.999:
        return "more than 99.9%"
    if p < 0.001:
        return "less than 0.1%"
    return fmt_share(p)


def sensitivity_paragraphs(page: ReportPage, subject: Subject) -> list[str]:
    """Why the window test does not reject although the detector alarmed: plain sentences
    (HTML-escaped by the caller)."""
    c, s = subject.comparison, subject.sensitivity
    det = detector_words(page.detector)
    u = page.unit_word
    one = u[:-1]  # "record", "labelled outcome"
    target = f"{round(100 * POWER_TARGET)}%"
    if s is None or s.shift is None or s.power is None:
        if page.detector in ("chi_square", "ks", "cbpe"):
            out = [
                f"The {det} judged its own window of {u}, the one that ended at its alarm, at "
                "a level set by the false-alarm budget; this test judges the "
                f"{c.test.n_window if c.test else 0} {u} from the change estimate on, against "
                "the reference: a change confined to part of that span is diluted in it."
            ]
        else:
            out = [
                f"That is not a contradiction. The {det} weighs each of the {u} since its "
                "change estimate as it arrives and alarms when the accumulated evidence "
                f"crosses its threshold; a test of one window counts those {u} once, with a "
                "threshold set for a single look."
            ]
        if s is not None and s.detectable is not None and s.kind == "numeric":
            out.append(
                f"A two-sample test of {s.window} {u} against {s.reference} reference {u} "
                f"detects with {target} probability only shifts of at least "
                f"{_size(s, c.unit, s.detectable, s.detectable_unit)}."
            )
        out.append("Look at the stream's chart on the deployment's page before acting.")
        return out
    if s.kind == "binary":
        found = (
            f"a rate of {fmt_share(s.shift)} against the reference's "
            f"{fmt_share(s.reference_rate)} ({s.shift_source})"
        )
    else:
        found = f"a shift of {_size(s, c.unit, s.shift, s.shift_unit)} ({s.shift_source})"
    if s.detector in ("cusum", "bernoulli_cusum"):
        first = (
            f"The {det} accumulates evidence over {s.accumulated} {u}, from its estimate of "
            f"the change's start to the detection, and found {found}."
        )
    elif s.detector == "ewma" and s.smoothing:
        lam = s.smoothing
        first = (
            f"The EWMA accumulates evidence with fading weights — each {one} weighs "
            f"{fmt(1 - lam, digits=2)} times the one after it, so that its value is as precise "
            f"as a plain mean of the last {round((2 - lam) / lam)} {u} (Montgomery 2009, §9.2) — "
            "and at the "
            f"alarm found {found}; it dates the change {s.accumulated} {u} before the "
            "detection."
        )
    else:
        first = (
            f"The {det} alarmed on the {s.accumulated} {u} since its estimate of the change's "
            f"start and found {found}."
        )
    out = [
        first,
        f"A two-sample test on the {s.window} {u} since the change, against {s.reference} "
        f"reference {u}, would detect a change of this size with probability "
        f"{fmt_probability(s.power)}.",
    ]
    if s.detectable is None:
        out.append(
            f"With {s.window} {u} it detects no rate on that side with {target} probability."
        )
    elif s.kind == "binary":
        out.append(
            f"To be detected with {target} probability by that test, the rate would have to "
            f"reach {fmt_share(s.detectable)}."
        )
    else:
        out.append(
            f"To be detected with {target} probability by that test, the shift would have to "
            f"be at least {_size(s, c.unit, s.detectable, s.detectable_unit)}."
        )
    if s.power >= POWER_TARGET:
        seen = ""
        if s.observed is not None and s.kind == "binary":
            seen = f" The window's rate is {fmt_share(s.observed)}."
        elif s.observed is not None:
            seen = f" The window's mean moved by {_size(s, c.unit, s.observed, None)}."
        out.append(
            "So the test could have seen a change of the detector's estimated size, and did "
            "not: that estimate is taken at the alarm, when the detector's evidence is at its "
            "peak, so it overstates the change, and the change may have begun later, or lasted "
            f"less, than estimated.{seen} Look at the stream's chart on the deployment's page "
            "before acting."
        )
    else:
        out.append(
            f"So not rejecting is what a test of {s.window} {u} is expected to do at this size "
            f"of change: it is not evidence that nothing changed."
        )
    return out


def _table_row(c: Comparison, rank: int | None, highlight: bool = False) -> str:
    test = c.test
    verdict = (
        '<span class="yes">drifted</span>'
        if test is not None and test.rejects
        else '<span class="no">not drifted</span>'
        if test is not None
        else "not tested"
    )
    unit = f" ({escape(c.unit)})" if c.unit else ""
    cls = ' class="alerted"' if highlight else ""
    return (
        f'<tr data-field="{escape(c.field)}"{cls}>'
        f"<td>{'' if rank is None else rank}</td>"
        f"<td><code>{escape(c.field)}</code>{unit}</td>"
        f"<td>{escape(c.summary(c.reference))}</td>"
        f"<td>{escape(c.summary(c.window))}</td>"
        f"<td>{escape(c.change())}</td>"
        f"<td>{escape(test.name) if test else '—'}</td>"
        f"<td>{escape(statistic_text(test)) if test else '—'}</td>"
        f"<td>{escape(fmt_p(test.p_value)) if test else '—'}</td>"
        f"<td>{verdict}</td></tr>"
    )


STYLE = """
#phase4-report{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2933;
 max-width:1180px;margin:18px auto 28px;padding:0 24px}
#phase4-report h1{font-size:22px;margin:6px 0 4px}
#phase4-report h2{font-size:18px;margin:26px 0 8px;border-bottom:1px solid #e4e7eb;
 padding-bottom:4px}
#phase4-report .lede{color:#52606d;margin:0 0 10px}
#phase4-report .verdict{padding:10px 14px;border-radius:6px;margin:10px 0;font-size:16px}
#phase4-report .agree{background:#e3f9e5;border-left:5px solid #31a354}
#phase4-report .disagree{background:#fff3c4;border-left:5px solid #e6a100}
#phase4-report .note{background:#eef2f7;border-left:5px solid #7b8794;padding:8px 12px;
 border-radius:6px}
#phase4-report table{border-collapse:collapse;margin:8px 0;font-size:14px}
#phase4-report th,#phase4-report td{border-bottom:1px solid #e4e7eb;padding:4px 10px;
 text-align:left;vertical-align:top}
#phase4-report th{background:#f5f7fa}
#phase4-report tr.alerted td{background:#fff8e1;font-weight:600}
#phase4-report .yes{color:#b42318;font-weight:600}
#phase4-report .no{color:#52606d}
#phase4-report svg.dist{font:12px system-ui,sans-serif;fill:#3e4c59;max-width:100%;height:auto}
#phase4-report .pair{display:flex;gap:20px;flex-wrap:wrap;align-items:flex-start}
#phase4-report .pair>svg,#phase4-report table.numbers{flex:0 0 auto;width:auto}
#phase4-report code{font-size:13px}
#phase4-report .explain p{margin:6px 0}
#phase4-report .small{font-size:13px;color:#52606d}
"""


def _subject_section(page: ReportPage, subject: Subject) -> list[str]:
    c = subject.comparison
    test = c.test
    det = detector_words(page.detector)
    unit = f" ({escape(c.unit)})" if c.unit else ""
    out = [f'<h2 id="subject">The alerted feature: <code>{escape(subject.label)}</code>{unit}</h2>']
    if subject.note:
        out.append(f'<p class="note">{escape(subject.note)}</p>')
    if test is None:
        out.append(
            '<p class="verdict disagree" id="subject-test">No window test: '
            f"{'the reference' if not c.reference else 'the window'} holds no value of this "
            "feature.</p>"
        )
    elif test.rejects:
        out.append(
            '<p class="verdict agree" id="subject-test">The window test agrees with the alert: '
            f"a {escape(test.name)} finds the {test.n_window} {page.unit_word} since the change "
            f"different from the {test.n_reference} reference {page.unit_word} "
            f"({escape(statistic_text(test))}, {escape(fmt_p(test.p_value))}).</p>"
        )
    else:
        out.append(
            '<p class="verdict disagree" id="subject-test">The window test does not reject at '
            f"the 5% level: a {escape(test.name)} of the {test.n_window} {page.unit_word} since "
            f"the change against the {test.n_reference} reference {page.unit_word} gives "
            f"{escape(statistic_text(test))}, {escape(fmt_p(test.p_value))}; the {escape(det)} "
            "alarmed all the same. Why, below.</p>"
        )
    out.append('<div class="pair">')
    out.append(chart(c))
    if c.reference and c.window:
        out.append(_numbers_table(c))
    out.append("</div>")
    if test is not None and not test.rejects:
        out.append('<div class="explain" id="less-sensitive">')
        out += [f"<p>{escape(p)}</p>" for p in sensitivity_paragraphs(page, subject)]
        out.append("</div>")
    return out


def _numbers_table(c: Comparison) -> str:
    rows = [("", "reference", "since the change")]
    if c.kind == "numeric":
        ref, win = np.asarray(c.reference, float), np.asarray(c.window, float)
        rows += [
            ("values", f"{len(ref):,}", f"{len(win):,}"),
            ("mean", fmt(float(ref.mean()), c.unit), fmt(float(win.mean()), c.unit)),
            (
                "SD",
                fmt(float(ref.std(ddof=1)) if len(ref) > 1 else None, c.unit),
                fmt(float(win.std(ddof=1)) if len(win) > 1 else None, c.unit),
            ),
        ]
        for q, name in ((50, "median"), (25, "25th percentile"), (75, "75th percentile")):
            rows.append(
                (
                    name,
                    fmt(float(np.percentile(ref, q)), c.unit),
                    fmt(float(np.percentile(win, q)), c.unit),
                )
            )
        rows.append(("change of the median", "", c.change().removeprefix("median ")))
    else:
        ref_s, win_s = shares(c.reference), shares(c.window)
        rows.append(("values", f"{len(c.reference):,}", f"{len(c.window):,}"))
        keys = sorted(
            set(ref_s) | set(win_s), key=lambda k: (-max(ref_s.get(k, 0), win_s.get(k, 0)), k)
        )
        for k in keys[:8]:
            label = {"true": "yes", "false": "no"}.get(k, k) if c.kind == "binary" else k
            rows.append(
                (escape_short(label), fmt_share(ref_s.get(k, 0.0)), fmt_share(win_s.get(k, 0.0)))
            )
    head, *body = rows
    html = ["<table class='numbers'><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head)]
    html.append("</tr>")
    for r in body:
        html.append("<tr>" + "".join(f"<td>{escape(v)}</td>" for v in r) + "</tr>")
    html.append("</table>")
    return "".join(html)


def _with_values(page: ReportPage, records: int, values: int) -> str:
    if records == values:
        return ""
    return f" ({values} with a value of {page.stream})"


def windows_words(page: ReportPage) -> str:
    """Which records the report compares, in one paragraph."""
    u = page.unit_word
    text = (
        f"Window: the {page.since_records} {u} from the estimated start of the change "
        f"({fmt_when(page.change_at)}) to the detection ({fmt_when(page.detected_at)})"
        + _with_values(page, page.since_records, page.since_values)
    )
    have = page.since_values + page.after_values
    if page.after_records:
        text += (
            f", and the {page.after_records} that followed the detection"
            + _with_values(page, page.after_records, page.after_values)
            + f": a window should hold {page.wanted} values and fewer came before it"
        )
    if have < page.wanted:
        if page.extension_open:
            text += (
                f"; a window should hold {page.wanted} values: this report is built again "
                f"when more have arrived (until {fmt_when(page.extend_until)})"
            )
        else:
            text += (
                f"; a window should hold {page.wanted} values, and no more arrived before "
                f"{fmt_when(page.extend_until)}"
            )
    if page.reference_records == page.reference_values:
        ref = f"the {page.reference_records} {u} of the stream's reference"
    else:
        ref = (
            f"the {page.reference_records} {u} that gave the stream its "
            f"{page.reference_values} reference values"
        )
    if page.reference_from is not None:
        ref += f", acquired {fmt_when(page.reference_from)} to {fmt_when(page.reference_to)}"
    return (
        f"{text}. Reference: {ref}. Alarm raised by the {detector_words(page.detector)} on "
        f"{page.stream}. Built {fmt_when(page.built_at)}."
    )


def render(page: ReportPage) -> str:
    """The report's opening, as one ``<section id="phase4-report">`` (with its own style)."""
    out = [f"<style>{STYLE}</style>", '<section id="phase4-report">']
    out.append(f"<h1>Alert {page.alert_id}: {escape(page.title)}</h1>")
    out.append(f'<p class="lede" id="windows">{escape(windows_words(page))}</p>')
    if page.reference_note:
        out.append(f'<p class="note">{escape(page.reference_note)}</p>')
    for note in page.notes:
        out.append(f'<p class="note">{escape(note)}</p>')
    if page.subject is not None:
        out += _subject_section(page, page.subject)
    else:
        out.append(
            '<p class="note" id="subject-test">This alert watches no field of the records: '
            "the fields below are what the records show over the same windows.</p>"
        )
    others = sorted(page.others, key=Comparison.order_key)
    out.append(
        '<h2 id="features">'
        + ("The other monitored fields" if page.subject else "The monitored fields")
        + ", most changed first</h2>"
    )
    out.append(
        '<p class="small">Ordered by the window test\'s p-value, smallest first (the strength '
        "of the evidence of a change), ties by the distance between the two windows. Each "
        "test at the 5% level, without correction for the number of fields: a description of "
        "the window, not an alarm.</p>"
    )
    out.append(
        "<table id='feature-table'><tr><th>#</th><th>field</th><th>reference</th>"
        "<th>since the change</th><th>change</th><th>test</th><th>statistic</th>"
        "<th>p-value</th><th>at 5%</th></tr>"
    )
    if page.subject is not None:
        out.append(_table_row(page.subject.comparison, None, highlight=True))
    for i, c in enumerate(others, 1):
        out.append(_table_row(c, i))
    out.append("</table>")
    out += _evidently_summary(page)
    out.append("</section>")
    return "".join(out)


def _evidently_summary(page: ReportPage) -> list[str]:
    of = len(page.tested)
    count = page.drifted
    words = drifted_words(count, of)
    out = ['<h2 id="evidently-summary">evidently\'s summary</h2>']
    dataset_drift = of > 0 and count / of >= 0.5
    text = f"{words[0].upper()}{words[1:]} (each at p < 0.05, without correction for {of} tests)."
    if dataset_drift:
        text += (
            " evidently calls a dataset drifted when at least half its features drift: by that "
            "rule it agrees with the alert."
        )
    else:
        text += (
            " evidently calls a dataset drifted only when at least half its features drift: "
            "by that rule it would say “Dataset drift not detected”. That is a count of "
            "features, not the alert's question: the alert's detector watches one stream, "
            f"{page.stream}, calibrated to the deployment's false-alarm budget, and a change "
            "of one quantity while most others stay put (a dose calibrator reading high, a "
            "new reconstruction) is what it is there to find."
        )
    out.append(f'<p id="evidently-verdict">{escape(text)}</p>')
    if page.evidently_ran:
        out.append(
            '<h2 id="evidently">evidently\'s report of the same windows</h2><p class="small">'
            "One panel per field, in the order above (the alerted feature first). evidently "
            "calls the window “current” and shows each test's p-value as its “drift score”."
            "</p>"
        )
    elif page.evidently_note:
        out.append(f'<p class="note">{escape(page.evidently_note)}</p>')
    return out


OLD_REPORT_BANNER = (
    '<div id="phase4-old-report" style="font:15px/1.5 system-ui,sans-serif;max-width:1180px;'
    "margin:14px auto;padding:10px 14px;background:#fff3c4;border-left:5px solid #e6a100;"
    'border-radius:6px;color:#1f2933">'
    "<strong>A report built by an earlier version of phase4.</strong> Its window is the 100 "
    "records ending at the detection, which mixes records from before and after the change; "
    "its headline is evidently's dataset-level rule (drift when at least half the features "
    "drift), not the alert's question; and its table lists the most stable features first. "
    "The service's report pass rebuilds it from the alert's change estimate{reason}."
    "</div>"
)


def old_report_banner(reason: str | None) -> str:
    """The banner a report built by earlier code is served under; ``reason``: why it could
    not be rebuilt (None: it will be)."""
    why = f" — except this one, which could not be rebuilt: {escape(reason)}" if reason else ""
    return OLD_REPORT_BANNER.replace("{reason}", why)


def document(opening: str, evidently_html: str | None) -> str:
    """One HTML document: the opening first, then evidently's report (its own document's body,
    scripts and styles kept), or the opening alone."""
    if evidently_html:
        at = evidently_html.find("<body")
        end = evidently_html.find(">", at) + 1 if at >= 0 else -1
        if end > 0:
            return evidently_html[:end] + opening + evidently_html[end:]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<title>phase4 drift report</title></head><body>" + opening + "</body></html>"
    )


def insert_banner(html: str, banner: str) -> str:
    at = html.find("<body")
    end = html.find(">", at) + 1 if at >= 0 else -1
    return html[:end] + banner + html[end:] if end > 0 else banner + html
