"""What the batch endpoints (records, feedback) share: store, map domain errors, count."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import Request
from sqlmodel import Session

from monitor.api.errors import ApiError
from monitor.auth import Principal
from monitor.ingest import BatchTooLarge, ForbiddenWrite
from monitor.schemas import BatchResult, ProbeHealth
from monitor.settings import Settings

Ingest = Callable[..., BatchResult]


def run_batch(
    kind: str,
    ingest: Ingest,
    items: Sequence[Any],
    request: Request,
    session: Session,
    settings: Settings,
    principal: Principal,
    probe: ProbeHealth | None = None,
) -> BatchResult:
    try:
        result = ingest(
            session,
            items,
            principal,
            max_batch=settings.max_batch_records,
            limits=settings.ingest_limits(),
        )
    except BatchTooLarge as exc:
        raise ApiError(413, "batch_too_large", str(exc)) from exc
    except ForbiddenWrite as exc:
        raise ApiError(403, "forbidden", str(exc)) from exc
    session.commit()
    metrics = request.app.state.ingest_metrics
    metrics.observe(kind, result, items)
    metrics.observe_probe(probe, result, items)
    return result
