"""Append-only, hash-chained audit trail (21 CFR 11.10(e): who, what, when, why, old and new value).

Each entry's hash covers its own fields and its predecessor's hash, so editing, deleting or
reordering any entry breaks the chain from that entry on; :func:`verify_chain` names the first
broken entry. Nothing in phase4 updates or deletes an audit row.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from monitor.models import AuditEntry, utcnow

GENESIS_HASH = "0" * 64
# Serialises appends within one process on SQLite; PostgreSQL uses an advisory lock so that
# several API workers cannot take the same sequence number.
_APPEND_LOCK = threading.Lock()
_PG_AUDIT_LOCK_KEY = 0x70_34_61_75  # "p4au"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def entry_digest(
    *,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    entity_type: str,
    entity_id: str,
    reason: str | None,
    old_value: Any,
    new_value: Any,
    prev_hash: str,
) -> str:
    payload = {
        "seq": seq,
        "at": at.isoformat(timespec="microseconds"),
        "actor": actor,
        "action": action,
        "entity_type": entity_type,
        "entity_id": entity_id,
        "reason": reason,
        "old_value": old_value,
        "new_value": new_value,
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


def record_action(
    session: Session,
    *,
    actor: str,
    action: str,
    entity_type: str,
    entity_id: str,
    reason: str | None = None,
    old_value: dict[str, Any] | None = None,
    new_value: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry in the caller's transaction (it commits or rolls back with the change)."""
    with _APPEND_LOCK:
        bind = session.get_bind()
        if bind.dialect.name == "postgresql":
            session.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_AUDIT_LOCK_KEY})
        last = session.exec(
            select(AuditEntry).order_by(col(AuditEntry.seq).desc()).limit(1)
        ).first()
        seq = 1 if last is None else last.seq + 1
        prev_hash = GENESIS_HASH if last is None else last.entry_hash
        # JSON round trip now, so the hash covers exactly what the database will return.
        old_json = json.loads(canonical_json(old_value)) if old_value is not None else None
        new_json = json.loads(canonical_json(new_value)) if new_value is not None else None
        at = utcnow()
        entry = AuditEntry(
            seq=seq,
            at=at,
            actor=actor,
            action=action,
            entity_type=entity_type,
            entity_id=entity_id,
            reason=reason,
            old_value=old_json,
            new_value=new_json,
            prev_hash=prev_hash,
            entry_hash=entry_digest(
                seq=seq,
                at=at,
                actor=actor,
                action=action,
                entity_type=entity_type,
                entity_id=entity_id,
                reason=reason,
                old_value=old_json,
                new_value=new_json,
                prev_hash=prev_hash,
            ),
        )
        session.add(entry)
        session.flush()
        return entry


@dataclass(frozen=True)
class ChainVerdict:
    ok: bool
    entries_checked: int
    first_broken_seq: int | None = None
    problem: str | None = None
    head_hash: str = GENESIS_HASH


def verify_chain(session: Session) -> ChainVerdict:
    """Recompute the chain in sequence order and name the first entry that does not fit."""
    prev_hash = GENESIS_HASH
    expected_seq = 1
    checked = 0
    for entry in session.exec(select(AuditEntry).order_by(col(AuditEntry.seq))):
        if entry.seq != expected_seq:
            return ChainVerdict(
                False,
                checked,
                expected_seq,
                f"entry {expected_seq} is missing (next is {entry.seq})",
            )
        if entry.prev_hash != prev_hash:
            return ChainVerdict(
                False, checked, entry.seq, "its prev_hash does not match the entry before it"
            )
        digest = entry_digest(
            seq=entry.seq,
            at=entry.at,
            actor=entry.actor,
            action=entry.action,
            entity_type=entry.entity_type,
            entity_id=entry.entity_id,
            reason=entry.reason,
            old_value=entry.old_value,
            new_value=entry.new_value,
            prev_hash=entry.prev_hash,
        )
        if digest != entry.entry_hash:
            return ChainVerdict(False, checked, entry.seq, "its content does not match its hash")
        prev_hash = entry.entry_hash
        expected_seq += 1
        checked += 1
    return ChainVerdict(True, checked, head_hash=prev_hash)
