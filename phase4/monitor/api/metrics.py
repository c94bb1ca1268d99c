"""Prometheus exposition: a per-app registry; store-backed values are read at scrape time.

Conventions (see docs/METRICS.md): ``phase4_`` prefix, base units, counters end in ``_total``,
labels only from bounded sets (deployment, site, device, stream, detector, kind, metric,
severity, status) — never a patient, study or record id.

Three sources (GET /metrics serves :meth:`MetricsRegistry.exposition`: the store's families,
then ``generate_latest`` of the in-process ones):

* :class:`StoreCollector` reads the store at each scrape with a handful of aggregate queries
  (records per deployment, open alerts, the latest phantom result per device and kind, the
  tolerances in force). Detector statistics come from each deployment's ``detector_state`` row;
  its JSON is parsed, and its lines rendered, only when the row's ``updated_at`` changed since
  the previous scrape. Records per deployment are regrouped only when rows other than new ones
  changed. It writes its families' text itself (:meth:`StoreCollector.render`, thousands of
  series); :meth:`StoreCollector.collect` yields the same families as prometheus_client metric
  objects, whose ``generate_latest`` is the same text (the reference the tests compare with).
* :class:`IngestMetrics` counts what the ingest API did (in-process counters and a latency
  histogram of the records it stored).
* :class:`ProbeHealthBook` remembers the last health report each deployment's probe sent with a
  batch (queue and spool depth, records it dropped, its version); in memory, like the counters.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from phase4.monitor.api.subgroup_metrics import SubgroupCollector
from phase4.monitor.core.statuses import AlertStatus, Severity
from phase4.monitor.core.verdicts import verdict_level as _verdict_level
from phase4.monitor.domain.schemas import BatchResult, ProbeHealth
from phase4.monitor.drift.detectors import Detector, DetectorMode, Ewma, detector_from_dict
from phase4.monitor.drift.reference import RateReference
from phase4.monitor.drift.state import StreamState, upgrade_state
from phase4.monitor.store.models import (
    AIModel,
    Alert,
    Deployment,
    DetectorState,
    Device,
    InferenceRecord,
    PhantomResult,
    PhantomTolerance,
    utcnow,
)
from phase4.monitor.surveillance.reference_outlook import (
    ReferenceOutlook,
    StreamNeed,
    horizon_days,
    outlook,
    rate_columns,
    rate_from,
    stream_needs,
)

log = logging.getLogger("phase4.monitor.api")

SEVERITIES = (Severity.INFO, Severity.WARNING, Severity.CRITICAL)
# A deployment's status, for the fleet overview (exported one-hot, see _status):
# no_data: no record yet; reference: records arrive but no stream is detecting yet (references
# being collected); monitoring: at least one stream detecting, no open warning or critical
# alert; alerting: a warning or critical alert is open.
DEPLOYMENT_STATUSES = ("no_data", "reference", "monitoring", "alerting")
LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TOLERANCE_BOUNDS = ("lower_action", "lower_tolerance", "upper_tolerance", "upper_action")
# Deployment state rows written by phase4.monitor.surveillance.detection (one per deployment).
STATE_STREAM = "*"
STATE_DETECTOR = "deployment"
DAY_S = 86400


def device_label(site_id: str, model: str, serial: str) -> str:
    """A device's label value: ``<site>/<model>/<serial>``, unique (serials are unique per site)
    and stable while the scanner is in use. A serial names equipment, never a person."""
    return f"{site_id}/{model}/{serial}"


class ProbeHealthBook:
    """The latest health report of each deployment's probe (bounded: one entry per deployment
    that the reporting token was allowed to write records for)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reports: dict[str, tuple[ProbeHealth, float]] = {}

    def remember(self, deployments: Iterable[str], health: ProbeHealth) -> None:
        now = time.monotonic()
        with self._lock:
            for deployment in deployments:
                self._reports[deployment] = (health, now)

    def snapshot(self) -> dict[str, tuple[ProbeHealth, float]]:
        """Deployment -> (report, seconds since it arrived)."""
        now = time.monotonic()
        with self._lock:
            return {d: (h, now - at) for d, (h, at) in self._reports.items()}


class IngestMetrics:
    """What the ingest API did with the items it was sent (kept in-process), and the probes'
    health reports."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.items = Counter(
            "phase4_ingest_items",
            "Items received by the ingest API, by kind (records, feedback) and outcome.",
            ["kind", "status"],
            registry=registry,
        )
        for kind in ("records", "feedback"):
            for status in ("created", "duplicate", "rejected"):
                self.items.labels(kind, status)
        self.latency = Histogram(
            "phase4_inference_latency_seconds",
            "Model inference latency of the records stored since the monitor started.",
            ["deployment"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.inference_errors = Counter(
            "phase4_inference_errors",
            "Records stored since the monitor started whose model run raised an error.",
            ["deployment"],
            registry=registry,
        )
        self.probes = ProbeHealthBook()

    def observe(self, kind: str, result: BatchResult, items: Sequence[Any] = ()) -> None:
        self.items.labels(kind, "created").inc(result.created)
        self.items.labels(kind, "duplicate").inc(result.duplicates)
        self.items.labels(kind, "rejected").inc(result.rejected)
        if kind != "records" or not items:
            return
        for item in result.results:
            if item.status != "created" or not 0 <= item.index < len(items):
                continue
            raw = items[item.index]
            if not isinstance(raw, Mapping):
                continue
            deployment = str(raw.get("deployment"))
            latency = raw.get("latency_s")
            if isinstance(latency, int | float) and not isinstance(latency, bool):
                self.latency.labels(deployment).observe(float(latency))
            if raw.get("error") is not None:
                self.inference_errors.labels(deployment).inc()

    def observe_probe(
        self, health: ProbeHealth | None, result: BatchResult, items: Sequence[Any]
    ) -> None:
        """Remember ``health`` for the deployments of the batch's accepted records (the token
        was allowed to write them; a rejected item names nothing trustworthy)."""
        if health is None:
            return
        deployments = {
            str(items[r.index].get("deployment"))
            for r in result.results
            if r.status != "rejected"
            and 0 <= r.index < len(items)
            and isinstance(items[r.index], Mapping)
        }
        self.probes.remember(deployments, health)


class ProbeHealthCollector(Collector):
    def __init__(self, book: ProbeHealthBook) -> None:
        self.book = book

    def collect(self) -> Iterator[Metric]:
        queue = GaugeMetricFamily(
            "phase4_probe_queue_depth",
            "Records in the probe's in-memory queue at its last report.",
            labels=["deployment"],
        )
        spool = GaugeMetricFamily(
            "phase4_probe_spool_depth",
            "Records in the probe's on-disk spool (waiting for the monitor) at its last report.",
            labels=["deployment"],
        )
        dropped = CounterMetricFamily(
            "phase4_probe_dropped_records",
            "Records the probe lost (queue or spool overflow), as counted by the probe process.",
            labels=["deployment"],
        )
        age = GaugeMetricFamily(
            "phase4_probe_last_report_age_seconds",
            "Seconds since the probe last reported its health (with a batch of records).",
            labels=["deployment"],
        )
        info = GaugeMetricFamily(
            "phase4_probe_info",
            "The probe reporting for the deployment (value 1), with its version.",
            labels=["deployment", "probe_version"],
        )
        for deployment, (health, age_s) in sorted(self.book.snapshot().items()):
            queue.add_metric([deployment], health.queue_depth)
            spool.add_metric([deployment], health.spool_depth)
            dropped.add_metric([deployment], health.dropped_total)
            age.add_metric([deployment], age_s)
            info.add_metric([deployment, health.probe_version or "unknown"], 1)
        yield from (queue, spool, dropped, age, info)


@dataclass(frozen=True)
class _StreamSample:
    stream: str
    monitoring: bool
    observations: int
    # detector -> (statistic, threshold), sequential detectors only
    detectors: tuple[tuple[str, float, float], ...]
    ewma_z: float | None
    reference_rate: float | None
    # the reference's size (observations) and, for a binary stream, its events and the growth
    # steps taken (phase4.monitor.drift.growth); None before the reference is complete
    reference_observations: int | None = None
    reference_events: int | None = None
    growth_steps: int | None = None


def _finite(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    value = float(x)
    return value if math.isfinite(value) else None


def _detectors(saved: Mapping[str, Any]) -> dict[str, Detector[Any]]:
    """A saved stream's detectors. One whose saved state no detector class reads is left out
    (detection quarantines its stream; /metrics shows the rest)."""
    out: dict[str, Detector[Any]] = {}
    for name, d in (saved.get("detectors") or {}).items():
        try:
            out[name] = detector_from_dict(name, d)
        except (KeyError, TypeError, ValueError):
            continue
    return out


def _stream_sample(name: str, saved: Mapping[str, Any]) -> _StreamSample:
    """A saved stream as /metrics shows it: its state, and each sequential detector's
    statistic and threshold as the detector gives them (it alarms when the statistic passes the
    threshold). The windowed tests have no running statistic between windows and a notice has
    none: neither is exported."""
    detectors = _detectors(saved)
    samples = []
    for det_name, det in sorted(detectors.items()):
        if det.mode is not DetectorMode.SEQUENTIAL:
            continue
        statistic, threshold = float(det.statistic), float(det.threshold)
        if math.isfinite(statistic) and math.isfinite(threshold):
            samples.append((det_name, statistic, threshold))
    ewma = detectors.get(Ewma.name)
    reference = saved.get("reference")
    rate = None
    ref_n = ref_events = steps = None
    if isinstance(reference, Mapping):
        n = reference.get("n")
        ref_n = int(n) if isinstance(n, int) and not isinstance(n, bool) else None
    if isinstance(reference, Mapping) and saved["spec"]["kind"] == "binary":
        # the rate the chart was designed on, (events + ½)/(n + 1), not events/n
        rated = RateReference.from_dict(dict(reference))
        rate = _finite(rated.rate)
        ref_events = int(rated.events)
        growth = saved.get("growth")
        steps = int(growth.get("steps", 0)) if isinstance(growth, Mapping) else 0
    return _StreamSample(
        stream=name,
        monitoring=StreamState(saved["state"]) is StreamState.MONITORING,
        observations=int(saved.get("observations") or 0),
        detectors=tuple(samples),
        # the signed EWMA: the stream's shift from its reference, in reference SD
        ewma_z=_finite(ewma.z) if isinstance(ewma, Ewma) else None,
        reference_rate=rate,
        reference_observations=ref_n,
        reference_events=ref_events,
        growth_steps=steps,
    )


def extract_streams(state: Mapping[str, Any]) -> tuple[_StreamSample, ...]:
    """What /metrics shows of one deployment's detector state (``DeploymentMonitor.to_dict``,
    of any saved version): each stream's state, and its detectors' statistics and thresholds as
    the detectors state them."""
    if not state:
        return ()
    try:
        streams = upgrade_state(state)["streams"]
    except (KeyError, TypeError, ValueError) as exc:
        # A state detection cannot read either (it alerts on it): no stream to show.
        log.warning("a detector state could not be read for /metrics (%s)", type(exc).__name__)
        return ()
    out = []
    for name, saved in sorted(streams.items()):
        if not isinstance(saved, Mapping):
            continue
        try:
            out.append(_stream_sample(str(name), saved))
        except (KeyError, TypeError, ValueError, ArithmeticError):
            continue  # a stream whose saved state is unreadable: detection quarantines it
    return tuple(out)


class _Escapes(dict[str, str]):
    """Label values escaped for the text format (backslash, newline, double quote, in the order
    prometheus_client applies them), each value escaped once per scrape."""

    def __missing__(self, value: str) -> str:
        escaped = value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
        self[value] = escaped
        return escaped


def _fmt(value: float) -> str:
    """A sample value as prometheus_client writes it (``floatToGoString``); small integers
    (counts, one-hot flags) without the float round trip."""
    if type(value) is int and -1_000_000 < value < 1_000_000:
        return f"{value}.0"
    return floatToGoString(value)


class _Family:
    """One store-backed metric family (gauge or counter without ``_created``): its samples, as
    label values in ``labels`` order and a value, and two renderings of them — a
    prometheus_client metric (the reference, formatted by ``generate_latest``) and the same
    text 0.0.4 lines written directly (labels sorted by name, values escaped, floats as Go
    prints them), byte for byte what ``generate_latest`` makes of the metric."""

    __slots__ = ("_template", "documentation", "kind", "labels", "name", "samples")

    def __init__(self, name: str, kind: str, documentation: str, labels: Sequence[str]) -> None:
        self.name = name
        self.kind = kind
        self.documentation = documentation
        self.labels = tuple(labels)
        self.samples: list[tuple[tuple[str, ...], float]] = []
        exposed = name + "_total" if kind == "counter" else name
        pairs = sorted((label, i) for i, label in enumerate(self.labels))
        inner = ",".join(f'{label}="{{{i}}}"' for label, i in pairs)
        n = len(self.labels)
        self._template = f"{exposed}{{{{{inner}}}}} {{{n}}}\n" if n else f"{exposed} {{0}}\n"

    def add(self, values: Sequence[str], value: float) -> None:
        self.samples.append((tuple(values), value))

    def metric(self) -> Metric:
        family_type = CounterMetricFamily if self.kind == "counter" else GaugeMetricFamily
        metric = family_type(self.name, self.documentation, labels=list(self.labels))
        for values, value in self.samples:
            metric.add_metric(list(values), value)
        return metric

    def header(self) -> str:
        exposed = self.name + "_total" if self.kind == "counter" else self.name
        doc = self.documentation.replace("\\", r"\\").replace("\n", r"\n")
        return f"# HELP {exposed} {doc}\n# TYPE {exposed} {self.kind}\n"

    def lines(self, escape: Mapping[str, str]) -> str:
        template = self._template.format
        return "".join(
            [template(*[escape[v] for v in values], _fmt(value)) for values, value in self.samples]
        )

    def text(self, escape: Mapping[str, str]) -> str:
        return self.header() + self.lines(escape)


class _StateEntry:
    """A deployment's detector state as /metrics shows it, cached until the row changes: its
    streams, what its collecting streams still need, and, once rendered, the text lines of
    each stream family."""

    __slots__ = ("chunks", "needs", "streams", "updated_at")

    def __init__(
        self,
        updated_at: datetime | None,
        streams: tuple[_StreamSample, ...],
        needs: tuple[StreamNeed, ...] = (),
    ) -> None:
        self.updated_at = updated_at
        self.streams = streams
        self.needs = needs
        self.chunks: tuple[str, ...] | None = None


@dataclass
class _RecordTally:
    """Records per deployment (count, newest ``received_at``) as of the rows with ids up to
    ``top_id``, and the ids up to ``top_id`` that were absent when counted (``holes``: runs
    (first, last) of ids a rolled-back insert never used, or a transaction not yet committed
    will still bring)."""

    top_id: int
    holes: list[tuple[int, int]]
    per_deployment: dict[str, tuple[int, datetime | None]]
    top_record: str | None  # the record_id at top_id: a different one there means a deletion

    def add(self, dep: str, count: int, last: datetime | None) -> None:
        before, before_last = self.per_deployment.get(dep, (0, None))
        if before_last is not None and (last is None or before_last > last):
            last = before_last
        self.per_deployment[dep] = (before + count, last)


# Hole runs checked per query (each run is one indexed range probe).
_HOLE_RUNS_PER_QUERY = 200


@dataclass(frozen=True)
class _StoreSnapshot:
    """What one scrape read from the store."""

    now: datetime
    deployments: Sequence[Any]
    records: Mapping[str, tuple[int, datetime | None]]
    open_alerts: Sequence[Any]
    streams: Mapping[str, _StateEntry]
    phantoms: Mapping[tuple[int, str], Any]
    tolerances: Mapping[tuple[int | None, str, str], tuple[float | None, ...]]
    # deployments with streams collecting a reference: when each will be complete
    references: Mapping[str, ReferenceOutlook] = field(default_factory=dict)


class StoreCollector(Collector):
    """Reads deployments, records, alerts, detector state and phantom QC from the store at each
    scrape.

    :meth:`render` writes the families' text directly (what /metrics serves); :meth:`collect`
    yields the same families as prometheus_client metrics (the reference: ``generate_latest``
    of them is the same bytes, only slower)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        # deployment -> its detector_state.updated_at, extracted streams and rendered lines
        self._streams: dict[str, _StateEntry] = {}
        self._records: _RecordTally | None = None
        # (latest phantom rows and tolerances, text before and after the age family)
        self._phantom_cache: tuple[Any, str, str] | None = None

    def collect(self, now: datetime | None = None) -> Iterator[Metric]:
        snapshot = self._read(now)
        streams = {dep: entry.streams for dep, entry in snapshot.streams.items()}
        for family in self._families(snapshot):
            yield family.metric()
        for family in self._stream_families(streams):
            yield family.metric()
        for family in self._phantom_families(snapshot):
            yield family.metric()

    def render(self, now: datetime | None = None) -> str:
        """The store's families in the text format, in :meth:`collect`'s order."""
        snapshot = self._read(now)
        escape = _Escapes()
        out = [family.text(escape) for family in self._families(snapshot)]
        headers = [family.header() for family in self._stream_families({})]
        chunks = [
            self._stream_chunks(entry, dep, escape)
            for dep, entry in sorted(snapshot.streams.items())
        ]
        for i, header in enumerate(headers):
            out.append(header)
            out.extend(c[i] for c in chunks)
        out.append(self._phantom_text(snapshot, escape))
        return "".join(out)

    def _phantom_text(self, snapshot: _StoreSnapshot, escape: Mapping[str, str]) -> str:
        """The phantom families; all but the ages are rendered again only when the latest
        results, their devices or the tolerances changed."""
        key = (tuple(tuple(row) for row in snapshot.phantoms.values()), snapshot.tolerances)
        with self._lock:
            cached = self._phantom_cache
        if cached is None or cached[0] != key:
            value, verdict, failing, _, bounds = self._phantom_families(snapshot)
            before = value.text(escape) + verdict.text(escape) + failing.text(escape)
            cached = (key, before, bounds.text(escape))
            with self._lock:
                self._phantom_cache = cached
        return cached[1] + self._phantom_age(snapshot).text(escape) + cached[2]

    def _stream_chunks(
        self, entry: _StateEntry, dep: str, escape: Mapping[str, str]
    ) -> tuple[str, ...]:
        chunks = entry.chunks
        if chunks is None:
            families = self._stream_families({dep: entry.streams})
            chunks = entry.chunks = tuple(family.lines(escape) for family in families)
        return chunks

    def _read(self, now: datetime | None = None) -> _StoreSnapshot:
        now = now or utcnow()
        with Session(self.engine) as session:
            streams = self._detector_streams(session)
            # The deployments with a stream collecting its reference also get, in the same
            # query, their acquisition rate and configuration (behind a CASE: the others, a
            # fleet that is monitoring, cost nothing).
            collecting = sorted(dep for dep, entry in streams.items() if entry.needs)
            wanted = col(Deployment.id).in_(collecting)
            extra = [
                sa.case((wanted, column), else_=None)
                for column in (*rate_columns(now, col(Deployment.id)), col(Deployment.monitoring))
            ]
            rows = session.execute(
                sa.select(
                    Deployment.id, Deployment.site_id, AIModel.name, AIModel.version, *extra
                ).join(
                    AIModel,
                    AIModel.id == Deployment.model_id,  # type: ignore[arg-type]
                )
            ).all()
            deployments = [tuple(row[:4]) for row in rows]
            references = {
                dep_id: outlook(
                    dep_id,
                    streams[dep_id].needs,
                    rate_from(first, recent, now),
                    horizon_days(monitoring),
                )
                for dep_id, _, _, _, first, recent, monitoring in rows
                if dep_id in streams and streams[dep_id].needs
            }
            records = self._record_counts(session)
            open_alerts = session.execute(
                sa.select(Alert.deployment_id, Alert.stream, Alert.severity, sa.func.count())
                .where(Alert.status != AlertStatus.RESOLVED)
                .group_by(Alert.deployment_id, Alert.stream, Alert.severity)
            ).all()
            phantoms = self._latest_phantoms(session)
            tolerances = self._tolerances(session) if phantoms else {}
        return _StoreSnapshot(
            now, deployments, records, open_alerts, streams, phantoms, tolerances, references
        )

    def _record_counts(self, session: Session) -> dict[str, tuple[int, datetime | None]]:
        """Records per deployment and the newest one's arrival, at a cost that does not grow
        with the table: records are insert-only (nothing in phase4 updates or deletes one), so
        the tally of the last scrape stays true for the ids it covered, and a scrape reads only

        - the largest id (one probe of the primary key's index),
        - the rows with larger ids, grouped per deployment (a range of the primary key: the
          records that arrived since the last scrape),
        - the rows that have since appeared in the *holes*, the ids at or below the last
          largest id that were absent when counted (a range probe per run of missing ids).

        Holes keep the counts exact on PostgreSQL, where ids come from a sequence in the order
        transactions *start*: a batch may commit after a later one that a scrape already
        counted; its ids are then holes, and the next scrape adds them. Ids a rolled-back
        insert took stay holes, each run one cheap probe. The first scrape groups the table
        once.
        """
        ident = col(InferenceRecord.id)
        with self._lock:
            tally = self._records
        if tally is None:
            tally = _RecordTally(0, [], {}, None)
        top, at_top = session.execute(
            sa.select(
                sa.func.coalesce(sa.func.max(ident), 0),
                sa.select(InferenceRecord.record_id).where(ident == tally.top_id).scalar_subquery(),
            )
        ).one()
        if tally.top_id and at_top != tally.top_record:
            # The newest row counted was deleted behind the application's back (an erasure, a
            # restored backup; SQLite then gives its id to the next row): count from scratch.
            tally = _RecordTally(0, [], {}, None)
        tally = _RecordTally(
            tally.top_id, list(tally.holes), dict(tally.per_deployment), tally.top_record
        )
        if tally.holes:
            self._fill_holes(session, tally)
        if top > tally.top_id:
            self._count_after(session, tally, top)
        with self._lock:
            self._records = tally
        return tally.per_deployment

    @staticmethod
    def _count_after(session: Session, tally: _RecordTally, top: int) -> None:
        """Add the rows with ids in (tally.top_id, top] and note the ids absent among them."""
        ident = col(InferenceRecord.id)
        after = tally.top_id
        in_range = (ident > after) & (ident <= top)
        found = 0
        at_top = sa.select(InferenceRecord.record_id).where(ident == top).scalar_subquery()
        for dep, count, last, top_record in session.execute(
            sa.select(
                InferenceRecord.deployment_id,
                sa.func.count(),
                sa.func.max(InferenceRecord.received_at),
                at_top,
            )
            .where(in_range)
            .group_by(InferenceRecord.deployment_id)
        ):
            tally.add(dep, count, last)
            tally.top_record = top_record
            found += count
        if found < top - after:
            # Runs of absent ids: the gap before each present id, back to the id before it
            # (``after`` for the first; ``top`` itself is present, so no gap follows it).
            previous = sa.func.lag(ident, 1, after).over(order_by=ident)
            rows = sa.select(ident.label("id"), previous.label("prev")).where(in_range).subquery()
            tally.holes.extend(
                (prev + 1, present - 1)
                for present, prev in session.execute(
                    sa.select(rows.c.id, rows.c.prev).where(rows.c.id > rows.c.prev + 1)
                )
            )
            tally.holes.sort()
        tally.top_id = top

    @staticmethod
    def _fill_holes(session: Session, tally: _RecordTally) -> None:
        """Add the rows that appeared in the holes since they were noted; keep what is still
        absent."""
        ident = col(InferenceRecord.id)
        found: list[int] = []
        for i in range(0, len(tally.holes), _HOLE_RUNS_PER_QUERY):
            runs = tally.holes[i : i + _HOLE_RUNS_PER_QUERY]
            where = sa.or_(*(ident.between(lo, hi) for lo, hi in runs))
            for row_id, dep, received in session.execute(
                sa.select(ident, InferenceRecord.deployment_id, InferenceRecord.received_at).where(
                    where
                )
            ):
                tally.add(dep, 1, received)
                found.append(row_id)
        if not found:
            return
        holes: list[tuple[int, int]] = []
        taken = sorted(found)
        for lo, hi in tally.holes:
            start = lo
            for row_id in (t for t in taken if lo <= t <= hi):
                if start <= row_id - 1:
                    holes.append((start, row_id - 1))
                start = row_id + 1
            if start <= hi:
                holes.append((start, hi))
        tally.holes = holes

    def _families(self, snapshot: _StoreSnapshot) -> list[_Family]:
        return [
            *self._deployment_families(snapshot),
            *self._alert_families(snapshot.deployments, snapshot.open_alerts),
            *self._reference_families(snapshot),
        ]

    # -- references being collected ----------------------------------------------------------

    @staticmethod
    def _reference_families(snapshot: _StoreSnapshot) -> list[_Family]:
        eta = _Family(
            "phase4_stream_reference_eta_seconds",
            "gauge",
            "Seconds until the stream's reference is complete at the rate the deployment's "
            "studies are acquired (last 30 days); +Inf when none arrives. Only streams "
            "collecting a reference.",
            ["deployment", "stream"],
        )
        hopeless = _Family(
            "phase4_streams_reference_hopeless",
            "gauge",
            "Streams of the deployment whose reference will not be complete within its "
            "reference_horizon_days at the rate its studies are acquired.",
            ["deployment", "site"],
        )
        horizon = _Family(
            "phase4_deployment_reference_horizon_seconds",
            "gauge",
            "The deployment's reference_horizon_days, in seconds (deployments with a stream "
            "collecting its reference).",
            ["deployment", "site"],
        )
        references = snapshot.references
        for dep_id, site_id, _, _ in snapshot.deployments:
            found = references.get(dep_id)
            hopeless.add((dep_id, site_id), len(found.hopeless) if found is not None else 0)
            if found is None:
                continue
            horizon.add((dep_id, site_id), found.horizon_days * DAY_S)
            if found.rate is None:
                continue
            for s in found.streams:
                eta.add((dep_id, s.need.stream), math.inf if s.days is None else s.days * DAY_S)
        return [eta, hopeless, horizon]

    # -- deployments and records -----------------------------------------------------------

    def _deployment_families(self, snapshot: _StoreSnapshot) -> list[_Family]:
        info = _Family(
            "phase4_deployment_info",
            "gauge",
            "Deployments watched (value 1), with their model version.",
            ["deployment", "site", "model", "model_version"],
        )
        stored = _Family(
            "phase4_records_stored",
            "counter",
            "Inference records in the store, by deployment.",
            ["deployment", "site"],
        )
        age = _Family(
            "phase4_deployment_last_record_age_seconds",
            "gauge",
            "Seconds since the deployment's newest record was received.",
            ["deployment", "site"],
        )
        status = _Family(
            "phase4_deployment_status",
            "gauge",
            "The deployment's status, one-hot (1 for the current one): no_data, reference "
            "(references being collected), monitoring, alerting (warning or critical open).",
            ["deployment", "site", "status"],
        )
        now = snapshot.now
        alerting = {
            dep
            for dep, _, severity, _ in snapshot.open_alerts
            if dep and severity in (Severity.WARNING, Severity.CRITICAL)
        }
        for dep_id, site_id, model_name, model_version in snapshot.deployments:
            info.add((dep_id, site_id, model_name, model_version), 1)
            count, last = snapshot.records.get(dep_id, (0, None))
            stored.add((dep_id, site_id), count)
            if last is not None:
                age.add((dep_id, site_id), max(0.0, (now - last).total_seconds()))
            entry = snapshot.streams.get(dep_id)
            if count == 0:
                current = "no_data"
            elif dep_id in alerting:
                current = "alerting"
            elif entry is not None and any(s.monitoring for s in entry.streams):
                current = "monitoring"
            else:
                current = "reference"
            for name in DEPLOYMENT_STATUSES:
                status.add((dep_id, site_id, name), 1 if name == current else 0)
        return [info, stored, age, status]

    # -- alerts ----------------------------------------------------------------------------

    def _alert_families(
        self, deployments: Sequence[Any], open_alerts: Sequence[Any]
    ) -> list[_Family]:
        overall = _Family("phase4_alerts_open", "gauge", "Open alerts by severity.", ["severity"])
        by_deployment = _Family(
            "phase4_deployment_alerts_open",
            "gauge",
            "Open (unresolved) alerts of the deployment, by severity.",
            ["deployment", "site", "severity"],
        )
        by_stream = _Family(
            "phase4_stream_alerts_open",
            "gauge",
            "Open alerts by deployment, stream and severity (only streams with one open).",
            ["deployment", "stream", "severity"],
        )
        totals = dict.fromkeys(SEVERITIES, 0)
        per_dep: dict[tuple[str, str], int] = {}
        for dep, stream, severity, n in open_alerts:
            totals[severity] = totals.get(severity, 0) + n
            if dep:
                per_dep[dep, severity] = per_dep.get((dep, severity), 0) + n
                by_stream.add((dep, stream, severity), n)
        for severity in sorted(totals, key=_severity_order):
            overall.add((severity,), totals[severity])
        for dep_id, site_id, _, _ in deployments:
            for severity in SEVERITIES:
                by_deployment.add((dep_id, site_id, severity), per_dep.get((dep_id, severity), 0))
        return [overall, by_deployment, by_stream]

    # -- detector state --------------------------------------------------------------------

    def _detector_streams(self, session: Session) -> dict[str, _StateEntry]:
        """Each deployment's streams; a state row is parsed only when it changed."""
        versions = {
            dep: updated
            for dep, updated in session.execute(
                sa.select(DetectorState.deployment_id, DetectorState.updated_at).where(
                    DetectorState.stream == STATE_STREAM,
                    DetectorState.detector == STATE_DETECTOR,
                )
            )
        }
        with self._lock:
            cached = dict(self._streams)
        stale = [
            d
            for d, updated in versions.items()
            if d not in cached or cached[d].updated_at != updated
        ]
        for i in range(0, len(stale), 500):
            chunk = stale[i : i + 500]
            for dep, updated, state in session.execute(
                sa.select(
                    DetectorState.deployment_id, DetectorState.updated_at, DetectorState.state
                ).where(
                    DetectorState.stream == STATE_STREAM,
                    DetectorState.detector == STATE_DETECTOR,
                    col(DetectorState.deployment_id).in_(chunk),
                )
            ):
                cached[dep] = _StateEntry(
                    updated, extract_streams(state or {}), stream_needs(state or {})
                )
        fresh = {d: cached[d] for d in versions if d in cached}
        with self._lock:
            self._streams = fresh
        return fresh

    def _stream_families(self, streams: Mapping[str, tuple[_StreamSample, ...]]) -> list[_Family]:
        labels = ["deployment", "stream"]
        statistic = _Family(
            "phase4_detector_statistic",
            "gauge",
            "Current statistic of a sequential detector (cusum, ewma: |z|; bernoulli_cusum: "
            "log-likelihood ratio); the detector alarms when it exceeds phase4_detector_threshold.",
            ["deployment", "stream", "detector"],
        )
        threshold = _Family(
            "phase4_detector_threshold",
            "gauge",
            "Alarm threshold of the detector, calibrated to the stream's false-alarm budget.",
            ["deployment", "stream", "detector"],
        )
        ewma = _Family(
            "phase4_stream_ewma_zscore",
            "gauge",
            "Signed EWMA of the stream's normal scores: the shift from the reference, in "
            "reference standard deviations (numeric streams).",
            labels,
        )
        rate = _Family(
            "phase4_stream_reference_event_ratio",
            "gauge",
            "Event rate of the binary stream's reference as its chart was designed on, "
            "(events + 1/2) / (n + 1) (e.g. the miss rate at acceptance).",
            labels,
        )
        ref_size = _Family(
            "phase4_stream_reference_observations",
            "gauge",
            "Observations in the stream's reference (a binary reference may be set to grow in "
            "audited steps toward an events target).",
            labels,
        )
        ref_events = _Family(
            "phase4_stream_reference_events",
            "gauge",
            "Events in the binary stream's reference.",
            labels,
        )
        growth = _Family(
            "phase4_stream_reference_growth_steps",
            "gauge",
            "Audited steps in which the binary stream's reference has grown since it was set.",
            labels,
        )
        monitoring = _Family(
            "phase4_stream_monitoring",
            "gauge",
            "1 when the stream's reference is complete and its detectors watch it; 0 while "
            "it collects a reference, has given up, or is stopped (quarantined).",
            labels,
        )
        observations = _Family(
            "phase4_stream_observations",
            "counter",
            "Observations the stream has taken (reference and monitored).",
            labels,
        )
        for dep in sorted(streams):
            for s in streams[dep]:
                monitoring.add((dep, s.stream), 1 if s.monitoring else 0)
                observations.add((dep, s.stream), s.observations)
                for det, stat, thr in s.detectors:
                    statistic.add((dep, s.stream, det), stat)
                    threshold.add((dep, s.stream, det), thr)
                if s.ewma_z is not None:
                    ewma.add((dep, s.stream), s.ewma_z)
                if s.reference_rate is not None:
                    rate.add((dep, s.stream), s.reference_rate)
                if s.reference_observations is not None:
                    ref_size.add((dep, s.stream), s.reference_observations)
                if s.reference_events is not None:
                    ref_events.add((dep, s.stream), s.reference_events)
                if s.growth_steps is not None:
                    growth.add((dep, s.stream), s.growth_steps)
        return [
            statistic,
            threshold,
            ewma,
            rate,
            ref_size,
            ref_events,
            growth,
            monitoring,
            observations,
        ]

    # -- phantom QC ------------------------------------------------------------------------

    @staticmethod
    def _latest_phantoms(session: Session) -> dict[tuple[int, str], Any]:
        """The latest result of each device and kind, with its device."""
        latest = (
            sa.select(
                PhantomResult.device_id,
                PhantomResult.kind,
                sa.func.max(PhantomResult.acquired_at).label("at"),
            )
            .group_by(PhantomResult.device_id, PhantomResult.kind)
            .subquery()
        )
        rows = session.execute(
            sa.select(
                PhantomResult.id,
                PhantomResult.device_id,
                PhantomResult.kind,
                PhantomResult.acquired_at,
                PhantomResult.metrics,
                PhantomResult.verdicts,
                Device.site_id,
                Device.model,
                Device.serial,
            )
            .join(
                latest,
                sa.and_(
                    PhantomResult.device_id == latest.c.device_id,
                    PhantomResult.kind == latest.c.kind,
                    PhantomResult.acquired_at == latest.c.at,
                ),
            )
            .join(Device, Device.id == PhantomResult.device_id)  # type: ignore[arg-type]
            .order_by(col(PhantomResult.id))
        ).all()
        newest: dict[tuple[int, str], Any] = {}
        for row in rows:
            newest[row.device_id, row.kind] = row  # same acquisition time: the later row wins
        return newest

    def _phantom_families(self, snapshot: _StoreSnapshot) -> list[_Family]:
        value = _Family(
            "phase4_phantom_metric",
            "gauge",
            "A metric of the device's latest phantom result of this kind (its unit is the "
            "analysis's: percent for uniformity, a ratio for recovery coefficients).",
            ["site", "device", "kind", "metric"],
        )
        verdict = _Family(
            "phase4_phantom_verdict_level",
            "gauge",
            "Verdict on the metric in the latest result: 0 pass, 1 outside tolerance, "
            "2 outside action level (fail).",
            ["site", "device", "kind", "metric"],
        )
        failing = _Family(
            "phase4_phantom_failing",
            "gauge",
            "Metrics of the device's latest phantom result of this kind at the action level.",
            ["site", "device", "kind"],
        )
        bounds = _Family(
            "phase4_phantom_tolerance",
            "gauge",
            "Tolerance and action limits in force for the metric (device-specific, else the "
            "default), by bound: lower_action, lower_tolerance, upper_tolerance, upper_action.",
            ["site", "device", "kind", "metric", "bound"],
        )
        tolerances = snapshot.tolerances
        for (device_id, kind), row in sorted(snapshot.phantoms.items(), key=lambda kv: kv[0]):
            site, device = row.site_id, device_label(row.site_id, row.model, row.serial)
            fails = 0
            verdicts = row.verdicts if isinstance(row.verdicts, Mapping) else {}
            for metric, raw in sorted((row.metrics or {}).items()):
                number = _finite(raw)
                if number is None:
                    continue
                value.add((site, device, kind, metric), number)
                level = _verdict_level(verdicts.get(metric))
                if level is not None:
                    verdict.add((site, device, kind, metric), level)
                    fails += level == 2
                limits = tolerances.get((device_id, kind, metric)) or tolerances.get(
                    (None, kind, metric)
                )
                for bound, limit in zip(TOLERANCE_BOUNDS, limits or (), strict=False):
                    if limit is not None:
                        bounds.add((site, device, kind, metric, bound), limit)
            failing.add((site, device, kind), fails)
        return [value, verdict, failing, self._phantom_age(snapshot), bounds]

    @staticmethod
    def _phantom_age(snapshot: _StoreSnapshot) -> _Family:
        age = _Family(
            "phase4_phantom_last_acquired_age_seconds",
            "gauge",
            "Seconds since the device's latest phantom scan of this kind was acquired.",
            ["site", "device", "kind"],
        )
        now = snapshot.now
        for (_, kind), row in sorted(snapshot.phantoms.items(), key=lambda kv: kv[0]):
            device = device_label(row.site_id, row.model, row.serial)
            age.add((row.site_id, device, kind), max(0.0, (now - row.acquired_at).total_seconds()))
        return age

    @staticmethod
    def _tolerances(
        session: Session,
    ) -> dict[tuple[int | None, str, str], tuple[float | None, ...]]:
        """The latest version of each (device or default, kind, metric) tolerance."""
        out: dict[tuple[int | None, str, str], tuple[int, tuple[float | None, ...]]] = {}
        for t in session.execute(
            sa.select(
                PhantomTolerance.device_id,
                PhantomTolerance.kind,
                PhantomTolerance.metric,
                PhantomTolerance.version,
                PhantomTolerance.lower_action,
                PhantomTolerance.lower_tolerance,
                PhantomTolerance.upper_tolerance,
                PhantomTolerance.upper_action,
            )
        ):
            key = (t.device_id, t.kind, t.metric)
            if key not in out or t.version > out[key][0]:
                limits = (t.lower_action, t.lower_tolerance, t.upper_tolerance, t.upper_action)
                out[key] = (t.version, limits)
        return {k: v for k, (_, v) in out.items()}


def _severity_order(severity: str) -> tuple[int, str]:
    return (SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES), severity)


class MetricsRegistry(CollectorRegistry):
    """The app's registry: the store's families, then the in-process metrics (registered in
    :attr:`in_process`). ``generate_latest`` of it works as for any registry (the reference);
    :meth:`exposition` is what /metrics serves: the same text, the store's families written
    directly rather than through prometheus_client's metric objects."""

    def __init__(self, store: StoreCollector) -> None:
        super().__init__(auto_describe=False)
        self.store = store
        self.in_process = CollectorRegistry(auto_describe=False)
        self.register(store)
        self.register(self.in_process)

    def exposition(self) -> bytes:
        """Prometheus text format 0.0.4 (``CONTENT_TYPE_LATEST``)."""
        return self.store.render().encode() + generate_latest(self.in_process)


def build_registry(engine: Engine) -> tuple[MetricsRegistry, IngestMetrics]:
    registry = MetricsRegistry(StoreCollector(engine))
    ingest = IngestMetrics(registry.in_process)
    registry.in_process.register(ProbeHealthCollector(ingest.probes))
    registry.in_process.register(SubgroupCollector(engine))  # docs/METRICS.md, "Subgroups"
    return registry, ingest
