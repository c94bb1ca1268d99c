"""POST /v1/feedback: later verdicts on records (batched, idempotent)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from phase4.monitor.api.batches import run_batch
from phase4.monitor.api.deps import SessionDep, SettingsDep, Writer
from phase4.monitor.api.errors import error_responses
from phase4.monitor.domain.ingest import ingest_feedback
from phase4.monitor.domain.schemas import BatchResult, FeedbackBatch

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
    return run_batch(
        "feedback", ingest_feedback, batch.feedback, request, session, settings, principal
    )
