"""The dashboard's workflow in headless Chromium (SQLite) on a demo-like store: the dashboard's
test data (a drift the real engine detects, a scanner's QC history) plus ten weeks of the demo's
own phantom QC at both sites, sent through the API by the sites' probes and none signed off.

A reviewer reads an alert's "what to check first", records an incident from it, reports and
closes it; signs off one phantom result and then a batch with "select all"; sets a tolerance
version; downloads an export and checks its manifest; an admin creates a token and sees its
secret once. Screenshots go to ``$PHASE4_TEST_OUTPUT_DIR/ui/`` (``w*.png``)."""

from __future__ import annotations

import tempfile
import time
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, col, select

from phase4.alerts.export import verify_manifest
from phase4.demo.phantoms import send_phantoms
from phase4.demo.simulate import default_changes, default_sites
from phase4.monitor.server import ThreadedServer
from phase4.monitor.store.models import AuditEntry, Device, Incident, PhantomResult
from phase4.monitor.surveillance.phantom_qc import process_phantom_qc
from tests.conftest import Fixture
from tests.ui import test_ui_browser as dashboard
from tests.ui.conftest import ui_app
from tests.ui.data import UiData
from tests.ui.test_ui_browser import (
    CHROMEDRIVER,
    CHROMIUM,
    chrome,
    severe,
    shoot,
    sign_in,
    sign_out,
    visit,
)

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs chromium and chromedriver on PATH (Debian: chromium, chromium-driver)",
)
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

DEMO_DAYS = 70
# The dashboard test's fixtures: a SQLite store, and where the screenshots go.
db_url = dashboard.db_url
output_dir = dashboard.output_dir


@pytest.fixture
def demo_like(db_url: str, world: Fixture, ui_data: UiData) -> Iterator[ThreadedServer]:
    """A running monitor whose store also holds the demo's phantom QC of the last ten weeks
    (the physicist's default cylinder tolerance, each site's probe sending its scanner's
    results), analysed by the phantom control charts."""
    with ThreadedServer(ui_app(db_url, world)) as server:
        start = (datetime.now(UTC) - timedelta(days=DEMO_DAYS)).date()
        stored = send_phantoms(
            server.url,
            {"site-a": world.probe_a, "site-b": world.probe_b},
            world.reviewer,
            default_sites(10.0),
            default_changes(DEMO_DAYS),
            start,
            DEMO_DAYS,
            seed=7,
        )
        assert stored > 80
        process_phantom_qc(world.engine)
        yield server


@pytest.fixture
def downloads() -> Path:
    return Path(tempfile.mkdtemp(prefix="phase4-ui-downloads-"))


@pytest.fixture
def browser(downloads: Path) -> Iterator[Any]:
    """As the dashboard test's browser, saving downloads to ``downloads`` without asking."""
    with chrome(downloads, page_load_timeout_s=120) as driver:
        yield driver


def submit(driver: Any, css: str) -> None:
    """Click a submit button and wait for the next page."""
    old = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.CSS_SELECTOR, css).click()
    WebDriverWait(driver, 60).until(lambda d: old.id != d.find_element(By.TAG_NAME, "html").id)


def clean(driver: Any) -> None:
    errors = severe(driver)
    assert not errors, (driver.current_url, errors)


def _demo_scanner(world: Fixture, site: str) -> tuple[int, int]:
    """The demo scanner of ``site``: its id and how many of its results are not signed off."""
    with Session(world.engine) as s:
        device = s.exec(select(Device).where(Device.serial == f"{site}-PETCT-01")).one()
        unsigned = s.exec(
            select(PhantomResult).where(
                PhantomResult.device_id == device.id, col(PhantomResult.reviewed_by).is_(None)
            )
        )
        return device.id or 0, len(list(unsigned))


def test_incident_sign_off_tolerance_export_and_token_in_a_real_browser(
    demo_like: ThreadedServer,
    browser: Any,
    world: Fixture,
    ui_data: UiData,
    output_dir: Path,
    downloads: Path,
) -> None:
    base = demo_like.url
    sign_in(browser, base, world.reviewer)

    # An alert: what to check first, and an incident recorded from it.
    visit(browser, base, f"/ui/alerts/{ui_data.drift_alert}", output_dir, "w01-alert-checks")
    checks = browser.find_element(By.ID, "checks").text
    assert "cross-calibration" in checks
    submit(browser, "#incident-from-alert button")
    assert f"/ui/incidents/new?alert={ui_data.drift_alert}" in browser.current_url
    Select(browser.find_element(By.ID, "i-ser")).select_by_value("serious_harm")
    browser.find_element(By.NAME, "remedial_action_needed").click()
    browser.find_element(By.ID, "i-desc").send_keys("Two studies re-read after the SUV shift.")
    clean(browser)
    shoot(browser, output_dir, "w02-incident-form")
    submit(browser, "#incident-form button")
    assert "?done=recorded" in browser.current_url
    clocks = browser.find_elements(By.CSS_SELECTOR, "#clocks tbody tr")
    assert len(clocks) == 3 and all("open" in c.text for c in clocks)
    assert "5 work days" in browser.find_element(By.ID, "clocks").text
    clean(browser)
    shoot(browser, output_dir, "w03-incident-recorded")
    Select(browser.find_element(By.ID, "r-regime")).select_by_value("eu_ai_act")
    submit(browser, "#report-form button")
    assert "reported on time" in browser.find_element(By.ID, "clocks").text
    browser.find_element(By.ID, "c-action").send_keys(
        "Scanner and dose calibrator cross-calibrated again; vendor informed."
    )
    submit(browser, "#close-form button")
    assert "?done=closed" in browser.current_url
    assert "cross-calibrated again" in browser.find_element(By.ID, "corrective").text
    clean(browser)
    shoot(browser, output_dir, "w04-incident-closed")
    visit(browser, base, "/ui/incidents?status=all", output_dir, "w05-incidents")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#incidents tbody tr")) == 1

    # Phantom sign-off on the demo's site-A scanner: one result, then a batch.
    device, unsigned = _demo_scanner(world, "site-a")
    assert unsigned > 40
    visit(browser, base, f"/ui/devices/{device}", output_dir, "w06-device")
    submit_link = browser.find_element(By.ID, "results-link")
    submit_link.click()
    WebDriverWait(browser, 30).until(lambda d: d.current_url.endswith("/results"))
    counts = browser.find_element(By.ID, "result-counts").text
    assert f"{unsigned} not signed off" in counts
    clean(browser)
    shoot(browser, output_dir, "w07-results-unsigned")
    submit(browser, "#results tbody tr button[name=only]")
    assert "1 result(s) signed off by dr-curie" in browser.find_element(By.ID, "done").text
    Select(browser.find_element(By.ID, "f-kind")).select_by_value("cylinder")
    submit(browser, "form.filters button")
    rows = browser.find_elements(By.CSS_SELECTOR, "#results tbody tr")
    browser.find_element(By.ID, "select-all").click()
    ticked = browser.find_elements(By.CSS_SELECTOR, "input[name=result]:checked")
    assert len(ticked) == len(rows) > 10
    browser.find_element(By.ID, "so-note").send_keys("Weekly review of the daily cylinders")
    submit(browser, "#signoff-selected")
    done = browser.find_element(By.ID, "done").text
    assert f"{len(rows)} result(s) signed off by dr-curie" in done
    assert device and _demo_scanner(world, "site-a")[1] == unsigned - 1 - len(rows)
    clean(browser)
    shoot(browser, output_dir, "w08-results-signed")
    Select(browser.find_element(By.ID, "f-show")).select_by_value("all")
    submit(browser, "form.filters button")
    shoot(browser, output_dir, "w09-results-all")

    # A tolerance version for this scanner, with a reason.
    visit(browser, base, f"/ui/tolerances?device={device}", output_dir, "w10-tolerances")
    Select(browser.find_element(By.ID, "t-kind")).select_by_value("cylinder")
    browser.find_element(By.ID, "t-metric").send_keys("recovery_ratio")
    for name, value in (
        ("lower_action", "0.90"),
        ("lower_tolerance", "0.93"),
        ("upper_tolerance", "1.07"),
        ("upper_action", "1.10"),
    ):
        browser.find_element(By.ID, f"t-{name}").send_keys(value)
    browser.find_element(By.ID, "t-reason").send_keys(
        "Scanner-specific tolerance after the EARL re-accreditation"
    )
    submit(browser, "#tolerance-form button")
    table = browser.find_element(By.ID, "tolerances").text
    assert "EARL re-accreditation" in table and "v1 in force" in table
    clean(browser)
    shoot(browser, output_dir, "w11-tolerance-set")

    # The export, downloaded as a zip, whose manifest verifies.
    browser.get(f"{base}/ui/deployments/{ui_data.drifting}")
    browser.find_element(By.ID, "export-link").click()
    WebDriverWait(browser, 30).until(lambda d: "/ui/exports" in d.current_url)
    clean(browser)
    shoot(browser, output_dir, "w12-export-form")
    browser.find_element(By.CSS_SELECTOR, "#export-form button").click()
    deadline = time.monotonic() + 180
    zips: list[Path] = []
    while time.monotonic() < deadline and not zips:
        zips = [p for p in downloads.glob("*.zip") if not p.name.endswith(".crdownload")]
        time.sleep(0.5)
    assert zips, f"no export downloaded into {downloads}: {list(downloads.iterdir())}"
    [archive] = zips
    assert archive.name.startswith(f"phase4-export_{ui_data.drifting}_")
    unpacked = downloads / "unpacked"
    with zipfile.ZipFile(archive) as z:
        z.extractall(unpacked)
    [folder] = list(unpacked.iterdir())
    names = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert {"report.pdf", "report.json", "audit_fhir.json", "manifest.json"} <= names
    assert verify_manifest(folder).ok
    assert "/ui/exports" in browser.current_url  # the page stays; the zip was a download
    clean(browser)

    visit(browser, base, "/ui/audit", output_dir, "w13-audit")
    actions = browser.find_element(By.ID, "audit").text  # the newest 50 entries
    for action in ("export", "tolerance.set", "phantom.sign_off"):
        assert f"dr-curie {action}" in actions, action
    with Session(world.engine) as s:
        done = {(e.actor, e.action) for e in s.exec(select(AuditEntry))}
        for action in ("incident.record", "incident.report", "incident.close"):
            assert ("dr-curie", action) in done, action
        [incident] = s.exec(select(Incident))
        assert incident.alert_id == ui_data.drift_alert and incident.closed_at is not None
        exports = s.exec(select(AuditEntry).where(AuditEntry.action == "export"))
        assert [e.actor for e in exports] == ["dr-curie"]

    # An admin's tokens: a new one's secret shown once.
    sign_out(browser)
    sign_in(browser, base, world.admin)
    visit(browser, base, "/ui/tokens", output_dir, "w14-tokens")
    browser.find_element(By.ID, "k-name").send_keys("dr-new-physicist")
    Select(browser.find_element(By.ID, "k-role")).select_by_value("reviewer")
    browser.find_element(By.ID, "k-days").send_keys("90")
    submit(browser, "#token-form button")
    secret = browser.find_element(By.ID, "secret").text
    assert secret.startswith("p4_")
    clean(browser)
    shoot(browser, output_dir, "w15-token-created")
    browser.get(f"{base}/ui/tokens")
    assert secret not in browser.page_source
