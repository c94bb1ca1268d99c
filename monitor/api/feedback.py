"""POST /v1/feedback: later verdicts on records (batched, idempotent)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from monitor.api.deps import SessionDep, SettingsDep, Writer
from monitor.api.errors import ApiError, error_responses
from monitor.ingest import BatchTooLarge, ForbiddenWrite, ingest_feedback
from monitor.schemas import BatchResult, FeedbackBatch

router = APIRouter(prefix="/v1/feedback", tags=["feedback"])


@router.post(
    "",
    response_model=BatchResult,
    summary="Ingest physician verdicts and ground truth for earlier records",
    description="Up to 1,000 items, validated one by one; re-sending a feedback_id is a no-op. "
    "Feedback for a record the monitor has not received is rejected.",
    responses=error_responses(401, 403, 413, 422),
)
def post_feedback(
    batch: FeedbackBatch,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: Writer,
) -> BatchResult:
    try:
        result = ingest_feedback(
            session, batch.feedback, principal, max_batch=settings.max_batch_records
        )
    except BatchTooLarge as exc:
        raise ApiError(413, "batch_too_large", str(exc)) from exc
    except ForbiddenWrite as exc:
        raise ApiError(403, "forbidden", str(exc)) from exc
    session.commit()
    request.app.state.ingest_metrics.observe("feedback", result)
    return result
