"""The Prometheus rules and example configuration, and the Alertmanager configuration, pass
the projects' own checkers; the rules' unit tests (promtool test rules) pass."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

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


def test_the_commented_several_replicas_example_is_a_valid_config(tmp_path: Path) -> None:
    """prometheus.yml's commented example (one target per replica), put in place of the single
    target, passes promtool check config and lists every replica under job phase4."""
    example = DASHBOARDS / "prometheus" / "prometheus.yml"
    lines = example.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "Replace the target list above" in line)
    replicas = [line[:2] + line[4:] for line in lines[start + 1 :] if line.startswith("  #  ")]
    single = next(i for i, line in enumerate(lines) if line == "    static_configs:")
    assert replicas and replicas[0] == "    static_configs:", replicas
    text = "\n".join([*lines[:single], *replicas]) + "\n"
    text = text.replace("rules/phase4.rules.yml", str(RULES_DIR / "phase4.rules.yml"))
    config = tmp_path / "prometheus.yml"
    config.write_text(text)
    [job] = yaml.safe_load(text)["scrape_configs"]
    assert job["job_name"] == "phase4"
    assert [len(c["targets"]) for c in job["static_configs"]] == [3]
    done = _run(tool("promtool"), "check", "config", str(config))
    assert done.returncode == 0, done.stdout + done.stderr
