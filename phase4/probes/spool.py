"""Bounded on-disk spool (SQLite) for records the monitor has not accepted yet.

Why SQLite: one file, atomic transactions (a crash mid-write cannot corrupt earlier records),
safe concurrent use by a lingering sender thread and a newly opened probe, and it is in the
standard library. Rows are kept in capture order by an AUTOINCREMENT key, so the oldest is
always sent first and dropped first. The count of dropped records lives in the same file (table
``meta``) so evidence of a surveillance gap survives restarts.

Only sanitised wire JSON is stored: PHI keys were stripped and the study id pseudonymised
before a record can reach this file. Every capture passes through it, so a new file is created
readable by its owner only (0600); SQLite gives its -wal and -shm files the same mode.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

from phase4.probes.capture import Pending

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS records ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT, record_id TEXT NOT NULL, body TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO meta (key, value) VALUES ('dropped', 0)",
    "INSERT OR IGNORE INTO meta (key, value) VALUES ('count', 0)",
)
_DELETE_CHUNK = 500  # stay far below SQLite's bound-parameter limit


class Spool:
    """A FIFO of wire records bounded to ``max_records``; overflow drops the oldest."""

    def __init__(self, path: Path | str, max_records: int, busy_timeout_s: float = 5.0) -> None:
        if max_records < 1:
            raise ValueError("spool_max_records must be >= 1")
        self.path = Path(path)
        self.max_records = max_records
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))  # no-op if it exists
            self._conn: sqlite3.Connection | None = sqlite3.connect(
                self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            for statement in _SCHEMA:
                self._conn.execute(statement)
            self._depth = self._recount()
            self._dropped_total = self._read_dropped()
        except (OSError, sqlite3.Error) as exc:
            raise OSError(f"cannot open probe spool {self.path}: {exc}") from exc

    @property
    def depth(self) -> int:
        """Records currently spooled (as of this object's last operation).

        The count lives in ``meta`` and changes in the same transaction as the rows, so it is
        exact across every process sharing the file at O(1) per commit: ``SELECT COUNT(*)``
        scans the table (a quarter of a second at 500,000 rows), too slow for a commit every
        0.1 s during a long outage. It is recounted once at open.
        """
        return self._depth

    @property
    def dropped_total(self) -> int:
        """Records ever dropped from this spool file, across processes."""
        return self._dropped_total

    @property
    def closed(self) -> bool:
        return self._conn is None

    def append(self, items: Sequence[Pending]) -> int:
        """Store ``items`` after existing rows; return how many records were dropped to fit."""
        if not items:
            return 0
        with self._lock:
            conn = self._conn
            if conn is None:
                return len(items)
            overflow = max(0, len(items) - self.max_records)
            items = items[overflow:]
            conn.execute("BEGIN IMMEDIATE")
            try:
                depth = self._read_count()
                excess = depth + len(items) - self.max_records
                dropped = overflow
                if excess > 0:
                    removed = conn.execute(
                        "DELETE FROM records WHERE seq IN "
                        "(SELECT seq FROM records ORDER BY seq LIMIT ?)",
                        (excess,),
                    ).rowcount
                    dropped += removed
                    depth -= removed
                conn.executemany(
                    "INSERT INTO records (record_id, body) VALUES (?, ?)",
                    [(item.record_id, item.body) for item in items],
                )
                depth += len(items)
                conn.execute("UPDATE meta SET value = ? WHERE key = 'count'", (depth,))
                if dropped:
                    conn.execute(
                        "UPDATE meta SET value = value + ? WHERE key = 'dropped'", (dropped,)
                    )
                dropped_total = self._read_dropped()
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self._depth = depth
            self._dropped_total = dropped_total
            return dropped

    def head(self, limit: int) -> list[Pending]:
        """The ``limit`` oldest records, oldest first, with their ``seq``."""
        with self._lock:
            if self._conn is None:
                return []
            rows = self._conn.execute(
                "SELECT record_id, body, seq FROM records ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
            return [Pending(record_id, body, seq) for record_id, body, seq in rows]

    def delete_seqs(self, seqs: Iterable[int]) -> None:
        self._delete("seq", list(seqs))

    def delete_record_ids(self, record_ids: Iterable[str]) -> None:
        self._delete("record_id", list(record_ids))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _delete(self, column: str, values: list[int] | list[str]) -> None:
        if not values:
            return
        with self._lock:
            conn = self._conn
            if conn is None:
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                removed = 0
                for start in range(0, len(values), _DELETE_CHUNK):
                    chunk = values[start : start + _DELETE_CHUNK]
                    marks = ",".join("?" * len(chunk))
                    sql = f"DELETE FROM records WHERE {column} IN ({marks})"
                    removed += conn.execute(sql, chunk).rowcount
                depth = max(0, self._read_count() - removed)
                conn.execute("UPDATE meta SET value = ? WHERE key = 'count'", (depth,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self._depth = depth

    def _recount(self) -> int:
        """Count the rows (a full scan) and store the count in ``meta``; run at open."""
        assert self._conn is not None
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            depth = int(self._conn.execute("SELECT COUNT(*) FROM records").fetchone()[0])
            self._conn.execute("UPDATE meta SET value = ? WHERE key = 'count'", (depth,))
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        return depth

    def _read_count(self) -> int:
        assert self._conn is not None
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'count'").fetchone()
        return int(row[0]) if row else 0

    def _read_dropped(self) -> int:
        assert self._conn is not None
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'dropped'").fetchone()
        return int(row[0]) if row else 0
