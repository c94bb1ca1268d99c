"""Cost of a /metrics scrape on a large store: ≥ 10,000 series, read at scrape time.

Run:  .venv/bin/python bench/metrics_scrape.py [--deployments 60] [--devices 40] [--scrapes 30]

Populates a SQLite store: deployments with twelve numeric feature streams each (the detector
state of one deployment, produced by the real drift engine, is copied to every deployment),
records, open alerts, phantom QC of many scanners with tolerances, and every deployment's probe
health and latency histogram (the defaults give a little over 10,000 series). Then times
``registry.exposition()`` (what GET /metrics serves: the store's families written directly,
then ``generate_latest`` of the in-process metrics) "cold" (the first scrape, which parses and
renders every detector state) and "warm" (the steady state: states parsed and rendered only when
they change), GET /metrics through the ASGI app, and, for comparison, ``generate_latest`` of the
same registry (the same store reads, every series through prometheus_client's metric objects and
formatter: the straightforward way to serve it). Checks that both give the same samples. Baseline in
the same run: ``generate_latest`` of a registry holding only the in-process counters (no store),
scaled per series. Target: under 100 ms per warm scrape of at least 10,000 series.
Writes bench/results/metrics_scrape.json and prints a markdown row for docs/BENCHMARKS.md.
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
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from phase4.monitor.api.metrics import IngestMetrics, MetricsRegistry, ProbeHealthCollector
from phase4.monitor.core.settings import Settings, sqlite_url
from phase4.monitor.domain.registry import create_deployment
from phase4.monitor.domain.schemas import BatchResult, ItemResult, ProbeHealth
from phase4.monitor.store.db import create_db_engine, session_scope, upgrade
from phase4.monitor.store.models import (
    Alert,
    DetectorState,
    Device,
    InferenceRecord,
    PhantomResult,
    PhantomTolerance,
)
from phase4.monitor.surveillance.detection import detect_deployment
from phase4.service import create_app

FEATURES = [f"feature_{i:02d}" for i in range(12)]
T0 = datetime(2026, 1, 5, 8, tzinfo=UTC)


def _record(dep: str, i: int, g: np.random.Generator) -> dict[str, Any]:
    at = T0 + timedelta(hours=i)
    return {
        "record_id": uuid.uuid4().hex,
        "deployment_id": dep,
        "acquired_at": at,
        "inferred_at": at,
        "received_at": at,
        "features": {f: round(float(g.normal(10, 2)), 3) for f in FEATURES},
        "outputs": {"score": round(float(g.random()), 4)},
        "latency_s": float(g.lognormal(-1, 0.3)),
    }


def populate(url: str, deployments: int, records: int, devices: int) -> list[str]:
    engine = create_db_engine(url)
    g = np.random.default_rng(0)
    ids = [f"model-{i % 5}@site-{i:03d}" for i in range(deployments)]
    monitoring = {"studies_per_day": 20, "reference_size": 200, "exclude": ["latency_s"]}
    with session_scope(engine) as s:
        for i, dep in enumerate(ids):
            create_deployment(
                s,
                deployment_id=dep,
                site_id=f"site-{i:03d}",
                model_name=f"model-{i % 5}",
                model_version="1.0.0",
                actor="bench",
                monitoring=monitoring,
            )
    with engine.begin() as conn:
        for dep in ids:
            conn.execute(sa.insert(InferenceRecord), [_record(dep, i, g) for i in range(records)])
    # The real engine on one deployment; its state stands for every deployment's.
    detect_deployment(engine, ids[0])
    with engine.begin() as conn:
        state = conn.execute(
            sa.select(DetectorState.state).where(DetectorState.deployment_id == ids[0])
        ).scalar_one()
        conn.execute(
            sa.insert(DetectorState),
            [
                {
                    "deployment_id": dep,
                    "stream": "*",
                    "detector": "deployment",
                    "state": state,
                    "updated_at": T0,
                }
                for dep in ids[1:]
            ],
        )
        conn.execute(
            sa.insert(Alert),
            [
                {
                    "deployment_id": dep,
                    "stream": FEATURES[i % len(FEATURES)],
                    "cause": "drift",
                    "severity": ("warning", "critical")[i % 2],
                    "status": "open",
                    "title": "bench",
                    "evidence": {},
                    "opened_at": T0,
                }
                for i, dep in enumerate(ids)
                if i % 3 == 0
            ],
        )
    with session_scope(engine) as s:
        devs = [
            Device(
                site_id=f"site-{i % deployments:03d}", manufacturer="M", model="PET", serial=f"S{i}"
            )
            for i in range(devices)
        ]
        s.add_all(devs)
        for kind in ("flood", "nema_iq"):
            for m in range(6):
                s.add(
                    PhantomTolerance(
                        kind=kind,
                        metric=f"metric_{m}",
                        version=1,
                        lower_action=0.8,
                        lower_tolerance=0.9,
                        upper_tolerance=1.1,
                        upper_action=1.2,
                        created_by="bench",
                    )
                )
        s.flush()
        for d in devs:
            for kind in ("flood", "nema_iq"):
                for day in range(30):
                    s.add(
                        PhantomResult(
                            result_id=uuid.uuid4().hex,
                            device_id=d.id or 0,
                            kind=kind,
                            acquired_at=T0 + timedelta(days=day),
                            metrics={f"metric_{m}": float(g.normal(1, 0.05)) for m in range(6)},
                            verdicts={f"metric_{m}": "pass" for m in range(6)},
                        )
                    )
    engine.dispose()
    return ids


def _times(fn: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def _samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition but the ages (they move between two scrapes)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
        if "_age_seconds" not in s.name
    }


def _p95(xs: list[float]) -> float:
    return float(np.percentile(xs, 95))


def record_scaling(sizes: list[int], scrapes: int, added_per_scrape: int = 50) -> int:
    """Scrape cost against the size of the record table (``--record-sizes``).

    One SQLite store grows to each size in turn (10 deployments); at each size, ``scrapes``
    times: ``added_per_scrape`` records arrive, then one scrape (``StoreCollector.render``,
    the store's part of GET /metrics) is timed. Baseline in the same run, at the same size: a
    whole-table query (count, max and sum of ids), what a scrape that recounts costs. Also the
    cold scrape (a fresh collector: the one full grouping) at each size.
    """
    from sqlalchemy import insert

    from phase4.monitor.api.metrics import StoreCollector
    from phase4.monitor.store.models import InferenceRecord

    g = np.random.default_rng(3)
    deps = [f"lesion-ai@site-{i:02d}" for i in range(10)]
    rows_out = []
    with tempfile.TemporaryDirectory() as tmp:
        url = sqlite_url(Path(tmp) / "phase4.db")
        upgrade(url)
        engine = create_db_engine(url)
        with session_scope(engine) as session:
            for dep in deps:
                create_deployment(
                    session,
                    deployment_id=dep,
                    site_id=dep.split("@")[1],
                    model_name="PETLesionDetect",
                    model_version="2.1.0",
                    actor="bench",
                )
        collector = StoreCollector(engine)
        stored = 0

        def add(n: int) -> None:
            nonlocal stored
            with engine.begin() as conn:
                conn.execute(
                    insert(InferenceRecord),
                    [_record(deps[(stored + i) % len(deps)], stored + i, g) for i in range(n)],
                )
            stored += n

        for size in sorted(sizes):
            while stored < size:
                add(min(20_000, size - stored))
            t = time.perf_counter()
            StoreCollector(engine).render()
            cold_s = time.perf_counter() - t
            collector.render()
            scrape_s, whole_s = [], []
            for _ in range(scrapes):
                add(added_per_scrape)
                t = time.perf_counter()
                collector.render()
                scrape_s.append(time.perf_counter() - t)
                t = time.perf_counter()
                with engine.connect() as conn:
                    conn.exec_driver_sql(
                        "SELECT count(*), max(id), sum(id) FROM inference_record"
                    ).one()
                whole_s.append(time.perf_counter() - t)
            row = {
                "records": stored,
                "scrape_ms": 1000 * statistics.median(scrape_s),
                "whole_table_query_ms": 1000 * statistics.median(whole_s),
                "cold_scrape_ms": 1000 * cold_s,
            }
            rows_out.append(row)
            print(row, flush=True)
        engine.dispose()
    first = rows_out[0]["scrape_ms"]
    print(f"{platform.machine()}, {os.cpu_count()} CPUs; load average {os.getloadavg()}")
    print("| records | scrape ms (median) | × at the smallest | whole-table query ms | cold ms |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows_out:
        print(
            f"| {r['records']:,} | {r['scrape_ms']:.1f} | {r['scrape_ms'] / first:.2f} | "
            f"{r['whole_table_query_ms']:.1f} | {r['cold_scrape_ms']:.0f} |"
        )
    out = Path(__file__).parent / "results" / "metrics_record_scaling.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(rows_out, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deployments", type=int, default=60)
    parser.add_argument("--records", type=int, default=300, help="records per deployment")
    parser.add_argument("--devices", type=int, default=40)
    parser.add_argument("--scrapes", type=int, default=30)
    parser.add_argument(
        "--record-sizes",
        default=None,
        help="comma-separated record counts (e.g. 20000,200000,1000000): measure only how the "
        "scrape's cost follows the size of the record table",
    )
    args = parser.parse_args(argv)
    if args.record_sizes:
        return record_scaling([int(x) for x in args.record_sizes.split(",")], args.scrapes)

    with tempfile.TemporaryDirectory() as tmp:
        url = sqlite_url(Path(tmp) / "phase4.db")
        upgrade(url)
        t = time.perf_counter()
        ids = populate(url, args.deployments, args.records, args.devices)
        populate_s = time.perf_counter() - t
        engine = create_db_engine(url)
        app = create_app(Settings(database_url=url, detection_interval_s=0), engine=engine)
        registry: MetricsRegistry = app.state.metrics_registry
        ingest: IngestMetrics = app.state.ingest_metrics
        g = np.random.default_rng(1)
        for dep in ids:
            ingest.probes.remember([dep], ProbeHealth(queue_depth=0, spool_depth=3))
            for _ in range(20):
                ingest.latency.labels(dep).observe(float(g.lognormal(-1, 0.3)))
        ingest.observe(
            "records",
            BatchResult(
                created=1, duplicates=0, rejected=0, results=[ItemResult(index=0, status="created")]
            ),
        )

        cold_s = _times(registry.exposition, 1)[0]
        body = registry.exposition()
        series = sum(1 for line in body.decode().splitlines() if line and line[0] != "#")
        reference = generate_latest(registry)
        assert _samples(body) == _samples(reference), "exposition differs from generate_latest"
        warm = _times(registry.exposition, args.scrapes)
        objects = _times(lambda: generate_latest(registry), args.scrapes)
        with TestClient(app) as client:
            http = _times(lambda: client.get("/metrics").raise_for_status(), args.scrapes)

        # Baseline: only in-process metrics (no store), per series, in the same run.
        base_registry = CollectorRegistry(auto_describe=False)
        base = IngestMetrics(base_registry)
        base_registry.register(ProbeHealthCollector(base.probes))
        for dep in ids:
            base.probes.remember([dep], ProbeHealth(queue_depth=0, spool_depth=3))
            base.latency.labels(dep).observe(0.3)
        base_body = generate_latest(base_registry)
        base_series = sum(1 for ln in base_body.decode().splitlines() if ln and ln[0] != "#")
        base_times = _times(lambda: generate_latest(base_registry), args.scrapes)
        engine.dispose()

    warm_ms, http_ms = statistics.median(warm) * 1e3, statistics.median(http) * 1e3
    objects_ms = statistics.median(objects) * 1e3
    base_ms = statistics.median(base_times) * 1e3
    per_series_ratio = (warm_ms / series) / (base_ms / base_series)
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, SQLite",
        "deployments": args.deployments,
        "records": args.deployments * args.records,
        "devices": args.devices,
        "series": series,
        "bytes": len(body),
        "populate_s": round(populate_s, 1),
        "cold_ms": round(cold_s * 1e3, 1),
        "warm_median_ms": round(warm_ms, 1),
        "warm_p95_ms": round(_p95(warm) * 1e3, 1),
        "http_median_ms": round(http_ms, 1),
        "generate_latest_median_ms": round(objects_ms, 1),
        "generate_latest_p95_ms": round(_p95(objects) * 1e3, 1),
        "http_p95_ms": round(_p95(http) * 1e3, 1),
        "baseline_series": base_series,
        "baseline_median_ms": round(base_ms, 2),
        "per_series_ratio_vs_baseline": round(per_series_ratio, 2),
        "speedup_vs_generate_latest": round(objects_ms / warm_ms, 2),
        "scrapes": args.scrapes,
    }
    out = Path(__file__).parent / "results" / "metrics_scrape.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print()
    print(
        "| series | bytes | records in store | cold ms | warm median ms | warm p95 ms | "
        "GET /metrics median ms | generate_latest median ms | in-process baseline ms (series) "
        "| per-series ratio |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {series:,} | {len(body):,} | {result['records']:,} | {result['cold_ms']} | "
        f"**{result['warm_median_ms']}** | {result['warm_p95_ms']} | {result['http_median_ms']} | "
        f"{result['generate_latest_median_ms']} | {result['baseline_median_ms']} "
        f"({base_series:,}) | {per_series_ratio:.2f}× |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
