"""The monitor says "not now" (503 + Retry-After) or "too big" (413): no record is lost.

Against a real loopback HTTP server speaking the monitor's contract (tests/probe/conftest.py).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from phase4.probes.transport import _retry_after_s

RETRY_AFTER_S = 1.0


def test_503_database_unavailable_waits_for_retry_after_and_keeps_the_batch(server, make_probe):
    server.scripted_statuses = [503, 503]
    server.scripted_retry_after = "1"
    # The probe's own backoff is capped at 0.2 s: Retry-After must not be cut down to that.
    probe = make_probe(server.url, backoff_max_s=0.2, flush_interval_s=60)
    ids = [probe.record(features={"i": i}) for i in range(10)]
    assert probe.flush(timeout_s=15)  # flush asks for an attempt now: not before Retry-After
    stats = probe.stats()
    assert server.arrival == ids
    assert (stats.sent, stats.dropped, stats.rejected) == (10, 0, 0)
    assert "HTTP 503" in (stats.last_error or "")
    times = server.request_times
    assert len(times) == 3
    # A lower bound on the probe's patience, not a speed measurement.
    assert times[1] - times[0] >= RETRY_AFTER_S and times[2] - times[1] >= RETRY_AFTER_S


def test_a_record_refused_alone_is_dropped_and_its_batch_delivered(server, make_probe, caplog):
    server.max_features = 3
    probe = make_probe(server.url, batch_size=16, flush_interval_s=60)
    ids = [probe.record(features={"a": 1, "i": i}) for i in range(16)]
    secret_value = "value-that-must-not-be-logged"
    too_big = probe.record(features={"a": secret_value, "b": 2, "c": 3, "d": 4})
    later = [probe.record(features={"i": i}) for i in range(5)]
    assert probe.flush(timeout_s=15)
    stats = probe.stats()
    assert server.arrival == ids + later
    assert (stats.sent, stats.rejected, stats.dropped) == (21, 1, 0)
    assert too_big in caplog.text and "more than 3 features" in caplog.text
    assert secret_value not in caplog.text


def test_per_item_rejections_in_a_207_are_settled_not_retried(server, make_probe, caplog):
    caplog.set_level(logging.WARNING, logger="phase4.probe")
    server.ok_status = 207
    probe = make_probe(server.url)
    good = probe.record(features={"i": 1})
    bad = probe.record(features={"i": 2}, record_id="not-hex")
    assert probe.flush(timeout_s=15)
    stats = probe.stats()
    assert server.arrival == [good]
    assert (stats.sent, stats.rejected) == (1, 1)
    assert server.posted_ids.count("not-hex") == 1  # not re-sent
    assert bad in caplog.text


@pytest.mark.parametrize(
    ("header", "expected_s"),
    [("7", 7.0), ("0", 0.0), ("-3", 0.0), ("soon", None), ("inf", None), ("", None)],
)
def test_retry_after_seconds_are_read(header, expected_s):
    assert _retry_after_s(header or None) == expected_s


def test_retry_after_http_date_is_read():
    when = datetime.now(UTC) + timedelta(seconds=30)
    seconds = _retry_after_s(format_datetime(when, usegmt=True))
    assert seconds is not None and 25 <= seconds <= 30
