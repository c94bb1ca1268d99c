"""Monitor outages: spooling, exactly-once redelivery, bounds, and never blocking the model."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path


def spooled_ids(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT record_id FROM records ORDER BY seq")]


def capture(probe, count: int, tag: str) -> list[str]:
    ids = [probe.record(features={"batch": tag, "i": i}) for i in range(count)]
    assert all(isinstance(record_id, str) for record_id in ids)  # the model saw no error
    return ids


def test_down_from_start_then_up_delivers_each_record_once_in_order(
    servers, make_probe, free_port, wait_for
):
    probe = make_probe(f"http://127.0.0.1:{free_port}", batch_size=50)
    first = capture(probe, 300, "a")
    wait_for(lambda: probe.stats().spool_depth == 300, "first outage records spooled")
    wait_for(lambda: probe.stats().last_error is not None, "a failed attempt")
    stats = probe.stats()
    assert stats.sent == 0 and stats.send_attempts >= 1
    assert "ConnectError" in (stats.last_error or "")
    second = capture(probe, 100, "b")  # still down: queued behind the spool

    server = servers(port=free_port).start()
    assert probe.flush(timeout_s=15)
    server.stop()  # second outage, same port
    third = capture(probe, 60, "c")
    wait_for(lambda: probe.stats().spool_depth == 60, "second outage records spooled")
    server.start()
    fourth = capture(probe, 40, "d")  # newer than the spooled ones
    assert probe.flush(timeout_s=15)

    everything = first + second + third + fourth
    assert server.arrival == everything  # oldest first, each stored once
    posted = Counter(server.posted_ids)
    assert set(posted) == set(everything)
    assert sum(posted.values()) >= len(everything)  # at-least-once on the wire
    stats = probe.stats()
    assert stats.sent + stats.duplicates == len(everything)
    assert (stats.dropped, stats.rejected, stats.spool_depth, stats.queue_depth) == (0, 0, 0, 0)
    assert stats.spooled >= 360


def test_full_spool_drops_the_oldest_and_persists_the_count(
    servers, make_probe, free_port, wait_for, tmp_path
):
    url = f"http://127.0.0.1:{free_port}"
    probe = make_probe(url, spool_max_records=100)
    ids = capture(probe, 250, "x")
    wait_for(lambda: probe.stats().spooled == 250, "all records offered to the spool")
    stats = probe.stats()
    assert (stats.dropped, stats.spool_depth, stats.spool_dropped_total) == (150, 100, 150)
    assert not probe.close(timeout_s=0.5)

    spool_path = tmp_path / "probe.spool.sqlite"
    assert spooled_ids(spool_path) == ids[150:]
    with sqlite3.connect(spool_path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key='dropped'").fetchone() == (150,)

    server = servers(port=free_port).start()
    reopened = make_probe(url, spool_max_records=100)
    assert reopened.stats().spool_dropped_total == 150
    assert reopened.flush(timeout_s=15)
    assert server.arrival == ids[150:]


def test_close_keeps_undelivered_records_for_the_next_probe(
    servers, make_probe, free_port, tmp_path
):
    url = f"http://127.0.0.1:{free_port}"
    with make_probe(url, flush_interval_s=60) as probe:  # the sender never tried on its own
        ids = capture(probe, 40, "x")
    assert probe.close() is False  # idempotent: same answer, nothing raised
    assert spooled_ids(tmp_path / "probe.spool.sqlite") == ids
    assert probe.record(features={"late": True}) is None  # after close: dropped, not raised

    server = servers(port=free_port).start()
    successor = make_probe(url)
    assert successor.stats().spool_depth == 40
    assert successor.flush(timeout_s=15)
    assert server.arrival == ids
    assert successor.stats().spool_depth == 0


def test_capture_completes_while_the_sender_is_stuck_on_a_black_hole(
    black_hole, make_probe, wait_for, tmp_path
):
    probe = make_probe(black_hole.url, timeout_s=5.0, batch_size=1000)
    first = probe.record(features={"i": -1})
    assert black_hole.request_seen.wait(15)  # the first POST is on the wire, unanswered

    later = capture(probe, 1000, "during")
    with probe.inference(features={"block": True}) as inf:
        pass
    # Captures do not wait in memory behind the unanswered POST: they reach the spool file.
    wait_for(lambda: probe.stats().spool_depth == 1002, "captures committed to the spool")
    stats = probe.stats()
    # Every capture returned while the first attempt was still unresolved.
    assert stats.send_attempts == 1 and stats.last_error is None
    assert stats.sent == 0 and stats.captured == 1002
    assert stats.queue_depth == 0 and black_hole.connections == 1

    assert not probe.close(timeout_s=0.2)  # cannot wait 5 s for the read to time out
    assert spooled_ids(tmp_path / "probe.spool.sqlite") == [first, *later, inf.record_id]


def test_full_queue_drops_the_oldest_while_the_sender_is_stuck(black_hole, make_probe, tmp_path):
    # The writer commits on its own clock only every 10 s: the queue fills meanwhile.
    probe = make_probe(black_hole.url, timeout_s=5.0, max_queue=10, spool_commit_interval_s=10)
    first = probe.record(features={"i": -1})
    assert probe.flush(timeout_s=0.05) is False  # commits `first`; the POST goes unanswered
    assert black_hole.request_seen.wait(15)
    ids = capture(probe, 50, "x")
    stats = probe.stats()
    assert (stats.dropped, stats.queue_depth) == (40, 10)
    assert not probe.close(timeout_s=0.2)
    assert spooled_ids(tmp_path / "probe.spool.sqlite") == [first, *ids[40:]]


def test_a_bad_record_in_a_batch_does_not_poison_its_neighbours(server, make_probe, caplog):
    server.poison_marker = "POISON"
    probe = make_probe(server.url, batch_size=16, flush_interval_s=60)
    ids = [
        probe.record(features={"note": "POISON" if i == 5 else "fine", "i": i}) for i in range(16)
    ]
    assert probe.flush(timeout_s=15)
    stats = probe.stats()
    assert (stats.sent, stats.rejected) == (15, 1)
    assert server.arrival == ids[:5] + ids[6:]  # order kept across the halves
    assert stats.send_attempts > 4
    assert ids[5] in caplog.text


def test_413_splits_the_batch(server, make_probe):
    server.scripted_statuses = [413]
    probe = make_probe(server.url, batch_size=8, flush_interval_s=60)
    ids = capture(probe, 8, "x")
    assert probe.flush(timeout_s=15)
    assert server.arrival == ids
    sizes = sorted(len(body) for body in server.bodies)
    assert len(sizes) == 3 and sizes[-1] > sizes[0]  # the full batch, then two halves


def test_close_commits_every_capture_in_memory_even_past_its_timeout(
    make_probe, free_port, tmp_path
):
    # Nothing is committed on the writer's own clock; close(0) must still leave none behind
    # (the process may exit right after close, taking memory with it).
    probe = make_probe(f"http://127.0.0.1:{free_port}", spool_commit_interval_s=10)
    ids = capture(probe, 20_000, "x")
    assert probe.close(timeout_s=0) is False
    assert spooled_ids(tmp_path / "probe.spool.sqlite") == ids
    assert probe.stats().dropped == 0
