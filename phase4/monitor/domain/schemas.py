"""The API's public schemas: what goes over the wire, separate from the tables.

Items of a batch are validated one by one (see ``phase4.monitor.domain.ingest``) so that one bad
item is
rejected with its own message and does not block the valid ones. Every string is bounded by the
column that stores it; free-form JSON (features, outputs, ground truth, monitoring) is bounded
by ``phase4.monitor.core.limits`` (configurable per request through the validation context, which
``phase4.monitor.domain.ingest`` fills from the settings).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from phase4.monitor.core.limits import (
    DEFAULT_LIMITS,
    KEY_CHARS_MAX,
    IngestLimits,
    check_json,
    check_text,
    check_time,
)
from phase4.monitor.core.monitoring import MonitoringConfig
from phase4.monitor.core.privacy import phi_keys_in
from phase4.monitor.store.models import utcnow


def _storable(value: str) -> str:
    check_text(value, "string")
    return value


# Text that both databases store: no NUL (PostgreSQL), no lone surrogate (UTF-8).
Text = Annotated[str, AfterValidator(_storable)]
ClientId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
DeploymentId = Annotated[Text, Field(min_length=1, max_length=100)]
Pseudonym = Annotated[Text, Field(max_length=128)]
FeatureValue = Annotated[float, Field(allow_inf_nan=False)] | int | bool | str | None
ModelVersion = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.+:-]+$")]
SHADOW_VERSIONS_MAX = 4


def limits_of(info: ValidationInfo) -> IngestLimits:
    context = info.context or {}
    limits = context.get("limits")
    return limits if isinstance(limits, IngestLimits) else DEFAULT_LIMITS


def _now_of(info: ValidationInfo) -> datetime:
    now = (info.context or {}).get("now")
    return now if isinstance(now, datetime) else utcnow()


def _time_ok(value: datetime | None, info: ValidationInfo) -> datetime | None:
    if value is None:
        return None
    limits = limits_of(info)
    return check_time(value, str(info.field_name), _now_of(info), limits.max_future_skew_s)


def _no_phi(value: dict[str, Any], where: str) -> None:
    found = phi_keys_in(value)
    if found:
        raise ValueError(
            f"{where} contains patient identifiers ({', '.join(sorted(found))}): "
            "phase4 accepts only features and keyed pseudonyms"
        )


def _flat_names(value: dict[str, Any], where: str, most: int, setting: str) -> None:
    if len(value) > most:
        raise ValueError(f"{where}: {len(value)} names; at most {most} per record ({setting})")
    for key in value:
        if len(key) > KEY_CHARS_MAX:
            raise ValueError(f"{where}: a name of {len(key)} characters; at most {KEY_CHARS_MAX}")


def _world_time(value: datetime, info: ValidationInfo) -> datetime:
    checked = _time_ok(value, info)
    assert checked is not None
    return checked


def _utc_time(value: datetime, info: ValidationInfo) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:  # 0001-01-01T00:00:00+14:00 is before year 1 in UTC
        raise ValueError(f"{info.field_name}: out of the range of dates (in UTC)") from exc


# A time of the world (a scan, an awareness, a report): from 1970 to the monitor's clock plus
# the allowed skew, in UTC (the configured PHASE4_MAX_FUTURE_SKEW_S where ingest passes its
# settings in the validation context, the default of one day elsewhere).
WorldTime = Annotated[AwareDatetime, AfterValidator(_world_time)]
# Any time a UTC clock can hold (an expiry may lie years ahead).
UtcTime = Annotated[AwareDatetime, AfterValidator(_utc_time)]


class RecordIn(BaseModel):
    """One inference of the AI on one study, as the probe captured it."""

    model_config = ConfigDict(extra="forbid")

    record_id: ClientId = Field(description="Client-generated id; re-sending it is a no-op.")
    deployment: DeploymentId
    study_pseudonym: Pseudonym | None = Field(
        None, description="Keyed HMAC of the study UID, computed at the edge."
    )
    acquired_at: AwareDatetime | None = Field(
        None,
        description="When the study was acquired (defaults to inferred_at). From 1970 to the "
        "monitor's clock plus PHASE4_MAX_FUTURE_SKEW_S.",
    )
    inferred_at: AwareDatetime = Field(description="When the model ran (same range).")
    features: dict[str, FeatureValue] = Field(
        default_factory=dict,
        description="Flat input features: numbers (within a double's range), strings, booleans, "
        "null. At most PHASE4_MAX_FEATURES_PER_RECORD names of at most 100 characters.",
    )
    outputs: dict[str, Any] = Field(
        default_factory=dict,
        description="The model's outputs (JSON): at most PHASE4_MAX_OUTPUTS_PER_RECORD top-level "
        "names, nested at most PHASE4_MAX_JSON_DEPTH levels.",
    )
    latency_s: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    error: Annotated[Text, Field(max_length=1000)] | None = Field(
        None, description="The exception the model raised, if any."
    )
    model_version: ModelVersion | None = Field(
        None,
        description="The model version that produced outputs; null: the deployment's accepted "
        "version. Another version opens a revalidation (docs/REVALIDATION.md).",
    )
    shadow_outputs: dict[ModelVersion, dict[str, Any]] | None = Field(
        None,
        description="Other versions' outputs on the same study (shadow traffic), by version: at "
        "most 4 versions, each bounded as outputs.",
    )

    _times = field_validator("acquired_at", "inferred_at")(_time_ok)

    @field_validator("features")
    @classmethod
    def _features_clean(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        limits = limits_of(info)
        _flat_names(v, "features", limits.max_features_per_record, "PHASE4_MAX_FEATURES_PER_RECORD")
        check_json(v, "features", limits)
        _no_phi(v, "features")
        return v

    @field_validator("outputs")
    @classmethod
    def _outputs_clean(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        limits = limits_of(info)
        _flat_names(v, "outputs", limits.max_outputs_per_record, "PHASE4_MAX_OUTPUTS_PER_RECORD")
        check_json(v, "outputs", limits)
        _no_phi(v, "outputs")
        return v

    @field_validator("shadow_outputs")
    @classmethod
    def _shadow_clean(
        cls, v: dict[str, dict[str, Any]] | None, info: ValidationInfo
    ) -> dict[str, dict[str, Any]] | None:
        if v is None:
            return None
        if len(v) > SHADOW_VERSIONS_MAX:
            raise ValueError(f"shadow_outputs: at most {SHADOW_VERSIONS_MAX} versions")
        limits = limits_of(info)
        for version, outputs in v.items():
            where = f"shadow_outputs.{version}"
            _flat_names(
                outputs, where, limits.max_outputs_per_record, "PHASE4_MAX_OUTPUTS_PER_RECORD"
            )
            check_json(outputs, where, limits)
            _no_phi(outputs, where)
        return v


class FeedbackIn(BaseModel):
    """A later verdict on a record: physician decision, ground truth, Dice of an edit."""

    model_config = ConfigDict(extra="forbid")

    feedback_id: ClientId = Field(description="Client-generated id; re-sending it is a no-op.")
    record_id: ClientId | None = Field(
        None, description="The record judged, if the sender knows it."
    )
    deployment: DeploymentId | None = None
    study_pseudonym: Pseudonym | None = Field(
        None,
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
    given_at: AwareDatetime = Field(
        description="When the verdict was given: from 1970 to the monitor's clock plus "
        "PHASE4_MAX_FUTURE_SKEW_S."
    )

    _times = field_validator("given_at")(_time_ok)

    @model_validator(mode="after")
    def _one_target(self) -> FeedbackIn:
        by_study = self.deployment is not None and self.study_pseudonym is not None
        if (self.record_id is not None) != by_study:
            return self
        raise ValueError("give either record_id, or deployment and study_pseudonym (not both)")

    @field_validator("ground_truth")
    @classmethod
    def _truth_clean(cls, v: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
        if v is not None:
            check_json(v, "ground_truth", limits_of(info))
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
    """A new deployment; every string is bounded by the column that stores it."""

    model_config = ConfigDict(extra="forbid")

    id: DeploymentId
    site_id: Annotated[Text, Field(min_length=1, max_length=64)]
    site_name: Annotated[Text, Field(max_length=200)] | None = None
    model_name: Annotated[Text, Field(min_length=1, max_length=200)]
    model_version: Annotated[Text, Field(min_length=1, max_length=64)]
    manufacturer: Annotated[Text, Field(max_length=200)] | None = None
    intended_use: Annotated[Text, Field(max_length=2000)] | None = None
    monitoring: MonitoringConfig = Field(
        default_factory=MonitoringConfig,
        description="The drift engine's configuration (docs/CONFIGURATION.md); an unknown key "
        "or a value out of bounds is refused (422) naming the field.",
    )
    reason: Annotated[Text, Field(max_length=2000)] | None = None

    @field_validator("monitoring", mode="before")
    @classmethod
    def _monitoring_storable(cls, v: Any, info: ValidationInfo) -> Any:
        """What the store can hold at all (depth, strings, numbers), before the contract."""
        if isinstance(v, dict):
            check_json(v, "monitoring", limits_of(info))
        return v


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
    model_version: str | None = None
    shadow_outputs: dict[str, Any] | None = None


class RecordPage(BaseModel):
    records: list[RecordOut]
    next_cursor: str | None = Field(
        None, description="Pass as ?cursor= for the next page; null when this is the last."
    )


class Health(BaseModel):
    status: Literal["ok"]
    database: str
    schema_revision: str | None
