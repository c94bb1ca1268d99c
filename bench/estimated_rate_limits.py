"""What a Bernoulli CUSUM can do when p0 comes from the reference: the AI false-positive rise.

Run:  .venv/bin/python bench/estimated_rate_limits.py [--jobs 2]

The oracle of bench/detection_delay.py knows p0 = 10% exactly. phase4 estimates it from its
reference: at least 500 studies and at least 50 events (the product's rule when this bound was
recorded; ``--min-events``),
so p0 is known to about ±13% of itself, a quarter of the 50% rise to detect. To keep its
promise ("at most F false alarms a year"), a chart built on an estimated p0 must hold the
*expected* false-alarm rate over what the true p0 may be (phase4.monitor.drift.arl.
calibrate_bernoulli_cusum_uncertain), and that costs delay.

This script computes, with no simulation, the expected zero-state delay of every Bernoulli
CUSUM of that kind: for each possible reference (N studies, X events) under the product's
stopping rule, the chart designed for the product's p̂0 = (X + ½)/(N + 1) → p1 = ratio · p̂0
with the threshold that holds the expected rate at 1/ARL0, and its exact ARL (Markov chain) at
the true rate after the change, weighted by the reference's probability. The best design ratio
gives the least delay any Bernoulli CUSUM built on this reference can have while keeping the
promise, against the oracle's exact ARL at the same rates.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from dataclasses import dataclass
from pathlib import Path

from scipy import stats

RESULTS = Path(__file__).resolve().parent / "results" / "estimated_rate_limits.json"


@dataclass(frozen=True)
class ReferenceOutcome:
    studies: int
    events: int
    probability: float


def reference_outcomes(
    p0: float, min_studies: int, min_events: int, tail: float = 1e-7, cap_factor: int | None = None
) -> list[ReferenceOutcome]:
    """The references the product's stopping rule can end with and their probabilities: at
    ``min_studies`` studies if they hold at least ``min_events`` events, else at the study that
    brings the ``min_events``-th event, or at ``cap_factor`` (default: the product's) x
    ``min_studies`` studies with whatever events they hold (Stream._reference_complete)."""
    from phase4.monitor.drift.streams import BINARY_REFERENCE_CAP

    cap = (cap_factor or BINARY_REFERENCE_CAP) * min_studies
    out = [
        ReferenceOutcome(min_studies, x, float(stats.binom.pmf(x, min_studies, p0)))
        for x in range(min_events, min_studies + 1)
    ]
    out = [o for o in out if o.probability > tail]
    # the min_events-th event at study n: a negative binomial (failures before it = n - events)
    nb = stats.nbinom(min_events, p0)
    for n in range(min_studies + 1, cap + 1):
        prob = float(nb.pmf(n - min_events))
        if prob > tail:
            out.append(ReferenceOutcome(n, min_events, prob))
        elif n > min_events / p0:  # past the mode: the rest is negligible
            break
    # fewer than min_events events in all cap studies: the cap ends the reference
    out += [
        ReferenceOutcome(cap, x, prob)
        for x in range(min_events)
        if (prob := float(stats.binom.pmf(x, cap, p0))) > tail
    ]
    total = sum(o.probability for o in out)
    return [ReferenceOutcome(o.studies, o.events, o.probability / total) for o in out]


def _delay_task(args: tuple[ReferenceOutcome, float, float, float, float]) -> tuple[float, float]:
    """(zero-state ARL at p_after, in-control ARL at the true p0) for one reference."""
    from phase4.monitor.drift.arl import bernoulli_cusum_arl, calibrate_bernoulli_cusum_uncertain
    from phase4.monitor.drift.reference import RateReference
    from phase4.monitor.drift.streams import designed_p1

    ref, ratio, arl0, p0_true, p_after = args
    p_hat = RateReference(ref.studies, ref.events).rate  # the product's estimate of p0
    p1 = designed_p1(p_hat, ratio)
    d = calibrate_bernoulli_cusum_uncertain(p_hat, p1, arl0, (ref.studies, ref.events))
    return (
        bernoulli_cusum_arl(d.up, d.down, d.h, p_after),
        bernoulli_cusum_arl(d.up, d.down, d.h, p0_true),
    )


def main() -> None:
    from phase4.monitor.drift.arl import bernoulli_cusum_arl, calibrate_bernoulli_cusum
    from phase4.monitor.drift.streams import MonitorConfig

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--p0", type=float, default=0.10)
    ap.add_argument("--p-after", type=float, default=0.15)
    ap.add_argument("--arl0", type=float, default=2000.0)
    ap.add_argument("--ratios", type=float, nargs="*", default=[1.25, 1.5, 1.75, 2.0, 2.5])
    ap.add_argument("--min-studies", type=int, help="reference size (default: the product's)")
    ap.add_argument(
        "--min-events",
        type=int,
        default=50,
        help="events the reference waits for (default 50, the product's rule when the bound was "
        "recorded; the product now starts at its size and grows, phase4.monitor.drift.growth)",
    )
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    fields = MonitorConfig.__dataclass_fields__  # the product's defaults
    min_studies = args.min_studies or int(fields["reference_size"].default)  # type: ignore[arg-type]
    min_events = args.min_events
    t0 = time.perf_counter()
    outcomes = reference_outcomes(args.p0, min_studies, min_events)
    oracle = calibrate_bernoulli_cusum(args.p0, args.p_after, args.arl0)
    oracle_delay = bernoulli_cusum_arl(oracle.up, oracle.down, oracle.h, args.p_after)
    rows = []
    with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
        for ratio in args.ratios:
            tasks = [(o, ratio, args.arl0, args.p0, args.p_after) for o in outcomes]
            res = pool.map(_delay_task, tasks, chunksize=8)
            w = [o.probability for o in outcomes]
            delay = sum(wi * d for wi, (d, _) in zip(w, res, strict=True))
            rate = sum(wi / ic for wi, (_, ic) in zip(w, res, strict=True))
            rows.append(
                {
                    "design_ratio": ratio,
                    "expected_zero_state_delay": delay,
                    "ratio_to_oracle": delay / oracle_delay,
                    "expected_in_control_rate_x_arl0": rate * args.arl0,
                }
            )
            print(
                f"  p1 = {ratio:g}·p̂0: expected delay {delay:.1f} ({delay / oracle_delay:.2f}x "
                f"the oracle), expected false-alarm rate {rate * args.arl0:.2f} x 1/ARL0",
                flush=True,
            )
    best = min(rows, key=lambda r: r["expected_zero_state_delay"])
    lines = [
        f"Reference: at least {min_studies} studies and {min_events} events at p0 = "
        f"{args.p0:g} ({len(outcomes)} possible references); ARL0 = {args.arl0:,.0f}; "
        f"rise to {args.p_after:g}; oracle (p0 and p1 known) zero-state delay "
        f"{oracle_delay:.1f}.",
        "",
        "| p1 design | expected delay | ÷ oracle | expected false-alarm rate × ARL0 |",
        "|---|---:|---:|---:|",
    ] + [
        f"| {r['design_ratio']:g}·p̂0 | {r['expected_zero_state_delay']:.1f} | "
        f"{r['ratio_to_oracle']:.2f} | {r['expected_in_control_rate_x_arl0']:.2f} |"
        for r in rows
    ]
    print("\n".join(lines))
    print(
        f"\nbest: p1 = {best['design_ratio']:g}·p̂0, {best['ratio_to_oracle']:.2f}x the oracle"
        f" ({time.perf_counter() - t0:.0f} s)"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "p0": args.p0,
                "p_after": args.p_after,
                "arl0": args.arl0,
                "reference": {"min_studies": min_studies, "min_events": min_events},
                "references_considered": len(outcomes),
                "oracle_zero_state_delay": oracle_delay,
                "designs": rows,
                "markdown": "\n".join(lines),
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
