"""Helpers for the phase4.probes.dicom tests: synthetic series constants, file edits, a hang
guard."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from phase4.probes.dicom.synthetic import HotSphere
from tests.reference.nuclides import HALF_LIFE_S

INJECTION = datetime(2024, 5, 6, 9, 0, 0)
SERIES = datetime(2024, 5, 6, 10, 0, 0)  # 3600 s after injection
ACTIVITY_BQ = 300e6
WEIGHT_KG = 75.0
F18_HALF_LIFE_S = HALF_LIFE_S["F-18"]
BACKGROUND_BQ_ML = 5000.0
SPHERE = HotSphere(centre_mm=(20.0, 10.0, -80.0), radius_mm=15.0, concentration_bq_ml=40000.0)
TIMEOUT_S = 10.0


def edit(paths: Iterable[Path], change: Callable[[pydicom.Dataset], None]) -> None:
    """Rewrite each file after ``change(ds)``."""
    for path in paths:
        ds = pydicom.dcmread(path)
        change(ds)
        ds.save_as(path, enforce_file_format=True)


def set_pixels(path: Path, change: Callable[[np.ndarray], None]) -> None:
    """Rewrite one slice's stored int16 pixels after ``change(array)`` (in place)."""
    ds = pydicom.dcmread(path)
    array = np.frombuffer(ds.PixelData, dtype="<i2").reshape(ds.Rows, ds.Columns).copy()
    change(array)
    ds.PixelData = array.tobytes()
    ds.save_as(path, enforce_file_format=True)


def run_with_timeout(function: Callable[[], Any], timeout_s: float = TIMEOUT_S) -> Any:
    """Run ``function`` in a daemon thread; fail the test if it takes longer than
    ``timeout_s``; re-raise whatever it raised."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = function()
        except BaseException as exc:  # handed back to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        pytest.fail(f"took longer than {timeout_s} s (hang)")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def suv_start(concentration_bq_ml: float, uptake_s: float = 3600.0) -> float:
    """SUVbw by hand for DecayCorrection START: C × weight / (activity × 2^(−uptake / T½))."""
    decay = 2.0 ** (-uptake_s / F18_HALF_LIFE_S)
    return concentration_bq_ml * WEIGHT_KG * 1000.0 / (ACTIVITY_BQ * decay)
