"""What the batch endpoints (records, feedback) share: store, map domain errors, count."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import Request
from sqlmodel import Session

from phase4.monitor.api.errors import ApiError
from phase4.monitor.core.settings import Settings
from phase4.monitor.domain.ingest import BatchTooLarge, ForbiddenWrite
from phase4.monitor.domain.schemas import BatchResult, ProbeHealth
from phase4.monitor.store.auth import Principal

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
