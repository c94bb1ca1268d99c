"""Phantom QC (issue 5): NEMA NU 1 flood uniformity, PET cylinder, NEMA NU 2 image quality
against the EARL bands, control charts, and the AI canary.

Every analysis reads the same way (after pylinac): ``X.from_dicom(path)`` or
``X.from_array(...)``, then ``.analyze(**parameters)``, then ``.results()`` (text),
``.results_data()`` (a frozen dataclass with ``.to_dict()`` and ``.metrics()``),
``.figure()`` (plotly) and ``.verdicts(tolerances)``.
"""

from phantoms.canary import CanaryComparison, compare_canary
from phantoms.control import (
    ShewhartChart,
    Tolerance,
    WesternElectric,
    markov_arl,
    tolerance_verdict,
)
from phantoms.cylinder import CylinderResult, PETCylinder
from phantoms.flood import FloodUniformity, FloodUniformityResult, HeadUniformity
from phantoms.image import PhantomInputError
from phantoms.nema_iq import NEMAImageQuality, NEMAImageQualityResult, SphereResult

__all__ = [
    "CanaryComparison",
    "CylinderResult",
    "FloodUniformity",
    "FloodUniformityResult",
    "HeadUniformity",
    "NEMAImageQuality",
    "NEMAImageQualityResult",
    "PETCylinder",
    "PhantomInputError",
    "ShewhartChart",
    "SphereResult",
    "Tolerance",
    "WesternElectric",
    "compare_canary",
    "markov_arl",
    "tolerance_verdict",
]
