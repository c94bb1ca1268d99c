"""A signed audit head catches what the chain alone cannot (its last entries deleted, a rewrite
since signing) and a forged head; the verdict names the first broken entry. The plain chain
tamper cases (edit, delete, reorder without a head) are in tests/monitor/test_store.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from phase4.monitor.store.audit import (
    AUDIT_KEY_ENV,
    AuditHeadError,
    ChainVerdict,
    SignedHead,
    audit_key_from_env,
    read_head,
    record_action,
    sign_head,
    verify_chain,
    write_head,
)
from phase4.monitor.store.db import session_scope

KEY = b"head-test-key-0123456789abcdef00"


def _append(engine: Engine, n: int, start: int = 0) -> None:
    with session_scope(engine) as s:
        for i in range(start, start + n):
            record_action(
                s,
                actor="physicist:ada",
                action="tolerance.set",
                entity_type="tolerance",
                entity_id=f"t{i}",
                reason="annual review",
                old_value={"iu_pct": 5.0 + i},
                new_value={"iu_pct": 4.5 + i},
            )


def _signed(engine: Engine, n: int = 6) -> SignedHead:
    _append(engine, n)
    with session_scope(engine) as s:
        return sign_head(s, KEY)


def _verify(engine: Engine, head: SignedHead, key: bytes = KEY) -> ChainVerdict:
    with session_scope(engine) as s:
        return verify_chain(s, head=head, key=key)


def test_signed_head_verifies_and_survives_later_appends(engine: Engine, tmp_path: Path) -> None:
    head = _signed(engine)
    assert (head.seq, len(head.head_hash), head.algorithm) == (6, 64, "HMAC-SHA256")
    path = write_head(tmp_path / "head.json", head)
    assert read_head(path) == head
    assert json.loads(path.read_text())["seq"] == 6
    v = _verify(engine, read_head(path))
    assert (v.ok, v.head_verified, v.entries_checked) == (True, True, 6)
    _append(engine, 3, start=6)  # the trail grows after signing: still fine
    later = _verify(engine, head)
    assert (later.ok, later.head_verified, later.entries_checked) == (True, True, 9)
    with session_scope(engine) as s:  # the call without a head still works
        plain = verify_chain(s)
    assert (plain.ok, plain.head_verified, plain.head_hash) == (True, False, later.head_hash)


def test_empty_trail_has_a_signed_genesis_head(engine: Engine) -> None:
    with session_scope(engine) as s:
        s.execute(sa.text("DELETE FROM audit_entry"))  # the world fixture wrote none here
        head = sign_head(s, KEY)
    assert (head.seq, head.head_hash) == (0, "0" * 64)
    assert _verify(engine, head).ok


def test_edited_entry_is_named_with_a_head(engine: Engine) -> None:
    head = _signed(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_entry SET actor = 'someone-else' WHERE seq = 4"))
    v = _verify(engine, head)
    assert (v.ok, v.first_broken_seq) == (False, 4)
    assert "content" in (v.problem or "")


def test_deleted_middle_entry_is_named_with_a_head(engine: Engine) -> None:
    head = _signed(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_entry WHERE seq = 3"))
    v = _verify(engine, head)
    assert (v.ok, v.first_broken_seq) == (False, 3)
    assert "entry 3 is missing" in (v.problem or "")


def test_swapped_entries_are_named_with_a_head(engine: Engine) -> None:
    head = _signed(engine)
    with engine.begin() as conn:  # swap the sequence numbers of entries 2 and 5
        conn.execute(sa.text("UPDATE audit_entry SET seq = -1 WHERE seq = 2"))
        conn.execute(sa.text("UPDATE audit_entry SET seq = 2 WHERE seq = 5"))
        conn.execute(sa.text("UPDATE audit_entry SET seq = 5 WHERE seq = -1"))
    v = _verify(engine, head)
    assert (v.ok, v.first_broken_seq) == (False, 2)


def test_deleting_the_last_entries_is_caught_only_by_the_head(engine: Engine) -> None:
    head = _signed(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_entry WHERE seq >= 5"))
    with session_scope(engine) as s:
        assert verify_chain(s).ok  # what is left is a valid chain...
    v = _verify(engine, head)  # ...but the signed head names entry 6
    assert (v.ok, v.first_broken_seq, v.entries_checked) == (False, 5, 4)
    assert "entries 5-6 are missing at the end" in (v.problem or "")
    assert "truncated" in (v.problem or "")


def test_deleting_the_last_entry_alone(engine: Engine) -> None:
    head = _signed(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_entry WHERE seq = 6"))
    v = _verify(engine, head)
    assert (v.ok, v.first_broken_seq) == (False, 6)
    assert "entry 6 is missing at the end" in (v.problem or "")


def test_truncate_and_reappend_is_caught_as_a_rewrite(engine: Engine) -> None:
    head = _signed(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_entry WHERE seq >= 5"))
    _append(engine, 2, start=100)  # a valid chain of the same length, different history
    v = _verify(engine, head)
    assert (v.ok, v.first_broken_seq) == (False, 6)
    assert "differs from the signed head" in (v.problem or "")


def test_forged_head_and_wrong_key_are_refused(engine: Engine, tmp_path: Path) -> None:
    head = _signed(engine)
    path = write_head(tmp_path / "head.json", head)
    data = json.loads(path.read_text())
    data["seq"] = 4  # claim a shorter trail, to hide entries 5 and 6
    path.write_text(json.dumps(data))
    v = _verify(engine, read_head(path))
    assert (v.ok, v.first_broken_seq) == (False, 4)
    assert "bad signature" in (v.problem or "")
    other = _verify(engine, head, key=b"another-key-0123456789abcdef0000")
    assert not other.ok and "bad signature" in (other.problem or "")


def test_key_from_environment_and_key_errors(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    head = _signed(engine)
    monkeypatch.delenv(AUDIT_KEY_ENV, raising=False)
    assert audit_key_from_env() is None
    with session_scope(engine) as s, pytest.raises(AuditHeadError, match=AUDIT_KEY_ENV):
        verify_chain(s, head=head)
    monkeypatch.setenv(AUDIT_KEY_ENV, KEY.decode())
    assert audit_key_from_env() == KEY
    with session_scope(engine) as s:
        assert verify_chain(s, head=head).ok
    monkeypatch.setenv(AUDIT_KEY_ENV, "short")
    with pytest.raises(AuditHeadError, match="at least 16 bytes"):
        audit_key_from_env()
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(AuditHeadError, match=r"bad\.json"):
        read_head(bad)
    bad.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(AuditHeadError, match="not a phase4 signed audit head"):
        read_head(bad)
    with pytest.raises(AuditHeadError, match="cannot read"):
        read_head(tmp_path / "absent.json")


def test_a_broken_chain_is_not_signed(engine: Engine) -> None:
    _append(engine, 3)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_entry SET reason = 'x' WHERE seq = 2"))
    with session_scope(engine) as s, pytest.raises(AuditHeadError, match="broken at entry 2"):
        sign_head(s, KEY)
