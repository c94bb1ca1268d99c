"""/metrics for subgroups (docs/METRICS.md, "Subgroups"): each deployment's subgroup table as the
last pass of ``phase4.monitor.surveillance.subgroups`` saved it, so a scrape reads one small row
per deployment and never the records.

Privacy: labels are the deployment, the dimension, the group and the metric, never an
identifier. A group with fewer than k cases in the table's window (``monitoring.subgroups.
min_group_cases``, default 10) is not published at all, and a rate whose denominator (labelled
positives, negatives, positive calls) is below k is left out: a rate of 0% or 100% over one or
two patients would say what happened to them. The rule is k-anonymity's (L. Sweeney 2002,
"k-anonymity: a model for protecting privacy", Int. J. Uncertainty, Fuzziness and
Knowledge-Based Systems 10:557–570) applied to the published counts.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine
from sqlmodel import Session

from phase4.monitor.surveillance.subgroups import snapshot_versions, snapshots

DEFAULT_K = 10
LABELS = ["deployment", "dimension", "group"]


def published(table: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The table's groups that may be published: at least k cases."""
    k = int(table.get("min_group_cases") or DEFAULT_K)
    return [g for g in table.get("groups", []) if int(g.get("cases") or 0) >= k]


class SubgroupCollector(Collector):
    """A table is read again only when the pass saved a new one (its row's ``updated_at``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._tables: dict[str, tuple[Any, Mapping[str, Any]]] = {}

    def _read(self) -> dict[str, Mapping[str, Any]]:
        with Session(self.engine) as session:
            versions = snapshot_versions(session)
            with self._lock:
                cached = dict(self._tables)
            stale = [d for d, at in versions.items() if d not in cached or cached[d][0] != at]
            if stale:
                for dep, table in snapshots(session, stale).items():
                    cached[dep] = (versions[dep], table)
        fresh = {d: cached[d] for d in versions if d in cached}
        with self._lock:
            self._tables = fresh
        return {d: t for d, (_, t) in fresh.items()}

    def collect(self) -> Iterator[Metric]:
        cases = GaugeMetricFamily(
            "phase4_subgroup_cases",
            "Cases of the group in the subgroup table's window (groups of at least k cases).",
            labels=LABELS,
        )
        labelled = GaugeMetricFamily(
            "phase4_subgroup_labelled_cases",
            "Labelled cases of the group in the window.",
            labels=LABELS,
        )
        rate = GaugeMetricFamily(
            "phase4_subgroup_rate_ratio",
            "The group's positive-call rate, sensitivity, specificity or PPV (0-1) in the window.",
            labels=[*LABELS, "metric"],
        )
        low = GaugeMetricFamily(
            "phase4_subgroup_rate_ci95_low_ratio",
            "Lower end of the rate's Wilson 95% interval (0-1).",
            labels=[*LABELS, "metric"],
        )
        high = GaugeMetricFamily(
            "phase4_subgroup_rate_ci95_high_ratio",
            "Upper end of the rate's Wilson 95% interval (0-1).",
            labels=[*LABELS, "metric"],
        )
        gap = GaugeMetricFamily(
            "phase4_subgroup_gap_ratio",
            "The rest of the deployment minus the group (0-1; positive: the group does worse).",
            labels=[*LABELS, "metric"],
        )
        disparity = GaugeMetricFamily(
            "phase4_subgroup_disparity",
            "1 when the disparity monitor found the group more than the margin below the rest, "
            "0 when it found no such gap; absent while the group has too few labelled cases.",
            labels=[*LABELS, "metric"],
        )
        needed = GaugeMetricFamily(
            "phase4_subgroup_labelled_cases_needed",
            "More labelled cases of the metric's kind the group needs before a verdict.",
            labels=[*LABELS, "metric"],
        )
        tables = self._read()
        for deployment, table in sorted(tables.items()):
            k = int(table.get("min_group_cases") or DEFAULT_K)
            for g in published(table):
                base = [deployment, str(g["dimension"]), str(g["group"])]
                cases.add_metric(base, float(g["cases"]))
                labelled.add_metric(base, float(g.get("labelled") or 0))
                for metric, r in (g.get("rates") or {}).items():
                    if not r or r.get("value") is None or int(r.get("n") or 0) < k:
                        continue
                    rate.add_metric([*base, metric], float(r["value"]))
                    low.add_metric([*base, metric], float(r["ci95"][0]))
                    high.add_metric([*base, metric], float(r["ci95"][1]))
                    d = (g.get("gaps") or {}).get(metric)
                    if d and d.get("value") is not None:
                        gap.add_metric([*base, metric], float(d["value"]))
                for metric, chart in (g.get("disparity") or {}).items():
                    verdict = chart.get("verdict")
                    if verdict in ("gap", "within"):
                        disparity.add_metric([*base, metric], 1.0 if verdict == "gap" else 0.0)
                    needed.add_metric([*base, metric], float(chart.get("needed_more") or 0))
        yield from (cases, labelled, rate, low, high, gap, disparity, needed)
