"""Phantom QC: results computed by a probe or by ``phase4 phantom analyze``, tolerances, sign-off.

Writing results needs a probe token of the device's site (or admin); setting tolerances and
signing off results need a reviewer (a named person) or admin. Both are audited.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlmodel import col, select

from phase4.monitor.api.deps import MAX_DB_ID, Authorized, Caller, SessionDep, SettingsDep, query_id
from phase4.monitor.api.errors import ApiError, error_responses
from phase4.monitor.domain.ingest import BatchTooLarge, ForbiddenWrite
from phase4.monitor.domain.phantom_schemas import PhantomBatch, SignOffIn, ToleranceIn
from phase4.monitor.domain.schemas import BatchResult
from phase4.monitor.store.models import Device, PhantomResult, PhantomTolerance
from phase4.monitor.surveillance.phantom_qc import set_tolerance, sign_off, store_phantom_results

router = APIRouter(tags=["phantom QC"])
MAX_PHANTOM_BATCH = 100


class DeviceOut(BaseModel):
    id: int
    site: str
    manufacturer: str
    model: str
    serial: str
    modality: str


class PhantomResultOut(BaseModel):
    result_id: str
    device_id: int
    kind: str
    acquired_at: datetime
    metrics: dict[str, Any]
    verdicts: dict[str, Any]
    tolerance_version: int | None
    ai_outputs: dict[str, Any] | None
    reviewed_by: str | None
    reviewed_at: datetime | None
    review_note: str | None


class ToleranceOut(BaseModel):
    id: int
    device_id: int | None
    kind: str
    metric: str
    version: int
    lower_action: float | None
    lower_tolerance: float | None
    upper_tolerance: float | None
    upper_action: float | None
    unit: str | None
    created_by: str
    created_at: datetime
    reason: str | None


@router.post(
    "/v1/phantom-results",
    response_model=BatchResult,
    summary="Store phantom QC results (validated one by one; re-sending a result_id is a no-op)",
    responses=error_responses(401, 403, 413, 422),
)
def post_phantom_results(
    batch: PhantomBatch, session: SessionDep, settings: SettingsDep, principal: Authorized
) -> BatchResult:
    try:
        result = store_phantom_results(
            session, batch.results, principal, max_batch=MAX_PHANTOM_BATCH
        )
    except BatchTooLarge as exc:
        raise ApiError(413, "batch_too_large", str(exc)) from exc
    except ForbiddenWrite as exc:
        raise ApiError(403, "forbidden", str(exc)) from exc
    session.commit()
    return result


@router.get(
    "/v1/phantom-results",
    response_model=list[PhantomResultOut],
    summary="Phantom results, newest first",
    responses=error_responses(401, 403, 422),
)
def list_phantom_results(
    session: SessionDep,
    caller: Caller,
    device_id: Annotated[int | None, query_id("Only this device")] = None,
    kind: Annotated[str | None, Query(pattern="^(flood|cylinder|nema-iq)$")] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[PhantomResultOut]:
    sites = {d.id: d.site_id for d in session.exec(select(Device))}
    q = select(PhantomResult)
    if device_id is not None:
        q = q.where(PhantomResult.device_id == device_id)
    if kind:
        q = q.where(PhantomResult.kind == kind)
    q = q.order_by(col(PhantomResult.acquired_at).desc(), col(PhantomResult.id).desc())
    return [
        PhantomResultOut.model_validate(r, from_attributes=True)
        for r in session.exec(q.limit(limit))
        if caller.sees(sites.get(r.device_id))
    ]


@router.post(
    "/v1/phantom-results/{result_id}/sign-off",
    response_model=PhantomResultOut,
    summary="Sign off a phantom result (a named reviewer; audited; once)",
    responses=error_responses(401, 403, 404, 409, 422),
)
def sign_off_result(
    result_id: str, body: SignOffIn, session: SessionDep, caller: Caller
) -> PhantomResultOut:
    result = session.exec(select(PhantomResult).where(PhantomResult.result_id == result_id)).first()
    if result is None:
        raise ApiError(404, "not_found", f"no phantom result {result_id!r}")
    device = session.get(Device, result.device_id)
    caller.require_site(device.site_id if device else None, "phantom results")
    signed = sign_off(session, result_id, user=caller.principal.name, note=body.note)
    session.commit()
    return PhantomResultOut.model_validate(signed, from_attributes=True)


@router.get(
    "/v1/devices",
    response_model=list[DeviceOut],
    summary="Scanners known to the monitor",
    responses=error_responses(401, 403),
)
def list_devices(session: SessionDep, caller: Caller) -> list[DeviceOut]:
    return [
        DeviceOut(
            id=d.id or 0,
            site=d.site_id,
            manufacturer=d.manufacturer,
            model=d.model,
            serial=d.serial,
            modality=d.modality,
        )
        for d in session.exec(select(Device).order_by(col(Device.id)))
        if caller.sees(d.site_id)
    ]


@router.get(
    "/v1/phantom-tolerances",
    response_model=list[ToleranceOut],
    summary="Every version of every phantom tolerance, newest first",
    responses=error_responses(401, 403),
)
def list_tolerances(session: SessionDep, caller: Caller) -> list[ToleranceOut]:
    sites = {d.id: d.site_id for d in session.exec(select(Device))}
    rows = session.exec(
        select(PhantomTolerance).order_by(
            col(PhantomTolerance.created_at).desc(), col(PhantomTolerance.id).desc()
        )
    )
    # A device's own tolerance is of its site; the defaults (no device) are everyone's.
    return [
        ToleranceOut.model_validate(t, from_attributes=True)
        for t in rows
        if t.device_id is None or caller.sees(sites.get(t.device_id))
    ]


@router.post(
    "/v1/phantom-tolerances",
    response_model=ToleranceOut,
    status_code=201,
    summary="Set a new version of a metric's tolerance and action levels (audited)",
    responses=error_responses(401, 403, 404, 422),
)
def post_tolerance(body: ToleranceIn, session: SessionDep, caller: Caller) -> ToleranceOut:
    site = None
    if body.device_id is not None:
        if not 1 <= body.device_id <= MAX_DB_ID:
            raise ApiError(422, "invalid_request", f"device_id: {body.device_id} is not a row id")
        device = session.get(Device, body.device_id)
        if device is None:
            raise ApiError(404, "not_found", f"no device {body.device_id}")
        site = device.site_id
    # A default (no device) is every site's: only a reviewer of all sites (or admin) sets it.
    caller.require_site(site, "phantom tolerances")
    tol = set_tolerance(
        session,
        kind=body.kind,
        metric=body.metric,
        device_id=body.device_id,
        lower_action=body.lower_action,
        lower_tolerance=body.lower_tolerance,
        upper_tolerance=body.upper_tolerance,
        upper_action=body.upper_action,
        unit=body.unit,
        actor=caller.principal.name,
        reason=body.reason,
    )
    session.commit()
    return ToleranceOut.model_validate(tol, from_attributes=True)
