"""Lock order (phase4/monitor/store/audit.py, "Lock order"): every transaction that writes existing
rows and
audits takes its row locks first and the audit trail's lock last, so that two of them (a
detection pass and a reviewer's acknowledgement, an escalation, a reference reset) wait for each
other instead of deadlocking. Checked on the statements each transaction actually sends, on
SQLite and PostgreSQL, and by a reset that must wait for a running pass."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from phase4.monitor.domain.alert_actions import acknowledge_alert
from phase4.monitor.domain.incidents import record_incident
from phase4.monitor.store.audit import record_action, verify_chain
from phase4.monitor.store.locks import lock_alerts
from phase4.monitor.store.models import Alert, AuditEntry, utcnow
from phase4.monitor.surveillance.detection import (
    _lock_deployment,
    detect_deployment,
    open_alerts,
    reset_reference,
)
from phase4.monitor.surveillance.phantom_qc import process_phantom_qc
from tests.conftest import Fixture
from tests.monitor.test_detection import CONFIG, _configure, _send, _study

_WRITE = re.compile(r"^\s*(UPDATE|DELETE FROM)\s+\"?(\w+)", re.IGNORECASE)
_TRAIL = re.compile(r"pg_advisory_xact_lock|FROM audit_entry", re.IGNORECASE)
_ROW_LOCK = re.compile(r"FOR (NO KEY )?UPDATE", re.IGNORECASE)
_ALERT_LOCK = {
    "postgresql": re.compile(r"FROM alert\b.*FOR (NO KEY )?UPDATE", re.IGNORECASE | re.DOTALL),
    "sqlite": re.compile(r"^\s*UPDATE alert SET id=alert\.id", re.IGNORECASE),
}


class Sent(list[str]):
    """The statements a block sent, in order, and their bound parameters (``params``)."""

    params: list[str]


@contextmanager
def statements(engine: Engine) -> Iterator[Sent]:
    sent = Sent()
    sent.params = []

    def capture(conn, cursor, statement, parameters, context, executemany) -> None:
        sent.append(statement)
        sent.params.append(str(parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", capture)


def _locks_rows(statement: str) -> bool:
    """An UPDATE or DELETE of a table other than the trail, or a row lock (FOR UPDATE)."""
    m = _WRITE.match(statement)
    return bool(m and m.group(2).lower() != "audit_entry") or bool(_ROW_LOCK.search(statement))


def assert_trail_last(sent: list[str]) -> None:
    """No row written or locked after the first touch of the audit trail."""
    first = next((i for i, s in enumerate(sent) if _TRAIL.search(s)), None)
    assert first is not None, "the transaction did not audit"
    late = [s.split("\n")[0] for s in sent[first:] if _locks_rows(s)]
    assert late == [], f"rows written or locked after the audit trail was locked: {late}"


def test_the_check_sees_a_row_lock_after_the_trail() -> None:
    with pytest.raises(AssertionError, match="FOR UPDATE"):
        assert_trail_last(["SELECT pg_advisory_xact_lock(1)", "SELECT id FROM alert FOR UPDATE"])
    with pytest.raises(AssertionError, match="FOR NO KEY UPDATE"):
        assert_trail_last(["SELECT * FROM audit_entry", "SELECT id FROM alert FOR NO KEY UPDATE"])
    with pytest.raises(AssertionError, match="UPDATE alert"):
        assert_trail_last(["SELECT * FROM audit_entry", "UPDATE alert SET evidence=?"])
    assert_trail_last(["UPDATE alert SET evidence=?", "SELECT * FROM audit_entry"])


def _world_with_alerts(client: TestClient, world: Fixture) -> None:
    _configure(world.engine, world.deployment_b, CONFIG)
    g = np.random.default_rng(1)
    _send(client, world, [_study(g, i, changed=i >= 300) for i in range(400)])
    detect_deployment(world.engine, world.deployment_b)


def test_acknowledging_writes_the_alert_before_locking_the_trail(
    client: TestClient, world: Fixture
) -> None:
    _world_with_alerts(client, world)
    alert = open_alerts(world.engine, world.deployment_b)[0]
    assert alert.id is not None
    with statements(world.engine) as sent, Session(world.engine) as s:
        acknowledge_alert(s, alert.id, user="dr-curie", reason="checked the reconstruction")
        s.commit()
    assert any(_WRITE.match(x) and "alert" in x.split("\n")[0] for x in sent)
    assert_trail_last(sent)


def test_a_first_pass_writes_its_rows_before_auditing_the_start(
    client: TestClient, world: Fixture
) -> None:
    """After a reset the next pass starts monitoring anew (audited) and adds its alarms to
    the alerts still open from before (an UPDATE of existing alert rows)."""
    _world_with_alerts(client, world)
    before = {a.id: a.evidence.get("repeats", 0) for a in open_alerts(world.engine)}
    reset_reference(world.engine, world.deployment_b, actor="physicist:ada", reason="new scanner")
    g = np.random.default_rng(5)
    later = [_study(g, i, changed=i >= 700) for i in range(500, 900)]
    _send(client, world, later)
    with statements(world.engine) as sent:
        result = detect_deployment(world.engine, world.deployment_b)
    assert result.records == 400
    after = {a.id: a.evidence.get("repeats", 0) for a in open_alerts(world.engine)}
    assert any(after.get(i, 0) > n for i, n in before.items()), "no existing alert was updated"
    assert any("monitoring.start" in p for p in sent.params), "the start was not audited"
    assert_trail_last(sent)
    # The open alerts are locked (in id order) before the first is updated: the dispatcher
    # claims them in that order, so a pass updating them in the order alarms came could hold
    # one the dispatcher waits for while it waits for one the dispatcher holds.
    first_update = next(
        i for i, x in enumerate(sent) if re.match(r"\s*UPDATE alert SET evidence", x, re.I)
    )
    lock = _ALERT_LOCK[world.engine.dialect.name]
    assert any(lock.search(x) for x in sent[:first_update]), sent[:first_update]


def test_a_reset_locks_the_deployment_first_and_audits_last(
    client: TestClient, world: Fixture
) -> None:
    _world_with_alerts(client, world)
    with statements(world.engine) as sent:
        reset_reference(world.engine, world.deployment_b, actor="physicist:ada", reason="new")
    writes = [s for s in sent if _locks_rows(s)]
    assert "deployment" in writes[0].split("\n")[0].lower(), writes[0]
    assert_trail_last(sent)


def test_a_reset_waits_for_a_running_pass(client: TestClient, world: Fixture) -> None:
    """PostgreSQL: the deployment's row lock; SQLite: the database's write lock."""
    _world_with_alerts(client, world)
    done = threading.Event()
    failure: list[BaseException] = []

    def reset() -> None:
        try:
            reset_reference(world.engine, world.deployment_b, actor="a", reason="new scanner")
        except BaseException as exc:  # reported in the main thread
            failure.append(exc)
        finally:
            done.set()

    with Session(world.engine) as pass_in_progress:
        _lock_deployment(pass_in_progress, world.deployment_b)  # as a detection pass does
        worker = threading.Thread(target=reset)
        worker.start()
        assert not done.wait(1.0), "the reset went ahead while a pass held the deployment"
        pass_in_progress.commit()
    assert done.wait(30), "the reset did not proceed after the pass committed"
    worker.join()
    assert failure == []


def test_an_audit_without_earlier_writes_waits_for_one_that_has_written(
    client: TestClient, world: Fixture
) -> None:
    """A transaction that only audits (an export) and one that has written a row and is about
    to audit (an acknowledgement): the first must wait for the database's lock before it takes
    the in-process one, or each waits for the other (on SQLite until the busy timeout fails the
    export with "database is locked")."""
    _world_with_alerts(client, world)
    alert = open_alerts(world.engine, world.deployment_b)[0]
    failure: list[BaseException] = []

    def export_only_audits() -> None:
        try:
            with Session(world.engine) as s:
                record_action(
                    s, actor="export", action="export.created", entity_type="x", entity_id="1"
                )
                s.commit()
        except BaseException as exc:  # reported in the main thread
            failure.append(exc)

    with Session(world.engine) as ack:
        row = ack.get(Alert, alert.id)
        assert row is not None
        row.evidence = {**row.evidence, "note": "written before the audit"}
        ack.add(row)
        ack.flush()  # the row is written (SQLite: the write lock is held) before the audit
        worker = threading.Thread(target=export_only_audits)
        worker.start()
        worker.join(0.5)  # the export is now waiting, for the database or for this thread
        record_action(
            ack,
            actor="dr-curie",
            action="alert.acknowledge",
            entity_type="alert",
            entity_id=str(alert.id),
        )
        ack.commit()
    worker.join(60)
    assert not worker.is_alive()
    assert failure == []
    with Session(world.engine) as s:
        verdict = verify_chain(s)
        actions = [e.action for e in s.exec(select(AuditEntry).order_by(col(AuditEntry.seq)))]
    assert verdict.ok, verdict.problem
    assert sorted(actions[-2:]) == ["alert.acknowledge", "export.created"]


def test_an_incident_linked_to_an_alert_while_a_pass_runs(
    client: TestClient, world: Fixture
) -> None:
    """The incident's row points at the alert and the deployment, and PostgreSQL checks each
    foreign key with a KEY SHARE lock. With the pass holding the deployment FOR UPDATE the
    incident would hold the alert while waiting for the deployment, and the pass, locking the
    alert next, would wait for the incident: a deadlock, one of them aborted. The pass's locks
    (FOR NO KEY UPDATE) let the checks through."""
    _world_with_alerts(client, world)
    alert = open_alerts(world.engine, world.deployment_b)[0]
    assert alert.id is not None
    failure: list[BaseException] = []

    def link_incident() -> None:
        try:
            with Session(world.engine) as s:
                record_incident(
                    s,
                    deployment_id=world.deployment_b,
                    title="AI missed lesions after the reconstruction upgrade",
                    seriousness="malfunction",
                    aware_at=utcnow(),
                    user="dr-curie",
                    alert_id=alert.id,
                )
                s.commit()
        except BaseException as exc:  # reported in the main thread
            failure.append(exc)

    with Session(world.engine) as pass_in_progress:
        _lock_deployment(pass_in_progress, world.deployment_b)
        worker = threading.Thread(target=link_incident)
        worker.start()
        worker.join(0.5)  # the incident has checked the alert by now (or waits, on SQLite)
        lock_alerts(pass_in_progress, [alert.id])  # as a pass does before updating alerts
        pass_in_progress.commit()
    worker.join(60)
    assert not worker.is_alive()
    assert failure == []


def test_a_phantom_pass_locks_open_device_alerts_before_adding_repeats(
    client: TestClient, world: Fixture
) -> None:
    """Repeats update open device alerts; the pass locks them first, in id order, as the
    dispatcher does, so the two wait for each other instead of deadlocking."""
    from tests.monitor.test_phantom_qc import _cylinder, _post, _tolerance

    _tolerance(client, world, lower_action=0.9, upper_action=1.1)
    _post(client, world, [_cylinder(0, 1.0), _cylinder(1, 0.85)])
    assert process_phantom_qc(world.engine).alerts_opened  # an open action-level alert
    _post(client, world, [_cylinder(2, 0.84)])  # out again: a repeat of the open alert
    with statements(world.engine) as sent:
        process_phantom_qc(world.engine)
    dialect = world.engine.dialect.name
    locks = [i for i, s in enumerate(sent) if _ALERT_LOCK[dialect].search(s)]
    writes = [i for i, s in enumerate(sent) if re.match(r"^\s*UPDATE alert SET (?!id=)", s, re.I)]
    assert writes, "the pass added no repeat: the test's world is wrong"
    assert locks and locks[0] < writes[0], "an open device alert was updated before it was locked"
    with Session(world.engine) as s:
        (alert,) = s.exec(select(Alert).where(col(Alert.device_id).is_not(None))).all()
        assert alert.evidence["repeats"] >= 1
