"""What a SIGKILL of the model's process costs: records lost and duplicated, per probe setting.

Usage: .venv/bin/python bench/probe_durability.py [--kills 3] [--rate-hz 200] [--delay-s 2]
           [--baseline-root DIR]

A baseline DIR holds an older probe and this checkout's model process, e.g.
``git archive 535fdf6 probes | tar -x -C DIR && mkdir DIR/bench &&
cp bench/probe_model_process.py DIR/bench/``.

A real model process (bench/probe_model_process.py: a steady loop of ``probe.record()``) feeds
a real monitor (``phase4 serve`` on SQLite, in its own process) that is

* fast: the monitor itself;
* slow: the monitor behind an asyncio proxy on 127.0.0.1 that holds each response back
  ``--delay-s`` seconds (a monitor whose database is slow);
* down: nothing listens until the model's runs are over.

The model process is SIGKILLed ``--kills`` times at random moments (uniform in 0.5..2.5 s of
capturing), restarted each time on the same spool (the new probe recovers what the dead one
left), then runs a last stretch that ends normally. The monitor is then started (if it was
down) and a probe on the same spool delivers what is left. Counted at the end, against the
log of record ids the model was told were captured (written after each ``record()`` returns):
records lost, and records stored more than once. Both probe settings run: the default (a spool
commit every 0.1 s) and ``durable=True`` (``record()`` waits for its group commit).

The duration of every ``record()`` call is timed in the model process (perf_counter_ns around
the call, all captures, kills included) and reported as p50/p99/p99.9; the ratio of durable to
default in the same run is the cost of durability. Prints Markdown and writes
bench/results/probe_durability.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from phase4.monitor.core.settings import sqlite_url  # noqa: E402
from phase4.monitor.domain.registry import create_deployment  # noqa: E402
from phase4.monitor.server import free_port  # noqa: E402
from phase4.monitor.store.auth import Role, create_token  # noqa: E402
from phase4.monitor.store.db import create_db_engine, session_scope, upgrade  # noqa: E402
from phase4.probes import Probe  # noqa: E402

MODEL_SCRIPT = Path("bench") / "probe_model_process.py"
RESULTS_PATH = ROOT / "bench" / "results" / "probe_durability.json"
DEPLOYMENT = "lesion-ai@site-a"
SECRET = b"probe-durability-trial-secret-0123456789"
KILL_AFTER_S = (0.5, 2.5)
LAST_RUN_S = 1.0


def prepare_db(path: Path) -> tuple[str, str]:
    url = sqlite_url(path)
    upgrade(url)
    engine = create_db_engine(url)
    with session_scope(engine) as s:
        create_deployment(
            s,
            deployment_id=DEPLOYMENT,
            site_id="site-a",
            model_name="PETLesionDetect",
            model_version="2.1.0",
            actor="bench",
        )
        token = create_token(s, name="bench", role=Role.PROBE, site_id="site-a", actor="bench")
    engine.dispose()
    return url, token


def start_monitor(database_url: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    """``phase4 serve`` in its own process; its output goes to ``log``."""
    command = [sys.executable, "-m", "phase4.cli", "serve", "--port", str(port)]
    with log.open("ab") as output:
        server = subprocess.Popen(
            [*command, "--database-url", database_url], stdout=output, stderr=output
        )
    deadline = time.monotonic() + 120  # the shared machine can be slow to import everything
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the monitor did not start on port {port}:\n{tail}")
        time.sleep(0.1)


class DelayProxy:
    """TCP proxy on 127.0.0.1 that delays every chunk from the monitor by ``delay_s``."""

    def __init__(self, upstream_port: int, delay_s: float) -> None:
        self.upstream_port = upstream_port
        self.delay_s = delay_s
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> DelayProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._client, "127.0.0.1", self.port)
        )
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            tasks = asyncio.all_tasks(self._loop)
            for task in tasks:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self._loop.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            self._pipe(reader, up_writer, 0.0),
            self._pipe(up_reader, writer, self.delay_s),
            return_exceptions=True,
        )

    @staticmethod
    async def _pipe(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float
    ) -> None:
        try:
            while chunk := await reader.read(65536):
                if delay_s:
                    await asyncio.sleep(delay_s)
                writer.write(chunk)
                await writer.drain()
        finally:
            writer.close()


def run_model(
    model: Path,
    url: str,
    token: str,
    spool: Path,
    log: Path,
    timings: Path,
    durable: bool,
    rate_hz: float,
    kill_after_s: float | None,
) -> None:
    """One model process; SIGKILLed ``kill_after_s`` after its first capture, or run to end."""
    count = 10**9 if kill_after_s is not None else int(rate_hz * LAST_RUN_S)
    command = [sys.executable, str(model), url, token, DEPLOYMENT, str(spool), str(log)]
    command += ["--rate-hz", str(rate_hz), "--count", str(count), "--timings", str(timings)]
    process = subprocess.Popen(
        [*command, *(["--durable"] if durable else [])], stderr=subprocess.DEVNULL
    )
    try:
        if kill_after_s is None:
            process.wait(120)
            return
        before = log.stat().st_size if log.exists() else 0
        while (log.stat().st_size if log.exists() else 0) == before:
            if process.poll() is not None:
                raise RuntimeError("the model process died by itself")
            time.sleep(0.01)
        time.sleep(kill_after_s)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def percentiles_us(timings: Path) -> dict[str, float]:
    durations = array("q")
    durations.frombytes(timings.read_bytes()[: timings.stat().st_size // 8 * 8])
    ordered = sorted(durations)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000  # noqa: E731
    return {"n": len(ordered), "p50": pick(0.5), "p99": pick(0.99), "p99.9": pick(0.999)}


def scenario(
    monitor: str,
    variant: tuple[str, bool, Path],
    args: argparse.Namespace,
    workdir: Path,
    rng: random.Random,
) -> dict[str, Any]:
    label, durable, model_root = variant
    name = f"{monitor}-{label.replace(' ', '-')}"
    model = model_root / MODEL_SCRIPT
    database_url, token = prepare_db(workdir / f"{name}.db")
    port = free_port()
    spool, log, timings = (workdir / f"{name}.{ext}" for ext in ("spool", "log", "timings"))
    server_log = workdir / f"{name}.monitor.log"
    server = None if monitor == "down" else start_monitor(database_url, port, server_log)
    proxy = DelayProxy(port, args.delay_s).start() if monitor == "slow" else None
    url = f"http://127.0.0.1:{proxy.port if proxy else port}"
    try:
        for _ in range(args.kills):
            kill_after_s = rng.uniform(*KILL_AFTER_S)
            run_model(model, url, token, spool, log, timings, durable, args.rate_hz, kill_after_s)
        run_model(model, url, token, spool, log, timings, durable, args.rate_hz, None)
        if server is None:
            server = start_monitor(database_url, port, server_log)
        with Probe(
            f"http://127.0.0.1:{port}", token, DEPLOYMENT, site_secret=SECRET, spool_path=spool
        ) as probe:
            delivered = probe.flush(timeout_s=120)
    finally:
        if proxy is not None:
            proxy.stop()
        if server is not None:
            server.terminate()
            server.wait(30)
    told = [line.split()[0] for line in log.read_text().splitlines() if line.strip()]
    with sqlite3.connect(workdir / f"{name}.db") as conn:
        stored = [row[0] for row in conn.execute("SELECT record_id FROM inference_record")]
    stored_set = set(stored)
    return {
        "monitor": monitor,
        "setting": label,
        "told": len(told),
        "lost": sum(1 for record_id in told if record_id not in stored_set),
        "stored_twice": len(stored) - len(stored_set),
        "delivered_at_end": delivered,
        "capture_us": percentiles_us(timings),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--rate-hz", type=float, default=200.0)
    parser.add_argument("--delay-s", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=20261205)
    parser.add_argument("--tag", help="suffix of the results file (e.g. baseline)")
    parser.add_argument("--settings", nargs="+", choices=("default", "durable"))
    parser.add_argument(
        "--baseline-root",
        type=Path,
        help="also run the default setting with the model process from this directory (an "
        "older phase4/probes/ with bench/probe_model_process.py, e.g. from git archive): a "
        "baseline",
    )
    args = parser.parse_args()
    rng = random.Random(args.seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="probe-durability-") as tmp:
        variants = [
            (label, label == "durable", ROOT) for label in args.settings or ("default", "durable")
        ]
        if args.baseline_root is not None:
            variants.insert(0, ("baseline default", False, args.baseline_root))
        for monitor in ("fast", "slow", "down"):
            for variant in variants:
                row = scenario(monitor, variant, args, Path(tmp), rng)
                rows.append(row)
                print(json.dumps(row), flush=True)
    print()
    print(f"nproc {os.cpu_count()}, {platform.python_version()}, {datetime.now(UTC):%Y-%m-%d}")
    print("| monitor | setting | records told | lost | stored twice | p50 µs | p99 µs | p99.9 µs |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        c = r["capture_us"]
        print(
            f"| {r['monitor']} | {r['setting']} | {r['told']} | {r['lost']} | "
            f"{r['stored_twice']} | {c['p50']:.1f} | {c['p99']:.1f} | {c['p99.9']:.1f} |"
        )
    for monitor in ("fast", "slow", "down"):
        by_setting = {r["setting"]: r for r in rows if r["monitor"] == monitor}
        if {"default", "durable"} <= set(by_setting):
            ratio = (
                by_setting["durable"]["capture_us"]["p99"]
                / by_setting["default"]["capture_us"]["p99"]
            )
            print(f"{monitor}: durable/default capture p99 = {ratio:.1f}x")
        if {"default", "baseline default"} <= set(by_setting):
            old, new = by_setting["baseline default"], by_setting["default"]
            print(
                f"{monitor}: lost per kill, baseline {old['lost'] / args.kills:.1f}, "
                f"default {new['lost'] / args.kills:.1f}"
            )
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.with_suffix(f".{args.tag}.json" if args.tag else ".json").write_text(
        json.dumps(
            {
                "args": {**vars(args), "baseline_root": str(args.baseline_root)},
                "nproc": os.cpu_count(),
                "date": f"{datetime.now(UTC):%F}",
                "rows": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
