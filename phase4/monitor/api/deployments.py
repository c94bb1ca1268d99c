"""GET /v1/deployments (what is watched) and POST /v1/deployments (admin); a deployment's
device identity, read (GET .../identity) and replaced (PUT .../identity, admin, audited).

The body's ``monitoring`` is a ``MonitoringConfig``: a document that is not one is answered 422
naming each field (``monitoring.streams[2].kind: ...``) before the route runs; a refused
registration (an id taken by another site or model) is a ``RegistryError``, answered 422 by the
app's one handler for refused actions.

The device identity (manufacturer, Basic UDI-DI, MDR class, notified body, intended use, PMS
plan, validated baseline, clinical acceptance: ``phase4.monitor.core.device_identity``) is what
the post-market surveillance report (MDR Art. 86, AI Act Art. 72) names the device by; an
invalid document is answered 422 naming each field."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session, col, select

from phase4.monitor.api.deps import Authorized, Caller, SessionDep
from phase4.monitor.api.errors import ApiError, error_responses
from phase4.monitor.core.device_identity import DeviceIdentity
from phase4.monitor.domain.device_identity import identity_record, set_device_identity
from phase4.monitor.domain.registry import create_deployment
from phase4.monitor.domain.schemas import DeploymentCreate, DeploymentOut, Text
from phase4.monitor.store.models import AIModel, Deployment, InferenceRecord
from phase4.monitor.surveillance.subgroups import subgroup_table

router = APIRouter(prefix="/v1/deployments", tags=["deployments"])


def _out(session: Session, deployments: list[Deployment]) -> list[DeploymentOut]:
    ids = [d.id for d in deployments]
    stats = {
        row[0]: (row[1], row[2])
        for row in session.execute(
            sa.select(
                InferenceRecord.deployment_id,
                sa.func.count(),
                sa.func.max(InferenceRecord.received_at),
            )
            .where(col(InferenceRecord.deployment_id).in_(ids))
            .group_by(InferenceRecord.deployment_id)
        )
    }
    models = {m.id: m for m in session.exec(select(AIModel))}
    out = []
    for d in deployments:
        count, last = stats.get(d.id, (0, None))
        model = models[d.model_id]
        out.append(
            DeploymentOut(
                id=d.id,
                site_id=d.site_id,
                model_name=model.name,
                model_version=model.version,
                monitoring=d.monitoring,
                accepted_at=d.accepted_at,
                created_at=d.created_at,
                records_total=count,
                last_record_received_at=last,
            )
        )
    return out


@router.get(
    "",
    response_model=list[DeploymentOut],
    summary="Deployments the token may read, with record counts",
    responses=error_responses(401, 403),
)
def list_deployments(session: SessionDep, caller: Caller) -> list[DeploymentOut]:
    deployments = [
        d
        for d in session.exec(select(Deployment).order_by(col(Deployment.id)))
        if caller.sees(d.site_id)
    ]
    return _out(session, deployments)


@router.post(
    "",
    response_model=DeploymentOut,
    status_code=201,
    summary="Create a deployment (and its site and model version if new)",
    responses=error_responses(401, 403, 422),
)
def post_deployment(
    body: DeploymentCreate, session: SessionDep, principal: Authorized
) -> DeploymentOut:
    deployment = create_deployment(
        session,
        deployment_id=body.id,
        site_id=body.site_id,
        site_name=body.site_name,
        model_name=body.model_name,
        model_version=body.model_version,
        manufacturer=body.manufacturer,
        intended_use=body.intended_use,
        monitoring=body.monitoring,
        reason=body.reason,
        actor=principal.actor,
    )
    session.commit()
    return _out(session, [deployment])[0]


DeploymentPathId = Annotated[str, Path(min_length=1, max_length=100, description="Deployment id.")]


class IdentityIn(BaseModel):
    """A deployment's whole device identity (it replaces the stored one) and why."""

    model_config = ConfigDict(extra="forbid")
    identity: DeviceIdentity
    reason: Annotated[Text, Field(max_length=2000)] | None = None


class IdentityOut(BaseModel):
    deployment_id: str
    identity: dict[str, Any]
    updated_by: str
    updated_at: datetime


def _deployment(session: SessionDep, caller: Caller, deployment_id: str) -> Deployment:
    deployment = session.get(Deployment, deployment_id)
    if deployment is None:
        raise ApiError(404, "not_found", f"no deployment {deployment_id!r}")
    caller.require_site(deployment.site_id, "deployments")
    return deployment


@router.get(
    "/{deployment_id}/identity",
    response_model=IdentityOut,
    summary="The deployment's device identity, intended use, PMS plan and validated baseline",
    responses=error_responses(401, 403, 404),
)
def get_identity(
    deployment_id: DeploymentPathId, session: SessionDep, caller: Caller
) -> IdentityOut:
    _deployment(session, caller, deployment_id)
    row = identity_record(session, deployment_id)
    if row is None:
        raise ApiError(404, "not_found", f"no device identity recorded for {deployment_id!r}")
    return IdentityOut.model_validate(row, from_attributes=True)


@router.put(
    "/{deployment_id}/identity",
    response_model=IdentityOut,
    summary="Replace the deployment's device identity (admin; audited)",
    responses=error_responses(401, 403, 404, 422),
)
def put_identity(
    deployment_id: DeploymentPathId, body: IdentityIn, session: SessionDep, caller: Caller
) -> IdentityOut:
    _deployment(session, caller, deployment_id)
    row = set_device_identity(
        session,
        deployment_id,
        body.identity,
        actor=caller.principal.actor,
        reason=body.reason,
    )
    session.commit()
    return IdentityOut.model_validate(row, from_attributes=True)


@router.get(
    "/{deployment_id}/subgroups",
    summary="The deployment's subgroup table: per group rates with 95% intervals, the gap to "
    "the rest, the disparity monitor's verdicts (docs/SUBGROUPS.md)",
    responses=error_responses(401, 403, 404),
)
def get_subgroups(
    deployment_id: DeploymentPathId, session: SessionDep, caller: Caller
) -> dict[str, Any]:
    return subgroup_table(session, _deployment(session, caller, deployment_id))
