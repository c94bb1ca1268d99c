"""device identity: a deployment's manufacturer, Basic UDI-DI, risk class, notified body,
intended use, PMS plan reference and validated baseline, as one JSON document per deployment

Revision ID: 0009_device_identity
Revises: 0008_canonical_verdicts
Create Date: 2026-12-14
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009_device_identity"
down_revision: str | None = "0008_canonical_verdicts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "device_identity",
        sa.Column("deployment_id", sa.String(length=100), nullable=False),
        sa.Column("identity", sa.JSON(), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployment.id"]),
        sa.PrimaryKeyConstraint("deployment_id"),
    )


def downgrade() -> None:
    op.drop_table("device_identity")
