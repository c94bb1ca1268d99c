"""Prometheus exposition: a per-app registry; store-backed values are read at scrape time.

Conventions (see docs/METRICS.md): ``phase4_`` prefix, base units, counters end in ``_total``,
labels only from bounded sets (deployment, site, kind, status, severity) — never a patient,
study or record id.
"""

from __future__ import annotations

from collections.abc import Iterator

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine
from sqlmodel import Session

from monitor.models import AIModel, Alert, Deployment, InferenceRecord, utcnow
from monitor.schemas import BatchResult


class IngestMetrics:
    """Counters of what the API did with the items it was sent (kept in-process)."""

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

    def observe(self, kind: str, result: BatchResult) -> None:
        self.items.labels(kind, "created").inc(result.created)
        self.items.labels(kind, "duplicate").inc(result.duplicates)
        self.items.labels(kind, "rejected").inc(result.rejected)


class StoreCollector(Collector):
    """Reads deployments, record counts and open alerts from the store at each scrape."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
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
        alerts = GaugeMetricFamily(
            "phase4_alerts_open", "Open alerts by severity.", labels=["severity"]
        )
        now = utcnow()
        with Session(self.engine) as session:
            counts = {
                row[0]: (row[1], row[2])
                for row in session.execute(
                    sa.select(
                        InferenceRecord.deployment_id,
                        sa.func.count(),
                        sa.func.max(InferenceRecord.received_at),
                    ).group_by(InferenceRecord.deployment_id)
                )
            }
            rows = session.execute(
                sa.select(Deployment.id, Deployment.site_id, AIModel.name, AIModel.version).join(
                    AIModel,
                    AIModel.id == Deployment.model_id,  # type: ignore[arg-type]
                )
            ).all()
            for dep_id, site_id, model_name, model_version in rows:
                info.add_metric([dep_id, site_id, model_name, model_version], 1)
                count, last = counts.get(dep_id, (0, None))
                stored.add_metric([dep_id, site_id], count)
                if last is not None:
                    age.add_metric([dep_id, site_id], (now - last).total_seconds())
            open_by_severity = dict(
                session.execute(
                    sa.select(Alert.severity, sa.func.count())
                    .where(Alert.status != "resolved")
                    .group_by(Alert.severity)
                ).all()
            )
        for severity in ("info", "warning", "critical"):
            alerts.add_metric([severity], open_by_severity.get(severity, 0))
        yield from (info, stored, age, alerts)


def build_registry(engine: Engine) -> tuple[CollectorRegistry, IngestMetrics]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(engine))
    return registry, IngestMetrics(registry)
