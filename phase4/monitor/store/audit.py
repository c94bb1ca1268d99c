"""Append-only, hash-chained audit trail (21 CFR 11.10(e): who, what, when, why, old and new value).

Each entry's hash covers its own fields and its predecessor's hash, so editing, deleting or
reordering any entry breaks the chain from that entry on; :func:`verify_chain` names the first
broken entry. Nothing in phase4 updates or deletes an audit row.

A chain alone cannot show that its *last* entries were deleted (what is left is still a valid
chain). A signed head closes that gap: :func:`sign_head` takes the newest entry's sequence
number and hash and signs them (HMAC-SHA256) with a key kept outside the database
(``PHASE4_AUDIT_KEY``); ``verify_chain(session, head=..., key=...)`` then also reports entries
missing at the end and a head that was forged or signed with another key. Keep signed heads
somewhere the database's administrators cannot rewrite (an export, a ticket, a WORM bucket).

Lock order. An append takes the database's lock on the whole trail, held to the end of the
transaction (PostgreSQL: an advisory lock; SQLite: the database's write lock). Every transaction
that writes rows and audits takes its row locks first (the deployment, its detector state, its
alerts in id order: phase4/monitor/store/locks.py) and the trail's lock last: :func:`record_action`
flushes
the session's pending writes before it asks for the lock, and callers audit after their last
write of existing rows. Taken the other way round by two transactions (one holding the trail and
waiting for an alert row, the other holding the row and waiting for the trail) the two would
deadlock: PostgreSQL would abort one of them (a reviewer's acknowledgement refused with a server
error, or an escalation lost), SQLite would fail one with "database is locked" after its busy
timeout.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from phase4.monitor.store.models import AuditEntry, utcnow

GENESIS_HASH = "0" * 64
# Serialises appends within one process, taken after the database's lock on the trail (which
# serialises processes: several API workers must not take the same sequence number).
_APPEND_LOCK = threading.Lock()
_PG_AUDIT_LOCK_KEY = 0x70_34_61_75  # "p4au"
AUDIT_KEY_ENV = "PHASE4_AUDIT_KEY"
MIN_KEY_BYTES = 16
HEAD_FORMAT = "phase4-audit-head/1"
HEAD_ALGORITHM = "HMAC-SHA256"


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


def _lock_trail(session: Session) -> None:
    """The database's lock on the trail, held to the end of the transaction and taken before
    the in-process lock, so that no thread holds that lock while it waits for the database.

    PostgreSQL: an advisory lock. SQLite: the database's write lock, which a transaction that
    has written already holds; one that has not (an export that only audits) takes it now with
    ``BEGIN IMMEDIATE``. Waiting for it at its INSERT instead, inside the in-process lock, it
    would deadlock with a transaction holding the write lock and waiting for that lock, until
    the busy timeout failed it with "database is locked"."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_AUDIT_LOCK_KEY})
    elif connection.dialect.name == "sqlite":
        # pysqlite opens its transaction at the first write, so "not in a transaction" means
        # "has not written". (Inside a SAVEPOINT it reports a transaction without the write
        # lock: phase4 audits in no savepoint.)
        dbapi = connection.connection.dbapi_connection
        if dbapi is not None and not dbapi.in_transaction:  # type: ignore[attr-defined]
            connection.exec_driver_sql("BEGIN IMMEDIATE")


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
    # Row locks before the trail's lock (see "Lock order" above): pending UPDATEs of the
    # caller's rows reach the database now, not at the autoflush after the lock.
    session.flush()
    _lock_trail(session)
    with _APPEND_LOCK:
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


class AuditHeadError(ValueError):
    """A signed head cannot be made, read or checked (no key, a bad file, a broken chain)."""


@dataclass(frozen=True)
class ChainVerdict:
    ok: bool
    entries_checked: int
    first_broken_seq: int | None = None
    problem: str | None = None
    head_hash: str = GENESIS_HASH
    # True when a signed head was given and its signature and entry both matched.
    head_verified: bool = False


@dataclass(frozen=True)
class SignedHead:
    """The newest audit entry (sequence number and hash) at ``signed_at``, signed with a key.

    ``seq`` 0 with the genesis hash is the head of an empty trail.
    """

    seq: int
    head_hash: str
    signed_at: datetime
    signature: str
    algorithm: str = HEAD_ALGORITHM

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": HEAD_FORMAT,
            "algorithm": self.algorithm,
            "seq": self.seq,
            "head_hash": self.head_hash,
            "signed_at": self.signed_at.isoformat(timespec="microseconds"),
            "signature": self.signature,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SignedHead:
        if not isinstance(data, Mapping):
            raise AuditHeadError("a signed head must be a JSON object")
        if data.get("format") != HEAD_FORMAT:
            raise AuditHeadError(
                f"not a phase4 signed audit head (format {data.get('format')!r}, "
                f"expected {HEAD_FORMAT!r})"
            )
        if data.get("algorithm") != HEAD_ALGORITHM:
            raise AuditHeadError(f"unsupported head algorithm {data.get('algorithm')!r}")
        missing = [k for k in ("seq", "head_hash", "signed_at", "signature") if k not in data]
        if missing:
            raise AuditHeadError(f"signed head lacks {', '.join(missing)}")
        seq, head_hash, signature = data["seq"], data["head_hash"], data["signature"]
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise AuditHeadError(f"signed head seq must be a whole number >= 0, not {seq!r}")
        for name, value in (("head_hash", head_hash), ("signature", signature)):
            if not isinstance(value, str) or len(value) != 64:
                raise AuditHeadError(f"signed head {name} must be 64 hex digits")
        try:
            signed_at = datetime.fromisoformat(str(data["signed_at"]))
        except ValueError as exc:
            raise AuditHeadError(f"signed head signed_at is not an ISO time: {exc}") from exc
        if signed_at.tzinfo is None:
            raise AuditHeadError("signed head signed_at has no time zone")
        return cls(seq=seq, head_hash=head_hash, signed_at=signed_at, signature=signature)

    @classmethod
    def from_json(cls, text: str) -> SignedHead:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise AuditHeadError(f"signed head is not valid JSON: {exc}") from exc
        return cls.from_dict(data)


def audit_key_from_env(environ: Mapping[str, str] | None = None) -> bytes | None:
    """The head-signing key from ``PHASE4_AUDIT_KEY`` (its UTF-8 bytes), or None if unset.

    A key shorter than 16 bytes is refused: generate one with
    ``python -c "import secrets; print(secrets.token_hex(32))"``.
    """
    value = (os.environ if environ is None else environ).get(AUDIT_KEY_ENV, "")
    if not value:
        return None
    key = value.encode()
    check_audit_key(key)
    return key


def check_audit_key(key: bytes) -> None:
    if not isinstance(key, bytes) or len(key) < MIN_KEY_BYTES:
        raise AuditHeadError(
            f"the audit key must be at least {MIN_KEY_BYTES} bytes ({AUDIT_KEY_ENV}); generate "
            'one with: python -c "import secrets; print(secrets.token_hex(32))"'
        )


def _head_signature(key: bytes, seq: int, head_hash: str, signed_at: datetime) -> str:
    message = canonical_json(
        {
            "format": HEAD_FORMAT,
            "seq": seq,
            "head_hash": head_hash,
            "signed_at": signed_at.isoformat(timespec="microseconds"),
        }
    )
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def sign_head(session: Session, key: bytes) -> SignedHead:
    """Sign the newest entry of an intact chain. A broken chain is refused: signing it would
    vouch for the tampering."""
    check_audit_key(key)
    verdict = verify_chain(session)
    if not verdict.ok:
        raise AuditHeadError(
            f"the audit trail is broken at entry {verdict.first_broken_seq} ({verdict.problem}); "
            "a head is signed only for an intact chain"
        )
    signed_at = utcnow()
    seq = verdict.entries_checked
    return SignedHead(
        seq=seq,
        head_hash=verdict.head_hash,
        signed_at=signed_at,
        signature=_head_signature(key, seq, verdict.head_hash, signed_at),
    )


def head_signature_ok(head: SignedHead, key: bytes) -> bool:
    """True when ``head`` was signed with ``key`` and not altered since."""
    check_audit_key(key)
    expected = _head_signature(key, head.seq, head.head_hash, head.signed_at)
    return head.algorithm == HEAD_ALGORITHM and hmac.compare_digest(expected, head.signature)


def write_head(path: Path, head: SignedHead) -> Path:
    """Write a signed head as JSON (via a temporary file, so a reader never sees half of it)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(head.to_json(), encoding="utf-8")
    tmp.replace(path)
    return path


def read_head(path: Path) -> SignedHead:
    """Read a signed head written by :func:`write_head`; a bad file raises AuditHeadError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AuditHeadError(f"cannot read signed head {path}: {exc.strerror or exc}") from exc
    try:
        return SignedHead.from_json(text)
    except AuditHeadError as exc:
        raise AuditHeadError(f"{path}: {exc}") from exc


# Entries are read in chunks of this many, so that one unreadable row is found without loading
# the trail twice.
_READ_CHUNK = 1000


@dataclass(frozen=True)
class _UnreadableEntry:
    """A stored row whose fields the column types cannot read (e.g. a malformed timestamp
    written into SQLite's text column behind the application's back)."""

    seq: int
    problem: str


def _unreadable(session: Session, seq: int) -> _UnreadableEntry:
    """Name the first column of entry ``seq`` that cannot be read, without echoing its value."""
    for column in AuditEntry.__table__.columns:  # type: ignore[attr-defined]
        try:
            session.exec(select(column).where(col(AuditEntry.seq) == seq)).one()
        except (ValueError, TypeError) as exc:
            return _UnreadableEntry(
                seq, f"its stored {column.name!r} cannot be read ({type(exc).__name__})"
            )
    return _UnreadableEntry(seq, "its stored fields cannot be read")


def _stored_entries(session: Session) -> Iterator[AuditEntry | _UnreadableEntry]:
    """The trail in sequence order; a row that cannot be read stands as an _UnreadableEntry."""
    last_seq = 0
    while True:
        seqs = list(
            session.exec(
                select(AuditEntry.seq)
                .where(col(AuditEntry.seq) > last_seq)
                .order_by(col(AuditEntry.seq))
                .limit(_READ_CHUNK)
            )
        )
        if not seqs:
            return
        try:
            yield from session.exec(
                select(AuditEntry)
                .where(col(AuditEntry.seq).in_(seqs))
                .order_by(col(AuditEntry.seq))
            ).all()
        except (ValueError, TypeError):
            # A result processor refused a stored value (SQLite keeps whatever text was written).
            # Read the chunk row by row to name the first entry that cannot be read.
            for seq in seqs:
                try:
                    yield session.exec(select(AuditEntry).where(col(AuditEntry.seq) == seq)).one()
                except (ValueError, TypeError):
                    yield _unreadable(session, seq)
                    return
        last_seq = seqs[-1]


def _walk_chain(session: Session) -> tuple[ChainVerdict, dict[int, str]]:
    """Recompute the chain; also return each verified entry's hash by sequence number."""
    hashes: dict[int, str] = {}
    prev_hash = GENESIS_HASH
    expected_seq = 1
    checked = 0
    for entry in _stored_entries(session):
        if entry.seq != expected_seq:
            return ChainVerdict(
                False,
                checked,
                expected_seq,
                f"entry {expected_seq} is missing (next is {entry.seq})",
            ), hashes
        if isinstance(entry, _UnreadableEntry):
            return ChainVerdict(False, checked, entry.seq, entry.problem), hashes
        if entry.prev_hash != prev_hash:
            return ChainVerdict(
                False, checked, entry.seq, "its prev_hash does not match the entry before it"
            ), hashes
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
            return ChainVerdict(
                False, checked, entry.seq, "its content does not match its hash"
            ), hashes
        hashes[entry.seq] = entry.entry_hash
        prev_hash = entry.entry_hash
        expected_seq += 1
        checked += 1
    return ChainVerdict(True, checked, head_hash=prev_hash), hashes


def verify_chain(
    session: Session, *, head: SignedHead | None = None, key: bytes | None = None
) -> ChainVerdict:
    """Recompute the chain in sequence order and name the first entry that does not fit.

    With a signed ``head`` (and its ``key``; default ``PHASE4_AUDIT_KEY``), also check that the
    head's signature is genuine and that the chain still holds the entry it names, with the same
    hash: this catches the deletion of the newest entries, which the chain alone cannot see.
    Entries appended after the head was signed are fine.
    """
    if head is not None:
        key = key if key is not None else audit_key_from_env()
        if key is None:
            raise AuditHeadError(
                f"a signed head is checked with its key: set {AUDIT_KEY_ENV} or pass key="
            )
        if not head_signature_ok(head, key):
            return ChainVerdict(
                False,
                0,
                head.seq,
                f"the signed head (entry {head.seq}, signed {head.signed_at.isoformat()}) has a "
                "bad signature: it was altered or signed with another key",
            )
    verdict, hashes = _walk_chain(session)
    if head is None or not verdict.ok:
        return verdict
    last = verdict.entries_checked
    if head.seq > last:
        first_missing = last + 1
        span = (
            f"entry {first_missing} is"
            if first_missing == head.seq
            else f"entries {first_missing}-{head.seq} are"
        )
        return ChainVerdict(
            False,
            last,
            first_missing,
            f"{span} missing at the end: the chain ends at entry {last} but the head signed "
            f"{head.signed_at.isoformat()} names entry {head.seq} (truncated)",
            head_hash=verdict.head_hash,
        )
    expected = GENESIS_HASH if head.seq == 0 else hashes[head.seq]
    if not hmac.compare_digest(expected, head.head_hash):
        return ChainVerdict(
            False,
            last,
            head.seq,
            f"entry {head.seq}'s hash differs from the signed head's: the chain up to it was "
            "rewritten since the head was signed",
            head_hash=verdict.head_hash,
        )
    return ChainVerdict(True, last, head_hash=verdict.head_hash, head_verified=True)
