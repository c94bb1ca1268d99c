"""One settings object: everything the monitor lets an operator configure.

Read from the environment with the ``PHASE4_`` prefix (``PHASE4_DATABASE_URL`` and so on), as in
the FastAPI full-stack template's ``core/config.py``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

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
        30.0, ge=0, description="How often the service runs the drift engine; 0 turns it off."
    )
    records_page_size_max: int = Field(
        1000, ge=1, description="Largest page GET /v1/records returns."
    )

    def resolved_database_url(self) -> str:
        """The database URL in force: the configured one, or the default SQLite file."""
        if self.database_url:
            return self.database_url
        return sqlite_url(self.data_dir / "phase4.db")
