"""The Prometheus rules and example configuration, and the Alertmanager configuration, pass
the projects' own checkers; the rules' unit tests (promtool test rules) pass."""

from __future__ import annotations

import subprocess

import pytest

from tests.dashboards.conftest import DASHBOARDS, tool

RULES_DIR = DASHBOARDS / "prometheus" / "rules"
ALERTMANAGER = DASHBOARDS / "alertmanager" / "alertmanager.yml"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=120, check=False, cwd=RULES_DIR
    )


def test_promtool_check_rules() -> None:
    done = _run(tool("promtool"), "check", "rules", "phase4.rules.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 13 rules found" in done.stdout


def test_promtool_test_rules() -> None:
    done = _run(tool("promtool"), "test", "rules", "phase4.rules.test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_check_config_of_the_example_prometheus_yml() -> None:
    done = _run(
        tool("promtool"), "check", "config", str(DASHBOARDS / "prometheus" / "prometheus.yml")
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 rule files found" in done.stdout


def test_amtool_check_config() -> None:
    done = _run(tool("amtool"), "check-config", str(ALERTMANAGER))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=critical", "alertname=Phase4PhantomQCFailing"], "phase4-critical"),
        (["severity=warning", "alertname=Phase4DriftAlertOpen"], "phase4-warning"),
        (["severity=info", "alertname=Phase4DetectorNearThreshold"], "phase4-info"),
        (["alertname=SomethingElse"], "phase4-warning"),
    ],
)
def test_alertmanager_routes_by_severity(labels: list[str], receiver: str) -> None:
    done = _run(
        tool("amtool"), "config", "routes", "test", f"--config.file={ALERTMANAGER}", *labels
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == receiver
