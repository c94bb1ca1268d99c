"""Drift reports for alerts: a window test of the records since the change, beside the alert,
that agrees with it or says why not.

For each drift or performance alert, two windows of the deployment's records are compared:

- **reference**: the records that made the alerted stream's reference — the first records after
  the deployment's acceptance (or after its last reference reset) until the stream had as many
  values as its reference holds (its size in the detector state);
- **window**: the records from the alert's estimated start of the change (``change_timestamp``)
  to the detection (``timestamp``). When fewer than ``MIN_WINDOW`` of them hold a value of the
  stream (a sudden change, caught within a few studies), the records that followed the
  detection are added, up to ``MIN_WINDOW`` values, acquired at most ``EXTEND_FOR`` after the
  detection and before the alert was resolved; the report says how many. Records after the
  detection have usually not arrived when the report is first built: it is built with what
  there is, and built again once they have (or once ``EXTEND_FOR`` has passed).

A performance stream (labelled outcomes) has windows of outcomes by the time the label was
given, and compares the records those outcomes judged; an estimated-performance stream (CBPE)
opens on the AI's score the estimate rests on.

The report (``report_page``) opens on the alerted feature: its distribution in both windows, in
its unit, and the window test evidently also runs (``phase4.monitor.drift.window_tests``: KS, z
or χ², with statistic and p-value). When that test does not reject although the detector
alarmed, it says why, in numbers: the detector accumulated evidence over N records; the power of
a test of the window's M records at the shift the detector found — for a CUSUM k + S/N, the mean
normal score of the records since its change estimate at the alarm (D. C. Montgomery 2009,
"Introduction to Statistical Quality Control", 6th ed., §9.1.4), for an EWMA its value, for a
Bernoulli CUSUM the rate since the change — and the smallest shift it detects with 80%
probability. The other monitored fields follow, most changed first (smallest p-value, ties by
distance), then evidently's dataset-level count in words ("7 of 15 features (47%) drifted in
the window test", and what its half-the-features rule says), then evidently's own report of the
same windows: one ``ValueDrift`` panel per field, in the same order, with the same tests. Its
per-column p < 0.05 describes the window; phase4's detectors, calibrated to the false-alarm
budget, already decided that something changed.

Reports built by earlier code (100 records ending at the detection, evidently's
``DataDriftPreset`` with its dataset-level headline) have no ``layout`` in their summary: the next
report pass rebuilds them. One that cannot be rebuilt (its records are gone) is kept, marked
``not_rebuilt``, and served under a banner saying what it is (``report_html``).

evidently is imported only here, and only when a report is built (seconds of import, hundreds of
MB): in the service's report process, never in the one that answers the probes.
"""

from __future__ import annotations

import gzip
import itertools
import math
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from phase4.monitor.core.statuses import AlertCause
from phase4.monitor.drift.streams import (
    ConfigError,
    MonitorConfig,
    StreamKind,
    StreamSpec,
    observation_of,
    read_field,
)
from phase4.monitor.drift.window_tests import (
    WindowTest,
    chi_square_test,
    ks_detectable_shift,
    ks_power,
    ks_test,
    z_detectable_rate,
    z_power,
    z_test,
)
from phase4.monitor.store.models import (
    Alert,
    AuditEntry,
    Deployment,
    DetectorState,
    DriftReport,
    Feedback,
    InferenceRecord,
)
from phase4.monitor.surveillance import report_page
from phase4.monitor.surveillance.detection import monitoring_of, outcome_view, record_view
from phase4.monitor.surveillance.report_page import (
    Comparison,
    ReportPage,
    Sensitivity,
    Subject,
    drifted_words,
)

LAYOUT = 2  # DriftReport.summary["layout"] of a report this code built
MIN_WINDOW = 50  # values a window should hold: fewer since the change are topped up after it
EXTEND_FOR = timedelta(days=30)  # ... with values acquired at most this long after detection
MIN_REFERENCE = 30
PAGE = 2000
REPORTED_CAUSES = (AlertCause.DRIFT, AlertCause.PERFORMANCE)
EVIDENTLY_METHODS: dict[str, str] = {"numeric": "ks", "binary": "z", "categorical": "chisquare"}
PERFORMANCE_WORDS = {
    "performance.false_positive": "false positives among confirmed negatives",
    "performance.missed": "misses among confirmed positives",
    "performance.dice": "Dice of the physicians' edits",
}


# --- the windows -----------------------------------------------------------------------------


@dataclass
class _Target:
    """What the report opens on: the stream's field read from each record (or outcome)."""

    stream: str
    label: str
    field: str | None
    kind: StreamKind
    where: tuple[tuple[str, Any], ...]
    source: str  # "record" or "feedback"
    reference_n: int
    note: str | None = None


@dataclass
class _Item:
    record: InferenceRecord
    view: dict[str, Any]
    value: Any  # the target's observation, None when the record holds none
    at: datetime


def _reference_size(spec: StreamSpec, state: Mapping[str, Any], config: MonitorConfig) -> int:
    stream = (state.get("streams") or {}).get(spec.name) or {}
    ref = stream.get("reference") or {}
    if isinstance(ref.get("n"), int):
        return int(ref["n"])
    if isinstance(ref.get("counts"), Mapping):
        return int(sum(ref["counts"].values()))
    return int(stream.get("reference_size") or spec.reference_size or config.reference_size)


def _target(alert: Alert, config: MonitorConfig, state: Mapping[str, Any]) -> _Target:
    spec = next((s for s in config.streams if s.name == alert.stream), None)
    if spec is not None:
        return _Target(
            stream=spec.name,
            label=PERFORMANCE_WORDS.get(spec.name, spec.name),
            field=spec.field,
            kind=spec.kind,
            where=spec.where,
            source=spec.source,
            reference_n=_reference_size(spec, state, config),
        )
    score = (config.cbpe or {}).get("score")
    if alert.stream.startswith("estimated.") and isinstance(score, str):
        return _Target(
            stream=alert.stream,
            label=score,
            field=score,
            kind="numeric",
            where=(),
            source="record",
            reference_n=config.reference_size,
            note=f"This alert watches {alert.stream}, estimated without labels from the AI's "
            f"score (CBPE): the report opens on that score, {score}, the quantity the "
            "estimate rests on.",
        )
    return _Target(alert.stream, alert.stream, None, "numeric", (), "record", config.reference_size)


def _in_subgroup(view: Mapping[str, Any], where: Sequence[tuple[str, Any]]) -> bool:
    return all(read_field(view, k) == v for k, v in where)


class _Reader:
    """The deployment's records (or labelled outcomes) in the order detection fed them."""

    def __init__(
        self,
        session: Session,
        deployment: Deployment,
        target: _Target,
        reset_at: datetime | None,
    ) -> None:
        self.session = session
        self.deployment = deployment
        self.target = target
        self.reset_at = reset_at
        perf = None
        if target.source == "feedback":
            try:
                performance = monitoring_of(deployment).performance
            except ConfigError:
                performance = None
            perf = performance.model_dump() if performance is not None else {}
        self.performance = perf

    def _value(self, view: Mapping[str, Any]) -> Any:
        t = self.target
        return observation_of(t.kind, read_field(view, t.field)) if t.field else None

    def items(
        self, *, after: datetime | None = None, start: datetime | None = None, end: datetime | None
    ) -> Iterator[_Item]:
        """Records (acquisition time) or outcomes (time given) from ``start`` (inclusive) or
        ``after`` (exclusive) to ``end`` (inclusive), in order, one page at a time."""
        dep, t = self.deployment, self.target
        if t.source == "feedback":
            at_col: Any = col(Feedback.given_at)
            q: Any = (
                sa.select(Feedback, InferenceRecord)
                .join(InferenceRecord, col(InferenceRecord.record_id) == col(Feedback.record_id))
                .where(InferenceRecord.deployment_id == dep.id)
                .order_by(at_col, col(Feedback.id))
            )
            if self.reset_at is not None:
                q = q.where(col(Feedback.drift_processed_at) > self.reset_at)
        else:
            at_col = col(InferenceRecord.acquired_at)
            q = (
                sa.select(InferenceRecord)
                .where(InferenceRecord.deployment_id == dep.id)
                .order_by(at_col, col(InferenceRecord.id))
            )
            if dep.accepted_at is not None:
                q = q.where(at_col >= dep.accepted_at)
            if self.reset_at is not None:
                q = q.where(col(InferenceRecord.drift_processed_at) > self.reset_at)
        if start is not None:
            q = q.where(at_col >= start)
        if after is not None:
            q = q.where(at_col > after)
        if end is not None:
            q = q.where(at_col <= end)
        offset = 0
        while True:
            rows = self.session.execute(q.offset(offset).limit(PAGE)).all()
            for row in rows:
                item = self._item(row)
                if item is not None:
                    yield item
            if len(rows) < PAGE:
                return
            offset += PAGE

    def _item(self, row: Any) -> _Item | None:
        t = self.target
        if t.source == "feedback":
            fb, rec = row
            view = outcome_view(rec.outputs, fb, self.performance or {})
            value = self._value(view)
            # an outcome that does not count for this stream (a positive, for false positives)
            return _Item(rec, record_view(rec), value, fb.given_at) if value is not None else None
        rec = row[0]
        view = record_view(rec)
        if not _in_subgroup(view, t.where):
            return None
        return _Item(rec, view, self._value(view), rec.acquired_at)


def _count_after(
    session: Session, deployment_id: str, source: str, after: datetime, until: datetime
) -> int:
    """Records (or labelled outcomes) of the deployment after ``after`` up to ``until``."""
    if source == "feedback":
        q: Any = (
            select(func.count())
            .select_from(Feedback)
            .join(InferenceRecord, col(InferenceRecord.record_id) == col(Feedback.record_id))
            .where(
                InferenceRecord.deployment_id == deployment_id,
                col(Feedback.given_at) > after,
                col(Feedback.given_at) <= until,
            )
        )
    else:
        q = (
            select(func.count())
            .select_from(InferenceRecord)
            .where(
                InferenceRecord.deployment_id == deployment_id,
                col(InferenceRecord.acquired_at) > after,
                col(InferenceRecord.acquired_at) <= until,
            )
        )
    return int(session.exec(q).one())


def _take(items: Iterator[_Item], values: int | None) -> list[_Item]:
    """Items until ``values`` of them hold a value of the target (all when None)."""
    out: list[_Item] = []
    have = 0
    for item in items:
        out.append(item)
        have += item.value is not None
        if values is not None and have >= values:
            break
    return out


def _usable(items: Sequence[_Item]) -> list[Any]:
    return [i.value for i in items if i.value is not None]


def _last_reset(session: Session, deployment_id: str, before: datetime) -> AuditEntry | None:
    return session.exec(
        select(AuditEntry)
        .where(
            AuditEntry.entity_type == "deployment",
            AuditEntry.entity_id == deployment_id,
            col(AuditEntry.action).in_(("reference.reset", "reference.set")),
            AuditEntry.at <= before,
        )
        .order_by(col(AuditEntry.seq).desc())
    ).first()


def stream_reference_note(
    session: Session, deployment_id: str, stream: str | None, before: datetime
) -> str | None:
    """When ``stream``'s chart was designed on a reference other than its first records (a
    baseline declared from a validation study, or a binary reference grown in audited steps),
    say so: the report's reference window is the stream's first records, and without the note
    it would seem to contradict the alert."""
    if not stream:
        return None
    entries = session.exec(
        select(AuditEntry)
        .where(
            AuditEntry.entity_type == "deployment",
            AuditEntry.entity_id == deployment_id,
            col(AuditEntry.action).in_(("reference.declare", "reference.grow")),
            AuditEntry.at <= before,
        )
        .order_by(col(AuditEntry.seq).desc())
        .limit(200)
    )
    for entry in entries:
        new = entry.new_value or {}
        if new.get("stream") != stream:
            continue
        when = report_page.fmt_when(entry.at)
        ref = new.get("reference") or {}
        if entry.action == "reference.declare":
            return (
                f"The stream's baseline was declared on {when} from {new.get('source')} "
                f"({new.get('events')} events in {new.get('cases')} cases): its chart is "
                "designed on that rate. The records compared here as the reference are its "
                "first records, not the study's."
            )
        return (
            f"The stream's reference grew in audited steps to {ref.get('n', 0):,} studies "
            f"({ref.get('events', 0):,} events) by {when}: its chart is designed on all of "
            "them. The records compared here as the reference are its first ones."
        )
    return None


@dataclass
class _Windows:
    reference: list[_Item]
    since: list[_Item]  # from the change estimate to the detection
    after: list[_Item]  # added after the detection, when ``since`` holds few values
    bound: datetime  # values after the detection are taken up to here
    reference_note: str | None
    counted: bool  # the target has a field: items count by their values, else all count

    @property
    def window(self) -> list[_Item]:
        return self.since + self.after

    def values(self, items: Sequence[_Item]) -> int:
        return len(_usable(items)) if self.counted else len(items)

    def last_at(self, detected: datetime) -> datetime:
        window = self.window
        return max(window[-1].at, detected) if window else detected


def _windows(session: Session, alert: Alert, deployment: Deployment, target: _Target) -> _Windows:
    detected = datetime.fromisoformat(alert.evidence["timestamp"])
    change = datetime.fromisoformat(alert.evidence.get("change_timestamp") or detected.isoformat())
    reset = _last_reset(session, deployment.id, alert.opened_at)
    note = None
    reset_at = None
    if reset is not None and reset.action == "reference.reset":
        reset_at = reset.at
        note = (
            f"The deployment's reference was reset on {report_page.fmt_when(reset.at)}: the "
            "reference here is the records analysed after that."
        )
    elif reset is not None:
        note = (
            f"The deployment's reference was uploaded from a file on "
            f"{report_page.fmt_when(reset.at)}; its rows are not in the store, so the records "
            "compared here as the reference are the first after acceptance, not the file's."
        )
    stream_note = stream_reference_note(session, deployment.id, alert.stream, alert.opened_at)
    if stream_note:
        note = f"{note} {stream_note}" if note else stream_note
    reader = _Reader(session, deployment, target, reset_at)
    counted = target.field is not None

    def take(items: Iterator[_Item], values: int) -> list[_Item]:
        return _take(items, values) if counted else list(itertools.islice(items, values))

    reference = take(reader.items(end=None), target.reference_n)
    since = list(reader.items(start=change, end=detected))
    bound = detected + EXTEND_FOR
    if alert.resolved_at is not None:
        bound = min(bound, alert.resolved_at)
    w = _Windows(reference, since, [], bound, note, counted)
    have = w.values(since)
    if have < MIN_WINDOW:
        w.after = take(reader.items(after=detected, end=bound), MIN_WINDOW - have)
    return w


# --- the comparison --------------------------------------------------------------------------


def _test(kind: str, reference: Sequence[Any], window: Sequence[Any]) -> WindowTest | None:
    if not reference or not window:
        return None
    if kind == "numeric":
        return ks_test(reference, window)
    if kind == "binary":
        return z_test(reference, window)
    return chi_square_test([str(v) for v in reference], [str(v) for v in window])


def _fields(config: MonitorConfig) -> list[tuple[str, StreamKind]]:
    seen: dict[str, StreamKind] = {}
    for s in config.streams:
        if s.source == "record" and s.field not in seen:
            seen[s.field] = s.kind
    return list(seen.items())


def _values(items: Sequence[_Item], field: str, kind: StreamKind) -> list[Any]:
    out = []
    for i in items:
        v = observation_of(kind, read_field(i.view, field))
        if v is not None:
            out.append(v)
    return out


def _param(evidence: Mapping[str, Any], name: str) -> float | None:
    for p in evidence.get("detector_parameters") or []:
        if isinstance(p, Mapping) and p.get("name") == name:
            v = p.get("value")
            return float(v) if isinstance(v, int | float) else None
    return None


def _sensitivity(
    alert: Alert,
    config: MonitorConfig,
    comparison: Comparison,
    since_change: Sequence[Any],
) -> Sensitivity | None:
    """What the detector found, and what the window test could see of it (see the module)."""
    test = comparison.test
    ev = alert.evidence
    if test is None or test.rejects or not since_change:
        return None
    detector = str(ev.get("detector") or "")
    n, m = test.n_reference, test.n_window
    if comparison.kind == "binary":
        p0 = float(np.mean([bool(v) for v in comparison.reference]))
        p1 = float(np.mean([bool(v) for v in since_change]))
        return Sensitivity(
            detector=detector,
            accumulated=len(since_change),
            window=m,
            reference=n,
            kind="binary",
            shift=p1,
            shift_source="the rate from the change estimate to the detection",
            power=z_power(p0, p1, n, m),
            detectable=z_detectable_rate(p0, n, m, up=p1 >= p0),
            observed=float(np.mean([bool(v) for v in comparison.window])),
            reference_rate=p0,
        )
    if comparison.kind != "numeric":
        return None
    ref = np.asarray(comparison.reference, float)
    win = np.asarray(comparison.window, float)
    sd = float(ref.std(ddof=1)) if len(ref) > 1 else 0.0
    if sd <= 0:
        return None
    observed = float((win.mean() - ref.mean()) / sd)
    statistic = ev.get("statistic")
    if detector == "cusum" and isinstance(statistic, int | float):
        k = _param(ev, "k")
        k = config.cusum_k if k is None else k
        shift = k + abs(float(statistic)) / len(since_change)
        source = "k + S/N: the mean normal score of those values; Montgomery 2009, §9.1.4"
    elif detector == "ewma" and isinstance(statistic, int | float):
        shift = abs(float(statistic))
        source = "the EWMA's value at the alarm, its estimate of the current mean"
    else:
        # A windowed detector (KS, the performance estimate) states no shift of its own; the
        # power at the window's own shift would only restate its p-value (Hoenig & Heisey
        # 2001, "The abuse of power", American Statistician 55:19-24): the smallest detectable
        # shift alone is given.
        shift, source = None, ""
    detectable = ks_detectable_shift(n, m)
    return Sensitivity(
        detector=detector,
        accumulated=len(since_change),
        window=m,
        reference=n,
        kind="numeric",
        shift=shift,
        shift_source=source,
        power=ks_power(shift, n, m) if shift is not None else None,
        detectable=detectable,
        shift_unit=shift * sd if shift is not None else None,
        detectable_unit=detectable * sd,
        observed=abs(observed),
        smoothing=_param(ev, "lambda") if detector == "ewma" else None,
    )


def _frame(
    items: Sequence[_Item], columns: Sequence[tuple[str, StreamKind]], subject: str | None
) -> Any:
    """The columns' values as the streams observe them (the subject's: the item's value)."""
    import pandas as pd

    data: dict[str, Any] = {}
    for name, kind in columns:
        if name == subject:
            values = [i.value for i in items]
        else:
            values = [observation_of(kind, read_field(i.view, name)) for i in items]
        if kind == "numeric":
            data[name] = pd.Series([np.nan if v is None else v for v in values], dtype=float)
        else:
            data[name] = pd.Series(values, dtype=object)
    return pd.DataFrame(data)


def build_evidently_report(
    reference: Any, current: Any, columns: Sequence[tuple[str, StreamKind]]
) -> tuple[dict[str, float], str]:
    """evidently's per-column drift panels (``ValueDrift``, with phase4's choice of test per
    kind), in the order given; returns each column's p-value and the HTML."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    definition = DataDefinition(
        numerical_columns=[c for c, k in columns if k == "numeric"],
        categorical_columns=[c for c, k in columns if k != "numeric"],
    )
    metrics = [ValueDrift(column=c, method=EVIDENTLY_METHODS[k]) for c, k in columns]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        snapshot = Report(metrics).run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(reference, data_definition=definition),
        )
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "report.html"
            snapshot.save_html(str(path))
            html = path.read_text(encoding="utf-8")
    p_values: dict[str, float] = {}
    for m in snapshot.dict()["metrics"]:
        column = (m.get("config") or {}).get("column")
        if isinstance(column, str) and isinstance(m.get("value"), int | float):
            p_values[column] = float(m["value"])
    return p_values, html


@dataclass
class Built:
    """A report: the stored summary, the HTML, and what goes into the alert's evidence."""

    summary: dict[str, Any]
    html: str
    evidence: dict[str, Any]
    reference_rows: int
    current_rows: int


def build_report(session: Session, alert: Alert, now: datetime | None = None) -> Built | None:
    """The report of ``alert`` from the store (None: no deployment or detector state)."""
    now = now or datetime.now(UTC)
    deployment = session.get(Deployment, alert.deployment_id)
    state_row = session.exec(
        select(DetectorState).where(DetectorState.deployment_id == alert.deployment_id)
    ).first()
    if deployment is None or state_row is None:
        return None
    config = MonitorConfig.from_dict(state_row.state["config"])
    target = _target(alert, config, state_row.state)
    w = _windows(session, alert, deployment, target)
    detected = datetime.fromisoformat(alert.evidence["timestamp"])
    change_ts = alert.evidence.get("change_timestamp")
    unit_word = "labelled outcomes" if target.source == "feedback" else "records"
    fields = [(f, k) for f, k in _fields(config) if f != target.field]

    subject: Subject | None = None
    if target.field is not None:
        since = _usable(w.since)
        comparison = Comparison(
            target.field if target.source == "record" else target.stream,
            target.kind,
            _usable(w.reference),
            _usable(w.window),
            None,
        )
        comparison.test = _test(target.kind, comparison.reference, comparison.window)
        subject = Subject(target.stream, target.label, comparison, target.note)
        subject.sensitivity = _sensitivity(alert, config, comparison, since)
    others = []
    for f, kind in fields:
        ref, win = _values(w.reference, f, kind), _values(w.window, f, kind)
        others.append(Comparison(f, kind, ref, win, _test(kind, ref, win)))
    others.sort(key=Comparison.order_key)

    enough = len(w.reference) >= MIN_REFERENCE and bool(w.window)
    if subject is not None:
        enough = len(subject.comparison.reference) >= MIN_REFERENCE and bool(
            subject.comparison.window
        )
    notes: list[str] = []
    evidently_html: str | None = None
    evidently_note: str | None = None
    if not enough:
        notes.append(
            f"No comparison: the reference holds {len(w.reference)} {unit_word} with a value "
            f"(at least {MIN_REFERENCE} are needed) and the window {len(w.window)}."
        )
    else:
        columns: list[tuple[str, StreamKind]] = []
        subject_column = subject.comparison.field if subject is not None else None
        if subject_column is not None:
            columns.append((subject_column, target.kind))
        columns += [(c.field, c.kind) for c in others if c.test is not None]
        try:
            p_values, evidently_html = build_evidently_report(
                _frame(w.reference, columns, subject_column),
                _frame(w.window, columns, subject_column),
                columns,
            )
        except Exception as exc:  # the opening stands alone; evidently's part is a bonus
            evidently_note = f"evidently's report could not be built ({type(exc).__name__})."
        else:
            for c in ([subject.comparison] if subject is not None else []) + others:
                c.evidently_p = _finite(p_values.get(c.field))

    since_values, after_values = w.values(w.since), w.values(w.after)
    extension_open = since_values + after_values < MIN_WINDOW and now < w.bound
    page = ReportPage(
        alert_id=alert.id or 0,
        title=alert.title,
        stream=alert.stream or "",
        detector=str(alert.evidence.get("detector") or ""),
        detected_at=detected,
        change_at=datetime.fromisoformat(change_ts) if change_ts else None,
        since_records=len(w.since),
        since_values=since_values,
        after_records=len(w.after),
        after_values=after_values,
        wanted=MIN_WINDOW,
        extension_open=extension_open,
        extend_until=w.bound,
        reference_records=len(w.reference),
        reference_values=w.values(w.reference),
        reference_from=w.reference[0].at if w.reference else None,
        reference_to=w.reference[-1].at if w.reference else None,
        reference_note=w.reference_note,
        unit_word=unit_word,
        subject=subject,
        others=others,
        built_at=now,
        evidently_ran=evidently_html is not None,
        evidently_note=evidently_note,
        notes=notes,
    )
    html = report_page.document(report_page.render(page), evidently_html)
    of = len(page.tested)
    count = page.drifted if enough else 0
    drifted = {"count": count, "share": count / of if of else 0.0, "of": of}
    test = subject.comparison.test if subject is not None else None
    window = w.window
    window_span = [window[0].at.isoformat(), window[-1].at.isoformat()] if window else []
    summary: dict[str, Any] = {
        "layout": LAYOUT,
        "built_at": now.isoformat(),
        "drifted_columns": drifted,
        "subject": {
            "stream": target.stream,
            "field": target.field,
            "kind": target.kind,
            "test": test.to_dict() if test else None,
            "sensitivity": asdict(subject.sensitivity)
            if subject is not None and subject.sensitivity is not None
            else None,
        },
        "columns": {
            c.field: {
                "method": c.test.test if c.test else None,
                "statistic": _finite(c.test.statistic) if c.test else None,
                "value": c.evidently_p
                if c.evidently_p is not None
                else (_finite(c.test.p_value) if c.test else None),
            }
            for c in ([subject.comparison] if subject else []) + others
        },
        "order": [c.field for c in others],
        "window": {
            "span": window_span,
            "since_change": len(w.since),
            "after_detection": len(w.after),
            "values": since_values + after_values,
            "wanted": MIN_WINDOW,
        },
    }
    if extension_open:
        summary |= {
            "extend_source": target.source,
            "extend_after": w.last_at(detected).isoformat(),
            "extend_until": w.bound.isoformat(),
            "extend_needed": MIN_WINDOW - since_values - after_values,
        }
    evidence = {
        "drifted_columns": drifted,
        "summary": drifted_words(count, of) if enough else notes[0],
        "feature": target.stream if target.field else None,
        "window_test": (
            {
                k: test.to_dict()[k]
                for k in ("test", "name", "statistic", "p_value", "rejects", "n_window")
            }
            if test
            else None
        ),
        "window": window_span,
        "since_change": len(w.since),
        "after_detection": len(w.after),
        "reference_rows": len(w.reference),
        "current_rows": len(window),
        "path": f"/v1/alerts/{alert.id}/report",
    }
    return Built(summary, html, evidence, len(w.reference), len(window))


# --- which alerts need one ---------------------------------------------------------------------


def _without_report() -> Any:
    return select(Alert).where(
        col(Alert.cause).in_(REPORTED_CAUSES),
        col(Alert.deployment_id).is_not(None),
        ~sa.exists().where(DriftReport.alert_id == Alert.id),
    )


def _outdated() -> Any:
    """Reports built by earlier code that have not been found impossible to rebuild."""
    layout = DriftReport.summary["layout"].as_integer()  # type: ignore[index]
    return select(DriftReport.alert_id).where(
        sa.or_(layout.is_(None), layout < LAYOUT),
        DriftReport.summary["not_rebuilt"].as_string().is_(None),  # type: ignore[index]
    )


def _extensions_due(session: Session, now: datetime) -> list[int]:
    """Reports whose window waits for records after the detection, and now has them (or has
    waited ``EXTEND_FOR``)."""
    rows = session.execute(
        sa.select(DriftReport.alert_id, DriftReport.summary, Alert.deployment_id)
        .join(Alert, col(Alert.id) == col(DriftReport.alert_id))
        .where(DriftReport.summary["extend_until"].as_string().is_not(None))  # type: ignore[index]
    ).all()
    due = []
    for alert_id, summary, deployment_id in rows:
        try:
            until = datetime.fromisoformat(summary["extend_until"])
            after = datetime.fromisoformat(summary["extend_after"])
            needed = int(summary["extend_needed"])
        except (KeyError, TypeError, ValueError):
            due.append(alert_id)
            continue
        source = str(summary.get("extend_source") or "record")
        if now >= until or _count_after(session, deployment_id, source, after, until) >= needed:
            due.append(alert_id)
    return due


def reports_pending(engine: Engine) -> bool:
    """Whether any drift or performance alert lacks its report, has one built by earlier code,
    or has one waiting for records that have now arrived (indexed queries, no evidently): the
    service asks this before it starts a process to build them."""
    with Session(engine) as session:
        if session.exec(_without_report().limit(1)).first() is not None:
            return True
        if session.exec(_outdated().limit(1)).first() is not None:
            return True
        return bool(_extensions_due(session, datetime.now(UTC)))


def attach_reports_at(database_url: str) -> int:
    """``attach_reports`` on a store of its own: the entry point of the process the service
    builds reports in, so that evidently (seconds of import, hundreds of MB, CPU-bound pandas)
    never runs in the process that answers the probes."""
    from phase4.monitor.store.db import create_db_engine

    engine = create_db_engine(database_url)
    try:
        return attach_reports(engine)
    finally:
        engine.dispose()


def attach_reports(engine: Engine, *, deployment_id: str | None = None) -> int:
    """Build the report of every drift or performance alert that has none, and build again
    those built by earlier code or waiting for records that have arrived; returns how many."""
    made = 0
    now = datetime.now(UTC)
    with Session(engine, expire_on_commit=False) as session:
        q = _without_report()
        if deployment_id:
            q = q.where(Alert.deployment_id == deployment_id)
        for alert in session.exec(q.order_by(col(Alert.id))).all():
            if _attach(session, alert, None, now):
                made += 1
                session.commit()
        again = set(session.exec(_outdated()).all()) | set(_extensions_due(session, now))
        for alert_id in sorted(again):
            alert = session.get(Alert, alert_id)
            if alert is None or (deployment_id and alert.deployment_id != deployment_id):
                continue
            row = session.exec(select(DriftReport).where(DriftReport.alert_id == alert_id)).one()
            if _attach(session, alert, row, now):
                made += 1
            session.commit()
    return made


def _attach(session: Session, alert: Alert, row: DriftReport | None, now: datetime) -> bool:
    try:
        built = build_report(session, alert, now)
    except (KeyError, ValueError, TypeError) as exc:  # evidence or state it cannot read
        built = None
        reason = f"{type(exc).__name__} reading the alert's evidence or state"
    else:
        reason = "no deployment or detector state"
    if built is None:
        if row is not None and not (row.summary or {}).get("layout"):
            row.summary = {**(row.summary or {}), "not_rebuilt": reason}
            session.add(row)
        return False
    html = gzip.compress(built.html.encode("utf-8"), compresslevel=6)
    if row is None:
        row = DriftReport(
            alert_id=alert.id or 0,
            reference_rows=built.reference_rows,
            current_rows=built.current_rows,
            summary=built.summary,
            html_gzip=html,
        )
    else:
        row.reference_rows = built.reference_rows
        row.current_rows = built.current_rows
        row.summary = built.summary
        row.html_gzip = html
        row.created_at = now
    session.add(row)
    alert.evidence = {**alert.evidence, "report": built.evidence}
    session.add(alert)
    return True


# --- reading -----------------------------------------------------------------------------------


def report_html(engine: Engine, alert_id: int) -> bytes | None:
    """The stored report; one built by earlier code under a banner saying so."""
    with Session(engine) as session:
        row = session.exec(select(DriftReport).where(DriftReport.alert_id == alert_id)).first()
        if row is None:
            return None
        html = gzip.decompress(row.html_gzip)
        summary = row.summary or {}
        if summary.get("layout"):
            return html
        banner = report_page.old_report_banner(summary.get("not_rebuilt"))
        return report_page.insert_banner(html.decode("utf-8"), banner).encode("utf-8")


def report_sentence(report: Any) -> str | None:
    """The alert page's sentence about its report, from ``evidence["report"]`` of any
    version: '7 of 15 features (47%) drifted in the window test, comparing …'."""
    if not isinstance(report, Mapping):
        return None
    drifted = report.get("drifted_columns")
    words = report.get("summary") if isinstance(report.get("summary"), str) else None
    if words is None and isinstance(drifted, Mapping):
        count, share, of = drifted.get("count"), drifted.get("share"), drifted.get("of")
        if isinstance(count, int | float) and not isinstance(of, int | float):
            of = round(count / share) if isinstance(share, int | float) and share > 0 else None
        if isinstance(count, int | float) and isinstance(of, int | float):
            words = drifted_words(int(count), int(of))
        elif isinstance(count, int | float):
            words = f"{int(count)} feature(s) drifted in the window test"
    elif words is None and isinstance(drifted, int | float) and not isinstance(drifted, bool):
        words = f"{int(drifted)} feature(s) drifted in the window test"
    if words is None:
        return None
    after = report.get("after_detection")
    current, ref = report.get("current_rows"), report.get("reference_rows")
    if isinstance(current, int) and "since_change" in report:
        span = f"the {current} records since the change"
        if isinstance(after, int) and after:
            span += f" ({after} of them after the detection)"
    elif isinstance(current, int):
        span = f"{current} recent records"
    else:
        span = "recent records"
    text = f"The data-drift report: {words}, comparing {span}"
    text += f" with {ref} reference records." if isinstance(ref, int) else "."
    test = report.get("window_test")
    if isinstance(test, Mapping) and isinstance(test.get("p_value"), int | float):
        verdict = "rejects" if test.get("rejects") else "does not reject"
        text += (
            f" On the alerted feature its {test.get('name') or test.get('test')} "
            f"{verdict} at 5% ({report_page.fmt_p(float(test['p_value']))})."
        )
    return text


def _finite(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and math.isfinite(x) else None
