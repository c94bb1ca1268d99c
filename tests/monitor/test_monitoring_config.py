"""A deployment's monitoring configuration is a typed contract (``MonitoringConfig``): refused
where it comes in (the API answers 422 naming the field), read through the model by detection,
and a stored one that no longer validates stops only its own deployment, with an alert."""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from phase4.demo.run import monitoring_config
from phase4.monitor.core.monitoring import (
    MonitoringConfig,
    MonitoringConfigError,
    PerformanceConfig,
    parse_monitoring,
)
from phase4.monitor.drift.streams import MonitorConfig, StreamSpec
from phase4.monitor.store.models import Alert, Deployment, InferenceRecord
from phase4.monitor.surveillance.detection import _config_for, detect_all
from tests.conftest import Fixture

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 2, 8, tzinfo=UTC)
STREAMS = [
    {"field": "features.liver_suvmean", "kind": "numeric"},
    {"field": "outputs.positive", "kind": "binary"},
    {"field": "features.reconstruction", "kind": "histogram"},
]
BASE = {"site_id": "site-c", "model_name": "PETLesionDetect", "model_version": "3.0"}


def _problems(value: Any) -> list[str]:
    with pytest.raises(MonitoringConfigError) as caught:
        parse_monitoring(value)
    return caught.value.problems


def test_what_detection_would_have_dropped_or_choked_on_is_refused_naming_the_field() -> None:
    assert _problems({"streams": STREAMS}) == [
        "monitoring.streams[2].kind: kind must be numeric, binary or categorical, not 'histogram'"
    ]
    assert _problems({"studies_per_dya": 20}) == [
        "monitoring.studies_per_dya: extra fields not permitted"
    ]
    assert _problems({"performance": {"predicton": "positive"}}) == [
        "monitoring.performance.predicton: extra fields not permitted"
    ]
    assert _problems({"streams": [{"field": "features.x", "kind": "numeric", "name": "x"}]}) == [
        "monitoring.streams[0].name: extra fields not permitted"
    ]
    bounds = _problems(
        {
            "studies_per_day": 0,
            "false_alarms_per_year": -1,
            "reference_size": 10,
            "ewma_lambda": 1.5,
            "ks_window": 2,
        }
    )
    assert [p.split(":")[0] for p in bounds] == [
        "monitoring.studies_per_day",
        "monitoring.false_alarms_per_year",
        "monitoring.reference_size",
        "monitoring.ewma_lambda",
        "monitoring.ks_window",
    ]
    assert _problems({"studies_per_day": float("inf")}) == [
        "monitoring.studies_per_day: Input should be a finite number"
    ]
    twice = [{"field": "features.x", "kind": "numeric"}, {"field": "features.x", "kind": "binary"}]
    assert _problems({"streams": twice}) == [
        "monitoring.streams[1]: stream features.x is listed twice (with the same where)"
    ]
    # the same field in two subgroups is two streams
    parse_monitoring(
        {
            "streams": [
                {"field": "features.x", "kind": "numeric", "where": [["features.s", "A"]]},
                {"field": "features.x", "kind": "numeric", "where": [["features.s", "B"]]},
            ]
        }
    )
    assert _problems({"exclude": ["latency_s", "a\x00b"]}) == [
        "monitoring.exclude[1]: contains a NUL character (U+0000)"
    ]
    assert _problems("streams: []") == [
        "monitoring: Input should be a valid dictionary or instance of MonitoringConfig"
    ]


def test_what_is_stored_is_what_was_given_as_validated() -> None:
    config = parse_monitoring(
        {"studies_per_day": "12", "streams": [{"field": "error", "kind": "binary", "p1": 0.1}]}
    )
    assert config.stored() == {
        "studies_per_day": 12.0,
        "streams": [{"field": "error", "kind": "binary", "p1": 0.1}],
    }
    # off, however it is said
    for off in ({}, {"performance": None}, {"performance": {}}):
        assert parse_monitoring(off).performance is None
    assert parse_monitoring(None) == MonitoringConfig()


def test_the_defaults_are_the_drift_engines() -> None:
    engine = {f.name: f.default for f in dataclasses.fields(MonitorConfig) if f.name != "streams"}
    contract = {
        name: field.default
        for name, field in MonitoringConfig.model_fields.items()
        if name in engine and name != "cbpe"
    }
    # cbpe and disparity are derived (from performance.score, and from subgroups.disparity)
    assert contract == {k: v for k, v in engine.items() if k not in ("cbpe", "disparity")}
    spec = StreamSpec("features.x", "numeric")
    from_contract = _config_for(Deployment(monitoring={}), [{"features": {"x": 1.0}}])
    assert dataclasses.replace(from_contract, streams=(spec,)) == MonitorConfig(streams=(spec,))
    assert StreamSpec("x", "binary").rate_ratio == 2.0  # StreamConfig.rate_ratio's default


def test_performance_turns_into_its_streams_and_the_unlabelled_estimate() -> None:
    monitoring = {
        "streams": [{"field": "features.x", "kind": "numeric"}],
        "performance": {"score": "malignancy_score", "dice": False, "cbpe_window": 150},
    }
    config = _config_for(Deployment(monitoring=monitoring), [])
    assert [s.name for s in config.streams] == [
        "features.x",
        "performance.missed",
        "performance.false_positive",
    ]
    assert {s.reference_size for s in config.streams[1:]} == {PerformanceConfig().reference_size}
    assert config.cbpe == {
        "score": "outputs.malignancy_score",
        "prediction": "outputs.positive",
        "reference_size": 300,
        "window": 150,
    }


def _documented() -> dict[str, Any]:
    text = (ROOT / "docs" / "CONFIGURATION.md").read_text(encoding="utf-8")
    section = text.split("## A deployment's monitoring configuration", 1)[1]
    block = re.search(r"```json\n(.*?)```", section, re.S)
    assert block is not None
    return dict(json.loads(block.group(1)))


@pytest.mark.parametrize("name", ["documented", "demo"])
def test_every_shipped_configuration_validates(name: str) -> None:
    document = _documented() if name == "documented" else monitoring_config(20.0)
    assert parse_monitoring(document).stored() == json.loads(json.dumps(document))


def test_the_api_answers_422_naming_the_field_and_stores_a_valid_one(
    client: TestClient, world: Fixture
) -> None:
    admin = world.auth(world.admin)
    cases = {
        "monitoring.streams[2].kind: kind must be numeric, binary or categorical": {
            "streams": STREAMS
        },
        "monitoring.studies_per_dya: extra fields not permitted": {"studies_per_dya": 20},
        "monitoring.reference_size: Input should be greater than or equal to 30": {
            "reference_size": 5
        },
    }
    for i, (message, monitoring) in enumerate(cases.items()):
        r = client.post(
            "/v1/deployments",
            json={"id": f"bad{i}@site-c", **BASE, "monitoring": monitoring},
            headers=admin,
        )
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["code"] == "invalid_request"
        assert error["message"].startswith(message), error["message"]
        assert error["details"][0]["loc"][:2] == ["body", "monitoring"]
    listed = client.get("/v1/deployments", headers=admin).json()
    assert not [d for d in listed if d["id"].startswith("bad")]  # nothing was created
    good = {"streams": STREAMS[:2], "studies_per_day": 12, "performance": {"dice": False}}
    r = client.post(
        "/v1/deployments", json={"id": "ok@site-c", **BASE, "monitoring": good}, headers=admin
    )
    assert r.status_code == 201, r.text
    assert r.json()["monitoring"] == good
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert schema["StreamConfig"]["properties"]["kind"]["enum"] == [
        "numeric",
        "binary",
        "categorical",
    ]
    assert schema["MonitoringConfig"]["additionalProperties"] is False


def _insert(world: Fixture, deployment: str, n: int) -> None:
    g = np.random.default_rng(3)
    with Session(world.engine) as s:
        for i in range(n):
            at = T0 + timedelta(hours=i)
            s.add(
                InferenceRecord(
                    record_id=uuid.uuid4().hex,
                    deployment_id=deployment,
                    acquired_at=at,
                    inferred_at=at,
                    features={"liver_suvmean": round(float(g.normal(2.2, 0.2)), 3)},
                    outputs={"positive": bool(g.random() < 0.3)},
                )
            )
        s.commit()


def test_a_stored_configuration_written_before_the_contract_stops_only_its_deployment(
    world: Fixture,
) -> None:
    """A typo stored before the contract existed used to be dropped silently (the default ran
    instead); now its deployment waits, with one alert naming the field."""
    good = {"streams": STREAMS[:2], "reference_size": 30}
    with Session(world.engine) as s:
        for dep_id, monitoring in (
            (world.deployment_a, {**good, "studies_per_dya": 5}),
            (world.deployment_b, good),
        ):
            dep = s.get(Deployment, dep_id)
            assert dep is not None
            dep.monitoring = monitoring
            s.add(dep)
        s.commit()
    _insert(world, world.deployment_a, 40)
    _insert(world, world.deployment_b, 40)
    results = {r.deployment: r for r in detect_all(world.engine)}
    assert results[world.deployment_a].failed and results[world.deployment_a].records == 0
    assert results[world.deployment_b].records == 40
    with Session(world.engine) as s:
        [alert] = s.exec(select(Alert).where(Alert.deployment_id == world.deployment_a)).all()
    assert alert.cause == "config_error" and alert.severity == "critical"
    assert "monitoring.studies_per_dya: extra fields not permitted" in alert.title
