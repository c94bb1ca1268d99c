"""Storing batches of records and feedback exactly once.

Delivery from probes is at-least-once (they retry until they hear back). Storage is made
exactly-once by the client-generated id: ``INSERT ... ON CONFLICT (id) DO NOTHING RETURNING``
stores each id once even when two deliveries of it race, and tells which rows were new.

Authorisation is per request (a token that may not write one of the batch's deployments gets
403 for the batch: that is a misconfigured probe, not a bad record); validation is per item,
against the limits of ``phase4.monitor.core.limits`` and the deployment's streams
(``phase4.monitor.domain.stream_names``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from phase4.monitor.core.limits import DEFAULT_LIMITS, IngestLimits
from phase4.monitor.domain.revalidation import note_record_versions
from phase4.monitor.domain.schemas import BatchResult, FeedbackIn, ItemResult, RecordIn
from phase4.monitor.domain.stream_names import KnownStreams
from phase4.monitor.store.auth import Principal
from phase4.monitor.store.models import Deployment, Feedback, InferenceRecord, utcnow

_RECORD = TypeAdapter(RecordIn)
_FEEDBACK = TypeAdapter(FeedbackIn)


class BatchTooLarge(ValueError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"batch has {size} items; at most {limit} are accepted per request")
        self.size = size
        self.limit = limit


class ForbiddenWrite(PermissionError):
    """The token may not write for (some of) the batch's deployments."""


MESSAGE_PROBLEMS_MAX = 5
_PART_CHARS_MAX = 100


def _place(part: object) -> str:
    """One part of a field path, printable and short: a client's key may hold a newline."""
    text = str(part)
    if not text.isprintable():
        text = repr(text)[1:-1]
    return text if len(text) <= _PART_CHARS_MAX else text[: _PART_CHARS_MAX - 3] + "..."


def describe_validation_error(exc: ValidationError) -> str:
    """One line: 'field.path: message' per problem, the first few of them."""
    parts = []
    errors = exc.errors(include_url=False)
    for err in errors[:MESSAGE_PROBLEMS_MAX]:
        loc = ".".join(_place(p) for p in err["loc"]) or "item"
        msg = str(err["msg"]).removeprefix("Value error, ")
        if not msg.isprintable():
            msg = repr(msg)[1:-1]
        # The limit checks name the exact place already (features.x, outputs.a[2]).
        names_place = msg.startswith(loc) and msg[len(loc) : len(loc) + 1] in (".", ":", "[", " ")
        parts.append(msg if names_place else f"{loc}: {msg}")
    if len(errors) > MESSAGE_PROBLEMS_MAX:
        parts.append(f"and {len(errors) - MESSAGE_PROBLEMS_MAX} more problems")
    return "; ".join(parts)


def _client_id(raw: Any, key: str) -> str | None:
    value = raw.get(key) if isinstance(raw, dict) else None
    return value if isinstance(value, str) and 0 < len(value) <= 64 else None


def _insert_ignoring_conflicts(
    session: Session, table: sa.Table, rows: list[dict[str, Any]], key: str
) -> set[str]:
    """Insert rows, skipping ids that already exist; return the ids actually inserted."""
    if not rows:
        return set()
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # An executemany (not one multi-VALUES statement): SQLAlchemy batches it as
    # "insertmanyvalues" with a compiled statement that is cached across calls.
    stmt = insert(table).on_conflict_do_nothing(index_elements=[key]).returning(table.c[key])
    return set(session.execute(stmt, rows).scalars())


@dataclass
class _Pending:
    results: list[ItemResult | None]
    rows: list[dict[str, Any]]
    row_index: list[int]


def _finish(session: Session, table: sa.Table, key: str, pending: _Pending) -> BatchResult:
    inserted = _insert_ignoring_conflicts(session, table, pending.rows, key)
    for index, row in zip(pending.row_index, pending.rows, strict=True):
        status = "created" if row[key] in inserted else "duplicate"
        pending.results[index] = ItemResult(index=index, id=row[key], status=status)
    results = [r for r in pending.results if r is not None]
    return BatchResult(
        created=sum(r.status == "created" for r in results),
        duplicates=sum(r.status == "duplicate" for r in results),
        rejected=sum(r.status == "rejected" for r in results),
        results=results,
    )


def _mark_in_batch_duplicates(pending: _Pending, key: str) -> None:
    seen: set[str] = set()
    keep_rows, keep_index = [], []
    for index, row in zip(pending.row_index, pending.rows, strict=True):
        if row[key] in seen:
            pending.results[index] = ItemResult(index=index, id=row[key], status="duplicate")
            continue
        seen.add(row[key])
        keep_rows.append(row)
        keep_index.append(index)
    pending.rows, pending.row_index = keep_rows, keep_index


def ingest_records(
    session: Session,
    items: Sequence[Any],
    principal: Principal,
    *,
    max_batch: int,
    limits: IngestLimits = DEFAULT_LIMITS,
) -> BatchResult:
    if len(items) > max_batch:
        raise BatchTooLarge(len(items), max_batch)
    pending = _Pending(results=[None] * len(items), rows=[], row_index=[])
    valid: list[tuple[int, RecordIn]] = []
    received_at = utcnow()
    context = {"limits": limits, "now": received_at}
    for index, raw in enumerate(items):
        try:
            valid.append((index, _RECORD.validate_python(raw, context=context)))
        except ValidationError as exc:
            pending.results[index] = ItemResult(
                index=index,
                id=_client_id(raw, "record_id"),
                status="rejected",
                error=describe_validation_error(exc),
            )

    wanted = {rec.deployment for _, rec in valid}
    deployments = {
        d.id: d for d in session.exec(select(Deployment).where(col(Deployment.id).in_(wanted)))
    }
    forbidden = sorted(
        d.id for d in deployments.values() if not principal.can_write_site(d.site_id)
    )
    if forbidden:
        raise ForbiddenWrite(
            f"token {principal.name!r} (role {principal.role.value}, site {principal.site_id}) "
            f"may not write records for deployment(s) {', '.join(forbidden)}"
        )

    streams = KnownStreams.load(session, deployments, limits.max_streams_per_deployment)
    for index, rec in valid:
        if rec.deployment not in deployments:
            pending.results[index] = ItemResult(
                index=index,
                id=rec.record_id,
                status="rejected",
                error=f"deployment: unknown deployment {rec.deployment!r}",
            )
            continue
        refusal = streams.admit(rec.deployment, {"features": rec.features, "outputs": rec.outputs})
        if refusal is not None:
            pending.results[index] = ItemResult(
                index=index, id=rec.record_id, status="rejected", error=refusal
            )
            continue
        pending.row_index.append(index)
        pending.rows.append(
            {
                "record_id": rec.record_id,
                "deployment_id": rec.deployment,
                "study_pseudonym": rec.study_pseudonym,
                "acquired_at": rec.acquired_at or rec.inferred_at,
                "inferred_at": rec.inferred_at,
                "received_at": received_at,
                "features": rec.features,
                "outputs": rec.outputs,
                "latency_s": rec.latency_s,
                "error": rec.error,
                "model_version": rec.model_version,
                "shadow_outputs": rec.shadow_outputs,
            }
        )
    _mark_in_batch_duplicates(pending, "record_id")
    streams.store(session)
    result = _finish(session, InferenceRecord.__table__, "record_id", pending)  # type: ignore[arg-type]
    versions: dict[str, set[str]] = {}
    for row in pending.rows:
        if row["model_version"] is not None:
            versions.setdefault(row["deployment_id"], set()).add(row["model_version"])
    if versions:  # a version other than the accepted one opens a revalidation
        note_record_versions(session, versions, actor=principal.name)
    return result


def _target(fb: FeedbackIn) -> tuple[str, ...]:
    if fb.record_id is not None:
        return ("record", fb.record_id)
    return ("study", fb.deployment or "", fb.study_pseudonym or "")


def _resolve_feedback_targets(
    session: Session, items: Sequence[FeedbackIn]
) -> dict[tuple[str, ...], str]:
    """Map each item's target (a record id, or a study in a deployment) to a stored record id.
    A study with several records (the AI re-run) resolves to its most recent inference."""
    found: dict[tuple[str, ...], str] = {}
    record_ids = {fb.record_id for fb in items if fb.record_id is not None}
    if record_ids:
        for rid in session.exec(
            select(InferenceRecord.record_id).where(col(InferenceRecord.record_id).in_(record_ids))
        ):
            found[("record", rid)] = rid
    pseudonyms = {fb.study_pseudonym for fb in items if fb.record_id is None}
    if pseudonyms:
        rows = session.execute(
            sa.select(
                InferenceRecord.deployment_id,
                InferenceRecord.study_pseudonym,
                InferenceRecord.record_id,
            )
            .where(col(InferenceRecord.study_pseudonym).in_(pseudonyms))
            .order_by(col(InferenceRecord.inferred_at))
        ).all()
        for dep, pseudonym, rid in rows:  # later inferences overwrite earlier ones
            found[("study", dep, pseudonym)] = rid
    return found


def ingest_feedback(
    session: Session,
    items: Sequence[Any],
    principal: Principal,
    *,
    max_batch: int,
    limits: IngestLimits = DEFAULT_LIMITS,
) -> BatchResult:
    if len(items) > max_batch:
        raise BatchTooLarge(len(items), max_batch)
    pending = _Pending(results=[None] * len(items), rows=[], row_index=[])
    valid: list[tuple[int, FeedbackIn]] = []
    received_at = utcnow()
    context = {"limits": limits, "now": received_at}
    for index, raw in enumerate(items):
        try:
            valid.append((index, _FEEDBACK.validate_python(raw, context=context)))
        except ValidationError as exc:
            pending.results[index] = ItemResult(
                index=index,
                id=_client_id(raw, "feedback_id"),
                status="rejected",
                error=describe_validation_error(exc),
            )

    record_of = _resolve_feedback_targets(session, [fb for _, fb in valid])
    site_of_record = dict(
        session.execute(
            sa.select(InferenceRecord.record_id, Deployment.site_id)
            .join(Deployment, col(Deployment.id) == col(InferenceRecord.deployment_id))
            .where(col(InferenceRecord.record_id).in_(set(record_of.values())))
        ).all()
    )
    forbidden = sorted(
        {site for site in site_of_record.values() if not principal.can_write_site(site)}
    )
    if forbidden:
        raise ForbiddenWrite(
            f"token {principal.name!r} (role {principal.role.value}) may not write feedback "
            f"for records of site(s) {', '.join(forbidden)}"
        )

    for index, fb in valid:
        record_id = record_of.get(_target(fb))
        if record_id is None:
            what = (
                f"record_id: no record {fb.record_id!r} has been received"
                if fb.record_id
                else f"study_pseudonym: no record of this study in deployment {fb.deployment!r}"
            )
            pending.results[index] = ItemResult(
                index=index, id=fb.feedback_id, status="rejected", error=what
            )
            continue
        pending.row_index.append(index)
        pending.rows.append(
            {
                "feedback_id": fb.feedback_id,
                "record_id": record_id,
                "verdict": fb.verdict,
                "ground_truth": fb.ground_truth,
                "dice": fb.dice,
                "given_at": fb.given_at,
                "received_at": received_at,
            }
        )
    _mark_in_batch_duplicates(pending, "feedback_id")
    return _finish(session, Feedback.__table__, "feedback_id", pending)  # type: ignore[arg-type]
