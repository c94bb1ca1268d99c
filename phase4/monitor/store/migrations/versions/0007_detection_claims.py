"""detection claims: partial indexes of unconsumed records and labels, detector state version

Revision ID: 0007_detection_claims
Revises: 0006_token_expiry
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007_detection_claims"
down_revision: str | None = "0006_token_expiry"
branch_labels = None
depends_on = None

UNPROCESSED = sa.text("drift_processed_at IS NULL")


def upgrade() -> None:
    op.create_index(
        "ix_inference_record_unprocessed",
        "inference_record",
        ["deployment_id", "acquired_at", "id"],
        sqlite_where=UNPROCESSED,
        postgresql_where=UNPROCESSED,
    )
    op.create_index(
        "ix_feedback_unprocessed",
        "feedback",
        ["record_id"],
        sqlite_where=UNPROCESSED,
        postgresql_where=UNPROCESSED,
    )
    with op.batch_alter_table("detector_state") as batch:
        batch.add_column(
            sa.Column("version", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )


def downgrade() -> None:
    with op.batch_alter_table("detector_state") as batch:
        batch.drop_column("version")
    op.drop_index("ix_feedback_unprocessed", table_name="feedback")
    op.drop_index("ix_inference_record_unprocessed", table_name="inference_record")
