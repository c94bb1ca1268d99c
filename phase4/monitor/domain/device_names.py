"""How a scanner is named to people: one helper for every page, message and export.

A device's id is a row number that means nothing to a physicist ("device 2"); the fleet page
named scanners by manufacturer, model and serial while alert pages and email subjects used the
id. Everything that names a device for a person goes through :func:`device_name`, so the same
scanner reads the same everywhere. A serial names equipment, never a person.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlmodel import Session, col, select

from phase4.monitor.store.models import Device


def device_name(device: Device) -> str:
    """``SIEMENS Biograph Vision 600 (site-a-PETCT-01)``: manufacturer, model, serial; the
    site when the serial is empty."""
    maker_model = " ".join(p for p in (device.manufacturer.strip(), device.model.strip()) if p)
    tag = device.serial.strip() or device.site_id
    return f"{maker_model or 'Scanner'} ({tag})"


def unknown_device(device_id: int) -> str:
    """What names a device id that is not (or no longer) in the store."""
    return f"scanner #{device_id} (not in the store)"


def device_names(session: Session, ids: Iterable[int | None] | None = None) -> dict[int, str]:
    """Device id -> :func:`device_name` (every device when ``ids`` is None)."""
    q = select(Device)
    if ids is not None:
        wanted = sorted({i for i in ids if i is not None})
        if not wanted:
            return {}
        q = q.where(col(Device.id).in_(wanted))
    return {d.id: device_name(d) for d in session.exec(q) if d.id is not None}


def name_of_device(session: Session, device_id: int) -> str:
    """One device's name, or :func:`unknown_device` when the id names none."""
    device = session.get(Device, device_id)
    return device_name(device) if device is not None else unknown_device(device_id)
