"""GET /v1/deployments (what is watched) and POST /v1/deployments (admin).

The body's ``monitoring`` is a ``MonitoringConfig``: a document that is not one is answered 422
naming each field (``monitoring.streams[2].kind: ...``) before the route runs; a refused
registration (an id taken by another site or model) is a ``RegistryError``, answered 422 by the
app's one handler for refused actions."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter
from sqlmodel import Session, col, select

from phase4.monitor.api.deps import Authorized, Caller, SessionDep
from phase4.monitor.api.errors import error_responses
from phase4.monitor.domain.registry import create_deployment
from phase4.monitor.domain.schemas import DeploymentCreate, DeploymentOut
from phase4.monitor.store.models import AIModel, Deployment, InferenceRecord

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
