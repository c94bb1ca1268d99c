"""The probe against the real monitor (uvicorn + database from tests/conftest.py).

``live_monitor`` runs once per database backend (SQLite, and the session's PostgreSQL). These
tests check the end-to-end promise: through an outage of the monitor, every captured record is
stored exactly once, with PHI stripped and the study identifier pseudonymised.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path
from typing import Any

import httpx

from phase4.probes import Probe

SECRET = b"site-a-monitor-test-secret-0123456789"
RAW_UID_PREFIX = "1.2.826.0.1.3680043.8.498."
WAIT_S = 30.0


def open_probe(url: str, token: str, deployment: str, spool_path: Path) -> Probe:
    return Probe(
        url,
        token,
        deployment,
        site_secret=SECRET,
        spool_path=spool_path,
        flush_interval_s=0.02,
        backoff_base_s=0.02,
        backoff_max_s=0.2,
        timeout_s=5.0,
    )


def capture(probe: Probe, count: int, start: int) -> list[str]:
    ids = []
    for i in range(start, start + count):
        with probe.inference(
            study_uid=f"{RAW_UID_PREFIX}{i}",
            features={"injected_activity_mbq": 200.0 + i, "PatientName": "DOE^JANE", "i": i},
        ) as inf:
            inf.outputs = {"malignancy_score": i / 1000, "lesions": [{"suv_max": 4.2}]}
        assert inf.record_id is not None  # the model saw no error
        ids.append(inf.record_id)
    return ids


def wait_for_spool(probe: Probe, depth: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while probe.stats().spool_depth < depth:
        assert time.monotonic() < deadline, "records were never spooled"
        time.sleep(0.01)


def fetch_records(live_monitor: Any) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{live_monitor.url}/v1/records",
        params={"deployment": live_monitor.deployment, "limit": 1000},
        headers={"Authorization": f"Bearer {live_monitor.viewer_token}"},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()["records"]


def test_outage_then_recovery_stores_every_record_exactly_once(live_monitor, tmp_path):
    live_monitor.stop()
    probe = open_probe(
        live_monitor.url, live_monitor.probe_token, live_monitor.deployment, tmp_path / "s.sqlite"
    )
    try:
        during_outage = capture(probe, 120, 0)
        wait_for_spool(probe, 120)
        assert probe.stats().sent == 0

        live_monitor.start()
        after_recovery = capture(probe, 30, 120)
        assert probe.flush(timeout_s=WAIT_S)
        stats = probe.stats()
    finally:
        probe.close(timeout_s=5)

    captured = during_outage + after_recovery
    stored = live_monitor.stored_record_ids()
    assert len(stored) == len(set(stored)) == len(captured)
    assert set(stored) == set(captured)
    assert stats.sent + stats.duplicates == len(captured)
    assert (stats.rejected, stats.dropped, stats.spool_depth) == (0, 0, 0)

    records = {r["record_id"]: r for r in fetch_records(live_monitor)}
    first = records[captured[0]]
    uid = f"{RAW_UID_PREFIX}0"
    assert first["study_pseudonym"] == hmac.new(SECRET, uid.encode(), hashlib.sha256).hexdigest()
    assert first["features"] == {"injected_activity_mbq": 200.0, "i": 0}
    assert first["outputs"] == {"malignancy_score": 0.0, "lesions": [{"suv_max": 4.2}]}
    assert all(RAW_UID_PREFIX not in str(r) and "DOE^JANE" not in str(r) for r in records.values())


def test_wrong_token_keeps_records_until_a_correct_probe_delivers_them(live_monitor, tmp_path):
    spool = tmp_path / "s.sqlite"
    wrong = open_probe(live_monitor.url, "p4_not_a_token", live_monitor.deployment, spool)
    ids = capture(wrong, 10, 0)
    wait_for_spool(wrong, 10)
    deadline = time.monotonic() + WAIT_S
    while wrong.stats().last_error is None:
        assert time.monotonic() < deadline, "the probe never tried"
        time.sleep(0.01)
    assert "HTTP 401" in (wrong.stats().last_error or "")
    assert not wrong.close(timeout_s=2)
    assert live_monitor.stored_record_ids() == []

    with open_probe(
        live_monitor.url, live_monitor.probe_token, live_monitor.deployment, spool
    ) as right:
        assert right.flush(timeout_s=WAIT_S)
    assert sorted(live_monitor.stored_record_ids()) == sorted(ids)


def test_records_the_monitor_rejects_are_counted_not_retried(live_monitor, tmp_path):
    with open_probe(
        live_monitor.url, live_monitor.probe_token, "no-such-model@site-a", tmp_path / "s.sqlite"
    ) as probe:
        capture(probe, 5, 0)
        assert probe.flush(timeout_s=WAIT_S)
        stats = probe.stats()
    assert (stats.rejected, stats.sent, stats.spool_depth) == (5, 0, 0)
    assert live_monitor.stored_record_ids() == []
