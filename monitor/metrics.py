"""Prometheus exposition: a per-app registry; store-backed values are read at scrape time.

Conventions (see docs/METRICS.md): ``phase4_`` prefix, base units, counters end in ``_total``,
labels only from bounded sets (deployment, site, device, stream, detector, kind, metric,
severity, status) — never a patient, study or record id.

Three sources:

* :class:`StoreCollector` reads the store at each scrape with a handful of aggregate queries
  (records per deployment, open alerts, the latest phantom result per device and kind, the
  tolerances in force). Detector statistics come from each deployment's ``detector_state`` row;
  its JSON is parsed only when the row's ``updated_at`` changed since the previous scrape.
* :class:`IngestMetrics` counts what the ingest API did (in-process counters and a latency
  histogram of the records it stored).
* :class:`ProbeHealthBook` remembers the last health report each deployment's probe sent with a
  batch (queue and spool depth, records it dropped, its version); in memory, like the counters.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from monitor.models import (
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
from monitor.schemas import BatchResult, ProbeHealth

SEVERITIES = ("info", "warning", "critical")
# A deployment's status, for the fleet overview (exported one-hot, see _status):
# no_data: no record yet; reference: records arrive but no stream is detecting yet (references
# being collected); monitoring: at least one stream detecting, no open warning or critical
# alert; alerting: a warning or critical alert is open.
DEPLOYMENT_STATUSES = ("no_data", "reference", "monitoring", "alerting")
LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Phantom verdicts, whatever words the analysis used, on one ordinal scale.
VERDICT_LEVELS = {
    "pass": 0,
    "ok": 0,
    "within": 0,
    "within_tolerance": 0,
    "tolerance": 1,
    "warn": 1,
    "warning": 1,
    "outside_tolerance": 1,
    "action": 2,
    "fail": 2,
    "failed": 2,
    "outside_action": 2,
}
TOLERANCE_BOUNDS = ("lower_action", "lower_tolerance", "upper_tolerance", "upper_action")
# Deployment state rows written by monitor.detection (one per deployment).
STATE_STREAM = "*"
STATE_DETECTOR = "deployment"


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


def _finite(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    value = float(x)
    return value if math.isfinite(value) else None


def _detector_sample(name: str, d: Mapping[str, Any]) -> tuple[float, float] | None:
    """(statistic, threshold) of a sequential detector, as it stands (alarm when stat > thr).

    The windowed tests (ks, chi_square) have no running statistic between windows and are not
    exported; new_category is a notice, not a statistic."""
    try:
        if name == "cusum":
            return max(float(d["s_hi"]), float(d["s_lo"])), float(d["h"])
        if name == "ewma":
            lam = float(d["lam"])
            return abs(float(d["z"])), float(d["limit"]) * math.sqrt(lam / (2 - lam))
        if name == "bernoulli_cusum":
            scale = float(d["down"]) / -math.log((1 - float(d["p1"])) / (1 - float(d["p0"])))
            return float(d["s"]) / scale, float(d["h"]) / scale
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    return None


def extract_streams(state: Mapping[str, Any]) -> tuple[_StreamSample, ...]:
    """What /metrics shows of one deployment's detector state (``DeploymentMonitor.to_dict``)."""
    out = []
    for name, s in sorted((state.get("streams") or {}).items()):
        if not isinstance(s, Mapping):
            continue
        detectors = s.get("detectors") or {}
        samples = []
        for det, d in sorted(detectors.items()):
            pair = _detector_sample(det, d) if isinstance(d, Mapping) else None
            if pair is not None and all(math.isfinite(v) for v in pair):
                samples.append((det, pair[0], pair[1]))
        ewma = detectors.get("ewma")
        reference = s.get("reference")
        rate = None
        if isinstance(reference, Mapping) and "events" in reference and reference.get("n"):
            rate = _finite(float(reference["events"]) / float(reference["n"]))
        out.append(
            _StreamSample(
                stream=str(name),
                monitoring=reference is not None,
                observations=int(s.get("observations") or 0),
                detectors=tuple(samples),
                ewma_z=_finite(ewma.get("z")) if isinstance(ewma, Mapping) else None,
                reference_rate=rate,
            )
        )
    return tuple(out)


def _verdict_level(verdict: Any) -> int | None:
    if isinstance(verdict, Mapping):
        verdict = verdict.get("verdict", verdict.get("status", verdict.get("level")))
    if isinstance(verdict, bool):
        return 0 if verdict else 2
    if isinstance(verdict, str):
        return VERDICT_LEVELS.get(verdict.strip().lower().replace(" ", "_").replace("-", "_"))
    return None


class StoreCollector(Collector):
    """Reads deployments, records, alerts, detector state and phantom QC from the store at each
    scrape."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        # deployment -> (detector_state.updated_at, extracted streams)
        self._streams: dict[str, tuple[datetime | None, tuple[_StreamSample, ...]]] = {}

    def collect(self) -> Iterator[Metric]:
        now = utcnow()
        with Session(self.engine) as session:
            deployments = session.execute(
                sa.select(Deployment.id, Deployment.site_id, AIModel.name, AIModel.version).join(
                    AIModel,
                    AIModel.id == Deployment.model_id,  # type: ignore[arg-type]
                )
            ).all()
            records = {
                row[0]: (row[1], row[2])
                for row in session.execute(
                    sa.select(
                        InferenceRecord.deployment_id,
                        sa.func.count(),
                        sa.func.max(InferenceRecord.received_at),
                    ).group_by(InferenceRecord.deployment_id)
                )
            }
            open_alerts = session.execute(
                sa.select(Alert.deployment_id, Alert.stream, Alert.severity, sa.func.count())
                .where(Alert.status != "resolved")
                .group_by(Alert.deployment_id, Alert.stream, Alert.severity)
            ).all()
            streams = self._detector_streams(session)
            phantom_metrics = list(self._phantom_families(session, now))
        yield from self._deployment_families(deployments, records, open_alerts, streams, now)
        yield from self._alert_families(deployments, open_alerts)
        yield from self._stream_families(streams)
        yield from phantom_metrics

    # -- deployments and records -----------------------------------------------------------

    def _deployment_families(
        self,
        deployments: Sequence[Any],
        records: Mapping[str, tuple[int, datetime | None]],
        open_alerts: Sequence[Any],
        streams: Mapping[str, tuple[_StreamSample, ...]],
        now: datetime,
    ) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "phase4_deployment_info",
            "Deployments watched (value 1), with their model version.",
            labels=["deployment", "site", "model", "model_version"],
        )
        stored = CounterMetricFamily(
            "phase4_records_stored",
            "Inference records in the store, by deployment.",
            labels=["deployment", "site"],
        )
        age = GaugeMetricFamily(
            "phase4_deployment_last_record_age_seconds",
            "Seconds since the deployment's newest record was received.",
            labels=["deployment", "site"],
        )
        status = GaugeMetricFamily(
            "phase4_deployment_status",
            "The deployment's status, one-hot (1 for the current one): no_data, reference "
            "(references being collected), monitoring, alerting (warning or critical open).",
            labels=["deployment", "site", "status"],
        )
        alerting = {
            dep
            for dep, _, severity, _ in open_alerts
            if dep and severity in ("warning", "critical")
        }
        for dep_id, site_id, model_name, model_version in deployments:
            info.add_metric([dep_id, site_id, model_name, model_version], 1)
            count, last = records.get(dep_id, (0, None))
            stored.add_metric([dep_id, site_id], count)
            if last is not None:
                age.add_metric([dep_id, site_id], max(0.0, (now - last).total_seconds()))
            if count == 0:
                current = "no_data"
            elif dep_id in alerting:
                current = "alerting"
            elif any(s.monitoring for s in streams.get(dep_id, ())):
                current = "monitoring"
            else:
                current = "reference"
            for name in DEPLOYMENT_STATUSES:
                status.add_metric([dep_id, site_id, name], 1 if name == current else 0)
        yield from (info, stored, age, status)

    # -- alerts ----------------------------------------------------------------------------

    def _alert_families(
        self, deployments: Sequence[Any], open_alerts: Sequence[Any]
    ) -> Iterator[Metric]:
        overall = GaugeMetricFamily(
            "phase4_alerts_open", "Open alerts by severity.", labels=["severity"]
        )
        by_deployment = GaugeMetricFamily(
            "phase4_deployment_alerts_open",
            "Open (unresolved) alerts of the deployment, by severity.",
            labels=["deployment", "site", "severity"],
        )
        by_stream = GaugeMetricFamily(
            "phase4_stream_alerts_open",
            "Open alerts by deployment, stream and severity (only streams with one open).",
            labels=["deployment", "stream", "severity"],
        )
        totals = dict.fromkeys(SEVERITIES, 0)
        per_dep: dict[tuple[str, str], int] = {}
        for dep, stream, severity, n in open_alerts:
            totals[severity] = totals.get(severity, 0) + n
            if dep:
                per_dep[dep, severity] = per_dep.get((dep, severity), 0) + n
                by_stream.add_metric([dep, stream, severity], n)
        for severity in sorted(totals, key=_severity_order):
            overall.add_metric([severity], totals[severity])
        for dep_id, site_id, _, _ in deployments:
            for severity in SEVERITIES:
                by_deployment.add_metric(
                    [dep_id, site_id, severity], per_dep.get((dep_id, severity), 0)
                )
        yield from (overall, by_deployment, by_stream)

    # -- detector state --------------------------------------------------------------------

    def _detector_streams(self, session: Session) -> dict[str, tuple[_StreamSample, ...]]:
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
        stale = [d for d, updated in versions.items() if d not in cached or cached[d][0] != updated]
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
                cached[dep] = (updated, extract_streams(state or {}))
        fresh = {d: cached[d] for d in versions if d in cached}
        with self._lock:
            self._streams = fresh
        return {d: samples for d, (_, samples) in fresh.items()}

    def _stream_families(
        self, streams: Mapping[str, tuple[_StreamSample, ...]]
    ) -> Iterator[Metric]:
        statistic = GaugeMetricFamily(
            "phase4_detector_statistic",
            "Current statistic of a sequential detector (cusum, ewma: |z|; bernoulli_cusum: "
            "log-likelihood ratio); the detector alarms when it exceeds phase4_detector_threshold.",
            labels=["deployment", "stream", "detector"],
        )
        threshold = GaugeMetricFamily(
            "phase4_detector_threshold",
            "Alarm threshold of the detector, calibrated to the stream's false-alarm budget.",
            labels=["deployment", "stream", "detector"],
        )
        ewma = GaugeMetricFamily(
            "phase4_stream_ewma_zscore",
            "Signed EWMA of the stream's normal scores: the shift from the reference, in "
            "reference standard deviations (numeric streams).",
            labels=["deployment", "stream"],
        )
        rate = GaugeMetricFamily(
            "phase4_stream_reference_event_ratio",
            "Event rate of the binary stream's reference (e.g. the miss rate at acceptance).",
            labels=["deployment", "stream"],
        )
        monitoring = GaugeMetricFamily(
            "phase4_stream_monitoring",
            "1 when the stream's reference is complete and its detectors watch it, else 0.",
            labels=["deployment", "stream"],
        )
        observations = CounterMetricFamily(
            "phase4_stream_observations",
            "Observations the stream has taken (reference and monitored).",
            labels=["deployment", "stream"],
        )
        for dep in sorted(streams):
            for s in streams[dep]:
                monitoring.add_metric([dep, s.stream], 1 if s.monitoring else 0)
                observations.add_metric([dep, s.stream], s.observations)
                for det, stat, thr in s.detectors:
                    statistic.add_metric([dep, s.stream, det], stat)
                    threshold.add_metric([dep, s.stream, det], thr)
                if s.ewma_z is not None:
                    ewma.add_metric([dep, s.stream], s.ewma_z)
                if s.reference_rate is not None:
                    rate.add_metric([dep, s.stream], s.reference_rate)
        yield from (statistic, threshold, ewma, rate, monitoring, observations)

    # -- phantom QC ------------------------------------------------------------------------

    def _phantom_families(self, session: Session, now: datetime) -> Iterator[Metric]:
        value = GaugeMetricFamily(
            "phase4_phantom_metric",
            "A metric of the device's latest phantom result of this kind (its unit is the "
            "analysis's: percent for uniformity, a ratio for recovery coefficients).",
            labels=["site", "device", "kind", "metric"],
        )
        verdict = GaugeMetricFamily(
            "phase4_phantom_verdict_level",
            "Verdict on the metric in the latest result: 0 pass, 1 outside tolerance, "
            "2 outside action level (fail).",
            labels=["site", "device", "kind", "metric"],
        )
        failing = GaugeMetricFamily(
            "phase4_phantom_failing",
            "Metrics of the device's latest phantom result of this kind at the action level.",
            labels=["site", "device", "kind"],
        )
        age = GaugeMetricFamily(
            "phase4_phantom_last_acquired_age_seconds",
            "Seconds since the device's latest phantom scan of this kind was acquired.",
            labels=["site", "device", "kind"],
        )
        bounds = GaugeMetricFamily(
            "phase4_phantom_tolerance",
            "Tolerance and action limits in force for the metric (device-specific, else the "
            "default), by bound: lower_action, lower_tolerance, upper_tolerance, upper_action.",
            labels=["site", "device", "kind", "metric", "bound"],
        )
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
        tolerances = self._tolerances(session) if newest else {}
        for (device_id, kind), row in sorted(newest.items(), key=lambda kv: (kv[0][0], kv[0][1])):
            site, device = row.site_id, device_label(row.site_id, row.model, row.serial)
            age.add_metric([site, device, kind], max(0.0, (now - row.acquired_at).total_seconds()))
            fails = 0
            verdicts = row.verdicts if isinstance(row.verdicts, Mapping) else {}
            for metric, raw in sorted((row.metrics or {}).items()):
                number = _finite(raw)
                if number is None:
                    continue
                value.add_metric([site, device, kind, metric], number)
                level = _verdict_level(verdicts.get(metric))
                if level is not None:
                    verdict.add_metric([site, device, kind, metric], level)
                    fails += level == 2
                limits = tolerances.get((device_id, kind, metric)) or tolerances.get(
                    (None, kind, metric)
                )
                for bound, limit in zip(TOLERANCE_BOUNDS, limits or (), strict=False):
                    if limit is not None:
                        bounds.add_metric([site, device, kind, metric, bound], limit)
            failing.add_metric([site, device, kind], fails)
        yield from (value, verdict, failing, age, bounds)

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


def build_registry(engine: Engine) -> tuple[CollectorRegistry, IngestMetrics]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(engine))
    ingest = IngestMetrics(registry)
    registry.register(ProbeHealthCollector(ingest.probes))
    return registry, ingest
