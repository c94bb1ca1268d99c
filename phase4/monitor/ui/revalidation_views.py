"""The revalidation page of the dashboard: a new model version against the accepted one, each
pre-declared criterion with both versions' estimates, the difference with its 95% interval,
the margin and the verdict, and a plot of the differences against their margins
(docs/REVALIDATION.md; the statistics are Tango 1998, McNemar 1947 and Efron & Tibshirani's
paired bootstrap, in ``phase4.monitor.drift.paired``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup
from sqlmodel import col, select

from phase4.monitor.api.deps import SessionDep, path_id
from phase4.monitor.domain.revalidation import get_revalidation
from phase4.monitor.store.models import AuditEntry
from phase4.monitor.ui.charts import COLORS, _base_layout, _figure
from phase4.monitor.ui.security import principal_from_cookie
from phase4.monitor.ui.views import _deployment, _page, render, router

RevalidationId = Annotated[int, path_id("The revalidation's id")]
LABELS = {
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "ppv": "Positive predictive value",
    "dice": "Mean Dice",
    "positive_rate_change": "Rate of positive calls",
}


@dataclass(frozen=True)
class Row:
    """One criterion as the table shows it: percentages for proportions, Dice as 0-1."""

    label: str
    unit: str
    n: int
    accepted: str
    candidate: str
    difference: str
    margin: str
    rule: str
    verdict: str
    method: str
    p_value: str


def _scale(result: dict[str, Any]) -> tuple[float, str]:
    """Proportions in percent (their differences in percentage points), Dice as 0-1."""
    return (1.0, "") if result["criterion"] == "dice" else (100.0, " %")


def _num(x: float, digits: int, signed: bool) -> str:
    text = f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"
    return text.replace("-", "\u2212")


def _ci(value: dict[str, Any] | None, scale: float, unit: str, signed: bool = False) -> str:
    if value is None:
        return "—"
    digits = 3 if scale == 1.0 else 1
    est, lo, hi = (_num(scale * value[k], digits, signed) for k in ("estimate", "low", "high"))
    return f"{est}{unit} (95% CI {lo} to {hi})"


def rows_of(results: dict[str, Any] | None) -> list[Row]:
    out = []
    for r in (results or {}).get("results", []):
        scale, unit = _scale(r)
        points = " points" if unit else ""  # a difference of proportions
        digits = 3 if scale == 1.0 else 1
        equivalence = r["criterion"] == "positive_rate_change"
        margin = f"{scale * r['margin']:.{digits}f}{points}"
        out.append(
            Row(
                label=LABELS.get(r["criterion"], r["criterion"]),
                unit=r["unit"],
                n=r["n"],
                accepted=_ci(r["accepted"], scale, unit),
                candidate=_ci(r["candidate"], scale, unit),
                difference=_ci(r["difference"], scale, points, signed=True),
                margin=f"±{margin}" if equivalence else f"\u2212{margin}",
                rule="interval within ±margin" if equivalence else "lower bound > −margin",
                verdict=r["verdict"],
                method=r["method"],
                p_value="—" if r.get("p_value") is None else f"{r['p_value']:.3g}",
            )
        )
    return out


def difference_chart(results: dict[str, Any]) -> Markup | None:
    """Each criterion's difference (candidate − accepted) with its 95% interval, and its
    margin as a red tick (both ticks for the equivalence criterion): an interval reaching past
    a tick fails. One axis for all: proportions in percentage points, Dice × 100."""
    items = [r for r in results.get("results", []) if r.get("difference") is not None]
    if not items:
        return None
    labels, est, lo, hi, tick_x, tick_y = [], [], [], [], [], []
    for r in items:
        name = LABELS.get(r["criterion"], r["criterion"])
        label = f"{name} ({'Dice × 100' if r['criterion'] == 'dice' else 'points'})"
        labels.append(label)
        d = r["difference"]
        est.append(100 * d["estimate"])
        lo.append(100 * (d["estimate"] - d["low"]))
        hi.append(100 * (d["high"] - d["estimate"]))
        tick_x.append(-100 * r["margin"])
        tick_y.append(label)
        if r["criterion"] == "positive_rate_change":
            tick_x.append(100 * r["margin"])
            tick_y.append(label)
    colors = [COLORS["ok"] if r["verdict"] == "pass" else COLORS["alarm"] for r in items]
    layout = _base_layout(
        "Candidate − accepted, with 95% intervals, against each margin",
        "",
        120 + 60 * len(items),
    )
    layout["xaxis"] = {
        "title": {"text": "difference (percentage points; Dice × 100)"},
        "zeroline": True,
        "zerolinecolor": "#889",
    }
    layout["yaxis"] = {"type": "category", "autorange": "reversed", "automargin": True}
    data: list[dict[str, Any]] = [
        {
            "type": "scatter",
            "mode": "markers",
            "x": est,
            "y": labels,
            "name": "difference (95% interval)",
            "marker": {"color": colors, "size": 10},
            "error_x": {"type": "data", "symmetric": False, "array": hi, "arrayminus": lo},
            "hovertemplate": "%{y}: %{x:.2f}<extra></extra>",
        },
        {
            "type": "scatter",
            "mode": "markers",
            "x": tick_x,
            "y": tick_y,
            "name": "margin",
            "marker": {"symbol": "line-ns-open", "size": 22, "color": COLORS["threshold"]},
            "hovertemplate": "margin %{x:.2f}<extra></extra>",
        },
    ]
    return _figure(data, layout)


@router.get(
    "/deployments/{deployment_id}/revalidations/{revalidation_id}", response_class=HTMLResponse
)
@_page
def revalidation_page(
    request: Request, deployment_id: str, revalidation_id: RevalidationId, session: SessionDep
) -> Response:
    principal = principal_from_cookie(session, request)
    dep = _deployment(session, principal, deployment_id)
    r = get_revalidation(session, dep.id, revalidation_id)
    figures: dict[str, Any] = {}
    if r.results and (fig := difference_chart(r.results)) is not None:
        figures["differences"] = fig
    trail = list(
        session.exec(
            select(AuditEntry)
            .where(AuditEntry.entity_type == "revalidation", AuditEntry.entity_id == str(r.id))
            .order_by(col(AuditEntry.seq))
        )
    )
    return render(
        request,
        "revalidation.html",
        principal=principal,
        title=f"Revalidation of {dep.id}",
        dep=dep,
        r=r,
        rows=rows_of(r.results),
        figures=figures,
        trail=trail,
    )
