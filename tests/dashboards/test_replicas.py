"""The dashboards with several `phase4 serve` replicas: two real replicas on 127.0.0.1 share one
SQLite store, a real Prometheus scrapes both as two instances of job="phase4" and another
scrapes only the first; every panel query (and annotation) must give the same series with the
same values from both, none of them once per replica (docs/DASHBOARDS.md, "Several replicas").

The probe sends everything through the first replica (its records, verdicts and health reports
are in that replica's memory); the second serves the same store and nothing else, as a replica
behind a load balancer that has not received a batch yet. Series read from the store are then
exposed by both, in-process and probe series by the first only."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from phase4.monitor.core.settings import sqlite_url
from phase4.monitor.server import free_port
from phase4.monitor.store.db import create_db_engine, upgrade
from tests.conftest import populate
from tests.dashboards import data
from tests.dashboards.conftest import Prometheus, running_prometheus, tool
from tests.dashboards.test_grafana_prometheus import (
    JSON_FILES,
    _load,
    _panels,
    _resolve_variables,
    _substitute,
)

LIFETIME_S = 900  # every process started here ends by itself after this, whatever happens
# Drawn per instance by design (is each replica scraped, how long its /metrics takes).
PER_INSTANCE = ('up{job="phase4"}', 'scrape_duration_seconds{job="phase4"}')
# The test's Prometheus servers hold only minutes of data: windows that cover all of it, so
# both servers' rates and increases take the whole load (their scrapes are not simultaneous).
RATE_WINDOW = "5m"
RATE_TOLERANCE = 0.2  # relative, between two servers' extrapolations; a doubling is 1.0
AGE_TOLERANCE_S = 5.0  # ages are read at each scrape, and the servers scrape at other moments

Series = dict[tuple[tuple[str, str], ...], float]


@dataclass
class Replicas:
    urls: list[str]
    engine: Engine
    both: Prometheus  # scrapes every replica, one instance each
    one: Prometheus  # scrapes the first replica only
    at: float  # when to evaluate the queries: after both servers scraped the loaded store


def _serve(db_url: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    """`phase4 serve` on 127.0.0.1 (the drift engine and the worker off: the store stays as
    loaded), ended by `timeout` after LIFETIME_S."""
    with log.open("w") as out:
        return subprocess.Popen(
            [
                tool("timeout"),
                "--kill-after=10",
                str(LIFETIME_S),
                str(Path(sys.executable).parent / "phase4"),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--database-url",
                db_url,
            ],
            env={**os.environ, "PHASE4_DETECTION_INTERVAL_S": "0"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"{url} did not serve /metrics in 60 s"
        try:
            if httpx.get(f"{url}/metrics", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()  # timeout passes SIGTERM on to phase4 serve
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    workdir = tmp_path_factory.mktemp("replicas")
    db_url = sqlite_url(workdir / "phase4.db")
    upgrade(db_url)
    engine = create_db_engine(db_url)
    world = populate(engine)
    ports: list[int] = []
    while len(ports) < 2:
        port = free_port()
        if port not in ports:
            ports.append(port)
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    with ExitStack() as stack:
        stack.callback(engine.dispose)
        for i, (port, url) in enumerate(zip(ports, urls, strict=True)):
            log = workdir / f"serve-{i}.log"
            proc = _serve(db_url, port, log)
            stack.callback(_stop, proc)
            _wait_ready(proc, url, log)
        addresses = [u.removeprefix("http://") for u in urls]
        (workdir / "both").mkdir()
        (workdir / "one").mkdir()
        both = stack.enter_context(running_prometheus(addresses, workdir / "both", rules=False))
        one = stack.enter_context(running_prometheus(addresses[:1], workdir / "one", rules=False))
        data.load(urls[0], world, workdir)
        time.sleep(4)  # both servers scrape the loaded store a few times
        yield Replicas(urls, engine, both, one, at=time.time() - 1)


def _series(body: dict[str, Any]) -> tuple[Series, list[str]]:
    """The result's series by their labels without `instance`, and the label sets that came
    more than once (one line per replica)."""
    result = body["data"]["result"]
    if body["data"]["resultType"] == "scalar":
        return {(): float(result[1])}, []
    out: Series = {}
    repeated = []
    for s in result:
        key = tuple(sorted((k, v) for k, v in s["metric"].items() if k != "instance"))
        if key in out:
            repeated.append(_show(key))
        out[key] = float(s["value"][1])
    return out, repeated


def _show(key: tuple[tuple[str, str], ...]) -> str:
    shown = ", ".join(f"{k}={v}" for k, v in key if k not in ("job", "__name__"))
    return "{" + shown + "}"


def _close(expr: str, a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if "age_seconds" in expr:
        scale = 86400 if "/ 86400" in expr else 1
        return math.isclose(a, b, abs_tol=AGE_TOLERANCE_S / scale)
    if "rate(" in expr or "increase(" in expr:
        return math.isclose(a, b, rel_tol=RATE_TOLERANCE, abs_tol=1e-9)
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def test_two_replicas_share_the_store_and_expose_its_series_twice(replicas: Replicas) -> None:
    """The setup the dashboards must survive: both replicas scraped, each exposing the store."""
    both, one, at = replicas.both, replicas.one, replicas.at
    up = both.query('up{job="phase4"}', at)["data"]["result"]  # type: ignore[index]
    assert sorted(s["metric"]["instance"] for s in up) == sorted(
        u.removeprefix("http://") for u in replicas.urls
    )
    assert {s["value"][1] for s in up} == {"1"}
    per_instance = both.query("count by (instance) (phase4_records_stored_total)", at)
    assert len(per_instance["data"]["result"]) == 2  # type: ignore[index,arg-type]
    with replicas.engine.connect() as conn:
        stored = dict(
            conn.execute(
                sa.text("SELECT deployment_id, count(*) FROM inference_record GROUP BY 1")
            ).all()
        )
    assert stored == {data.DRIFTING: 400, data.STEADY: 200}
    raw = both.query("phase4_records_stored_total", at)["data"]["result"]  # type: ignore[index]
    assert sorted((s["metric"]["deployment"], float(s["value"][1])) for s in raw) == sorted(
        (d, float(n)) for d, n in stored.items() for _ in range(2)
    )
    single = one.query("phase4_records_stored_total", at)["data"]["result"]  # type: ignore[index]
    assert len(single) == len(stored)


@pytest.mark.parametrize("path", JSON_FILES, ids=lambda p: p.stem)
def test_every_panel_gives_with_two_replicas_what_it_gives_with_one(
    path: Path, replicas: Replicas
) -> None:
    dash = _load(path)
    both, one, at = replicas.both, replicas.one, replicas.at
    values = _resolve_variables(dash, one)
    assert _resolve_variables(dash, both) == values
    queries = [
        (f"panel {p['title']!r} {t['refId']}", t["expr"])
        for p in _panels(dash)
        if p["type"] != "row"
        for t in p["targets"]
    ]
    queries += [
        (f"annotation {a['name']!r}", a["expr"]) for a in dash["annotations"]["list"] if "expr" in a
    ]
    compared = 0
    failures = []
    for what, expr in queries:
        query = _substitute(expr.replace("$__rate_interval", RATE_WINDOW), values)
        body_one, body_both = one.query(query, at), both.query(query, at)
        assert body_one.get("status") == "success", (what, query, body_one)
        assert body_both.get("status") == "success", (what, query, body_both)
        if query in PER_INSTANCE:
            assert len(body_both["data"]["result"]) == 2, (what, body_both)  # type: ignore[index,arg-type]
            continue
        single, repeated_single = _series(body_one)
        assert single and not repeated_single, f"{what}: {query}: no data from one replica"
        several, repeated = _series(body_both)
        compared += 1
        if repeated:
            failures.append(f"{what}: once per replica: {', '.join(sorted(set(repeated)))}")
            continue
        if set(several) != set(single):
            failures.append(
                f"{what}: series {sorted(map(_show, several))} "
                f"instead of {sorted(map(_show, single))}"
            )
            continue
        differ = [
            f"{_show(k)} {several[k]:g} instead of {single[k]:g}"
            for k in sorted(single)
            if not _close(expr, several[k], single[k])
        ]
        if differ:
            failures.append(f"{what}: {'; '.join(differ)}")
    assert compared, f"{path.stem}: no query compared"
    assert not failures, f"{path.stem}, two replicas against one:\n" + "\n".join(failures)


# What two replicas expose of one probe and of the ingest: the probe's last batch (spool drained,
# version 0.2.0) reached the second replica 5 s ago; the first still holds the report of an
# older batch (500 records spooled, version 0.1.0). Each counted the items it received.
REPLICA_SERIES = {
    "phase4_probe_queue_depth{deployment='d'}": ("40x12", "0x12"),
    "phase4_probe_spool_depth{deployment='d'}": ("500x12", "0x12"),
    "phase4_probe_last_report_age_seconds{deployment='d'}": ("600+60x12", "5x12"),
    "phase4_probe_info{deployment='d', probe_version='0.1.0'}": ("1x12", ""),
    "phase4_probe_info{deployment='d', probe_version='0.2.0'}": ("", "1x12"),
    "phase4_probe_dropped_records_total{deployment='d'}": ("0 0 3x10", "0 0 3 5 7x8"),
    "phase4_ingest_items_total{kind='records', status='rejected'}": ("0+1x12", "0+2x12"),
}
# panel title -> the samples it must give at 10 min (labels, value)
PROBE_PANELS = {
    "Probe queue depth": [("{deployment='d', job='phase4'}", 0)],
    "Probe spool depth (records waiting on disk)": [("{deployment='d', job='phase4'}", 0)],
    "Time since each probe's last health report": [("{deployment='d', job='phase4'}", 5)],
    "Probe versions": [("{deployment='d', job='phase4', probe_version='0.2.0'}", 1)],
    # The newest report's count: 7 dropped, not the stale replica's 3 added to it.
    "Records dropped by probes (last 24 h)": [("{}", 7)],
    # In-process counters add up: 10 rejected by one replica, 20 by the other.
    "Items rejected (last hour)": [("{}", 30)],
    "Ingest items per second by kind and outcome": [("{kind='records', status='rejected'}", 0.05)],
}


def test_probe_panels_take_the_youngest_report_and_ingest_panels_add_replicas_up(
    tmp_path: Path,
) -> None:
    """promtool evaluates the ingest dashboard's probe and ingest queries on two instances."""
    [path] = [p for p in JSON_FILES if p.stem == "phase4-ingest-probes"]
    panels = {p["title"]: p for p in _panels(_load(path))}
    series = []
    for selector, per_replica in REPLICA_SERIES.items():
        for instance, values in zip(("10.0.0.1:8000", "10.0.0.2:8000"), per_replica, strict=True):
            if values:
                labels = f"job='phase4', instance='{instance}', " + selector.split("{", 1)[1]
                series.append({"series": selector.split("{")[0] + "{" + labels, "values": values})
    tests = []
    for title, samples in PROBE_PANELS.items():
        [t] = panels[title]["targets"]
        tests.append(
            {
                "expr": _substitute(t["expr"].replace("$__rate_interval", RATE_WINDOW), {}),
                "eval_time": "10m",
                "exp_samples": [{"labels": lb, "value": v} for lb, v in samples],
            }
        )
    spec = tmp_path / "replicas.test.yml"
    spec.write_text(
        json.dumps(
            {
                "rule_files": [],
                "evaluation_interval": "1m",
                "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": tests}],
            },
            indent=1,
        )
    )
    done = subprocess.run(
        [tool("promtool"), "test", "rules", spec.name],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr
