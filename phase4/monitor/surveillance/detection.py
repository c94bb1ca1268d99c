"""Runs the drift engine over the store: records and feedback in, alerts with evidence out.

One pass per deployment (``detect_deployment``):
1. load the deployment's detector state (or start one from its monitoring configuration, or
   from streams inferred from its first records);
2. take every record not yet consumed, in acquisition-time order, and feed it; then every
   unconsumed feedback item (labelled outcomes), in the order the labels were given;
3. mark them consumed and save the state in the same transaction, so each record counts exactly
   once even when it arrives late or a pass is interrupted;
4. turn alarms into alerts (one open alert per stream and cause), with evidence: statistic,
   threshold, the budget arithmetic, the estimated start of the change, and what else happened
   in the deployment around then (the rule phantom QC shares: ``alerting``);
5. size each change the chunk alarmed on, from the store (``change_size``: the stream's reference
   against its values since the change began), and write each such alert's one-sentence
   headline (``headline``), once per chunk however often the alert repeated in it.

The configuration is read through ``phase4.monitor.core.monitoring.MonitoringConfig``: a stored
one that does not validate (written before the contract was enforced) is a ``ConfigError`` naming
each field, which stops that deployment alone.

Isolation: a value a stream cannot use is missing for it; a stream whose update raises is
quarantined (``phase4.monitor.drift.streams``) with one alert; a deployment whose pass fails is
rolled
back, logged without values and alerted once (``detect_isolated``), and the others go on.

The statistics (``phase4.monitor.drift``) know nothing of this module.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from phase4.monitor.core.monitoring import (
    MonitoringConfig,
    MonitoringConfigError,
    PerformanceConfig,
    StreamConfig,
    parse_monitoring,
)
from phase4.monitor.core.statuses import AlertCause, AlertStatus, Severity
from phase4.monitor.domain.revalidation import accepted_version_only
from phase4.monitor.drift import rate as rate_rules
from phase4.monitor.drift.budget import share
from phase4.monitor.drift.streams import (
    ConfigError,
    DeploymentMonitor,
    MonitorConfig,
    StreamAlarm,
    StreamSpec,
)
from phase4.monitor.store.audit import record_action
from phase4.monitor.store.locks import lock_deployment
from phase4.monitor.store.models import (
    Alert,
    Deployment,
    DetectorState,
    Device,
    Feedback,
    InferenceRecord,
    utcnow,
)
from phase4.monitor.surveillance.alerting import lock_open_alerts, open_alert, raise_alert
from phase4.monitor.surveillance.headline import describe_drift_alerts
from phase4.monitor.surveillance.observations import outcome_view, record_view

log = logging.getLogger("phase4.detection")

STATE_STREAM = "*"
# Alert causes of detection's own failures (besides drift, performance, new_condition:...)
STREAM_STOPPED = AlertCause.STREAM_STOPPED
CONFIG_ERROR = AlertCause.CONFIG_ERROR
DETECTION_FAILED = AlertCause.DETECTION_FAILED
STATE_DETECTOR = "deployment"
PASS_BATCH = 5000  # records per chunk unless PHASE4_DETECTION_BATCH_RECORDS says otherwise
# Deployments whose monitor a worker keeps between chunks, unless
# PHASE4_DETECTION_CACHE_DEPLOYMENTS says otherwise (``MonitorCache``).
CACHE_DEPLOYMENTS = 500
# A chunk discarded because another pass wrote first is read again, this many times at most.
MAX_CONFLICTS = 5
# Fields never turned into streams by default: identifiers, free text, bookkeeping.
DEFAULT_EXCLUDED = {"study_pseudonym", "record_id", "model_version_note"}


class DetectionSettings(BaseSettings):
    """How a pass is cut into units of work (``PHASE4_DETECTION_*``)."""

    model_config = SettingsConfigDict(env_prefix="PHASE4_DETECTION_", extra="ignore")

    batch_records: int = Field(
        PASS_BATCH,
        ge=100,
        le=50_000,
        description="Records per chunk: each is read, analysed and written as one unit; the "
        "write lock (SQLite) or the claim (PostgreSQL) lasts one chunk.",
    )
    cache_deployments: int = Field(
        CACHE_DEPLOYMENTS,
        ge=0,
        le=1_000_000,
        description="Deployments whose detector state a detection worker keeps in memory "
        "between chunks (least recently used dropped first; 0: none kept, every chunk reads "
        "and parses the stored state). A kept state is used only while the stored one is the "
        "version this worker wrote; it should hold at least the deployments divided by the "
        "workers.",
    )


# What identifies one saved state: the row's id, its version and the time it was written. The
# version alone could repeat after a reset deletes the row and a new one counts up again.
StateKey = tuple[int, int, datetime]


class MonitorCache:
    """The monitors a worker keeps between chunks, by deployment, each with the key of the
    state it wrote (``StateKey``), least recently used first out beyond ``size``.

    A chunk takes its deployment's entry out (``take``) and puts a monitor back only after its
    transaction committed: a chunk that fails, conflicts or is rolled back leaves nothing
    behind, and the next reads the stored state. A kept monitor is used only when the stored
    state's key is still the one kept: another worker, a reset or an uploaded reference wrote
    since, and the stored state is read instead. One cache per store."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[str, tuple[StateKey, DeploymentMonitor]] = OrderedDict()
        # chunks that found a stored state: kept here (hits), or read from the store (misses)
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, deployment_id: object) -> bool:
        return deployment_id in self._entries

    def take(self, deployment_id: str) -> tuple[StateKey, DeploymentMonitor] | None:
        return self._entries.pop(deployment_id, None)

    def put(self, deployment_id: str, key: StateKey, monitor: DeploymentMonitor) -> None:
        if self.size <= 0:
            return
        self._entries[deployment_id] = (key, monitor)
        self._entries.move_to_end(deployment_id)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def drop(self, deployment_id: str) -> None:
        self._entries.pop(deployment_id, None)

    def order(self, deployment_ids: Sequence[str]) -> list[str]:
        """``deployment_ids`` with the ones kept here first (each part in the given order): a
        worker visits first the deployments it analysed last, so that several workers keep
        to their own and find their monitors kept."""
        kept = [d for d in deployment_ids if d in self._entries]
        return kept + [d for d in deployment_ids if d not in self._entries]


@dataclass
class PassResult:
    deployment: str
    records: int = 0
    feedback: int = 0
    alarms: list[StreamAlarm] = dc_field(default_factory=list)
    alerts_opened: list[int] = dc_field(default_factory=list)
    # the pass over this deployment failed and was rolled back (an alert says why)
    failed: bool = False
    # another worker was analysing the deployment: this pass left it to that worker
    skipped: bool = False


def infer_streams(
    records: Sequence[Mapping[str, Any]], exclude: Iterable[str] = ()
) -> tuple[StreamSpec, ...]:
    """Default streams from what the first records hold: numbers → numeric, booleans → binary,
    strings → categorical; plus inference errors (binary) and latency (numeric)."""
    kinds: dict[str, set[str]] = {}
    for rec in records:
        for section in ("features", "outputs"):
            for key, value in (rec.get(section) or {}).items():
                if key in DEFAULT_EXCLUDED or value is None:
                    continue
                kind = (
                    "binary"
                    if isinstance(value, bool)
                    else "numeric"
                    if isinstance(value, int | float)
                    else "categorical"
                    if isinstance(value, str)
                    else None
                )
                if kind:
                    kinds.setdefault(f"{section}.{key}", set()).add(kind)
    specs = [
        StreamSpec(
            name,
            ks.pop(),
        )
        for name, ks in sorted(kinds.items())
        if len(ks) == 1
    ]
    specs.append(StreamSpec("inference_error", "binary"))
    if any(rec.get("latency_s") is not None for rec in records):
        specs.append(StreamSpec("latency_s", "numeric"))
    skip = set(exclude)
    return tuple(s for s in specs if s.field not in skip)


def performance_streams(performance: PerformanceConfig) -> tuple[StreamSpec, ...]:
    """Labelled-performance streams: misses among true positives, false positives among true
    negatives (so sensitivity and specificity are watched separately), and Dice of edits."""
    specs = [
        StreamSpec(
            "performance.missed",
            "binary",
            source="feedback",
            reference_size=performance.reference_size,
        ),
        StreamSpec(
            "performance.false_positive",
            "binary",
            source="feedback",
            reference_size=performance.reference_size,
        ),
    ]
    if performance.dice:
        specs.append(
            StreamSpec(
                "performance.dice",
                "numeric",
                source="feedback",
                reference_size=performance.reference_size,
            )
        )
    return tuple(specs)


def monitoring_of(deployment: Deployment) -> MonitoringConfig:
    """The deployment's stored configuration, validated; ``ConfigError`` naming each field
    when it is not a ``MonitoringConfig`` (a row written before the contract was enforced)."""
    try:
        return parse_monitoring(deployment.monitoring)
    except MonitoringConfigError as exc:
        raise ConfigError(str(exc)) from None


def _spec(stream: StreamConfig) -> StreamSpec:
    return StreamSpec(
        field=stream.field,
        kind=stream.kind,
        where=tuple(stream.where),
        source=stream.source,
        reference_size=stream.reference_size,
        p1=stream.p1,
        rate_ratio=stream.rate_ratio,
    )


def _config_for(
    deployment: Deployment, first_records: Sequence[Mapping[str, Any]]
) -> MonitorConfig:
    """The drift engine's configuration from the deployment's validated one (streams inferred
    from ``first_records`` when it lists none)."""
    monitoring = monitoring_of(deployment)
    specs: tuple[StreamSpec, ...]
    if monitoring.streams:
        specs = tuple(_spec(s) for s in monitoring.streams)
    else:
        specs = infer_streams(first_records, exclude=monitoring.exclude)
    cbpe = monitoring.cbpe.model_dump() if monitoring.cbpe is not None else None
    perf = monitoring.performance
    if perf is not None:
        specs += performance_streams(perf)
        if perf.score:
            cbpe = {
                "score": f"outputs.{perf.score}",
                "prediction": f"outputs.{perf.prediction}",
                "reference_size": perf.cbpe_reference_size,
                "window": perf.cbpe_window,
            }
    return MonitorConfig(
        streams=specs,
        studies_per_day=monitoring.studies_per_day,
        false_alarms_per_year=monitoring.false_alarms_per_year,
        reference_size=monitoring.reference_size,
        cusum_k=monitoring.cusum_k,
        ewma_lambda=monitoring.ewma_lambda,
        ks_window=monitoring.ks_window,
        chi_square_window=monitoring.chi_square_window,
        reference_events_min=monitoring.reference_events_min,
        reference_events_target=monitoring.reference_events_target,
        cbpe=cbpe,
        disparity=bool(perf and monitoring.subgroups and monitoring.subgroups.disparity),
    )


def load_state(
    session: Session, deployment_id: str
) -> tuple[DetectorState | None, DeploymentMonitor | None]:
    row = session.exec(
        select(DetectorState).where(
            DetectorState.deployment_id == deployment_id,
            DetectorState.stream == STATE_STREAM,
            DetectorState.detector == STATE_DETECTOR,
        )
    ).first()
    if row is None:
        return None, None
    return row, DeploymentMonitor.from_dict(row.state)


def _state_key(session: Session, deployment_id: str) -> StateKey | None:
    """The stored state's key, without reading the state itself."""
    row = session.execute(
        sa.select(DetectorState.id, DetectorState.version, DetectorState.updated_at).where(
            col(DetectorState.deployment_id) == deployment_id,
            col(DetectorState.stream) == STATE_STREAM,
            col(DetectorState.detector) == STATE_DETECTOR,
        )
    ).first()
    return None if row is None else (row[0], row[1], row[2])


class _Unknown:
    """Not read yet."""


UNKNOWN = _Unknown()


def _claim(
    session: Session, deployment_id: str
) -> tuple[Deployment | None, tuple[StateKey | None, bool] | None]:
    """``claim_deployment`` (PostgreSQL), and in the same statement the key of the stored state
    and whether any drift or performance alert of the deployment is open: two round trips fewer
    per chunk. Both are read in the statement's snapshot, which may predate the claim by the
    commit of the worker that held it last; then the key is that of the state before that
    commit, the chunk's write finds another version and the chunk is read again
    (``_Conflict``), so neither can be stale in a chunk that commits."""
    state = DetectorState
    open_alert_exists = (
        sa.exists()
        .where(
            col(Alert.deployment_id) == col(Deployment.id),
            col(Alert.status) != AlertStatus.RESOLVED,
            col(Alert.cause).in_([AlertCause.DRIFT, AlertCause.PERFORMANCE]),
        )
        .label("open_drift_alert")
    )
    row = session.execute(
        sa.select(Deployment, state.id, state.version, state.updated_at, open_alert_exists)
        .outerjoin(
            state,
            sa.and_(
                col(state.deployment_id) == col(Deployment.id),
                col(state.stream) == STATE_STREAM,
                col(state.detector) == STATE_DETECTOR,
            ),
        )
        .where(col(Deployment.id) == deployment_id)
        .with_for_update(of=Deployment, key_share=True, skip_locked=True)
    ).first()
    if row is None:
        return None, None
    deployment, state_id, version, updated_at, open_alerts = row
    key = None if state_id is None else (state_id, version, updated_at)
    return deployment, (key, bool(open_alerts))


def _load_monitor(
    session: Session,
    deployment_id: str,
    kept: tuple[StateKey, DeploymentMonitor] | None,
    known: StateKey | _Unknown | None = UNKNOWN,
) -> tuple[StateKey | None, DeploymentMonitor | None]:
    """The deployment's monitor: the kept one if the stored state is still the one it was
    saved as (``known``: its key as the claim read it), else read from the store."""
    if kept is not None:
        key = _state_key(session, deployment_id) if isinstance(known, _Unknown) else known
        if key == kept[0]:
            return kept
        if key is None:
            return None, None
    row, monitor = load_state(session, deployment_id)
    if row is None or row.id is None:
        return None, None
    return (row.id, row.version, row.updated_at), monitor


def _write_state(
    session: Session,
    deployment_id: str,
    key: StateKey | None,
    monitor: DeploymentMonitor,
    now: datetime,
    last_acquired_at: datetime | None,
) -> StateKey:
    """Write the pass's state in the caller's transaction, one statement: an ``UPDATE`` of
    the row only if it is still the version read (``_Conflict`` otherwise: another pass wrote
    it, or a reset deleted it), or the first row's ``INSERT``; returns the new key."""
    table = DetectorState.__table__  # type: ignore[attr-defined]
    returning = (table.c.id, table.c.version, table.c.updated_at)
    values: dict[str, Any] = {"state": monitor.to_dict(), "updated_at": now}
    if last_acquired_at is not None:
        values["last_acquired_at"] = last_acquired_at
    if key is None:
        if _state_key(session, deployment_id) is not None:
            raise _Conflict  # another pass started the state since our read
        row = session.execute(
            sa.insert(table)
            .values(
                deployment_id=deployment_id,
                stream=STATE_STREAM,
                detector=STATE_DETECTOR,
                version=1,
                **values,
            )
            .returning(*returning)
        ).one()
    else:
        row = session.execute(
            sa.update(table)
            .where(table.c.id == key[0], table.c.version == key[1])
            .values(version=table.c.version + 1, **values)
            .returning(*returning)
        ).first()
        if row is None:
            raise _Conflict
    return (row[0], row[1], row[2])


def _save_state(
    session: Session,
    deployment_id: str,
    row: DetectorState | None,
    monitor: DeploymentMonitor,
    now: datetime,
    last_acquired_at: datetime | None,
) -> None:
    """Write the deployment's detector state (in the caller's transaction)."""
    if row is None:
        row = DetectorState(
            deployment_id=deployment_id, stream=STATE_STREAM, detector=STATE_DETECTOR, state={}
        )
    row.state = monitor.to_dict()
    row.version = (row.version or 0) + 1
    row.last_acquired_at = last_acquired_at or row.last_acquired_at
    row.updated_at = now
    session.add(row)


def _lock_deployment(session: Session, deployment_id: str) -> Deployment:
    """Serialise passes over one deployment (the service's worker, `phase4 detect`): two passes
    reading the same unprocessed records would count them twice (phase4/monitor/store/locks.py)."""
    deployment = lock_deployment(session, deployment_id)
    if deployment is None:
        raise ValueError(f"unknown deployment {deployment_id!r}")
    return deployment


RECORD_COLUMNS = (
    InferenceRecord.id,
    InferenceRecord.record_id,
    InferenceRecord.acquired_at,
    InferenceRecord.features,
    InferenceRecord.outputs,
    InferenceRecord.error,
    InferenceRecord.latency_s,
)


def _unprocessed_records(session: Session, deployment_id: str, limit: int) -> list[Any]:
    """The next ``limit`` records not yet consumed, in acquisition order: a range scan of the
    partial index ``ix_inference_record_unprocessed``, whose size is the backlog, not the
    history. Plain rows (no ORM objects): they are only read."""
    query = (
        sa.select(*RECORD_COLUMNS)
        .where(
            col(InferenceRecord.deployment_id) == deployment_id,
            col(InferenceRecord.drift_processed_at).is_(None),
            accepted_version_only(deployment_id),  # a pending version's records wait apart
        )
        .order_by(col(InferenceRecord.acquired_at), col(InferenceRecord.id))
        .limit(limit)
    )
    return list(session.execute(query).all())


class _Conflict(Exception):
    """Another pass wrote this deployment's state or records between our read and our write."""


def _mark_processed(session: Session, table: Any, ids: Sequence[int], now: datetime) -> None:
    """One set-based UPDATE per chunk (per-row ORM updates cost 58% of a pass). Only rows still
    unconsumed are marked; if another pass took any of them, ours is discarded."""
    if not ids:
        return
    marked = session.execute(
        sa.update(table)
        .where(table.id.in_(sa.bindparam("ids", expanding=True)))
        .where(table.drift_processed_at.is_(None))
        .values(drift_processed_at=now)
        .execution_options(synchronize_session=False),
        {"ids": list(ids)},
    ).rowcount
    if marked != len(ids):
        raise _Conflict


def detect_deployment(
    engine: Engine,
    deployment_id: str,
    *,
    actor: str = "drift-engine",
    claim: bool = False,
    batch_records: int | None = None,
    cache: MonitorCache | None = None,
) -> PassResult:
    """One detection pass over everything the deployment has not yet had analysed, in chunks of
    ``PASS_BATCH`` records, each read, analysed and written as one unit (``_pass_chunk``).

    ``claim``: skip the deployment (``PassResult.skipped``) if another worker is analysing it
    (PostgreSQL), instead of waiting for it. ``cache``: the worker's monitors kept between
    chunks (``MonitorCache``); without one, every chunk reads the stored state."""
    result = PassResult(deployment_id)
    batch = batch_records or DetectionSettings().batch_records
    conflicts = 0
    while True:
        try:
            more = _pass_chunk(engine, deployment_id, actor, result, claim, batch, cache)
        except _Conflict:
            # Another pass (another process on SQLite) wrote between our read and our write:
            # ours was rolled back whole; read again from what it left.
            conflicts += 1
            if conflicts > MAX_CONFLICTS:
                result.skipped = True
                return result
            continue
        if not more:
            return result


def _pass_chunk(
    engine: Engine,
    deployment_id: str,
    actor: str,
    result: PassResult,
    claim: bool,
    batch: int,
    cache: MonitorCache | None = None,
) -> bool:
    """Read the next chunk, analyse it, write it; True if more may be waiting.

    Calibration (solving ARL equations when a reference completes) happens in the analysis, so
    no write lock is held while it runs: on SQLite the reads are outside any transaction and
    the write lock is taken after the analysis, which is discarded if the state's version
    changed meanwhile; on PostgreSQL the transaction holds only the deployment's row lock (the
    claim, which no insert waits for) until it writes."""
    with Session(engine, expire_on_commit=False) as session:
        sqlite = session.get_bind().dialect.name == "sqlite"
        # with the claim: the stored state's key and whether any drift alert is open
        claimed: tuple[StateKey | None, bool] | None = None
        if sqlite:
            deployment = session.get(Deployment, deployment_id)
        elif claim:
            deployment, claimed = _claim(session, deployment_id)
            if deployment is None:
                exists = session.execute(
                    sa.select(sa.literal(1)).where(col(Deployment.id) == deployment_id)
                ).first()
                if exists is not None:
                    result.skipped = True  # another worker holds it: it finishes the pass
                    if cache is not None:
                        cache.drop(deployment_id)  # it writes a newer state: ours is stale
                    return False
        else:
            deployment = lock_deployment(session, deployment_id)
        if deployment is None:
            raise ValueError(f"unknown deployment {deployment_id!r}")
        kept = cache.take(deployment_id) if cache is not None else None
        key, monitor = _load_monitor(
            session, deployment_id, kept, claimed[0] if claimed is not None else UNKNOWN
        )
        if cache is not None and key is not None:  # a stored state: kept, or read
            if kept is not None and monitor is kept[1]:
                cache.hits += 1
            else:
                cache.misses += 1
        records = _unprocessed_records(session, deployment_id, batch)
        started: MonitorConfig | None = None
        if monitor is None:
            if not records:
                return False
            try:
                config = _config_for(deployment, [record_view(r) for r in records[:500]])
            except ConfigError as exc:
                raise ConfigError(f"deployment {deployment_id}: {exc}") from exc
            monitor = DeploymentMonitor.new(config)
            started = config  # audited after the pass's row writes (phase4/monitor/store/audit.py)
        full = len(records) == batch
        horizon = records[-1].acquired_at if full else None
        feedback = _pending_feedback(session, deployment, records, horizon)
        if not records and not feedback:
            if cache is not None and key is not None:
                cache.put(deployment_id, key, monitor)  # untouched: still the stored state
            return False
        # On SQLite nothing is held here: the driver opens a transaction only at the first
        # write, so the reads above took no lock and the analysis runs outside any transaction.
        # The budget follows the observed rate (up to the chunk's last record, already in the
        # store), before the chunk is analysed: a reference completing in it is calibrated at
        # that rate. The monitor saved below (and kept in the cache) holds the new rate.
        rate = _follow_rate(
            session, deployment, monitor, records[-1].acquired_at if records else None
        )
        # A binary reference's growth, held by an alarm, resumes once its alert is resolved
        # (phase4.monitor.drift.growth): asked only when some stream is held.
        held = monitor.held_growth()
        if held:
            monitor.release_growth(held - _streams_with_open_alerts(session, deployment_id, held))
        observed = {name: stream.observations for name, stream in monitor.streams.items()}
        alarms = _analyse(monitor, deployment, records, feedback)
        grown = monitor.take_growth_steps()
        # the streams this chunk fed: their open alerts' sizes are measured again
        fed = {n for n, stream in monitor.streams.items() if stream.observations != observed[n]}
        now = utcnow()
        if sqlite:
            lock_deployment(session, deployment_id)  # the write lock, from here to commit
        _mark_processed(session, InferenceRecord, [r.id for r in records], now)
        _mark_processed(session, Feedback, [fb.id for fb, _, _ in feedback if fb.id], now)
        # the version check: on SQLite the state was read before the write lock
        saved = _write_state(
            session,
            deployment_id,
            key,
            monitor,
            now,
            records[-1].acquired_at if records else None,
        )
        # Fed streams' open alerts are sized again. Drift and performance alerts are opened
        # only by a pass, which holds the deployment as this one does: if none is open now on
        # these streams, none opens before this commit, and without alarms there is nothing to
        # lock (two queries fewer per chunk, the usual case under steady ingest).
        sized = (
            not alarms
            and (claimed is None or claimed[1])
            and _any_open_drift_alert(session, deployment_id, fed)
        )
        if alarms or sized or rate is not None:
            # the deployment's open alerts, and its site's scanners' (whose headlines name the
            # alerts opened or sized here), in id order (lock order: ``alerting``)
            site_devices = session.exec(
                select(Device).where(Device.site_id == deployment.site_id).order_by(col(Device.id))
            )
            lock_open_alerts(session, deployment, *site_devices)
        touched: dict[int, Alert] = {}
        for alarm, _ in alarms:
            alert = _raise_alert(session, deployment, alarm)
            if alert is not None and alert.id is not None:
                result.alerts_opened.append(alert.id)
            current = alert or open_alert(session, deployment, alarm.stream, _cause(alarm))
            if current is not None and current.id is not None:
                touched[current.id] = current
        # the size of each change, and each alert's headline, once per chunk (not per repeat):
        # the alerts opened or repeated, and the open ones whose stream got values
        for alert in _open_drift_alerts(session, deployment_id, fed) if alarms or sized else []:
            touched.setdefault(alert.id or 0, alert)
        analysed = max(
            [r.acquired_at for r in records[-1:]] + [fb.given_at for fb, _, _ in feedback],
            default=None,
        )
        describe_drift_alerts(
            session,
            deployment,
            monitor.streams,
            list(touched.values()),
            now,
            analysed=min(analysed, now) if analysed is not None else None,
        )
        if rate is not None:
            _notify_rate(session, deployment, actor, rate, records[-1].acquired_at)
        for step in grown:
            _audit_growth(session, actor, deployment_id, step)
        if started is not None:
            record_action(
                session,
                actor=actor,
                action="monitoring.start",
                entity_type="deployment",
                entity_id=deployment_id,
                reason="detector state created from configuration",
                new_value={"config": started.to_dict()},
            )
        session.commit()
        if cache is not None:
            cache.put(deployment_id, saved, monitor)
        result.records += len(records)
        result.feedback += len(feedback)
        result.alarms += [a for a, _ in alarms]
        return full


@dataclass
class RateChange:
    """A recalibration of the deployment's budget to the observed rate of studies."""

    observed: float
    in_use: float
    configured: float
    records: int
    span_days: float
    # the ARL0 of a stream every record feeds, at the old and the new rate
    old_arl0: float
    new_arl0: float
    # each monitoring stream's old and new ARL0 (collecting streams start at the new rate)
    streams: dict[str, dict[str, Any]]


def _follow_rate(
    session: Session,
    deployment: Deployment,
    monitor: DeploymentMonitor,
    last: datetime | None,
) -> RateChange | None:
    """Measure the deployment's rate of studies up to ``last`` (the chunk's last record) and,
    when it differs from the rate in use by more than 2× (``phase4.monitor.drift.rate``),
    recalibrate ``monitor`` to it; the change, for the audit trail and the notice."""
    if last is None:
        return None
    first = session.execute(
        sa.select(sa.func.min(InferenceRecord.acquired_at)).where(
            col(InferenceRecord.deployment_id) == deployment.id
        )
    ).scalar()
    if first is None:
        return None
    start = max(first, last - timedelta(days=rate_rules.WINDOW_DAYS))
    span = (last - start).total_seconds() / 86400.0
    if span < rate_rules.MIN_DAYS:
        return None
    count = session.execute(
        sa.select(sa.func.count()).where(
            col(InferenceRecord.deployment_id) == deployment.id,
            col(InferenceRecord.acquired_at) > start,
            col(InferenceRecord.acquired_at) <= last,
        )
    ).scalar_one()
    observed = rate_rules.observed_rate(int(count), span)
    in_use = monitor.config.studies_per_day
    if observed is None or not rate_rules.needs_recalibration(
        observed, in_use, records=int(count), span_days=span
    ):
        return None
    config = monitor.config

    def full(rate: float) -> float:  # a stream every record feeds
        return share(
            streams=config.budget_streams,
            false_alarms_per_year=config.false_alarms_per_year,
            observations_per_day=rate,
        ).stream_arl0

    streams = monitor.recalibrate(observed)
    configured = monitoring_of(deployment).studies_per_day
    return RateChange(
        observed, in_use, configured, int(count), span, full(in_use), full(observed), streams
    )


def _rate_words(rate: float) -> str:
    return f"{rate:,.1f}".removesuffix(".0")


def _notify_rate(
    session: Session, deployment: Deployment, actor: str, change: RateChange, at: datetime
) -> None:
    """The recalibration, in the audit trail (old and new rate and ARL0s) and as a notice."""
    old = {n: c["old_arl0"] for n, c in change.streams.items()}
    new = {n: c["new_arl0"] for n, c in change.streams.items()}
    record_action(
        session,
        actor=actor,
        action="budget.rate",
        entity_type="deployment",
        entity_id=str(deployment.id),
        reason=(
            f"{change.records} studies in {change.span_days:.1f} days: "
            f"{_rate_words(change.observed)} a day, more than 2x from the "
            f"{_rate_words(change.in_use)} in use"
        ),
        old_value={
            "studies_per_day": change.in_use,
            "arl0_full_coverage": change.old_arl0,
            "stream_arl0": old,
        },
        new_value={
            "studies_per_day": change.observed,
            "arl0_full_coverage": change.new_arl0,
            "stream_arl0": new,
        },
    )
    # Dated by the studies (the world), not by this pass.
    title = (
        f"Studies arrive at {_rate_words(change.observed)} a day ({change.records:,} in the "
        f"{change.span_days:.0f} days to {at.day} {at:%b %Y}), the configuration says "
        f"{_rate_words(change.configured)}: the budget now uses {_rate_words(change.observed)}"
    )
    opened = raise_alert(
        session,
        deployment,
        stream=STATE_STREAM,
        cause=AlertCause.BUDGET_RATE,
        severity=Severity.INFO,
        title=title,
        evidence={
            "timestamp": at.isoformat(),
            "reason": title,
            "observed_studies_per_day": change.observed,
            "configured_studies_per_day": change.configured,
            "previous_studies_per_day": change.in_use,
            "window_days": change.span_days,
            "records": change.records,
            "streams": change.streams,
        },
    )
    if opened is None:  # a notice still open from an earlier recalibration: it says the latest
        current = open_alert(session, deployment, STATE_STREAM, AlertCause.BUDGET_RATE)
        if current is not None:
            current.title = title
            current.evidence = {**current.evidence, "reason": title}
            session.add(current)


def _open_drift_alerts(session: Session, deployment_id: str, streams: set[str]) -> list[Alert]:
    """The deployment's open drift and performance alerts on ``streams`` (whose change has a
    size measured from the stream's values)."""
    if not streams:
        return []
    return list(
        session.exec(
            select(Alert)
            .where(
                Alert.deployment_id == deployment_id,
                Alert.status != AlertStatus.RESOLVED,
                col(Alert.stream).in_(sorted(streams)),
                col(Alert.cause).in_([AlertCause.DRIFT, AlertCause.PERFORMANCE]),
            )
            .order_by(col(Alert.id))
        )
    )


def _open_on(deployment_id: str, streams: set[str]) -> tuple[Any, ...]:
    """The conditions of an open (unresolved) drift or performance alert on ``streams``."""
    return (
        col(Alert.deployment_id) == deployment_id,
        col(Alert.status) != AlertStatus.RESOLVED,
        col(Alert.stream).in_(sorted(streams)),
        col(Alert.cause).in_([AlertCause.DRIFT, AlertCause.PERFORMANCE]),
    )


def _streams_with_open_alerts(session: Session, deployment_id: str, streams: set[str]) -> set[str]:
    """Which of ``streams`` have an open (unresolved) drift or performance alert."""
    found = session.execute(
        sa.select(Alert.stream).where(*_open_on(deployment_id, streams)).distinct()
    )
    return {str(row[0]) for row in found}


def _audit_growth(session: Session, actor: str, deployment_id: str, step: dict[str, Any]) -> None:
    """One growth step of a binary reference, in the audit trail: which observations joined
    (rows' times, counts), the reference before and after, and the chart's redesign."""
    added, before, after = step["added"], step["reference_before"], step["reference_after"]
    # a labelled stream's observations are labels, dated when they were given
    labels = step.get("source") == "feedback"
    what, dated = ("labels", "given") if labels else ("studies", "acquired")
    record_action(
        session,
        actor=actor,
        action="reference.grow",
        entity_type="deployment",
        entity_id=deployment_id,
        reason=(
            f"stream {step['stream']}: step {step['step']} toward {step['target_events']} "
            f"events: {added['observations']:,} {what} {dated} {added['first_at'][:10]} to "
            f"{added['last_at'][:10]} ({added['events']:,} events), each at least "
            f"{step['guard']:,} observations old, no alert open and no excursion under way, "
            f"joined the reference: {before['n']:,} {what}, {before['events']:,} events → "
            f"{after['n']:,} {what}, {after['events']:,} events; chart redesigned"
        ),
        old_value={
            "stream": step["stream"],
            "reference": before,
            "p0": step["p0_before"],
            "p1": step["p1_before"],
            "threshold_nats": step["threshold_before"],
        },
        new_value={
            "stream": step["stream"],
            "step": step["step"],
            "reference": after,
            "added": added,
            "guard_studies": step["guard"],
            "p0": step["p0"],
            "p1": step["p1"],
            "threshold_nats": step["threshold"],
            "target_events": step["target_events"],
            "done": step["done"],
        },
    )


def _any_open_drift_alert(session: Session, deployment_id: str, streams: set[str]) -> bool:
    """Whether ``_open_drift_alerts`` would find any (ids only, unlocked: no alert is loaded
    into the session before its lock is taken)."""
    if not streams:
        return False
    found = session.execute(
        sa.select(Alert.id).where(*_open_on(deployment_id, streams)).limit(1)
    ).first()
    return found is not None


def _analyse(
    monitor: DeploymentMonitor,
    deployment: Deployment,
    records: Sequence[Any],
    feedback: Sequence[tuple[Feedback, dict[str, Any], datetime]],
) -> list[tuple[StreamAlarm, datetime]]:
    """Feed the chunk: records by acquisition time and labels by the time they were given,
    merged, as a live service would have seen them; a label never precedes its own record."""
    perf = monitoring_of(deployment).performance
    performance = perf.model_dump() if perf is not None else {}
    alarms: list[tuple[StreamAlarm, datetime]] = []
    events: list[tuple[datetime, int, int, Any]] = [
        (r.acquired_at, 0, i, r) for i, r in enumerate(records)
    ]
    events += [
        (max(fb.given_at, acquired), 1, i, (fb, outputs))
        for i, (fb, outputs, acquired) in enumerate(feedback)
    ]
    events.sort(key=lambda e: e[:3])
    for at, kind, _, item in events:
        if kind == 0:
            # Before acceptance into clinical use the AI was being validated: those records
            # are neither reference nor monitored.
            if deployment.accepted_at is None or at >= deployment.accepted_at:
                for a in monitor.observe(record_view(item), at, source="record"):
                    alarms.append((a, at))
        else:
            fb, outputs = item
            view = outcome_view(outputs, fb, performance)
            for a in monitor.observe(view, fb.given_at, source="feedback"):
                alarms.append((a, fb.given_at))
    return alarms


def _pending_feedback(
    session: Session,
    deployment: Deployment,
    records: Sequence[InferenceRecord],
    horizon: datetime | None,
) -> list[tuple[Feedback, dict[str, Any], datetime]]:
    """Unconsumed labelled outcomes whose record is already analysed or is in this pass, given
    no later than ``horizon`` (the last record of a full pass: later labels wait for the next)."""
    if monitoring_of(deployment).performance is None:
        return []
    in_pass = [r.record_id for r in records]
    q = (
        sa.select(Feedback, InferenceRecord.outputs, InferenceRecord.acquired_at)
        .join(InferenceRecord, col(InferenceRecord.record_id) == col(Feedback.record_id))
        .where(
            InferenceRecord.deployment_id == deployment.id,
            col(Feedback.drift_processed_at).is_(None),
            sa.or_(
                col(InferenceRecord.drift_processed_at).is_not(None),
                col(InferenceRecord.record_id).in_(in_pass),
            ),
        )
        .order_by(col(Feedback.given_at), col(Feedback.id))
    )
    if horizon is not None:
        q = q.where(col(Feedback.given_at) <= horizon)
    return [(fb, outputs, acquired) for fb, outputs, acquired in session.execute(q).all()]


def _cause(alarm: StreamAlarm) -> str:
    if alarm.alarm.kind == "quarantine":
        return STREAM_STOPPED
    if alarm.alarm.kind == "notice":
        return AlertCause.new_condition(alarm.alarm.detail.get("value"))
    if alarm.stream.startswith("performance."):
        return AlertCause.PERFORMANCE
    return AlertCause.DRIFT


def _severity(alarm: StreamAlarm) -> Severity:
    if alarm.alarm.kind == "quarantine":
        return Severity.WARNING
    if alarm.alarm.kind == "notice":
        return Severity.INFO if alarm.kind != "categorical" else Severity.WARNING
    return Severity.CRITICAL if alarm.stream.startswith("performance.") else Severity.WARNING


def _title(alarm: StreamAlarm) -> str:
    a = alarm.alarm
    if a.kind == "quarantine":
        return str(a.detail["reason"])
    if a.kind == "notice":
        return (
            f"New value in {alarm.stream}: {a.detail.get('value')!r} (never seen in the reference)"
        )
    direction = {"up": "rose", "down": "fell"}.get(a.direction or "", "changed distribution")
    return f"{alarm.stream} {direction} (detected by {a.detector})"


def _raise_alert(session: Session, deployment: Deployment, alarm: StreamAlarm) -> Alert | None:
    """Open an alert, or add the alarm to the open alert of the same stream and cause."""
    return raise_alert(
        session,
        deployment,
        stream=alarm.stream,
        cause=_cause(alarm),
        severity=_severity(alarm),
        title=_title(alarm),
        evidence=alarm.to_dict(),
    )


def detect_all(
    engine: Engine, *, claim: bool = False, cache: MonitorCache | None = None
) -> list[PassResult]:
    """A pass over every deployment. One deployment's failure (a configuration that cannot be
    used, a state that cannot be read, anything else) rolls back only its own transaction, is
    logged without values, raises one alert, and the pass goes on with the others.

    ``claim``: one of several workers sharing a PostgreSQL store; a deployment another worker
    is analysing is skipped (``PassResult.skipped``), and that worker finishes it. ``cache``:
    the worker's monitors kept between passes (``MonitorCache``); the deployments it keeps
    are visited first. Results are in deployment order either way."""
    batch = DetectionSettings().batch_records  # a bad setting is the caller's error, raised
    with Session(engine) as session:
        ids = list(session.exec(select(Deployment.id).order_by(col(Deployment.id))))
    order = cache.order(ids) if cache is not None else ids
    done = {
        d: detect_isolated(engine, d, claim=claim, batch_records=batch, cache=cache) for d in order
    }
    return [done[d] for d in ids]


def detect_isolated(
    engine: Engine,
    deployment_id: str,
    *,
    claim: bool = False,
    batch_records: int | None = None,
    cache: MonitorCache | None = None,
) -> PassResult:
    """``detect_deployment`` that never raises: a failure is an alert and a log line (and the
    deployment's kept monitor, if any, is dropped)."""
    try:
        return detect_deployment(
            engine, deployment_id, claim=claim, batch_records=batch_records, cache=cache
        )
    except ConfigError as exc:
        # The configuration is the administrator's own text (field names and kinds), not a
        # record's value: the message may name it.
        log.warning(
            "detection of %s skipped: its monitoring configuration cannot be used", deployment_id
        )
        _flag_deployment(
            engine,
            deployment_id,
            CONFIG_ERROR,
            f"Detection of {deployment_id} is stopped: its monitoring configuration cannot be "
            f"used ({_config_problem(exc)}). Its records wait, unanalysed, and the other "
            "deployments continue; detection resumes at the first pass after the configuration "
            "is fixed.",
        )
    except Exception as exc:  # a deployment's failure must not stop the others
        # The type only: a message may quote a value from a record or the stored state.
        log.error(
            "detection of %s failed (%s); its records wait and the other deployments continue",
            deployment_id,
            type(exc).__name__,
        )
        _flag_deployment(
            engine,
            deployment_id,
            DETECTION_FAILED,
            f"Detection of {deployment_id} failed ({type(exc).__name__}): its records wait, "
            "unanalysed, and the other deployments continue. It is retried at every pass; if "
            "its stored detector state is damaged, reset its reference.",
        )
    if cache is not None:
        cache.drop(deployment_id)
    return PassResult(deployment_id, failed=True)


def _config_problem(exc: ConfigError) -> str:
    text = str(exc)
    prefix = "deployment "
    if text.startswith(prefix) and ": " in text:
        text = text.split(": ", 1)[1]
    return text[:300]


def _flag_deployment(engine: Engine, deployment_id: str, cause: str, title: str) -> None:
    """One open alert per deployment and cause: a failure that repeats at every pass is said
    once. Written in its own transaction (the pass's was rolled back)."""
    try:
        with Session(engine) as session:
            if lock_deployment(session, deployment_id) is None:
                return
            exists = session.exec(
                select(Alert.id).where(
                    Alert.deployment_id == deployment_id,
                    Alert.stream == STATE_STREAM,
                    Alert.cause == cause,
                    Alert.status != AlertStatus.RESOLVED,
                )
            ).first()
            if exists is not None:
                return
            session.add(
                Alert(
                    deployment_id=deployment_id,
                    stream=STATE_STREAM,
                    cause=cause,
                    severity=Severity.CRITICAL,
                    title=title[:500],
                    evidence={"timestamp": utcnow().isoformat(), "reason": title},
                )
            )
            session.commit()
    except Exception as exc:  # the store itself failing: said in the log, retried next pass
        log.error("could not record the failure of %s (%s)", deployment_id, type(exc).__name__)


def open_alerts(engine: Engine, deployment_id: str | None = None) -> list[Alert]:
    with Session(engine) as session:
        q = select(Alert).where(Alert.status != AlertStatus.RESOLVED)
        if deployment_id:
            q = q.where(Alert.deployment_id == deployment_id)
        return list(session.exec(q.order_by(col(Alert.opened_at), col(Alert.id))))


def reference_summary(monitor: DeploymentMonitor) -> dict[str, Any]:
    """What each stream's reference is, briefly (for the audit trail and people)."""
    out: dict[str, Any] = {}
    for name, stream in monitor.streams.items():
        ref = stream.reference
        if ref is None:
            out[name] = {"state": "collecting", "values": len(stream.reference_values)}
            if stream.budget and "not_calibratable" in stream.budget:
                out[name]["not_calibratable"] = stream.budget["not_calibratable"]
        elif "median" in ref:
            out[name] = {"n": ref["n"], "median": ref["median"], "mad_sigma": ref["mad_sigma"]}
        elif "events" in ref:
            out[name] = {"n": ref["n"], "events": ref["events"]}
        else:
            out[name] = {"counts": ref["counts"]}
    return out


def reset_reference(engine: Engine, deployment_id: str, *, actor: str, reason: str) -> None:
    """Discard the deployment's references and detector state: the next records not yet
    analysed form a new reference (after a validated change, for example). Audited."""
    if not reason.strip():
        raise ValueError("a reason is required to replace a reference")
    with Session(engine) as session:
        # The deployment's lock first, as a detection pass takes it: a pass running now would
        # otherwise save the old state back over the reset, or deadlock with it.
        _lock_deployment(session, deployment_id)
        state_row, monitor = load_state(session, deployment_id)
        if state_row is None or monitor is None:
            raise ValueError(f"deployment {deployment_id!r} has no reference yet")
        session.delete(state_row)
        record_action(
            session,
            actor=actor,
            action="reference.reset",
            entity_type="deployment",
            entity_id=deployment_id,
            reason=reason,
            old_value={"references": reference_summary(monitor)},
            new_value=None,
        )
        session.commit()


def upload_reference(
    engine: Engine,
    deployment_id: str,
    rows: Sequence[Mapping[str, Any]],
    *,
    actor: str,
    reason: str,
    source: str,
) -> dict[str, Any]:
    """Set the deployment's references from uploaded rows (keys like ``features.x``) instead of
    its first records. Replaces any reference; audited with the file's fingerprint."""
    if not reason.strip():
        raise ValueError("a reason is required to set a reference")
    with Session(engine) as session:
        deployment = _lock_deployment(session, deployment_id)  # as reset_reference, and why
        state_row, old = load_state(session, deployment_id)
        nested = [_nest(r) for r in rows]
        if len(nested) < 30:
            raise ValueError(f"a reference file needs at least 30 rows, got {len(nested)}")
        # The file is the reference, whole: no uploaded row is ever a monitored observation.
        config = dataclasses.replace(
            _config_for(deployment, nested[:500]), reference_size=len(nested)
        )
        monitor = DeploymentMonitor.new(config)
        at = "reference-upload"
        for i, rec in enumerate(nested):
            alarms = monitor.observe(rec, at, row=-(len(nested) - i))
            if alarms:  # cannot happen: every stream is still collecting its reference
                raise RuntimeError("a detector fired while its reference was being set")
        monitor.records = 0
        summary = reference_summary(monitor)
        _save_state(session, deployment_id, state_row, monitor, utcnow(), None)
        record_action(
            session,
            actor=actor,
            action="reference.set",
            entity_type="deployment",
            entity_id=deployment_id,
            reason=reason,
            old_value={"references": reference_summary(old)} if old else None,
            new_value={"source": source, "rows": len(rows), "references": summary},
        )
        session.commit()
        return summary


def declare_baseline(
    engine: Engine,
    deployment_id: str,
    stream: str,
    *,
    cases: int,
    events: int,
    source: str,
    actor: str,
    reason: str,
) -> dict[str, Any]:
    """Declare a binary stream's baseline from the validation study (``events`` in ``cases``,
    from ``source``): it becomes the stream's reference, audited like an upload."""
    if not reason.strip():
        raise ValueError("a reason is required to declare a baseline")
    with Session(engine) as session:
        deployment = _lock_deployment(session, deployment_id)  # as reset_reference, and why
        state_row, monitor = load_state(session, deployment_id)
        if monitor is None:
            if not monitoring_of(deployment).streams:
                # its streams are inferred from its first records: a state made now would fix
                # them before any record says what they are
                raise ValueError(
                    f"deployment {deployment_id!r} has no streams yet (they are inferred from "
                    "its first records): declare the baseline after its first detection pass, "
                    "or list its streams in its monitoring configuration"
                )
            monitor = DeploymentMonitor.new(_config_for(deployment, []))
        now = utcnow()
        change = monitor.declare_baseline(
            stream, cases=cases, events=events, source=source, at=now.isoformat()
        )
        _save_state(session, deployment_id, state_row, monitor, now, None)
        record_action(
            session,
            actor=actor,
            action="reference.declare",
            entity_type="deployment",
            entity_id=deployment_id,
            reason=reason,
            old_value={"stream": stream, "reference": change["old"]},
            new_value={
                "stream": stream,
                "source": source,
                "cases": cases,
                "events": events,
                "reference": change["new"],
                "p0": change["p0"],
                "p1": change["p1"],
                "threshold_nats": change["threshold_nats"],
            },
        )
        session.commit()
        return change


def _nest(row: Mapping[str, Any]) -> dict[str, Any]:
    """{'features.x': 1} -> {'features': {'x': 1}}, so uploaded rows look like records."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out
