"""Radionuclide half-lives (seconds), from the evaluated nuclear data tables (NUBASE/ENSDF as
served by NNDC NuDat, and LNHB's DDEP): F-18 109.77 min, Ga-68 67.71 min, C-11 20.363 min,
Tc-99m 6.0067 h, Zr-89 78.41 h."""

from __future__ import annotations

HALF_LIFE_S: dict[str, float] = {
    "F-18": 6586.2,
    "Ga-68": 4062.6,
    "C-11": 1221.8,
    "Tc-99m": 21624.1,
    "Zr-89": 282276.0,
}
F18_HALF_LIFE_S = HALF_LIFE_S["F-18"]
