"""Per-capture overhead of the phase4 probe, as seen by the model's thread.

Usage: .venv/bin/python bench/probe_overhead.py [--n 200000]

Times each capture with ``time.perf_counter_ns`` around ``probe.record(...)`` and around an
empty ``with probe.inference(...)`` block, with the monitor UP (a minimal HTTP server in a
separate process that accepts everything, so it does not share our GIL) and DOWN (nothing
listening: the probe spools to SQLite). Baselines in the same run - an empty function call
with the same arguments and a bare ``deque.append`` of the same dict - make ratios reportable.
The sender thread runs during the measurement, so its GIL share shows up in the tail. The
"durable" row is ``Probe(durable=True)``: each capture waits for the spool commit holding it.

A tight capture loop is the worst case: the sender can never catch up and competes for the
GIL (and, on SMT machines, for the core) all the time. The "paced" row sleeps 100 µs between
captures - a stand-in for a model whose inference releases the GIL, as numpy/torch do - so the
sender keeps up, which is what a real deployment looks like.

Prints a Markdown table and writes JSON to bench/results/probe_overhead.json.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from phase4.probes import Probe  # noqa: E402

RESULTS_PATH = ROOT / "bench" / "results" / "probe_overhead.json"
FEATURES = {"injected_activity_mbq": 250.0, "uptake_time_min": 62.0, "scanner": "pet-1"}
OUTPUTS = {"malignancy_score": 0.82, "lesion_count": 3}
WARMUP = 2_000
PACE_S = 100e-6  # simulated model time between captures in the paced row
PACED_MAX_N = 50_000  # the paced row sleeps per capture; cap it to keep the run short
DURABLE_MAX_N = 20_000  # a durable capture waits for a commit (~0.5 ms): cap it likewise
PERCENTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p99.9", 0.999))


# -- the "monitor UP" server (runs in a child process) -----------------------------------


class AcceptAll(BaseHTTPRequestHandler):
    """Answers every POST /v1/records with all records 'created'."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        records = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["records"]
        results = [
            {"index": i, "record_id": r["record_id"], "status": "created", "error": None}
            for i, r in enumerate(records)
        ]
        body = json.dumps(
            {"created": len(results), "duplicates": 0, "rejected": 0, "results": results}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(port: int) -> None:
    ThreadingHTTPServer(("127.0.0.1", port), AcceptAll).serve_forever()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return server
        except OSError:
            time.sleep(0.05)
    server.kill()
    raise RuntimeError("benchmark server did not start")


# -- measurement -------------------------------------------------------------------------


def measure(n: int, capture: Callable[[int], object], pace_s: float = 0.0) -> array:
    """Latency in ns of ``capture(i)`` for i in range(n), after a warm-up."""
    for i in range(WARMUP):
        capture(i)
        if pace_s:
            time.sleep(pace_s)
    samples = array("q", bytes(8 * n))
    clock = time.perf_counter_ns
    for i in range(n):
        started = clock()
        capture(i)
        samples[i] = clock() - started
        if pace_s:
            time.sleep(pace_s)
    return samples


def summarise(samples: array) -> dict[str, float]:
    ordered = sorted(samples)
    last = len(ordered) - 1
    summary = {name: ordered[round(q * last)] / 1000 for name, q in PERCENTILES}
    summary["max"] = ordered[-1] / 1000
    summary["mean"] = sum(ordered) / len(ordered) / 1000
    return summary


def probe_captures(probe: Probe, uids: list[str]) -> dict[str, Callable[[int], object]]:
    def record(i: int) -> object:
        return probe.record(features=FEATURES, outputs=OUTPUTS, study_uid=uids[i % len(uids)])

    def inference(i: int) -> object:
        with probe.inference(study_uid=uids[i % len(uids)], features=FEATURES):
            pass
        return None

    return {"record": record, "inference (empty body)": inference}


def run(n: int) -> dict[str, Any]:
    uids = [f"1.2.840.113619.2.55.3.{i}.{i * 7}" for i in range(1000)]
    results: dict[str, dict[str, Any]] = {}

    def empty_call(features: object = None, outputs: object = None, study_uid: object = None):
        return None

    queue: collections.deque[object] = collections.deque()
    baselines: dict[str, Callable[[int], object]] = {
        "baseline: empty function call": lambda i: empty_call(
            features=FEATURES, outputs=OUTPUTS, study_uid=uids[i % len(uids)]
        ),
        "baseline: deque.append(dict)": lambda i: queue.append(FEATURES),
    }
    for name, capture in baselines.items():
        results[name] = summarise(measure(n, capture))
        queue.clear()

    options = {
        "token": "p4_bench",
        "deployment": "bench@local",
        "site_secret": os.urandom(32),
        "max_queue": max(100_000, 2 * (n + WARMUP)),
        "spool_max_records": 4 * (n + WARMUP),
    }
    with tempfile.TemporaryDirectory() as scratch:
        port = free_port()
        server = start_server(port)
        try:
            for state, url in (("UP", f"http://127.0.0.1:{port}"), ("DOWN", None)):
                url = url or f"http://127.0.0.1:{free_port()}"
                spool = Path(scratch) / f"{state}.spool.sqlite"
                with Probe(url, spool_path=spool, **options) as probe:
                    captures = probe_captures(probe, uids)
                    for name, capture in captures.items():
                        results[f"{name}, monitor {state}"] = summarise(measure(n, capture))
                    if state == "UP":
                        probe.flush(timeout_s=120)  # start the paced row with an idle sender
                        paced_n = min(n, PACED_MAX_N)
                        results[f"record, monitor UP, paced (n={paced_n})"] = summarise(
                            measure(paced_n, captures["record"], pace_s=PACE_S)
                        )
                    probe.flush(timeout_s=60 if state == "UP" else 1)
                stats = probe.stats()  # after close: DOWN has spooled everything by now
                for key in results:
                    if f"monitor {state}" in key:
                        results[key]["probe_stats"] = {
                            "captured": stats.captured,
                            "sent": stats.sent,
                            "spooled": stats.spooled,
                            "dropped": stats.dropped,
                        }
            durable_n = min(n, DURABLE_MAX_N)
            spool = Path(scratch) / "durable.spool.sqlite"
            url = f"http://127.0.0.1:{port}"
            with Probe(url, spool_path=spool, durable=True, **options) as probe:
                record = probe_captures(probe, uids)["record"]
                results[f"record, durable=True, monitor UP (n={durable_n})"] = summarise(
                    measure(durable_n, record)
                )
        finally:
            server.terminate()
            server.wait(10)

    reference = results["baseline: deque.append(dict)"]["p50"]
    for summary in results.values():
        summary["p50_vs_deque_append"] = summary["p50"] / reference if reference else None
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
        },
        "n": n,
        "unit": "microseconds per capture (perf_counter_ns, timer overhead included)",
        "results": results,
    }


def markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    lines = [
        f"Probe capture overhead, n={report['n']} per row, {report['date']}",
        f"Machine: {machine['platform']}, Python {machine['python']}, "
        f"{machine['cpu_count']} CPUs ({machine['processor']})",
        "",
        "| scenario | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | p50 / deque.append |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in report["results"].items():
        ratio = s["p50_vs_deque_append"]
        lines.append(
            f"| {name} | {s['p50']:.2f} | {s['p90']:.2f} | {s['p99']:.2f} | {s['p99.9']:.2f} "
            f"| {s['max']:.0f} | {ratio:.1f}x |"
        )
    lines.append("")
    for name, s in report["results"].items():
        if "probe_stats" in s and name.startswith("record") and name.count(",") == 1:
            state = name.rsplit(" ", 1)[-1]
            lines.append(f"Probe stats, monitor {state} (all its rows): {s['probe_stats']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="captures per scenario")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    report = run(args.n)
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))
    print(f"\nJSON: {RESULTS_PATH.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
