"""One settings object: everything the monitor lets an operator configure.

Read from the environment with the ``PHASE4_`` prefix (``PHASE4_DATABASE_URL`` and so on), as in
the FastAPI full-stack template's ``core/config.py``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from phase4.monitor.core.limits import IngestLimits

DEFAULT_DATA_DIR = Path("phase4-data")


def sqlite_url(path: Path) -> str:
    """SQLAlchemy URL of a SQLite file (absolute, so it does not depend on the cwd later)."""
    return f"sqlite:///{path.resolve()}"


class Settings(BaseSettings):
    """Monitor configuration. Every field can be set as ``PHASE4_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="PHASE4_", extra="ignore")

    data_dir: Path = Field(DEFAULT_DATA_DIR, description="Where the default SQLite store lives.")
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL. Unset: SQLite at <data_dir>/phase4.db. "
        "PostgreSQL: postgresql+psycopg://user@host:5432/dbname",
    )
    max_batch_records: int = Field(1000, ge=1, le=10_000, description="Records per POST.")
    detection_interval_s: float = Field(
        30.0,
        ge=0,
        description="How often the service's worker runs (drift engine, phantom QC, reports, "
        "heartbeat, notifications); 0 turns the worker off.",
    )
    detection_in_server: bool = Field(
        True,
        description="Whether the service's worker runs the drift engine itself. false: it runs "
        "every other step, and `phase4 detect --loop` processes analyse (the setting for "
        "PostgreSQL with several replicas, or to keep ingest latency flat while a backlog drains).",
    )
    records_page_size_max: int = Field(
        1000, ge=1, description="Largest page GET /v1/records returns."
    )
    sqlite_busy_timeout_s: float = Field(
        10.0,
        ge=0,
        le=600,
        description="How long a SQLite statement waits for another writer's lock before the "
        "API answers 503 database_unavailable.",
    )
    postgres_lock_timeout_s: float | None = Field(
        None,
        gt=0,
        le=600,
        description="PostgreSQL lock_timeout of the API's sessions (unset: wait for ever); a "
        "statement that waited longer is answered 503 database_unavailable.",
    )

    # Limits on what the API accepts (docs/API.md, "Limits"). Each refusal is a 4xx naming the
    # limit and the field; nothing already stored is touched.
    max_body_bytes: int = Field(
        10 * 1024 * 1024,
        ge=1024,
        description="Largest request body; a larger Content-Length is refused before reading, "
        "a chunked body is cut when it passes the limit (413).",
    )
    max_features_per_record: int = Field(200, ge=1, description="Feature names per record.")
    max_outputs_per_record: int = Field(200, ge=1, description="Top-level output names.")
    max_string_chars: int = Field(
        1000, ge=1, description="Longest string in features, outputs and ground truth."
    )
    max_json_depth: int = Field(
        32, ge=1, le=200, description="Deepest nesting of outputs and ground truth."
    )
    max_future_skew_s: float = Field(
        86_400.0,
        ge=0,
        le=366 * 86_400,
        description="How far past the monitor's clock a record's time may lie (clock skew).",
    )
    max_streams_per_deployment: int = Field(
        200, ge=1, description="Distinct feature and output names one deployment may have."
    )

    def ingest_limits(self) -> IngestLimits:
        """The limits the ingest validator applies, from these settings."""
        return IngestLimits(
            max_features_per_record=self.max_features_per_record,
            max_outputs_per_record=self.max_outputs_per_record,
            max_string_chars=self.max_string_chars,
            max_json_depth=self.max_json_depth,
            max_future_skew_s=self.max_future_skew_s,
            max_streams_per_deployment=self.max_streams_per_deployment,
        )

    def resolved_database_url(self) -> str:
        """The database URL in force: the configured one, or the default SQLite file."""
        if self.database_url:
            return self.database_url
        return sqlite_url(self.data_dir / "phase4.db")
