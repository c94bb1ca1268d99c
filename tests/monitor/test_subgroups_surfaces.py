"""Where the subgroup table shows: the API (read where the deployment's site may be read), the
dashboard page, and /metrics (groups of fewer than k cases, and rates over fewer than k, left
out; the exposition passes promtool)."""

from __future__ import annotations

import csv
import json
import re
import subprocess
from datetime import UTC, date, datetime
from pathlib import Path

from fastapi.testclient import TestClient
from sqlmodel import Session

from phase4.alerts.export import export_deployment
from phase4.monitor.store.models import Deployment
from phase4.monitor.surveillance.detection import detect_all
from phase4.monitor.surveillance.subgroups import process_subgroups
from phase4.monitor.ui.security import COOKIE
from tests.conftest import Fixture
from tests.dashboards.conftest import tool
from tests.monitor.test_subgroups_pass import fill


def _metric_lines(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(name + "{")]


def test_the_table_reaches_the_api_the_page_and_metrics(client: TestClient, world: Fixture) -> None:
    fill(world.engine, world.deployment_a)
    detect_all(world.engine)
    process_subgroups(world.engine)
    url = f"/v1/deployments/{world.deployment_a}/subgroups"

    # the API: the site's probe and a viewer read it; another site's probe may not
    r = client.get(url, headers=world.auth(world.viewer))
    assert r.status_code == 200, r.text
    table = r.json()
    assert table["deployment"] == world.deployment_a and table["disparity"]["on"] is True
    band = next(g for g in table["groups"] if g["group"] == "65-79")
    assert band["disparity"]["sensitivity"]["verdict"] == "gap"
    assert client.get(url, headers=world.auth(world.probe_a)).status_code == 200
    refused = client.get(url, headers=world.auth(world.probe_b))
    assert refused.status_code == 403
    assert client.get(url, headers=world.auth(world.reviewer_b)).status_code == 403
    assert client.get(url).status_code == 401

    # the page, linked from the deployment's
    client.cookies.set(COOKIE, world.viewer, path="/ui")
    page = client.get(f"/ui/deployments/{world.deployment_a}")
    assert "/subgroups" in page.text and 'id="subgroups-link"' in page.text
    page = client.get(f"/ui/deployments/{world.deployment_a}/subgroups")
    assert page.status_code == 200
    assert "gap beyond the margin" in page.text
    assert re.search(r"needs \d+ more confirmed-positive labelled cases", page.text)
    assert "%" in page.text and "pts" in page.text
    client.cookies.clear()

    # /metrics: the band with its interval, the small group not at all
    text = client.get("/metrics").text
    small = next(g for g in table["groups"] if g["group"] == "<18")
    assert small["cases"] < table["min_group_cases"]
    assert 'group="<18"' not in text
    rates = _metric_lines(text, "phase4_subgroup_rate_ratio")
    assert any('group="65-79"' in x and 'metric="sensitivity"' in x for x in rates)
    flagged = [x for x in _metric_lines(text, "phase4_subgroup_disparity") if x.endswith(" 1.0")]
    assert len(flagged) == 1 and 'group="65-79"' in flagged[0], flagged
    # a rate over fewer than k cases is left out even in a published group
    for g in table["groups"]:
        if g["cases"] < table["min_group_cases"]:
            continue
        for metric, r in g["rates"].items():
            shown = any(
                f'group="{g["group"]}"' in x
                and f'metric="{metric}"' in x
                and f'dimension="{g["dimension"]}"' in x
                for x in rates
            )
            assert shown == (r["n"] >= table["min_group_cases"]), (g["group"], metric, r["n"])
    lint = subprocess.run(
        [tool("promtool"), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr

    # k is the deployment's: raising it hides every group
    with Session(world.engine) as s:
        dep = s.get(Deployment, world.deployment_a)
        assert dep is not None
        dep.monitoring = {**dep.monitoring, "subgroups": {"min_group_cases": 100_000}}
        s.add(dep)
        s.commit()
    process_subgroups(world.engine)
    assert _metric_lines(client.get("/metrics").text, "phase4_subgroup_cases") == []


def test_the_export_adds_gaps_and_the_disparity_finding(world: Fixture, tmp_path: Path) -> None:
    fill(world.engine, world.deployment_a)
    detect_all(world.engine)
    process_subgroups(world.engine)
    result = export_deployment(
        world.engine,
        world.deployment_a,
        date(2026, 1, 1),
        datetime.now(UTC).date(),  # the alert was opened today (alerts count by opened_at)
        {"json", "csv"},
        tmp_path,
        actor="test",
    )
    report = json.loads((result.directory / "report.json").read_text())
    bands = {r["band"]: r for r in report["subgroups"]["dimensions"]["age_band"]}
    gap = bands["65-79"]["gap_sensitivity"]
    assert gap["ci_low"] < gap["value"] < gap["ci_high"] and gap["ci_low"] > 0.1
    (finding,) = report["subgroups"]["disparity"]
    assert (finding["dimension"], finding["band"], finding["metric"]) == (
        "age_band",
        "65-79",
        "sensitivity",
    )
    assert finding["gap_ci_low"] <= 0.4 <= finding["gap_ci_high"]
    assert "age band 65-79" in finding["headline"]
    with (result.directory / "csv" / "subgroup_disparity.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["band"] for r in rows] == ["65-79"]
    with (result.directory / "csv" / "subgroups.csv").open() as f:
        header = next(csv.reader(f))
    assert "gap_sensitivity_ci_low" in header and "gap_specificity_ci_high" in header


def test_an_estimate_that_the_labels_contradict_says_why() -> None:
    """CBPE cannot see a change in what the score gets right (the demo's band: 86% estimated,
    46% labelled); the page says so where the two disagree, and only there."""
    from phase4.monitor.ui.views import _env

    macro = _env.get_template("subgroup_estimate.html").module.estimate  # type: ignore[attr-defined]
    estimated = {"value": 0.86, "range95": [0.84, 0.88]}
    contradicted = str(macro(estimated, {"value": 0.46, "ci95": [0.37, 0.55]}))
    agreeing = str(macro(estimated, {"value": 0.83, "ci95": [0.75, 0.89]}))
    unlabelled = str(macro(estimated, {"value": None, "ci95": [None, None]}))
    assert "86.0%" in contradicted and "Disagrees with the labels" in contradicted
    assert "86.0%" in agreeing and "Disagrees" not in agreeing
    assert "Disagrees" not in unlabelled
