"""Sites, devices, AI models and deployments: what is being watched, and where.

Every creation is an audited action. A deployment's monitoring configuration is a
``MonitoringConfig`` (``phase4.monitor.core.monitoring``): a document that is not one is
refused here, naming the field, before anything is written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlmodel import Session, select

from phase4.monitor.core.monitoring import MonitoringConfig, MonitoringConfigError, parse_monitoring
from phase4.monitor.core.refusals import ActionRefused
from phase4.monitor.store.audit import record_action
from phase4.monitor.store.models import AIModel, Deployment, Device, Site

_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,99}$")


class RegistryError(ActionRefused):
    """A registry change cannot be made as asked; the message says why (422)."""


def _check_slug(kind: str, value: str) -> None:
    if not _SLUG.match(value):
        raise RegistryError(
            f"{kind} id {value!r} is not valid: use 1-100 letters, digits and _ . : @ -, "
            "starting with a letter or digit"
        )


def ensure_site(session: Session, site_id: str, name: str | None = None, *, actor: str) -> Site:
    _check_slug("site", site_id)
    site = session.get(Site, site_id)
    if site is None:
        site = Site(id=site_id, name=name or site_id)
        session.add(site)
        session.flush()
        record_action(
            session,
            actor=actor,
            action="site.create",
            entity_type="site",
            entity_id=site_id,
            new_value={"name": site.name},
        )
    return site


def ensure_model(
    session: Session,
    name: str,
    version: str,
    *,
    actor: str,
    manufacturer: str | None = None,
    intended_use: str | None = None,
    udi: str | None = None,
) -> AIModel:
    model = session.exec(
        select(AIModel).where(AIModel.name == name, AIModel.version == version)
    ).first()
    if model is None:
        model = AIModel(
            name=name,
            version=version,
            manufacturer=manufacturer,
            intended_use=intended_use,
            udi=udi,
        )
        session.add(model)
        session.flush()
        record_action(
            session,
            actor=actor,
            action="model.create",
            entity_type="ai_model",
            entity_id=str(model.id),
            new_value=model.model_dump(exclude={"id", "created_at"}),
        )
    return model


def ensure_device(
    session: Session,
    *,
    site_id: str,
    manufacturer: str,
    model: str,
    serial: str,
    modality: str = "PT",
    software_versions: str | None = None,
    actor: str,
) -> Device:
    device = session.exec(
        select(Device).where(Device.site_id == site_id, Device.serial == serial)
    ).first()
    if device is None:
        device = Device(
            site_id=site_id,
            manufacturer=manufacturer,
            model=model,
            serial=serial,
            modality=modality,
            software_versions=software_versions,
        )
        session.add(device)
        session.flush()
        record_action(
            session,
            actor=actor,
            action="device.create",
            entity_type="device",
            entity_id=str(device.id),
            new_value=device.model_dump(exclude={"id", "created_at"}),
        )
    return device


def create_deployment(
    session: Session,
    *,
    deployment_id: str,
    site_id: str,
    model_name: str,
    model_version: str,
    actor: str,
    site_name: str | None = None,
    manufacturer: str | None = None,
    intended_use: str | None = None,
    monitoring: MonitoringConfig | Mapping[str, Any] | None = None,
    accepted_at: datetime | None = None,
    reason: str | None = None,
) -> Deployment:
    """Create a deployment (and its site and model if new). Re-creating an identical one is a no-op;
    re-using an id for a different site or model is refused, and so is a ``monitoring`` that is
    not a ``MonitoringConfig`` (the message names each field: ``monitoring.streams[2].kind:
    ...``). What is stored is the configuration as validated, with the keys that were given."""
    _check_slug("deployment", deployment_id)
    try:
        config = parse_monitoring(monitoring)
    except MonitoringConfigError as exc:
        raise RegistryError(str(exc)) from None
    site = ensure_site(session, site_id, site_name, actor=actor)
    model = ensure_model(
        session,
        model_name,
        model_version,
        actor=actor,
        manufacturer=manufacturer,
        intended_use=intended_use,
    )
    existing = session.get(Deployment, deployment_id)
    if existing is not None:
        if existing.site_id != site.id or existing.model_id != model.id:
            raise RegistryError(
                f"deployment {deployment_id!r} already exists for another site or model version"
            )
        return existing
    deployment = Deployment(
        id=deployment_id,
        site_id=site.id,
        model_id=model.id or 0,
        monitoring=config.stored(),
        accepted_at=accepted_at,
    )
    session.add(deployment)
    session.flush()
    record_action(
        session,
        actor=actor,
        action="deployment.create",
        entity_type="deployment",
        entity_id=deployment_id,
        reason=reason,
        new_value={
            "site_id": site.id,
            "model": model_name,
            "model_version": model_version,
            "monitoring": deployment.monitoring,
        },
    )
    return deployment
