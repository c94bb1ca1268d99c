"""Writes ``state_v1.json``: a deployment's detector state as phase4 saved it before
``STATE_VERSION`` (commit ab3f420, the last writer of that shape), the records that follow it,
the alarms the code of that commit raised on them, and its detectors' state at the end.

It must run against that commit's package, not the current one::

    git archive ab3f420 phase4 | tar -x -C /tmp/p4v1
    PYTHONPATH=/tmp/p4v1 python tests/drift/data/make_state_v1.py

The streams cover every state a stream could be saved in: monitoring (continuous, mixed with a
point mass, discrete, binary, categorical), collecting a larger reference after a failed
calibration, abandoned, collecting again after a constant reference, and quarantined; with a
fitted label-free performance estimator.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from phase4.monitor.drift.streams import DeploymentMonitor, MonitorConfig, StreamSpec

OUT = Path(__file__).with_name("state_v1.json")


def record(g: np.random.Generator, i: int, changed: bool) -> dict[str, Any]:
    score = float(g.uniform(0.4, 0.5) if changed else g.random())
    return {
        "features": {
            "suv": float(g.normal(2.5 if changed else 2.2, 0.25)),
            "tmtv": 0.0 if g.random() < 0.8 else float(g.lognormal(np.log(35), 0.9)),
            "lesions": float(g.poisson(2.0)),
            "const": 1.0,
            "small": float(g.normal()),
            "broken": float(g.normal()),
        },
        "outputs": {"score": score, "call": score >= 0.5},
        "error": bool(g.random() < (0.16 if changed else 0.04)),
        "scanner": "C" if changed and i % 7 == 0 else str(g.choice(["A", "B"])),
        "flaky": bool(g.random() < 0.5),
    }


def main() -> None:
    config = MonitorConfig(
        streams=(
            StreamSpec("features.suv", "numeric"),
            StreamSpec("features.tmtv", "numeric"),
            StreamSpec("features.lesions", "numeric"),
            StreamSpec("features.const", "numeric"),
            StreamSpec(
                "features.small", "numeric", reference_size=30, where=(("features.lesions", 0.0),)
            ),
            StreamSpec("features.broken", "numeric"),
            StreamSpec("error", "binary"),
            StreamSpec("flaky", "binary", reference_size=30, p1=0.05),
            StreamSpec("scanner", "categorical"),
        ),
        studies_per_day=20,
        false_alarms_per_year=0.2,
        reference_size=300,
        reference_events_min=10,
        cbpe={
            "score": "outputs.score",
            "prediction": "outputs.call",
            "reference_size": 200,
            "window": 50,
        },
    )
    monitor = DeploymentMonitor.new(config)
    g = np.random.default_rng(20261205)
    for i in range(200):
        s = float(g.random())
        pair = {"cbpe": {"score": s, "truth": bool(g.random() < s), "call": s >= 0.5}}
        monitor.observe(pair, f"2026-01-01T00:00:00+00:00#{i}", source="feedback")
    for i in range(700):
        monitor.observe(record(g, i, False), f"2026-01-02T00:00:{i:05d}", row=i)
    # a state no update could have written quarantines one stream: quarantined, then restored
    state = monitor.to_dict()
    state["streams"]["features.broken"]["detectors"]["cusum"]["h"] = "high"
    monitor = DeploymentMonitor.from_dict(state)
    monitor.observe(record(g, 700, False), "2026-01-02T00:00:00700", row=700)
    state = monitor.to_dict()
    state["streams"]["features.broken"]["detectors"]["cusum"]["h"] = 12.0
    saved = json.loads(json.dumps(state))
    # from a copy: a restored monitor shares its lists with the dict it was restored from
    monitor = DeploymentMonitor.from_dict(json.loads(json.dumps(saved)))
    follow = [record(g, i, changed=i >= 760) for i in range(701, 1300)]
    alarms = []
    for i, rec in enumerate(follow, start=701):
        for a in monitor.observe(rec, f"2026-01-03T00:00:{i:05d}", row=i):
            alarms.append(
                {
                    "stream": a.stream,
                    "detector": a.alarm.detector,
                    "kind": a.alarm.kind,
                    "index": a.alarm.index,
                    "change_index_estimate": a.alarm.change_index_estimate,
                    "statistic": a.alarm.statistic,
                    "threshold": a.alarm.threshold,
                    "direction": a.alarm.direction,
                }
            )
    OUT.write_text(
        json.dumps(
            {
                "state": saved,
                "first_row": 701,
                "records": follow,
                "alarms": alarms,
                "final_detectors": {
                    name: stream["detectors"]
                    for name, stream in monitor.to_dict()["streams"].items()
                },
            },
            separators=(",", ":"),
        )
        + "\n"
    )
    print(f"{OUT}: {len(alarms)} alarms on {len(follow)} records")


if __name__ == "__main__":
    main()
