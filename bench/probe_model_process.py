"""A stand-in model process: a steady loop of ``probe.record()`` calls, for SIGKILL trials.

Usage: .venv/bin/python bench/probe_model_process.py URL TOKEN DEPLOYMENT SPOOL LOG
           [--durable] [--rate-hz 500] [--count 1000000] [--timings PATH]

After each ``record()`` returns a record id, the process appends ``<id> <monotonic_ns>`` to LOG
with one unbuffered ``os.write`` on an O_APPEND descriptor: once the write returns the line is
in the kernel's page cache, which a SIGKILL of this process cannot take back (no fsync is
needed for process death; it would be for a power cut). So LOG is exactly the set of records
the model was told were captured, and a trial compares it with the spool and the store.
``time.monotonic_ns`` is CLOCK_MONOTONIC, comparable across processes on one machine.

With ``--timings`` the duration of each ``record()`` call (ns, in-process) is written there as
raw int64 every 100 captures, so a killed process leaves most of its timings behind.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from array import array
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from phase4.probes import Probe  # noqa: E402

SECRET = b"probe-durability-trial-secret-0123456789"
TIMINGS_CHUNK = 100


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("token")
    parser.add_argument("deployment")
    parser.add_argument("spool", type=Path)
    parser.add_argument("log", type=Path)
    parser.add_argument("--durable", action="store_true")
    parser.add_argument("--rate-hz", type=float, default=500.0)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--timings", type=Path)
    args = parser.parse_args(argv)

    probe = Probe(
        args.url,
        args.token,
        args.deployment,
        site_secret=SECRET,
        spool_path=args.spool,
        **({"durable": True} if args.durable else {}),  # runs with an older Probe too
        flush_interval_s=0.2,
        backoff_base_s=0.05,
        backoff_max_s=1.0,
    )
    log_fd = os.open(args.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    timings_fd = None
    if args.timings is not None:
        timings_fd = os.open(args.timings, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    durations_ns = array("q")
    period_s = 1.0 / args.rate_hz
    next_at = time.monotonic()
    for i in range(args.count):
        features = {"injected_activity_mbq": 200.0 + i % 100, "uptake_time_min": 60.0, "i": i}
        started_ns = time.perf_counter_ns()
        record_id = probe.record(features=features, outputs={"malignancy_score": 0.5})
        durations_ns.append(time.perf_counter_ns() - started_ns)
        if record_id is not None:
            os.write(log_fd, f"{record_id} {time.monotonic_ns()}\n".encode())
        if timings_fd is not None and len(durations_ns) >= TIMINGS_CHUNK:
            os.write(timings_fd, durations_ns.tobytes())
            durations_ns = array("q")
        next_at += period_s
        pause_s = next_at - time.monotonic()
        if pause_s > 0:
            time.sleep(pause_s)  # stands in for the model's own work, which releases the GIL
    if timings_fd is not None:
        os.write(timings_fd, durations_ns.tobytes())
    probe.close(timeout_s=5.0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
