"""The post-market surveillance report: the device identity (contract, migration, API, CLI,
audit), the report's sections in the JSON, the PDF rendered and read back (section titles,
drawn figures, the same numbers as the JSON), and the conclusions it draws: a pause that did
not stop the AI, and a sustained phantom finding with no incident recorded."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from PIL import Image
from sqlmodel import Session, col, select
from typer.testing import CliRunner

from phase4.alerts.export import export_deployment, psur
from phase4.alerts.export.psur import pct_ci
from phase4.cli import app
from phase4.monitor.core.device_identity import (
    DeviceIdentityError,
    merge_identity,
    parse_identity,
)
from phase4.monitor.domain.device_identity import set_device_identity
from phase4.monitor.store.db import alembic_config, current_revision, session_scope
from phase4.monitor.store.models import AuditEntry, DeviceIdentityRecord
from tests.conftest import Fixture
from tests.export.conftest import IDENTITY, PAUSE_TEXT, PsurWorld

POPPLER = shutil.which("pdftoppm") is not None and shutil.which("pdftotext") is not None
needs_poppler = pytest.mark.skipif(
    not POPPLER, reason="poppler-utils (pdftoppm, pdftotext) not installed: bash .ci/system-deps"
)
SECTIONS = (
    "1. Device identity and intended use",
    "2. PMS plan, period and data sources",
    "3. Executive summary",
    "4. Performance against the validated baseline",
    "5. Usage volume and findings over time",
    "6. Population and subgroup performance",
    "7. Drift findings",
    "8. Phantom quality control",
    "9. Alerts and their resolution",
    "10. Incident register and reporting clocks",
    "11. Corrective actions",
    "12. Conclusions and open items",
    "13. Benefit-risk conclusion (draft) and sign-off",
    "Annex A. Model version history",
    "Annex B. Audit trail in the period",
)
PCT_CI = re.compile(r"\d+\.\d % \(95 % CI \d+\.\d-\d+\.\d; n = \d+\)")


# --- the identity contract ------------------------------------------------------------------


def test_identity_refuses_unknown_keys_and_bad_values_naming_the_field() -> None:
    assert parse_identity(IDENTITY).stored()["notified_body"]["number"] == "0123"
    cases = {
        "identity.manufacturer: must not be blank": {"manufacturer": "  "},
        "identity.basic_udi_di: a Basic UDI-DI is": {"basic_udi_di": "with space"},
        "identity.notified_body.number: a notified body's identification number is four": {
            "notified_body": {"name": "NB", "number": "123"}
        },
        "identity.mdr_class:": {"mdr_class": "IV"},
        "identity.pms_plann: extra fields not permitted": {"pms_plann": {}},
        "identity.validated_baseline.source: Field required": {
            "validated_baseline": {"sensitivity": {"value": 0.9, "n": 10}}
        },
        "identity.validated_baseline.sensitivity.value:": {
            "validated_baseline": {"sensitivity": {"value": 1.5, "n": 10}, "source": "x"}
        },
        "identity.manufacturer: contains a NUL": {"manufacturer": "a\x00b"},
    }
    for said, doc in cases.items():
        with pytest.raises(DeviceIdentityError) as err:
            parse_identity(doc)
        assert str(err.value).startswith(said), (said, str(err.value))


def test_merge_lays_changes_over_the_stored_identity() -> None:
    base = parse_identity(IDENTITY)
    merged = merge_identity(
        base, {"notified_body": {"certificate": "C-1"}, "manufacturer": None, "mdr_class": "III"}
    )
    assert merged.notified_body is not None
    assert (merged.notified_body.number, merged.notified_body.certificate) == ("0123", "C-1")
    assert merged.manufacturer is None and merged.mdr_class == "III"
    assert merged.validated_baseline == base.validated_baseline


# --- the store: migration 0009, audited changes ---------------------------------------------


def test_migration_0009_creates_and_drops_the_table(world: Fixture, db_url: str) -> None:
    engine = world.engine
    with session_scope(engine) as s:
        set_device_identity(s, world.deployment_a, {"manufacturer": "M"}, actor="t")
    engine.dispose()
    script = ScriptDirectory.from_config(alembic_config(db_url))
    head = script.get_current_head()
    assert head == current_revision(engine)
    assert script.get_revision("0009_device_identity") is not None  # later ones follow it
    command.downgrade(alembic_config(db_url), "0008_canonical_verdicts")
    assert "device_identity" not in sa.inspect(engine).get_table_names()
    engine.dispose()
    command.upgrade(alembic_config(db_url), "head")
    assert current_revision(engine) == head
    columns = {c["name"] for c in sa.inspect(engine).get_columns("device_identity")}
    assert columns == {"deployment_id", "identity", "updated_by", "updated_at"}
    engine.dispose()


def test_setting_the_identity_is_audited_once_per_change(world: Fixture) -> None:
    with session_scope(world.engine) as s:
        set_device_identity(s, world.deployment_a, IDENTITY, actor="qa:grace", reason="IFU v3")
        set_device_identity(s, world.deployment_a, IDENTITY, actor="qa:grace")  # no change
        changed = {**IDENTITY, "mdr_class": "III"}
        set_device_identity(s, world.deployment_a, changed, actor="qa:grace", reason="reclass")
    with Session(world.engine) as s:
        entries = list(
            s.exec(
                select(AuditEntry)
                .where(AuditEntry.action == "deployment.identity")
                .order_by(col(AuditEntry.seq))
            )
        )
        row = s.get(DeviceIdentityRecord, world.deployment_a)
    assert [e.reason for e in entries] == ["IFU v3", "reclass"]
    assert entries[0].old_value is None
    assert entries[1].old_value == {"identity": parse_identity(IDENTITY).stored()}
    assert entries[1].new_value is not None
    assert entries[1].new_value["identity"]["mdr_class"] == "III"
    assert row is not None and row.identity["mdr_class"] == "III"


# --- the API and the command line -----------------------------------------------------------


def test_api_sets_and_reads_the_identity(client: TestClient, world: Fixture) -> None:
    path = f"/v1/deployments/{world.deployment_a}/identity"
    admin, viewer = world.auth(world.admin), world.auth(world.viewer)
    assert client.get(path, headers=viewer).status_code == 404  # none recorded yet
    r = client.put(path, json={"identity": IDENTITY, "reason": "IFU v3"}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["updated_by"] == "token:admin"
    got = client.get(path, headers=viewer).json()
    assert got["identity"]["pms_plan"] == {"document_id": "PMS-PLAN-TEST", "version": "2.1"}
    bad = {**IDENTITY, "notified_body": {"name": "NB", "number": "12"}}
    r = client.put(path, json={"identity": bad}, headers=admin)
    assert r.status_code == 422
    message = r.json()["error"]["message"]
    assert message.startswith("identity.notified_body.number: a notified body's identification")
    r = client.put(path, json={"identity": IDENTITY}, headers=world.auth(world.reviewer))
    assert r.status_code == 403
    r = client.put("/v1/deployments/nowhere/identity", json={"identity": IDENTITY}, headers=admin)
    assert r.status_code == 404


def test_cli_sets_shows_and_refuses(world: Fixture, db_url: str) -> None:
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(
            app, ["deployment", "identity", world.deployment_a, *args, "--database-url", db_url]
        )
        return result.exit_code, result.output

    code, out = run("--identity", json.dumps(IDENTITY), "--reason", "IFU v3")
    assert code == 0, out
    code, out = run(
        "--mdr-class", "III", "--baseline-sensitivity", "92%/300", "--accepted-by", "dr-curie"
    )
    assert code == 0, out
    code, out = run()
    assert code == 0, out
    shown = json.loads(out)
    assert shown["identity"]["mdr_class"] == "III"
    assert shown["identity"]["validated_baseline"]["sensitivity"] == {"value": 0.92, "n": 300}
    assert shown["identity"]["validated_baseline"]["specificity"]["n"] == 250  # kept
    assert shown["identity"]["clinical_acceptance"]["accepted_by"] == "dr-curie"
    code, out = run("--notified-body-number", "12")
    assert code == 2
    assert "identity.notified_body.number: a notified body's identification number" in out
    code, out = run("--baseline-ppv", "high")
    assert code == 2 and "--baseline-ppv 'high'" in out


# --- the report's sections and conclusions --------------------------------------------------


def _export(w: PsurWorld, out: Path, formats: set[str] | None = None) -> Path:
    result = export_deployment(
        w.fx.engine,
        w.deployment,
        w.start,
        w.end,
        formats or {"json", "pdf", "csv"},
        out,
        actor="qa:grace",
        as_of=w.as_of,
    )
    return result.directory


def _items(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for item in report["conclusions"]["open_items"]:
        out.setdefault(item["code"], []).append(item)
    return out


def test_report_states_identity_baseline_subgroups_and_flags_what_is_open(
    psur_world: PsurWorld, tmp_path: Path
) -> None:
    w = psur_world
    report = json.loads((_export(w, tmp_path, {"json"}) / "report.json").read_text())

    ident = report["identity"]
    assert ident["recorded"] and ident["missing"] == []
    assert (ident["basic_udi_di"], ident["mdr_class"], ident["psur_every_months"]) == (
        "TEST-BUDI-PLD-2",
        "IIb",
        12,
    )
    assert report["acceptance"]["accepted_on"] == "2025-01-15"
    comparison = {r["metric"]: r for r in report["baseline_comparison"]["metrics"]}
    assert comparison["sensitivity"]["verdict"] == "below"  # 50 % (30-70) against 90 % - 5
    assert comparison["specificity"]["verdict"] == "lower, not significant"
    assert comparison["ppv"]["verdict"] == "consistent"
    assert comparison["sensitivity"]["difference"] == pytest.approx(-0.4)
    sexes = {r["band"]: r for r in report["subgroups"]["dimensions"]["sex"]}
    assert (sexes["male"]["feedback"], sexes["female"]["feedback"]) == (20, 20)
    assert sexes["male"]["share_of_studies"] == 0.5
    # i % 4 == 0 (TP) and 2 (TN) are male (even i): all their positives are found
    assert sexes["male"]["sensitivity"]["value"] == 1.0
    assert sexes["female"]["sensitivity"]["value"] == 0.0
    assert [r["band"] for r in report["subgroups"]["dimensions"]["site"]] == ["site-a"]
    assert report["usage"]["latency_ms_median"] == pytest.approx(
        report["usage"]["latency_s_median"] * 1000
    )

    items = _items(report)
    (pause,) = items["usage_after_pause"]
    assert pause["severity"] == "high"
    assert PAUSE_TEXT in pause["text"] and "analysed 24 studies after the finding" in pause["text"]
    (sustained,) = items["sustained_finding_without_incident"]
    assert sustained["severity"] == "high"
    assert "15 of 16 cylinder results" in sustained["text"]
    # the mean of the 16 results in the span: (15 x 0.92 + 0.99) / 16 = 0.924
    assert "recovery_ratio -7.6 % from the tolerance centre" in sustained["text"]
    assert items["sensitivity_below_baseline"][0]["severity"] == "high"
    qc = report["phantom_qc"]["by_device"][0]
    assert qc["longest_run"]["results"] == 8  # the pass on day 7 ends the first run
    assert qc["episode"]["sustained"] and qc["episode"]["failures"] == 15
    br = report["conclusions"]["benefit_risk"]
    assert br["status"] == "adverse" and br["draft"]
    assert br["text"].startswith("DRAFT")
    assert [s["name"] for s in report["signature_block"]] == [None, None]


def test_the_flags_are_raised_only_when_the_situation_is_there(
    psur_world: PsurWorld, tmp_path: Path
) -> None:
    report = json.loads((_export(psur_world, tmp_path, {"json"}) / "report.json").read_text())
    as_of = psur_world.as_of

    # An incident recorded after the phantom episode began: the finding is covered.
    covered = copy.deepcopy(report)
    begun = date.fromisoformat(report["phantom_qc"]["by_device"][0]["episode"]["from"][:10])
    covered["incidents"].append(
        {**covered["incidents"][0], "aware_at": f"{begun + timedelta(days=3)}T09:00:00+00:00"}
    )
    assert "sustained_finding_without_incident" not in _items(
        {"conclusions": {"open_items": psur.open_items(covered, as_of)}}
    )
    # No study after the pause: nothing to flag.
    stopped = copy.deepcopy(report)
    for p in stopped["usage"]["pauses"]:
        p["records_after_finding"] = p["records_after_recorded"] = 0
    assert "usage_after_pause" not in _items(
        {"conclusions": {"open_items": psur.open_items(stopped, as_of)}}
    )
    # What a pause is, in people's words.
    assert psur.says_paused("AI paused at site B pending revalidation")
    assert psur.says_paused("Use suspended until the vendor's fix")
    assert not psur.says_paused("AI paused, then resumed after revalidation on 50 studies")
    assert not psur.says_paused("Not paused: the drift is within the validated range")
    assert not psur.says_paused("Reconstruction reverted by the vendor")


def test_a_report_without_identity_says_what_is_missing(export_world: Any, tmp_path: Path) -> None:
    result = export_deployment(
        export_world.fx.engine,
        export_world.deployment,
        export_world.start,
        export_world.end,
        {"json"},
        tmp_path,
        actor="qa:grace",
        as_of=export_world.as_of,
    )
    report = json.loads((result.directory / "report.json").read_text())
    items = _items(report)
    assert items["identity_missing"][0]["severity"] == "high"
    assert {"acceptance_missing", "baseline_missing"} <= set(items)
    assert "Basic UDI-DI" in report["identity"]["missing"]
    assert report["baseline_comparison"]["available"] is False
    assert report["conclusions"]["benefit_risk"]["status"] == "not confirmed"


# --- the PDF, rendered and read back --------------------------------------------------------


def _pdftotext(pdf: Path, *args: str) -> str:
    out = subprocess.run(
        ["pdftotext", *args, str(pdf), "-"], check=True, capture_output=True, text=True
    )
    return out.stdout


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def _colour_pixels(image: Image.Image, colour: tuple[int, int, int], tolerance: int = 40) -> int:
    """Pixels within ``tolerance`` of ``colour`` in every channel."""
    rgb = np.asarray(image.convert("RGB"), dtype=int)
    return int((np.abs(rgb - np.array(colour)) <= tolerance).all(axis=-1).sum())


@needs_poppler
def test_pdf_renders_with_its_sections_and_figures(psur_world: PsurWorld, tmp_path: Path) -> None:
    from phase4.alerts.export import figures

    folder = _export(psur_world, tmp_path / "out")
    pdf = folder / "report.pdf"
    subprocess.run(["pdftoppm", "-png", "-r", "50", str(pdf), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 5
    text = _flat(_pdftotext(pdf, "-raw"))
    for title in SECTIONS:
        assert title in text, title
    for words in ("TEST-BUDI-PLD-2", "Test Notified Body, NB 0123", "PMS-PLAN-TEST version 2.1"):
        assert words in text
    assert "NOT RECORDED" not in text  # the identity is complete
    assert "Accepted for clinical use 2025-01-15 by dr-curie, physicist" in text

    def page_of(words: str) -> int:
        for n in range(1, len(pages) + 1):
            if words in _flat(_pdftotext(pdf, "-raw", "-f", str(n), "-l", str(n))):
                return n
        raise AssertionError(f"{words!r} on no page")

    first = Image.open(pages[page_of("Figure 1:") - 1])
    assert _colour_pixels(first, figures.GREEN, 30) > 20  # the validated values
    # the world's months have fewer than 30 labelled cases each: hollow marks, no band
    assert _colour_pixels(first, figures.THIN, 10) > 10
    second = Image.open(pages[page_of("Figure 2:") - 1])
    assert _colour_pixels(second, figures.BAR, 20) > 300  # studies per month
    assert _colour_pixels(second, figures.ORANGE, 40) > 5  # drift findings
    assert _colour_pixels(second, figures.RED, 40) > 5  # phantom QC out of tolerance
    assert _colour_pixels(second, figures.PURPLE, 40) > 5  # the incident


@needs_poppler
def test_pdf_and_json_carry_the_same_numbers(psur_world: PsurWorld, tmp_path: Path) -> None:
    folder = _export(psur_world, tmp_path)
    report = json.loads((folder / "report.json").read_text())
    text = _flat(_pdftotext(folder / "report.pdf", "-raw"))

    perf = report["performance"]
    blocks = [perf["overall"], *perf["by_month"]]
    expected = (
        {pct_ci(b[m]) for b in blocks for m in ("sensitivity", "specificity", "ppv")}
        | {
            pct_ci(r[m])
            for rows in report["subgroups"]["dimensions"].values()
            for r in rows
            for m in ("sensitivity", "specificity", "ppv")
        }
        | {pct_ci(r["baseline"]) for r in report["baseline_comparison"]["metrics"]}
    )
    expected.discard("-")
    # every interval in the JSON is in the PDF, and the PDF prints no other
    for value in expected:
        assert value in text, value
    assert set(PCT_CI.findall(text)) == expected

    usage = report["usage"]
    assert f"{usage['records']} studies analysed by the AI in the period" in text
    for m in usage["by_month"]:
        assert f"{m['month']} {m['records']} {m['errors']}" in text, m
    for m in perf["by_month"]:
        c = m["confusion"]
        assert f"{m['month']} {m['feedback']} {c['tp']}/{c['fp']}/{c['tn']}/{c['fn']}" in text
    for line in report["executive_summary"]:
        assert _flat(line) in text, line
    for item in report["conclusions"]["open_items"]:
        assert f"{item['number']} {item['severity']} {item['section']} {_flat(item['text'])}" in (
            text
        ), item["code"]
    episode = report["phantom_qc"]["by_device"][0]["episode"]
    assert f"{episode['failures']} of {episode['results']} failed" in text
    assert f"{100 * episode['deviation']:+.1f} % from the tolerance centre" in text
    assert _flat(report["conclusions"]["benefit_risk"]["text"]) in text
    assert " ms (" in text and "e-0" not in text  # latency in ms, never in powers of ten


@needs_poppler
def test_the_performance_figure_draws_bands_estimates_and_months_below(tmp_path: Path) -> None:
    from fpdf import FPDF

    from phase4.alerts.export import figures
    from phase4.alerts.export.stats import wilson

    def month(k: int, successes: int, n: int) -> dict[str, Any]:
        block = wilson(successes, n)
        return {"month": f"2026-{k:02d}", "sensitivity": block, "specificity": block, "ppv": block}

    months = [month(k, 90, 100) for k in range(1, 7)] + [month(7, 60, 100), month(8, 3, 5)]
    baseline = wilson(180, 200)
    comparison = {
        "margin": 0.05,
        "metrics": [
            {"metric": m, "baseline": baseline, "months_below": ["2026-07"]}
            for m in ("sensitivity", "specificity", "ppv")
        ],
    }
    pdf = FPDF(orientation="L", format="A4")
    pdf.add_page()
    figures.performance_figure(pdf, months, comparison)
    (tmp_path / "figure.pdf").write_bytes(bytes(pdf.output()))
    subprocess.run(
        ["pdftoppm", "-png", "-r", "50", str(tmp_path / "figure.pdf"), str(tmp_path / "f")],
        check=True,
    )
    (page,) = (Image.open(p) for p in tmp_path.glob("f-*.png"))
    assert _colour_pixels(page, figures.BAND) > 300  # the 95 % bands
    assert _colour_pixels(page, figures.BLUE, 25) > 30  # the monthly estimates
    assert _colour_pixels(page, figures.RED, 30) > 5  # the month below
    assert _colour_pixels(page, figures.GREEN, 30) > 20  # the validated value
    assert _colour_pixels(page, figures.THIN, 10) > 5  # the month with 5 cases
