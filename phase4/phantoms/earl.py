"""EARL acceptance bands for sphere recovery coefficients (data, not logic).

EARL1 from the EANM/EARL FDG-PET/CT accreditation specifications (also in Boellaard et al.
2015, EANM procedure guidelines for tumour imaging v2.0, Eur J Nucl Med Mol Imaging 42:328–354);
EARL2 from Kaalep et al. 2018, "Feasibility of state of the art PET/CT systems performance
harmonisation", Eur J Nucl Med Mol Imaging 45:1344–1361. Keys: standard → metric → sphere
diameter (mm) → (lower, upper), both inclusive.
"""

from __future__ import annotations

from typing import Literal

SPHERE_DIAMETERS_MM: tuple[float, ...] = (10.0, 13.0, 17.0, 22.0, 28.0, 37.0)
# Nominal inner volumes of the spheres of the NEMA NU 2-2018 / IEC 61675-1 body phantom (mL).
SPHERE_VOLUMES_ML: dict[float, float] = {
    10.0: 0.52,
    13.0: 1.15,
    17.0: 2.57,
    22.0: 5.57,
    28.0: 11.49,
    37.0: 26.52,
}

Standard = Literal["EARL1", "EARL2"]
Metric = Literal["rc_mean", "rc_max"]

EARL_BANDS: dict[str, dict[str, dict[float, tuple[float, float]]]] = {
    "EARL1": {
        "rc_mean": {
            37.0: (0.76, 0.89),
            28.0: (0.72, 0.85),
            22.0: (0.63, 0.78),
            17.0: (0.57, 0.73),
            13.0: (0.44, 0.60),
            10.0: (0.27, 0.43),
        },
        "rc_max": {
            37.0: (0.95, 1.16),
            28.0: (0.91, 1.13),
            22.0: (0.83, 1.09),
            17.0: (0.73, 1.01),
            13.0: (0.59, 0.85),
            10.0: (0.34, 0.57),
        },
    },
    "EARL2": {
        "rc_mean": {
            37.0: (0.85, 1.00),
            28.0: (0.82, 0.97),
            22.0: (0.80, 0.99),
            17.0: (0.76, 0.97),
            13.0: (0.63, 0.86),
            10.0: (0.39, 0.61),
        },
        "rc_max": {
            37.0: (1.05, 1.29),
            28.0: (1.01, 1.26),
            22.0: (1.01, 1.32),
            17.0: (1.00, 1.38),
            13.0: (0.85, 1.22),
            10.0: (0.52, 0.88),
        },
    },
}


def band(standard: str, metric: str, diameter_mm: float) -> tuple[float, float]:
    """The (lower, upper) band of one sphere; a clear error for an unknown key."""
    try:
        return EARL_BANDS[standard][metric][float(diameter_mm)]
    except KeyError:
        raise ValueError(
            f"no EARL band for standard {standard!r}, metric {metric!r}, sphere {diameter_mm} mm "
            f"(standards {sorted(EARL_BANDS)}, metrics rc_mean/rc_max, spheres "
            f"{list(SPHERE_DIAMETERS_MM)})"
        ) from None


def within(standard: str, metric: str, diameter_mm: float, value: float) -> bool:
    lower, upper = band(standard, metric, diameter_mm)
    return lower <= value <= upper
