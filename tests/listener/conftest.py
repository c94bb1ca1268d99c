"""A real probe delivering to a real monitor, for the listener's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from probes import Probe
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
