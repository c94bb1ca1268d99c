"""Nothing the probe does raises into the model; the model's own exceptions pass untouched."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest


class ScannerError(RuntimeError):
    """A model-side error the probe must not alter."""


def test_model_exception_propagates_unchanged_and_is_recorded(server, make_probe):
    probe = make_probe(server.url, send_error_messages=True)
    error = ScannerError("reconstruction failed " + "x" * 1500)

    with pytest.raises(ScannerError) as raised, probe.inference(features={"a": 1}) as inf:
        raise error
    assert raised.value is error
    assert raised.traceback[-1].name == "test_model_exception_propagates_unchanged_and_is_recorded"

    decorated_error = ScannerError("reconstruction failed " + "x" * 1500)

    @probe.watch(features=lambda x: {"x": x})
    def predict(x: int) -> int:
        raise decorated_error

    with pytest.raises(ScannerError) as raised_by_decorated:
        predict(3)
    assert raised_by_decorated.value is decorated_error
    assert raised_by_decorated.traceback[-1].name == "predict"

    assert probe.flush(timeout_s=15)
    recorded = [r["error"] for r in server.stored.values()]
    expected = ("ScannerError: reconstruction failed " + "x" * 1500)[:1000]
    assert recorded == [expected, expected] and len(expected) == 1000
    assert server.stored[inf.record_id]["latency_s"] is not None


def test_exception_messages_stay_in_the_model_process_by_default(server, make_probe, tmp_path):
    """A message can quote a path or DICOM value naming the patient: only the type is sent."""
    probe = make_probe(server.url, spool_path=tmp_path / "default.spool.sqlite")
    with pytest.raises(ScannerError), probe.inference(features={"a": 1}):
        raise ScannerError("cannot read /archive/DOE^JANE/1.2.840.99/CT.dcm")
    assert probe.flush(timeout_s=15)
    (stored,) = server.stored.values()
    assert stored["error"] == "ScannerError"
    assert server.bodies and not any(b"DOE" in body for body in server.bodies)
    assert b"DOE" not in (tmp_path / "default.spool.sqlite").read_bytes()


def test_extractor_failures_never_reach_the_model(server, make_probe, caplog):
    caplog.set_level(logging.WARNING, logger="phase4.probe")
    probe = make_probe(server.url)

    def explode(*_args: object) -> dict[str, float]:
        raise KeyError("SECRET-IN-MESSAGE")

    @probe.watch(features=explode, outputs=explode, study_uid=explode, acquired_at=explode)
    def predict(x: int) -> int:
        return x + 1

    assert predict(1) == 2
    assert predict(2) == 3
    assert probe.flush(timeout_s=15)
    assert probe.stats().internal_errors == 8
    assert len(server.stored) == 2
    assert all(r["features"] == {} and r["outputs"] == {} for r in server.stored.values())
    assert "KeyError" in caplog.text and "SECRET-IN-MESSAGE" not in caplog.text


def test_malformed_capture_arguments_are_absorbed(server, make_probe):
    probe = make_probe(server.url)
    rid = probe.record(
        features=42,  # type: ignore[arg-type]
        outputs=[1, 2],  # type: ignore[arg-type]
        study_uid=12345,  # type: ignore[arg-type]
        acquired_at="yesterday",  # type: ignore[arg-type]
        latency_s=-1.0,
        error=object(),  # type: ignore[arg-type]
        record_id=7,  # type: ignore[arg-type]
    )
    assert rid is not None
    assert probe.flush(timeout_s=15)
    record = server.stored[rid]
    assert record["features"] == {} and record["outputs"] == {}
    assert record["study_pseudonym"] is None
    assert record["acquired_at"] == record["inferred_at"]
    assert record["latency_s"] is None
    assert record["error"] == "object"
    stats = probe.stats()
    assert stats.internal_errors == 2  # record_id, study_uid
    assert stats.values_stripped == 4  # features, outputs, acquired_at, latency_s


def test_numpy_values_and_non_finite_floats_become_json(server, make_probe):
    probe = make_probe(server.url)
    rid = probe.record(
        features={
            "suv": np.float32(2.5),
            "count": np.int64(3),
            "flag": np.bool_(True),
            "nan": math.nan,
            "inf": np.float64("inf"),
            "when": np.datetime64("2026-01-01"),
            7: "non-str key",
            "histogram": np.arange(3),  # features are flat: a list is dropped...
        },
        outputs={"histogram": np.arange(3), "pair": (1, "a"), "nan": [math.nan]},  # ...not here
    )
    assert probe.flush(timeout_s=15)
    record = server.stored[rid]
    assert record["features"] == {"suv": 2.5, "count": 3, "flag": True, "nan": None, "inf": None}
    assert record["outputs"] == {"histogram": [0, 1, 2], "pair": [1, "a"], "nan": [None]}
    assert probe.stats().values_stripped == 3


def test_features_are_snapshotted_at_capture(server, make_probe):
    probe = make_probe(server.url, flush_interval_s=60)
    features = {"a": 1}
    rid = probe.record(features=features)
    features["a"] = 2  # the model reuses its dict
    assert probe.flush(timeout_s=15)
    assert server.stored[rid]["features"] == {"a": 1}


def test_inference_is_usable_when_the_monitor_is_down_from_the_start(make_probe, free_port):
    probe = make_probe(f"http://127.0.0.1:{free_port}")
    for i in range(20):
        with probe.inference(study_uid=f"1.2.{i}", features={"i": i}) as inf:
            inf.outputs = {"y": i}
    assert probe.stats().captured == 20
    assert probe.stats().internal_errors == 0
