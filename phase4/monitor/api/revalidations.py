"""A deployment's revalidations of a new model version (docs/REVALIDATION.md): opened, given
pre-declared acceptance criteria, evidence (a locked validation set, shadow traffic), evaluated
and decided by a named reviewer of the deployment's site, each step audited.

Every route belongs to the deployment's site: read where the site may be read, acted on by its
reviewers and admins. A step taken out of order is 409 naming the missing step; a validation
set that cannot be read is 422 naming its row and column."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from phase4.monitor.api.deps import Access, Caller, SessionDep, path_id
from phase4.monitor.api.errors import ApiError, error_responses
from phase4.monitor.domain.revalidation import (
    CSV_MAX_BYTES,
    attach_shadow,
    attach_validation_set,
    decide,
    declare_criteria,
    evaluate,
    get_revalidation,
    list_revalidations,
    open_revalidation,
    revalidation_out,
)
from phase4.monitor.domain.schemas import ModelVersion, Text
from phase4.monitor.store.models import Deployment, Revalidation

router = APIRouter(prefix="/v1/deployments/{deployment_id}/revalidations", tags=["revalidations"])
DeploymentPathId = Annotated[str, Path(min_length=1, max_length=100, description="Deployment id.")]
RevalidationId = Annotated[int, path_id("The revalidation's id")]
Margin = Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)]


class OpenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    candidate_version: ModelVersion
    reason: Annotated[Text, Field(max_length=2000)] | None = None


class CriteriaIn(BaseModel):
    """Margins: the candidate may be at most this much worse than the accepted version
    (candidate − accepted > −margin at the 95% interval's lower bound); for
    ``positive_rate_change`` the change in the rate of positive calls must lie within ±margin."""

    model_config = ConfigDict(extra="forbid")
    sensitivity: Margin | None = None
    specificity: Margin | None = None
    ppv: Margin | None = None
    dice: Margin | None = None
    positive_rate_change: Margin | None = None
    prediction: Annotated[Text, Field(min_length=1, max_length=100)] | None = Field(
        None, description="The output (0/1 or boolean) that is the call (default: the "
        "deployment's performance.prediction)."
    )  # fmt: skip
    truth: Annotated[Text, Field(min_length=1, max_length=100)] | None = Field(
        None, description="The ground_truth key of the truth (default: performance.truth)."
    )


class ValidationSetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    csv: str = Field(
        max_length=CSV_MAX_BYTES,
        description="The CSV text: case_id, truth, accepted_call, candidate_call (0/1), "
        "optional accepted_dice, candidate_dice. Its SHA-256 (of the UTF-8 text) is recorded.",
    )
    filename: Annotated[Text, Field(max_length=200)] | None = None


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["accept", "accept_with_conditions", "reject"]
    conditions: Annotated[Text, Field(max_length=4000)] | None = Field(
        None, description="Required with accept_with_conditions."
    )


class RevalidationOut(BaseModel):
    id: int
    deployment: str
    status: str
    accepted_version: str
    candidate_version: str
    reason: str | None
    opened_by: str
    opened_at: datetime
    criteria: dict[str, Any] | None
    criteria_by: str | None
    criteria_at: datetime | None
    validation_sha256: str | None
    validation_cases: int
    shadow: dict[str, Any] | None
    evidence_at: datetime | None
    results: dict[str, Any] | None
    verdict: str | None
    evaluated_at: datetime | None
    decision: str | None
    conditions: str | None
    decided_by: str | None
    decided_at: datetime | None


def _out(r: Revalidation) -> RevalidationOut:
    return RevalidationOut(**revalidation_out(r))


def _deployment(session: SessionDep, caller: Access, deployment_id: str) -> None:
    dep = session.get(Deployment, deployment_id)
    if dep is None:
        raise ApiError(404, "not_found", f"no deployment {deployment_id!r}")
    caller.require_site(dep.site_id, "revalidations")


def _load(
    session: SessionDep, caller: Access, deployment_id: str, revalidation_id: int
) -> Revalidation:
    _deployment(session, caller, deployment_id)
    return get_revalidation(session, deployment_id, revalidation_id)


ACT = error_responses(401, 403, 404, 409, 422)


@router.get(
    "",
    response_model=list[RevalidationOut],
    summary="The deployment's revalidations, newest first",
    responses=error_responses(401, 403, 404),
)
def get_list(
    deployment_id: DeploymentPathId, session: SessionDep, caller: Caller
) -> list[RevalidationOut]:
    _deployment(session, caller, deployment_id)
    return [_out(r) for r in list_revalidations(session, deployment_id)]


@router.post(
    "",
    response_model=RevalidationOut,
    status_code=201,
    summary="Open a revalidation of a new model version (409 if one is open; audited)",
    responses=ACT,
)
def post_open(
    deployment_id: DeploymentPathId, body: OpenIn, session: SessionDep, caller: Caller
) -> RevalidationOut:
    _deployment(session, caller, deployment_id)
    r = open_revalidation(
        session,
        deployment_id,
        body.candidate_version,
        actor=caller.principal.name,
        reason=body.reason,
    )
    session.commit()
    return _out(r)


@router.get(
    "/{revalidation_id}",
    response_model=RevalidationOut,
    summary="One revalidation: criteria, evidence, results, decision",
    responses=error_responses(401, 403, 404),
)
def get_one(
    deployment_id: DeploymentPathId,
    revalidation_id: RevalidationId,
    session: SessionDep,
    caller: Caller,
) -> RevalidationOut:
    return _out(_load(session, caller, deployment_id, revalidation_id))


@router.post(
    "/{revalidation_id}/criteria",
    response_model=RevalidationOut,
    summary="Declare the acceptance criteria (before any evidence; audited)",
    responses=ACT,
)
def post_criteria(
    deployment_id: DeploymentPathId,
    revalidation_id: RevalidationId,
    body: CriteriaIn,
    session: SessionDep,
    caller: Caller,
) -> RevalidationOut:
    r = _load(session, caller, deployment_id, revalidation_id)
    margins = body.model_dump(exclude={"prediction", "truth"}, exclude_none=True)
    r = declare_criteria(
        session,
        r,
        margins,
        actor=caller.principal.name,
        prediction=body.prediction,
        truth=body.truth,
    )
    session.commit()
    return _out(r)


@router.post(
    "/{revalidation_id}/validation-set",
    response_model=RevalidationOut,
    summary="Attach the locked validation set (CSV; its SHA-256 recorded; audited)",
    responses=ACT,
)
def post_validation_set(
    deployment_id: DeploymentPathId,
    revalidation_id: RevalidationId,
    body: ValidationSetIn,
    session: SessionDep,
    caller: Caller,
) -> RevalidationOut:
    r = _load(session, caller, deployment_id, revalidation_id)
    try:
        data = body.csv.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(422, "invalid_request", "csv: text that has no UTF-8 form") from None
    r = attach_validation_set(session, r, data, actor=caller.principal.name, filename=body.filename)
    session.commit()
    return _out(r)


@router.post(
    "/{revalidation_id}/shadow",
    response_model=RevalidationOut,
    summary="Attach the shadow traffic received so far as evidence (audited)",
    responses=ACT,
)
def post_shadow(
    deployment_id: DeploymentPathId,
    revalidation_id: RevalidationId,
    session: SessionDep,
    caller: Caller,
) -> RevalidationOut:
    r = _load(session, caller, deployment_id, revalidation_id)
    r = attach_shadow(session, r, actor=caller.principal.name)
    session.commit()
    return _out(r)


@router.post(
    "/{revalidation_id}/evaluate",
    response_model=RevalidationOut,
    summary="Compare the versions on the evidence against the criteria (audited)",
    responses=ACT,
)
def post_evaluate(
    deployment_id: DeploymentPathId,
    revalidation_id: RevalidationId,
    session: SessionDep,
    caller: Caller,
) -> RevalidationOut:
    r = _load(session, caller, deployment_id, revalidation_id)
    r = evaluate(session, r, actor=caller.principal.name)
    session.commit()
    return _out(r)


@router.post(
    "/{revalidation_id}/decision",
    response_model=RevalidationOut,
    summary="A named reviewer's decision: accept, accept with conditions, reject (audited)",
    responses=ACT,
)
def post_decision(
    deployment_id: DeploymentPathId,
    revalidation_id: RevalidationId,
    body: DecisionIn,
    session: SessionDep,
    caller: Caller,
) -> RevalidationOut:
    r = _load(session, caller, deployment_id, revalidation_id)
    r = decide(session, r, body.decision, actor=caller.principal.name, conditions=body.conditions)
    session.commit()
    return _out(r)
