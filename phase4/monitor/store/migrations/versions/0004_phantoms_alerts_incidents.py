"""phantom tolerances and canary outputs, alert lifecycle, notification attempts, incidents

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("phantom_result") as batch:
        batch.add_column(sa.Column("ai_outputs", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("review_note", sa.String(length=2000), nullable=True))
        batch.add_column(sa.Column("qc_processed_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("alert") as batch:
        batch.add_column(sa.Column("acknowledgement", sa.String(length=2000), nullable=True))
        batch.add_column(sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "phantom_tolerance",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("lower_action", sa.Float(), nullable=True),
        sa.Column("lower_tolerance", sa.Float(), nullable=True),
        sa.Column("upper_tolerance", sa.Float(), nullable=True),
        sa.Column("upper_action", sa.Float(), nullable=True),
        sa.Column("unit", sa.String(length=32), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=2000), nullable=True),
        sa.ForeignKeyConstraint(["device_id"], ["device.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("device_id", "kind", "metric", "version", name="uq_phantom_tolerance"),
    )
    op.create_index("ix_phantom_tolerance_device_id", "phantom_tolerance", ["device_id"])
    op.create_table(
        "notification_attempt",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("recipient", sa.String(length=500), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.String(length=2000), nullable=True),
        sa.ForeignKeyConstraint(["alert_id"], ["alert.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_notification_attempt_alert_id", "notification_attempt", ["alert_id"])
    op.create_table(
        "incident",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("deployment_id", sa.String(length=100), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=True),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("description", sa.String(length=4000), nullable=True),
        sa.Column("seriousness", sa.String(length=32), nullable=False),
        sa.Column("remedial_action_needed", sa.Boolean(), nullable=False),
        sa.Column("aware_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reports", sa.JSON(), nullable=False),
        sa.Column("corrective_action", sa.String(length=4000), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["alert_id"], ["alert.id"]),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployment.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_incident_deployment_id", "incident", ["deployment_id"])


def downgrade() -> None:
    op.drop_index("ix_incident_deployment_id", table_name="incident")
    op.drop_table("incident")
    op.drop_index("ix_notification_attempt_alert_id", table_name="notification_attempt")
    op.drop_table("notification_attempt")
    op.drop_index("ix_phantom_tolerance_device_id", table_name="phantom_tolerance")
    op.drop_table("phantom_tolerance")
    with op.batch_alter_table("alert") as batch:
        batch.drop_column("escalated_at")
        batch.drop_column("acknowledgement")
    with op.batch_alter_table("phantom_result") as batch:
        batch.drop_column("qc_processed_at")
        batch.drop_column("review_note")
        batch.drop_column("ai_outputs")
