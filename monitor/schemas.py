"""The API's public schemas: what goes over the wire, separate from the tables.

Items of a batch are validated one by one (see ``monitor.ingest``) so that one bad item is
rejected with its own message and does not block the valid ones.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from monitor.privacy import phi_keys_in

ClientId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
FeatureValue = Annotated[float, Field(allow_inf_nan=False)] | int | bool | str | None


def _finite_json(value: Any, where: str) -> None:
    """Refuse NaN and infinities anywhere in a JSON value: they are not JSON, and PostgreSQL
    would reject the whole batch for one of them."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} is {value}: only finite numbers are accepted")
    if isinstance(value, dict):
        for k, v in value.items():
            _finite_json(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _finite_json(v, f"{where}[{i}]")


def _no_phi(value: dict[str, Any], where: str) -> None:
    found = phi_keys_in(value)
    if found:
        raise ValueError(
            f"{where} contains patient identifiers ({', '.join(sorted(found))}): "
            "phase4 accepts only features and keyed pseudonyms"
        )


class RecordIn(BaseModel):
    """One inference of the AI on one study, as the probe captured it."""

    model_config = ConfigDict(extra="forbid")

    record_id: ClientId = Field(description="Client-generated id; re-sending it is a no-op.")
    deployment: str = Field(min_length=1, max_length=100)
    study_pseudonym: str | None = Field(
        None, max_length=128, description="Keyed HMAC of the study UID, computed at the edge."
    )
    acquired_at: AwareDatetime | None = Field(
        None, description="When the study was acquired (defaults to inferred_at)."
    )
    inferred_at: AwareDatetime = Field(description="When the model ran.")
    features: dict[Annotated[str, Field(max_length=100)], FeatureValue] = Field(
        default_factory=dict, description="Flat input features: numbers, strings, booleans."
    )
    outputs: dict[str, Any] = Field(default_factory=dict, description="The model's outputs (JSON).")
    latency_s: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    error: Annotated[str, Field(max_length=1000)] | None = Field(
        None, description="The exception the model raised, if any."
    )

    @field_validator("features")
    @classmethod
    def _features_clean(cls, v: dict[str, Any]) -> dict[str, Any]:
        _no_phi(v, "features")
        return v

    @field_validator("outputs")
    @classmethod
    def _outputs_clean(cls, v: dict[str, Any]) -> dict[str, Any]:
        _finite_json(v, "outputs")
        _no_phi(v, "outputs")
        return v


class FeedbackIn(BaseModel):
    """A later verdict on a record: physician decision, ground truth, Dice of an edit."""

    model_config = ConfigDict(extra="forbid")

    feedback_id: ClientId = Field(description="Client-generated id; re-sending it is a no-op.")
    record_id: ClientId | None = Field(
        None, description="The record judged, if the sender knows it."
    )
    deployment: str | None = Field(None, max_length=100)
    study_pseudonym: str | None = Field(
        None,
        max_length=128,
        description="Instead of record_id: the study's keyed pseudonym (same HMAC and site secret "
        "as the probe), with deployment. The study's latest record is judged.",
    )
    verdict: Literal["accepted", "edited", "rejected"] | None = None
    ground_truth: dict[str, Any] | None = Field(
        None, description='For example {"malignant": true}: the confirmed answer.'
    )
    dice: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = Field(
        None, description="Dice overlap of the physician's edit with the AI's segmentation."
    )
    given_at: AwareDatetime

    @model_validator(mode="after")
    def _one_target(self) -> FeedbackIn:
        by_study = self.deployment is not None and self.study_pseudonym is not None
        if (self.record_id is not None) != by_study:
            return self
        raise ValueError("give either record_id, or deployment and study_pseudonym (not both)")

    @field_validator("ground_truth")
    @classmethod
    def _truth_clean(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None:
            _finite_json(v, "ground_truth")
            _no_phi(v, "ground_truth")
        return v


class ProbeHealth(BaseModel):
    """How the probe that sent a batch is doing, exported on /metrics per deployment."""

    model_config = ConfigDict(extra="ignore")

    queue_depth: int = Field(ge=0, le=2**53, description="Records in the probe's memory queue.")
    spool_depth: int = Field(
        ge=0, le=2**53, description="Records in the probe's on-disk spool, waiting to be sent."
    )
    dropped_total: int = Field(
        0, ge=0, le=2**53, description="Records the probe process has lost since it started."
    )
    probe_version: str | None = Field(
        None, max_length=64, pattern=r"^[A-Za-z0-9_.+-]+$", description="The probe's version."
    )


class RecordBatch(BaseModel):
    records: list[Any] = Field(
        description="Up to 1,000 records (see RecordIn); each is validated on its own."
    )
    probe: ProbeHealth | None = Field(
        None,
        description="Optional: the sending probe's health (queue and spool depth), remembered "
        "for the deployments of the batch's accepted records. A malformed report is ignored: it "
        "never costs the records.",
    )

    @field_validator("probe", mode="wrap")
    @classmethod
    def _probe_or_nothing(cls, v: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(v)
        except ValidationError:
            return None


class FeedbackBatch(BaseModel):
    feedback: list[Any] = Field(
        description="Up to 1,000 feedback items (see FeedbackIn); each is validated on its own."
    )


ItemStatus = Literal["created", "duplicate", "rejected"]


class ItemResult(BaseModel):
    index: int
    id: str | None = Field(None, description="The item's client id, if it had a readable one.")
    status: ItemStatus
    error: str | None = None


class BatchResult(BaseModel):
    created: int
    duplicates: int
    rejected: int
    results: list[ItemResult]


class ErrorBody(BaseModel):
    code: str = Field(description="Machine-readable: unauthorized, forbidden, invalid_request...")
    message: str = Field(description="What is wrong, in words a person can act on.")
    details: list[dict[str, Any]] | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class DeploymentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=100)
    site_id: str = Field(min_length=1, max_length=64)
    site_name: str | None = None
    model_name: str = Field(min_length=1, max_length=200)
    model_version: str = Field(min_length=1, max_length=64)
    manufacturer: str | None = None
    intended_use: str | None = None
    monitoring: dict[str, Any] = Field(default_factory=dict)
    reason: str | None = None


class DeploymentOut(BaseModel):
    id: str
    site_id: str
    model_name: str
    model_version: str
    monitoring: dict[str, Any]
    accepted_at: datetime | None
    created_at: datetime
    records_total: int
    last_record_received_at: datetime | None


class RecordOut(BaseModel):
    record_id: str
    deployment: str
    study_pseudonym: str | None
    acquired_at: datetime
    inferred_at: datetime
    received_at: datetime
    features: dict[str, Any]
    outputs: dict[str, Any]
    latency_s: float | None
    error: str | None


class RecordPage(BaseModel):
    records: list[RecordOut]
    next_cursor: str | None = Field(
        None, description="Pass as ?cursor= for the next page; null when this is the last."
    )


class Health(BaseModel):
    status: Literal["ok"]
    database: str
    schema_revision: str | None
