"""CPU time per observation of ``phase4 replay``, row by row and with numeric columns batched.

Run:  .venv/bin/python bench/replay_speed.py [--rows 200000] [--reference-size 500]
          [--keep DIR]

Two CSVs of ``--rows`` rows and 12 feature columns, written once (a timestamp every 72 minutes,
20 studies a day):
- ``mixed``: 8 numeric columns, one per reference family: normal (mean shift at 60%), lognormal
  (spread ×1.6 at 70%), normal rounded to 0.1 (a grid), Poisson counts (≤ 24 levels: discrete;
  mean 4 → 4.6 at 50%), a point mass (40% exactly 0, else lognormal), Student t₃, a gamma whose
  shape changes at 80%, a normal with 5% blank cells; 2 binary columns (5% → 8% at 60%; 20%)
  and 2 categorical (three scanners; a reconstruction that changes at 90%);
- ``numeric``: the same 8 numeric columns and 4 more (normal, uniform, Poisson(1.5),
  lognormal), no binary or categorical.

Measured on each, every figure in a fresh Python process (so the calibration caches start
cold), CPU time (``time.process_time``) and wall time:
(a) baseline: reading and parsing the CSV as replay does it: ``read_events``, the columns'
    kinds inferred, the timestamps parsed and sorted, every cell converted to its value (the
    rows kept out of the collector's full passes once read, as replay keeps them);
(b) ``replay(..., batch=False)``: every row through ``DeploymentMonitor.observe`` (the path
    before ``phase4.monitor.drift.batch``);
(c) ``replay(...)`` (batch): numeric columns fed at once once every numeric stream monitors.
(b) and (c) are timed twice in their process: cold (the detectors' calibration from the
false-alarm budget, a one-off of seconds, included) and again warm (calibration cached: the
per-observation cost). Their outputs (alarms and reference sidecar) are compared byte for byte.
An observation is one row of one stream: rows × 12. Detection = replay − baseline.
Writes bench/results/replay_speed.json.
"""

from __future__ import annotations

import argparse
import csv
import filecmp
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "replay_speed.json"
STREAMS = 12
TARGET_US = 2.0


def make_csv(path: Path, rows: int, numeric_only: bool, seed: int = 3) -> None:
    """The bench's table (see the module)."""
    g = np.random.default_rng(seed)
    n, t = rows, np.arange(rows)
    cols: dict[str, list[str]] = {}

    def num(name: str, values: np.ndarray) -> None:
        cols[name] = [repr(float(v)) for v in values]

    num("f_normal", np.round(g.normal(2.2, 0.3, n) + 0.25 * (t >= 0.6 * n), 4))
    spread = 0.4 * np.where(t >= 0.7 * n, 1.6, 1.0)
    num("f_lognormal", np.round(np.exp(g.normal(1.0, spread, n)), 4))
    num("f_grid", np.round(g.normal(12.0, 2.0, n), 1))
    num("f_count", g.poisson(np.where(t >= 0.5 * n, 4.6, 4.0), n).astype(float))
    tmtv = np.round(np.exp(g.normal(3.0, 1.0, n)), 3)
    num("f_tmtv", np.where(g.random(n) < 0.4, 0.0, tmtv))
    num("f_t3", np.round(g.standard_t(3, n), 4))
    shape = np.where(t >= 0.8 * n, g.gamma(1.0, 2.0, n) + 1.0, g.gamma(3.0, 1.0, n))
    num("f_shape", np.round(shape, 4))
    num("f_missing", np.round(g.normal(50.0, 5.0, n), 3))
    blank = g.random(n) < 0.05
    cols["f_missing"] = ["" if b else v for b, v in zip(blank, cols["f_missing"], strict=True)]
    if numeric_only:
        num("f_normal2", np.round(g.normal(0.0, 1.0, n), 4))
        num("f_uniform", np.round(g.random(n), 5))
        num("f_count2", g.poisson(1.5, n).astype(float))
        num("f_lognormal2", np.round(np.exp(g.normal(0.0, 1.0, n)), 4))
    else:
        artifact = g.random(n) < np.where(t >= 0.6 * n, 0.08, 0.05)
        cols["b_artifact"] = np.where(artifact, "1", "0").tolist()
        cols["b_flag"] = np.where(g.random(n) < 0.2, "true", "false").tolist()
        cols["c_scanner"] = g.choice(["A", "B", "C"], n, p=[0.5, 0.3, 0.2]).tolist()
        recon = np.where(t >= 0.9 * n, g.choice(["OSEM", "BSREM"], n), "OSEM")
        cols["c_recon"] = recon.tolist()
    assert len(cols) == STREAMS
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    names = list(cols)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", *names])
        for i in range(n):
            stamp = (t0 + timedelta(minutes=72 * i)).isoformat()
            w.writerow([stamp, *(cols[c][i] for c in names)])


def _timed(fn: Any) -> dict[str, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    return {"cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall}


def child(mode: str, events: Path, out: Path, reference_size: int) -> dict[str, Any]:
    """One measurement in this (fresh) process."""
    from phase4.monitor.surveillance import replay as rp

    if mode == "baseline":

        def parse() -> None:
            columns, rows = rp.read_events(events)
            gc.freeze()  # as replay does once the table is read
            kinds = {c: rp.infer_kind([r.get(c) or "" for r in rows]) for c in columns[1:]}
            stamped = [(rp._parse_time(r["timestamp"] or "", i), i, r) for i, r in enumerate(rows)]
            stamped.sort(key=lambda t: t[0])
            for _ in rp._records(stamped, kinds):
                pass
            gc.unfreeze()

        return {"baseline": _timed(parse)}

    def run() -> None:
        rp.replay(
            events,
            out,
            reference_size=reference_size,
            studies_per_day=20.0,
            false_alarms_per_year=1.0,
            batch=mode == "batch",
        )

    return {"cold": _timed(run), "warm": _timed(run)}


def measure(events: Path, out_dir: Path, reference_size: int, rows: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for mode in ("baseline", "streaming", "batch"):
        out = out_dir / f"{events.stem}-{mode}.jsonl"
        done = subprocess.run(
            [sys.executable, __file__, "--child", mode, str(events), str(out), str(reference_size)],
            check=True,
            capture_output=True,
            text=True,
        )
        figures[mode] = json.loads(done.stdout)
        print(f"  {mode}: {figures[mode]}", flush=True)
    same = filecmp.cmp(
        out_dir / f"{events.stem}-streaming.jsonl", out_dir / f"{events.stem}-batch.jsonl", False
    ) and filecmp.cmp(
        out_dir / f"{events.stem}-streaming.reference.json",
        out_dir / f"{events.stem}-batch.reference.json",
        False,
    )
    alarms = sum(1 for _ in (out_dir / f"{events.stem}-batch.jsonl").open())
    obs = rows * STREAMS
    base = figures["baseline"]["baseline"]

    def per_obs(seconds: float) -> float:
        return seconds / obs * 1e6

    table: dict[str, Any] = {
        "observations": obs,
        "alarms_and_notices": alarms,
        "identical_outputs": same,
        "baseline_us": per_obs(base["cpu_s"]),
        "baseline_wall_us": per_obs(base["wall_s"]),
    }
    for mode in ("streaming", "batch"):
        for when in ("cold", "warm"):
            cpu = figures[mode][when]["cpu_s"]
            table[f"{mode}_{when}"] = {
                "total_us": per_obs(cpu),
                "total_wall_us": per_obs(figures[mode][when]["wall_s"]),
                "detection_us": per_obs(cpu - base["cpu_s"]),
                "x_baseline": cpu / base["cpu_s"],
            }
    table["speed_up_warm"] = (
        figures["streaming"]["warm"]["cpu_s"] / figures["batch"]["warm"]["cpu_s"]
    )
    return {"figures": figures, "per_observation": table}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--reference-size", type=int, default=500)
    ap.add_argument("--keep", type=Path, help="write the CSVs and outputs here (kept)")
    ap.add_argument(
        "--child", nargs=4, metavar=("MODE", "CSV", "OUT", "REF"), help=argparse.SUPPRESS
    )
    args = ap.parse_args()
    if args.child:
        mode, events, out, ref = args.child
        print(json.dumps(child(mode, Path(events), Path(out), int(ref))))
        return
    tmp = None if args.keep else tempfile.TemporaryDirectory()
    work = args.keep or Path(tmp.name)  # type: ignore[union-attr]
    work.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    results: dict[str, Any] = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "rows": args.rows,
        "streams": STREAMS,
        "reference_size": args.reference_size,
        "target_us": TARGET_US,
        "tables": {},
    }
    for name, numeric_only in (("mixed", False), ("numeric", True)):
        events = work / f"{name}.csv"
        make_csv(events, args.rows, numeric_only)
        print(f"{name}: {events} ({events.stat().st_size / 1e6:.1f} MB)", flush=True)
        results["tables"][name] = measure(events, work, args.reference_size, args.rows)
        print(json.dumps(results["tables"][name]["per_observation"], indent=2), flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {RESULTS}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
