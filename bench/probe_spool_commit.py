"""Cost of one spool commit (100 records) as the spool grows, against the previous spool code.

Usage: .venv/bin/python bench/probe_spool_commit.py [--rows 500000] [--baseline-root DIR]

The spool writer commits every 0.1 s; during a long monitor outage the spool holds up to
``spool_max_records`` (1,000,000 by default) rows. Times ``Spool.append`` of 100 wire records
into a spool already holding ``--rows`` rows, for this checkout and, with ``--baseline-root``
(a directory holding an older ``phase4/probes/``, e.g. from ``git archive``), for that one in the
same
run. Prints the median of 20 commits for each.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
BODY = '{"features":{"injected_activity_mbq":250.0,"uptake_time_min":62.0}}' * 4
COMMITS = 20


def load_spool(root: Path) -> tuple[ModuleType, ModuleType]:
    for name in [n for n in sys.modules if n == "phase4.probes" or n.startswith("phase4.probes.")]:
        del sys.modules[name]
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module("phase4.probes.spool"), importlib.import_module(
            "phase4.probes.capture"
        )
    finally:
        sys.path.remove(str(root))


def median_commit_ms(root: Path, rows: int, workdir: Path) -> float:
    spool_module, capture = load_spool(root)
    path = workdir / f"{abs(hash(str(root)))}.sqlite"
    spool = spool_module.Spool(path, max_records=2_000_000)
    for start in range(0, rows, 10_000):
        spool.append([capture.Pending(f"{i:032x}", BODY) for i in range(start, start + 10_000)])
    durations_ms = []
    for k in range(COMMITS):
        items = [capture.Pending(f"{rows + k * 100 + i:032x}", BODY) for i in range(100)]
        started = time.perf_counter()
        spool.append(items)
        durations_ms.append((time.perf_counter() - started) * 1000)
    spool.close()
    return statistics.median(durations_ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--baseline-root", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="probe-spool-commit-") as tmp:
        current = median_commit_ms(ROOT, args.rows, Path(tmp))
        print(f"nproc {os.cpu_count()}; spool holding {args.rows:,} rows; median of {COMMITS}")
        print(f"this checkout: {current:.2f} ms per 100-record commit")
        if args.baseline_root is not None:
            baseline = median_commit_ms(args.baseline_root, args.rows, Path(tmp))
            print(f"baseline ({args.baseline_root}): {baseline:.2f} ms per 100-record commit")
            print(f"baseline / this checkout: {baseline / current:.1f}x")


if __name__ == "__main__":
    main()
