"""Detection pass throughput against ingest, on SQLite and PostgreSQL, and how long a pass holds
SQLite's write lock per chunk.

Run:  .venv/bin/python bench/detection_throughput.py [--records 20000] [--streams 30]
          [--batch 1000 5000] [--postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

One deployment with ``--streams`` monitored fields (numeric features, one binary output), a
reference of 500. Baseline in the same run: the same records stored by
``phase4.monitor.domain.ingest`` in
batches of 1,000 (in-process, no HTTP), so detection is reported as a ratio of ingest. Then:
- a detection pass over the whole backlog, per chunk size (records/s, and on SQLite the time
  from taking the write lock to commit, per chunk: what ingest waits for);
- finding the next 5,000 records behind the whole processed history (the partial index).
PostgreSQL runs in a throwaway database created and dropped here (skipped without a URL).
Writes bench/results/detection_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlmodel import Session

from phase4.monitor.core.settings import sqlite_url
from phase4.monitor.domain.ingest import ingest_records
from phase4.monitor.domain.registry import create_deployment
from phase4.monitor.store.auth import Principal, Role
from phase4.monitor.store.db import create_db_engine, session_scope, upgrade
from phase4.monitor.surveillance.detection import _unprocessed_records, detect_deployment

DEPLOYMENT = "lesion-ai@site-a"
T0 = datetime(2026, 1, 5, 8, tzinfo=UTC)


def make_records(n: int, streams: int, start: int = 0, seed: int = 1) -> list[dict[str, Any]]:
    g = np.random.default_rng(seed + start)
    values = g.normal(2.0, 0.3, size=(n, streams - 1)).round(4)
    return [
        {
            "record_id": uuid.uuid4().hex,
            "deployment": DEPLOYMENT,
            "acquired_at": (T0 + timedelta(seconds=60 * (start + i))).isoformat(),
            "inferred_at": (T0 + timedelta(seconds=60 * (start + i) + 20)).isoformat(),
            "features": {f"f{j:02d}": float(values[i, j]) for j in range(streams - 1)},
            "outputs": {"positive": bool(g.random() < 0.3)},
        }
        for i in range(n)
    ]


def monitoring(streams: int) -> dict[str, Any]:
    specs = [{"field": f"features.f{j:02d}", "kind": "numeric"} for j in range(streams - 1)]
    specs.append({"field": "outputs.positive", "kind": "binary"})
    return {"streams": specs, "reference_size": 500, "studies_per_day": 20}


def prepare(url: str, streams: int) -> Any:
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
            monitoring=monitoring(streams),
        )
    return engine


def ingest(engine: Any, records: list[dict[str, Any]]) -> float:
    principal = Principal("bench", Role.PROBE, "site-a")
    t = time.perf_counter()
    for i in range(0, len(records), 1000):
        with session_scope(engine) as s:
            ingest_records(s, records[i : i + 1000], principal, max_batch=1000)
    return len(records) / (time.perf_counter() - t)


def lock_holds(engine: Any) -> tuple[list[float], Any]:
    """Seconds from a pass's lock statement (UPDATE deployment) to its commit, per chunk."""
    holds: list[float] = []
    start: list[float] = []

    def before(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE DEPLOYMENT") and not start:
            start.append(time.perf_counter())

    def committed(_conn: Any) -> None:
        if start:
            holds.append(time.perf_counter() - start.pop())

    sa.event.listen(engine, "before_cursor_execute", before)
    sa.event.listen(engine, "commit", committed)

    def remove() -> None:
        sa.event.remove(engine, "before_cursor_execute", before)
        sa.event.remove(engine, "commit", committed)

    return holds, remove


def run_backend(name: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"backend": name, "passes": []}
    records = make_records(args.records, args.streams)
    for batch in args.batch:
        engine = prepare(
            url if name == "postgresql" else url.replace(".db", f"-{batch}.db"), args.streams
        )
        if name == "postgresql":
            with engine.begin() as conn:
                conn.execute(sa.text("TRUNCATE inference_record, detector_state, alert CASCADE"))
        fresh = [dict(r, record_id=uuid.uuid4().hex) for r in records]
        ingest_rate = ingest(engine, fresh)
        holds, remove = lock_holds(engine)
        t = time.perf_counter()
        result = detect_deployment(engine, DEPLOYMENT, batch_records=batch)
        seconds = time.perf_counter() - t
        remove()
        row: dict[str, Any] = {
            "batch_records": batch,
            "records": result.records,
            "ingest_records_per_s": round(ingest_rate),
            "detect_records_per_s": round(result.records / seconds),
            "detect_over_ingest": round(result.records / seconds / ingest_rate, 2),
        }
        if name == "sqlite" and holds:
            row["write_lock_ms_median"] = round(1000 * statistics.median(holds), 1)
            row["write_lock_ms_max"] = round(1000 * max(holds), 1)
            row["chunk_ms_mean"] = round(1000 * seconds / len(holds), 1)
        out["passes"].append(row)
        print(name, row, flush=True)
        # the next records behind the whole processed history
        ingest(engine, make_records(5000, args.streams, start=args.records))
        with Session(engine) as s:
            t = time.perf_counter()
            found = len(_unprocessed_records(s, DEPLOYMENT, 5000))
            out.setdefault("next_5000_behind_history_ms", []).append(
                {
                    "processed": args.records,
                    "found": found,
                    "ms": round(1000 * (time.perf_counter() - t), 1),
                }
            )
        engine.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--streams", type=int, default=30)
    parser.add_argument("--batch", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--postgres-url", default=os.environ.get("PHASE4_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    results: dict[str, Any] = {
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version()},
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "records": args.records,
        "streams": args.streams,
        "backends": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        results["backends"].append(run_backend("sqlite", sqlite_url(Path(tmp) / "b.db"), args))
    if args.postgres_url:
        name = f"phase4_bench_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            url = sa.make_url(args.postgres_url).set(database=name)
            results["backends"].append(
                run_backend("postgresql", url.render_as_string(hide_password=False), args)
            )
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    path = Path(__file__).parent / "results" / "detection_throughput.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
