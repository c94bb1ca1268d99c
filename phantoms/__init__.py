"""Phantom QC: NEMA NU 1 flood uniformity, PET cylinder, NEMA NU 2 image quality against the
EARL bands, control charts, and the AI canary.

Every analysis reads the same way (after pylinac): ``X.from_dicom(path)`` or
``X.from_array(...)``, then ``.analyze(**parameters)``, then ``.results()`` (text),
``.results_data()`` (a frozen dataclass with ``.to_dict()`` and ``.metrics()``),
``.figure()`` (plotly) and ``.verdicts(tolerances)``.

The names below are imported on first use (PEP 562), so that importing one submodule (the
``phase4 phantom`` command, say) does not load scipy for all of them.
"""

from __future__ import annotations

import importlib
from typing import Any

_SOURCES = {
    "CanaryComparison": "phantoms.canary",
    "compare_canary": "phantoms.canary",
    "ShewhartChart": "phantoms.control",
    "Tolerance": "phantoms.control",
    "WesternElectric": "phantoms.control",
    "markov_arl": "phantoms.control",
    "tolerance_verdict": "phantoms.control",
    "CylinderResult": "phantoms.cylinder",
    "PETCylinder": "phantoms.cylinder",
    "FloodUniformity": "phantoms.flood",
    "FloodUniformityResult": "phantoms.flood",
    "HeadUniformity": "phantoms.flood",
    "PhantomInputError": "phantoms.image",
    "NEMAImageQuality": "phantoms.nema_iq",
    "NEMAImageQualityResult": "phantoms.nema_iq",
    "SphereResult": "phantoms.nema_iq",
}

__all__ = sorted(_SOURCES)


def __getattr__(name: str) -> Any:
    if name not in _SOURCES:
        raise AttributeError(f"module 'phantoms' has no attribute {name!r}")
    value = getattr(importlib.import_module(_SOURCES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_SOURCES})
