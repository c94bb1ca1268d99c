"""The export records each revalidation as a substantial change: versions, criteria, the
evidence's SHA-256, the results table, the verdict, who decided and when; in report.json,
csv/substantial_changes.csv and the PDF (real store, SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from phase4.alerts.export import export_deployment
from phase4.monitor.domain.revalidation import (
    attach_validation_set,
    decide,
    declare_criteria,
    evaluate,
    open_revalidation,
)
from phase4.monitor.store.db import session_scope
from tests.conftest import Fixture
from tests.export.test_export import _pdf_text

CSV = "case_id,truth,accepted_call,candidate_call\n" + "".join(
    f"c{i},{i % 2},{i % 2},{1 if i % 10 == 0 else i % 2}\n" for i in range(500)
)


def test_a_revalidation_is_a_substantial_change_record(world: Fixture, tmp_path: Path) -> None:
    with session_scope(world.engine) as s:
        r = open_revalidation(s, world.deployment_a, "2.2.0", actor="probe-a", reason="vendor")
        declare_criteria(s, r, {"sensitivity": 0.05, "specificity": 0.05}, actor="dr-curie")
        attach_validation_set(s, r, CSV.encode(), actor="dr-curie", filename="locked.csv")
        evaluate(s, r, actor="dr-curie")
        decide(s, r, "reject", actor="dr-curie")
    today = datetime.now(UTC).date()
    result = export_deployment(
        world.engine,
        world.deployment_a,
        today - timedelta(days=30),
        today,
        {"json", "csv", "pdf"},
        tmp_path,
        actor="qa:grace",
    )
    report = json.loads((result.directory / "report.json").read_text())
    [change] = report["substantial_changes"]
    assert change["candidate_version"] == "2.2.0" and change["accepted_version"] == "2.1.0"
    assert change["validation_sha256"] == hashlib.sha256(CSV.encode()).hexdigest()
    assert change["criteria"] == {"sensitivity": 0.05, "specificity": 0.05}
    assert change["verdict"] == "fail" and change["failed_criteria"] == ["specificity"]
    assert change["decision"] == "reject" and change["decided_by"] == "dr-curie"
    assert {x["criterion"] for x in change["results"]} == {"sensitivity", "specificity"}
    actions = {e["action"] for e in report["audit"]["entries"]}
    assert {"revalidation.open", "revalidation.decide"} <= actions
    with (result.directory / "csv" / "substantial_changes.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 1 and rows[0]["decision"] == "reject"
    text = _pdf_text((result.directory / "report.pdf").read_bytes())
    assert b"Substantial changes" in text and b"specificity" in text
    # The other site's deployment has none.
    other = export_deployment(
        world.engine, world.deployment_b, today, today, {"json"}, tmp_path, actor="qa:grace"
    )
    assert json.loads((other.directory / "report.json").read_text())["substantial_changes"] == []
