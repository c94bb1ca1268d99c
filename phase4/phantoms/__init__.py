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
    "CanaryComparison": "phase4.phantoms.canary",
    "compare_canary": "phase4.phantoms.canary",
    "ShewhartChart": "phase4.phantoms.control",
    "Tolerance": "phase4.phantoms.control",
    "WesternElectric": "phase4.phantoms.control",
    "markov_arl": "phase4.phantoms.control",
    "tolerance_verdict": "phase4.phantoms.control",
    "CylinderResult": "phase4.phantoms.cylinder",
    "PETCylinder": "phase4.phantoms.cylinder",
    "FloodUniformity": "phase4.phantoms.flood",
    "FloodUniformityResult": "phase4.phantoms.flood",
    "HeadUniformity": "phase4.phantoms.flood",
    "PhantomInputError": "phase4.phantoms.image",
    "NEMAImageQuality": "phase4.phantoms.nema_iq",
    "NEMAImageQualityResult": "phase4.phantoms.nema_iq",
    "SphereResult": "phase4.phantoms.nema_iq",
}

__all__ = sorted(_SOURCES)


def __getattr__(name: str) -> Any:
    if name not in _SOURCES:
        raise AttributeError(f"module 'phase4.phantoms' has no attribute {name!r}")
    value = getattr(importlib.import_module(_SOURCES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_SOURCES})
