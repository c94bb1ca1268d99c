"""Profile of detection passes as a worker runs them under steady ingest: many deployments, a
few records each per pass, so each chunk is small and its fixed costs dominate.

Run:  .venv/bin/python bench/detection_passes.py --postgres-url URL [--deployments 40]
          [--streams 30] [--prefill 480] [--rounds 30] [--per-round 5] [--no-cache] [--profile]

Each deployment gets ``--prefill`` records, analysed by one unprofiled pass; then ``--rounds``
times: ``--per-round`` more records per deployment (through ``phase4.monitor.domain.ingest``),
then one claiming pass over every deployment (``detect_all(claim=True)``, as ``phase4 detect
--loop`` runs). With the default prefill the 500-value references complete during the rounds,
so both collecting and monitoring chunks are timed. The passes keep the deployments' monitors
between chunks as a worker does (``MonitorCache``), unless ``--no-cache`` (or the code under
test predates it: run with ``PYTHONPATH`` set to an older checkout to time that). Prints
records/s of the rounds' passes and, with ``--profile``, the top of cProfile's cumulative and
own-time tables.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))
from soak_workers import prepare, records

from phase4.monitor.domain.ingest import ingest_records
from phase4.monitor.store.auth import Principal, Role
from phase4.monitor.store.db import session_scope
from phase4.monitor.surveillance import detection


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres-url", required=True)
    parser.add_argument("--deployments", type=int, default=40)
    parser.add_argument("--streams", type=int, default=30)
    parser.add_argument("--prefill", type=int, default=480)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--per-round", type=int, default=5)
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    d = args.deployments
    data = records(d, args.streams, d * (args.prefill + args.rounds * args.per_round))
    admin = sa.create_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
    name = f"phase4_passes_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        url = sa.make_url(args.postgres_url).set(database=name)
        engine = prepare(url.render_as_string(hide_password=False), d, args.streams)
        principal = Principal("bench", Role.ADMIN, None)

        def ingest(batch: list) -> None:
            with session_scope(engine) as s:
                ingest_records(s, batch, principal, max_batch=len(batch))

        kept = getattr(detection, "MonitorCache", None)
        cache = kept(max(d, 1)) if kept is not None and not args.no_cache else None

        def detect() -> list:
            if cache is None:
                return detection.detect_all(engine, claim=True)
            return detection.detect_all(engine, claim=True, cache=cache)

        first = d * args.prefill
        for i in range(0, first, 2000):
            ingest(data[i : min(i + 2000, first)])
        detect()
        profiler = cProfile.Profile()
        busy = 0.0
        analysed = 0
        step = d * args.per_round
        for r in range(args.rounds):
            ingest(data[first + r * step : first + (r + 1) * step])
            t = time.perf_counter()
            if args.profile:
                profiler.enable()
            results = detect()
            if args.profile:
                profiler.disable()
            busy += time.perf_counter() - t
            analysed += sum(x.records for x in results)
        engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    print(
        f"{analysed} records in {busy:.2f} s of passes: {analysed / busy:.0f} records/s "
        f"({d} deployments x {args.streams} streams, {args.per_round} records a chunk, "
        f"{'monitors kept' if cache is not None else 'state read every chunk'})"
    )
    if cache is not None:
        print(f"kept monitors used {cache.hits} times, state read {cache.misses} times")
    if args.profile:
        for key in ("cumulative", "tottime"):
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats(key).print_stats(35)
            print(out.getvalue())


if __name__ == "__main__":
    main()
