"""The words of a headline (pure): names and units from field names, sizes in the direction of the
verb with their intervals, world dates with the delay, no date from the future."""

from __future__ import annotations

import doctest
from datetime import UTC, datetime, timedelta

import pytest

from phase4.monitor.core import headline as words
from phase4.monitor.core import quantities
from phase4.monitor.core.headline import (
    Linked,
    change_sentence,
    limit_sentence,
    size_text,
    size_words,
    when_words,
)
from phase4.monitor.core.monitoring import parse_monitoring
from phase4.monitor.core.quantities import Quantity, quantity_of

NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize("module", [quantities, words])
def test_the_examples_in_the_docstrings_hold(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)  # type: ignore[arg-type]
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize(
    ("stream", "label", "unit", "relative"),
    [
        ("features.liver_suvmean", "liver SUVmean", "SUV", True),
        ("features.injected_activity_mbq", "injected activity", "MBq", True),
        ("features.uptake_time_s", "uptake time", "s", True),
        ("features.frame_duration_min", "frame duration", "min", True),
        ("latency_s", "AI latency", "s", True),
        ("features.series_delay_ms", "series delay", "ms", True),
        ("features.slice_thickness_mm", "slice thickness", "mm", True),
        ("features.body_volume_ml", "body volume", "mL", True),
        ("features.weight_kg", "weight", "kg", True),
        ("features.image_noise_cv", "image noise CV", "", True),
        ("phantom.flood.iu_ufov_pct", "flood IU UFOV", "%", False),
        ("outputs.malignancy_score", "AI malignancy score", "", False),
        ("features.activity_mbq_per_kg", "activity", "MBq/kg", True),
        ("outputs.positive", "AI positive-call rate", "", True),
        ("features.flag_truncation", "share of studies flagged for truncation", "", True),
    ],
)
def test_names_and_units_come_from_the_field_name(
    stream: str, label: str, unit: str, relative: bool
) -> None:
    q = quantity_of(stream)
    assert (q.label, q.unit, q.relative) == (label, unit, relative)


def test_a_deployment_names_its_own_streams() -> None:
    config = parse_monitoring(
        {"quantities": {"features.sv": {"label": "spleen SUVmean", "unit": "SUV"}}}
    )
    q = quantity_of("features.sv", config.quantity_names())
    assert (q.label, q.unit) == ("spleen SUVmean", "SUV")
    subgroup = quantity_of("features.sv[scanner_model=Vision]", config.quantity_names())
    assert subgroup.label == "spleen SUVmean (scanner_model=Vision)"


def test_sizes_read_in_the_direction_of_the_verb() -> None:
    suv = Quantity("liver SUVmean", "SUV", "g/mL")
    fell = {"stated": "pct", "size": -2.0, "ci95": [-5.0, 1.0]}
    # the interval crosses zero: still stated as a fall, its upper end a rise of 1%
    assert size_words(suv, fell, "down") == "fell 2.0% (95% CI −1.0 to 5.0%)"
    delta = {"stated": "delta", "size": 12.34, "ci95": [8.1, 16.6], "unit": "s"}
    assert size_words(Quantity("uptake time", "s"), delta, "up") == (
        "rose 12.3 s (95% CI 8.1 to 16.6 s)"
    )
    points = {"stated": "delta", "size": 1.2, "ci95": [0.41, 2.0]}
    assert size_words(Quantity("flood IU", "%", relative=False), points, "up") == (
        "rose 1.20 percentage points (95% CI 0.41 to 2.00)"
    )
    rate = {"stated": "points", "size": 17.35, "ci95": [12.47, 22.13], "before": 0.44,
            "after": 0.6135}  # fmt: skip
    assert size_words(Quantity("AI positive-call rate"), rate, "up") == (
        "rose from 44.0% to 61.4% (+17.4 points, 95% CI 12.5 to 22.1)"
    )
    alone = {"stated": "pct", "size": 4.0, "ci95": None}
    assert "no confidence interval" in size_words(suv, alone, "up")
    assert size_text(rate) == "+17.4 points (95% CI 12.5 to 22.1)"
    assert size_words(suv, {}, "up") == ""


def test_dates_are_the_worlds_with_the_delay_and_never_in_the_future() -> None:
    began, detected = datetime(2026, 8, 14, 15, tzinfo=UTC), datetime(2026, 8, 14, 18, tzinfo=UTC)
    assert when_words(began, detected, NOW) == (
        "from about 14 Aug (detected 14 Aug 2026, the same day)"
    )
    ahead = NOW + timedelta(days=2)
    assert "Dec" not in when_words(began, ahead, NOW)
    link = Linked("injected activity +8.0%", ahead)
    text = change_sentence(
        quantity_of("features.liver_suvmean"),
        "at site A",
        None,
        "down",
        began,
        detected,
        now=NOW,
        linked=[link],
    )
    assert text == (
        "Liver SUVmean at site A fell from about 14 Aug (detected 14 Aug 2026, the same day); "
        "linked to: injected activity +8.0% from a date in the future (a clock is wrong)."
    )


def test_a_phantom_result_beyond_its_level_names_the_level() -> None:
    text = limit_sentence(
        quantity_of("phantom.cylinder.recovery_ratio"),
        "on Biograph Vision 600 (site A)",
        0.8986,
        {"level": "action", "side": "below", "value": 0.9},
        datetime(2026, 9, 1, 7, 15, tzinfo=UTC),
        now=NOW,
    )
    assert text == (
        "Cylinder recovery ratio on Biograph Vision 600 (site A) 0.899, below its action level "
        "0.90, on 1 Sep 2026."
    )
