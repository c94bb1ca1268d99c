"""EARL acceptance bands for the NEMA/IEC body phantom's sphere recovery coefficients, and the
spheres' nominal volumes, as published (rows in the published order, sphere 37 mm → 10 mm).

* EARL1: EANM Research Ltd (EARL) FDG-PET/CT accreditation specifications, also given in
  Boellaard et al. 2015, "FDG PET/CT: EANM procedure guidelines for tumour imaging: version
  2.0", Eur J Nucl Med Mol Imaging 42:328–354.
* EARL2: Kaalep et al. 2018, "Feasibility of state of the art PET/CT systems performance
  harmonisation", Eur J Nucl Med Mol Imaging 45:1344–1361 (the updated EARL criteria).
* Sphere inner diameters and volumes: the NEMA NU 2-2018 image-quality phantom (the IEC
  61675-1 body phantom).

RCmean is the background-corrected mean in the 50% isocontour (A50), RCmax the maximum voxel,
both relative to the true sphere concentration. Each band is (lower, upper), both inclusive.
"""

from __future__ import annotations

DIAMETERS_MM: tuple[float, ...] = (37.0, 28.0, 22.0, 17.0, 13.0, 10.0)

SPHERE_VOLUMES_ML: tuple[float, ...] = (26.52, 11.49, 5.57, 2.57, 1.15, 0.52)

BANDS: dict[tuple[str, str], tuple[tuple[float, float], ...]] = {
    ("EARL1", "rc_mean"): (
        (0.76, 0.89),
        (0.72, 0.85),
        (0.63, 0.78),
        (0.57, 0.73),
        (0.44, 0.60),
        (0.27, 0.43),
    ),
    ("EARL1", "rc_max"): (
        (0.95, 1.16),
        (0.91, 1.13),
        (0.83, 1.09),
        (0.73, 1.01),
        (0.59, 0.85),
        (0.34, 0.57),
    ),
    ("EARL2", "rc_mean"): (
        (0.85, 1.00),
        (0.82, 0.97),
        (0.80, 0.99),
        (0.76, 0.97),
        (0.63, 0.86),
        (0.39, 0.61),
    ),
    ("EARL2", "rc_max"): (
        (1.05, 1.29),
        (1.01, 1.26),
        (1.01, 1.32),
        (1.00, 1.38),
        (0.85, 1.22),
        (0.52, 0.88),
    ),
}
