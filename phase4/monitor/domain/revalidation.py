"""The revalidation gate: a new version of a deployment's model is checked against the accepted
one, on pre-declared criteria, before it treats patients, and a named reviewer decides.

Why: the EANM's position on AI in nuclear medicine (Hustinx et al. / EANM, EJNMMI 2024 and the
EANM-SNMMI guidance on AI) asks that a model that keeps learning be revalidated constantly; the
EU AI Act (Art. 3(23), Art. 43(4)) asks for a new conformity assessment on a substantial
modification; MDR Annex IX §4.10 asks the same of a significant change. The gate records
what was decided, on what evidence and by whom.

The state machine (every transition one audit entry; a skipped step is refused with 409 naming
the missing step, docs/REVALIDATION.md)::

    pending ──declare criteria──▶ criteria_declared ──attach evidence──▶ evidence_attached
        ──evaluate──▶ evaluated ──decide (accept | accept_with_conditions | reject)──▶ decided

A revalidation opens when a record carries a model version other than the accepted one (or
when a person declares it). While it is open, records of any version but the accepted one are
kept out of the drift references and performance (``phase4.monitor.surveillance.detection``
reads only records whose ``model_version`` is null or the accepted version). Accepting makes
the candidate the deployment's model version and restarts its references: the detector state
is discarded and the candidate's records form new ones.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from phase4.monitor.core.headline import day
from phase4.monitor.core.refusals import ActionRefused
from phase4.monitor.core.statuses import AlertCause, AlertStatus, Severity
from phase4.monitor.drift.paired import CRITERIA, PairedCase, compare
from phase4.monitor.store.audit import record_action
from phase4.monitor.store.locks import lock_deployment
from phase4.monitor.store.models import (
    AIModel,
    Alert,
    Deployment,
    DetectorState,
    Feedback,
    InferenceRecord,
    Revalidation,
    utcnow,
)


class RevalidationStatus(StrEnum):
    PENDING = "pending"
    CRITERIA_DECLARED = "criteria_declared"
    EVIDENCE_ATTACHED = "evidence_attached"
    EVALUATED = "evaluated"
    DECIDED = "decided"


class Decision(StrEnum):
    ACCEPT = "accept"
    ACCEPT_WITH_CONDITIONS = "accept_with_conditions"
    REJECT = "reject"


class RevalidationError(ActionRefused):
    """A revalidation request that cannot be carried out (the message says why)."""


S = RevalidationStatus
ENTITY = "revalidation"
VERSION_RE = re.compile(r"^[A-Za-z0-9_.+:-]{1,64}$")
MARGIN_MAX = 1.0
# The locked validation set (docs/REVALIDATION.md, "The validation set").
CSV_COLUMNS = ("case_id", "truth", "accepted_call", "candidate_call")
CSV_OPTIONAL = ("accepted_dice", "candidate_dice")
CSV_MAX_BYTES = 5_000_000
CSV_MAX_ROWS = 50_000
CASE_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def _state(r: Revalidation) -> dict[str, Any]:
    return {
        "deployment": r.deployment_id,
        "status": r.status,
        "accepted_version": r.accepted_version,
        "candidate_version": r.candidate_version,
        "criteria": r.criteria,
        "validation_sha256": r.validation_sha256,
        "shadow": r.shadow,
        "verdict": r.verdict,
        "decision": r.decision,
        "conditions": r.conditions,
        "decided_by": r.decided_by,
    }


def _audit(
    session: Session,
    r: Revalidation,
    action: str,
    actor: str,
    old: dict[str, Any] | None,
    reason: str | None = None,
) -> None:
    record_action(
        session,
        actor=actor,
        action=f"revalidation.{action}",
        entity_type=ENTITY,
        entity_id=str(r.id),
        reason=reason,
        old_value=old,
        new_value=_state(r),
    )


def accepted_version(session: Session, deployment: Deployment) -> str:
    model = session.get(AIModel, deployment.model_id)
    assert model is not None
    return model.version


def accepted_version_only(deployment_id: str) -> sa.ColumnElement[bool]:
    """The SQL condition detection adds to its record selection: a record counts for the
    deployment's references and performance only when it carries no version or the accepted
    one; a pending (or rejected, or superseded) version's records are kept apart."""
    accepted = (
        sa.select(AIModel.version)
        .join(Deployment, col(Deployment.model_id) == col(AIModel.id))
        .where(col(Deployment.id) == deployment_id)
        .scalar_subquery()
    )
    return sa.or_(
        col(InferenceRecord.model_version).is_(None),
        col(InferenceRecord.model_version) == accepted,
    )


def open_revalidation_of(session: Session, deployment_id: str) -> Revalidation | None:
    return session.exec(
        select(Revalidation).where(
            Revalidation.deployment_id == deployment_id, col(Revalidation.decided_at).is_(None)
        )
    ).first()


def get_revalidation(session: Session, deployment_id: str, revalidation_id: int) -> Revalidation:
    r = session.get(Revalidation, revalidation_id)
    if r is None or r.deployment_id != deployment_id:
        raise RevalidationError(
            f"no revalidation {revalidation_id} of deployment {deployment_id!r}", status_code=404
        )
    return r


def _notice(
    session: Session, r: Revalidation, title: str, severity: Severity, *, status: AlertStatus
) -> None:
    """An alert about the revalidation: the notification path tells the site's people."""
    session.add(
        Alert(
            deployment_id=r.deployment_id,
            stream="model_version",
            cause=AlertCause.REVALIDATION,
            severity=severity,
            status=status,
            title=title[:500],
            evidence={
                "kind": "revalidation",
                # the world time of the event (the version's arrival, or the decision)
                "timestamp": (r.decided_at or r.opened_at or utcnow()).isoformat(),
                "revalidation_id": r.id,
                "candidate_version": r.candidate_version,
                "accepted_version": r.accepted_version,
                "headline": title[:500],
                "decision": r.decision,
                "verdict": r.verdict,
            },
            acknowledged_by=r.decided_by if status == AlertStatus.ACKNOWLEDGED else None,
            acknowledged_at=r.decided_at if status == AlertStatus.ACKNOWLEDGED else None,
        )
    )


def open_revalidation(
    session: Session, deployment_id: str, candidate_version: str, *, actor: str, reason: str | None
) -> Revalidation:
    """Open the deployment's revalidation of ``candidate_version`` (409 if one is open)."""
    deployment = lock_deployment(session, deployment_id)
    if deployment is None:
        raise RevalidationError(f"no deployment {deployment_id!r}", status_code=404)
    if not VERSION_RE.match(candidate_version):
        raise RevalidationError(
            "candidate_version: 1 to 64 letters, digits or . _ + : - (e.g. 2.1.0)"
        )
    current = accepted_version(session, deployment)
    if candidate_version == current:
        raise RevalidationError(
            f"candidate_version: {candidate_version!r} is already the accepted version"
        )
    existing = open_revalidation_of(session, deployment_id)
    if existing is not None:
        raise RevalidationError(
            f"deployment {deployment_id!r} already has an open revalidation ({existing.id}, "
            f"version {existing.candidate_version}): decide it first",
            status_code=409,
        )
    r = Revalidation(
        deployment_id=deployment_id,
        accepted_version=current,
        candidate_version=candidate_version,
        status=S.PENDING,
        reason=reason,
        opened_by=actor,
    )
    session.add(r)
    session.flush()
    _notice(
        session,
        r,
        f"Version {candidate_version} of the model of {deployment_id} is pending revalidation "
        f"against the accepted {current} since {day(r.opened_at)}: its records are kept apart "
        "until a reviewer decides",
        Severity.WARNING,
        status=AlertStatus.OPEN,
    )
    _audit(session, r, "open", actor, None, reason)
    return r


def note_record_versions(
    session: Session, versions: Mapping[str, Iterable[str]], *, actor: str
) -> list[Revalidation]:
    """Called by ingest with the model versions stored records carried, per deployment: a
    version other than the accepted one opens a revalidation when none is open."""
    opened = []
    for deployment_id, seen in versions.items():
        deployment = session.get(Deployment, deployment_id)
        if deployment is None:
            continue
        current = accepted_version(session, deployment)
        new = sorted(v for v in set(seen) if v != current)
        if not new or open_revalidation_of(session, deployment_id) is not None:
            continue
        opened.append(
            open_revalidation(
                session,
                deployment_id,
                new[0],
                actor=actor,
                reason=f"records of model version {new[0]} arrived",
            )
        )
    return opened


ORDER = (S.PENDING, S.CRITERIA_DECLARED, S.EVIDENCE_ATTACHED, S.EVALUATED, S.DECIDED)
MISSING = {
    S.PENDING: "declare the acceptance criteria first",
    S.CRITERIA_DECLARED: "attach evidence (a validation set or shadow traffic) first",
    S.EVIDENCE_ATTACHED: "evaluate the evidence first",
    S.EVALUATED: "only a decision remains",
}


def _refuse_step(r: Revalidation, allowed: tuple[S, ...], doing: str, too_late: str) -> None:
    """409 unless the revalidation is in one of ``allowed``: naming the missing step when it is
    early, or ``too_late`` when it is past them."""
    if r.status in allowed:
        return
    now = ORDER.index(S(r.status))
    why = MISSING[S(r.status)] if now < ORDER.index(allowed[0]) else too_late
    raise RevalidationError(
        f"revalidation {r.id} is {r.status}: cannot {doing}: {why}", status_code=409
    )


def declare_criteria(
    session: Session,
    r: Revalidation,
    margins: Mapping[str, float],
    *,
    actor: str,
    prediction: str | None = None,
    truth: str | None = None,
) -> Revalidation:
    """Pre-declare the acceptance criteria: margins (candidate − accepted may be no worse than
    −margin; for ``positive_rate_change`` the change must lie within ±margin). Refused once
    evidence is attached."""
    _refuse_step(
        r,
        (S.PENDING, S.CRITERIA_DECLARED),
        "declare criteria",
        "the criteria must precede the evidence, which is attached",
    )
    if not margins:
        raise RevalidationError("margins: declare at least one criterion")
    for name, value in margins.items():
        if name not in CRITERIA:
            raise RevalidationError(f"margins.{name}: not one of {', '.join(CRITERIA)}")
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0 < float(value) < MARGIN_MAX
        ):
            raise RevalidationError(f"margins.{name}: a number between 0 and 1 (exclusive)")
    deployment = session.get(Deployment, r.deployment_id)
    assert deployment is not None
    perf = (deployment.monitoring or {}).get("performance") or {}
    old = _state(r)
    r.criteria = {
        "margins": {k: float(v) for k, v in margins.items()},
        "prediction": prediction or perf.get("prediction") or "positive",
        "truth": truth or perf.get("truth") or "malignant",
        "confidence": 0.95,
    }
    r.criteria_by, r.criteria_at = actor, utcnow()
    r.status = S.CRITERIA_DECLARED
    session.add(r)
    _audit(session, r, "declare_criteria", actor, old)
    return r


class ValidationSetError(RevalidationError):
    """A validation set that cannot be read: the message names the row and column."""


def _binary(value: str, row: int, column: str) -> int:
    v = value.strip()
    if v in ("0", "1"):
        return int(v)
    raise ValidationSetError(f"row {row}, column {column}: {_show(v)} is not 0 or 1")


def _show(value: str) -> str:
    text = value if len(value) <= 20 else value[:17] + "..."
    return repr(text) if text.isprintable() else repr(text.encode("unicode_escape").decode())


def _dice(value: str, row: int, column: str) -> float | None:
    v = value.strip()
    if not v:
        return None
    try:
        x = float(v)
    except ValueError:
        raise ValidationSetError(
            f"row {row}, column {column}: {_show(v)} is not a number"
        ) from None
    if not math.isfinite(x) or not 0 <= x <= 1:
        raise ValidationSetError(f"row {row}, column {column}: a Dice lies between 0 and 1")
    return x


def parse_validation_set(data: bytes) -> tuple[list[list[Any]], str]:
    """The cases of a validation set CSV and the file's SHA-256 (docs/REVALIDATION.md).

    Refused with a message naming the row (1 is the header) and column: not UTF-8, a NUL, an
    unknown or missing column, a value that is not 0/1, a Dice outside [0, 1], a repeated case
    id, more than ``CSV_MAX_ROWS`` rows or ``CSV_MAX_BYTES`` bytes."""
    if len(data) > CSV_MAX_BYTES:
        raise ValidationSetError(f"the file has {len(data):,} bytes; at most {CSV_MAX_BYTES:,}")
    sha = hashlib.sha256(data).hexdigest()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ValidationSetError(f"row {line}: the file is not UTF-8 text") from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise ValidationSetError(f"row {line}: a NUL character")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise ValidationSetError("row 1: the file is empty; it needs a header") from None
    except csv.Error as exc:
        raise ValidationSetError(f"row 1: unreadable CSV ({exc})") from None
    header = [h.strip() for h in header]
    for h in header:
        if h not in CSV_COLUMNS + CSV_OPTIONAL:
            raise ValidationSetError(
                f"row 1, column {_show(h)}: unknown column; the columns are "
                f"{', '.join(CSV_COLUMNS + CSV_OPTIONAL)}"
            )
    for h in CSV_COLUMNS:
        if h not in header:
            raise ValidationSetError(f"row 1, column {h}: missing")
    if len(set(header)) != len(header):
        raise ValidationSetError("row 1: a column is repeated")
    at = {h: i for i, h in enumerate(header)}
    cases: list[list[Any]] = []
    seen: set[str] = set()
    row = 1
    try:
        for values in reader:
            row += 1
            if not values or all(not v.strip() for v in values):
                continue
            if len(values) != len(header):
                raise ValidationSetError(
                    f"row {row}: {len(values)} values for {len(header)} columns"
                )
            if len(cases) >= CSV_MAX_ROWS:
                raise ValidationSetError(f"row {row}: more than {CSV_MAX_ROWS:,} cases")
            case_id = values[at["case_id"]].strip()
            if not CASE_ID_RE.match(case_id):
                raise ValidationSetError(
                    f"row {row}, column case_id: {_show(case_id)} is not 1 to 64 letters, "
                    "digits or . _ : -"
                )
            if case_id in seen:
                raise ValidationSetError(f"row {row}, column case_id: {case_id!r} is repeated")
            seen.add(case_id)
            cases.append(
                [
                    case_id,
                    _binary(values[at["truth"]], row, "truth"),
                    _binary(values[at["accepted_call"]], row, "accepted_call"),
                    _binary(values[at["candidate_call"]], row, "candidate_call"),
                    *(_dice(values[at[c]], row, c) if c in at else None for c in CSV_OPTIONAL),
                ]
            )
    except csv.Error as exc:
        raise ValidationSetError(f"row {row + 1}: unreadable CSV ({exc})") from None
    if not cases:
        raise ValidationSetError("row 2: the file has no cases")
    return cases, sha


def attach_validation_set(
    session: Session, r: Revalidation, data: bytes, *, actor: str, filename: str | None = None
) -> Revalidation:
    """Lock a validation set to the revalidation (once: it cannot be replaced)."""
    _refuse_step(
        r,
        (S.CRITERIA_DECLARED, S.EVIDENCE_ATTACHED),
        "attach a validation set",
        "the evidence was evaluated and is closed",
    )
    if r.validation_sha256 is not None:
        raise RevalidationError(
            f"revalidation {r.id} already has its locked validation set "
            f"(sha256 {r.validation_sha256[:12]}…): it cannot be replaced",
            status_code=409,
        )
    cases, sha = parse_validation_set(data)
    old = _state(r)
    r.validation_cases = {"columns": [*CSV_COLUMNS, *CSV_OPTIONAL], "cases": cases}
    r.validation_sha256 = sha
    r.evidence_at = utcnow()
    r.status = S.EVIDENCE_ATTACHED
    session.add(r)
    note = f"validation set {filename or ''} ({len(cases)} cases, sha256 {sha})".replace("  ", " ")
    _audit(session, r, "attach_validation_set", actor, old, note)
    return r


def _call(value: Any) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and value in (0, 1):
        return value
    return None


def _shadow_cases(session: Session, r: Revalidation, until: Any) -> tuple[list[PairedCase], int]:
    """Cases from shadow traffic: records of the accepted version (or unversioned) that also
    carry the candidate's outputs, received until ``until``; truth from the latest feedback."""
    criteria = r.criteria or {}
    key, truth_key = criteria.get("prediction", "positive"), criteria.get("truth", "malignant")
    rows = session.execute(
        sa.select(
            InferenceRecord.record_id, InferenceRecord.outputs, InferenceRecord.shadow_outputs
        ).where(
            col(InferenceRecord.deployment_id) == r.deployment_id,
            col(InferenceRecord.shadow_outputs).is_not(None),
            col(InferenceRecord.received_at) <= until,
            sa.or_(
                col(InferenceRecord.model_version).is_(None),
                col(InferenceRecord.model_version) == r.accepted_version,
            ),
        )
    ).all()
    pairs: dict[str, tuple[int, int]] = {}
    for record_id, outputs, shadow in rows:
        cand = (shadow or {}).get(r.candidate_version)
        if not isinstance(cand, dict):
            continue
        a, c = _call((outputs or {}).get(key)), _call(cand.get(key))
        if a is not None and c is not None:
            pairs[record_id] = (a, c)
    truths: dict[str, int] = {}
    ids = list(pairs)
    for start in range(0, len(ids), 500):
        for fb in session.exec(
            select(Feedback)
            .where(col(Feedback.record_id).in_(ids[start : start + 500]))
            .order_by(col(Feedback.given_at))
        ):
            t = _call((fb.ground_truth or {}).get(truth_key))
            if t is not None:
                truths[fb.record_id] = t
    cases = [PairedCase(truths.get(rid), a, c) for rid, (a, c) in pairs.items()]
    return cases, len(truths)


def attach_shadow(session: Session, r: Revalidation, *, actor: str) -> Revalidation:
    """Take the shadow traffic received so far (both versions' outputs on the same studies,
    with the labels that have arrived) as evidence; the cut-off is now."""
    _refuse_step(
        r,
        (S.CRITERIA_DECLARED, S.EVIDENCE_ATTACHED),
        "attach shadow traffic",
        "the evidence was evaluated and is closed",
    )
    if r.shadow is not None:
        raise RevalidationError(
            f"revalidation {r.id} already has its shadow traffic", status_code=409
        )
    now = utcnow()
    cases, labelled = _shadow_cases(session, r, now)
    if not cases:
        raise RevalidationError(
            f"no shadow traffic: no record of deployment {r.deployment_id!r} carries version "
            f"{r.candidate_version}'s call in shadow_outputs",
        )
    old = _state(r)
    r.shadow = {"until": now.isoformat(), "studies": len(cases), "labelled": labelled}
    r.evidence_at = now
    r.status = S.EVIDENCE_ATTACHED
    session.add(r)
    _audit(session, r, "attach_shadow", actor, old)
    return r


def evidence_cases(session: Session, r: Revalidation) -> list[PairedCase]:
    cases = [
        PairedCase(int(t), int(a), int(c), ad, cd)
        for _, t, a, c, ad, cd in (r.validation_cases or {}).get("cases", [])
    ]
    if r.shadow is not None:
        shadow, _ = _shadow_cases(session, r, datetime.fromisoformat(r.shadow["until"]))
        cases += shadow
    return cases


def evaluate(session: Session, r: Revalidation, *, actor: str) -> Revalidation:
    """Compute the paired comparisons on the evidence against the declared criteria."""
    _refuse_step(r, (S.EVIDENCE_ATTACHED,), "evaluate", "it was evaluated already")
    assert r.criteria is not None
    result = compare(evidence_cases(session, r), r.criteria["margins"])
    old = _state(r)
    r.results = result.as_dict() | {
        "cases": {
            "validation_set": len((r.validation_cases or {}).get("cases", [])),
            "shadow": (r.shadow or {}).get("studies", 0),
        }
    }
    r.verdict = result.verdict
    r.evaluated_at = utcnow()
    r.status = S.EVALUATED
    session.add(r)
    failed = result.failed()
    why = f"failed on {', '.join(failed)}" if failed else "every criterion met"
    _audit(session, r, "evaluate", actor, old, why)
    return r


def decide(
    session: Session,
    r: Revalidation,
    decision: str,
    *,
    actor: str,
    conditions: str | None = None,
) -> Revalidation:
    """A named reviewer's decision. Accepting makes the candidate the deployment's version and
    restarts its references; a plain accept of a failed evaluation is refused (accept with
    conditions saying why, or reject)."""
    _refuse_step(r, (S.EVALUATED,), "decide", "it was decided already")
    try:
        d = Decision(decision)
    except ValueError:
        raise RevalidationError(
            f"decision: {decision!r} is not one of {', '.join(Decision)}"
        ) from None
    if d is Decision.ACCEPT_WITH_CONDITIONS and not (conditions or "").strip():
        raise RevalidationError("conditions: accepting with conditions needs the conditions")
    if d is Decision.ACCEPT and r.verdict != "pass":
        failed = [
            x["criterion"] for x in (r.results or {}).get("results", []) if x["verdict"] != "pass"
        ]
        raise RevalidationError(
            f"the evaluation failed on {', '.join(failed) or 'its criteria'}: reject, or accept "
            "with conditions stating why",
            status_code=409,
        )
    deployment = lock_deployment(session, r.deployment_id)
    assert deployment is not None
    old = _state(r)
    now = utcnow()
    r.decision, r.conditions = d.value, (conditions or None)
    r.decided_by, r.decided_at = actor, now
    r.status = S.DECIDED
    session.add(r)
    if d is not Decision.REJECT:
        current = session.get(AIModel, deployment.model_id)
        assert current is not None
        model = session.exec(
            select(AIModel).where(
                AIModel.name == current.name, AIModel.version == r.candidate_version
            )
        ).first()
        if model is None:
            model = AIModel(
                name=current.name,
                version=r.candidate_version,
                manufacturer=current.manufacturer,
                intended_use=current.intended_use,
                udi=current.udi,
            )
            session.add(model)
            session.flush()
        assert model.id is not None
        deployment.model_id = model.id
        deployment.accepted_at = now
        session.add(deployment)
        session.execute(
            sa.delete(DetectorState).where(col(DetectorState.deployment_id) == r.deployment_id)
        )
    for alert in session.exec(
        select(Alert).where(
            Alert.deployment_id == r.deployment_id,
            Alert.cause == AlertCause.REVALIDATION,
            Alert.status != AlertStatus.RESOLVED,
        )
    ):
        if (alert.evidence or {}).get("revalidation_id") == r.id:
            alert.status = AlertStatus.RESOLVED
            alert.resolved_by, alert.resolved_at = actor, now
            alert.resolution = f"revalidation decided: {d.value}"
            session.add(alert)
    words = {
        Decision.ACCEPT: "accepted",
        Decision.ACCEPT_WITH_CONDITIONS: "accepted with conditions",
        Decision.REJECT: "rejected",
    }[d]
    _notice(
        session,
        r,
        f"Version {r.candidate_version} of the model of {r.deployment_id} was {words} by "
        f"{actor} on {day(now)} (evaluation: {r.verdict})",
        Severity.INFO if d is Decision.ACCEPT else Severity.WARNING,
        status=AlertStatus.ACKNOWLEDGED,
    )
    _audit(session, r, "decide", actor, old, conditions)
    return r


def revalidation_out(r: Revalidation) -> dict[str, Any]:
    """The revalidation as the API, the CLI and the export show it."""
    return {
        "id": r.id,
        "deployment": r.deployment_id,
        "status": r.status,
        "accepted_version": r.accepted_version,
        "candidate_version": r.candidate_version,
        "reason": r.reason,
        "opened_by": r.opened_by,
        "opened_at": r.opened_at,
        "criteria": r.criteria,
        "criteria_by": r.criteria_by,
        "criteria_at": r.criteria_at,
        "validation_sha256": r.validation_sha256,
        "validation_cases": len((r.validation_cases or {}).get("cases", [])),
        "shadow": r.shadow,
        "evidence_at": r.evidence_at,
        "results": r.results,
        "verdict": r.verdict,
        "evaluated_at": r.evaluated_at,
        "decision": r.decision,
        "conditions": r.conditions,
        "decided_by": r.decided_by,
        "decided_at": r.decided_at,
    }


def list_revalidations(session: Session, deployment_id: str | None = None) -> list[Revalidation]:
    q = select(Revalidation).order_by(col(Revalidation.opened_at).desc())
    if deployment_id is not None:
        q = q.where(Revalidation.deployment_id == deployment_id)
    return list(session.exec(q))
