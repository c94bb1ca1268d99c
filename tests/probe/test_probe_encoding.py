"""A value JSON or the store cannot carry costs its own field, never its batch.

Against the real monitor (``live_monitor``: uvicorn + SQLite, and PostgreSQL: the session's
server, tests/conftest.py) and against the contract server, with the real sender.
"""

from __future__ import annotations

import logging
import math

from phase4.probes.capture import encode
from phase4.probes.sanitise import StripReport, sanitise_features, sanitise_mapping
from tests.probe.test_probe_monitor import WAIT_S, open_probe

SURROGATE = "\ud800"
HUGE_INT = 10**400  # beyond the float range, and json.dumps of 10**5000 raises ValueError
UNSERIALISABLE = object()


def bad_features() -> list[tuple[str, dict[str, object]]]:
    """(field name the probe must drop, features) pairs, each a record of its own."""
    return [
        ("features.scanner", {"scanner": "pet" + SURROGATE, "i": 1}),
        ("features.<unencodable key>", {"k" + SURROGATE: 1.0, "i": 1}),
        ("features.note", {"note": "a\x00b", "i": 1}),
        ("features.counts", {"counts": HUGE_INT, "i": 1}),
        ("features.counts", {"counts": 10**5000, "i": 1}),
        ("features.thing", {"thing": UNSERIALISABLE, "i": 1}),
    ]


def test_unencodable_values_cost_their_field_not_the_batch(live_monitor, tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="phase4.probe")
    probe = open_probe(
        live_monitor.url, live_monitor.probe_token, live_monitor.deployment, tmp_path / "s.sqlite"
    )
    try:
        good = [probe.record(features={"i": i}, outputs={"score": i / 200}) for i in range(100)]
        bad = [probe.record(features=features) for _, features in bad_features()]
        bad.append(probe.record(features={"i": 1}, outputs={"nested": [{"label": SURROGATE}]}))
        bad.append(probe.record(features={"nan": math.nan, "inf": -math.inf, "i": 1}))
        bad.append(probe.record(features={"i": 1}, error="failed on " + SURROGATE))
        good += [probe.record(features={"i": i}) for i in range(100, 200)]
        refused = probe.record(features={"i": 1}, record_id="ab" + SURROGATE)
        assert refused is not None  # the model is not told; the probe refuses it later
        # One unencodable record must not raise UnicodeEncodeError for its whole batch in the
        # sender (flush would then wait out its timeout with nothing delivered).
        assert probe.flush(timeout_s=WAIT_S)
        stats = probe.stats()
    finally:
        probe.close(timeout_s=5)

    stored = set(live_monitor.stored_record_ids())
    assert set(good) <= stored and set(bad) <= stored
    assert len(stored) == len(good) + len(bad)
    assert (stats.sent, stats.rejected, stats.dropped) == (len(good) + len(bad), 1, 0)
    assert stats.values_stripped == len(bad) - 1  # NaN and inf become null, not dropped
    for field, _ in bad_features():
        assert field in caplog.text
    assert "outputs.nested[0].label" in caplog.text
    assert "record_id" in caplog.text
    assert SURROGATE not in caplog.text and "a\x00b" not in caplog.text
    assert str(HUGE_INT)[:30] not in caplog.text


def test_sanitised_records_keep_their_good_fields():
    report = StripReport()
    clean = sanitise_features(
        {"ok": "ü-é", "bad": SURROGATE, "nul": "\x00", "big": -HUGE_INT, "max": 2**1023},
        report,
    )
    assert clean == {"ok": "ü-é", "max": 2**1023}
    assert report.dropped_values == ["features.bad", "features.nul", "features.big"]
    outputs = sanitise_mapping({"a": [1, SURROGATE, {"b" + SURROGATE: 2}]}, "outputs", report)
    assert outputs == {"a": [1, {}]}


def test_an_encoded_record_is_always_utf8():
    report = StripReport()
    raw = ("ab", None, None, 0.0, (("x", SURROGATE),), (("y", "ok"),), None, SURROGATE)
    pending = encode(raw, "lesion-ai@site-a", report)  # type: ignore[arg-type]
    pending.body.encode("utf-8")
    assert '"error":"<unencodable error description>"' in pending.body
    assert report.dropped_values == ["error", "features.x"]
