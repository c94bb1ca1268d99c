"""The deployment page's charts drawn by a real browser (headless Chromium, SQLite) on a
demo-like store: every chart is drawn with SVG paths and no console error, the first chart is
the alerted stream's quantity with its reference band and one alert marker, the folded
statistic chart takes the page's width when opened, and the collecting deployment shows its
one-line summary. Screenshots go to ``$PHASE4_TEST_OUTPUT_DIR/ui/`` (default
``test-output/ui/``): ``12-deployment-charts.png``, ``13-deployment-statistic-open.png``,
``14-deployment-collecting-summary.png``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from phase4.monitor.core.settings import sqlite_url
from phase4.monitor.server import ThreadedServer
from phase4.monitor.store.db import upgrade
from tests.conftest import Fixture
from tests.ui.conftest import ui_app
from tests.ui.demo_like import DemoLike, load_demo_like
from tests.ui.test_ui_browser import CHROMEDRIVER, CHROMIUM, REPO, chrome, severe, sign_in

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs chromium and chromedriver on PATH (Debian: chromium, chromium-driver)",
)
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    url = sqlite_url(tmp_path / "charts.db")
    upgrade(url)
    return url


@pytest.fixture
def demo(world: Fixture) -> DemoLike:
    return load_demo_like(world)


@pytest.fixture
def server(db_url: str, world: Fixture, demo: DemoLike) -> Iterator[ThreadedServer]:
    with ThreadedServer(ui_app(db_url, world)) as srv:
        yield srv


@pytest.fixture
def out() -> Path:
    root = Path(os.environ.get("PHASE4_TEST_OUTPUT_DIR") or REPO / "test-output")
    path = root / "ui"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def browser() -> Iterator[Any]:
    with chrome() as driver:
        yield driver


def shoot(driver: Any, out: Path, name: str) -> Path:
    """A full-page screenshot (the deployment page is taller than most)."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, min(max(int(height) + 40, 800), 16000))
    path = out / f"{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(1400, 1000)
    print(f"screenshot: {path}")
    return path


def drawn(driver: Any) -> list[Any]:
    """Wait until every chart container holds a plotly figure; return the containers."""
    charts = driver.find_elements(By.CSS_SELECTOR, ".chart")
    WebDriverWait(driver, 60).until(
        lambda d: all(c.find_elements(By.CSS_SELECTOR, ".main-svg") for c in charts)
    )
    return charts


def test_the_deployment_charts_in_a_real_browser(
    server: ThreadedServer, browser: Any, world: Fixture, demo: DemoLike, out: Path
) -> None:
    base = server.url
    sign_in(browser, base, world.reviewer)
    browser.get(f"{base}/ui/deployments/{demo.drifting}")
    charts = drawn(browser)
    assert len(charts) >= 10
    assert not severe(browser)
    first = charts[0]
    assert first.get_attribute("id") == "stream-0"
    assert "features.image_noise_cv" in (first.get_attribute("aria-label") or "")
    # the quantity's band and lines are SVG paths, the reference band among them
    paths = first.find_elements(By.CSS_SELECTOR, ".scatterlayer path")
    assert len(paths) >= 5
    assert first.find_elements(By.CSS_SELECTOR, ".scatterlayer .js-fill")
    legend = first.find_element(By.CSS_SELECTOR, ".legend").text
    assert "reference interquartile range (25-75%)" in legend
    assert "alert detected (one marker per alert)" in legend
    # one alert marker (a triangle), and the estimated change as a line with its label
    markers = browser.execute_script(
        "const gd = document.getElementById('stream-0');"
        "const t = gd.data.find(t => t.name.startsWith('alert detected'));"
        "return t ? t.x.length : 0;"
    )
    assert markers == 1
    assert "estimated change (alert" in first.text
    shoot(browser, out, "12-deployment-charts")

    # the statistic, folded: opening it lays its chart out at the page's width
    details = browser.find_element(By.CSS_SELECTOR, "details.statistic")
    statistic = details.find_element(By.CSS_SELECTOR, ".chart")
    details.find_element(By.TAG_NAME, "summary").click()
    WebDriverWait(browser, 15).until(
        lambda d: (
            float(statistic.find_element(By.CSS_SELECTOR, ".main-svg").get_attribute("width") or 0)
            > 0.8 * float(first.find_element(By.CSS_SELECTOR, ".main-svg").get_attribute("width"))
        )
    )
    assert statistic.find_elements(By.CSS_SELECTOR, ".scatterlayer path")
    browser.execute_script("arguments[0].scrollIntoView()", details)
    article = browser.find_element(By.CSS_SELECTOR, "article.stream")
    article.screenshot(str(out / "13-deployment-statistic-open.png"))
    print(f"screenshot: {out / '13-deployment-statistic-open.png'}")
    assert not severe(browser)

    performance = browser.find_element(By.ID, "performance")
    assert (
        "sensitivity Wilson 95% interval"
        in performance.find_element(By.CSS_SELECTOR, ".legend").text
    )
    assert performance.find_elements(By.CSS_SELECTOR, ".scatterlayer .js-fill")

    browser.get(f"{base}/ui/deployments/{demo.collecting}")
    drawn(browser)
    summary = browser.find_element(By.ID, "collecting-summary").text
    assert "streams collecting their reference: 40 of 500 values so far" in summary
    assert not browser.find_elements(By.CSS_SELECTOR, "article.stream")
    assert not severe(browser)
    shoot(browser, out, "14-deployment-collecting-summary")
    page = browser.page_source
    assert not [i for i in demo.identifiers if i in page]
