"""Row locks that work on both backends, taken before a transaction writes the rows.

PostgreSQL: ``SELECT ... FOR NO KEY UPDATE`` (alerts in id order, so two lockers cannot
deadlock). Not ``FOR UPDATE``: that also blocks the ``KEY SHARE`` lock a foreign-key check takes,
so a record, feedback or incident inserted for the deployment or alert would wait for the whole
pass, and an incident linked to an alert would hold that alert while waiting for the deployment
a pass holds, which then waits for the alert: a deadlock.
SQLite has no row locks: a no-op ``UPDATE`` of the rows takes the database's write lock for the
rest of the transaction, and waits for it under the busy timeout. Either way a second process
doing the same check-then-write waits until the first has committed, then sees its write.

Several detection workers on one PostgreSQL claim deployments with
``FOR NO KEY UPDATE SKIP LOCKED`` (:func:`claim_deployment`): a deployment another worker is
analysing is skipped, not waited for, and the claim ends with the claimer's transaction, so a
worker killed mid-pass (its connection closes, its transaction rolls back) frees it at once.

Order, for every transaction that takes more than one: the deployment, then its alerts (id
order), then the audit trail (:func:`phase4.monitor.store.audit.record_action`).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlmodel import Session, col, select

from phase4.monitor.store.models import Alert, Deployment


def lock_alerts(session: Session, alert_ids: Sequence[int]) -> dict[int, Alert]:
    ids = sorted(set(alert_ids))
    if not ids:
        return {}
    if session.get_bind().dialect.name == "sqlite":
        session.execute(sa.update(Alert).where(col(Alert.id).in_(ids)).values(id=Alert.id))
        rows = session.exec(select(Alert).where(col(Alert.id).in_(ids)))
    else:
        rows = session.exec(
            select(Alert)
            .where(col(Alert.id).in_(ids))
            .order_by(col(Alert.id))
            .with_for_update(key_share=True)
        )
    return {a.id: a for a in rows if a.id is not None}


def lock_deployment(session: Session, deployment_id: str) -> Deployment | None:
    if session.get_bind().dialect.name == "sqlite":
        session.execute(
            sa.update(Deployment)
            .where(col(Deployment.id) == deployment_id)
            .values(id=Deployment.id)
        )
        return session.get(Deployment, deployment_id)
    return session.exec(
        select(Deployment).where(Deployment.id == deployment_id).with_for_update(key_share=True)
    ).first()


def claim_deployment(session: Session, deployment_id: str) -> Deployment | None:
    """The deployment, locked for this transaction, or None if another transaction holds it
    (PostgreSQL only: SQLite has one writer, and its passes check their state's version)."""
    return session.exec(
        select(Deployment)
        .where(Deployment.id == deployment_id)
        .with_for_update(key_share=True, skip_locked=True)
    ).first()
