"""The size of an alert's change, read from the store: the stream's reference against its values
since the change began, in the stream's unit, with a 95% confidence interval.

When the drift pass opens an alert it calls :func:`stream_change`, which reads the stream's
values acquired from the estimated start of the change (``change_timestamp``) through the last
record the pass has analysed (in a live pass, the study that raised the alarm: the detection),
exactly as the pass fed them (``observations``), and compares them with the stream's reference
(``phase4.monitor.drift.magnitude``: Welch and Fieller for numeric streams, Wilson and Newcombe
for rates and shares). At each later pass that feeds the stream while the alert is open (it
repeats, or new values arrive), the size is computed again over every value since the start of
the change, so the estimate sharpens as the change persists, and loses the bias of the first
window, which the detector chose because its values ran high (a size stated at the first alarm
tends to overstate the change). The cost is bounded: at most ``AFTER_MAX`` values since the
change are read (the first ones: the estimate no longer moves much beyond them, and no further
read happens once they are in), and at most ``SCAN_MAX`` rows per read. The result is kept in
``evidence["change"]`` (the keys are listed in docs/ALERTS.md, "Size of change").

The reference of a numeric stream: its detector state keeps only its summary (n, median), not its
values; the values are read back from the store, the stream's first n observations from the
deployment's acceptance on (or from its first record), and are used only if their median is the
one the state recorded: they are then the very reference the detectors were calibrated on. When
they are not (the reference was reset, or uploaded from a file, or records arrived out of order),
the stream's n observations just before the change stand in for it, and the method says so. A
binary stream's reference (events in trials) and a categorical one's (counts) are in the state
itself. The reference's moments are kept in the evidence, so a repeat reads only the values
since the change.

Times are the world's (acquisition, or the label's time for feedback streams); a time after the
present is cut to the present (no value from the future enters a size).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col

from phase4.monitor.core.headline import as_utc, delay_days
from phase4.monitor.core.monitoring import MonitoringConfigError, parse_monitoring
from phase4.monitor.core.quantities import Quantity
from phase4.monitor.drift.magnitude import (
    Moments,
    estimate_shift,
    mean_shift,
    rate_shift,
    share_shift,
)
from phase4.monitor.drift.streams import Stream
from phase4.monitor.store.models import Deployment, Feedback, InferenceRecord
from phase4.monitor.surveillance.observations import outcome_view, record_view

# Values since the change read at most (the first ones): with a reference of 500, the interval
# of a mean shift is within 10% of its limit by 2,000 values after.
AFTER_MAX = 2000
# Rows read at most per query of a stream's values (a subgroup stream may skip most records).
SCAN_MAX = 20_000
PAGE = 2000
REFERENCE_SOURCES = {
    "reference": "the stream's reference",
    "before": "the stream's values just before the change (its reference could not be read "
    "back from the store)",
}


def _record_rows(
    session: Session,
    deployment: Deployment,
    *,
    lo: datetime | None,
    hi: datetime | None,
    hi_open: bool,
    newest_first: bool,
    offset: int,
    limit: int,
) -> list[Any]:
    acquired = col(InferenceRecord.acquired_at)
    q = sa.select(
        InferenceRecord.acquired_at,
        InferenceRecord.features,
        InferenceRecord.outputs,
        InferenceRecord.error,
        InferenceRecord.latency_s,
    ).where(col(InferenceRecord.deployment_id) == deployment.id)
    # records before the AI's acceptance were never observed (phase4.monitor.surveillance
    # .detection): they are no stream's values
    for floor in (lo, deployment.accepted_at):
        if floor is not None:
            q = q.where(acquired >= floor)
    if hi is not None:
        q = q.where(acquired < hi if hi_open else acquired <= hi)
    rid = col(InferenceRecord.id)
    order = (acquired.desc(), rid.desc()) if newest_first else (acquired, rid)
    return list(session.execute(q.order_by(*order).offset(offset).limit(limit)).all())


def _feedback_rows(
    session: Session,
    deployment: Deployment,
    *,
    lo: datetime | None,
    hi: datetime | None,
    hi_open: bool,
    newest_first: bool,
    offset: int,
    limit: int,
) -> list[Any]:
    given = col(Feedback.given_at)
    q = (
        sa.select(Feedback, InferenceRecord.outputs)
        .join(InferenceRecord, col(InferenceRecord.record_id) == col(Feedback.record_id))
        .where(col(InferenceRecord.deployment_id) == deployment.id)
    )
    if lo is not None:
        q = q.where(given >= lo)
    if hi is not None:
        q = q.where(given < hi if hi_open else given <= hi)
    order = (given.desc(), col(Feedback.id).desc()) if newest_first else (given, col(Feedback.id))
    return list(session.execute(q.order_by(*order).offset(offset).limit(limit)).all())


def _values(
    session: Session,
    deployment: Deployment,
    stream: Stream,
    *,
    want: int,
    lo: datetime | None = None,
    hi: datetime | None = None,
    hi_open: bool = False,
    newest_first: bool = False,
) -> list[Any]:
    """Up to ``want`` of the stream's observations between ``lo`` and ``hi``, as the drift pass
    saw them, oldest first (or newest first), reading at most ``SCAN_MAX`` rows."""
    feedback = stream.spec.source == "feedback"
    performance: dict[str, Any] = {}
    if feedback:
        try:
            perf = parse_monitoring(deployment.monitoring).performance
        except MonitoringConfigError:
            return []
        performance = perf.model_dump() if perf is not None else {}
    out: list[Any] = []
    for view in _views(session, deployment, feedback, performance, lo, hi, hi_open, newest_first):
        value = stream.observation(view)
        if value is not None:
            out.append(value)
            if len(out) >= want:
                break
    return out


def _views(
    session: Session,
    deployment: Deployment,
    feedback: bool,
    performance: Mapping[str, Any],
    lo: datetime | None,
    hi: datetime | None,
    hi_open: bool,
    newest_first: bool,
) -> Iterator[dict[str, Any]]:
    read = _feedback_rows if feedback else _record_rows
    offset = 0
    while offset < SCAN_MAX:
        rows = read(
            session,
            deployment,
            lo=lo,
            hi=hi,
            hi_open=hi_open,
            newest_first=newest_first,
            offset=offset,
            limit=min(PAGE, SCAN_MAX - offset),
        )
        for row in rows:
            if feedback:
                fb, outputs = row
                yield outcome_view(outputs or {}, fb, performance)
            else:
                yield record_view(row)
        if len(rows) < PAGE:
            return
        offset += len(rows)


def reference_moments(
    session: Session, deployment: Deployment, stream: Stream, began: datetime
) -> tuple[Moments, str] | None:
    """The numeric stream's reference (n, mean, SD) and where it came from: ``reference`` (its
    values read back, recognised by the median the state recorded) or ``before`` (its n values
    just before the change)."""
    ref = stream.reference or {}
    n = int(ref.get("n") or 0)
    if n < 2:
        return None
    first = [v for v in _values(session, deployment, stream, want=n) if isinstance(v, float)]
    median = ref.get("median")
    if len(first) == n and isinstance(median, int | float):
        ordered = sorted(first)
        mid = n // 2
        found = ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2
        if math.isclose(found, float(median), rel_tol=1e-9, abs_tol=1e-12):
            return Moments.of(first), "reference"
    before = _values(session, deployment, stream, want=n, hi=began, hi_open=True, newest_first=True)
    before = [v for v in before if isinstance(v, float)]
    if len(before) < 2:
        return None
    return Moments.of(before), "before"


def _window(
    evidence: Mapping[str, Any], now: datetime, analysed: datetime | None = None
) -> tuple[datetime, datetime, datetime]:
    """(began, detected, through): the change's start, the first alarm, and the last value
    counted: the last repeat, or the last record the pass has analysed when later (the present
    at most)."""
    detected = as_utc(evidence.get("timestamp")) or now
    began = as_utc(evidence.get("change_timestamp")) or detected
    through = max(as_utc(evidence.get("last_timestamp")) or detected, detected)
    if analysed is not None:
        through = max(through, as_utc(analysed) or through)
    return began, detected, min(through, now)


def _frame(
    quantity: Quantity, began: datetime, detected: datetime, through: datetime
) -> dict[str, Any]:
    return {
        "quantity": quantity.label,
        "unit": quantity.unit,
        "unit_note": quantity.unit_note,
        "began": began.isoformat(),
        "detected": detected.isoformat(),
        "through": through.isoformat(),
        "delay_days": delay_days(began, detected),
        "level": 0.95,
    }


def numeric_change(
    before: Moments | list[float],
    after: list[float],
    quantity: Quantity,
    began: datetime,
    detected: datetime,
    through: datetime,
    *,
    reference: str = "reference",
) -> dict[str, Any]:
    """The change dict of a numeric stream (a drift stream or a phantom metric)."""
    shift = mean_shift(before, after)
    pct_ci = shift.delta_pct_ci
    relative = quantity.relative and pct_ci is not None and shift.before.mean > 0
    out = _frame(quantity, began, detected, through)
    out.update(shift.to_dict())
    out.update(
        kind="numeric",
        stated="pct" if relative else "delta",
        size=shift.delta_pct if relative else shift.delta,
        ci95=(pct_ci.to_list() if relative and pct_ci else out["delta_ci95"]),
        reference={**shift.before.to_dict(), "source": reference},
        method=f"{out['method']}; before: {REFERENCE_SOURCES.get(reference, reference)}",
    )
    return out


def _points(values: list[float] | None) -> list[float] | None:
    return [100 * v for v in values] if values else None


def stream_change(
    session: Session,
    deployment: Deployment,
    stream: Stream | None,
    evidence: Mapping[str, Any],
    quantity: Quantity,
    *,
    now: datetime,
    analysed: datetime | None = None,
) -> dict[str, Any] | None:
    """The size of a drift alert's change (``evidence["change"]``), or None when it has none
    (a notice, a stopped stream, a stream without reference, no value since the change): every
    value from the change's start through the last one the pass has analysed (``analysed``;
    without it, through the alert's last alarm). A previous result in ``evidence["change"]``
    gives the reference's moments, and is returned as it is once it holds ``AFTER_MAX``
    values."""
    began, detected, through = _window(evidence, now, analysed)
    prior = evidence.get("change") if isinstance(evidence.get("change"), Mapping) else None
    if evidence.get("kind") in ("notice", "quarantine") or began > through:
        return None
    name = str(evidence.get("stream", ""))
    if name.startswith("estimated."):
        return _estimate_change(evidence, quantity, began, detected, through)
    if stream is None or stream.reference is None:
        return dict(prior) if prior else None
    if (
        prior
        and int(prior.get("n_after") or 0) >= AFTER_MAX
        and prior.get("began") == (began.isoformat())
    ):
        return dict(prior)
    after = _values(session, deployment, stream, want=AFTER_MAX, lo=began, hi=through)
    if not after:
        return dict(prior) if prior else None
    kind = stream.spec.kind
    if kind == "numeric":
        cached = prior.get("reference") if prior else None
        if isinstance(cached, Mapping) and {"n", "mean", "sd"} <= set(cached):
            before, source = Moments.from_dict(cached), str(cached.get("source", "reference"))
        else:
            found = reference_moments(session, deployment, stream, began)
            if found is None:
                return None
            before, source = found
        values = [v for v in after if isinstance(v, float)]
        return numeric_change(before, values, quantity, began, detected, through, reference=source)
    if kind == "binary":
        ref = stream.reference
        events = sum(1 for v in after if v)
        shift = rate_shift(int(ref["events"]), int(ref["n"]), events, len(after))
        out = _frame(quantity, began, detected, through)
        out.update(shift.to_dict())
        out.update(
            kind="binary",
            stated="points",
            size=100 * shift.delta,
            ci95=_points(out["delta_ci95"]),
        )
        return out
    counts = {str(k): int(v) for k, v in (stream.reference.get("counts") or {}).items()}
    moved = share_shift(counts, Counter(str(v) for v in after))
    if moved is None:
        return None
    out = _frame(quantity, began, detected, through)
    out.update(moved.to_dict())
    out.update(
        kind="categorical",
        stated="points",
        size=100 * moved.rates.delta,
        ci95=_points(out["delta_ci95"]),
    )
    return out


def _estimate_change(
    evidence: Mapping[str, Any],
    quantity: Quantity,
    began: datetime,
    detected: datetime,
    through: datetime,
) -> dict[str, Any] | None:
    """An estimated metric (performance without labels): the window's estimate against the
    reference windows' mean, with the interval their spread gives."""
    detail = evidence.get("detail") if isinstance(evidence.get("detail"), Mapping) else {}
    try:
        estimate = float(detail["estimate"])
        mean = float(detail["reference_mean"])
        sd = float(detail["reference_sd"])
    except (KeyError, TypeError, ValueError):
        return None
    if not all(math.isfinite(x) for x in (estimate, mean, sd)):
        return None
    ci = estimate_shift(mean, sd, estimate)
    out = _frame(quantity, began, detected, through)
    out.update(
        kind="estimate",
        stated="points",
        before=mean,
        after=estimate,
        delta=estimate - mean,
        delta_ci95=ci.to_list() if ci else None,
        size=100 * (estimate - mean),
        ci95=_points(ci.to_list()) if ci else None,
        method="the last window's estimate against the mean of the reference windows' "
        "estimates; 95% interval from their SD (normal approximation)",
    )
    return out
