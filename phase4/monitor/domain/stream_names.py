"""The feature and output names each deployment has sent, and the kind of each one's first value.

Detection turns every top-level feature and output into a stream whose kind comes from the
first records: numbers are numeric, booleans binary, strings categorical (``infer_streams`` in
``phase4.monitor.surveillance.detection``). Two things follow for ingest, both read from the
``deployment_stream``
table (one indexed query per batch, at most the cap's rows per deployment) rather than from the
records:

- every new name is a new stream, with detectors and state: the distinct names of one
  deployment are capped, so a client cannot grow its detector state without bound;
- a string (or a JSON object or array) sent where the stream is numeric is a value its
  detectors cannot use, and is refused with the field named.

The cap is checked before the batch is stored; two batches stored at the same instant can each
add names the other did not see, so it can be passed by the new names of concurrent batches.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from phase4.monitor.store.models import DeploymentStream, utcnow

_TABLE: sa.Table = DeploymentStream.__table__  # type: ignore[assignment]


def kind_of(value: Any) -> str | None:
    """The stream kind detection infers from a value, or None for one it does not watch."""
    if isinstance(value, bool):
        return "binary"
    if isinstance(value, int | float):
        return "numeric"
    if isinstance(value, str):
        return "categorical"
    return None


@dataclass
class KnownStreams:
    """The names (and kinds) of the batch's deployments: those stored and those this batch adds."""

    cap: int
    kinds: dict[str, dict[str, str | None]] = field(default_factory=dict)
    new_rows: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, session: Session, deployment_ids: Iterable[str], cap: int) -> KnownStreams:
        ids = set(deployment_ids)
        known = cls(cap=cap, kinds={d: {} for d in ids})
        if ids:
            rows = session.execute(
                sa.select(_TABLE.c.deployment_id, _TABLE.c.name, _TABLE.c.kind).where(
                    _TABLE.c.deployment_id.in_(ids)
                )
            )
            for deployment_id, name, kind in rows:
                known.kinds[deployment_id][name] = kind
        return known

    def admit(self, deployment_id: str, sections: Mapping[str, Mapping[str, Any]]) -> str | None:
        """None if a record with these features/outputs fits the deployment's streams (its new
        names are then remembered), else why not, naming the field."""
        known = self.kinds.setdefault(deployment_id, {})
        new: dict[str, str | None] = {}
        for section, values in sections.items():
            for key, value in values.items():
                if value is None:
                    continue
                name = f"{section}.{key}"
                if name not in known:
                    new.setdefault(name, kind_of(value))
                elif known[name] == "numeric" and not isinstance(value, int | float):
                    what = "a string" if isinstance(value, str) else "a JSON object or array"
                    return (
                        f"{name}: {what}, but deployment {deployment_id!r} sends numbers in "
                        "this stream (its detectors could not use it)"
                    )
        if new and len(known) + len(new) > self.cap:
            return (
                f"{next(iter(new))}: deployment {deployment_id!r} has {len(known)} distinct "
                f"feature and output names and this record adds {len(new)}; at most {self.cap} "
                "(PHASE4_MAX_STREAMS_PER_DEPLOYMENT)"
            )
        now = utcnow()
        for name, kind in new.items():
            known[name] = kind
            self.new_rows.append(
                {"deployment_id": deployment_id, "name": name, "kind": kind, "first_seen_at": now}
            )
        return None

    def store(self, session: Session) -> None:
        """Insert the names this batch added (a name a concurrent batch added first is kept
        as that batch stored it)."""
        if not self.new_rows:
            return
        dialect = session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        stmt = insert(_TABLE).on_conflict_do_nothing(index_elements=["deployment_id", "name"])
        session.execute(stmt, self.new_rows)
