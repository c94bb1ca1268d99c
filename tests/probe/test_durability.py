"""A real SIGKILL of a real model process: what ``record()`` promised is in the spool.

The model process (bench/probe_model_process.py) logs each record id after ``record()`` returns
it, with an unbuffered write that a SIGKILL cannot take back. After the kill, the test compares
that log with the spool file the dead process left, then a new probe on the same spool delivers
it to the real monitor and the store must hold every logged record exactly once.

Two monitors: down (connection refused) and stuck (accepts, never answers: a sender that held
captures in memory while its POST waited for the 10 s timeout would lose them all).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from phase4.probes import Probe
from tests.probe.conftest import BlackHole, wait_for

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "bench" / "probe_model_process.py"
SECRET = b"probe-durability-trial-secret-0123456789"
MIN_LOGGED = 1000  # captures the model reports before it is killed (1 s at 1 kHz)
RATE_HZ = 1000.0
COMMIT_INTERVAL_NS = 100_000_000  # the default spool_commit_interval_s
# The writer's 0.1 s clock is a sleep: on a shared, loaded machine its wake-up can be late.
# This allowance widens the window of captures that may be lost; it does not time anything.
SCHEDULING_ALLOWANCE_NS = 150_000_000


def logged(log: Path) -> list[tuple[str, int]]:
    """(record_id, monotonic_ns) of every complete line of the model's log."""
    if not log.exists():
        return []
    lines = log.read_bytes().split(b"\n")[:-1]  # a torn last line was never complete
    return [(rid.decode(), int(ns)) for rid, ns in (line.split() for line in lines)]


def spooled(spool: Path) -> set[str]:
    with sqlite3.connect(spool) as conn:  # opening recovers the dead process's WAL
        return {row[0] for row in conn.execute("SELECT record_id FROM records")}


def kill_model(url: str, token: str, deployment: str, spool: Path, log: Path, durable: bool):
    """Run the model process until it has logged MIN_LOGGED more captures; SIGKILL it."""
    before = len(logged(log))
    command = [sys.executable, str(MODEL), url, token, deployment, str(spool), str(log)]
    command += ["--rate-hz", str(RATE_HZ), *(["--durable"] if durable else [])]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(
            lambda: len(logged(log)) >= before + MIN_LOGGED or process.poll() is not None,
            "the model process to capture",
            timeout_s=60,
        )
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        killed_at_ns = time.monotonic_ns()
        os.kill(process.pid, signal.SIGKILL)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        if process.stderr:
            process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    return killed_at_ns


@pytest.mark.parametrize("durable", [True, False], ids=["durable", "default"])
@pytest.mark.parametrize("monitor", ["down", "stuck"])
def test_sigkill_loses_nothing_durable_and_at_most_the_window_by_default(
    live_monitor, tmp_path, durable, monitor
):
    spool, log = tmp_path / "spool.sqlite", tmp_path / "model.log"
    live_monitor.stop()
    hole = BlackHole() if monitor == "stuck" else None
    url = hole.url if hole is not None else live_monitor.url
    try:
        killed_at_ns = kill_model(
            url, live_monitor.probe_token, live_monitor.deployment, spool, log, durable
        )
    finally:
        if hole is not None:
            hole.stop()

    told = logged(log)
    ids = [record_id for record_id, _ in told]
    in_spool = spooled(spool)
    lost = [record_id for record_id in ids if record_id not in in_spool]
    if durable:
        assert lost == []
    else:
        # Only the newest captures can be lost (FIFO), and only those of the last window.
        assert lost == ids[len(ids) - len(lost) :]
        window_start_ns = killed_at_ns - COMMIT_INTERVAL_NS - SCHEDULING_ALLOWANCE_NS
        in_window = sum(1 for _, at_ns in told if at_ns >= window_start_ns)
        assert len(lost) <= in_window
        assert len(lost) < len(ids) // 2  # a stuck POST does not hold captures in memory

    live_monitor.start()
    with Probe(
        live_monitor.url,
        live_monitor.probe_token,
        live_monitor.deployment,
        site_secret=SECRET,
        spool_path=spool,
        flush_interval_s=0.02,
        backoff_base_s=0.02,
        backoff_max_s=0.2,
    ) as successor:
        assert successor.flush(timeout_s=30)
    stored = live_monitor.stored_record_ids()
    assert len(stored) == len(set(stored)) == len(in_spool)  # exactly once
    assert set(ids) - set(lost) <= set(stored)
