"""The fleet and scanner pages in headless Chromium (SQLite only) on the demo-like store of
``tests/ui/fleet_data``: the scanner with an open critical alert (and 3 of its last 4 cylinders
out of tolerance, the last one passing) is shown critical with the reason, severities have
badges of their own colour, the NEMA IQ charts draw the EARL bands, the canary is charted, and
the deployment that will not have its references for years says so. Full-page screenshots go
to ``$PHASE4_TEST_OUTPUT_DIR/ui/`` (default ``test-output/ui/``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from phase4.monitor.server import ThreadedServer
from phase4.monitor.ui.queries import day_words
from tests.conftest import Fixture
from tests.ui.conftest import ui_app
from tests.ui.fleet_data import FleetData, load
from tests.ui.test_ui_browser import (  # the same browser, database and screenshot helpers
    browser,
    db_url,
    output_dir,
    pytestmark,
    severe,
    shoot,
    sign_in,
    visit,
)

pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By

# fixtures and the skip mark (no Chromium), imported to be found
__all__ = ["browser", "db_url", "output_dir", "pytestmark"]


@pytest.fixture
def fleet(world: Fixture) -> FleetData:
    return load(world)


@pytest.fixture
def fleet_server(db_url: str, world: Fixture, fleet: FleetData) -> Iterator[ThreadedServer]:
    with ThreadedServer(ui_app(db_url, world)) as srv:
        yield srv


def _colour(browser: Any, element: Any) -> str:
    return str(
        browser.execute_script("return getComputedStyle(arguments[0]).backgroundColor", element)
    )


def test_the_fleet_page_shows_the_failing_scanner_as_critical(
    fleet_server: ThreadedServer,
    browser: Any,
    world: Fixture,
    fleet: FleetData,
    output_dir: Path,
) -> None:
    base = fleet_server.url
    sign_in(browser, base, world.reviewer)
    visit(browser, base, "/ui", output_dir, "20-fleet-severities")

    scanner = browser.find_element(
        By.XPATH, f'//table[@id="devices"]//tr[.//a[text()="{fleet.scanner_a_name}"]]'
    )
    assert scanner.get_attribute("data-verdict") == "critical"
    badge = scanner.find_element(By.CSS_SELECTOR, "td.verdict .badge")
    assert badge.text == "critical" and badge.is_displayed()
    reason = scanner.find_element(By.CSS_SELECTOR, "td.reasons").text
    assert "3 of last 4 cylinder results outside tolerance" in reason
    assert f"critical alert open since {day_words(fleet.critical_since)}" in reason

    # a badge of its own colour per severity: 1 critical + 8 warnings is not 2 warnings
    rows = {
        r.get_attribute("data-worst"): r
        for r in browser.find_elements(By.CSS_SELECTOR, "#deployments tbody tr")
    }
    assert {"critical", "warning", "ok"} <= set(rows)
    colours = {
        worst: _colour(browser, rows[worst].find_element(By.CSS_SELECTOR, ".worst .badge"))
        for worst in ("critical", "warning", "ok")
    }
    assert len(set(colours.values())) == 3, colours
    assert "since" in rows["critical"].find_element(By.CSS_SELECTOR, ".alerts-cell").text
    assert "will not complete their reference within 90 days" in rows["ok"].text

    visit(browser, base, f"/ui/devices/{fleet.scanner_a}", output_dir, "21-device-failing")
    visit(browser, base, f"/ui/devices/{fleet.scanner_b}", output_dir, "22-device-earl-canary")
    assert browser.find_elements(By.CSS_SELECTOR, "#canary-0 .main-svg")
    # the EARL bands are drawn (plotly draws layout shapes as paths in the shape layer)
    charts = browser.find_elements(By.CSS_SELECTOR, ".chart")
    earl = [c for c in charts if "rc_max_37mm" in (c.get_attribute("aria-label") or "")]
    assert earl and earl[0].find_elements(By.CSS_SELECTOR, ".shapelayer path")
    assert "EARL1 band 0.95–1.16" in earl[0].text and "EARL2 band 1.05–1.29" in earl[0].text

    visit(browser, base, f"/ui/deployments/{fleet.dicom}", output_dir, "23-deployment-horizon")
    flag = browser.find_element(By.ID, "reference-flag")
    assert "will not complete their reference within 90 days" in flag.text
    visit(browser, base, f"/ui/alerts/{fleet.device_alert}", output_dir, "24-alert-scanner-named")
    assert fleet.scanner_a_name in browser.find_element(By.CSS_SELECTOR, "dl.facts").text
    assert not severe(browser)
    shoot(browser, output_dir, "25-alert-scanner-named-final")
