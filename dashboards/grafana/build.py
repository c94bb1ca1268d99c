"""Writes the Grafana dashboards (``dashboards/*.json``) from this one description.

Grafana's JSON is verbose and repetitive; the panels are described here once, with the same
datasource and conventions everywhere, and the JSON files are generated and committed (Grafana
provisions them as they are). ``python dashboards/grafana/build.py --check`` fails when a JSON
file differs from what this script writes (the tests run it).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "phase4-prometheus"}
SCHEMA_VERSION = 39
WIDTH = 24

Panel = dict[str, Any]


def target(expr: str, legend: str = "", ref: str = "A", *, instant: bool = False) -> dict[str, Any]:
    return {
        "refId": ref,
        "datasource": DATASOURCE,
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "instant": instant,
        "format": "table" if instant else "time_series",
    }


def panel(
    kind: str,
    title: str,
    targets: list[dict[str, Any]],
    *,
    w: int = 12,
    h: int = 8,
    unit: str | None = None,
    description: str = "",
    thresholds: list[tuple[float | None, str]] | None = None,
    options: dict[str, Any] | None = None,
    overrides: list[dict[str, Any]] | None = None,
    custom: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Panel:
    defaults: dict[str, Any] = {}
    if unit:
        defaults["unit"] = unit
    if thresholds:
        defaults["thresholds"] = {
            "mode": "absolute",
            "steps": [{"value": v, "color": c} for v, c in thresholds],
        }
    if custom:
        defaults["custom"] = custom
    p: Panel = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"w": w, "h": h},
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": options or {},
    }
    p.update(extra or {})
    return p


def row(title: str) -> Panel:
    return {
        "type": "row",
        "title": title,
        "collapsed": False,
        "gridPos": {"w": WIDTH, "h": 1},
        "panels": [],
    }


def dashed(name_regex: str) -> dict[str, Any]:
    """Draw the series whose name matches as dashed lines (thresholds, tolerance limits)."""
    return {
        "matcher": {"id": "byRegexp", "options": name_regex},
        "properties": [
            {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
            {"id": "custom.lineWidth", "value": 1},
        ],
    }


def query_var(
    name: str, label: str, query: str, *, multi: bool = False, regex: str = ""
) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"query": query, "refId": f"{name}-variable"},
        "refresh": 2,
        "sort": 1,
        "regex": regex,
        "multi": multi,
        "includeAll": multi,
        "allValue": ".*" if multi else None,
        "current": {},
        "options": [],
        "hide": 0,
    }


def layout(panels: list[Panel]) -> list[Panel]:
    """Give panels ids and positions, left to right, wrapping at the dashboard's width."""
    x = y = row_h = 0
    for i, p in enumerate(panels, start=1):
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if p["type"] == "row" or x + w > WIDTH:
            x, y, row_h = 0, y + row_h, 0
        p["id"] = i
        p["gridPos"] = {"h": h, "w": w, "x": x, "y": y}
        x += w
        row_h = max(row_h, h)
        if p["type"] == "row":
            x, y, row_h = 0, y + h, 0
    return panels


def dashboard(
    uid: str,
    title: str,
    description: str,
    panels: list[Panel],
    *,
    variables: list[dict[str, Any]] | None = None,
    annotations: list[dict[str, Any]] | None = None,
    time_from: str = "now-7d",
) -> dict[str, Any]:
    builtin = {
        "builtIn": 1,
        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
        "enable": True,
        "hide": True,
        "iconColor": "rgba(0, 211, 255, 1)",
        "name": "Annotations & Alerts",
        "type": "dashboard",
    }
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["phase4"],
        "timezone": "utc",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "1m",
        "time": {"from": time_from, "to": "now"},
        "links": [
            {
                "title": "phase4 dashboards",
                "type": "dashboards",
                "tags": ["phase4"],
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "templating": {"list": variables or []},
        "annotations": {"list": [builtin, *(annotations or [])]},
        "panels": layout(panels),
    }


# Several `phase4 serve` replicas may be scraped as several instances of job="phase4"
# (docs/DASHBOARDS.md, "Several replicas"). Series read from the store are then the same on
# every instance: each query takes one value per series (`max without (instance)`; `min` for
# ages, the freshest reading) before any sum or count, so nothing is multiplied by the number
# of replicas. A probe's health is kept by the replica that received its last batch: the
# youngest report wins. In-process counters (ingest, latency, errors) are summed across them.
def store(expr: str) -> str:
    """A store-backed series, once whatever the number of replicas scraped."""
    return f"max without (instance) ({expr})"


def youngest(expr: str) -> str:
    """An age read at scrape time: the freshest replica's."""
    return f"min without (instance) ({expr})"


PROBE_AGE = "phase4_probe_last_report_age_seconds"


def latest_probe(metric: str) -> str:
    """A probe-reported gauge from the replica holding the probe's youngest report (a replica
    that received an older batch keeps the older report until it receives another)."""
    return (
        f"max without (instance) ({metric} and on (instance, deployment) "
        f"({PROBE_AGE} == on (deployment) group_left () min by (deployment) ({PROBE_AGE})))"
    )


DEP = 'deployment="$deployment"'
DEPLOYMENT_VAR = query_var(
    "deployment", "Deployment", "label_values(phase4_deployment_info, deployment)"
)
ALERT_ANNOTATION = {
    "name": "phase4 alerts",
    "datasource": DATASOURCE,
    "enable": True,
    "iconColor": "red",
    "expr": store(f"phase4_stream_alerts_open{{{DEP}}}") + " > 0",
    "step": "1m",
    "titleFormat": "{{severity}} alert open",
    "textFormat": "{{stream}}",
    "tagKeys": "severity,stream",
    "useValueForTime": False,
}
RATIO_STEPS: list[tuple[float | None, str]] = [(None, "green"), (0.8, "orange"), (1.0, "red")]


def fleet() -> dict[str, Any]:
    panels = [
        panel(
            "stat",
            "Deployments by status",
            [
                target(
                    f"sum by (status) ({store('phase4_deployment_status')})",
                    "{{status}}",
                    instant=True,
                )
            ],
            w=8,
            description="no_data: no record yet; reference: references being collected; "
            "monitoring: detecting, nothing open; alerting: a warning or critical alert is open.",
            options={"reduceOptions": {"calcs": ["lastNotNull"]}, "textMode": "value_and_name"},
        ),
        panel(
            "stat",
            "Open alerts by severity",
            [target(store("phase4_alerts_open"), "{{severity}}", instant=True)],
            w=8,
            thresholds=[(None, "green"), (1, "red")],
            options={"reduceOptions": {"calcs": ["lastNotNull"]}, "textMode": "value_and_name"},
        ),
        panel(
            "stat",
            "Devices failing phantom QC",
            [
                target(
                    f"count({store('phase4_phantom_failing')} > 0) or vector(0)",
                    "devices",
                    instant=True,
                )
            ],
            w=8,
            thresholds=[(None, "green"), (1, "red")],
        ),
        panel(
            "table",
            "Deployments",
            [
                target(
                    store("phase4_deployment_status") + " == 1",
                    ref="A",
                    instant=True,
                ),
                target(store("phase4_deployment_info"), ref="B", instant=True),
            ],
            w=24,
            h=7,
            options={"showHeader": True},
            extra={
                "transformations": [
                    {"id": "merge", "options": {}},
                    {
                        "id": "organize",
                        "options": {
                            "excludeByName": {"Time": True, "Value #A": True, "Value #B": True}
                        },
                    },
                ]
            },
        ),
        panel(
            "timeseries",
            "Time since each deployment's last record",
            [target(youngest("phase4_deployment_last_record_age_seconds"), "{{deployment}}")],
            unit="s",
        ),
        panel(
            "timeseries",
            "Records stored per hour",
            [
                target(
                    "sum by (deployment) ("
                    + store("increase(phase4_records_stored_total[1h])")
                    + ")",
                    "{{deployment}}",
                )
            ],
            unit="short",
        ),
        panel(
            "bargauge",
            "Records in the store",
            [target(store("phase4_records_stored_total"), "{{deployment}}", instant=True)],
            w=12,
            options={"orientation": "horizontal", "displayMode": "basic"},
        ),
        panel(
            "bargauge",
            "Open alerts per deployment",
            [
                target(
                    f"sum by (deployment) ({store('phase4_deployment_alerts_open')})",
                    "{{deployment}}",
                    instant=True,
                )
            ],
            w=12,
            thresholds=[(None, "green"), (1, "red")],
            options={"orientation": "horizontal", "displayMode": "basic"},
        ),
    ]
    return dashboard(
        "phase4-fleet",
        "phase4 / Fleet overview",
        "Every deployment at a glance: status, open alerts, data flow, phantom QC.",
        panels,
        time_from="now-24h",
    )


def drift() -> dict[str, Any]:
    stream_var = query_var(
        "stream",
        "Stream",
        f"label_values(phase4_stream_monitoring{{{DEP}}}, stream)",
        multi=True,
    )
    sel = f'{DEP}, stream=~"$stream"'
    panels = [
        panel(
            "stat",
            "Status",
            [
                target(
                    store(f"phase4_deployment_status{{{DEP}}}") + " == 1",
                    "{{status}}",
                    instant=True,
                )
            ],
            w=6,
            h=5,
            options={"reduceOptions": {"calcs": ["lastNotNull"]}, "textMode": "name"},
        ),
        panel(
            "stat",
            "Open alerts",
            [
                target(
                    store(f"phase4_deployment_alerts_open{{{DEP}}}"), "{{severity}}", instant=True
                )
            ],
            w=6,
            h=5,
            thresholds=[(None, "green"), (1, "red")],
            options={"reduceOptions": {"calcs": ["lastNotNull"]}, "textMode": "value_and_name"},
        ),
        panel(
            "stat",
            "Streams detecting / collecting a reference",
            [
                target(
                    f"sum({store(f'phase4_stream_monitoring{{{DEP}}}')})", "detecting", instant=True
                ),
                target(
                    f"count({store(f'phase4_stream_monitoring{{{DEP}}}')} == 0) or vector(0)",
                    "collecting",
                    "B",
                    instant=True,
                ),
            ],
            w=6,
            h=5,
            options={"reduceOptions": {"calcs": ["lastNotNull"]}, "textMode": "value_and_name"},
        ),
        panel(
            "stat",
            "Time since last record",
            [target(youngest(f"phase4_deployment_last_record_age_seconds{{{DEP}}}"), instant=True)],
            w=6,
            h=5,
            unit="s",
        ),
        row("Detector statistics against their thresholds"),
        panel(
            "timeseries",
            "Statistic / threshold (alarm at 1)",
            [
                target(
                    store(f"phase4_detector_statistic{{{sel}}}")
                    + " / "
                    + store(f"phase4_detector_threshold{{{sel}}}"),
                    "{{stream}} {{detector}}",
                )
            ],
            w=24,
            h=9,
            unit="percentunit",
            description="Each sequential detector's statistic divided by its calibrated "
            "threshold: the detector alarms when the line crosses 1 (100%), then restarts.",
            thresholds=RATIO_STEPS,
            custom={"thresholdsStyle": {"mode": "dashed"}},
        ),
        panel(
            "timeseries",
            "CUSUM statistic and threshold",
            [
                target(
                    store(f'phase4_detector_statistic{{{sel}, detector=~"cusum|bernoulli_cusum"}}'),
                    "{{stream}}",
                ),
                target(
                    store(f'phase4_detector_threshold{{{sel}, detector=~"cusum|bernoulli_cusum"}}'),
                    "threshold {{stream}}",
                    "B",
                ),
            ],
            overrides=[dashed("threshold .*")],
        ),
        panel(
            "timeseries",
            "EWMA statistic and threshold",
            [
                target(store(f'phase4_detector_statistic{{{sel}, detector="ewma"}}'), "{{stream}}"),
                target(
                    store(f'phase4_detector_threshold{{{sel}, detector="ewma"}}'),
                    "threshold {{stream}}",
                    "B",
                ),
            ],
            overrides=[dashed("threshold .*")],
        ),
        panel(
            "timeseries",
            "Feature shift (EWMA of normal scores, in reference SDs)",
            [
                target(
                    store(f'phase4_stream_ewma_zscore{{{DEP}, stream=~"features\\\\..*"}}'),
                    "{{stream}}",
                )
            ],
            w=24,
            description="Signed: above 0 the feature reads higher than in the reference.",
        ),
        row("Streams and alerts"),
        panel(
            "table",
            "Open alerts by stream",
            [target(store(f"phase4_stream_alerts_open{{{DEP}}}"), instant=True)],
            options={"showHeader": True},
        ),
        panel(
            "table",
            "Observations per stream",
            [target(store(f"phase4_stream_observations_total{{{DEP}}}"), instant=True)],
            options={"showHeader": True},
        ),
    ]
    return dashboard(
        "phase4-deployment-drift",
        "phase4 / Deployment drift",
        "One deployment's drift detectors: every stream's statistic against its threshold, "
        "with the alerts as annotations.",
        panels,
        variables=[DEPLOYMENT_VAR, stream_var],
        annotations=[ALERT_ANNOTATION],
    )


def outputs() -> dict[str, Any]:
    out = f'{DEP}, stream=~"outputs\\\\..*"'
    perf = f'{DEP}, stream=~"performance\\\\..*|estimated\\\\..*"'
    panels = [
        row("Model outputs"),
        panel(
            "timeseries",
            "Output shift (EWMA of normal scores, in reference SDs)",
            [target(store(f"phase4_stream_ewma_zscore{{{out}}}"), "{{stream}}")],
        ),
        panel(
            "timeseries",
            "Output detectors: statistic / threshold",
            [
                target(
                    store(f"phase4_detector_statistic{{{out}}}")
                    + " / "
                    + store(f"phase4_detector_threshold{{{out}}}"),
                    "{{stream}} {{detector}}",
                )
            ],
            unit="percentunit",
            thresholds=RATIO_STEPS,
            custom={"thresholdsStyle": {"mode": "dashed"}},
        ),
        panel(
            "stat",
            "Reference event rates (binary outputs)",
            [
                target(
                    store(f"phase4_stream_reference_event_ratio{{{out}}}"),
                    "{{stream}}",
                    instant=True,
                )
            ],
            unit="percentunit",
            options={"reduceOptions": {"calcs": ["lastNotNull"]}, "textMode": "value_and_name"},
        ),
        row("Performance (physicians' verdicts and ground truth)"),
        panel(
            "timeseries",
            "Labelled outcomes received",
            [target(store(f"phase4_stream_observations_total{{{perf}}}"), "{{stream}}")],
            description="Misses among confirmed positives, false positives among confirmed "
            "negatives: the performance streams' observations.",
        ),
        panel(
            "timeseries",
            "Performance detectors: statistic / threshold",
            [
                target(
                    store(f"phase4_detector_statistic{{{perf}}}")
                    + " / "
                    + store(f"phase4_detector_threshold{{{perf}}}"),
                    "{{stream}} {{detector}}",
                )
            ],
            unit="percentunit",
            thresholds=RATIO_STEPS,
            custom={"thresholdsStyle": {"mode": "dashed"}},
        ),
        row("Inference"),
        panel(
            "timeseries",
            "Inference latency (p50, p95)",
            [
                target(
                    "histogram_quantile(0.5, sum by (le) (rate("
                    f"phase4_inference_latency_seconds_bucket{{{DEP}}}[$__rate_interval])))",
                    "p50",
                ),
                target(
                    "histogram_quantile(0.95, sum by (le) (rate("
                    f"phase4_inference_latency_seconds_bucket{{{DEP}}}[$__rate_interval])))",
                    "p95",
                    "B",
                ),
            ],
            unit="s",
        ),
        panel(
            "timeseries",
            "Inference errors (share of records)",
            [
                target(
                    f"sum(rate(phase4_inference_errors_total{{{DEP}}}[$__rate_interval])) / "
                    f"clamp_min(sum(rate(phase4_inference_latency_seconds_count{{{DEP}}}"
                    "[$__rate_interval])), 1e-9)",
                    "errors",
                )
            ],
            unit="percentunit",
        ),
    ]
    return dashboard(
        "phase4-model-outputs",
        "phase4 / Model outputs and performance",
        "What the AI says (its outputs' drift), how well it does (labelled performance), and "
        "how it runs (latency, errors).",
        panels,
        variables=[DEPLOYMENT_VAR],
        annotations=[ALERT_ANNOTATION],
    )


def phantom_qc() -> dict[str, Any]:
    device_var = query_var("device", "Device", "label_values(phase4_phantom_metric, device)")
    kind_var = query_var(
        "kind", "Phantom", 'label_values(phase4_phantom_metric{device="$device"}, kind)', multi=True
    )
    metric_var = query_var(
        "metric",
        "Metric",
        'label_values(phase4_phantom_metric{device="$device", kind=~"$kind"}, metric)',
        multi=True,
    )
    sel = 'device="$device", kind=~"$kind", metric=~"$metric"'
    panels = [
        panel(
            "table",
            "Latest verdicts, every device (0 pass, 1 tolerance, 2 action)",
            [target(store("phase4_phantom_verdict_level"), instant=True)],
            w=12,
            thresholds=[(None, "green"), (1, "orange"), (2, "red")],
            custom={"cellOptions": {"type": "color-background"}},
        ),
        panel(
            "table",
            "Days since each device's last phantom scan",
            [
                target(
                    youngest("phase4_phantom_last_acquired_age_seconds") + " / 86400", instant=True
                )
            ],
            w=12,
            unit="d",
        ),
        panel(
            "timeseries",
            "$metric ($kind) — control chart",
            [
                target(store(f"phase4_phantom_metric{{{sel}}}"), "{{metric}}"),
                target(store(f"phase4_phantom_tolerance{{{sel}}}"), "{{bound}}", "B"),
            ],
            w=24,
            h=9,
            description="The latest result's value with the tolerance and action limits in "
            "force (dashed). Prometheus samples the latest result at every scrape: the line "
            "steps when a new scan is analysed.",
            overrides=[dashed(".*(tolerance|action)")],
            extra={"repeat": "metric", "repeatDirection": "v"},
        ),
        panel(
            "state-timeline",
            "Verdict history of $device",
            [target(store(f"phase4_phantom_verdict_level{{{sel}}}"), "{{kind}} {{metric}}")],
            w=24,
            thresholds=[(None, "green"), (1, "orange"), (2, "red")],
        ),
    ]
    return dashboard(
        "phase4-phantom-qc",
        "phase4 / Phantom QC",
        "Control charts of each device's phantom QC metrics against their tolerance and "
        "action limits.",
        panels,
        variables=[device_var, kind_var, metric_var],
        time_from="now-30d",
    )


def ingest() -> dict[str, Any]:
    panels = [
        panel(
            "stat",
            "Monitor scraped",
            [target('up{job="phase4"}', "{{instance}}", instant=True)],
            w=6,
            h=5,
            thresholds=[(None, "red"), (1, "green")],
            options={"reduceOptions": {"calcs": ["lastNotNull"]}},
        ),
        panel(
            "stat",
            "/metrics scrape time",
            [target('scrape_duration_seconds{job="phase4"}', "{{instance}}", instant=True)],
            w=6,
            h=5,
            unit="s",
        ),
        panel(
            "stat",
            "Items rejected (last hour)",
            [
                target(
                    'sum(increase(phase4_ingest_items_total{status="rejected"}[1h]))',
                    instant=True,
                )
            ],
            w=6,
            h=5,
            thresholds=[(None, "green"), (1, "orange")],
        ),
        panel(
            "stat",
            "Records dropped by probes (last 24 h)",
            [
                target(
                    "sum("
                    + store("increase(phase4_probe_dropped_records_total[24h])")
                    + ") or vector(0)",
                    instant=True,
                )
            ],
            w=6,
            h=5,
            thresholds=[(None, "green"), (1, "red")],
        ),
        panel(
            "timeseries",
            "Ingest items per second by kind and outcome",
            [
                target(
                    "sum by (kind, status) (rate(phase4_ingest_items_total[$__rate_interval]))",
                    "{{kind}} {{status}}",
                )
            ],
            unit="reqps",
        ),
        panel(
            "timeseries",
            "Time since each deployment's last record",
            [target(youngest("phase4_deployment_last_record_age_seconds"), "{{deployment}}")],
            unit="s",
        ),
        row("Probes"),
        panel(
            "timeseries",
            "Probe queue depth",
            [target(latest_probe("phase4_probe_queue_depth"), "{{deployment}}")],
            w=8,
        ),
        panel(
            "timeseries",
            "Probe spool depth (records waiting on disk)",
            [target(latest_probe("phase4_probe_spool_depth"), "{{deployment}}")],
            w=8,
            description="Grows while the monitor is unreachable or refusing the probe; drains "
            "oldest-first when it is back.",
        ),
        panel(
            "timeseries",
            "Time since each probe's last health report",
            [target(youngest(PROBE_AGE), "{{deployment}}")],
            w=8,
            unit="s",
        ),
        panel(
            "table",
            "Probe versions",
            [target(latest_probe("phase4_probe_info"), instant=True)],
            w=24,
            h=6,
        ),
    ]
    return dashboard(
        "phase4-ingest-probes",
        "phase4 / Ingest and probe health",
        "Is data flowing: the monitor is scraped, probes deliver, nothing is rejected or "
        "dropped, no spool is growing.",
        panels,
        time_from="now-24h",
    )


DASHBOARDS = {
    "phase4-fleet.json": fleet,
    "phase4-deployment-drift.json": drift,
    "phase4-model-outputs.json": outputs,
    "phase4-phantom-qc.json": phantom_qc,
    "phase4-ingest-probes.json": ingest,
}


def render() -> Iterator[tuple[Path, str]]:
    for name, build in DASHBOARDS.items():
        yield OUT / name, json.dumps(build(), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if a file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for path, text in render():
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
    if stale:
        print(f"out of date (run {Path(__file__).name}): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
