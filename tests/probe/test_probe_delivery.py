"""Records reach a real HTTP monitor with the wire contract's fields and statuses."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from datetime import UTC, datetime

import pytest

WIRE_KEYS = {
    "record_id",
    "deployment",
    "study_pseudonym",
    "acquired_at",
    "inferred_at",
    "features",
    "outputs",
    "latency_s",
    "error",
}
UID = "1.2.840.113619.2.55.3.604688119.971.1234567890.123"


def test_records_arrive_with_the_wire_fields(server, make_probe, probe_secret):
    probe = make_probe(server.url)
    acquired = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    features = {"injected_activity_mbq": 250.0, "scanner": "pet-1", "tof": True, "uptake": None}
    with probe.inference(study_uid=UID, features=features, acquired_at=acquired) as inf:
        inf.outputs = {"malignancy_score": 0.82, "lesion_count": 3}
    direct_id = probe.record(features={"x": 1}, outputs={"y": [1, 2]}, latency_s=0.25)

    assert probe.flush(timeout_s=15)
    first = server.stored[inf.record_id]
    assert set(first) == WIRE_KEYS
    assert first["deployment"] == "lesion-ai@site-a"
    expected = hmac.new(probe_secret, UID.encode(), hashlib.sha256).hexdigest()
    assert first["study_pseudonym"] == expected
    assert datetime.fromisoformat(first["acquired_at"]) == acquired
    assert datetime.fromisoformat(first["inferred_at"]).tzinfo is not None
    assert first["features"] == features
    assert first["outputs"] == {"malignancy_score": 0.82, "lesion_count": 3}
    assert first["latency_s"] == pytest.approx(inf.latency_s)
    assert first["error"] is None
    assert len(inf.record_id) == 32 and int(inf.record_id, 16) >= 0

    second = server.stored[direct_id]
    assert second["acquired_at"] == second["inferred_at"]  # defaults to capture time
    assert second["study_pseudonym"] is None
    assert second["latency_s"] == 0.25

    stats = probe.stats()
    assert (stats.captured, stats.sent, stats.duplicates, stats.rejected) == (2, 2, 0, 0)
    assert (stats.queue_depth, stats.spool_depth, stats.dropped) == (0, 0, 0)
    assert stats.spooled == 2  # every capture is committed to the spool before it is sent


def test_watch_decorator_captures_sync_and_async_calls(server, make_probe):
    probe = make_probe(server.url)

    @probe.watch(
        features=lambda x: {"x": x},
        outputs=lambda y: {"y": y},
        study_uid=lambda x: f"1.2.3.{x}",
    )
    def predict(x: int) -> int:
        return x * 2

    @probe.watch(features=lambda x: {"x": x}, outputs=lambda y: {"y": y})
    async def predict_async(x: int) -> int:
        return x * 3

    @probe.watch
    def bare(x: int) -> int:
        return x + 1

    assert predict(4) == 8
    assert asyncio.run(predict_async(5)) == 15
    assert bare(1) == 2
    assert predict.__name__ == "predict"
    assert probe.flush(timeout_s=15)
    payloads = sorted(
        (r["features"].get("x", -1), r["outputs"].get("y")) for r in server.stored.values()
    )
    assert payloads == [(-1, None), (4, 8), (5, 15)]
    assert all(r["latency_s"] is not None for r in server.stored.values())


def test_batches_never_exceed_batch_size(server, make_probe):
    probe = make_probe(server.url, batch_size=7)
    ids = [probe.record(features={"i": i}) for i in range(40)]
    assert probe.flush(timeout_s=15)
    assert set(server.stored) == set(ids)
    sizes = [len(json.loads(body)["records"]) for body in server.bodies]
    assert max(sizes) <= 7 and sum(sizes) == 40


def test_duplicates_are_delivered_and_counted(server, make_probe):
    probe = make_probe(server.url)
    probe.record(features={"i": 1}, record_id="ab" * 16)
    assert probe.flush(timeout_s=15)
    probe.record(features={"i": 1}, record_id="ab" * 16)  # e.g. a listener re-processing
    assert probe.flush(timeout_s=15)
    stats = probe.stats()
    assert (stats.sent, stats.duplicates) == (1, 1)
    assert list(server.stored) == ["ab" * 16]


def test_rejected_records_are_counted_logged_and_not_retried(server, make_probe, caplog):
    caplog.set_level(logging.WARNING, logger="phase4.probe")
    probe = make_probe(server.url)
    good = probe.record(features={"i": 1})
    bad = probe.record(features={"i": 2}, record_id="not-hex!")
    assert probe.flush(timeout_s=15)
    stats = probe.stats()
    assert (stats.sent, stats.rejected) == (1, 1)
    assert list(server.stored) == [good]
    assert server.posted_ids.count(bad) == 1
    assert bad in caplog.text and "record_id must be hex" in caplog.text


def test_5xx_and_429_are_retried_until_delivered(server, make_probe):
    server.scripted_statuses = [503, 429, 500]
    probe = make_probe(server.url)
    ids = [probe.record(features={"i": i}) for i in range(5)]
    assert probe.flush(timeout_s=15)
    assert set(server.stored) == set(ids)
    stats = probe.stats()
    assert stats.send_attempts >= 4 and stats.sent == 5
    assert stats.last_error is not None and "HTTP 500" in stats.last_error


def test_auth_failure_keeps_records_spooled_and_says_so(servers, make_probe, caplog):
    caplog.set_level(logging.ERROR, logger="phase4.probe")
    wrong_token = servers(token="p4_some_other_token").start()
    probe = make_probe(wrong_token.url, backoff_max_s=0.05)
    ids = [probe.record(features={"i": i}) for i in range(5)]
    assert not probe.flush(timeout_s=0.5)
    stats = probe.stats()
    assert (stats.sent, stats.rejected, stats.dropped) == (0, 0, 0)
    assert stats.spool_depth == 5
    assert "HTTP 401" in (stats.last_error or "")
    assert "token" in caplog.text
    probe.close(timeout_s=1)

    right = servers().start()
    fixed = make_probe(right.url)
    assert fixed.flush(timeout_s=15)
    assert right.arrival == ids


def test_the_health_report_counts_the_backlog_behind_the_batch(server, make_probe):
    # Only flush commits (the writer's own clock is 10 s), so the spool holds all 25 at once.
    probe = make_probe(server.url, batch_size=10, flush_interval_s=60, spool_commit_interval_s=10)
    for i in range(25):
        probe.record(features={"i": i})
    assert probe.flush(timeout_s=15)
    reports = [json.loads(body)["probe"] for body in server.bodies]
    # Every capture passes through the spool; the batch being sent is not a backlog.
    assert [r["spool_depth"] for r in reports] == [15, 5, 0]
    assert all(r["queue_depth"] == 0 for r in reports)
