"""Does a binary reference that grows in audited steps keep the false-alarm budget in control?

Run:  .venv/bin/python bench/growth_budget.py [--streams 100] [--rate 0.05] [--seed 11]
      [--rules none,growth,growth-release,growth-ignoring-alarms]

Each stream is a real one-stream ``DeploymentMonitor``: a 400-study reference of an event at
``--rate``, then two years in control at 30 studies a day, two false alarms a year (stream ARL0
5,475). Alarms are counted against the budget's expectation (monitored studies / ARL0). Rules:

- ``none``: the reference is the first 400 studies, frozen (the default);
- ``growth``: it grows toward 200 events (``reference_events_target``), held by an alarm and
  never released (a backtest resolves no alert);
- ``growth-release``: the same, each hold released 210 studies (a week) after the stream's
  last alarm, as a reviewer resolving a false alarm would;
- ``growth-ignoring-alarms``: growth that an alarm neither holds nor empties (it breaks the
  rule "never while the stream has an open alert, never past a change estimate"; shown as the
  unbiased reference point).

Prints each rule's alarms / expected and the mean reference rate at the end (true: ``--rate``).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from phase4.monitor.drift import growth as growth_module
from phase4.monitor.drift.streams import DeploymentMonitor, MonitorConfig, StreamSpec

PER_DAY = 30
ROWS = 730 * PER_DAY
REFERENCE = 400


def run(rule: str, streams: int, rate: float, seed: int) -> dict[str, float]:
    original = growth_module.ReferenceGrowth.on_alarm
    if rule == "growth-ignoring-alarms":
        growth_module.ReferenceGrowth.on_alarm = lambda self, at: None  # type: ignore[method-assign]
    try:
        config = MonitorConfig(
            streams=(StreamSpec("v", "binary"),),
            studies_per_day=PER_DAY,
            false_alarms_per_year=2.0,
            reference_size=REFERENCE,
            reference_events_target=0 if rule == "none" else 200,
        )
        rng = np.random.default_rng(seed)
        alarms, expected, rates = 0, 0.0, []
        for _ in range(streams):
            monitor = DeploymentMonitor.new(config)
            stream = monitor.streams["v"]
            last = None
            for i, event in enumerate((rng.random(REFERENCE + ROWS) < rate).tolist()):
                if monitor.observe({"v": event}, "t"):
                    alarms += 1
                    last = i
                held = stream.growth is not None and stream.growth.hold is not None
                if rule == "growth-release" and held and last is not None and i - last >= 210:
                    monitor.release_growth({"v"})
            assert stream.budget is not None and stream.reference is not None
            expected += ROWS / float(stream.budget["arl0"])
            rates.append(stream.reference["events"] / stream.reference["n"])
        return {"alarms": alarms, "expected": expected, "mean_rate": float(np.mean(rates))}
    finally:
        growth_module.ReferenceGrowth.on_alarm = original  # type: ignore[method-assign]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=100)
    ap.add_argument("--rate", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--rules", default="none,growth,growth-release,growth-ignoring-alarms")
    args = ap.parse_args()
    print(f"# {args.streams} streams, event rate {args.rate}, seed {args.seed}")
    print("| rule | alarms | expected | alarms / expected | mean reference rate |")
    print("|---|---:|---:|---:|---:|")
    for rule in args.rules.split(","):
        t0 = time.perf_counter()
        r = run(rule, args.streams, args.rate, args.seed)
        print(
            f"| {rule} | {r['alarms']} | {r['expected']:.0f} | "
            f"{r['alarms'] / r['expected']:.2f} | {r['mean_rate']:.4f} | "
            f"({time.perf_counter() - t0:.0f} s)"
        )


if __name__ == "__main__":
    main()
