"""The whole demo, end to end (a shorter year): what it tells, what it leaves behind, and that
no patient identifier reached any of it — exports, emails, metrics, logs or console output.

The simulation gives every study a synthetic patient name, ID, birth date and accession number
on purpose; the probe must strip them at the edge.
"""

from __future__ import annotations

import contextlib
import email
import io
import json
import logging
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, timedelta
from email import policy
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from phase4.alerts.export import verify_manifest
from phase4.demo.run import DEMO_AUDIT_KEY, DemoResult, run_demo
from phase4.demo.simulate import LesionAI, default_changes, default_sites, simulate_site
from tests.demo.phi_scan import identifiers_found


@dataclass
class DemoRun:
    result: DemoResult
    data_dir: Path
    console_text: str
    log_text: str


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    data_dir = tmp_path_factory.mktemp("demo") / "data"
    buffer = io.StringIO()
    console = Console(file=buffer, width=200, color_system=None)
    logs = io.StringIO()
    handler = logging.StreamHandler(logs)
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        result = run_demo(data_dir=data_dir, days=120, studies_per_day=10, seed=7, console=console)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    yield DemoRun(result, data_dir, buffer.getvalue(), logs.getvalue())


def _pdf_text(data: bytes) -> bytes:
    out = [data]
    for m in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", data, re.S):
        with contextlib.suppress(zlib.error):
            out.append(zlib.decompress(m.group(1)))
    return b"\n".join(out)


def _email_text(path: Path) -> str:
    msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    parts = [str(msg["Subject"] or "")]
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            parts.append(str(part.get_content()))  # type: ignore[attr-defined]
    return "\n".join(parts)


def _everything_the_demo_produced(run: DemoRun) -> dict[str, str]:
    texts = {"console": run.console_text, "logs": run.log_text}
    texts["metrics"] = (run.data_dir / "metrics.prom").read_text()
    for eml in sorted((run.data_dir / "mail").glob("*.eml")):
        texts[f"mail/{eml.name}"] = _email_text(eml)
    for path in sorted((run.data_dir / "export").rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            if path.suffix == ".pdf":
                data = _pdf_text(data)
            texts[str(path.relative_to(run.data_dir))] = data.decode("latin-1")
    return texts


def test_no_patient_identifier_anywhere_the_demo_wrote(demo: DemoRun) -> None:
    values = demo.result.phi_values
    # The simulation did give its studies identifiers (the test would prove nothing otherwise).
    assert sum(v.startswith("MRN") for v in values) > 1000
    assert sum(v.startswith("ACC") for v in values) > 1000
    texts = _everything_the_demo_produced(demo)
    assert any(k.startswith("mail/") for k in texts)
    assert any(k.endswith("report.pdf") for k in texts)
    assert any(k.endswith("audit_fhir.json") for k in texts)
    assert len(demo.log_text) > 0
    assert identifiers_found(texts, values) == []


def test_the_pattern_scan_would_find_an_identifier(demo: DemoRun) -> None:
    """The scan above is not vacuous: planted identifiers in each form are found."""
    mrn = next(v for v in demo.result.phi_values if v.startswith("MRN"))
    birth = next(v for v in demo.result.phi_values if re.fullmatch(r"\d{8}", v))
    name = next(v for v in demo.result.phi_values if "^" in v)
    planted_values = {mrn, birth, name}
    iso = date(int(birth[:4]), int(birth[4:6]), int(birth[6:])).isoformat()
    family, given = name.split("^", 1)
    for planted in (f"id={mrn};", f"born {iso}.", f"{given.title()} {family.title()}"):
        assert identifiers_found({"planted": planted}, planted_values), planted
    assert not identifiers_found({"planted": f"0.{birth}1"}, planted_values)


def test_alerts_arrived_as_email_without_a_link_to_the_demos_passing_port(demo: DemoRun) -> None:
    """The demo serves on a free port that is gone when it ends: its emails say that no public
    address is configured instead of linking to it (``phase4 demo --port 8000`` links)."""
    mails = sorted((demo.data_dir / "mail").glob("*.eml"))
    assert demo.result.emails == len(mails) >= 2
    bodies = [_email_text(m) for m in mails]
    assert all("no public address configured" in b for b in bodies)
    assert not any(demo.result.api_url in b or "/ui/alerts/" in b for b in bodies)
    assert any("reconstruction" in b for b in bodies)
    assert "The emails carry no link: no public address configured" in demo.console_text


def test_exports_hold_every_format_and_their_manifests_verify(demo: DemoRun) -> None:
    assert set(demo.result.exports) == {"lesion-ai@site-a", "lesion-ai@site-b"}
    for folder in demo.result.exports.values():
        names = {p.name for p in folder.rglob("*") if p.is_file()}
        assert {"report.pdf", "report.json", "audit_fhir.json", "manifest.json"} <= names
        assert any(n.endswith(".csv") for n in names)
        assert verify_manifest(folder, key=DEMO_AUDIT_KEY).ok
    site_b = (demo.result.exports["lesion-ai@site-b"] / "report.json").read_text()
    assert "Lesion AI outputs shifted after a reconstruction upgrade" in site_b


def test_exports_name_the_device_fill_the_subgroups_and_flag_what_is_open(
    demo: DemoRun,
) -> None:
    reports = {
        dep: json.loads((folder / "report.json").read_text())
        for dep, folder in demo.result.exports.items()
    }
    for report in reports.values():
        assert report["identity"]["recorded"] and report["identity"]["missing"] == []
        assert report["acceptance"]["accepted_on"] == demo.result.start.isoformat()
        assert report["baseline_comparison"]["available"]
        for dim in ("sex", "age_band"):
            bands = {r["band"]: r["records"] for r in report["population"]["dimensions"][dim]}
            assert bands["not recorded"] == 0 and sum(bands.values()) > 0, dim
        assert {r["band"] for r in report["subgroups"]["dimensions"]["sex"]} == {"male", "female"}

    def codes(dep: str) -> set[str]:
        return {i["code"] for i in reports[dep]["conclusions"]["open_items"]}

    # Site A: the dose calibrator's phantom failures last weeks and no incident is recorded.
    assert "sustained_finding_without_incident" in codes("lesion-ai@site-a")
    # Site B: the resolution says the AI was paused, yet studies went on after the finding.
    assert "usage_after_pause" in codes("lesion-ai@site-b")
    # ...and its specificity fell after the upgrade (over the whole period or in its months).
    assert codes("lesion-ai@site-b") & {
        "specificity_below_baseline",
        "specificity_months_below_baseline",
    }
    assert "usage_after_pause" not in codes("lesion-ai@site-a")


def test_demo_detects_its_changes_and_ends_with_the_dashboard_url(demo: DemoRun) -> None:
    text = demo.console_text
    assert "not detected" not in text
    assert re.search(r"reconstruction upgrade at site-b, began \S+: detected", text)
    assert re.search(r"dose calibrator error at site-a, began \S+: detected", text)
    last_lines = text.strip().splitlines()[-4:]
    assert any(demo.result.dashboard_url in line for line in last_lines)


def test_phantom_faults_are_detected_and_linked_to_the_ais_alerts(demo: DemoRun) -> None:
    assert demo.result.phantom_results > 150
    device_alerts = [a for a in demo.result.alerts if a.device_id is not None]
    by_cause = {a.cause: a for a in device_alerts}
    # Site A's dose-calibrator error, seen by the daily cylinder's control chart...
    drift = by_cause["phantom_drift"]
    assert "site-a" in drift.title and "recovery_ratio" in drift.stream
    assert {link["deployment"] for link in drift.evidence["linked"]} == {"lesion-ai@site-a"}
    calibrator = next(c for c in demo.result.changes if c.kind == "dose calibrator error")
    began = date.fromisoformat(drift.evidence["change_timestamp"][:10])
    fault_day = demo.result.start + timedelta(days=calibrator.start_day)
    assert abs((began - fault_day).days) <= 7
    # ...and site B's reconstruction upgrade, seen by the AI canary on the unchanged phantom.
    canary = by_cause["ai_canary"]
    assert "site-b" in canary.title
    assert {link["deployment"] for link in canary.evidence["linked"]} == {"lesion-ai@site-b"}
    # No phantom alert without a real fault behind it.
    assert all(
        ("site-a" in a.title and a.cause.startswith("phantom")) or a.cause == "ai_canary"
        for a in device_alerts
    )
    assert sum(a.cause == "ai_canary" for a in device_alerts) == 1


def test_the_demo_leaves_the_probe_loggers_level_as_it_found_it(demo: DemoRun) -> None:
    assert logging.getLogger("phase4.probe").level == logging.NOTSET


# --- the size of each injected change, as the alerts state it ---------------------------------


def _site_b_outputs(changed: bool, studies: int = 20_000) -> dict[str, float]:
    """Population values of the AI's outputs at site B, before or after the reconstruction
    upgrade, from the simulation's own model (Monte Carlo: the upgrade's effect on what the AI
    reports is not simply +25%: more benign studies get a false-positive focus, whose SUVmax is
    low)."""
    site = replace(default_sites(1.0)[1], studies_per_weekday=studies / 5)
    upgrade = replace(next(c for c in default_changes(100) if c.site_id == "site-b"), start_day=0)
    rng = np.random.default_rng(2024)
    ai = LesionAI(2025)
    studied = simulate_site(site, [upgrade] if changed else [], date(2026, 1, 5), 7, rng)
    outs = [ai(s) for s in studied]
    suvmax = [o["lesion_suvmax"] for o in outs if o["lesion_suvmax"] is not None]
    return {
        "suvmax": float(np.mean(suvmax)),
        "positive": float(np.mean([o["positive"] for o in outs])),
        "score": float(np.mean([o["malignancy_score"] for o in outs])),
        "count": float(np.mean([o["lesion_count"] for o in outs])),
    }


def test_each_injected_change_is_stated_with_an_interval_that_covers_the_truth(
    demo: DemoRun,
) -> None:
    """Every alert on a quantity whose true change the simulation fixes states a size whose 95%
    interval covers it: the dose calibrator's error at site A (liver SUVmean -7.4%, injected
    activity +8%, the cylinder's recovery -7.4%) and the reconstruction upgrade at site B (image
    noise -20%, liver SUVmean +3%, and the AI's outputs as the simulation's model gives them).
    The demo's seed is fixed; a change of the simulation may move a stated size across its
    interval's edge one time in twenty per quantity.

    Not checked: the AI's lesion count, whose true change is small (+4% from the simulation's
    model); the alarms it raises come late, on a chance excursion, and a size measured over the
    window the detector picked overstates it (docs/STATISTICS.md, "Size of change")."""
    calibrator = 100 * (1 / 1.08 - 1)
    before, after = _site_b_outputs(False), _site_b_outputs(True)
    truths: dict[tuple[str, str], tuple[float, str]] = {
        ("lesion-ai@site-a", "features.liver_suvmean"): (calibrator, "pct"),
        ("lesion-ai@site-a", "features.injected_activity_mbq"): (8.0, "pct"),
        ("site-a", "phantom.cylinder.recovery_ratio"): (calibrator, "pct"),
        ("lesion-ai@site-b", "features.image_noise_cv"): (-20.0, "pct"),
        ("lesion-ai@site-b", "features.liver_suvmean"): (3.0, "pct"),
        ("lesion-ai@site-b", "outputs.lesion_suvmax"): (
            100 * (after["suvmax"] / before["suvmax"] - 1),
            "pct",
        ),
        ("lesion-ai@site-b", "outputs.positive"): (
            100 * (after["positive"] - before["positive"]),
            "points",
        ),
        ("lesion-ai@site-b", "outputs.malignancy_score"): (
            after["score"] - before["score"],
            "delta",
        ),
    }
    checked: dict[tuple[str, str], str] = {}
    for alert in demo.result.alerts:
        owner = alert.deployment_id or ("site-a" if "site-a" in alert.title else "site-b")
        truth = truths.get((owner, alert.stream))
        change = (alert.evidence or {}).get("change")
        if truth is None or not change or alert.cause == "phantom_tolerance":
            continue
        value, stated = truth
        assert change["stated"] == stated, (alert.stream, change)
        low, high = change["ci95"]
        assert low <= value <= high, (alert.stream, value, change["size"], change["ci95"])
        checked[(owner, alert.stream)] = alert.evidence["headline"]
    # the two the issue names are there, in words, with their sizes
    liver = checked[("lesion-ai@site-a", "features.liver_suvmean")]
    assert liver.startswith("Liver SUVmean at University Hospital A fell "), liver
    activity = checked[("lesion-ai@site-a", "features.injected_activity_mbq")]
    assert activity.startswith("Injected activity at University Hospital A rose "), activity
    assert len(checked) >= 4, checked


# --- the demo's own store in a real browser -------------------------------------------------

_DAY_MONTH_YEAR = re.compile(
    r"\b(\d{1,2}) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (\d{4})\b"
)
_ISO_DAY = re.compile(r"\b(20\d\d)-(\d\d)-(\d\d)\b")
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def _dates_shown(text: str) -> list[date]:
    found = [date(int(y), int(m), int(d)) for y, m, d in _ISO_DAY.findall(text)]
    found += [
        date(int(y), _MONTHS.index(mon) + 1, int(d)) for d, mon, y in _DAY_MONTH_YEAR.findall(text)
    ]
    return found


def test_the_demo_store_in_a_real_browser(demo: DemoRun) -> None:
    """In Chromium, on the demo's own store: every drift alert's page opens with its sentence
    (the size of the change with its 95% interval, and when the change began); no page shows a
    date after today; the deployment page's first chart is the alerted quantity against its
    reference band; the fleet page calls the scanner with an open critical alert critical.
    Screenshots: test-output/ui/demo-*.png."""
    import shutil
    from datetime import UTC, datetime

    from sqlmodel import Session, create_engine, select

    from phase4.monitor.core.settings import Settings
    from phase4.monitor.server import ThreadedServer
    from phase4.monitor.store.models import Alert
    from phase4.service import create_app

    pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from tests.ui.test_ui_browser import chrome
    from tests.ui.test_ui_browser_workflow import submit

    assert shutil.which("chromium") and shutil.which("chromedriver"), (
        "chromium and chromedriver (.ci/system-deps installs them)"
    )
    out = Path(__file__).resolve().parents[2] / "test-output" / "ui"
    out.mkdir(parents=True, exist_ok=True)
    engine = create_engine(demo.result.database_url)
    with Session(engine) as session:
        alerts = list(session.exec(select(Alert).order_by(Alert.id)))
    engine.dispose()
    token = (demo.data_dir / "reviewer-token.txt").read_text().strip()
    today = datetime.now(UTC).date()
    settings = Settings(database_url=demo.result.database_url, detection_interval_s=0)
    downloads = demo.data_dir.parent / "downloads"
    downloads.mkdir(exist_ok=True)
    with ThreadedServer(create_app(settings)) as server, chrome(downloads) as driver:
        base = server.url
        driver.get(base + "/ui/login")
        driver.find_element(By.ID, "token").send_keys(token)
        driver.find_element(By.CSS_SELECTOR, "form.login button").click()
        WebDriverWait(driver, 30).until(lambda d: re.search(r"/ui/?$", d.current_url))

        def page(path: str, shot: str | None = None, deadlines: bool = False) -> str:
            """The page's text; no date after today on it, except a page of deadlines."""
            driver.get(base + path)
            assert "/ui/login" not in driver.current_url, path
            text = driver.find_element(By.TAG_NAME, "body").text
            future = [d for d in _dates_shown(text) if d > today]
            assert deadlines or not future, f"{path} shows dates after today: {future}"
            if shot:
                driver.save_screenshot(str(out / f"demo-{shot}.png"))
            return text

        # The fleet: the site-A scanner (the dose calibrator's cylinder faults, a critical
        # action-level alert open) is critical, not "pass".
        page("/ui", "fleet")
        verdicts = {
            row.find_element(By.CSS_SELECTOR, "th").text: row.get_attribute("data-verdict")
            for row in driver.find_elements(By.CSS_SELECTOR, "#devices tbody tr")
        }
        assert "critical" in verdicts.values(), verdicts
        critical_scanners = {
            a.device_id
            for a in alerts
            if a.device_id is not None and a.severity == "critical" and a.status != "resolved"
        }
        rows = driver.find_elements(By.CSS_SELECTOR, "#devices tbody tr")
        by_device = {
            int(
                r.find_element(By.CSS_SELECTOR, "th a").get_attribute("href").rsplit("/", 1)[1]
            ): r.get_attribute("data-verdict")
            for r in rows
        }
        assert critical_scanners and all(by_device[d] == "critical" for d in critical_scanners)
        for device_id in by_device:
            page(f"/ui/devices/{device_id}")
        for deployment_id in {a.deployment_id for a in alerts if a.deployment_id}:
            page(f"/ui/deployments/{deployment_id}")
        page("/ui/incidents", deadlines=True)  # reporting deadlines lie ahead by nature
        page("/ui/alerts?status=all", "alerts")
        drift = [a for a in alerts if a.deployment_id and (a.evidence or {}).get("change")]
        assert drift, "the demo raised no drift alert with a size of change"
        for a in alerts:
            page(f"/ui/alerts/{a.id}")
            first = driver.find_element(By.ID, "headline").text
            assert (first and _dates_shown(first + " 2026")) or "from about" in first, first
            if a in drift:
                assert "95% CI" in first and "from about" in first, first
        page(f"/ui/alerts/{drift[0].id}", "alert")
        # The deployment page's first chart: an alerted stream's quantity and its band.
        deployment = drift[0].deployment_id
        page(f"/ui/deployments/{deployment}", "deployment")
        WebDriverWait(driver, 60).until(
            lambda d: d.execute_script(
                "const c = document.querySelector('.chart'); return c && c.data && c.data.length"
            )
        )
        names = driver.execute_script(
            "return document.querySelector('.chart').data"
            ".map(t => [t.name || '', t.fill || '', t.legendgroup || ''])"
        )
        assert any(g == "reference" and fill for _, fill, g in names), names
        # The workflow on this store: an incident from the alert, a phantom result signed off,
        # the deployment's export downloaded.
        page(f"/ui/alerts/{drift[0].id}")
        submit(driver, "#incident-from-alert button")
        Select(driver.find_element(By.ID, "i-ser")).select_by_value("serious_harm")
        driver.find_element(By.NAME, "remedial_action_needed").click()
        driver.find_element(By.ID, "i-desc").send_keys("Liver SUVs re-read after the shift.")
        submit(driver, "#incident-form button")
        assert "?done=recorded" in driver.current_url
        assert len(driver.find_elements(By.CSS_SELECTOR, "#clocks tbody tr")) == 3
        driver.save_screenshot(str(out / "demo-incident.png"))
        scanner = next(iter(by_device))
        page(f"/ui/devices/{scanner}/results")
        submit(driver, "#results tbody tr button[name=only]")
        assert "1 result(s) signed off" in driver.find_element(By.ID, "done").text
        page(f"/ui/deployments/{deployment}")
        driver.find_element(By.ID, "export-link").click()
        WebDriverWait(driver, 30).until(lambda d: "/ui/exports" in d.current_url)
        driver.find_element(By.CSS_SELECTOR, "#export-form button").click()
        WebDriverWait(driver, 180, poll_frequency=0.5).until(
            lambda d: [z for z in downloads.glob("*.zip")]
        )
        (archive,) = downloads.glob("*.zip")
        assert archive.name.startswith(f"phase4-export_{deployment}_")
