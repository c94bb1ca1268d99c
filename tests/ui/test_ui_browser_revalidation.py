"""The revalidation page in Chromium: the demo's scenario run against a real monitor, then the
page opened by a signed-in reviewer: the comparison table names the failed criterion and the
plot of differences against their margins is drawn (plotly has data in it). Screenshot:
test-output/ui/revalidation.png and revalidation-plot.png."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from phase4.demo.revalidation import run_revalidation_scenario
from tests.conftest import Fixture, LiveMonitor


def test_the_revalidation_page_draws_its_table_and_plot(
    live_monitor: LiveMonitor, world: Fixture, tmp_path: Path
) -> None:
    pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.ui.test_ui_browser import chrome, sign_in

    assert shutil.which("chromium") and shutil.which("chromedriver")
    out = run_revalidation_scenario(
        live_monitor.url,
        deployment=live_monitor.deployment,
        probe_token=live_monitor.probe_token,
        reviewer_token=world.reviewer,
        site_secret="browser-test-secret-0123456789",
        data_dir=tmp_path,
        seed=3,
    )
    shots = Path(__file__).resolve().parents[2] / "test-output" / "ui"
    shots.mkdir(parents=True, exist_ok=True)
    with chrome() as driver:
        # signed in (the session cookie set) before the page is asked for: navigating away
        # while the sign-in form is still submitting left the page at the sign-in form
        sign_in(driver, live_monitor.url, world.reviewer)
        driver.get(out.page)
        rows = driver.find_elements(By.CSS_SELECTOR, "#comparison tbody tr")
        verdicts = {r.find_element(By.CSS_SELECTOR, "th").text.split("\n")[0]: r.text for r in rows}
        assert len(rows) == 5
        assert "fail" in verdicts["Specificity"] and "pass" in verdicts["Sensitivity"]
        WebDriverWait(driver, 60).until(
            lambda d: d.execute_script(
                "const c = document.getElementById('differences');"
                "return c && c.data && c.data.length"
            )
        )
        traces = driver.execute_script(
            "return document.getElementById('differences').data.map(t => t.y.length)"
        )
        # The differences, and the margins: one per criterion, two for the rate's equivalence.
        assert traces == [5, 6]
        driver.save_screenshot(str(shots / "revalidation.png"))
        driver.execute_script("document.getElementById('differences').scrollIntoView()")
        driver.save_screenshot(str(shots / "revalidation-plot.png"))
        # The deployment's page links to it.
        driver.get(f"{live_monitor.url}/ui/deployments/{live_monitor.deployment}")
        link = driver.find_element(By.CSS_SELECTOR, "#revalidations a")
        assert link.get_attribute("href").endswith(f"/revalidations/{out.revalidation_id}")
