"""Peers retuned to phase4's *measured* in-control ARL on one stream, for the cells where a peer
tuned to the nominal ARL0 was faster than phase4 (docs/BENCHMARKS.md, "Against the restated
targets"): who is ahead at an equal measured false-alarm rate?

Run:  .venv/bin/python bench/peers_at_measured_arl.py --reps 100 --jobs 2 \\
          recon_suv:adwin:2879 noise:page_hinkley:3285 ...

Each cell is scenario:peer:ARL, ARL being phase4's measured in-control ARL on that scenario in
bench/detection_delay.py's run. The peer is tuned exactly as detection_delay.py tunes it, with
that ARL as the target instead of 2,000, on the same tuning seeds, then run on the same delay
seeds (100 delays; 100 fresh in-control runs, censored at 5 x ARL).
"""

import argparse
import math
import multiprocessing
import time

import detection_delay as dd  # bench/ is on sys.path when this file is run as a script
import numpy as np


def cell(args: tuple[str, str, float, int, int, int]) -> dict:
    scen_key, method, arl0, reps, tune_reps, seed = args
    t0 = time.perf_counter()
    dd.TARGET_ARL0 = arl0  # the tuning target and the in-control horizon (5 x ARL0)
    scen = dd.SCENARIOS[scen_key]
    family = scen.family if method in dd.PATH_PEERS else (scen.design or scen_key)
    tuned = dd.tune_task((method, family, tune_reps, seed))
    setting = dd.Setting(method, float(tuned["param"]), tuned["rule"])
    chunks = max(1, math.ceil(reps / 25))
    per = math.ceil(reps / chunks)
    ic: list[int | None] = []
    delays: list[int] = []
    for c in range(chunks):
        res = dd.run_task((scen_key, setting, "tuned", c, per, seed, True))
        ic += res["ic_run_lengths"]
        delays += res["delays"]
    d = np.array(delays, dtype=float)
    return {
        "scenario": scen_key,
        "method": method,
        "target_arl0": arl0,
        "param": tuned["param"],
        "tuning_arl": tuned["arl"],
        "exact": tuned["exact"],
        "note": tuned.get("note", ""),
        "in_control": dd.arl_estimate(ic, int(dd.IC_HORIZON_FACTOR * arl0)),
        "median": float(np.median(d)),
        "mean": float(d.mean()),
        "se": float(d.std(ddof=1) / math.sqrt(d.size)),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cells", nargs="+", help="scenario:peer:ARL")
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--tune-reps", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=20260105)
    args = ap.parse_args()
    jobs = []
    for c in args.cells:
        k, m, a = c.split(":")
        jobs.append((k, m, float(a), args.reps, args.tune_reps, args.seed))
    print(
        "| scenario | peer | target ARL | parameter | measured in-control ARL "
        "| median / mean ± SE |"
    )
    print("|---|---|---:|---:|---:|---:|")
    with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
        for r in pool.imap(cell, jobs):
            ic = r["in_control"]
            flag = " ‡" if r["note"] else ("" if r["exact"] else " †")
            print(
                f"| {r['scenario']} | {r['method']} | {r['target_arl0']:,.0f} | "
                f"{r['param']:.4g}{flag} | {ic['arl']:,.0f} ± {ic['se']:,.0f} | "
                f"{r['median']:.1f} / {r['mean']:.1f} ± {r['se']:.1f} | ({r['seconds']}s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
