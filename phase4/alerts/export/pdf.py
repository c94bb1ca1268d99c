"""The post-market surveillance report as a PDF for people (fpdf2, core fonts: no font files).

Its sections follow what a periodic safety update report (MDR, Regulation (EU) 2017/745,
Art. 86) and the EU AI Act's post-market monitoring (Regulation (EU) 2024/1689, Art. 72) ask
for: the device's identity and intended use, the PMS plan and data sources, an executive
summary, the field performance against the validated baseline with trend figures, subgroups,
drift and phantom QC findings, incidents with their reporting clocks, corrective actions,
conclusions with the open items a reviewer must act on, a benefit-risk paragraph drafted from
the data, and a signature block. Everything printed comes from the report's JSON
(``report.build_report``): the PDF formats, it does not compute.

The core fonts cover Latin-1; other characters are replaced by close ASCII (dashes, quotes,
arrows) or '?', so a name with an unusual letter never stops an export.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fpdf import FPDF
from fpdf.fonts import FontFace

from phase4.alerts.export import figures
from phase4.alerts.export.changes import result_rows
from phase4.alerts.export.psur import METRIC_TITLES, day, ms, pct, pct_ci, points

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
MISSING = "NOT RECORDED"
RED = (180, 0, 0)
HEAD = FontFace(emphasis="BOLD", fill_color=(225, 230, 240))
FLAG = FontFace(emphasis="BOLD", color=RED)
SEVERITY_STYLE = {
    "high": FontFace(emphasis="BOLD", color=RED),
    "medium": FontFace(emphasis="BOLD", color=(170, 90, 0)),
    "low": None,
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


def _mean_ci(block: Mapping[str, Any]) -> str:
    if block.get("mean") is None:
        return "-"
    if block.get("ci_low") is None:
        return f"{block['mean']:.3f} (n = {block['n']})"
    return (
        f"{block['mean']:.3f} (95 % CI {block['ci_low']:.3f}-{block['ci_high']:.3f}; "
        f"n = {block['n']})"
    )


def _short_time(value: str | None) -> str:
    return "-" if not value else value[:16].replace("T", " ")


def _by_at(by: str | None, at: str | None) -> str:
    return "-" if not by and not at else f"{by or '-'} {_short_time(at)}"


class _Report(FPDF):
    title_text = ""
    footer_text = ""

    def header(self) -> None:
        self.set_font("Helvetica", "I", 8)
        self.set_text_color(90)
        self.cell(0, 5, latin1(self.title_text), align="R", new_x="LMARGIN", new_y="NEXT")
        self.set_text_color(0)

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("Helvetica", "I", 8)
        self.set_text_color(90)
        self.cell(0, 5, latin1(self.footer_text), align="L")
        self.set_x(self.l_margin)
        self.cell(0, 5, f"page {self.page_no()}/{{nb}}", align="R")
        self.set_text_color(0)


def _heading(pdf: FPDF, text: str, room: float = 30) -> None:
    """A section title, on a new page if less than ``room`` mm are left for what follows."""
    if pdf.get_y() + room > pdf.h - pdf.b_margin:
        pdf.add_page()
    pdf.ln(3)
    pdf.set_font("Helvetica", "B", 12)
    pdf.cell(0, 7, latin1(text), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=8)


def _para(pdf: FPDF, text: str, style: str = "", size: float = 9) -> None:
    pdf.set_font("Helvetica", style, size=size)
    pdf.multi_cell(0, 4.5, latin1(text), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=8)


def _bullets(pdf: FPDF, lines: Sequence[str]) -> None:
    for line in lines:
        pdf.set_font("Helvetica", size=9)
        pdf.cell(5, 4.5, "-")
        pdf.multi_cell(0, 4.5, latin1(line), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=8)


Cell = Any  # a value, or (value, FontFace) for a styled cell


def _table(
    pdf: FPDF,
    headings: Sequence[str],
    rows: Sequence[Sequence[Cell]],
    widths: Sequence[float] | None = None,
    empty: str = "None in this period.",
    line_height: float = 3.8,
) -> None:
    if not rows:
        _para(pdf, empty)
        return
    pdf.set_font("Helvetica", size=7.5)
    with pdf.table(
        col_widths=tuple(widths) if widths else None,
        headings_style=HEAD,
        text_align="LEFT",
        line_height=line_height,
        padding=0.8,
    ) as table:
        head = table.row()
        for h in headings:
            head.cell(latin1(h))
        for r in rows:
            row = table.row()
            for value in r:
                if isinstance(value, tuple):
                    text, style = value
                    row.cell(latin1(_fmt(text)), style=style)
                else:
                    row.cell(latin1(_fmt(value)))
    pdf.set_font("Helvetica", size=8)


def _or_missing(value: Any) -> Cell:
    return (MISSING, FLAG) if value in (None, "", []) else value


# --- sections -------------------------------------------------------------------------------


def _title_block(pdf: _Report, report: Mapping[str, Any]) -> None:
    dep, ident, period = report["deployment"], report["identity"], report["period"]
    pdf.set_font("Helvetica", "B", 18)
    pdf.cell(0, 10, latin1(report["title"]), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "B", 11)
    name = f"{ident['device_name'] or dep['model']['name']} {ident['model_version']}"
    pdf.cell(
        0,
        6,
        latin1(f"{name} at {dep.get('site_name') or dep['site_id']} ({dep['id']})"),
        new_x="LMARGIN",
        new_y="NEXT",
    )
    pdf.set_font("Helvetica", size=9)
    chain = report["audit"]["chain"]
    lines = [
        f"Period: {period['from']} to {period['to']} (whole UTC days, both included). "
        f"Generated {_short_time(report['generated_at'])} UTC by {report['generated_by']}; "
        f"reporting clocks as of {report['clocks_as_of']}.",
        "Regulatory basis: " + "; ".join(report["regulatory_basis"]) + ".",
        (
            f"Audit trail: intact, {chain['entries_checked']} entries, "
            f"head {chain['head_hash'][:16]}..."
            if chain["ok"]
            else f"Audit trail: BROKEN at entry {chain['first_broken_seq']}: {chain['problem']}"
        ),
    ]
    for line in lines:
        pdf.multi_cell(0, 4.5, latin1(line), new_x="LMARGIN", new_y="NEXT")


def _identity(pdf: FPDF, report: Mapping[str, Any]) -> None:
    ident, acc = report["identity"], report["acceptance"]
    _heading(pdf, "1. Device identity and intended use")
    nb = ident["notified_body"]
    nb_text = (
        f"{nb['name']}, NB {nb['number']}"
        + (f", certificate {nb['certificate']}" if nb.get("certificate") else "")
        if nb
        else None
    )
    high_risk = ident["ai_act_high_risk"]
    risk = (
        None
        if high_risk is None
        else ("high-risk AI system (Art. 6(1))" if high_risk else "not a high-risk AI system")
    )
    accepted = (
        f"{acc['accepted_on']}"
        + (f" by {acc['accepted_by']}" if acc["accepted_by"] else "")
        + (f", ref. {acc['reference']}" if acc["reference"] else "")
        + f" (source: {acc['source']})"
        if acc["accepted_on"]
        else None
    )
    mdr_class = ident["mdr_class"]
    if mdr_class and ident["classification_rule"]:
        mdr_class = f"{mdr_class} ({ident['classification_rule']})"
    rows = [
        ["Manufacturer", _or_missing(ident["manufacturer"])],
        ["Device name", _or_missing(ident["device_name"])],
        ["Software version (this deployment)", ident["model_version"]],
        ["Basic UDI-DI", _or_missing(ident["basic_udi_di"])],
        ["MDR risk class", _or_missing(mdr_class)],
        ["EU AI Act", _or_missing(risk)],
        ["Notified body", _or_missing(nb_text)],
        ["Intended use", _or_missing(ident["intended_use"])],
        [
            "Site",
            f"{report['deployment'].get('site_name') or '-'} ({report['deployment']['site_id']})",
        ],
        ["Accepted for clinical use", _or_missing(accepted)],
        [
            "Identity recorded",
            f"by {ident['updated_by']} on {day(ident['updated_at'])}"
            if ident["recorded"]
            else (MISSING, FLAG),
        ],
    ]
    _table(pdf, ["Field", "Value"], rows, (60, 217))


def _plan(pdf: FPDF, report: Mapping[str, Any]) -> None:
    ident, period = report["identity"], report["period"]
    _heading(pdf, "2. PMS plan, period and data sources")
    plan = ident["pms_plan"]
    plan_text = (
        f"{plan['document_id']} version {plan['version']}"
        + (f" ({plan['title']})" if plan.get("title") else "")
        if plan
        else MISSING
    )
    every = ident["psur_every_months"]
    frequency = (
        f"at least every {every} months for MDR class {ident['mdr_class']} (Art. 86(1))"
        if every
        else "-"
    )
    _table(
        pdf,
        ["Item", "Value"],
        [
            ["Post-market surveillance plan", (plan_text, FLAG) if not plan else plan_text],
            ["Period covered", f"{period['from']} to {period['to']} ({period['bounds']})"],
            ["PSUR update frequency", frequency],
        ],
        (60, 217),
    )
    pdf.ln(2)
    _table(
        pdf,
        ["Data source", "How it is collected", "Count", "Unit"],
        [[s["source"], s["how"], s["count"], s["unit"]] for s in report["data_sources"]],
        (60, 120, 25, 72),
    )


def _summary(pdf: FPDF, report: Mapping[str, Any]) -> None:
    _heading(pdf, "3. Executive summary")
    _bullets(pdf, report["executive_summary"])
    br = report["conclusions"]["benefit_risk"]
    _para(pdf, f"Benefit-risk (draft, section 13): {br['status']}.", "B")


def _performance(pdf: FPDF, report: Mapping[str, Any]) -> None:
    comparison, perf = report["baseline_comparison"], report["performance"]
    _heading(pdf, "4. Performance against the validated baseline", room=90)
    _para(
        pdf,
        f"Prediction {perf['definition']['prediction']} against {perf['definition']['truth']}; "
        f"{perf['definition']['unit']}. Intervals: {perf['definition']['intervals']}. "
        + (
            f"Validated baseline: {comparison['source']}; the plan's margin "
            f"{points(comparison['margin'])}. Rule: {comparison['rule']}."
            if comparison["available"]
            else "No validated baseline is recorded (open item)."
        ),
    )
    rows = []
    for row in comparison["metrics"]:
        verdict = row["verdict"]
        rows.append(
            [
                METRIC_TITLES[row["metric"]],
                pct_ci(row["baseline"]) if row["baseline"] else (MISSING, FLAG),
                pct_ci(row["observed"]),
                "-" if row["difference"] is None else f"{100 * row['difference']:+.1f} points",
                (verdict, FLAG) if verdict == "below" else verdict,
                ", ".join(row["months_below"]) or "-",
            ]
        )
    _table(
        pdf,
        [
            "Metric",
            "Validated",
            "Observed, whole period",
            "Difference",
            "Assessment",
            "Months below",
        ],
        rows,
        (22, 52, 52, 22, 32, 97),
    )
    pdf.ln(2)
    if pdf.get_y() + figures.PERFORMANCE_HEIGHT + 5 > pdf.h - pdf.b_margin:
        pdf.add_page()
    pdf.set_font("Helvetica", "B", 8)
    pdf.cell(
        0,
        5,
        "Figure 1: Monthly sensitivity, specificity and PPV with 95 % Wilson intervals, "
        "against the validated baseline",
        new_x="LMARGIN",
        new_y="NEXT",
    )
    used = figures.performance_figure(pdf, perf["by_month"], comparison)
    pdf.set_y(pdf.get_y() + used + 2)
    dice = perf["overall"]["dice"]["n"] > 0  # a column only when edits were measured
    rows = []
    for label, block in [("whole period", perf["overall"])] + [
        (m["month"], m) for m in perf["by_month"]
    ]:
        c = block["confusion"]
        rows.append(
            [
                label,
                block["feedback"],
                f"{c['tp']}/{c['fp']}/{c['tn']}/{c['fn']}",
                pct_ci(block["sensitivity"]),
                pct_ci(block["specificity"]),
                pct_ci(block["ppv"]),
            ]
            + ([_mean_ci(block["dice"])] if dice else [])
        )
    _table(
        pdf,
        ["Period", "Labelled", "TP/FP/TN/FN", "Sensitivity", "Specificity", "PPV"]
        + (["Dice mean"] if dice else []),
        rows,
        (22, 16, 27, 50, 50, 50, 62) if dice else (30, 20, 30, 65, 66, 66),
    )


def _usage(pdf: FPDF, report: Mapping[str, Any]) -> None:
    usage = report["usage"]
    _heading(pdf, "5. Usage volume and findings over time", room=80)
    _para(
        pdf,
        f"{usage['records']} studies analysed by the AI in the period, {usage['errors']} with "
        f"an inference error; median latency {ms(usage['latency_ms_median'])} "
        f"({usage['latency_records']} studies timed).",
    )
    pdf.set_font("Helvetica", "B", 8)
    pdf.cell(
        0,
        5,
        "Figure 2: Studies per month, and drift findings (estimated start to detection), "
        "phantom QC results out of tolerance, incidents and pauses on the same time axis",
        new_x="LMARGIN",
        new_y="NEXT",
    )
    used = figures.timeline_figure(pdf, report)
    pdf.set_y(pdf.get_y() + used + 1)
    for p in usage["pauses"]:
        _para(
            pdf,
            f"Pause recorded in {p['source']} {p['source_id']} ({p['field']}, "
            f'{day(p["recorded_at"])}, {p["recorded_by"] or "-"}): "{p["text"]}". Studies '
            f"after the finding ({day(p['finding_at'])}): {p['records_after_finding']}; after "
            f"the pause was recorded: {p['records_after_recorded']}.",
            "B",
        )
    _table(
        pdf,
        ["Month", "Studies", "Errors", "Error rate", "Median latency (ms)"],
        [
            [
                m["month"],
                m["records"],
                m["errors"],
                "-" if m["error_rate"] is None else pct(m["error_rate"]),
                ms(m["latency_ms_median"]),
            ]
            for m in usage["by_month"]
        ],
        (40, 40, 40, 40, 117),
        line_height=3.4,
    )


def _subgroups(pdf: FPDF, report: Mapping[str, Any]) -> None:
    _heading(pdf, "6. Population and subgroup performance", room=50)
    subgroups = report["subgroups"]
    definition = subgroups["definition"]
    _para(pdf, definition[:1].upper() + definition[1:] + ".")
    titles = {"site": "Site", "scanner": "Scanner", "sex": "Sex", "age_band": "Age band"}
    rows = []
    for dim, bands in subgroups["dimensions"].items():
        for r in bands:
            share = r.get("share_of_studies")
            rows.append(
                [
                    titles[dim],
                    r["band"],
                    "-" if share is None else pct(share),
                    r["feedback"],
                    pct_ci(r["sensitivity"]),
                    pct_ci(r["specificity"]),
                    pct_ci(r["ppv"]),
                ]
            )
    _table(
        pdf,
        [
            "Subgroup",
            "Band",
            "Share of studies",
            "Labelled",
            "Sensitivity",
            "Specificity",
            "PPV",
        ],
        rows,
        (20, 42, 22, 16, 59, 59, 59),
        empty="No labelled studies in this period.",
    )
    findings = subgroups.get("disparity") or []
    _para(
        pdf,
        "Disparity monitor (a band more than the margin below the rest; docs/SUBGROUPS.md): "
        + (
            "; ".join(f["headline"].rstrip(".") for f in findings)
            if findings
            else "no finding in the period"
        )
        + ".",
    )
    weights = report["population"]["dimensions"].get("weight_band", [])
    if weights:
        _para(
            pdf,
            "Weight bands of the studies: "
            + "; ".join(
                f"{r['band']} {r['records']} ({pct(r['share'])})" for r in weights if r["records"]
            )
            + ".",
            size=8,
        )


def _drift(pdf: FPDF, report: Mapping[str, Any]) -> None:
    _heading(pdf, "7. Drift findings")
    _table(
        pdf,
        ["Alert", "Finding", "Change began", "Detected", "Size", "Detector", "Status", "Linked"],
        [
            [
                d["alert_id"],
                d["headline"],
                day(d["change_start"]),
                day(d["detected_at"]),
                d["change_size"] or "-",
                d["detector"],
                d["status"],
                "; ".join(f"#{ln['alert_id']} {ln['stream']}" for ln in d["linked"]) or "-",
            ]
            for d in report["drift_findings"]
        ],
        (12, 78, 20, 20, 50, 22, 22, 53),
    )


def _phantoms(pdf: FPDF, report: Mapping[str, Any]) -> None:
    qc = report["phantom_qc"]
    _heading(pdf, "8. Phantom quality control (scanners at the site)")
    rows = []
    for d in qc["by_device"]:
        run, ep = d["longest_run"] or {}, d["episode"]
        rows.append(
            [
                d["scanner"],
                d["results"],
                (d["failures"], FLAG) if d["failures"] else 0,
                d["outside_action"],
                d["reviewed"],
                f"{run.get('results', 0)} ({day(run.get('from'))} to {day(run.get('to'))})"
                if run.get("results")
                else "-",
                (
                    f"{ep['kind']} {ep['metric']}: {ep['failures']} of {ep['results']} failed, "
                    f"{day(ep['from'])} to {day(ep['to'])} ({ep['days']:.0f} days)"
                    + (
                        f", mean {100 * ep['deviation']:+.1f} % from the {ep['reference_kind']}"
                        if ep["deviation"] is not None
                        else ""
                    )
                )
                if ep
                else "-",
            ]
        )
    _table(
        pdf,
        [
            "Scanner",
            "Results",
            "Out of tolerance",
            "Of which action level",
            "Reviewed",
            "Longest run outside tolerance",
            "Longest episode",
        ],
        rows,
        (55, 15, 20, 20, 16, 48, 103),
        empty="No phantom results in this period.",
    )
    _para(
        pdf,
        f"Longest run: {qc['definitions']['longest_run']}. Episode: "
        f"{qc['definitions']['episode']}. Sustained: {qc['definitions']['sustained']}.",
        size=7.5,
    )
    device_alerts = [a for a in report["alerts"] if a["scope"] == "device"]
    _table(
        pdf,
        ["Alert", "Detected", "Severity", "Scanner alert (phantom QC, AI canary)", "Status"],
        [
            [a["alert_id"], day(a["detected_at"]), a["severity"], a["title"], a["status"]]
            for a in device_alerts
        ],
        (14, 22, 18, 190, 33),
        empty="No scanner alerts in this period.",
    )
    pdf.ln(1)
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


def _alerts(pdf: FPDF, report: Mapping[str, Any]) -> None:
    _heading(pdf, "9. Alerts and their resolution")
    _para(
        pdf,
        "Detected: when the detector or the QC check found it (the data's time); recorded: when "
        "the alert was written to the store.",
        size=7.5,
    )
    _table(
        pdf,
        [
            "Alert",
            "Detected / recorded",
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
                f"{day(a['detected_at'])} / {_short_time(a['opened_at'])}",
                a["severity"],
                a["title"],
                a["status"],
                _by_at(a["acknowledged_by"], a["acknowledged_at"]),
                _by_at(a["resolved_by"], a["resolved_at"]),
                a["resolution"] or "-",
            ]
            for a in report["alerts"]
        ],
        (12, 27, 15, 68, 22, 36, 36, 61),
    )


def _incidents(pdf: FPDF, report: Mapping[str, Any]) -> None:
    _heading(pdf, "10. Incident register and reporting clocks")
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
                    (c["summary"], FLAG) if c["status"] == "overdue" else c["summary"],
                ]
            )
    sustained = [
        i
        for i in report["conclusions"]["open_items"]
        if i["code"] == "sustained_finding_without_incident"
    ]
    _table(
        pdf,
        ["Incident", "Title", "Seriousness", "Regime", "Deadline", "Due", "Status"],
        clock_rows,
        (16, 70, 32, 50, 28, 22, 59),
        empty="No incident recorded for this deployment in the period"
        + (
            f" - although {len(sustained)} sustained finding(s) are open (section 12)."
            if sustained
            else "."
        ),
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
        size=7.5,
    )


def _corrective(pdf: FPDF, report: Mapping[str, Any]) -> None:
    _heading(pdf, "11. Corrective actions")
    _table(
        pdf,
        ["Source", "Date", "By", "Action"],
        [
            [f"{c['source']} {c['source_id']}", _short_time(c["at"]), c["by"], c["action"]]
            for c in report["corrective_actions"]
        ],
        (30, 30, 40, 177),
    )


def _substantial_changes(pdf: FPDF, report: Mapping[str, Any]) -> None:
    _heading(pdf, "11a. Substantial changes: revalidations of new model versions")
    changes = report.get("substantial_changes", [])
    if not changes:
        _para(pdf, "No new model version was revalidated in this period.")
    for c in changes:
        _para(
            pdf,
            f"Revalidation {c['revalidation_id']}: version {c['candidate_version']} against the "
            f"accepted {c['accepted_version']} ({c['status']}). Criteria {c['criteria']} declared "
            f"by {c['criteria_by']} at {_short_time(c['criteria_at'])}. Evidence: "
            f"{c['validation_cases']} validation cases (SHA-256 {c['validation_sha256'] or '-'}), "
            f"{c['shadow_studies']} shadow studies. Verdict: {c['verdict'] or 'not evaluated'}. "
            f"Decision: {c['decision'] or 'pending'}"
            + (f" by {c['decided_by']} at {_short_time(c['decided_at'])}" if c["decision"] else "")
            + (f"; conditions: {c['conditions']}" if c["conditions"] else "")
            + ".",
        )
        _table(
            pdf,
            ["Criterion", "n", "Accepted (95% CI)", "Candidate (95% CI)",
             "Difference (95% CI)", "Margin", "Verdict"],
            result_rows(c),
            (35, 15, 55, 55, 60, 20, 25),
            empty="Not evaluated.",
        )  # fmt: skip


def _conclusions(pdf: FPDF, report: Mapping[str, Any]) -> None:
    conclusions = report["conclusions"]
    _heading(pdf, "12. Conclusions and open items", room=50)
    _para(pdf, "Main findings (drafted from the data of the sections above):", "B")
    _bullets(pdf, conclusions["findings"])
    pdf.ln(1)
    _para(pdf, "Open items (to be closed, or justified, before the report is signed):", "B")
    _table(
        pdf,
        ["No.", "Severity", "Section", "Open item"],
        [
            [
                i["number"],
                (i["severity"], SEVERITY_STYLE[i["severity"]])
                if SEVERITY_STYLE[i["severity"]]
                else i["severity"],
                i["section"],
                i["text"],
            ]
            for i in conclusions["open_items"]
        ],
        (10, 16, 16, 235),
        empty="No open items.",
    )


def _sign_off(pdf: FPDF, report: Mapping[str, Any]) -> None:
    br = report["conclusions"]["benefit_risk"]
    signatures = report["signature_block"]
    # the draft, the lines for the manufacturer's conclusion and the signatures on one page
    room = 70 + 11 * len(signatures)
    _heading(pdf, "13. Benefit-risk conclusion (draft) and sign-off", room=room)
    _para(pdf, f"Status drafted from the data: {br['status']}.", "B")
    _para(pdf, br["text"])
    _para(
        pdf,
        "Conclusion of the manufacturer (to be completed by the signatories; replaces the draft "
        "above when signed):",
        "B",
    )
    x, y = pdf.l_margin, pdf.get_y() + 1
    width = pdf.w - pdf.l_margin - pdf.r_margin
    pdf.set_draw_color(120)
    for k in range(3):
        pdf.line(x, y + 7 * (k + 1), x + width, y + 7 * (k + 1))
    pdf.set_y(y + 25)
    pdf.set_draw_color(0)
    rows = [[s["name"] or "", s["role"], s["date"] or "", ""] for s in signatures]
    _table(pdf, ["Name", "Role", "Date", "Signature"], rows, (60, 107, 40, 70), line_height=10)


def _annexes(pdf: FPDF, report: Mapping[str, Any]) -> None:
    history = report["model_history"]
    pdf.add_page()
    _heading(pdf, "Annex A. Model version history")
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
    _heading(pdf, "Annex B. Audit trail in the period")
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


def render_pdf(report: Mapping[str, Any]) -> bytes:
    dep, period = report["deployment"], report["period"]
    pdf = _Report(orientation="L", format="A4")
    pdf.title_text = (
        f"phase4 post-market surveillance report - {dep['id']} - {period['from']} to {period['to']}"
    )
    pdf.footer_text = (
        f"Generated {report['generated_at'][:10]} by {report['generated_by']}; "
        "draft until signed (section 13)"
    )
    pdf.set_title(latin1(pdf.title_text))
    pdf.set_author("phase4")
    pdf.set_auto_page_break(True, margin=15)
    pdf.alias_nb_pages()
    pdf.add_page()
    _title_block(pdf, report)
    for section in (
        _identity,
        _plan,
        _summary,
        _performance,
        _usage,
        _subgroups,
        _drift,
        _phantoms,
        _alerts,
        _incidents,
        _corrective,
        _substantial_changes,
        _conclusions,
        _sign_off,
        _annexes,
    ):
        section(pdf, report)
    return bytes(pdf.output())
