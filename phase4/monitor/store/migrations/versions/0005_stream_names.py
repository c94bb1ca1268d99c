"""feature and output names per deployment (the cap on distinct streams, their kinds)

Revision ID: 0005_stream_names
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0005_stream_names"
down_revision: str | None = "0004"
branch_labels = None
depends_on = None


def _kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return "binary"
    if isinstance(value, int | float):
        return "numeric"
    if isinstance(value, str):
        return "categorical"
    return None


def upgrade() -> None:
    stream = op.create_table(
        "deployment_stream",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("deployment_id", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployment.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("deployment_id", "name", name="uq_deployment_stream_name"),
    )
    # The names already stored, each with the kind of its first non-null value (as ingest
    # records new names).
    records = sa.table(
        "inference_record",
        sa.column("id", sa.Integer()),
        sa.column("deployment_id", sa.String()),
        sa.column("features", sa.JSON()),
        sa.column("outputs", sa.JSON()),
        sa.column("received_at", sa.DateTime(timezone=True)),
    )
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    rows = op.get_bind().execute(
        sa.select(
            records.c.deployment_id, records.c.features, records.c.outputs, records.c.received_at
        ).order_by(records.c.id)
    )
    for deployment_id, features, outputs, received_at in rows:
        for section, values in (("features", features), ("outputs", outputs)):
            for key, value in (values or {}).items():
                name = f"{section}.{key}"[:120]
                if value is None or (deployment_id, name) in seen:
                    continue
                seen[(deployment_id, name)] = {
                    "deployment_id": deployment_id,
                    "name": name,
                    "kind": _kind(value),
                    "first_seen_at": received_at,
                }
    if seen:
        op.bulk_insert(stream, list(seen.values()))


def downgrade() -> None:
    op.drop_table("deployment_stream")
