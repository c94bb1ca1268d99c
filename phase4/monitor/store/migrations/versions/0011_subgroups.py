"""subgroups: each deployment's latest subgroup table, saved by the subgroup pass for /metrics

Revision ID: 0011_subgroups
Revises: 0010_revalidation
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0011_subgroups"
down_revision: str | None = "0010_revalidation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subgroup_snapshot",
        sa.Column("deployment_id", sa.String(length=100), nullable=False),
        sa.Column("snapshot", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployment.id"]),
        sa.PrimaryKeyConstraint("deployment_id"),
    )


def downgrade() -> None:
    op.drop_table("subgroup_snapshot")
