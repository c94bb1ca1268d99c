"""HTTP ingest throughput: batches of records into a running `phase4 serve` (SQLite) on 127.0.0.1.

Run:  .venv/bin/python bench/ingest_http.py [--records 60000] [--batch 500 1000]

The server runs in its own process (one uvicorn worker, as `phase4 serve` starts it); the client
posts pre-serialised JSON bodies over one keep-alive connection per client thread, so the figure
is the server's. Baseline in the same run: the same batches stored by
`phase4.monitor.domain.ingest` called
in-process (no HTTP, no JSON parsing), so the HTTP overhead is reported as a ratio.
Writes bench/results/ingest_http.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from phase4.monitor.core.settings import sqlite_url
from phase4.monitor.domain.ingest import ingest_records
from phase4.monitor.domain.registry import create_deployment
from phase4.monitor.server import free_port
from phase4.monitor.store.auth import Principal, Role, create_token
from phase4.monitor.store.db import create_db_engine, session_scope, upgrade

DEPLOYMENT = "lesion-ai@site-a"


def make_records(n: int) -> list[dict[str, Any]]:
    t0 = datetime(2026, 1, 5, 8, tzinfo=UTC)
    return [
        {
            "record_id": uuid.uuid4().hex,
            "deployment": DEPLOYMENT,
            "study_pseudonym": uuid.uuid4().hex * 2,
            "acquired_at": (t0 + timedelta(seconds=30 * i)).isoformat(),
            "inferred_at": (t0 + timedelta(seconds=30 * i + 20)).isoformat(),
            "features": {
                "scanner_model": "Biograph Vision 600",
                "reconstruction": "OSEM3D 4i5s PSF+TOF",
                "radiopharmaceutical": "Fluorodeoxyglucose",
                "injected_activity_mbq": 270.5,
                "uptake_time_s": 3720,
                "weight_kg": 78.2,
                "liver_suvmean": 2.21,
                "image_noise_cv": 0.097,
            },
            "outputs": {
                "malignancy_score": 0.73,
                "positive": True,
                "lesion_count": 3,
                "lesion_suvmax": 9.4,
                "tmtv_ml": 41.2,
            },
            "latency_s": 0.84,
        }
        for i in range(n)
    ]


def prepare_db(path: Path) -> tuple[str, str]:
    url = sqlite_url(path)
    upgrade(url)
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
    return url, token


def direct_baseline(records: list[dict[str, Any]], batch: int, workdir: Path) -> float:
    url, _ = prepare_db(workdir / f"direct-{batch}.db")
    engine = create_db_engine(url)
    principal = Principal("bench", Role.PROBE, "site-a")
    start = time.perf_counter()
    for i in range(0, len(records), batch):
        with session_scope(engine) as s:
            ingest_records(s, records[i : i + batch], principal, max_batch=1000)
    elapsed = time.perf_counter() - start
    engine.dispose()
    return len(records) / elapsed


def http_run(records: list[dict[str, Any]], batch: int, clients: int, workdir: Path) -> float:
    url, token = prepare_db(workdir / f"http-{batch}-{clients}.db")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "phase4.cli", "serve", "--port", str(port), "--database-url", url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.1)
        bodies = [
            json.dumps({"records": records[i : i + batch]}).encode()
            for i in range(0, len(records), batch)
        ]
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        created = [0] * clients

        def worker(k: int) -> None:
            with httpx.Client(base_url=base, timeout=60) as client:
                for body in bodies[k::clients]:
                    response = client.post("/v1/records", content=body, headers=headers)
                    response.raise_for_status()
                    created[k] += response.json()["created"]

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        assert sum(created) == len(records), (sum(created), len(records))
        return len(records) / elapsed
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=60_000)
    parser.add_argument("--batch", type=int, nargs="+", default=[500, 1000])
    parser.add_argument("--clients", type=int, default=2)
    args = parser.parse_args()
    records = make_records(args.records)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for batch in args.batch:
            direct = direct_baseline(records, batch, workdir)
            http = http_run(records, batch, args.clients, workdir)
            rows.append(
                {
                    "batch": batch,
                    "clients": args.clients,
                    "http_records_per_s": http,
                    "direct_records_per_s": direct,
                    "http_over_direct": http / direct,
                }
            )
    machine = f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    print(f"# HTTP ingest, SQLite, {args.records:,} records per run — {machine}")
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print("| batch | client threads | HTTP records/s | in-process records/s (baseline) | ratio |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['batch']} | {r['clients']} | {r['http_records_per_s']:,.0f} | "
            f"{r['direct_records_per_s']:,.0f} | {r['http_over_direct']:.2f} |"
        )
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "ingest_http.json").write_text(
        json.dumps(
            {"machine": machine, "date": datetime.now(UTC).isoformat(), "rows": rows}, indent=2
        )
    )


if __name__ == "__main__":
    main()
