"""The demo's revalidation scenario against a real monitor: shadow traffic through the real
probe, a locked validation set and pre-declared criteria; the gate must fail on specificity and
on nothing else, and the physicist's rejection leaves the accepted version in place."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx

from phase4.demo.revalidation import CANDIDATE, run_revalidation_scenario
from phase4.monitor.ui.security import COOKIE
from tests.conftest import Fixture, LiveMonitor


def test_the_demo_revalidation_fails_on_specificity_alone(
    live_monitor: LiveMonitor, world: Fixture, tmp_path: Path
) -> None:
    out = run_revalidation_scenario(
        live_monitor.url,
        deployment=live_monitor.deployment,
        probe_token=live_monitor.probe_token,
        reviewer_token=world.reviewer,
        site_secret="demo-secret-site-a-7",
        data_dir=tmp_path,
        seed=7,
    )
    assert out.verdict == "fail" and out.failed == ["specificity"]
    assert out.decision == "reject"
    csv_bytes = (tmp_path / "revalidation-validation-set.csv").read_bytes()
    assert out.validation_sha256 == hashlib.sha256(csv_bytes).hexdigest()

    headers = {"Authorization": f"Bearer {world.viewer}"}
    base = f"{live_monitor.url}/v1/deployments/{live_monitor.deployment}"
    r = httpx.get(f"{base}/revalidations/{out.revalidation_id}", headers=headers).json()
    by = {x["criterion"]: x for x in r["results"]["results"]}
    assert set(by) == {"sensitivity", "specificity", "ppv", "dice", "positive_rate_change"}
    assert by["specificity"]["difference"]["low"] < -0.05
    assert by["sensitivity"]["difference"]["estimate"] > 0
    assert r["shadow"]["studies"] == 800 and r["decided_by"] == "dr-curie"
    deps = httpx.get(f"{live_monitor.url}/v1/deployments", headers=headers).json()
    version = {d["id"]: d["model_version"] for d in deps}[live_monitor.deployment]
    assert version == "2.1.0" != CANDIDATE

    # The dashboard's page shows the table and the plot.
    client = httpx.Client(base_url=live_monitor.url)
    client.cookies.set(COOKIE, world.viewer, path="/ui")
    page = client.get(out.page.removeprefix(live_monitor.url))
    assert page.status_code == 200, page.text[:500]
    assert 'id="comparison"' in page.text and 'data-chart="differences"' in page.text
    assert "Specificity" in page.text and "95% CI" in page.text
    assert "\u22125.0 points" in page.text  # the margin, in percentage points
    deployment_page = client.get(f"/ui/deployments/{live_monitor.deployment}")
    assert f"/revalidations/{out.revalidation_id}" in deployment_page.text
    alerts = httpx.get(f"{live_monitor.url}/v1/alerts", headers=headers).json()
    reval_alerts = [a for a in alerts if a["cause"] == "revalidation"]
    # The opening's alert was resolved by the decision; the decision's is acknowledged.
    by_status = {a["status"]: a for a in reval_alerts}
    assert sorted(by_status) == ["acknowledged", "resolved"] and len(reval_alerts) == 2
    decided = by_status["acknowledged"]
    assert "rejected by dr-curie" in decided["headline"]
    alert_page = client.get(f"/ui/alerts/{decided['id']}")
    assert alert_page.status_code == 200 and "rejected by dr-curie" in alert_page.text
    assert client.get("/ui/alerts?status=all").status_code == 200
