"""drift processing markers on records and feedback

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inference_record") as batch:
        batch.add_column(sa.Column("drift_processed_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("feedback") as batch:
        batch.add_column(sa.Column("drift_processed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("feedback") as batch:
        batch.drop_column("drift_processed_at")
    with op.batch_alter_table("inference_record") as batch:
        batch.drop_column("drift_processed_at")
