"""A real probe delivering to a real monitor, for the listener's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from phase4.probes import Probe
from tests.conftest import LiveMonitor

SITE_SECRET = b"listener-test-secret"
# dcmtk's default calling AE titles: the listener refuses every sender it was not told of.
DCMTK_AE_TITLES = ["STORESCU", "ECHOSCU"]


@pytest.fixture
def local_probe(live_monitor: LiveMonitor, tmp_path: Path) -> Iterator[Probe]:
    probe = Probe(
        url=live_monitor.url,
        token=live_monitor.probe_token,
        deployment=live_monitor.deployment,
        site_secret=SITE_SECRET,
        spool_path=tmp_path / "listener.spool.sqlite",
        flush_interval_s=0.05,
    )
    yield probe
    probe.close()


@pytest.fixture
def offline_probe(tmp_path: Path) -> Iterator[Probe]:
    """A probe whose monitor is away: records go to its spool (the listener cannot tell)."""
    probe = Probe(
        url="http://127.0.0.1:9",
        token="p4_offline",
        deployment="lesion-ai@site-a",
        site_secret=SITE_SECRET,
        spool_path=tmp_path / "offline.spool.sqlite",
        backoff_base_s=5.0,
    )
    yield probe
    probe.close(timeout_s=0.5)
