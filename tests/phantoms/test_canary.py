"""The AI canary: matching to the phantom's truth and judging change against the history."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from phase4.phantoms.canary import compare_canary, match_lesions
from phase4.phantoms.synthetic import IQSpec, nema_iq_truth

TRUTH = nema_iq_truth(IQSpec())


def ai_output(
    rng: np.random.Generator,
    *,
    suv_scale: float = 0.9,
    volume_scale: float = 1.0,
    missing: tuple[float, ...] = (),
    extra: int = 0,
) -> dict[str, Any]:
    """What a well-behaved segmentation AI might say: small jitter around fixed biases."""
    lesions = []
    for s in TRUTH["spheres"]:
        if s["diameter_mm"] in missing:
            continue
        lesions.append(
            {
                "suv_max": s["suv"] * suv_scale * (1 + 0.01 * rng.standard_normal()),
                "volume_ml": s["volume_ml"] * volume_scale * (1 + 0.01 * rng.standard_normal()),
                "center_mm": list(np.add(s["center_mm"], rng.normal(0, 1.0, 3))),
            }
        )
    for _ in range(extra):
        lesions.append({"suv_max": 3.0, "volume_ml": 2.0, "center_mm": [0.0, 100.0, -50.0]})
    return {"lesions": lesions, "model": "seg-v1"}


def history(n: int = 8) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    return [ai_output(rng) for _ in range(n)]


def test_a_faithful_ai_finds_every_sphere_and_stays_unchanged() -> None:
    result = compare_canary(TRUTH, ai_output(np.random.default_rng(99)), history())
    assert result.detected == 6 and result.spheres == 6 and result.false_positives == 0
    assert result.verdict == "unchanged" and not result.changed
    for m in result.matches:
        assert m.suv_max_ratio == pytest.approx(0.9, abs=0.04)
        assert m.volume_ratio == pytest.approx(1.0, abs=0.04)
        assert m.distance_mm is not None and m.distance_mm < 5
    assert all(abs(z) < 3 for z in result.z_scores.values())
    assert "within 3 SD" in result.reasons[-1]
    json.dumps(result.to_dict())


def test_a_model_update_that_moves_suv_is_flagged_with_a_reason() -> None:
    # a model update (a denoiser v1 → v2) moves the SUVmax bias from -10% to +15%
    new = ai_output(np.random.default_rng(5), suv_scale=1.15)
    result = compare_canary(TRUTH, new, history())
    assert result.changed
    assert any("SUVmax / true SUV" in r for r in result.reasons)
    assert result.z_scores["suv_max_ratio_37mm"] > 3


def test_a_missed_sphere_is_flagged() -> None:
    new = ai_output(np.random.default_rng(5), missing=(10.0,))
    result = compare_canary(TRUTH, new, history())
    assert result.detected == 5
    assert result.changed
    assert any(
        "10 mm sphere was found in all 8 earlier results and is missed now" in r
        for r in result.reasons
    )


def test_a_volume_change_is_flagged() -> None:
    result = compare_canary(
        TRUTH, ai_output(np.random.default_rng(5), volume_scale=0.78), history()
    )
    assert result.changed
    assert any("volume / true volume" in r for r in result.reasons)


def test_too_little_history_cannot_judge_change() -> None:
    result = compare_canary(TRUTH, ai_output(np.random.default_rng(5), suv_scale=2.0), history(2))
    assert result.verdict == "unchanged"
    assert "only 2 earlier canary result(s)" in result.reasons[0]
    assert result.matches[-1].suv_max_ratio == pytest.approx(2.0, rel=0.05)  # still reported


def test_false_positives_and_far_detections_do_not_match() -> None:
    rng = np.random.default_rng(1)
    out = ai_output(rng, extra=2)
    out["lesions"][0]["center_mm"] = [500.0, 500.0, 500.0]  # the 10 mm sphere's detection, far off
    matches, false_positives = match_lesions(TRUTH, out)
    assert not matches[0].detected and matches[0].diameter_mm == 10.0
    assert false_positives == 3


def test_without_positions_lesions_are_matched_by_volume_rank() -> None:
    out = {"lesions": [{"volume_ml": v, "suv_max": 5.0} for v in (0.5, 26.0, 11.0)]}
    truth = {
        "spheres": [
            {"diameter_mm": d, "volume_ml": v, "suv": 10.0}
            for d, v in ((37.0, 26.52), (28.0, 11.49), (10.0, 0.52))
        ]
    }
    matches, fp = match_lesions(truth, out)
    assert [m.volume_ratio for m in matches] == pytest.approx([0.5 / 0.52, 11 / 11.49, 26 / 26.52])
    assert fp == 0


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="spheres"):
        compare_canary({}, {"lesions": []})
    with pytest.raises(ValueError, match="list of objects"):
        compare_canary(TRUTH, {"lesions": "none"})
    with pytest.raises(ValueError, match="center_mm"):
        compare_canary(TRUTH, {"lesions": [{"center_mm": [1, 2]}]})
