"""Slice geometry: ordering by position along the slice normal, and what the spacing says.

A slice's position is its ImagePositionPatient projected on the normal of its
ImageOrientationPatient (PS3.3 C.7.6.2.1.1: the normal is the cross product of the row and
column direction cosines). Sorting by that projection is the only ordering the standard
guarantees: InstanceNumber and file names are not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ORIENTATION_TOLERANCE = 1e-3  # direction cosines that differ by more are different planes
DUPLICATE_TOLERANCE_MM = 0.01  # two slices closer than this are at the same position
SPACING_TOLERANCE = 0.01  # relative deviation of a step from the median that is irregular
GAP_FACTOR = 1.5  # a step of more than 1.5 median steps leaves out at least one slice


def slice_normal(orientation: tuple[float, ...]) -> np.ndarray:
    """Unit normal of an ImageOrientationPatient (row cosines, then column cosines)."""
    row = np.asarray(orientation[:3], dtype=float)
    col = np.asarray(orientation[3:], dtype=float)
    normal = np.cross(row, col)
    norm = float(np.linalg.norm(normal))
    if norm < 1e-6:
        raise ValueError("row and column directions are parallel")
    return normal / norm


@dataclass(frozen=True)
class SpacingReport:
    """Steps between consecutive (sorted, de-duplicated) slice positions."""

    slices: int
    median_step_mm: float | None
    min_step_mm: float | None
    max_step_mm: float | None
    missing_slices: int  # slices implied by gaps of more than GAP_FACTOR median steps
    gaps: int  # number of such gaps
    irregular_steps: int  # steps that are not a whole number of median steps (within 1%)

    @property
    def regular(self) -> bool:
        return self.irregular_steps == 0


def spacing_report(positions_mm: np.ndarray) -> SpacingReport:
    """Gaps and irregular steps in sorted, distinct positions (mm along the normal)."""
    n = int(positions_mm.size)
    if n < 2:
        return SpacingReport(n, None, None, None, 0, 0, 0)
    steps = np.diff(positions_mm)
    median = float(np.median(steps))
    if median <= 0:
        return SpacingReport(n, None, None, None, 0, 0, 0)
    ratio = steps / median
    gap = ratio > GAP_FACTOR
    multiples = np.rint(ratio)
    missing = int(np.sum(multiples[gap] - 1))
    tolerance = np.maximum(SPACING_TOLERANCE * multiples * median, DUPLICATE_TOLERANCE_MM)
    # A gap of a whole number of steps is missing slices; any other step length is irregular.
    irregular = int(np.sum(np.abs(steps - multiples * median) > tolerance))
    return SpacingReport(
        slices=n,
        median_step_mm=median,
        min_step_mm=float(steps.min()),
        max_step_mm=float(steps.max()),
        missing_slices=missing,
        gaps=int(gap.sum()),
        irregular_steps=irregular,
    )
