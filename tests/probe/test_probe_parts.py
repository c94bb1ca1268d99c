"""Unit tests of the probe's parts: backoff, spool, sanitiser, HMAC, record ids."""

from __future__ import annotations

import hashlib
import hmac
import random
import uuid

import pytest

from phase4.probes.backoff import Backoff
from phase4.probes.capture import Pending, new_record_id
from phase4.probes.pseudonym import Pseudonymiser, pseudonymise
from phase4.probes.sanitise import StripReport, sanitise_features, sanitise_mapping
from phase4.probes.spool import Spool


def test_backoff_is_full_jitter_exponential_and_capped():
    backoff = Backoff(0.5, 30.0, rng=random.Random(7))
    for failures in range(12):
        ceiling_s = min(30.0, 0.5 * 2**failures)
        assert 0.0 <= backoff.next_delay_s() <= ceiling_s
    assert backoff.failures == 12
    assert backoff.max_delay_s() == 30.0
    backoff.reset()
    assert backoff.failures == 0


def test_backoff_jitter_spreads_delays():
    delays = [Backoff(0.5, 30.0, rng=random.Random(seed)).next_delay_s() for seed in range(50)]
    assert len(set(delays)) == 50 and max(delays) <= 0.5


def test_backoff_honours_retry_after_up_to_sixty_seconds():
    backoff = Backoff(0.5, 30.0, rng=random.Random(1))
    assert backoff.next_delay_s(retry_after_s=12.0) >= 12.0
    assert backoff.next_delay_s(retry_after_s=45.0) >= 45.0  # beyond the backoff's own cap
    assert backoff.next_delay_s(retry_after_s=3600.0) == 60.0


def test_backoff_survives_huge_failure_counts():
    backoff = Backoff(0.5, 30.0)
    backoff.failures = 10_000
    assert backoff.next_delay_s() <= 30.0


def test_backoff_rejects_nonsense():
    with pytest.raises(ValueError):
        Backoff(0.0, 1.0)
    with pytest.raises(ValueError):
        Backoff(2.0, 1.0)


def pending(count: int, start: int = 0) -> list[Pending]:
    return [Pending(f"{i:032x}", f'{{"i":{i}}}') for i in range(start, start + count)]


def test_spool_is_fifo_and_bounded_with_a_persistent_drop_count(tmp_path):
    path = tmp_path / "s.sqlite"
    spool = Spool(path, max_records=5)
    assert spool.append(pending(3)) == 0
    assert spool.append(pending(4, start=3)) == 2
    assert [p.body for p in spool.head(10)] == [f'{{"i":{i}}}' for i in range(2, 7)]
    assert spool.append(pending(8, start=7)) == 8  # more than fits: only the newest 5 stay
    assert [p.record_id for p in spool.head(10)] == [f"{i:032x}" for i in range(10, 15)]
    assert (spool.depth, spool.dropped_total) == (5, 10)
    spool.close()

    reopened = Spool(path, max_records=5)
    assert (reopened.depth, reopened.dropped_total) == (5, 10)
    head = reopened.head(2)
    reopened.delete_seqs(p.seq for p in head if p.seq is not None)
    reopened.delete_record_ids([f"{14:032x}"])
    assert [p.record_id for p in reopened.head(10)] == [f"{i:032x}" for i in (12, 13)]
    reopened.close()
    assert reopened.closed and reopened.head(1) == [] and reopened.append(pending(1)) == 1


def test_spool_open_failure_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(OSError, match="cannot open probe spool"):
        Spool(blocker / "spool.sqlite", max_records=5)


def test_sanitiser_strips_nested_phi_and_unrepresentable_values():
    cyclic: dict[str, object] = {"k": 1}
    cyclic["self"] = cyclic
    report = StripReport()
    clean = sanitise_mapping(
        {
            "ok": 1,
            "series": [{"PatientID": "x", "suv": 2.0}, b"raw", 3],
            "cyclic": cyclic,
            "Patient_Name": "x",
        },
        "features",
        report,
    )
    assert clean["ok"] == 1
    assert clean["series"] == [{"suv": 2.0}, 3]
    assert report.phi_keys == ["features.series[0].PatientID", "features.Patient_Name"]
    assert "features.series[1]" in report.dropped_values
    depth = 0
    node = clean["cyclic"]
    while isinstance(node, dict) and "self" in node:
        node, depth = node["self"], depth + 1
    assert 0 < depth < 40  # recursion is bounded, and nothing raised


def test_sanitiser_drops_non_dict_tops():
    report = StripReport()
    assert sanitise_mapping([1, 2], "outputs", report) == {}
    assert sanitise_mapping(None, "outputs", report) == {}
    assert report.dropped_values == ["outputs"]


@pytest.mark.parametrize("secret_len", [1, 16, 32, 63, 64, 65, 200])
@pytest.mark.parametrize("identifier", ["", "1.2.840.10008.1", "ünïcode-ÜID"])
def test_precomputed_hmac_equals_the_standard_library(secret_len, identifier):
    secret = bytes(range(256))[:secret_len]
    expected = hmac.new(secret, identifier.encode(), hashlib.sha256).hexdigest()
    assert Pseudonymiser(secret)(identifier) == expected == pseudonymise(identifier, secret)


def test_record_ids_are_uuid4_hex():
    ids = {new_record_id() for _ in range(1000)}
    assert len(ids) == 1000
    for record_id in list(ids)[:50]:
        parsed = uuid.UUID(hex=record_id)
        assert (parsed.version, parsed.variant, parsed.hex) == (4, uuid.RFC_4122, record_id)


def test_features_are_flat_scalars_with_short_keys():
    report = StripReport()
    clean = sanitise_features(
        {"suv": 1.5, "nested": {"a": 1}, "series": [1, 2], "k" * 101: 1, "k" * 100: 2},
        report,
    )
    assert clean == {"suv": 1.5, "k" * 100: 2}
    assert sorted(report.dropped_values) == sorted(
        ["features.nested", "features.series", "features." + "k" * 100]
    )


def test_a_new_spool_and_its_wal_are_readable_by_their_owner_only(tmp_path):
    spool = Spool(tmp_path / "new.spool.sqlite", max_records=5)
    spool.append([Pending("a" * 32, "{}")])
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.glob("new.spool.sqlite*")}
    spool.close()
    assert "new.spool.sqlite-wal" in modes
    assert set(modes.values()) == {0o600}


def test_two_spools_on_one_file_keep_the_bound_and_the_drop_count(tmp_path):
    path = tmp_path / "shared.sqlite"
    first, second = Spool(path, max_records=5), Spool(path, max_records=5)
    assert first.append(pending(4)) == 0
    assert second.append(pending(1, start=4)) == 0  # second counted nothing at open
    assert second.append(pending(2, start=5)) == 2  # so it counts again before dropping
    first.delete_seqs(p.seq for p in first.head(3) if p.seq is not None)
    assert first.append(pending(3, start=7)) == 0  # room made by its own deletes
    assert [p.record_id for p in second.head(10)] == [f"{i:032x}" for i in range(5, 10)]
    assert second.append(pending(1, start=10)) == 1
    assert second.dropped_total == 3
    first.close()
    second.close()
