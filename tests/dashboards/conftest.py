"""A real monitor loaded with demo-like data, and a real Prometheus scraping it (127.0.0.1)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine

from phase4.monitor.core.settings import Settings, sqlite_url
from phase4.monitor.server import ThreadedServer, free_port
from phase4.monitor.store.db import create_db_engine, upgrade
from phase4.service import create_app
from tests.conftest import Fixture, populate
from tests.dashboards import data

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "dashboards"
RULES = DASHBOARDS / "prometheus" / "rules" / "phase4.rules.yml"
SCRAPES_BEFORE_QUERIES = 5


def tool(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    assert path, f"{name} is not installed (Debian packages prometheus, prometheus-alertmanager)"
    return path


@dataclass
class LoadedMonitor:
    url: str
    engine: Engine
    world: Fixture


@pytest.fixture(scope="module")
def loaded_monitor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoadedMonitor]:
    """A monitor on 127.0.0.1 (SQLite) holding two deployments' records sent by the real probe,
    verdicts, a drift the engine alerted on, and three scanners' phantom QC."""
    workdir = tmp_path_factory.mktemp("monitor")
    url = sqlite_url(workdir / "phase4.db")
    upgrade(url)
    engine = create_db_engine(url)
    world = populate(engine)
    server = ThreadedServer(
        create_app(Settings(database_url=url, detection_interval_s=0), engine=engine)
    ).start()
    try:
        data.load(server.url, world, workdir)
        yield LoadedMonitor(server.url, engine, world)
    finally:
        server.stop()
        engine.dispose()


@dataclass
class Prometheus:
    url: str

    def query(self, expr: str, at: float | None = None) -> dict[str, object]:
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        r = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=10)
        body: dict[str, object] = r.json()
        return body


@contextmanager
def running_prometheus(
    targets: list[str], workdir: Path, *, rules: bool = True, lifetime_s: int = 900
) -> Iterator[Prometheus]:
    """/usr/bin/prometheus on 127.0.0.1, scraping every target every second as instances of
    job="phase4" (with phase4's alerting rules unless ``rules`` is false), returned once it has
    scraped each of them ``SCRAPES_BEFORE_QUERIES`` times; stopped (and killed if need be) at
    the end, and by ``timeout`` after ``lifetime_s`` whatever happens to the test."""
    config = workdir / "prometheus.yml"
    config.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  evaluation_interval: 1s\n"
        + (f"rule_files: ['{RULES}']\n" if rules else "")
        + "scrape_configs:\n"
        "  - job_name: phase4\n"
        "    scrape_interval: 1s\n"
        "    scrape_timeout: 1s\n"
        f"    static_configs: [{{targets: {targets!r}}}]\n"
    )
    port = free_port()
    log = (workdir / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            tool("timeout"),
            "--kill-after=10",
            str(lifetime_s),
            tool("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    prom = Prometheus(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (workdir / "prometheus.log").read_text()
            assert time.monotonic() < deadline, f"Prometheus did not scrape {targets} in 60 s"
            try:
                body = prom.query(
                    f'count_over_time(up{{job="phase4"}}[1m]) >= {SCRAPES_BEFORE_QUERIES}'
                )
                if (
                    body.get("status") == "success" and len(body["data"]["result"]) == len(targets)  # type: ignore[index]
                ):
                    up = prom.query('up{job="phase4"}')
                    assert {s["value"][1] for s in up["data"]["result"]} == {"1"}, up  # type: ignore[index]
                    break
            except (httpx.HTTPError, ValueError):  # not ready yet (503, plain text)
                pass
            time.sleep(0.5)
        yield prom
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def prometheus(
    loaded_monitor: LoadedMonitor, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    """/usr/bin/prometheus on 127.0.0.1, scraping the loaded monitor every second as
    job="phase4", with phase4's alerting rules; stopped (and killed if need be) at the end."""
    workdir = tmp_path_factory.mktemp("prometheus")
    with running_prometheus([loaded_monitor.url.removeprefix("http://")], workdir) as prom:
        yield prom
