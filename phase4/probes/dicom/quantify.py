"""Quantitative image features on the SUV scale: SUVmax/mean/percentiles in the body, a
background noise estimate, and the total activity in the field of view.

Choices (documented here because a drift alarm on these features is only as meaningful as
their definition):

* **Body** — voxels above ``BODY_FRACTION`` (10%) of the image's 99.5th percentile. The
  99.5th percentile rather than the maximum, so a bladder or one hot voxel does not move the
  threshold. 10% of it lies well above air and scatter tails; in whole-body FDG (99.5th
  percentile around SUV 5-10) it is around SUV 0.5-1, so lung and fat may fall outside:
  "body" means tissue with appreciable uptake, defined the same way for every study, which is
  what drift monitoring needs. For volumes of more than ``THRESHOLD_SAMPLE`` voxels the
  percentile is taken over a deterministic 1-in-k strided sample (k odd and not a multiple of
  3, so it does not alias with rows or slices): it only sets a mask threshold, and an exact
  selection over 10^7 voxels costs more than reading the series does.
* **suv_max** — the largest voxel (exact, from the per-slice extremes). **suv_mean**,
  **suv_p50/p90/p99** — exact, over all body voxels (linear interpolation, ``numpy.percentile``
  default).
* **Background noise** - the image is tiled into cubes of about ``NOISE_CUBE_MM`` (30 mm) a
  side (in voxels: 30 mm / spacing, rounded, at least 2; one plane for planar NM). A cube is
  a candidate if the body mask holds at its 27 lattice points (corners, edge and face
  centres, centre); one that dips out of the body between them has a high CV and is not
  selected anyway. The coefficient of variation (SD/mean, ddof 1) of each candidate is
  computed, and the **median CV of the lowest-CV decile** of candidates is reported as
  ``background_cv`` (their mean SUV as ``background_suv_mean``). Lowest decile: homogeneous
  tissue (liver, muscle, fat) rather than cubes straddling organs or lesions; its median:
  robust to a single freak cube. Like any "most homogeneous region" estimate it is biased
  low against the CV of a fixed liver VOI, but it moves with noise (activity, frame
  duration, reconstruction), which is what drift monitoring needs. It follows the spirit of
  the EANM guideline's liver-VOI noise check (Boellaard et al. 2015) without segmenting
  organs.
* **Total activity** — Σ (Bq/mL × voxel volume) over the whole volume (negatives included:
  they are noise around zero), in the image's reference time. Its ratio to the injected
  activity decayed to that time equals Σ SUV × voxel volume / body weight (density 1 g/mL);
  a whole-body FOV gives ≲ 1 (excreted and out-of-FOV activity are missing); well above 1 is a
  calibration, dose or weight error.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

BODY_FRACTION = 0.10
BODY_REFERENCE_PERCENTILE = 99.5
THRESHOLD_SAMPLE = 250_000
NOISE_CUBE_MM = 30.0
NOISE_DECILE = 0.10
PERCENTILES = (50.0, 90.0, 99.0)


@dataclass(frozen=True)
class Body:
    """The body mask and the reference it was thresholded from (image units)."""

    reference: float  # 99.5th percentile
    threshold: float
    mask: np.ndarray  # bool, same shape as the image


@dataclass(frozen=True)
class ImageFeatures:
    """SUV-scale features (None when SUV is unavailable or the image is empty)."""

    suv_max: float | None = None
    suv_mean: float | None = None
    suv_p50: float | None = None
    suv_p90: float | None = None
    suv_p99: float | None = None
    body_voxels: int | None = None
    body_volume_ml: float | None = None
    background_cv: float | None = None
    background_suv_mean: float | None = None
    background_regions: int | None = None
    total_activity_mbq: float | None = None
    total_activity_ratio: float | None = None


def body_mask(image: np.ndarray) -> Body:
    """Voxels above BODY_FRACTION of the 99.5th percentile (see the module docstring)."""
    flat = image.reshape(-1)
    step = max(1, flat.size // THRESHOLD_SAMPLE)
    if step > 1:
        step |= 1
        if step % 3 == 0:
            step += 2
    sample = flat[::step]
    reference = float(np.percentile(sample, BODY_REFERENCE_PERCENTILE))
    threshold = BODY_FRACTION * reference
    if reference <= 0:
        return Body(reference, threshold, np.zeros(image.shape, dtype=bool))
    return Body(reference, threshold, image > threshold)


def suv_statistics(image: np.ndarray, body: Body) -> ImageFeatures:
    """Mean and percentiles over the body, in the units of ``image``."""
    values = image[body.mask]
    if values.size == 0:
        return ImageFeatures(body_voxels=0)
    p50, p90, p99 = exact_percentiles(values, PERCENTILES)
    return ImageFeatures(
        suv_mean=float(values.mean(dtype=np.float64)),
        suv_p50=p50,
        suv_p90=p90,
        suv_p99=p99,
        body_voxels=int(values.size),
    )


def exact_percentiles(values: np.ndarray, percentiles: tuple[float, ...]) -> list[float]:
    """``numpy.percentile(values, percentiles)`` (linear interpolation), exactly, computed by
    one single-k selection per percentile on a shrinking tail: numpy's selection is SIMD-fast
    for one k but falls back to a much slower path for several at once."""
    n = values.size
    work = values.reshape(-1)
    offset = 0
    out = []
    for q in sorted(percentiles):
        h = (n - 1) * q / 100.0
        k = min(int(np.floor(h)), n - 1)
        fraction = h - k
        work = np.partition(work, k - offset)
        low = float(work[k - offset])
        high = float(work[k - offset + 1 :].min()) if fraction > 0 and k + 1 < n else low
        out.append(low + fraction * (high - low))
        work = work[k - offset :]
        offset = k
    order = np.argsort(np.argsort(percentiles))
    return [out[i] for i in order]


@dataclass(frozen=True)
class Background:
    cv: float | None
    mean: float | None  # in the units of the image it was computed on
    regions: int


def background_noise(
    image: np.ndarray, mask: np.ndarray, spacing_mm: tuple[float, float, float] | None
) -> Background:
    """Median CV of the lowest-CV decile of ~30 mm cubes inside the body."""
    size = _cube_voxels(spacing_mm)
    grid = tuple(n // k for n, k in zip(image.shape, size, strict=True))
    if min(grid) == 0:
        return Background(None, None, 0)
    inside = np.ones(grid, dtype=bool)
    for oz, oy, ox in itertools.product(*(sorted({0, k // 2, k - 1}) for k in size)):
        inside &= mask[
            oz : grid[0] * size[0] : size[0],
            oy : grid[1] * size[1] : size[1],
            ox : grid[2] * size[2] : size[2],
        ]
    count = int(inside.sum())
    if count == 0:
        return Background(None, None, 0)
    trim = image[: grid[0] * size[0], : grid[1] * size[1], : grid[2] * size[2]]
    tiles = trim.reshape(grid[0], size[0], grid[1], size[1], grid[2], size[2])
    cubes = tiles.transpose(0, 2, 4, 1, 3, 5)[inside].reshape(count, -1)
    means = cubes.mean(axis=1, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        cvs = cubes.std(axis=1, ddof=1, dtype=np.float64) / means
    usable = np.isfinite(cvs) & (means > 0)
    if not usable.any():
        return Background(None, None, 0)
    cvs, means = cvs[usable], means[usable]
    lowest = np.argsort(cvs)[: max(1, round(NOISE_DECILE * cvs.size))]
    return Background(float(np.median(cvs[lowest])), float(np.mean(means[lowest])), cvs.size)


def _cube_voxels(spacing_mm: tuple[float, float, float] | None) -> tuple[int, int, int]:
    """Cube edge in voxels per axis (z, y, x); one plane when there is no z spacing."""
    if spacing_mm is None:
        return (1, 8, 8)
    dz, dy, dx = spacing_mm
    through = 1 if dz <= 0 else max(2, round(NOISE_CUBE_MM / dz))
    return (through, max(2, round(NOISE_CUBE_MM / dy)), max(2, round(NOISE_CUBE_MM / dx)))
