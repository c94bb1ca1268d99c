"""Reading and changing a deployment's device identity (an audited action).

The identity (``phase4.monitor.core.device_identity.DeviceIdentity``: manufacturer, Basic
UDI-DI, MDR class, notified body, intended use, PMS plan, validated baseline, clinical
acceptance) is what the post-market surveillance report (MDR Art. 86, AI Act Art. 72) is
about. Each change replaces the stored document and appends an audit entry with the old and
new documents (21 CFR 11.10(e): who, when, why, old and new value), so the report's identity
section can be traced to who wrote it.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from phase4.monitor.core.device_identity import (
    DeviceIdentity,
    DeviceIdentityError,
    parse_identity,
)
from phase4.monitor.core.refusals import ActionRefused
from phase4.monitor.store.audit import record_action
from phase4.monitor.store.locks import lock_deployment
from phase4.monitor.store.models import Deployment, DeviceIdentityRecord, utcnow

ACTION = "deployment.identity"


class IdentityRefused(ActionRefused):
    """The identity cannot be set as asked (404 no such deployment, 422 invalid document)."""


def identity_record(session: Session, deployment_id: str) -> DeviceIdentityRecord | None:
    return session.get(DeviceIdentityRecord, deployment_id)


def device_identity(session: Session, deployment_id: str) -> DeviceIdentity | None:
    """The deployment's identity as validated now; None if none was recorded. A stored
    document the contract no longer accepts raises ``DeviceIdentityError``."""
    row = identity_record(session, deployment_id)
    return None if row is None else parse_identity(row.identity)


def set_device_identity(
    session: Session,
    deployment_id: str,
    identity: DeviceIdentity | dict[str, Any],
    *,
    actor: str,
    reason: str | None = None,
) -> DeviceIdentityRecord:
    """Replace the deployment's identity with ``identity`` (validated first) and audit it.

    Setting the same document again is a no-op (no audit entry)."""
    try:
        parsed = parse_identity(identity)
    except DeviceIdentityError as exc:
        raise IdentityRefused(str(exc)) from None
    if session.get(Deployment, deployment_id) is None:
        raise IdentityRefused(f"no deployment {deployment_id!r}", status_code=404)
    lock_deployment(session, deployment_id)  # serialises writers: the row, then the trail
    row = session.get(DeviceIdentityRecord, deployment_id)
    new = parsed.stored()
    old = None if row is None else dict(row.identity)
    if old == new and row is not None:
        return row
    if row is None:
        row = DeviceIdentityRecord(deployment_id=deployment_id, identity=new, updated_by=actor)
    else:
        row.identity, row.updated_by, row.updated_at = new, actor, utcnow()
    session.add(row)
    session.flush()
    record_action(
        session,
        actor=actor,
        action=ACTION,
        entity_type="deployment",
        entity_id=deployment_id,
        reason=reason,
        old_value={"identity": old} if old is not None else None,
        new_value={"identity": new},
    )
    return row
