"""phase4 export: contents of every format, the manifest, the audit entry, privacy, bad input
and the command line. Each test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import re
import zlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from fhir.resources.R4B.bundle import Bundle
from sqlmodel import Session, col, select
from typer.testing import CliRunner

import phase4.alerts.export.core as core
from phase4.alerts.export import ExportError, ExportResult, export_deployment, verify_manifest
from phase4.alerts.export.cli import export_command
from phase4.monitor.store.audit import AUDIT_KEY_ENV, verify_chain
from phase4.monitor.store.models import AuditEntry
from tests.export.conftest import AUDIT_KEY, PSEUDONYM_PREFIX, RECORD_PREFIX, ExportWorld

ALL_FILES = {
    "manifest.json",
    "report.json",
    "report.pdf",
    "audit_fhir.json",
    *(
        f"csv/{n}.csv"
        for n in (
            "identity",
            "baseline_comparison",
            "subgroups",
            "subgroup_disparity",
            "phantom_episodes",
            "open_items",
            "usage",
            "population",
            "performance",
            "drift_findings",
            "phantom_qc",
            "phantom_devices",
            "phantom_failures",
            "alerts",
            "reference_outlook",
            "incidents",
            "incident_clocks",
            "corrective_actions",
            "substantial_changes",
            "model_versions",
            "model_changes",
            "audit",
        )
    ),
}


def _export(w: ExportWorld, out: Path, formats: set[str] | None = None, **kw: Any) -> ExportResult:
    return export_deployment(
        w.fx.engine,
        w.deployment,
        w.start,
        w.end,
        formats or set(),
        out,
        actor="qa:grace",
        as_of=w.as_of,
        **kw,
    )


def _last_entry(w: ExportWorld) -> AuditEntry:
    with Session(w.fx.engine) as s:
        entry = s.exec(select(AuditEntry).order_by(col(AuditEntry.seq).desc())).first()
    assert entry is not None
    return entry


def _pdf_text(data: bytes) -> bytes:
    """The PDF with its compressed streams inflated, so its text can be searched."""
    out = [data]
    for m in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", data, re.S):
        with contextlib.suppress(zlib.error):
            out.append(zlib.decompress(m.group(1)))
    return b"\n".join(out)


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_export_writes_every_format_with_the_right_numbers(
    export_world: ExportWorld, tmp_path: Path
) -> None:
    w = export_world
    result = _export(w, tmp_path / "out", audit_key=AUDIT_KEY)
    assert set(result.files) == ALL_FILES
    assert result.directory.parent == tmp_path / "out"
    assert result.directory.name.startswith(f"phase4-export_lesion-ai@site-a_{w.start}_{w.end}_")
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp
    report = json.loads((result.directory / "report.json").read_text())

    assert report["period"]["from"] == w.start.isoformat()
    assert report["deployment"]["model"] == {
        "name": "PETLesionDetect",
        "version": "2.1.0",
        "manufacturer": None,
        "intended_use": None,
        "udi": None,
    }
    usage = report["usage"]
    assert (usage["records"], usage["errors"]) == (40, 1)  # not the old record, not B's
    assert sum(m["records"] for m in usage["by_month"]) == 40
    sex = {r["band"]: r["records"] for r in report["population"]["dimensions"]["sex"]}
    assert (sex["male"], sex["female"], sex["not recorded"]) == (20, 20, 0)
    ages = {r["band"]: r["records"] for r in report["population"]["dimensions"]["age_band"]}
    assert (ages["18-39"], ages["40-64"], ages["65-79"]) == (10, 25, 5)

    overall = report["performance"]["overall"]
    assert overall["confusion"] == {"tp": 10, "fp": 10, "tn": 10, "fn": 10}
    assert overall["sensitivity"]["value"] == 0.5
    assert overall["sensitivity"]["ci_low"] == pytest.approx(0.2993, abs=1e-4)
    assert overall["ppv"]["n"] == 20
    assert overall["dice"]["mean"] == pytest.approx(0.8) and overall["dice"]["n"] == 10

    drift = {d["alert_id"]: d for d in report["drift_findings"]}
    found = drift[w.drift_alert_id]
    assert found["estimated_change_at"].startswith((w.start + timedelta(days=10)).isoformat())
    # the finding in world dates first: the change's start, its detection and the delay
    assert found["change_began"].startswith((w.start + timedelta(days=10)).isoformat())
    assert found["detected"] is not None and found["delay_days"] is not None
    assert found["headline"].endswith(".") and "(detected " in found["headline"]
    assert found["linked"][0]["stream"] == "features.image_noise_cv"
    assert found["repeats"] == 2
    assert "B only" not in json.dumps(report)

    alerts = {a["alert_id"]: a for a in report["alerts"]}
    assert len(alerts) == 3  # two drift alerts and the scanner's QC alert
    resolved = alerts[w.drift_alert_id]
    assert (resolved["status"], resolved["resolved_by"]) == ("resolved", "dr-curie")
    assert resolved["resolution"] == "Reconstruction reverted by the vendor"
    assert any(a["scope"] == "device" for a in alerts.values())
    assert {a["device_name"] for a in alerts.values() if a["scope"] == "device"} == {
        "Siemens Biograph Vision (PET-001)"
    }

    qc = report["phantom_qc"]["summary"]
    assert qc == [
        {
            "device_id": w.device_id,
            "device_name": "Siemens Biograph Vision (PET-001)",
            "kind": "flood",
            "results": 3,
            "pass": 2,
            "outside_tolerance": 0,
            "outside_action": 1,
            "no_verdict": 0,
            "reviewed": 1,
            "first_acquired_at": qc[0]["first_acquired_at"],
            "last_acquired_at": qc[0]["last_acquired_at"],
        }
    ]
    assert report["phantom_qc"]["failures"][0]["metrics"] == ["iu"]

    (incident,) = report["incidents"]
    clocks = {c["regime"]: c for c in incident["clocks"]}
    aware = w.start + timedelta(days=14)
    assert clocks["eu_ai_act"]["due"] == (aware + timedelta(days=15)).isoformat()
    assert clocks["eu_ai_act"]["status"] == "reported_on_time"
    assert clocks["eu_mdr"]["due"] == (aware + timedelta(days=10)).isoformat()
    assert clocks["eu_mdr"]["status"] == "overdue"  # as of the end, 26 days after awareness
    assert clocks["fda_803"]["deadline_kind"] == "work"
    sources = {c["source"] for c in report["corrective_actions"]}
    assert sources == {"alert", "incident"}

    history = report["model_history"]
    assert [v["version"] for v in history["versions"]] == ["2.1.0"]
    assert {c["action"] for c in history["changes"]} >= {"deployment.create", "model.create"}
    actions = {e["action"] for e in report["audit"]["entries"]}
    assert {"deployment.create", "device.create", "alert.resolve"} <= actions
    assert "token.create" not in actions  # tokens concern no deployment
    entities = {(e["entity_type"], e["entity_id"]) for e in report["audit"]["entries"]}
    assert ("deployment", "lesion-ai@site-b") not in entities
    assert report["audit"]["chain"]["ok"]

    # CSV: one file per table, parseable, the same numbers.
    usage_rows = _csv(result.directory / "csv" / "usage.csv")
    assert sum(int(r["records"]) for r in usage_rows) == 40
    perf = _csv(result.directory / "csv" / "performance.csv")
    assert perf[0]["month"] == "all" and float(perf[0]["sensitivity"]) == 0.5
    assert len(_csv(result.directory / "csv" / "alerts.csv")) == 3
    assert len(_csv(result.directory / "csv" / "incident_clocks.csv")) == 3
    audit_rows = _csv(result.directory / "csv" / "audit.csv")
    assert len(audit_rows) == len(report["audit"]["entries"])

    pdf = (result.directory / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-")
    text = _pdf_text(pdf)
    for words in (b"Post-market surveillance report", b"lesion-ai@site-a", b"EU MDR Art. 87"):
        assert words in text


def test_fhir_bundle_validates_as_r4b_audit_events(
    export_world: ExportWorld, tmp_path: Path
) -> None:
    result = _export(export_world, tmp_path, {"fhir", "json"})
    assert set(result.files) == {"manifest.json", "report.json", "audit_fhir.json"}
    bundle = Bundle.model_validate_json((result.directory / "audit_fhir.json").read_text())
    report = json.loads((result.directory / "report.json").read_text())
    assert bundle.type == "collection"
    assert len(bundle.entry or []) == len(report["audit"]["entries"]) > 0
    by_action: dict[str, Any] = {}
    for item in bundle.entry or []:
        event = item.resource
        assert event.get_resource_type() == "AuditEvent"
        assert event.outcome == "0" and event.recorded is not None
        (agent,) = event.agent
        assert agent.requestor is True and agent.who.display
        assert event.source.observer.display.startswith("phase4 monitor")
        (entity,) = event.entity
        assert entity.what.identifier.value
        details = {d.type: d.valueString for d in entity.detail}
        assert len(details["phase4.entry_hash"]) == 64
        by_action[event.subtype[0].code] = event
    assert by_action["deployment.create"].action == "C"
    assert by_action["alert.resolve"].action == "U"
    resolve = by_action["alert.resolve"].entity[0]
    assert resolve.what.identifier.system == "urn:phase4:alert"
    assert {d.type for d in resolve.detail} >= {"phase4.reason", "phase4.new_value"}


def test_manifest_verifies_and_any_edit_breaks_it(
    export_world: ExportWorld, tmp_path: Path
) -> None:
    result = _export(export_world, tmp_path, audit_key=AUDIT_KEY)
    d = result.directory
    verdict = verify_manifest(d, key=AUDIT_KEY, manifest_sha256=result.manifest_sha256)
    assert verdict.ok, verdict.problems
    assert verdict.signature_ok and verdict.head_signature_ok
    assert verdict.files_checked == len(result.files) - 1  # every file but the manifest
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["audit_head"]["seq"] == result.audit_seq - 1  # signed before the export

    for name in result.files:
        if name == "manifest.json":
            continue
        path = d / name
        original = path.read_bytes()
        path.write_bytes(original + b" ")
        broken = verify_manifest(d)
        assert not broken.ok and broken.changed == [name], name
        assert name in broken.describe()
        path.write_bytes(original)
    assert verify_manifest(d).ok

    (d / "csv" / "usage.csv").unlink()
    (d / "extra.txt").write_text("smuggled")
    broken = verify_manifest(d)
    assert (broken.missing, broken.unexpected) == (["csv/usage.csv"], ["extra.txt"])


def test_a_rewritten_manifest_is_caught_by_key_or_audit_hash(
    export_world: ExportWorld, tmp_path: Path
) -> None:
    result = _export(export_world, tmp_path, audit_key=AUDIT_KEY)
    d = result.directory
    report = d / "report.json"
    report.write_text(report.read_text().replace('"records": 40', '"records": 41', 1))
    manifest = json.loads((d / "manifest.json").read_text())
    for f in manifest["files"]:  # an attacker recomputes the digest too
        if f["path"] == "report.json":
            f["sha256"] = hashlib.sha256(report.read_bytes()).hexdigest()
    (d / "manifest.json").write_text(json.dumps(manifest))
    assert verify_manifest(d).ok  # digests alone cannot tell
    keyed = verify_manifest(d, key=AUDIT_KEY)
    assert not keyed.ok and keyed.signature_ok is False
    recorded = verify_manifest(d, manifest_sha256=result.manifest_sha256)
    assert not recorded.ok and "audit trail" in recorded.describe()
    assert not verify_manifest(d, key=b"wrong-key-0123456789abcdef012345").ok


def test_export_is_audited_and_the_chain_still_verifies(
    export_world: ExportWorld, tmp_path: Path
) -> None:
    w = export_world
    result = _export(w, tmp_path, {"json"}, audit_key=AUDIT_KEY)
    entry = _last_entry(w)
    assert (entry.seq, entry.action, entry.entity_type, entry.entity_id, entry.actor) == (
        result.audit_seq,
        "export",
        "deployment",
        w.deployment,
        "qa:grace",
    )
    assert entry.new_value is not None
    assert entry.new_value["period"] == {"from": w.start.isoformat(), "to": w.end.isoformat()}
    assert entry.new_value["formats"] == ["json"]
    assert entry.new_value["manifest_sha256"] == result.manifest_sha256
    assert entry.new_value["folder"] == result.directory.name
    assert result.audit_head is not None
    with Session(w.fx.engine) as s:
        verdict = verify_chain(s, head=result.audit_head, key=AUDIT_KEY)
    assert verdict.ok and verdict.head_verified


def test_no_pseudonym_or_record_id_leaves_the_store(
    export_world: ExportWorld, tmp_path: Path
) -> None:
    result = _export(export_world, tmp_path)
    for name in result.files:
        data = (result.directory / name).read_bytes()
        if name.endswith(".pdf"):
            data = _pdf_text(data)
        for secret in (PSEUDONYM_PREFIX, RECORD_PREFIX, "fb-00"):
            assert secret.encode() not in data, f"{secret} in {name}"


def _nothing_written(w: ExportWorld, out: Path, seq_before: int) -> None:
    assert not out.exists() or list(out.iterdir()) == []
    assert _last_entry(w).seq == seq_before


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"deployment_id": "no-such@site"}, r"no deployment 'no-such@site' \(known: lesion-ai"),
        ({"swap": True}, "from .* is after to"),
        ({"formats": {"json", "xml"}}, "unknown export format 'xml'"),
        ({"actor": " "}, "an actor is required"),
        ({"audit_key": b"short"}, "at least 16 bytes"),
    ],
)
def test_bad_input_is_named_and_nothing_is_written(
    export_world: ExportWorld, tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    w = export_world
    out = tmp_path / "out"
    before = _last_entry(w).seq
    start, end = (w.end, w.start) if change.get("swap") else (w.start, w.end)
    with pytest.raises(ExportError, match=message):
        export_deployment(
            w.fx.engine,
            change.get("deployment_id", w.deployment),
            start,
            end,
            change.get("formats", set()),
            out,
            actor=change.get("actor", "qa:grace"),
            audit_key=change.get("audit_key"),
        )
    _nothing_written(w, out, before)


def test_unwritable_out_dir_is_named(export_world: ExportWorld, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    before = _last_entry(export_world).seq
    with pytest.raises(ExportError, match="is a file, not a folder"):
        _export(export_world, blocker)
    with pytest.raises(ExportError, match="cannot create output folder"):
        _export(export_world, blocker / "sub")
    assert _last_entry(export_world).seq == before


def test_a_failure_half_way_leaves_nothing_behind(
    export_world: ExportWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = export_world
    before = _last_entry(w).seq

    def boom(*_a: Any, **_k: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(core, "write_manifest", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        _export(w, tmp_path / "out")
    _nothing_written(w, tmp_path / "out", before)

    def rename_fails(self: Path, target: Path) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.undo()
    monkeypatch.setattr(Path, "rename", rename_fails)
    with pytest.raises(ExportError, match="No space left"):
        _export(w, tmp_path / "out")
    monkeypatch.undo()
    _nothing_written(w, tmp_path / "out", before)


def _cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """phase4 (test)."""

    app.command("export")(export_command)
    return app


def test_command_line(
    export_world: ExportWorld, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = export_world
    monkeypatch.setenv(AUDIT_KEY_ENV, AUDIT_KEY.decode())
    args = ["export", "--deployment", w.deployment, "--from", str(w.start), "--to", str(w.end)]
    args += ["--out", str(tmp_path / "out"), "--database-url", db_url, "--actor", "qa:grace"]
    runner = CliRunner()
    ok = runner.invoke(_cli(), [*args, "--format", "json,csv", "--format", "pdf"])
    assert ok.exit_code == 0, ok.output
    assert "export written to" in ok.output and "signed audit head" in ok.output
    (folder,) = (tmp_path / "out").iterdir()
    assert (folder / "report.pdf").exists() and not (folder / "audit_fhir.json").exists()
    assert verify_manifest(folder, key=AUDIT_KEY).ok

    bad = runner.invoke(_cli(), [*args, "--format", "docx"])
    assert bad.exit_code == 2
    assert "unknown export format 'docx'" in bad.output
    bad_date = runner.invoke(_cli(), [*args[:3], "--from", "01/02/2025", *args[5:]])
    assert bad_date.exit_code == 2 and "is not a date" in bad_date.output
