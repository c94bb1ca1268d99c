"""HTTP ingest while the detection worker drains a backlog: does POST /v1/records keep working?

Run:  .venv/bin/python bench/ingest_during_detection.py [--backlog 200000] [--seconds 120]
          [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test]

A fresh store (a SQLite file in a temporary directory, or with ``--postgres URL`` a fresh
PostgreSQL database created next to URL's and dropped at the end), one deployment whose records
carry 21 features and outputs (the shape of bench/ingest_http.py, with varied values), a probe
token. A backlog of ``--backlog`` records is stored through ``phase4.monitor.domain.ingest``
in-process, none
of them analysed yet. Then a real ``phase4 serve`` in its own process on 127.0.0.1, twice:

1. idle (baseline, same run, same store): ``PHASE4_DETECTION_INTERVAL_S=0`` (no worker) for
   ``--baseline-seconds``;
   (with ``--separate-worker`` the server runs with ``PHASE4_DETECTION_IN_SERVER=false`` and a
   ``phase4 detect --loop`` process analyses, as docs/CONFIGURATION.md recommends for PostgreSQL)
2. draining: the background worker on (``PHASE4_DETECTION_INTERVAL_S=--interval``), so its first
   pass drains the backlog, for ``--seconds``; the load goes on after the backlog is drained.

In both, a client posts batches of ``--batch`` new records at a steady ``--rate`` requests/s
(open loop: a dispatcher thread sends on schedule through ``--senders`` threads, default 16, as
16 probes with one send in flight each, so a slow response does not delay the next request
unless all 16 are busy; the largest delay is reported)
and records each request's latency, status code and content type; a sampler counts the records
not yet analysed (``drift_processed_at IS NULL``, backlog and client's, on its own read-only
connection) every ``--sample-every`` seconds, in both phases alike. Reported, overall and per
window: 5xx, transport errors (they count in the percentiles with the time they took to fail),
error bodies that are not the API's JSON shape, answers slower than the probe's 10 s timeout,
p50/p95/p99/max latency; p99 while draining (requests sent before the sampler first saw the
backlog empty) over p99 idle; the drain rate (backlog records analysed per second from the
server being ready, so it includes the first interval and the reference's calibration).
Bounded: rate x seconds requests per phase, ``--timeout`` per request, loopback only; the server
is always stopped (SIGTERM, then SIGKILL after 60 s) and the PostgreSQL database always dropped.
Writes bench/results/ingest_during_detection-<backend>.json and the server's log of each phase
(bench/results/ingest_during_detection-<backend>-<phase>.log), and prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import sqlalchemy as sa

from phase4.monitor.core.settings import sqlite_url
from phase4.monitor.domain.ingest import ingest_records
from phase4.monitor.domain.registry import create_deployment
from phase4.monitor.server import free_port
from phase4.monitor.store.auth import Principal, Role, create_token
from phase4.monitor.store.db import create_db_engine, session_scope, upgrade

DEPLOYMENT = "lesion-ai@site-a"
T0 = datetime(2026, 1, 5, 8, tzinfo=UTC)
SPACING_S = 30
BACKLOG_PREFIX = "bl-"  # record ids of the pre-loaded backlog; the client's start with "live-"
RESULTS = Path(__file__).parent / "results"
PROBE_TIMEOUT_S = 10.0  # probes.Probe's default HTTP timeout: a slower answer is a failed send
_START = time.perf_counter()


def say(msg: str) -> None:
    """Progress on stderr (the summary goes to stdout)."""
    print(f"[{time.perf_counter() - _START:7.1f} s] {msg}", file=sys.stderr, flush=True)


SCANNERS = ["Biograph Vision 600", "Discovery MI", "uMI 550"]
RECONSTRUCTIONS = ["OSEM3D 4i5s PSF+TOF", "BSREM beta 400"]


def make_records(start: int, n: int, prefix: str, g: np.random.Generator) -> list[dict[str, Any]]:
    """Records ``start .. start+n-1`` of one acquisition-time sequence: 15 features (12 numeric,
    3 categorical) and 6 outputs, varied as patients vary (the detectors see a realistic
    reference, not constants)."""
    weight = g.normal(78, 15, n).clip(35, 180)
    activity = (weight * g.normal(3.5, 0.2, n)).round(1)
    uptake = g.normal(3700, 300, n).round()
    score = g.beta(2, 3, n)
    lesions = g.poisson(2.5, n)
    scanner = g.integers(0, len(SCANNERS), n)
    recon = g.integers(0, len(RECONSTRUCTIONS), n)
    noise = g.lognormal(-2.3, 0.15, n)
    suv_liver = g.normal(2.2, 0.3, n)
    glucose = g.normal(5.6, 0.8, n)
    age = g.integers(25, 90, n)
    latency = g.lognormal(-0.2, 0.2, n)
    records = []
    for j in range(n):
        i = start + j
        at = T0 + timedelta(seconds=SPACING_S * i)
        records.append(
            {
                "record_id": f"{prefix}{uuid.uuid4().hex}",
                "deployment": DEPLOYMENT,
                "study_pseudonym": uuid.uuid4().hex * 2,
                "acquired_at": at.isoformat(),
                "inferred_at": (at + timedelta(seconds=20)).isoformat(),
                "features": {
                    "scanner_model": SCANNERS[scanner[j]],
                    "reconstruction": RECONSTRUCTIONS[recon[j]],
                    "radiopharmaceutical": "Fluorodeoxyglucose",
                    "injected_activity_mbq": float(activity[j]),
                    "uptake_time_s": int(uptake[j]),
                    "weight_kg": round(float(weight[j]), 1),
                    "liver_suvmean": round(float(suv_liver[j]), 3),
                    "image_noise_cv": round(float(noise[j]), 4),
                    "blood_glucose_mmol_l": round(float(glucose[j]), 1),
                    "age_years": int(age[j]),
                    "slice_thickness_mm": 2.0 + (recon[j] * 0.79),
                    "bed_positions": int(5 + scanner[j]),
                    "acquisition_s_per_bed": 120 + 30 * int(scanner[j] == 2),
                    "mediastinum_suvmean": round(float(suv_liver[j] * 0.75), 3),
                    "counts_mcts": round(float(activity[j] * 0.9 + g.normal(0, 8)), 1),
                },
                "outputs": {
                    "malignancy_score": round(float(score[j]), 4),
                    "positive": bool(score[j] > 0.5),
                    "lesion_count": int(lesions[j]),
                    "lesion_suvmax": round(float(4 + 3 * score[j] + g.normal(0, 1)), 2),
                    "tmtv_ml": round(float(lesions[j] * 12 + g.gamma(2, 5)), 1),
                    "model_confidence": round(float(abs(score[j] - 0.5) * 2), 4),
                },
                "latency_s": round(float(latency[j]), 3),
            }
        )
    return records


@contextmanager
def fresh_store(postgres: str | None, workdir: Path) -> Iterator[str]:
    """A migrated, empty store: a SQLite file, or a new PostgreSQL database dropped on exit."""
    if postgres is None:
        url = sqlite_url(workdir / "phase4.db")
        upgrade(url)
        yield url
        return
    name = f"phase4_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(postgres, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        url = sa.make_url(postgres).set(database=name).render_as_string(hide_password=False)
        upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def prepare(url: str) -> str:
    engine = create_db_engine(url)
    with session_scope(engine) as s:
        create_deployment(
            s,
            deployment_id=DEPLOYMENT,
            site_id="site-a",
            model_name="PETLesionDetect",
            model_version="2.1.0",
            actor="bench",
        )
        token = create_token(s, name="bench", role=Role.PROBE, site_id="site-a", actor="bench")
    engine.dispose()
    return token


def preload(url: str, n: int, g: np.random.Generator) -> float:
    """Store the backlog through phase4.monitor.domain.ingest in-process, 1,000 per transaction;
    seconds."""
    engine = create_db_engine(url)
    principal = Principal("bench", Role.PROBE, "site-a")
    start = time.perf_counter()
    for i in range(0, n, 1000):
        records = make_records(i, min(1000, n - i), BACKLOG_PREFIX, g)
        with session_scope(engine) as s:
            result = ingest_records(s, records, principal, max_batch=1000)
        assert result.created == len(records), result.model_dump(exclude={"results"})
    elapsed = time.perf_counter() - start
    engine.dispose()
    return elapsed


class Sampler:
    """Records not yet analysed (backlog and client's), counted on a read-only connection of
    its own every ``every`` seconds; no transaction is held between two counts."""

    def __init__(self, url: str, every: float) -> None:
        self.engine = create_db_engine(url)
        self.every = every
        self.samples: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)
        self._t0 = 0.0

    def count(self, conn: sa.Connection) -> tuple[int, int]:
        row = conn.execute(
            sa.text(
                "SELECT count(*), coalesce(sum(CASE WHEN record_id LIKE :p THEN 1 ELSE 0 END), 0)"
                " FROM inference_record WHERE drift_processed_at IS NULL"
            ),
            {"p": f"{BACKLOG_PREFIX}%"},
        ).one()
        conn.rollback()
        return int(row[0]), int(row[1])

    def connect(self) -> sa.Connection:
        if self.engine.dialect.name == "postgresql":
            return self.engine.connect().execution_options(postgresql_readonly=True)
        conn = self.engine.connect()
        conn.exec_driver_sql("PRAGMA query_only=ON")
        return conn

    def start(self, t0: float) -> None:
        self._t0 = t0
        self._thread.start()

    def sample(self, conn: sa.Connection) -> None:
        t = time.perf_counter()
        unprocessed, backlog = self.count(conn)
        self.samples.append(
            {
                "t_s": round(t - self._t0, 2),
                "unprocessed": unprocessed,
                "backlog_unprocessed": backlog,
                "query_ms": round((time.perf_counter() - t) * 1e3, 1),
            }
        )

    def _run(self) -> None:
        with self.connect() as conn:
            while True:
                self.sample(conn)
                if self._stop.wait(self.every):
                    return

    def stop(self) -> dict[str, int]:
        """Stop sampling; what detection has produced in the store so far."""
        self._stop.set()
        self._thread.join(60)
        with self.connect() as conn:
            self.sample(conn)  # once more when the load has ended
            produced = {
                table: int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
                for table in ("alert", "drift_report", "detector_state")
            }
        self.engine.dispose()
        return produced


class Server:
    """``phase4 serve`` in its own process, its output in a log file; stop() always ends it."""

    def __init__(self, url: str, interval_s: float, log: Path, separate_worker: bool) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "PHASE4_DETECTION_INTERVAL_S": str(interval_s),
            # the server's worker keeps its other steps (reports, notifications)
            "PHASE4_DETECTION_IN_SERVER": "false" if separate_worker else "true",
        }
        self._out = log.open("wb")
        cmd = [sys.executable, "-m", "phase4.cli", "serve", "--port", str(self.port)]
        cmd += ["--database-url", url]
        self.proc = subprocess.Popen(
            cmd,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env=env,
        )
        # With --separate-worker the server only serves and `phase4 detect --loop` analyses
        # in its own process, as docs/CONFIGURATION.md recommends for production.
        self.worker: subprocess.Popen[bytes] | None = None
        if separate_worker and interval_s > 0:
            self.worker = subprocess.Popen(
                [
                    *(sys.executable, "-m", "phase4.cli", "detect", "--loop"),
                    *("--interval-s", str(interval_s), "--database-url", url),
                ],
                stdout=self._out,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def wait_ready(self, timeout_s: float = 180) -> float:
        """When /healthz first answers 200. Generous: on a busy 2-core machine importing the
        app alone has taken over 60 s."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    return time.perf_counter()
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"no answer on /healthz within {timeout_s:.0f} s; see {self.log}"
                )
            time.sleep(0.2)

    def stop(self) -> float:
        """Seconds from SIGTERM to exit (SIGKILL after 60 s)."""
        t = time.perf_counter()
        for proc in (self.proc, self.worker):
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self._out.close()
        return time.perf_counter() - t


def log_summary(log: Path) -> dict[str, Any]:
    """Tracebacks in a server log and the exception lines that end them (distinct, counted)."""
    text = log.read_text(errors="replace")
    exceptions: dict[str, int] = {}
    for block in text.split("Traceback (most recent call last):")[1:]:
        for line in block.splitlines():
            if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b", line):
                key = line[:200]
                exceptions[key] = exceptions.get(key, 0) + 1
                break
    return {"tracebacks": text.count("Traceback (most recent call last):"), "ends": exceptions}


def run_load(
    base: str,
    token: str,
    bodies: list[bytes],
    rate: float,
    t0: float,
    timeout_s: float = 30,
    senders: int = 16,
) -> list[dict[str, Any]]:
    """Post ``bodies`` at ``rate``/s on schedule from ``t0``; one result per request. A request
    whose sender is not free before the last one is due is not sent (``not_sent``): the phase
    ends at most ``timeout_s`` after its schedule whatever the server does."""
    end = t0 + len(bodies) / rate
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    results: list[dict[str, Any]] = [{} for _ in bodies]
    # Idle connections are dropped by the client after 1 s, well before uvicorn's 5 s
    # keep-alive timeout: with equal timeouts a request can race the server's close and fail
    # with "connection reset", an artefact of the client rather than the server's behaviour.
    limits = httpx.Limits(
        max_connections=senders, max_keepalive_connections=senders, keepalive_expiry=1.0
    )
    with (
        httpx.Client(base_url=base, timeout=timeout_s, limits=limits) as client,
        ThreadPoolExecutor(senders, thread_name_prefix="sender") as pool,
    ):

        def post(k: int, scheduled: float) -> None:
            sent = time.perf_counter()
            r: dict[str, Any] = {"t_s": round(scheduled - t0, 3), "lag_s": sent - scheduled}
            if sent > end:
                results[k] = {**r, "not_sent": True}
                return
            try:
                response = client.post("/v1/records", content=bodies[k], headers=headers)
                r["latency_s"] = time.perf_counter() - sent
                r["status"] = response.status_code
                r["content_type"] = response.headers.get("content-type", "")
                try:
                    payload = response.json()
                    r["json"] = isinstance(payload, dict)
                except ValueError:
                    payload, r["json"] = None, False
                if response.status_code == 200 and r["json"]:
                    r["created"] = payload.get("created")
                elif response.status_code >= 400:
                    r["body"] = response.text[:300]
            except Exception as exc:  # timeouts, resets; anything else is shown the same way
                r["latency_s"] = time.perf_counter() - sent
                r["status"] = None
                r["transport_error"] = f"{type(exc).__name__}: {exc}"[:300]
            results[k] = r

        for k in range(len(bodies)):
            scheduled = t0 + k / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(post, k, scheduled)
    return results


def latency_stats(rs: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts and latency percentiles; a request that failed in transport (timeout, reset)
    counts with the time it took to fail, so failures never make the percentiles look better."""
    scheduled = rs
    rs = [r for r in scheduled if not r.get("not_sent")]
    lat = np.array([r["latency_s"] for r in rs]) * 1e3
    errors = [r for r in rs if (r.get("status") or 0) >= 400]
    out: dict[str, Any] = {
        "requests": len(scheduled),
        "not_sent": len(scheduled) - len(rs),
        "ok": sum(r.get("status") == 200 for r in rs),
        "status_4xx": sum(400 <= (r.get("status") or 0) < 500 for r in rs),
        "status_5xx": sum((r.get("status") or 0) >= 500 for r in rs),
        "transport_errors": sum("transport_error" in r for r in rs),
        "over_probe_timeout": sum(
            "transport_error" in r or r["latency_s"] > PROBE_TIMEOUT_S for r in rs
        ),
        "non_json_errors": sum(
            not (r["json"] and r["content_type"].startswith("application/json")) for r in errors
        ),
        "ok_not_all_created": sum(
            r.get("status") == 200 and r.get("created") != r.get("batch") for r in rs
        ),
        "max_send_lag_ms": round(max((r["lag_s"] for r in rs), default=0) * 1e3, 1),
    }
    for name, q in (("p50", 50), ("p95", 95), ("p99", 99)):
        out[f"{name}_ms"] = round(float(np.percentile(lat, q)), 1) if len(lat) else None
    out["max_ms"] = round(float(lat.max()), 1) if len(lat) else None
    return out


def windows(
    rs: list[dict[str, Any]], samples: list[dict[str, float]], width: float
) -> list[dict[str, Any]]:
    """Per window of due times: latency stats and the last backlog count sampled by its end."""
    if not rs:
        return []
    out = []
    last = max(r["t_s"] for r in rs)
    w = 0.0
    while w <= last:
        inside = [r for r in rs if w <= r["t_s"] < w + width]
        seen = [s for s in samples if s["t_s"] < w + width]
        row = {"from_s": w, **latency_stats(inside)}
        row["backlog_unprocessed"] = seen[-1]["backlog_unprocessed"] if seen else None
        out.append(row)
        w += width
    return out


def phase(
    name: str,
    url: str,
    token: str,
    args: argparse.Namespace,
    interval_s: float,
    seconds: float,
    next_index: int,
    g: np.random.Generator,
    backend: str,
    servers: list[Server],
) -> tuple[dict[str, Any], int]:
    """One server run under client load; returns its report and the next record index."""
    n = max(1, int(seconds * args.rate))
    payloads = []
    for k in range(n):
        records = make_records(next_index + k * args.batch, args.batch, "live-", g)
        payloads.append(json.dumps({"records": records}).encode())
    next_index += n * args.batch
    RESULTS.mkdir(exist_ok=True)
    where = "a separate `phase4 detect --loop`" if args.separate_worker else "the server"
    say(f"{name}: starting phase4 serve (detection interval {interval_s} s, in {where})")
    log = RESULTS / f"ingest_during_detection-{backend}{args.suffix}-{name}.log"
    server = Server(url, interval_s, log, args.separate_worker)
    servers.append(server)
    ready = server.wait_ready()
    say(f"{name}: server ready; {n} requests of {args.batch} records at {args.rate}/s")
    sampler = Sampler(url, args.sample_every)
    t0 = ready + 0.5
    sampler.start(ready)
    produced: dict[str, int] = {}
    try:
        rs = run_load(server.base, token, payloads, args.rate, t0, args.timeout, args.senders)
    finally:
        produced = sampler.stop()
        stop_s = server.stop()
    say(f"{name}: done; server stopped in {stop_s:.1f} s")
    for r in rs:
        r["batch"] = args.batch
        r["t_s"] = round(r["t_s"] + 0.5, 3)  # from the server being ready, as the samples
    report: dict[str, Any] = {
        "phase": name,
        "detection_interval_s": interval_s,
        "seconds": seconds,
        "overall": latency_stats(rs),
        "windows": windows(rs, sampler.samples, args.window),
        "samples": sampler.samples,
        "server_stop_s": round(stop_s, 1),
        "store_at_end": produced,
        "server_log": str(server.log),
        "server_log_summary": log_summary(server.log),
        "error_bodies": [],
        "requests": rs,
    }
    seen: set[tuple[Any, ...]] = set()
    for r in rs:
        if (r.get("status") or 0) >= 400 or "transport_error" in r:
            key = (r.get("status"), r.get("content_type"), r.get("body"), r.get("transport_error"))
            if key not in seen and len(seen) < 8:
                seen.add(key)
                report["error_bodies"].append(
                    {k: r.get(k) for k in ("status", "content_type", "body", "transport_error")}
                )
    return report, next_index


def drain(report: dict[str, Any], backlog: int) -> dict[str, Any]:
    """When the sampler first saw the backlog empty, and the rate from the server's start."""
    samples = report["samples"]
    done = next((s for s in samples if s["backlog_unprocessed"] == 0), None)
    first = next((s for s in samples if s["backlog_unprocessed"] < backlog), None)
    end = done or (samples[-1] if samples else None)
    processed = backlog - (end["backlog_unprocessed"] if end else backlog)
    return {
        "complete": done is not None,
        "drained_by_s": done["t_s"] if done else None,
        "first_progress_seen_s": first["t_s"] if first else None,
        "processed": processed,
        "records_per_s": round(processed / end["t_s"], 1) if end and end["t_s"] > 0 else None,
    }


def split(rs: list[dict[str, Any]], until: float | None) -> dict[str, Any]:
    during = [r for r in rs if until is None or r["t_s"] < until]
    after = [r for r in rs if until is not None and r["t_s"] >= until]
    return {
        "draining": latency_stats(during),
        "after_drain": latency_stats(after) if after else None,
    }


def machine_line(url: str) -> str:
    engine = create_db_engine(url)
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            db = f"PostgreSQL {conn.exec_driver_sql('SHOW server_version').scalar()}"
        else:
            db = f"SQLite {sqlite3.sqlite_version}"
    engine.dispose()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{platform.platform()}, nproc {os.cpu_count()}, Python {platform.python_version()}, "
        f"{db}, load average {load} at start"
    )


def print_summary(result: dict[str, Any]) -> None:
    print(f"# Ingest while detection drains a backlog — {result['machine']}")
    print(
        f"# {result['date']} UTC, backend {result['backend']}, backlog {result['backlog']:,}, "
        f"{result['batch']} records/request at {result['rate']}/s; detection in "
        f"{'a separate worker process' if result['separate_worker'] else 'the server process'}; "
        f"preload "
        f"{result['preload_records_per_s']:,.0f} records/s in-process"
    )
    d = result["drain"]
    state = f"drained by {d['drained_by_s']} s" if d["complete"] else "NOT drained in the run"
    print(
        f"# drain: {d['processed']:,} backlog records, {d['records_per_s']} records/s ({state}; "
        f"first progress seen at {d['first_progress_seen_s']} s; server start to sample)"
    )
    cols = (
        "requests | not sent | 5xx | transport err | non-JSON err | > 10 s | p50 ms | p95 ms "
        "| p99 ms | max ms | max send lag ms"
    )
    print(f"| phase | {cols} |")
    print("|---" + "|---:" * 11 + "|")
    rows = [("idle (no worker)", result["idle"]), ("draining", result["draining"])]
    if result["after_drain"]:
        rows.append(("after drain", result["after_drain"]))
    for name, s in rows:
        print(
            f"| {name} | {s['requests']} | {s['not_sent']} | {s['status_5xx']} | "
            f"{s['transport_errors']} | "
            f"{s['non_json_errors']} | {s['over_probe_timeout']} | {s['p50_ms']} | "
            f"{s['p95_ms']} | {s['p99_ms']} | {s['max_ms']} | {s['max_send_lag_ms']} |"
        )
    print(f"# p99 draining / p99 idle: {result['p99_ratio']}")
    for name in ("idle", "draining"):
        ph = result["phases"][name]
        print(
            f"# {name}: server stopped {ph['server_stop_s']} s after SIGTERM; store at the end: "
            f"{ph['store_at_end']}"
        )
    print(
        "\n| from s | requests | not sent | 5xx | transport err | non-JSON err | p50 ms | p95 ms "
        "| p99 ms | max ms | backlog left |"
    )
    print("|---:" * 11 + "|")
    for w in result["windows"]:
        print(
            f"| {w['from_s']:.0f} | {w['requests']} | {w['not_sent']} | {w['status_5xx']} | "
            f"{w['transport_errors']} | {w['non_json_errors']} "
            f"| {w['p50_ms']} | {w['p95_ms']} | {w['p99_ms']} | {w['max_ms']} "
            f"| {w['backlog_unprocessed']} |"
        )
    for name in ("idle", "draining"):
        ph = result["phases"][name]
        for body in ph["error_bodies"]:
            print(f"# {name} error: {json.dumps(body)[:400]}")
        if ph["server_log_summary"]["tracebacks"]:
            print(f"# {name} server tracebacks: {ph['server_log_summary']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backlog", type=int, default=200_000)
    parser.add_argument("--seconds", type=float, default=120, help="load while draining")
    parser.add_argument("--baseline-seconds", type=float, default=20, help="load, idle")
    parser.add_argument("--batch", type=int, default=20, help="records per request")
    parser.add_argument("--rate", type=float, default=10, help="requests per second")
    parser.add_argument("--interval", type=float, default=2, help="detection interval, s")
    parser.add_argument("--sample-every", type=float, default=5)
    parser.add_argument("--window", type=float, default=5)
    parser.add_argument("--timeout", type=float, default=30, help="client timeout per request, s")
    parser.add_argument(
        "--senders", type=int, default=16, help="client sender threads (requests in flight)"
    )
    parser.add_argument("--postgres", metavar="URL", help="run on a fresh PostgreSQL database")
    parser.add_argument("--keep-requests", action="store_true", help="every request in JSON")
    parser.add_argument(
        "--separate-worker",
        action="store_true",
        help="serve with PHASE4_DETECTION_INTERVAL_S=0 beside a `phase4 detect --loop` process",
    )
    args = parser.parse_args(argv)
    args.suffix = "-separate-worker" if args.separate_worker else ""
    if args.seconds * args.rate > 20_000 or args.baseline_seconds * args.rate > 20_000:
        parser.error("more than 20,000 requests per phase: lower --seconds or --rate")
    backend = "postgresql" if args.postgres else "sqlite"
    g = np.random.default_rng(0)
    servers: list[Server] = []
    started = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as tmp, fresh_store(args.postgres, Path(tmp)) as url:
        try:
            machine = machine_line(url)
            token = prepare(url)
            say(f"preloading {args.backlog:,} records through phase4.monitor.domain.ingest")
            preload_s = preload(url, args.backlog, g)
            idle, nxt = phase(
                "idle",
                url,
                token,
                args,
                0,
                args.baseline_seconds,
                args.backlog,
                g,
                backend,
                servers,
            )
            draining, _ = phase(
                "draining",
                url,
                token,
                args,
                args.interval,
                args.seconds,
                nxt,
                g,
                backend,
                servers,
            )
        finally:
            for s in servers:
                s.stop()
    d = drain(draining, args.backlog)
    parts = split(draining["requests"], d["drained_by_s"] if d["complete"] else None)
    idle_p99, drain_p99 = idle["overall"]["p99_ms"], parts["draining"]["p99_ms"]
    result: dict[str, Any] = {
        "machine": machine,
        "date": f"{started:%Y-%m-%d %H:%M}",
        "backend": backend,
        "backlog": args.backlog,
        "batch": args.batch,
        "rate": args.rate,
        "seconds": args.seconds,
        "baseline_seconds": args.baseline_seconds,
        "detection_interval_s": args.interval,
        "separate_worker": args.separate_worker,
        "preload_records_per_s": round(args.backlog / preload_s, 1),
        "drain": d,
        "idle": idle["overall"],
        "draining": parts["draining"],
        "after_drain": parts["after_drain"],
        "p99_ratio": round(drain_p99 / idle_p99, 2) if idle_p99 and drain_p99 else None,
        "windows": draining["windows"],
        "phases": {"idle": idle, "draining": draining},
    }
    if not args.keep_requests:
        for ph in result["phases"].values():
            del ph["requests"]
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"ingest_during_detection-{backend}{args.suffix}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print_summary(result)
    print(f"# wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
