"""Intervals and population bands of the surveillance report; the labelled-call rule agrees with
the drift engine's."""

from __future__ import annotations

from typing import Any

import pytest

from phase4.alerts.export.report import labelled_call, redact
from phase4.alerts.export.stats import age_band, mean_ci, sex_band, weight_band, wilson
from phase4.monitor.store.models import Feedback, utcnow
from phase4.monitor.surveillance.detection import outcome_view


def test_wilson_interval_matches_hand_computation() -> None:
    # p = 0.5, n = 20, z = 1.96: centre 0.5, half-width 1.96*sqrt(0.0125+0.0024)/1.19208
    w = wilson(10, 20)
    assert w["value"] == 0.5
    assert w["ci_low"] == pytest.approx(0.29930, abs=1e-5)
    assert w["ci_high"] == pytest.approx(0.70070, abs=1e-5)
    # 0/10: the interval is [0, 0.2775] (not the degenerate [0, 0] of the Wald interval)
    zero = wilson(0, 10)
    assert zero["ci_low"] == pytest.approx(0.0, abs=1e-12)
    assert zero["ci_high"] == pytest.approx(0.27753, abs=1e-5)
    assert wilson(0, 0)["value"] is None


def test_mean_ci() -> None:
    m = mean_ci([0.7, 0.8, 0.9])
    assert m["mean"] == pytest.approx(0.8)
    assert m["sd"] == pytest.approx(0.1)
    assert m["ci_low"] == pytest.approx(0.8 - 1.959964 * 0.1 / 3**0.5)
    assert mean_ci([0.5])["ci_low"] is None
    assert mean_ci([])["mean"] is None


@pytest.mark.parametrize(
    ("features", "sex", "age", "weight"),
    [
        ({"patient_sex": "F", "patient_age_y": 17.9, "weight_kg": 49.9}, "female", "<18", "<50 kg"),
        ({"sex": "m", "age": "065Y", "weight_bin_kg": 70}, "male", "65-79", "70-89 kg"),
        (
            {"PatientSex": "O", "patient_age_y": 80, "patient_weight_kg": 110},
            "other",
            "80+",
            "110+ kg",
        ),
        ({}, "not recorded", "not recorded", "not recorded"),
        ({"patient_age_y": "old", "weight_kg": -3}, "not recorded", "unreadable", "unreadable"),
    ],
)
def test_population_bands(features: dict[str, Any], sex: str, age: str, weight: str) -> None:
    assert (sex_band(features), age_band(features), weight_band(features)) == (sex, age, weight)


@pytest.mark.parametrize("verdict", [None, "accepted", "rejected", "edited"])
@pytest.mark.parametrize("predicted", [True, False, None])
@pytest.mark.parametrize("truth", [True, False, None])
def test_labelled_call_agrees_with_the_drift_engine(
    verdict: str | None, predicted: bool | None, truth: bool | None
) -> None:
    outputs = {} if predicted is None else {"positive": predicted}
    ground = None if truth is None else {"malignant": truth}
    fb = Feedback(
        feedback_id="f", record_id="r", verdict=verdict, ground_truth=ground, given_at=utcnow()
    )
    view = outcome_view(outputs, fb, {})["cbpe"]
    call, actual = labelled_call(outputs, verdict, ground, {})
    assert call == (view["call"] if isinstance(view["call"], bool) else None)
    if call is not None:
        assert actual == view["truth"]


def test_monitoring_configuration_is_exported_without_secrets() -> None:
    config = {
        "performance": {"truth": "malignant"},
        "notify": [{"webhook_token": "abc", "url": "https://x"}],
        "API-Key": "k",
    }
    assert redact(config) == {
        "performance": {"truth": "malignant"},
        "notify": [{"webhook_token": "[redacted]", "url": "https://x"}],
        "API-Key": "[redacted]",
    }
