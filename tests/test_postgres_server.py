"""The throwaway PostgreSQL of the test session never outlives the process that started it,
even one killed outright (SIGKILL: no atexit, no fixture teardown)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.postgres_server import find_binaries

ROOT = Path(__file__).resolve().parents[1]
STARTER = """
import sys
from tests.postgres_server import ThrowawayPostgres, find_binaries
server = ThrowawayPostgres(find_binaries())
url = server.start()
print(server.port, server.root, flush=True)
sys.stdin.read()  # until killed
"""


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.skipif(find_binaries() is None, reason="no PostgreSQL server binaries")
def test_a_killed_session_leaves_no_server_behind() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", STARTER],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    port_s, root = child.stdout.readline().split()
    port = int(port_s)
    assert _accepts(port) and Path(root).is_dir()
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    deadline = time.monotonic() + 60
    while (_accepts(port) or Path(root).exists()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _accepts(port), "the server still listens after its session was killed"
    assert not Path(root).exists(), "the cluster's directory was left behind"
