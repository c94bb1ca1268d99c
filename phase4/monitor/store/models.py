"""The store's tables (SQLModel). Alembic migrations in ``phase4/monitor/store/migrations`` own the
schema.

Conventions:
- Every timestamp is timezone-aware UTC in Python; SQLite keeps it as naive UTC text, PostgreSQL
  as ``timestamp with time zone`` (see :class:`UTCDateTime`).
- Free-form payloads (features, outputs, evidence, configuration) are JSON columns.
- No table holds a patient name, ID, birth date or accession number: studies are known only by
  the keyed pseudonym the probe computed at the edge.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from phase4.monitor.core.statuses import AlertStatus


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A datetime that is always timezone-aware UTC when it leaves the database.

    SQLite has no time zone type, so values are normalised to UTC on the way in and tagged as UTC
    on the way out; PostgreSQL stores ``timestamptz``. Naive datetimes are refused: a timestamp
    whose zone is unknown cannot be ordered against others from another site.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: a time zone is required")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def ts_field(*, index: bool = False, nullable: bool = False, default_now: bool = False) -> Any:
    kwargs: dict[str, Any] = {}
    if default_now:
        kwargs["default_factory"] = utcnow
    return Field(sa_column=sa.Column(UTCDateTime(), nullable=nullable, index=index), **kwargs)


def json_field(*, nullable: bool = False, default: Any = None) -> Any:
    factory = dict if default is None else (lambda: default)
    if nullable:
        return Field(default=None, sa_column=sa.Column(sa.JSON, nullable=True))
    return Field(default_factory=factory, sa_column=sa.Column(sa.JSON, nullable=False))


class Site(SQLModel, table=True):
    """A hospital or imaging centre."""

    __tablename__ = "site"
    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    created_at: datetime = ts_field(default_now=True)


class Device(SQLModel, table=True):
    """A scanner (PET, SPECT, gamma camera, PET/CT) at a site."""

    __tablename__ = "device"
    __table_args__ = (sa.UniqueConstraint("site_id", "serial", name="uq_device_site_serial"),)
    id: int | None = Field(default=None, primary_key=True)
    site_id: str = Field(foreign_key="site.id", max_length=64, index=True)
    manufacturer: str = Field(max_length=100)
    model: str = Field(max_length=100)
    serial: str = Field(max_length=100)
    modality: str = Field(default="PT", max_length=8)
    software_versions: str | None = Field(default=None, max_length=200)
    created_at: datetime = ts_field(default_now=True)


class AIModel(SQLModel, table=True):
    """One version of an AI product (a new version is a new row)."""

    __tablename__ = "ai_model"
    __table_args__ = (sa.UniqueConstraint("name", "version", name="uq_ai_model_name_version"),)
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    version: str = Field(max_length=64)
    manufacturer: str | None = Field(default=None, max_length=200)
    intended_use: str | None = Field(default=None, max_length=2000)
    udi: str | None = Field(default=None, max_length=200)
    created_at: datetime = ts_field(default_now=True)


class Deployment(SQLModel, table=True):
    """One AI model version in use at one site, with its monitoring configuration."""

    __tablename__ = "deployment"
    id: str = Field(primary_key=True, max_length=100)
    site_id: str = Field(foreign_key="site.id", max_length=64, index=True)
    model_id: int = Field(foreign_key="ai_model.id", index=True)
    monitoring: dict[str, Any] = json_field()
    accepted_at: datetime | None = ts_field(nullable=True)
    created_at: datetime = ts_field(default_now=True)


class InferenceRecord(SQLModel, table=True):
    """One run of the AI on one study, as the probe saw it."""

    __tablename__ = "inference_record"
    __table_args__ = (
        sa.Index("ix_inference_record_deployment_acquired", "deployment_id", "acquired_at", "id"),
        # Only the records the drift engine has not consumed: its size is the backlog, not the
        # history, so finding the next records costs the same after a year as on day one.
        sa.Index(
            "ix_inference_record_unprocessed",
            "deployment_id",
            "acquired_at",
            "id",
            sqlite_where=sa.text("drift_processed_at IS NULL"),
            postgresql_where=sa.text("drift_processed_at IS NULL"),
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    record_id: str = Field(max_length=64, unique=True)
    deployment_id: str = Field(foreign_key="deployment.id", max_length=100)
    study_pseudonym: str | None = Field(default=None, max_length=128, index=True)
    acquired_at: datetime = ts_field()
    inferred_at: datetime = ts_field()
    received_at: datetime = ts_field(default_now=True)
    features: dict[str, Any] = json_field()
    outputs: dict[str, Any] = json_field()
    latency_s: float | None = None
    error: str | None = Field(default=None, max_length=1000)
    # The model version that produced ``outputs`` (None: the deployment's accepted version) and
    # other versions' outputs on the same study (shadow traffic, keyed by version): see
    # phase4.monitor.domain.revalidation.
    model_version: str | None = Field(default=None, max_length=64)
    shadow_outputs: dict[str, Any] | None = json_field(nullable=True)
    # Set when the drift engine has consumed the record (exactly once, see
    # phase4.monitor.surveillance.detection).
    drift_processed_at: datetime | None = ts_field(nullable=True)


class Feedback(SQLModel, table=True):
    """A later verdict on a record: the physician's decision, ground truth, the Dice of an edit."""

    __tablename__ = "feedback"
    __table_args__ = (
        sa.Index(
            "ix_feedback_unprocessed",
            "record_id",
            sqlite_where=sa.text("drift_processed_at IS NULL"),
            postgresql_where=sa.text("drift_processed_at IS NULL"),
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    feedback_id: str = Field(max_length=64, unique=True)
    record_id: str = Field(foreign_key="inference_record.record_id", max_length=64, index=True)
    verdict: str | None = Field(default=None, max_length=16)
    ground_truth: dict[str, Any] | None = json_field(nullable=True)
    dice: float | None = None
    given_at: datetime = ts_field()
    received_at: datetime = ts_field(default_now=True)
    drift_processed_at: datetime | None = ts_field(nullable=True)


class PhantomResult(SQLModel, table=True):
    """One analysed phantom scan of one device (flood, cylinder, NEMA IQ)."""

    __tablename__ = "phantom_result"
    id: int | None = Field(default=None, primary_key=True)
    result_id: str = Field(max_length=64, unique=True)
    device_id: int = Field(foreign_key="device.id", index=True)
    kind: str = Field(max_length=32)
    acquired_at: datetime = ts_field()
    metrics: dict[str, Any] = json_field()
    # metric → {"verdict": a PhantomVerdict, "value", "tolerance_version", "tolerance_device"}
    verdicts: dict[str, Any] = json_field()
    tolerance_version: int | None = None
    reviewed_by: str | None = Field(default=None, max_length=200)
    reviewed_at: datetime | None = ts_field(nullable=True)
    received_at: datetime = ts_field(default_now=True)
    # The deployed AI's answer on this phantom (the canary), when the series was routed through it.
    ai_outputs: dict[str, Any] | None = json_field(nullable=True)
    review_note: str | None = Field(default=None, max_length=2000)
    # Set when the phantom control charts have consumed the result (exactly once).
    qc_processed_at: datetime | None = ts_field(nullable=True)


class PhantomTolerance(SQLModel, table=True):
    """Tolerance and action levels of one phantom metric; every change is a new version.

    ``device_id`` None is the default for every device. A phantom result keeps the version that
    was in force when it was recorded (``PhantomResult.tolerance_version``).
    """

    __tablename__ = "phantom_tolerance"
    __table_args__ = (
        sa.UniqueConstraint("device_id", "kind", "metric", "version", name="uq_phantom_tolerance"),
    )
    id: int | None = Field(default=None, primary_key=True)
    device_id: int | None = Field(default=None, foreign_key="device.id", index=True)
    kind: str = Field(max_length=32)
    metric: str = Field(max_length=64)
    version: int
    lower_action: float | None = None
    lower_tolerance: float | None = None
    upper_tolerance: float | None = None
    upper_action: float | None = None
    unit: str | None = Field(default=None, max_length=32)
    created_by: str = Field(max_length=200)
    created_at: datetime = ts_field(default_now=True)
    reason: str | None = Field(default=None, max_length=2000)


class Alert(SQLModel, table=True):
    """Something a person must look at: an alarm, a new-condition notice, a QC failure."""

    __tablename__ = "alert"
    id: int | None = Field(default=None, primary_key=True)
    deployment_id: str | None = Field(default=None, foreign_key="deployment.id", max_length=100)
    device_id: int | None = Field(default=None, foreign_key="device.id")
    stream: str = Field(max_length=200)
    # an AlertCause (``new_condition:<value>`` for a notice), a Severity, an AlertStatus
    cause: str = Field(max_length=100)
    severity: str = Field(max_length=16)
    status: str = Field(default=AlertStatus.OPEN, max_length=16, index=True)
    title: str = Field(max_length=500)
    evidence: dict[str, Any] = json_field()
    opened_at: datetime = ts_field(default_now=True)
    acknowledged_by: str | None = Field(default=None, max_length=200)
    acknowledged_at: datetime | None = ts_field(nullable=True)
    resolved_by: str | None = Field(default=None, max_length=200)
    resolved_at: datetime | None = ts_field(nullable=True)
    resolution: str | None = Field(default=None, max_length=2000)
    acknowledgement: str | None = Field(default=None, max_length=2000)
    escalated_at: datetime | None = ts_field(nullable=True)


class NotificationAttempt(SQLModel, table=True):
    """One attempt to tell a person about an alert (email or webhook), kept whatever its outcome."""

    __tablename__ = "notification_attempt"
    id: int | None = Field(default=None, primary_key=True)
    alert_id: int = Field(foreign_key="alert.id", index=True)
    channel: str = Field(max_length=16)
    purpose: str = Field(default="opened", max_length=16)
    recipient: str = Field(max_length=500)
    attempt: int = 1
    at: datetime = ts_field(default_now=True)
    ok: bool = False
    detail: str | None = Field(default=None, max_length=2000)


class Incident(SQLModel, table=True):
    """A possible serious incident, with the date the organisation became aware of it.

    Reporting clocks (EU AI Act Art. 73, MDR Art. 87, FDA 21 CFR 803) run from ``aware_at``.
    """

    __tablename__ = "incident"
    id: int | None = Field(default=None, primary_key=True)
    deployment_id: str = Field(foreign_key="deployment.id", max_length=100, index=True)
    alert_id: int | None = Field(default=None, foreign_key="alert.id")
    title: str = Field(max_length=500)
    description: str | None = Field(default=None, max_length=4000)
    # death | serious_harm | widespread | critical_infrastructure | malfunction
    seriousness: str = Field(max_length=32)
    remedial_action_needed: bool = False
    aware_at: datetime = ts_field()
    created_by: str = Field(max_length=200)
    created_at: datetime = ts_field(default_now=True)
    # Regime -> ISO date it was reported to that regulator, when it was.
    reports: dict[str, Any] = json_field()
    corrective_action: str | None = Field(default=None, max_length=4000)
    closed_at: datetime | None = ts_field(nullable=True)


class Revalidation(SQLModel, table=True):
    """A new model version of a deployment, checked against the accepted one before it treats
    patients: criteria declared first, then evidence, the evaluation and a named reviewer's
    decision (``phase4.monitor.domain.revalidation``). At most one is open per deployment."""

    __tablename__ = "revalidation"
    __table_args__ = (
        sa.Index(
            "uq_revalidation_open",
            "deployment_id",
            unique=True,
            sqlite_where=sa.text("decided_at IS NULL"),
            postgresql_where=sa.text("decided_at IS NULL"),
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    deployment_id: str = Field(foreign_key="deployment.id", max_length=100, index=True)
    accepted_version: str = Field(max_length=64)
    candidate_version: str = Field(max_length=64)
    # a RevalidationStatus
    status: str = Field(max_length=32)
    reason: str | None = Field(default=None, max_length=2000)
    opened_by: str = Field(max_length=200)
    opened_at: datetime = ts_field(default_now=True)
    # {"margins": {criterion: margin}, "prediction": key, "truth": key}
    criteria: dict[str, Any] | None = json_field(nullable=True)
    criteria_by: str | None = Field(default=None, max_length=200)
    criteria_at: datetime | None = ts_field(nullable=True)
    # The locked validation set: its cases, SHA-256 of the uploaded file, and shadow evidence.
    validation_cases: dict[str, Any] | None = json_field(nullable=True)
    validation_sha256: str | None = Field(default=None, max_length=64)
    shadow: dict[str, Any] | None = json_field(nullable=True)
    evidence_at: datetime | None = ts_field(nullable=True)
    results: dict[str, Any] | None = json_field(nullable=True)
    verdict: str | None = Field(default=None, max_length=16)
    evaluated_at: datetime | None = ts_field(nullable=True)
    decision: str | None = Field(default=None, max_length=32)
    conditions: str | None = Field(default=None, max_length=4000)
    decided_by: str | None = Field(default=None, max_length=200)
    decided_at: datetime | None = ts_field(nullable=True)


class DriftReport(SQLModel, table=True):
    """An evidently data-drift report (window against reference) for the alert that asked for it."""

    __tablename__ = "drift_report"
    id: int | None = Field(default=None, primary_key=True)
    alert_id: int = Field(foreign_key="alert.id", unique=True)
    created_at: datetime = ts_field(default_now=True)
    reference_rows: int
    current_rows: int
    summary: dict[str, Any] = json_field()
    html_gzip: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))


class AuditEntry(SQLModel, table=True):
    """One action of consequence; hash-chained to its predecessor (see
    ``phase4.monitor.store.audit``)."""

    __tablename__ = "audit_entry"
    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    at: datetime = ts_field()
    actor: str = Field(max_length=200)
    action: str = Field(max_length=64)
    entity_type: str = Field(max_length=64)
    entity_id: str = Field(max_length=200)
    reason: str | None = Field(default=None, max_length=2000)
    old_value: dict[str, Any] | None = json_field(nullable=True)
    new_value: dict[str, Any] | None = json_field(nullable=True)
    prev_hash: str = Field(max_length=64)
    entry_hash: str = Field(max_length=64, unique=True)


class DetectorState(SQLModel, table=True):
    """The persisted state of one detector on one stream, so detection survives restarts."""

    __tablename__ = "detector_state"
    __table_args__ = (
        sa.UniqueConstraint("deployment_id", "stream", "detector", name="uq_detector_state"),
    )
    id: int | None = Field(default=None, primary_key=True)
    deployment_id: str = Field(foreign_key="deployment.id", max_length=100)
    stream: str = Field(max_length=200)
    detector: str = Field(max_length=64)
    state: dict[str, Any] = json_field()
    last_acquired_at: datetime | None = ts_field(nullable=True)
    updated_at: datetime = ts_field(default_now=True)
    # Bumped by every save: a pass that computed outside its write transaction writes only if
    # the state is still the version it read (phase4.monitor.surveillance.detection).
    version: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class DeploymentStream(SQLModel, table=True):
    """A feature or output name a deployment has sent, with the kind of its first value.

    Kept at ingest so that the distinct names per deployment can be capped and a value the
    stream's detectors could not use (a string in a numeric stream) refused, without reading
    the records."""

    __tablename__ = "deployment_stream"
    __table_args__ = (
        sa.UniqueConstraint("deployment_id", "name", name="uq_deployment_stream_name"),
    )
    id: int | None = Field(default=None, primary_key=True)
    deployment_id: str = Field(foreign_key="deployment.id", max_length=100)
    name: str = Field(max_length=120)
    kind: str | None = Field(default=None, max_length=16)
    first_seen_at: datetime = ts_field(default_now=True)


class ApiToken(SQLModel, table=True):
    """A bearer token. Only the SHA-256 of the secret is kept; the secret is shown once."""

    __tablename__ = "api_token"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    role: str = Field(max_length=16)
    site_id: str | None = Field(default=None, foreign_key="site.id", max_length=64)
    token_sha256: str = Field(max_length=64, unique=True)
    created_at: datetime = ts_field(default_now=True)
    revoked_at: datetime | None = ts_field(nullable=True)
    # Refused from this instant on (None: never expires).
    expires_at: datetime | None = ts_field(nullable=True)
    # Updated at most once a minute (phase4.monitor.store.auth.LAST_USED_RESOLUTION_S), not per
    # request.
    last_used_at: datetime | None = ts_field(nullable=True)


class DeviceIdentityRecord(SQLModel, table=True):
    """A deployment's device identity, intended use, PMS plan and validated baseline: a
    ``DeviceIdentity`` (``phase4.monitor.core.device_identity``) as JSON, one row per
    deployment, replaced as a whole by each audited change."""

    __tablename__ = "device_identity"
    deployment_id: str = Field(primary_key=True, foreign_key="deployment.id", max_length=100)
    identity: dict[str, Any] = json_field()
    updated_by: str = Field(max_length=200)
    updated_at: datetime = ts_field(default_now=True)


class SubgroupSnapshot(SQLModel, table=True):
    """A deployment's latest subgroup table (docs/SUBGROUPS.md), saved by the subgroup pass
    (``phase4.monitor.surveillance.subgroups``) so that /metrics reads one small row per
    deployment instead of its records; replaced as a whole at each pass."""

    __tablename__ = "subgroup_snapshot"
    deployment_id: str = Field(primary_key=True, foreign_key="deployment.id", max_length=100)
    snapshot: dict[str, Any] = json_field()
    updated_at: datetime = ts_field(default_now=True)
