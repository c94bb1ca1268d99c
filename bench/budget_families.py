"""Does the false-alarm budget hold whatever the distribution? In-control replay by family.

Run:  .venv/bin/python bench/budget_families.py [--streams 40] [--rows 2500] [--arl0 500]
      [--families normal,lognormal,...] [--json out.json]

phase4 promises a false-alarm *rate*: a stream's detectors are calibrated so that, on in-control
data, they alarm once per ARL0 observations on average (docs/STATISTICS.md, "The false-alarm
budget"), for any distribution, because numeric values are first mapped to normal scores
through the stream's frozen reference, binary streams are charted against their reference rate
and categorical ones against their reference counts. This bench checks the promise family by
family: for each family it replays ``streams`` independent stationary streams, each through the
real code (``phase4.monitor.drift.streams.DeploymentMonitor`` with one stream, its reference the
first ``reference_size`` values, frozen, then ``rows`` monitored values, exactly as
``phase4 replay`` feeds a deployment), counts the statistical alarms (new-category notices are
not alarms and take no budget) and compares the count with the budget's expectation

    expected = Σ over streams of (monitored observations) / ARL0_stream

where ARL0_stream is the stream's own share (``budget.arl0`` in its state), set here by
studies_per_day = ARL0 / 365 and one false alarm a year on a one-stream deployment. A small
ARL0 (500) makes the run take minutes while the detectors sit where the product's calibration
puts them (a reference of 500 against an ARL0 of 500 is a harder case for the reference's own
estimation error than a deployment's ~10⁴: if anything this over-states the reference's cost).

The count of alarms is a sum over streams whose references differ; the ±20% target needs the
expected count large enough that chance alone rarely leaves it: at 200 expected, Poisson
scatter alone is ±7% (1 SD), and references add their own spread (a stream's rate depends on
its reference; the calibration holds the *average* over references).

Families (all stationary; seeds fixed per family):
normal N(10, 2); lognormal (σ_log 0.5); exponential; Student t₃; Poisson counts (mean 20, about
30 levels: the continuous path with ties); bimodal (N(−2, 1) and N(2, 1), equal shares); normal
rounded to 0.1 (N(10, 1): about 60 levels, the central ones point masses); normal rounded to
integers (N(50, 5), about 35 levels); binary at 1%, 5%, 30%; categorical (five categories,
shares 40/30/15/10/5%).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from phase4.monitor.drift.streams import DeploymentMonitor, MonitorConfig, StreamSpec

Draw = Callable[[np.random.Generator, int], np.ndarray]

CATEGORIES = np.array(["a", "b", "c", "d", "e"])
CATEGORY_SHARES = np.array([0.40, 0.30, 0.15, 0.10, 0.05])

FAMILIES: dict[str, tuple[str, Draw]] = {
    "normal": ("numeric", lambda g, n: g.normal(10.0, 2.0, n)),
    "lognormal": ("numeric", lambda g, n: g.lognormal(1.0, 0.5, n)),
    "exponential": ("numeric", lambda g, n: g.exponential(1.0, n)),
    "student_t3": ("numeric", lambda g, n: g.standard_t(3, n)),
    "poisson": ("numeric", lambda g, n: g.poisson(20.0, n).astype(float)),
    "bimodal": (
        "numeric",
        lambda g, n: g.normal(0.0, 1.0, n) + np.where(g.random(n) < 0.5, -2.0, 2.0),
    ),
    "rounded_0.1": ("numeric", lambda g, n: np.round(g.normal(10.0, 1.0, n), 1)),
    "rounded_int": ("numeric", lambda g, n: np.round(g.normal(50.0, 5.0, n))),
    "binary_1%": ("binary", lambda g, n: g.random(n) < 0.01),
    "binary_5%": ("binary", lambda g, n: g.random(n) < 0.05),
    "binary_30%": ("binary", lambda g, n: g.random(n) < 0.30),
    "categorical": ("categorical", lambda g, n: g.choice(CATEGORIES, n, p=CATEGORY_SHARES)),
}


def replay_family(
    family: str, streams: int, rows: int, arl0: float, reference_size: int, seed: int
) -> dict[str, object]:
    """Replay ``streams`` in-control streams of ``family``; count alarms against the budget."""
    kind, draw = FAMILIES[family]
    config = MonitorConfig(
        streams=(StreamSpec("v", kind),),
        studies_per_day=arl0 / 365.0,
        false_alarms_per_year=1.0,
        reference_size=reference_size,
    )
    rng = np.random.default_rng([seed, list(FAMILIES).index(family)])
    alarms: dict[str, int] = {}
    expected = 0.0
    monitored = 0
    for _ in range(streams):
        monitor = DeploymentMonitor.new(config)
        stream = monitor.streams["v"]
        # a binary reference waits for 50 events: draw enough to fill it, then `rows` more
        values = draw(rng, 200_000 if kind == "binary" else reference_size).tolist()
        i = 0
        while not stream.monitoring:
            monitor.observe({"v": values[i]}, "t")
            i += 1
        assert stream.budget is not None
        ours = draw(rng, rows).tolist()
        for v in ours:
            for a in monitor.observe({"v": v}, "t"):
                if a.alarm.kind == "alarm":
                    alarms[a.alarm.detector] = alarms.get(a.alarm.detector, 0) + 1
        expected += rows / float(stream.budget["arl0"])
        monitored += rows
    total = sum(alarms.values())
    return {
        "family": family,
        "kind": kind,
        "streams": streams,
        "monitored": monitored,
        "expected": expected,
        "alarms": total,
        "ratio": total / expected,
        "by_detector": alarms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=40)
    parser.add_argument("--rows", type=int, default=2500)
    parser.add_argument("--arl0", type=float, default=500.0)
    parser.add_argument("--reference-size", type=int, default=500)
    parser.add_argument("--seed", type=int, default=20261205)
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    print(
        f"# budget by family: {args.streams} streams x {args.rows} monitored rows, "
        f"stream ARL0 {args.arl0:g}, reference {args.reference_size}, seed {args.seed}, "
        f"commit {commit}, {platform.node()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    print("| family | expected | alarms | alarms / expected | within ±20% | by detector |")
    print("|---|---:|---:|---:|---|---|")
    results = []
    for family in args.families.split(","):
        t0 = time.perf_counter()
        r = replay_family(
            family, args.streams, args.rows, args.arl0, args.reference_size, args.seed
        )
        r["seconds"] = round(time.perf_counter() - t0, 1)
        results.append(r)
        ratio = float(r["ratio"])  # type: ignore[arg-type]
        by = ", ".join(f"{k} {v}" for k, v in sorted(r["by_detector"].items()))  # type: ignore[attr-defined]
        print(
            f"| {family} | {r['expected']:.0f} | {r['alarms']} | {ratio:.2f} | "
            f"{'yes' if abs(ratio - 1) <= 0.2 else 'no'} | {by} |",
            flush=True,
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "args": vars(args) | {"json": str(args.json)},
                    "commit": commit,
                    "results": results,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
