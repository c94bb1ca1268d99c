"""What every phantom analysis returns: frozen dataclasses that serialise to JSON-safe dicts,
a flat ``{metric: value}`` view (what the monitor stores), and verdicts against tolerances."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from phase4.phantoms.control import Tolerance, Verdict

ToleranceLike = Tolerance | Mapping[str, float | None]


def jsonable(value: Any) -> Any:
    """Dataclasses, tuples, numpy scalars/arrays, datetimes and paths as JSON types;
    non-finite floats become None (JSON has no NaN)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer | int):
        return int(value)
    if isinstance(value, np.floating | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    return value


class ResultData:
    """Mixin for the frozen result dataclasses."""

    def to_dict(self) -> dict[str, Any]:
        out = jsonable(self)
        assert isinstance(out, dict)
        return out


def as_tolerance(value: ToleranceLike) -> Tolerance:
    if isinstance(value, Tolerance):
        return value
    known = {f.name for f in dataclasses.fields(Tolerance)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise ValueError(f"unknown tolerance fields {unknown}; expected some of {sorted(known)}")
    return Tolerance(**{k: value[k] for k in known if k in value})


def judge(
    metrics: Mapping[str, float], tolerances: Mapping[str, ToleranceLike]
) -> dict[str, Verdict]:
    """Verdict of every metric that has a tolerance. A per-head metric (``iu_ufov_pct_h2``)
    uses its own tolerance if given, else the one of its base name (``iu_ufov_pct``)."""
    out: dict[str, Verdict] = {}
    for name, value in metrics.items():
        tol = tolerances.get(name)
        if tol is None and "_h" in name:
            base, _, head = name.rpartition("_h")
            tol = tolerances.get(base) if head.isdigit() else None
        if tol is not None and math.isfinite(value):
            out[name] = as_tolerance(tol).verdict(value)
    return out
