"""An alert's drift report in headless Chromium (SQLite only), as a reviewer opens it from the
alert's page: the report opens on the alerted feature with the window test's verdict and its
chart, the other fields follow, evidently's panels render below (sandboxed) without a console
error; a report whose window test does not reject explains why; a report built by the earlier
code shows under its banner. Screenshots go to ``$PHASE4_TEST_OUTPUT_DIR/ui/`` (default
``test-output/ui/``): ``20-alert-with-report``, ``21-report``, ``22-report-less-sensitive``,
``23-report-old``."""

from __future__ import annotations

import gzip
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from phase4.monitor.server import ThreadedServer
from phase4.monitor.store.models import Alert, DriftReport, InferenceRecord
from phase4.monitor.surveillance.reports import attach_reports
from tests.conftest import Fixture
from tests.ui.data import UiData
from tests.ui.test_ui_browser import (  # the browser, the server on SQLite, the screenshots
    By,
    WebDriverWait,
    browser,
    db_url,
    output_dir,
    pytestmark,
    server,
    severe,
    shoot,
    sign_in,
)

__all__ = ["browser", "db_url", "output_dir", "pytestmark", "server"]
STREAM = "features.liver_suvmean"


def open_report(driver: Any, base: str, alert_id: int, out: Path, name: str) -> str:
    """Open the report, wait for evidently's panels to draw, check the console, screenshot;
    returns the opening's text."""
    driver.get(f"{base}/ui/alerts/{alert_id}/report")
    WebDriverWait(driver, 60).until(
        lambda d: (
            d.find_elements(By.CSS_SELECTOR, "[id^=root_metric] .main-svg")
            or not d.find_elements(By.CSS_SELECTOR, "[id^=root_metric]")
        )
    )
    errors = severe(driver)
    assert not errors, errors
    shoot(driver, out, name)
    return str(driver.find_element(By.ID, "phase4-report").text)


def _early_change(world: Fixture, alert_id: int) -> None:
    """Date the alert's change at the first record after the reference: the window then holds
    mostly records from before the change (what a poor change estimate gives)."""
    with Session(world.engine) as s:
        alert = s.get(Alert, alert_id)
        assert alert is not None
        first = s.exec(
            select(InferenceRecord.acquired_at)
            .where(InferenceRecord.deployment_id == alert.deployment_id)
            .order_by(col(InferenceRecord.acquired_at))
            .offset(110)
        ).first()
        assert first is not None
        alert.evidence = {**alert.evidence, "change_timestamp": first.isoformat()}
        s.add(alert)
        s.execute(sa.delete(DriftReport).where(col(DriftReport.alert_id) == alert_id))
        s.commit()


def test_the_drift_report_in_a_real_browser(
    server: ThreadedServer, browser: Any, world: Fixture, ui_data: UiData, output_dir: Path
) -> None:
    assert attach_reports(world.engine) >= 1
    base, alert_id = server.url, ui_data.drift_alert
    sign_in(browser, base, world.reviewer)

    browser.get(f"{base}/ui/alerts/{alert_id}")
    sentences = browser.find_element(By.TAG_NAME, "main").text
    assert re.search(r"\d+ of \d+ features \(\d+%\) drifted in the window test", sentences)
    assert "{'count'" not in sentences and "'share'" not in sentences
    assert browser.find_elements(By.ID, "report-link")
    assert not severe(browser)
    shoot(browser, output_dir, "20-alert-with-report")

    text = open_report(browser, base, alert_id, output_dir, "21-report")
    headings = browser.find_elements(By.CSS_SELECTOR, "#phase4-report h2")
    assert headings[0].get_attribute("id") == "subject" and STREAM in headings[0].text
    assert "agrees with the alert" in browser.find_element(By.ID, "subject-test").text
    assert browser.find_element(By.CSS_SELECTOR, "#phase4-report svg.dist").is_displayed()
    rows = browser.find_elements(By.CSS_SELECTOR, "#feature-table tr[data-field]")
    assert rows[0].get_attribute("data-field") == STREAM and len(rows) > 3
    assert text.index("agrees with the alert") < text.index("drifted in the window test")
    assert "{'count'" not in text
    assert not browser.find_elements(By.ID, "less-sensitive")

    _early_change(world, alert_id)
    assert attach_reports(world.engine) == 1
    text = open_report(browser, base, alert_id, output_dir, "22-report-less-sensitive")
    verdict = browser.find_element(By.ID, "subject-test").text
    assert "does not reject" in verdict
    explanation = browser.find_element(By.ID, "less-sensitive")
    assert explanation.is_displayed()
    assert "accumulates evidence" in explanation.text
    assert re.search(r"would detect a change of this size with probability", explanation.text)
    assert "with 80% probability" in explanation.text

    with Session(world.engine) as s:
        row = s.exec(select(DriftReport).where(DriftReport.alert_id == alert_id)).one()
        row.summary = {"drifted_columns": {"count": 7.0, "share": 0.4667}}
        row.html_gzip = gzip.compress(
            b"<html><body><h1>Dataset Drift is NOT detected</h1></body></html>"
        )
        row.created_at = datetime.now(row.created_at.tzinfo) - timedelta(days=1)
        s.add(row)
        s.commit()
    browser.get(f"{base}/ui/alerts/{alert_id}/report")
    banner = browser.find_element(By.ID, "phase4-old-report")
    assert "earlier version of phase4" in banner.text and banner.is_displayed()
    assert not severe(browser)
    shoot(browser, output_dir, "23-report-old")
