"""What the detectors see of a record or of a labelled outcome: one view, shared by the drift
pass (``detection``), the size of a change (``change_size``) and the dashboard's replays.

A stream reads its field from these views (``phase4.monitor.drift.streams.Stream.observation``),
so anything that reads a stream's values back from the store reads them exactly as the drift
pass fed them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from phase4.monitor.store.models import Feedback


def record_view(r: Any) -> dict[str, Any]:
    """What the detectors see of a record (an ``InferenceRecord`` or a row of its columns)."""
    return {
        "features": r.features,
        "outputs": r.outputs,
        "error": r.error,
        "inference_error": r.error is not None,
        "latency_s": r.latency_s,
    }


def outcome_view(
    outputs: Mapping[str, Any], feedback: Feedback, performance: Mapping[str, Any]
) -> dict[str, Any]:
    """One labelled outcome: was the AI's call a miss, a false positive, how good its contour."""
    prediction_key = str(performance.get("prediction", "positive"))
    truth_key = str(performance.get("truth", "malignant"))
    if not isinstance(outputs, Mapping):  # whatever the store holds: no outputs to judge
        outputs = {}
    ground_truth = feedback.ground_truth if isinstance(feedback.ground_truth, Mapping) else {}
    predicted = outputs.get(prediction_key)
    truth = ground_truth.get(truth_key)
    if feedback.verdict == "rejected" and truth is None and isinstance(predicted, bool):
        truth = not predicted  # a rejected call without stated truth: the AI was wrong
    if feedback.verdict == "accepted" and truth is None and isinstance(predicted, bool):
        truth = predicted
    missed = (not predicted) if truth is True and isinstance(predicted, bool) else None
    false_pos = bool(predicted) if truth is False and isinstance(predicted, bool) else None
    score = outputs.get(str(performance.get("score", ""))) if performance.get("score") else None
    return {
        "performance": {"missed": missed, "false_positive": false_pos, "dice": feedback.dice},
        "cbpe": {"score": score, "truth": truth, "call": predicted},
    }
