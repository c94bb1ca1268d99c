"""The dashboard end to end in headless Chromium (SQLite only): a real monitor on 127.0.0.1,
sign-in with a reviewer token, every page drawn without a console error and with its charts,
an alert acknowledged through the form and then found in the audit trail, a viewer without the
form, and a visit without a session sent to sign-in. Screenshots of each page are written to
``$PHASE4_TEST_OUTPUT_DIR/ui/`` (default ``test-output/ui/`` under the repository)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from phase4.monitor.core.settings import sqlite_url
from phase4.monitor.server import ThreadedServer
from phase4.monitor.store.db import upgrade
from tests.conftest import Fixture
from tests.ui.conftest import ui_app
from tests.ui.data import UiData

CHROMIUM = shutil.which("chromium") or ""
CHROMEDRIVER = shutil.which("chromedriver") or ""
REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs chromium and chromedriver on PATH (Debian: chromium, chromium-driver)",
)
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only: the browser adds nothing the TestClient tests do not check on PostgreSQL."""
    url = sqlite_url(tmp_path / "ui.db")
    upgrade(url)
    return url


@pytest.fixture(scope="module")
def output_dir() -> Path:
    root = Path(os.environ.get("PHASE4_TEST_OUTPUT_DIR") or REPO / "test-output")
    out = root / "ui"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture
def server(db_url: str, world: Fixture, ui_data: UiData) -> Iterator[ThreadedServer]:
    with ThreadedServer(ui_app(db_url, world)) as srv:
        yield srv


@contextlib.contextmanager
def chrome(downloads: Path | None = None, page_load_timeout_s: float = 90) -> Iterator[Any]:
    """Debian's headless Chromium through chromedriver, never a downloaded driver; with
    ``downloads``, files are saved there without asking. Every browser test uses this one."""
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download drivers
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="phase4-ui-chromium-")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-extensions",
        "--no-first-run",
        "--window-size=1400,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    if downloads is not None:
        options.add_experimental_option(
            "prefs",
            {
                "download.default_directory": str(downloads),
                "download.prompt_for_download": False,
                "safebrowsing.enabled": False,
            },
        )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(page_load_timeout_s)
    if downloads is not None:
        driver.execute_cdp_cmd(
            "Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
        )
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def browser() -> Iterator[Any]:
    with chrome(page_load_timeout_s=60) as driver:
        yield driver


def severe(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def shoot(driver: Any, out: Path, name: str) -> Path:
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, min(max(int(height) + 40, 800), 8000))
    path = out / f"{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(1400, 1000)
    print(f"screenshot: {path}")
    return path


def visit(driver: Any, base: str, path: str, out: Path, name: str) -> None:
    """Open a page, wait until every chart container holds a drawn plotly figure, check the
    console and take a screenshot."""
    driver.get(base + path)
    assert "/ui/login" not in driver.current_url, f"{path}: sent to sign-in"
    charts = driver.find_elements(By.CSS_SELECTOR, ".chart")
    WebDriverWait(driver, 30).until(
        lambda d: all(c.find_elements(By.CSS_SELECTOR, ".main-svg") for c in charts)
    )
    for c in charts:
        assert "js-plotly-plot" in (c.get_attribute("class") or ""), (path, c.get_attribute("id"))
    errors = severe(driver)
    assert not errors, (path, errors)
    shoot(driver, out, name)


def sign_in(driver: Any, base: str, token: str) -> None:
    driver.get(base + "/ui/login")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "form.login button").click()
    WebDriverWait(driver, 15).until(lambda d: re.search(r"/ui/?$", d.current_url))


def sign_out(driver: Any) -> None:
    driver.find_element(By.CSS_SELECTOR, "header form button").click()
    WebDriverWait(driver, 15).until(lambda d: "/ui/login" in d.current_url)


def test_the_dashboard_in_a_real_browser(
    server: ThreadedServer, browser: Any, world: Fixture, ui_data: UiData, output_dir: Path
) -> None:
    base = server.url
    # Without a session: sent to sign-in, and back to the page asked for afterwards.
    browser.get(f"{base}/ui/alerts/{ui_data.drift_alert}")
    assert "/ui/login?next=/ui/alerts/" in browser.current_url
    assert not severe(browser)
    shoot(browser, output_dir, "01-login")
    browser.find_element(By.ID, "token").send_keys(world.reviewer)
    browser.find_element(By.CSS_SELECTOR, "form.login button").click()
    WebDriverWait(browser, 15).until(
        lambda d: d.current_url.endswith(f"/ui/alerts/{ui_data.drift_alert}")
    )

    pages = [
        ("/ui", "02-fleet"),
        (f"/ui/deployments/{ui_data.drifting}", "03-deployment-drifting"),
        (f"/ui/deployments/{ui_data.collecting}", "04-deployment-collecting"),
        (f"/ui/devices/{ui_data.device_id}", "05-device-qc"),
        ("/ui/alerts?status=all", "06-alerts"),
        (f"/ui/alerts/{ui_data.device_alert}", "07-alert-device"),
    ]
    for path, name in pages:
        visit(browser, base, path, output_dir, name)
    browser.get(f"{base}/ui/deployments/{ui_data.drifting}")
    assert len(browser.find_elements(By.CSS_SELECTOR, ".chart")) >= 4
    severe(browser)

    # Acknowledge the drift alert through the form, with a reason.
    visit(browser, base, f"/ui/alerts/{ui_data.drift_alert}", output_dir, "08-alert-open")
    browser.find_element(By.ID, "ack-reason").send_keys("Checking the dose calibrator at site B")
    browser.find_element(By.CSS_SELECTOR, "#ack-form button").click()
    WebDriverWait(browser, 15).until(lambda d: d.find_elements(By.ID, "done"))
    lifecycle = browser.find_element(By.ID, "lifecycle").text
    assert "Acknowledged" in lifecycle and "dr-curie" in lifecycle
    assert not browser.find_elements(By.ID, "ack-form")
    assert not severe(browser)
    shoot(browser, output_dir, "09-alert-acknowledged")

    visit(browser, base, "/ui/audit", output_dir, "10-audit")
    assert "Hash chain verified" in browser.find_element(By.ID, "chain-status").text
    rows = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#audit tbody tr")]
    assert any(
        "dr-curie" in r and "alert.acknowledge" in r and "Checking the dose calibrator" in r
        for r in rows
    ), rows[:3]

    # A viewer reads the same alert but gets no form.
    sign_out(browser)
    sign_in(browser, base, world.viewer)
    visit(browser, base, f"/ui/alerts/{ui_data.device_alert}", output_dir, "11-alert-viewer")
    assert not browser.find_elements(By.ID, "ack-form")
    assert not browser.find_elements(By.ID, "resolve-form")
    assert browser.find_elements(By.ID, "no-review")
    page = browser.page_source
    leaked = [i for i in ui_data.identifiers if i in page]
    assert not leaked
