"""revalidation: a record's model version and shadow outputs, and the revalidation of a new
model version (criteria, evidence, results, decision)

Revision ID: 0010_revalidation
Revises: 0009_device_identity
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0010_revalidation"
down_revision: str | None = "0009_device_identity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inference_record") as batch:
        batch.add_column(sa.Column("model_version", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("shadow_outputs", sa.JSON(), nullable=True))
    op.create_table(
        "revalidation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("deployment_id", sa.String(length=100), nullable=False),
        sa.Column("accepted_version", sa.String(length=64), nullable=False),
        sa.Column("candidate_version", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=2000), nullable=True),
        sa.Column("opened_by", sa.String(length=200), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("criteria", sa.JSON(), nullable=True),
        sa.Column("criteria_by", sa.String(length=200), nullable=True),
        sa.Column("criteria_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("validation_cases", sa.JSON(), nullable=True),
        sa.Column("validation_sha256", sa.String(length=64), nullable=True),
        sa.Column("shadow", sa.JSON(), nullable=True),
        sa.Column("evidence_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("results", sa.JSON(), nullable=True),
        sa.Column("verdict", sa.String(length=16), nullable=True),
        sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision", sa.String(length=32), nullable=True),
        sa.Column("conditions", sa.String(length=4000), nullable=True),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployment.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_revalidation_deployment_id", "revalidation", ["deployment_id"])
    op.create_index(
        "uq_revalidation_open",
        "revalidation",
        ["deployment_id"],
        unique=True,
        sqlite_where=sa.text("decided_at IS NULL"),
        postgresql_where=sa.text("decided_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_revalidation_open", table_name="revalidation")
    op.drop_index("ix_revalidation_deployment_id", table_name="revalidation")
    op.drop_table("revalidation")
    with op.batch_alter_table("inference_record") as batch:
        batch.drop_column("shadow_outputs")
        batch.drop_column("model_version")
