"""POST /v1/records (batched, idempotent ingest) and GET /v1/records (paged, by deployment)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from sqlalchemy import and_, or_
from sqlmodel import col, select

from phase4.monitor.api.batches import run_batch
from phase4.monitor.api.deps import Reader, SessionDep, SettingsDep, Writer
from phase4.monitor.api.errors import ApiError, error_responses
from phase4.monitor.domain.ingest import ingest_records
from phase4.monitor.domain.schemas import (
    BatchResult,
    DeploymentId,
    RecordBatch,
    RecordOut,
    RecordPage,
)
from phase4.monitor.store.models import Deployment, InferenceRecord

router = APIRouter(prefix="/v1/records", tags=["records"])


@router.post(
    "",
    response_model=BatchResult,
    summary="Ingest a batch of inference records",
    description="Up to 1,000 records. Each item is validated on its own: invalid items are "
    "rejected with a message, valid ones are stored. Re-sending a record_id is a no-op "
    "(status 'duplicate'), so at-least-once delivery gives exactly-once storage. A probe may "
    "add its health (`probe`: queue and spool depth), exported on /metrics.",
    responses=error_responses(401, 403, 413, 422),
)
def post_records(
    batch: RecordBatch,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: Writer,
) -> BatchResult:
    return run_batch(
        "records",
        ingest_records,
        batch.records,
        request,
        session,
        settings,
        principal,
        probe=batch.probe,
    )


def _encode_cursor(acquired_at: datetime, row_id: int) -> str:
    return base64.urlsafe_b64encode(f"{acquired_at.isoformat()}|{row_id}".encode()).decode()


_ROW_ID_MAX = 2**63 - 1  # a BIGINT; SQLite's INTEGER


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The (acquired_at, row id) a cursor carries; 422 for anything this API did not write
    (a naive time, a time out of range, a row id of 30 digits)."""
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
        stamp, row_text = text.rsplit("|", 1)
        at, row_id = datetime.fromisoformat(stamp), int(row_text)
        if at.tzinfo is None or not 0 <= row_id <= _ROW_ID_MAX:
            raise ValueError("not a cursor")
        return at.astimezone(UTC), row_id
    except (ValueError, UnicodeError, OverflowError) as exc:
        raise ApiError(422, "invalid_request", "cursor: not a cursor this API returned") from exc


def _since_utc(since: datetime) -> datetime:
    if since.tzinfo is None:
        raise ApiError(422, "invalid_request", "since: give a time zone, e.g. 2026-01-01T00:00:00Z")
    try:
        return since.astimezone(UTC)
    except OverflowError as exc:
        raise ApiError(422, "invalid_request", "since: out of the range of dates") from exc


@router.get(
    "",
    response_model=RecordPage,
    summary="Records of one deployment in acquisition-time order, paged",
    responses=error_responses(401, 403, 404, 422),
)
def get_records(
    session: SessionDep,
    settings: SettingsDep,
    principal: Reader,
    deployment: Annotated[DeploymentId, Query(description="Deployment id")],
    since: Annotated[
        datetime | None,
        Query(description="Only records acquired at or after this (ISO 8601 with zone)"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> RecordPage:
    after = _decode_cursor(cursor) if cursor is not None else None
    dep = session.get(Deployment, deployment)
    if dep is None:
        raise ApiError(404, "not_found", f"unknown deployment {deployment!r}")
    if not principal.can_read_site(dep.site_id):
        raise ApiError(
            403, "forbidden", f"token {principal.name!r} may not read site {dep.site_id!r}"
        )
    limit = min(limit, settings.records_page_size_max)
    query = select(InferenceRecord).where(InferenceRecord.deployment_id == deployment)
    if since is not None:
        query = query.where(col(InferenceRecord.acquired_at) >= _since_utc(since))
    if after is not None:
        after_at, after_id = after
        query = query.where(
            or_(
                col(InferenceRecord.acquired_at) > after_at,
                and_(
                    col(InferenceRecord.acquired_at) == after_at, col(InferenceRecord.id) > after_id
                ),
            )
        )
    rows = session.exec(
        query.order_by(col(InferenceRecord.acquired_at), col(InferenceRecord.id)).limit(limit + 1)
    ).all()
    page = rows[:limit]
    next_cursor = (
        _encode_cursor(page[-1].acquired_at, page[-1].id or 0) if len(rows) > limit else None
    )
    return RecordPage(
        records=[
            RecordOut(
                record_id=r.record_id,
                deployment=r.deployment_id,
                study_pseudonym=r.study_pseudonym,
                acquired_at=r.acquired_at,
                inferred_at=r.inferred_at,
                received_at=r.received_at,
                features=r.features,
                outputs=r.outputs,
                latency_s=r.latency_s,
                error=r.error,
                model_version=r.model_version,
                shadow_outputs=r.shadow_outputs,
            )
            for r in page
        ],
        next_cursor=next_cursor,
    )
