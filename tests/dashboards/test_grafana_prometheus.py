"""Grafana dashboards and provisioning, tested without Grafana: every panel's PromQL (and every
variable and annotation query) runs against a real Prometheus scraping a real, loaded monitor
and must return data. The alerting rules are loaded into that Prometheus too."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.dashboards import data
from tests.dashboards.conftest import DASHBOARDS, LoadedMonitor, Prometheus

GRAFANA = DASHBOARDS / "grafana"
JSON_FILES = sorted((GRAFANA / "dashboards").glob("*.json"))
# What Grafana puts in place of its own variables (the test Prometheus scrapes every second).
BUILTINS = {
    "$__rate_interval": "30s",
    "$__interval": "15s",
    "$__range": "5m",
}
# The value each templated variable takes in the test: the drifting deployment (it has open
# alerts) and the device failing its flood QC; multi-value variables take "All" (allValue .*).
CHOICES = {"deployment": data.DRIFTING, "device": "site-a/Biograph Vision/A2"}
LABEL_VALUES = re.compile(r"^label_values\((?:(.+),\s*)?([a-zA-Z_][a-zA-Z0-9_]*)\)$")


def _load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def _substitute(expr: str, values: dict[str, str]) -> str:
    for name, value in BUILTINS.items():
        expr = expr.replace(name, value)
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", values[name]).replace("$" + name, values[name])
    assert "$" not in expr, f"unresolved variable in {expr!r}"
    return expr


def _resolve_variables(dash: dict[str, Any], prom: Prometheus) -> dict[str, str]:
    values: dict[str, str] = {}
    for var in dash["templating"]["list"]:
        assert var["type"] == "query" and var["datasource"]["uid"] == "phase4-prometheus"
        m = LABEL_VALUES.match(var["query"]["query"])
        assert m, var["query"]["query"]
        selector, label = m.groups()
        params = {"match[]": _substitute(selector, values)} if selector else {}
        r = httpx.get(f"{prom.url}/api/v1/label/{label}/values", params=params, timeout=10)
        found = r.json()["data"]
        assert found, f"{dash['uid']}: variable {var['name']} has no values"
        if var["multi"]:
            assert var["includeAll"] and var["allValue"] == ".*"
            values[var["name"]] = ".*"
        else:
            choice = CHOICES.get(var["name"], found[0])
            assert choice in found, (var["name"], found)
            values[var["name"]] = choice
    return values


def _panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in dash["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def test_the_dashboard_files_are_what_build_py_writes() -> None:
    check = subprocess.run(
        [sys.executable, str(GRAFANA / "build.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    assert {p.stem for p in JSON_FILES} == {
        "phase4-fleet",
        "phase4-deployment-drift",
        "phase4-model-outputs",
        "phase4-phantom-qc",
        "phase4-ingest-probes",
    }


@pytest.mark.parametrize("path", JSON_FILES, ids=lambda p: p.stem)
def test_dashboard_json_is_grafana_shaped(path: Path) -> None:
    dash = _load(path)
    assert dash["uid"] == path.stem and dash["title"].startswith("phase4 / ")
    assert 36 <= dash["schemaVersion"] <= 41
    assert isinstance(dash["templating"]["list"], list)
    assert isinstance(dash["annotations"]["list"], list)
    ids = [p["id"] for p in _panels(dash)]
    assert len(ids) == len(set(ids))
    occupied: set[tuple[int, int]] = set()
    for p in _panels(dash):
        g = p["gridPos"]
        assert set(g) == {"h", "w", "x", "y"} and g["x"] >= 0 and g["x"] + g["w"] <= 24
        cells = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & occupied, f"{path.stem}: panel {p['title']!r} overlaps another"
        occupied |= cells
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "phase4-prometheus"}
        assert p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs))
        for t in p["targets"]:
            assert t["expr"].strip() and t["datasource"]["uid"] == "phase4-prometheus"


def test_provisioning_points_grafana_at_the_dashboards_and_the_datasource() -> None:
    prov = GRAFANA / "provisioning"
    dashboards = yaml.safe_load((prov / "dashboards" / "phase4.yaml").read_text())
    assert dashboards["apiVersion"] == 1
    [provider] = dashboards["providers"]
    assert provider["name"] and provider["type"] == "file"
    # Grafana expands environment variables in provisioning files.
    env = dict(os.environ, PHASE4_GRAFANA_DASHBOARDS=str(GRAFANA / "dashboards"))
    folder = Path(re.sub(r"\$\{?(\w+)\}?", lambda m: env[m.group(1)], provider["options"]["path"]))
    assert folder == GRAFANA / "dashboards"
    assert sorted(folder.glob("*.json")) == JSON_FILES
    sources = yaml.safe_load((prov / "datasources" / "phase4.yaml").read_text())
    assert sources["apiVersion"] == 1
    [source] = sources["datasources"]
    assert source["type"] == "prometheus" and source["uid"] == "phase4-prometheus"
    assert source["url"].startswith("http://")


@pytest.mark.parametrize("path", JSON_FILES, ids=lambda p: p.stem)
def test_every_panel_query_returns_data_from_a_real_prometheus(
    path: Path, prometheus: Prometheus
) -> None:
    dash = _load(path)
    values = _resolve_variables(dash, prometheus)
    queries = [
        (f"panel {p['title']!r} target {t['refId']}", t["expr"])
        for p in _panels(dash)
        if p["type"] != "row"
        for t in p["targets"]
    ]
    queries += [
        (f"annotation {a['name']!r}", a["expr"]) for a in dash["annotations"]["list"] if "expr" in a
    ]
    failures = []
    for what, expr in queries:
        query = _substitute(expr, values)
        body = prometheus.query(query)
        if body.get("status") != "success":
            failures.append(f"{what}: {query}: {body.get('error')}")
        elif not body["data"]["result"]:  # type: ignore[index]
            failures.append(f"{what}: {query}: no data")
    assert not failures, "\n".join(failures)


def test_the_alerting_rules_fire_on_the_live_data(
    prometheus: Prometheus, loaded_monitor: LoadedMonitor
) -> None:
    rules = httpx.get(f"{prometheus.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    health = {r["name"]: r["health"] for g in rules for r in g["rules"]}
    assert health and all(h == "ok" for h in health.values()), health
    firing = prometheus.query('ALERTS{alertname="Phase4PhantomQCFailing", alertstate="firing"}')
    [alert] = firing["data"]["result"]  # type: ignore[index]
    assert alert["metric"]["device"] == CHOICES["device"]
    drift = prometheus.query('ALERTS{alertname="Phase4DriftAlertOpen"}')  # pending for 1 min
    assert [a["metric"]["deployment"] for a in drift["data"]["result"]] == [data.DRIFTING]  # type: ignore[index]
    assert not prometheus.query('ALERTS{alertname="Phase4MonitorDown"}')["data"]["result"]  # type: ignore[index]
