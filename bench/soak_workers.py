"""Soak: steady ingest into one PostgreSQL while 1, 2, 3... detection workers analyse it;
detection lag, records/s per worker against the single-process ingest rate, and whether the
result equals one worker's.

Run:  .venv/bin/python bench/soak_workers.py [--deployments 1000] [--streams 30]
          [--duration-s 600] [--rate 300] [--workers 1 2 3] [--out soak_workers.json]
          [--postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

For each worker count a throwaway database gets ``--deployments`` deployments of ``--streams``
monitored fields and the same deterministic records (same ids, values and acquisition times),
ingested through ``phase4.monitor.domain.ingest`` at ``--rate`` records/s in total (round robin
over the
deployments) for ``--duration-s``; the workers are real processes, each running the passes of
``phase4 detect --loop`` (``detect_all(claim=True)`` with the worker's ``MonitorCache`` when the
code has one, a pass every second when idle; ``--worker`` below) and reporting, per pass, the
records it analysed, the pass's wall time and its CPU time. Every second the lag is sampled: the
age of the oldest record not yet analysed (0 when none waits). After the ingest, the time to
drain the backlog. The detector states are compared with the first worker count's (1 worker):
every record analysed exactly once gives identical states; their SHA-256 lets runs of other
code (``PYTHONPATH`` set to another checkout's sources, run from outside this one) be compared.

The same run measures the **single-process ingest rate**: records of the same shape ingested
as fast as one process can through ``phase4.monitor.domain.ingest`` (``--ingest-batch`` per
transaction) into a throwaway database with the same deployments, before the soaks and again
after them (the machine's load moves). Each worker's **busy throughput** is its records over the
wall (and the CPU) time of its passes that analysed something. Writes bench/results/``--out``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlmodel import Session, select

from phase4.monitor.domain.ingest import ingest_records
from phase4.monitor.domain.registry import create_deployment
from phase4.monitor.store.auth import Principal, Role
from phase4.monitor.store.db import create_db_engine, session_scope, upgrade
from phase4.monitor.store.models import DetectorState
from phase4.monitor.surveillance import detection

T0 = datetime(2026, 1, 5, 8, tzinfo=UTC)


def monitoring(streams: int) -> dict[str, Any]:
    specs = [{"field": f"features.f{j:02d}", "kind": "numeric"} for j in range(streams - 1)]
    specs.append({"field": "outputs.positive", "kind": "binary"})
    return {"streams": specs, "reference_size": 500, "studies_per_day": 20}


def records(deployments: int, streams: int, total: int) -> list[dict[str, Any]]:
    """Round robin over the deployments, each in acquisition order; the same every run."""
    g = np.random.default_rng(5)
    values = g.normal(2.0, 0.3, size=(total, streams - 1)).round(4)
    out = []
    for i in range(total):
        d, k = i % deployments, i // deployments
        at = T0 + timedelta(minutes=30 * k)
        out.append(
            {
                "record_id": f"{d:05d}{k:027d}",
                "deployment": f"ai@site-{d:05d}",
                "acquired_at": at.isoformat(),
                "inferred_at": at.isoformat(),
                "features": {f"f{j:02d}": float(values[i, j]) for j in range(streams - 1)},
                "outputs": {"positive": bool(values[i, 0] > 2.16)},
            }
        )
    return out


def prepare(url: str, deployments: int, streams: int) -> Any:
    upgrade(url)
    engine = create_db_engine(url)
    with session_scope(engine) as s:
        for d in range(deployments):
            create_deployment(
                s,
                deployment_id=f"ai@site-{d:05d}",
                site_id=f"site-{d:05d}",
                model_name="PETLesionDetect",
                model_version="2.1.0",
                actor="bench",
                monitoring=monitoring(streams),
            )
    return engine


def ingest_rate(url: str, args: argparse.Namespace, data: list[dict[str, Any]]) -> float:
    """Records/s one process ingests, as fast as it can, into a fresh database (``url``)."""
    engine = prepare(url, args.deployments, args.streams)
    principal = Principal("bench", Role.ADMIN, None)
    sample = data[: args.ingest_records]
    started = time.perf_counter()
    for i in range(0, len(sample), args.ingest_batch):
        with session_scope(engine) as s:
            ingest_records(s, sample[i : i + args.ingest_batch], principal, max_batch=len(sample))
    rate = len(sample) / (time.perf_counter() - started)
    engine.dispose()
    return rate


def worker(url: str, interval_s: float) -> None:
    """One detection worker: the passes ``phase4 detect --loop`` runs (``run_detection_loop``),
    each timed; prints one JSON line per pass that analysed something, and the totals at
    SIGINT."""
    engine = create_db_engine(url)
    kept = getattr(detection, "MonitorCache", None)
    cache = kept(detection.DetectionSettings().cache_deployments) if kept is not None else None
    busy_wall = busy_cpu = 0.0
    records = passes = 0
    try:
        while True:
            wall, cpu = time.perf_counter(), time.process_time()
            if cache is None:
                results = detection.detect_all(engine, claim=True)
            else:
                results = detection.detect_all(engine, claim=True, cache=cache)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            passes += 1
            done = sum(r.records for r in results)
            if done:
                records += done
                busy_wall += wall
                busy_cpu += cpu
                line = {"records": done, "wall_s": wall, "cpu_s": cpu}
                if cache is not None:  # so far
                    line |= {"cache_hits": cache.hits, "cache_misses": cache.misses}
                print(json.dumps(line), flush=True)
            else:
                time.sleep(max(0.0, interval_s - wall))
    except KeyboardInterrupt:
        pass
    total = {"records": records, "busy_wall_s": busy_wall, "busy_cpu_s": busy_cpu}
    if cache is not None:
        total |= {"cache_hits": cache.hits, "cache_misses": cache.misses}
    print(json.dumps({"total": total, "passes": passes}), flush=True)


def worker_totals(lines: list[str]) -> dict[str, Any]:
    """A worker's records and busy time from its per-pass lines (so a worker that was killed
    counts too), and its cache's hits and misses from its last line."""
    passes = [json.loads(line) for line in lines if line.startswith('{"records"')]
    total: dict[str, Any] = {
        "records": sum(p["records"] for p in passes),
        "busy_wall_s": sum(p["wall_s"] for p in passes),
        "busy_cpu_s": sum(p["cpu_s"] for p in passes),
    }
    ends = [json.loads(line)["total"] for line in lines if line.startswith('{"total"')]
    last = ends[-1] if ends else passes[-1] if passes else {}
    total |= {k: v for k, v in last.items() if k.startswith("cache_")}
    return total


def lag_s(engine: Any) -> float:
    with engine.connect() as conn:
        oldest = conn.execute(
            sa.text(
                "SELECT min(received_at) FROM inference_record WHERE drift_processed_at IS NULL"
            )
        ).scalar_one()
    return 0.0 if oldest is None else (datetime.now(UTC) - oldest).total_seconds()


def run(
    url: str, workers: int, data: list[dict[str, Any]], args: argparse.Namespace
) -> dict[str, Any]:
    engine = prepare(url, args.deployments, args.streams)
    procs = [
        subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", url],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(workers)
    ]
    time.sleep(5)  # the workers' imports, before the clock starts
    outputs: list[list[str]] = [[] for _ in procs]
    readers = [
        # read as it comes: a full pipe would block the worker's next print
        threading.Thread(target=lambda p=p, lines=lines: lines.extend(p.stdout), daemon=True)
        for p, lines in zip(procs, outputs, strict=True)
    ]
    for reader in readers:
        reader.start()
    principal = Principal("bench", Role.ADMIN, None)
    per_tick = max(1, int(args.rate / 2))
    done = threading.Event()

    def feed() -> None:
        t = time.monotonic()
        for i in range(0, len(data), per_tick):
            with session_scope(engine) as s:
                ingest_records(s, data[i : i + per_tick], principal, max_batch=len(data))
            t += 0.5
            time.sleep(max(0.0, t - time.monotonic()))
        done.set()

    started = time.monotonic()
    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    lags = []
    totals: list[dict[str, Any]] = []
    try:
        while not done.is_set():
            assert feeder.is_alive() or done.is_set(), "ingest failed"
            time.sleep(1)
            lags.append(lag_s(engine))
        ingest_s = time.monotonic() - started
        while (lag := lag_s(engine)) > 0:
            lags.append(lag)
            time.sleep(1)
        drained_s = time.monotonic() - started
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT)  # the loop ends at once, its open chunk rolled back
        for p, reader, lines in zip(procs, readers, outputs, strict=True):
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()  # a worker deaf to SIGINT: its open chunk rolls back all the same
                p.wait()
            reader.join(timeout=10)  # its last lines
            totals.append(worker_totals(lines))
    with Session(engine) as s:
        states = {r.deployment_id: r.state for r in s.exec(select(DetectorState))}
    engine.dispose()
    analysed = [t["records"] for t in totals]
    return {
        "workers": workers,
        "records": len(data),
        "ingest_records_per_s": round(len(data) / ingest_s),
        "detect_records_per_s": round(len(data) / drained_s),
        "records_per_worker": analysed,
        "records_per_s_per_worker": [round(a / drained_s) for a in analysed],
        "busy_records_per_wall_s": [
            round(t["records"] / t["busy_wall_s"]) if t["busy_wall_s"] else 0 for t in totals
        ],
        "busy_records_per_cpu_s": [
            round(t["records"] / t["busy_cpu_s"]) if t["busy_cpu_s"] else 0 for t in totals
        ],
        "busy_wall_s": [round(t["busy_wall_s"], 1) for t in totals],
        "cache_hits_misses": [[t.get("cache_hits"), t.get("cache_misses")] for t in totals],
        "lag_s_median": round(statistics.median(lags), 1) if lags else 0.0,
        "lag_s_max": round(max(lags), 1) if lags else 0.0,
        "drain_after_ingest_s": round(drained_s - ingest_s, 1),
        "states_sha256": hashlib.sha256(json.dumps(states, sort_keys=True).encode()).hexdigest()[
            :16
        ],
        "_states": states,
    }


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two states differ (paths, and the two values briefly)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b), key=str):
            out += differences(a.get(key), b.get(key), f"{path}/{key}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        pairs = enumerate(zip(a, b, strict=True))
        return [d for i, (x, y) in pairs for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {str(a)[:60]} != {str(b)[:60]}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deployments", type=int, default=1000)
    parser.add_argument("--streams", type=int, default=30)
    parser.add_argument("--duration-s", type=float, default=600)
    parser.add_argument("--rate", type=float, default=300, help="records/s ingested in total")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--postgres-url", default=os.environ.get("PHASE4_TEST_POSTGRES_URL"))
    parser.add_argument("--ingest-records", type=int, default=20_000)
    parser.add_argument("--ingest-batch", type=int, default=500)
    parser.add_argument("--out", default="soak_workers.json")
    parser.add_argument("--worker", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, 1.0)
        return
    if not args.postgres_url:
        sys.exit("error: --postgres-url (or PHASE4_TEST_POSTGRES_URL) is required")
    data = records(args.deployments, args.streams, int(args.rate * args.duration_s))
    admin = sa.create_engine(args.postgres_url, isolation_level="AUTOCOMMIT")

    def in_database(work: Any) -> Any:
        name = f"phase4_soak_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            url = sa.make_url(args.postgres_url).set(database=name)
            return work(url.render_as_string(hide_password=False))
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    ingest_rates = [round(in_database(lambda url: ingest_rate(url, args, data)))]
    print({"single_process_ingest_records_per_s": ingest_rates[0]}, flush=True)
    rows = []
    for k in args.workers:
        row = in_database(lambda url, k=k: run(url, k, data, args))
        row["states_equal_first_run"] = row["_states"] == rows[0]["_states"] if rows else True
        if rows and not row["states_equal_first_run"]:
            row["state_differences"] = differences(rows[0]["_states"], row["_states"])[:10]
        rows.append(row)
        print({k: v for k, v in row.items() if k != "_states"}, flush=True)
    ingest_rates.append(round(in_database(lambda url: ingest_rate(url, args, data))))
    admin.dispose()
    results = {
        "machine": {
            "nproc": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_end": [round(x, 1) for x in os.getloadavg()],
        },
        "code": detection.__file__,
        "single_process_ingest_records_per_s": {
            "before_soaks": ingest_rates[0],
            "after_soaks": ingest_rates[1],
            "batch": args.ingest_batch,
            "records": min(args.ingest_records, len(data)),
        },
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "deployments": args.deployments,
        "streams": args.streams,
        "duration_s": args.duration_s,
        "rate": args.rate,
        "runs": [{k: v for k, v in r.items() if k != "_states"} for r in rows],
    }
    path = Path(__file__).parent / "results" / args.out
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
