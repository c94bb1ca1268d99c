"""The alert rule both surveillance passes share (phase4.monitor.surveillance.alerting): one open
alert per (deployment or device, stream, cause), a repeat counted in its evidence, links written
both ways when an alert opens, no audit entry, and the open alerts locked in id order. On SQLite
and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from phase4.monitor.domain.alert_actions import acknowledge_alert, resolve_alert
from phase4.monitor.domain.registry import ensure_device
from phase4.monitor.store.models import Alert, AuditEntry, Deployment, Device
from phase4.monitor.surveillance.alerting import (
    LINK_WINDOW,
    Owner,
    lock_open_alerts,
    open_alert,
    raise_alert,
)
from tests.conftest import Fixture

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


def _at(days: float) -> str:
    return (T0 + timedelta(days=days)).isoformat()


def _evidence(days: float, change_days: float | None = None) -> dict[str, Any]:
    return {
        "detector": "cusum",
        "timestamp": _at(days),
        "change_timestamp": _at(days if change_days is None else change_days),
    }


def _device(session: Session, site: str = "site-a", serial: str = "PV-1") -> Device:
    return ensure_device(
        session,
        site_id=site,
        manufacturer="SIEMENS",
        model="Biograph Vision 600",
        serial=serial,
        actor="test",
    )


def _raise(
    session: Session,
    owner: Owner,
    days: float,
    *,
    stream: str = "features.x",
    cause: str = "drift",
    title: str = "x rose",
    change_days: float | None = None,
) -> Alert | None:
    return raise_alert(
        session,
        owner,
        stream=stream,
        cause=cause,
        severity="warning",
        title=title,
        evidence=_evidence(days, change_days),
    )


def _owner(session: Session, world: Fixture, kind: str) -> Owner:
    if kind == "deployment":
        deployment = session.get(Deployment, world.deployment_a)
        assert deployment is not None
        return deployment
    return _device(session)


def _alerts(session: Session) -> list[Alert]:
    return list(session.exec(select(Alert).order_by(col(Alert.id))))


@pytest.mark.parametrize("kind", ["deployment", "device"])
def test_a_repeat_adds_to_the_open_alert_and_never_opens_a_second(
    world: Fixture, kind: str
) -> None:
    with Session(world.engine) as s:
        owner = _owner(s, world, kind)
        first = _raise(s, owner, 0, title="first")
        assert first is not None and first.id is not None
        assert _raise(s, owner, 1, title="second") is None
        assert _raise(s, owner, 2, title="third") is None
        s.commit()
        s.expire_all()  # read back what was stored
        alerts = _alerts(s)
        assert [a.id for a in alerts] == [first.id]
        alert = alerts[0]
        assert (alert.deployment_id, alert.device_id) == (
            (world.deployment_a, None) if kind == "deployment" else (None, owner.id)
        )
        assert alert.title == "first" and alert.severity == "warning"
        assert alert.evidence["repeats"] == 2
        assert alert.evidence["last_timestamp"] == _at(2)
        assert alert.evidence["timestamp"] == _at(0)  # the first alarm's evidence stays
        assert alert.evidence["linked"] == []


@pytest.mark.parametrize("kind", ["deployment", "device"])
def test_an_acknowledged_alert_collects_repeats_and_a_resolved_one_does_not(
    world: Fixture, kind: str
) -> None:
    with Session(world.engine) as s:
        owner = _owner(s, world, kind)
        first = _raise(s, owner, 0)
        assert first is not None and first.id is not None
        s.commit()
        acknowledge_alert(s, first.id, user="dr-curie", reason="looking at it")
        s.commit()
        assert _raise(s, owner, 1) is None
        s.commit()
        resolve_alert(s, first.id, user="dr-curie", reason="recalibrated the scanner")
        s.commit()
        assert open_alert(s, owner, "features.x", "drift") is None
        second = _raise(s, owner, 2)
        assert second is not None and second.id != first.id
        s.commit()
        s.expire_all()  # read back what was stored
        alerts = _alerts(s)
        assert [(a.status, a.evidence.get("repeats")) for a in alerts] == [
            ("resolved", 1),
            ("open", None),
        ]


def test_each_owner_stream_and_cause_has_its_own_alert(world: Fixture) -> None:
    with Session(world.engine) as s:
        dep_a = s.get(Deployment, world.deployment_a)
        dep_b = s.get(Deployment, world.deployment_b)
        assert dep_a is not None and dep_b is not None
        device = _device(s)
        opened = [
            _raise(s, dep_a, 0),
            _raise(s, dep_a, 0, stream="features.y"),
            _raise(s, dep_a, 0, cause="performance"),
            _raise(s, dep_b, 0),
            _raise(s, device, 0),
            _raise(s, _device(s, serial="PV-2"), 0),
        ]
        s.commit()
        assert all(a is not None for a in opened)
        assert len(_alerts(s)) == 6
        assert all(a.evidence.get("repeats") is None for a in _alerts(s))


def test_links_are_written_both_ways_when_an_alert_opens(world: Fixture) -> None:
    with Session(world.engine) as s:
        deployment = s.get(Deployment, world.deployment_a)
        assert deployment is not None
        device = _device(s)
        elsewhere = _device(s, site="site-b", serial="PV-9")
        # a phantom fault on site A's scanner, and one at site B (never linked to site A's AI)
        qc = _raise(s, device, 0, stream="phantom.cylinder.suv_mean", cause="phantom_drift")
        _raise(s, elsewhere, 0, stream="phantom.cylinder.suv_mean", cause="phantom_drift")
        # the AI drifts at site A, its change estimated three days after the phantom fault
        drift = _raise(s, deployment, 5, change_days=3, title="SUVmax rose")
        assert qc is not None and drift is not None
        assert [(link["alert_id"], link.get("device_id")) for link in drift.evidence["linked"]] == [
            (qc.id, device.id)
        ]
        # a repeat of the phantom fault does not recompute its links
        assert (
            _raise(s, device, 6, stream="phantom.cylinder.suv_mean", cause="phantom_drift") is None
        )
        # the canary fails later on the same scanner: it links the AI's alert, from the other side
        canary = _raise(s, device, 10, stream="canary.cylinder", cause="ai_canary")
        assert canary is not None
        assert canary.evidence["linked"] == [
            {
                "what": "SUVmax rose",
                "at": _at(3),
                "alert_id": drift.id,
                "deployment": world.deployment_a,
                "stream": "features.x",
                "cause": "drift",
            }
        ]
        s.commit()
        s.expire_all()  # read back what was stored
        stored = {a.id: a.evidence["linked"] for a in _alerts(s)}
        assert stored[qc.id] == []  # opened first: nothing to link then, nothing added since
        assert [link["alert_id"] for link in stored[drift.id]] == [qc.id]


def test_a_deployments_alert_links_what_began_from_the_window_before_to_a_day_after(
    world: Fixture,
) -> None:
    """Its other streams' alerts and the site's device alerts, begun from ``LINK_WINDOW`` before
    the change's start to a day after the alarm; not its own stream's alerts (any cause)."""
    window = LINK_WINDOW / timedelta(days=1)
    with Session(world.engine) as s:
        deployment = s.get(Deployment, world.deployment_a)
        assert deployment is not None
        device = _device(s)
        too_early = _raise(s, device, -window - 0.1, stream="phantom.a", cause="phantom_drift")
        at_the_edge = _raise(s, device, -window, stream="phantom.b", cause="phantom_drift")
        too_late = _raise(s, device, 2.1, stream="phantom.c", cause="phantom_drift")
        other_stream = _raise(s, deployment, 1.9, stream="features.y")
        same_stream = _raise(s, deployment, 0, cause="performance")
        assert None not in (too_early, at_the_edge, too_late, other_stream, same_stream)
        drift = _raise(s, deployment, 1, change_days=0)
        assert drift is not None and at_the_edge is not None and other_stream is not None
        assert [link["alert_id"] for link in drift.evidence["linked"]] == [
            at_the_edge.id,
            other_stream.id,
        ]
        s.rollback()


def test_a_devices_alert_links_the_sites_ai_alerts_begun_within_the_window(
    world: Fixture,
) -> None:
    window = LINK_WINDOW / timedelta(days=1)
    with Session(world.engine) as s:
        site_a = s.get(Deployment, world.deployment_a)
        site_b = s.get(Deployment, world.deployment_b)
        assert site_a is not None and site_b is not None
        inside = [
            _raise(s, site_a, 30, change_days=30 - window, stream="s1"),
            _raise(s, site_a, 30 + window, stream="s2"),
        ]
        outside = [
            _raise(s, site_a, 30, change_days=30 - window - 0.1, stream="s3"),
            _raise(s, site_a, 30 + window + 0.1, stream="s4"),
            _raise(s, site_b, 30, stream="s5"),  # another site's AI
        ]
        assert None not in inside + outside
        qc = _raise(s, _device(s), 31, change_days=30, stream="phantom.x", cause="phantom_drift")
        assert qc is not None
        assert [link["alert_id"] for link in qc.evidence["linked"]] == [
            a.id for a in inside if a is not None
        ]
        s.rollback()


def test_opening_and_repeating_write_no_audit_entry(world: Fixture) -> None:
    with Session(world.engine) as s:
        deployment = s.get(Deployment, world.deployment_a)
        assert deployment is not None
        device = _device(s)
        s.commit()
        entries = s.exec(select(func.count()).select_from(AuditEntry)).one()
        _raise(s, deployment, 0)
        _raise(s, deployment, 1)
        _raise(s, device, 0)
        _raise(s, device, 1)
        s.commit()
        assert s.exec(select(func.count()).select_from(AuditEntry)).one() == entries
        assert len(_alerts(s)) == 2


@contextmanager
def _alert_locks(engine: Engine) -> Iterator[list[list[int]]]:
    """The ids each alert row lock (lock_alerts) was sent for, in order."""
    pattern = {
        "postgresql": re.compile(r"FROM alert\b.*FOR NO KEY UPDATE", re.I | re.S),
        "sqlite": re.compile(r"^\s*UPDATE alert SET id=alert\.id", re.I),
    }[engine.dialect.name]
    locks: list[list[int]] = []

    def capture(conn, cursor, statement, parameters, context, executemany) -> None:
        if pattern.search(statement):
            values = parameters.values() if isinstance(parameters, dict) else parameters
            locks.append([int(v) for v in values])

    event.listen(engine, "before_cursor_execute", capture)
    try:
        yield locks
    finally:
        event.remove(engine, "before_cursor_execute", capture)


@pytest.mark.parametrize("kind", ["deployment", "device"])
def test_the_owners_open_alerts_are_locked_in_id_order(world: Fixture, kind: str) -> None:
    """Only the owner's alerts, only the open ones, in one statement, in id order."""
    with Session(world.engine) as s:
        owner = _owner(s, world, kind)
        other = s.get(Deployment, world.deployment_b)
        assert other is not None
        alerts = [
            _raise(s, owner, 0, stream="s3"),
            _raise(s, owner, 0, stream="s1"),
            _raise(s, owner, 0, stream="s2"),
            _raise(s, other, 0, stream="s1"),
        ]
        ids = [a.id for a in alerts if a is not None and a.id is not None]
        assert len(ids) == 4
        s.commit()
        resolve_alert(s, ids[2], user="dr-curie", reason="a resolved alert is not locked")
        s.commit()
        with _alert_locks(world.engine) as locks:
            lock_open_alerts(s, owner)
        s.rollback()
        assert locks == [sorted(ids[:2])]
        with _alert_locks(world.engine) as locks:
            lock_open_alerts(s, _device(s, serial="PV-NEW"))  # no open alert: nothing to lock
        s.rollback()
        assert locks == []
