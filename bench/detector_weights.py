"""How to split a numeric stream's false-alarm budget between its detectors: delays by weights.

Run:  .venv/bin/python bench/detector_weights.py [--runs 4000] [--arl0 2000]

A numeric stream's detectors (mean CUSUM, EWMA, spread CUSUM, windowed KS) share its rate by
fixed weights (``phase4.monitor.drift.streams.DETECTOR_WEIGHTS``). Each candidate split is
calibrated exactly as the product calibrates (``Cusum.calibrated`` and friends, references of
500, the stream's ARL0 divided by each weight), and run on normal scores after a change at
time 0 (zero-state delay: observations up to and including the first alarm of any detector),
the scores capped at the 500-value reference's ±3.09 as the product's are. The reference is
known here (scores exactly N(0, 1) before the change), so this compares designs, not
references; ``bench/detection_delay.py`` measures the product with estimated references.

Changes: mean shifts of 0.5, 0.75, 1.5 and 4 SD; spread ×1.5 and ÷1.5 with the mean unchanged;
a change of shape with mean and SD unchanged (scores become standardised χ²₄: skewed). Oracles:
the two-sided mean CUSUM with k = δ/2, and the upper scale CUSUM on the exact log-likelihood
ratio of N(0, 1.5²) against N(0, 1), both calibrated to the stream's ARL0 and uncapped. The
vectorised charts below are the detectors' recursions, written for many runs at once.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from phase4.monitor.drift.arl import (
    ScaleCusumDesign,
    calibrate_cusum_h,
    calibrate_scale_cusum_side,
)
from phase4.monitor.drift.detectors import Cusum, Ewma, SpreadCusum, WindowedKS
from phase4.monitor.drift.detectors.spread import score_cap

REFERENCE = 500
CANDIDATES: dict[str, dict[str, float]] = {
    "0.70/0.25/0/0.05 (before)": {"cusum": 0.7, "ewma": 0.25, "spread": 0.0, "ks": 0.05},
    "0.60/0.20/0.15/0.05, up ½": {"cusum": 0.6, "ewma": 0.2, "spread": 0.15, "ks": 0.05, "up": 0.5},
    "0.55/0.20/0.20/0.05, up 0.8": {"cusum": 0.55, "ewma": 0.2, "spread": 0.2, "ks": 0.05},
    "0.50/0.20/0.25/0.05, up 0.8": {"cusum": 0.5, "ewma": 0.2, "spread": 0.25, "ks": 0.05},
    "0.45/0.20/0.30/0.05, up 0.8": {"cusum": 0.45, "ewma": 0.2, "spread": 0.3, "ks": 0.05},
    "0.50/0.15/0.30/0.05, up 0.8": {"cusum": 0.5, "ewma": 0.15, "spread": 0.3, "ks": 0.05},
    "0.50/0.20/0.30/0, up 0.8": {"cusum": 0.5, "ewma": 0.2, "spread": 0.3, "ks": 0.0},
}


def draw(change: str, rng: np.random.Generator, size: int) -> np.ndarray:
    if change.startswith("mean "):
        return rng.normal(float(change.split()[1]), 1.0, size)
    if change == "spread x1.5":
        return rng.normal(0.0, 1.5, size)
    if change == "spread /1.5":
        return rng.normal(0.0, 1 / 1.5, size)
    if change == "shape":
        return (rng.chisquare(4, size) - 4) / math.sqrt(8)
    raise ValueError(change)


CHANGES = ["mean 0.5", "mean 0.75", "mean 1.5", "mean 4", "spread x1.5", "spread /1.5", "shape"]


def delays(
    weights: dict[str, float], change: str, runs: int, arl0: float, seed: int, horizon: int
) -> np.ndarray:
    cap = float(score_cap(REFERENCE) or math.inf)
    cusum = Cusum.calibrated(arl0 / weights["cusum"], 0.25, REFERENCE)
    ewma = Ewma.calibrated(arl0 / weights["ewma"], 0.2, REFERENCE)
    spread = (
        SpreadCusum.calibrated(arl0 / weights["spread"], REFERENCE, up_share=weights.get("up", 0.8))
        if weights["spread"]
        else None
    )
    ks = WindowedKS.calibrated(arl0 / max(weights["ks"], 1e-9), REFERENCE, 50)
    rng = np.random.default_rng(seed)
    hi = np.zeros(runs)
    lo = np.zeros(runs)
    ew = np.zeros(runs)
    su = np.zeros(runs)
    sd = np.zeros(runs)
    buf = np.zeros((runs, ks.window))
    out = np.full(runs, horizon)
    active = np.arange(runs)
    limit = ewma.control_limit
    if spread is not None:
        r2 = spread.ratio**2
        a_up, k_up = (1 - 1 / r2) / 2, 2 * math.log(spread.ratio) / (1 - 1 / r2)
        a_dn = (r2 - 1) / 2 * spread.down_scale
        k_dn = 2 * math.log(spread.ratio) / (r2 - 1)
    grid = np.arange(1, ks.window + 1) / ks.window
    for t in range(1, horizon + 1):
        if not active.size:
            break
        z = np.clip(draw(change, rng, active.size), -cap, cap)
        h_ = np.maximum(0.0, hi[active] + z - cusum.k)
        l_ = np.maximum(0.0, lo[active] - z - cusum.k)
        e_ = ewma.lam * z + (1 - ewma.lam) * ew[active]
        fired = (h_ > cusum.h) | (l_ > cusum.h) | (np.abs(e_) > limit)
        hi[active], lo[active], ew[active] = h_, l_, e_
        if spread is not None:
            y = z * z
            u_ = np.maximum(0.0, su[active] + a_up * (y - k_up))
            d_ = np.maximum(0.0, sd[active] + a_dn * (k_dn - y))
            su[active], sd[active] = u_, d_
            fired |= (u_ > spread.h) | (d_ > spread.h)
        slot = (t - 1) % ks.window
        buf[active, slot] = 0.5 * np.array([math.erfc(-v / math.sqrt(2)) for v in z])
        if slot == ks.window - 1:
            u = np.sort(np.round(buf[active], 5), axis=1)
            d = np.maximum(grid - u, u - (grid - 1 / ks.window)).max(axis=1)
            fired |= d > ks.critical_d
        out[active[fired]] = t
        active = active[~fired]
    return out


def oracle_delays(change: str, runs: int, arl0: float, seed: int, horizon: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.full(runs, horizon)
    active = np.arange(runs)
    if change.startswith("mean "):
        delta = float(change.split()[1])
        k = delta / 2
        h = calibrate_cusum_h(arl0, k)
        s_hi = np.zeros(runs)
        s_lo = np.zeros(runs)
        for t in range(1, horizon + 1):
            if not active.size:
                break
            z = draw(change, rng, active.size)
            a = np.maximum(0.0, s_hi[active] + z - k)
            b = np.maximum(0.0, s_lo[active] - z - k)
            s_hi[active], s_lo[active] = a, b
            fired = (a > h) | (b > h)
            out[active[fired]] = t
            active = active[~fired]
        return out
    if change != "spread x1.5":
        return np.full(runs, np.nan)
    design = ScaleCusumDesign(1.5, None)
    h = calibrate_scale_cusum_side(design, "up", arl0, None)
    a_up, k_up = design.up
    s = np.zeros(runs)
    for t in range(1, horizon + 1):
        if not active.size:
            break
        z = draw(change, rng, active.size)
        s[active] = np.maximum(0.0, s[active] + a_up * (z * z - k_up))
        fired = s[active] > h
        out[active[fired]] = t
        active = active[~fired]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=4000)
    parser.add_argument("--arl0", type=float, default=2000.0)
    parser.add_argument("--horizon", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=20261205)
    args = parser.parse_args()
    t0 = time.perf_counter()
    oracle = {
        c: float(oracle_delays(c, args.runs, args.arl0, args.seed, args.horizon).mean())
        for c in CHANGES
    }
    print(
        f"# zero-state mean delay, {args.runs} runs, stream ARL0 {args.arl0:g}, "
        f"reference {REFERENCE} (thresholds), seed {args.seed}; in brackets: / oracle"
    )
    print("| weights CUSUM/EWMA/spread/KS | " + " | ".join(CHANGES) + " |")
    print("|---|" + "---:|" * len(CHANGES))
    print(
        "| oracle | "
        + " | ".join("–" if math.isnan(oracle[c]) else f"{oracle[c]:.1f}" for c in CHANGES)
        + " |"
    )
    for label, weights in CANDIDATES.items():
        cells = []
        for i, c in enumerate(CHANGES):
            d = float(delays(weights, c, args.runs, args.arl0, args.seed + i, args.horizon).mean())
            cells.append(f"{d:.1f}" + ("" if math.isnan(oracle[c]) else f" ({d / oracle[c]:.2f})"))
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)
    print(f"# {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
