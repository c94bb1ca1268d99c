"""The surveillance report as a PDF for people (fpdf2, core fonts only: no font files needed).

The core fonts cover Latin-1; other characters are replaced by close ASCII (dashes, quotes,
arrows) or '?', so a name with an unusual letter never stops an export.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fpdf import FPDF
from fpdf.fonts import FontFace

_REPLACEMENTS = {
    "\u2013": "-",
    "\u2014": "-",
    "\u2212": "-",
    "\u2018": "'",
    "\u2019": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u2026": "...",
    "\u2192": "->",
    "\u2190": "<-",
    "\u2264": "<=",
    "\u2265": ">=",
    "\u221a": "sqrt",
    "\u00b7": "*",
    "\u2022": "*",
}


def latin1(text: str) -> str:
    for old, new in _REPLACEMENTS.items():
        text = text.replace(old, new)
    return text.encode("latin-1", "replace").decode("latin-1")


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _pct_ci(block: Mapping[str, Any]) -> str:
    if block.get("value") is None:
        return "-"
    return (
        f"{100 * block['value']:.1f}% ({100 * block['ci_low']:.1f}-{100 * block['ci_high']:.1f})"
        f" n={block['n']}"
    )


def _mean_ci(block: Mapping[str, Any]) -> str:
    if block.get("mean") is None:
        return "-"
    if block.get("ci_low") is None:
        return f"{block['mean']:.3f} n={block['n']}"
    return f"{block['mean']:.3f} ({block['ci_low']:.3f}-{block['ci_high']:.3f}) n={block['n']}"


def _short_time(value: str | None) -> str:
    return "-" if not value else value[:16].replace("T", " ")


class _Report(FPDF):
    title_text = ""

    def header(self) -> None:
        self.set_font("Helvetica", "I", 8)
        self.set_text_color(90)
        self.cell(0, 5, latin1(self.title_text), align="R", new_x="LMARGIN", new_y="NEXT")
        self.set_text_color(0)

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("Helvetica", "I", 8)
        self.set_text_color(90)
        self.cell(0, 5, f"page {self.page_no()}/{{nb}}", align="C")
        self.set_text_color(0)


def _heading(pdf: FPDF, text: str) -> None:
    pdf.ln(3)
    pdf.set_font("Helvetica", "B", 12)
    pdf.cell(0, 7, latin1(text), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=8)


def _para(pdf: FPDF, text: str) -> None:
    pdf.set_font("Helvetica", size=9)
    pdf.multi_cell(0, 4.5, latin1(text), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=8)


def _table(
    pdf: FPDF,
    headings: Sequence[str],
    rows: Sequence[Sequence[Any]],
    widths: Sequence[float] | None = None,
    empty: str = "None in this period.",
) -> None:
    if not rows:
        _para(pdf, empty)
        return
    pdf.set_font("Helvetica", size=7.5)
    with pdf.table(
        col_widths=tuple(widths) if widths else None,
        headings_style=FontFace(emphasis="BOLD", fill_color=(225, 230, 240)),
        text_align="LEFT",
        line_height=3.8,
        padding=0.8,
    ) as table:
        head = table.row()
        for h in headings:
            head.cell(latin1(h))
        for r in rows:
            row = table.row()
            for value in r:
                row.cell(latin1(_fmt(value)))
    pdf.set_font("Helvetica", size=8)


def render_pdf(report: Mapping[str, Any]) -> bytes:
    dep = report["deployment"]
    model = dep["model"]
    period = report["period"]
    pdf = _Report(orientation="L", format="A4")
    pdf.title_text = (
        f"phase4 surveillance report - {dep['id']} - {period['from']} to {period['to']}"
    )
    pdf.set_title(latin1(pdf.title_text))
    pdf.set_author("phase4")
    pdf.set_auto_page_break(True, margin=15)
    pdf.alias_nb_pages()
    pdf.add_page()

    pdf.set_font("Helvetica", "B", 18)
    pdf.cell(0, 10, latin1(report["title"]), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    lines = [
        f"Deployment: {dep['id']} at site {dep['site_id']} ({dep.get('site_name') or '-'})",
        f"AI: {model['name']} {model['version']}"
        + (f" by {model['manufacturer']}" if model.get("manufacturer") else "")
        + (f", UDI {model['udi']}" if model.get("udi") else ""),
        f"Intended use: {model.get('intended_use') or '-'}",
        f"Period: {period['from']} to {period['to']} (whole UTC days, both included)",
        f"Accepted for clinical use: {_short_time(dep.get('accepted_at'))}",
        f"Generated {_short_time(report['generated_at'])} UTC by {report['generated_by']}; "
        f"reporting clocks as of {report['clocks_as_of']}",
    ]
    chain = report["audit"]["chain"]
    lines.append(
        f"Audit trail: intact, {chain['entries_checked']} entries, "
        f"head {chain['head_hash'][:16]}..."
        if chain["ok"]
        else f"Audit trail: BROKEN at entry {chain['first_broken_seq']}: {chain['problem']}"
    )
    for line in lines:
        pdf.multi_cell(0, 5, latin1(line), new_x="LMARGIN", new_y="NEXT")

    usage = report["usage"]
    _heading(pdf, "1. Usage volume")
    _para(
        pdf,
        f"{usage['records']} studies analysed by the AI in the period, {usage['errors']} with an "
        f"inference error; median latency {_fmt(usage['latency_s_median'])} s.",
    )
    _table(
        pdf,
        ["Month", "Studies", "Errors", "Error rate", "Median latency (s)"],
        [
            [
                m["month"],
                m["records"],
                m["errors"],
                "-" if m["error_rate"] is None else f"{100 * m['error_rate']:.1f}%",
                m["latency_s_median"],
            ]
            for m in usage["by_month"]
        ],
    )

    _heading(pdf, "2. Population served (coarse bands only)")
    pop_rows = []
    for dim, rows in report["population"]["dimensions"].items():
        for r in rows:
            if r["records"]:
                share = "-" if r["share"] is None else f"{100 * r['share']:.1f}%"
                pop_rows.append([dim, r["band"], r["records"], share])
    _table(pdf, ["Dimension", "Band", "Studies", "Share"], pop_rows, (40, 40, 30, 30))

    perf = report["performance"]
    _heading(pdf, "3. Performance against feedback (95% confidence intervals)")
    _para(
        pdf,
        f"Prediction {perf['definition']['prediction']} against {perf['definition']['truth']}; "
        f"{perf['definition']['unit']}. Intervals: {perf['definition']['intervals']}.",
    )
    perf_rows = []
    for label, block in [("whole period", perf["overall"])] + [
        (m["month"], m) for m in perf["by_month"]
    ]:
        c = block["confusion"]
        perf_rows.append(
            [
                label,
                block["feedback"],
                f"{c['tp']}/{c['fp']}/{c['tn']}/{c['fn']}",
                _pct_ci(block["sensitivity"]),
                _pct_ci(block["specificity"]),
                _pct_ci(block["ppv"]),
                _mean_ci(block["dice"]),
            ]
        )
    _table(
        pdf,
        ["Period", "Feedback", "TP/FP/TN/FN", "Sensitivity", "Specificity", "PPV", "Dice mean"],
        perf_rows,
        (25, 18, 25, 45, 45, 45, 45),
    )

    _heading(pdf, "4. Drift findings")
    _table(
        pdf,
        ["Alert", "Opened", "Stream", "Detector", "Change est.", "Status", "Linked events"],
        [
            [
                d["alert_id"],
                _short_time(d["opened_at"]),
                d["title"],
                d["detector"],
                _short_time(d["estimated_change_at"]),
                d["status"],
                "; ".join(
                    f"#{ln['alert_id']} {ln['stream']} ({_short_time(ln['at'])})"
                    for ln in d["linked"]
                )
                or "-",
            ]
            for d in report["drift_findings"]
        ],
        (14, 28, 80, 22, 28, 22, 83),
    )

    qc = report["phantom_qc"]
    _heading(pdf, "5. Phantom quality control (scanners at the site)")
    devices = {d["device_id"]: d for d in qc["devices"]}
    _table(
        pdf,
        ["Scanner", "Phantom", "Results", "Pass", "Tolerance", "Action", "No verdict", "Reviewed"],
        [
            [
                f"{devices.get(s['device_id'], {}).get('model', '?')} "
                f"{devices.get(s['device_id'], {}).get('serial', '')}",
                s["kind"],
                s["results"],
                s["pass"],
                s["outside_tolerance"],
                s["outside_action"],
                s["no_verdict"],
                s["reviewed"],
            ]
            for s in qc["summary"]
        ],
        empty="No phantom results in this period.",
    )

    _heading(pdf, "6. Alerts and their resolution")
    _table(
        pdf,
        [
            "Alert",
            "Opened",
            "Severity",
            "Title",
            "Status",
            "Acknowledged",
            "Resolved",
            "Resolution",
        ],
        [
            [
                a["alert_id"],
                _short_time(a["opened_at"]),
                a["severity"],
                a["title"],
                a["status"],
                f"{a['acknowledged_by'] or '-'} {_short_time(a['acknowledged_at'])}",
                f"{a['resolved_by'] or '-'} {_short_time(a['resolved_at'])}",
                a["resolution"] or "-",
            ]
            for a in report["alerts"]
        ],
        (13, 26, 17, 70, 22, 38, 38, 53),
    )

    _heading(pdf, "7. Incident register and reporting clocks")
    clock_rows = []
    for inc in report["incidents"]:
        if inc["clock_error"]:
            clock_rows.append(
                [inc["incident_id"], inc["title"], inc["seriousness"], "-", "-", "-", "-"]
            )
        for c in inc["clocks"]:
            clock_rows.append(
                [
                    inc["incident_id"],
                    inc["title"],
                    inc["seriousness"] + (" + remedial" if inc["remedial_action_needed"] else ""),
                    c["regime_title"],
                    f"{c['deadline_days']} {c['deadline_kind']} days",
                    c["due"],
                    c["summary"],
                ]
            )
    _table(
        pdf,
        ["Incident", "Title", "Seriousness", "Regime", "Deadline", "Due", "Status"],
        clock_rows,
        (16, 70, 32, 50, 28, 22, 59),
        empty="No incidents in this period.",
    )
    errors = [i for i in report["incidents"] if i["clock_error"] or i["unknown_report_keys"]]
    for inc in errors:
        notes = [inc["clock_error"]] if inc["clock_error"] else []
        if inc["unknown_report_keys"]:
            notes.append("unknown report keys: " + ", ".join(inc["unknown_report_keys"]))
        _para(pdf, f"Incident {inc['incident_id']}: " + "; ".join(notes))
    _para(
        pdf,
        "Clocks run from the day of awareness (UTC). FDA work days skip weekends; public holidays "
        "are not modelled.",
    )

    _heading(pdf, "8. Corrective actions")
    _table(
        pdf,
        ["Source", "Date", "By", "Action"],
        [
            [f"{c['source']} {c['source_id']}", _short_time(c["at"]), c["by"], c["action"]]
            for c in report["corrective_actions"]
        ],
        (30, 30, 40, 177),
    )

    history = report["model_history"]
    _heading(pdf, "9. Model version history")
    _table(
        pdf,
        ["Model", "Version", "Registered", "This deployment", "Deployments at site"],
        [
            [
                v["name"],
                v["version"],
                _short_time(v["created_at"]),
                v["this_deployment"],
                ", ".join(v["deployments_at_site"]) or "-",
            ]
            for v in history["versions"]
        ],
    )
    _para(pdf, "Changes of the deployment and its model recorded in the audit trail:")
    _table(
        pdf,
        ["Seq", "When", "Who", "Action", "Entity", "Reason"],
        [
            [
                e["seq"],
                _short_time(e["at"]),
                e["actor"],
                e["action"],
                f"{e['entity_type']} {e['entity_id']}",
                e["reason"] or "-",
            ]
            for e in history["changes"]
        ],
        (14, 30, 45, 40, 60, 88),
    )

    audit = report["audit"]
    _heading(pdf, "10. Audit trail in the period")
    _para(pdf, f"Scope: {audit['scope']}. The full entries are in audit.csv and audit_fhir.json.")
    _table(
        pdf,
        ["Seq", "When", "Who", "Action", "Entity", "Reason", "Hash"],
        [
            [
                e["seq"],
                _short_time(e["at"]),
                e["actor"],
                e["action"],
                f"{e['entity_type']} {e['entity_id']}",
                e["reason"] or "-",
                e["entry_hash"][:12],
            ]
            for e in audit["entries"]
        ],
        (14, 28, 40, 35, 55, 83, 22),
    )
    return bytes(pdf.output())
