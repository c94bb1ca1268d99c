"""Gamma camera intrinsic/extrinsic flood uniformity after NEMA NU 1 (uniformity section).

The steps, in the order this module applies them (implementations differ in the order and in
what the thresholds refer to; these are the choices made here, also in docs/PHANTOMS.md):

1. **Rebin** (NU 1: pixels of 6.4 mm ± 30%). Counts of ``f × f`` native pixels are summed,
   ``f`` the integer (per axis) that puts the pixel in 4.48–8.32 mm, closest to 6.4 mm. Native
   rows/columns left over are cropped equally from both sides. No integer → an error naming
   the pixel size.
2. **Useful field (UFOV)**. Either the detector area given in mm (``ufov_mm``, a rectangle
   centred on the image), or found from the field's actual shape: pixels of the *rebinned,
   unsmoothed* image with at least ``field_threshold`` (default 0.5) × the mean of the central
   region (the middle half of the image in each direction); the UFOV is the convex hull of the
   largest 4-connected group of those pixels (a detector's field is convex, a rectangle or a
   circle; the hull keeps a cold defect at the field's edge inside the UFOV instead of
   carving it out). A pixel belongs to a shape if ≥ 50% of its area lies inside it; for a
   rectangular field the hull is the group's bounding rectangle.
3. **CFOV** = the UFOV's shape scaled by ``cfov_ratio`` = 0.75 in each linear dimension about
   its centroid (NU 1: "the area of the UFOV scaled by 75% in linear dimensions"), same ≥ 50%
   rule: a circle's CFOV is the concentric circle, a rectangle's the concentric rectangle.
4. **Edge rules** (NU 1): pixels outside the UFOV count as zero. (a) Every pixel on the UFOV's
   edge (a 4-neighbour outside the UFOV), wherever the field's shape puts it, with fewer counts
   than ``edge_fraction`` = 0.75 × the mean counts of the CFOV is set to zero; (b) then every
   pixel with a zero 4-neighbour is set to zero too. Read literally, (b) always removes the
   outermost ring of the UFOV, and it does here. The remaining non-zero pixels are the UFOV
   analysed; the CFOV analysed is the CFOV shape's pixels among them.
5. **Smoothing** once with the 9-point kernel [[1,2,1],[2,4,2],[1,2,1]]/16, *after* masking,
   with the weights renormalised over the analysed pixels: no pixel outside the UFOV (or
   zeroed by the edge rules) pulls an edge pixel down, so a flat flood stays exactly flat.
6. **Integral uniformity** IU = 100·(max − min)/(max + min) over the UFOV and the CFOV.
   **Differential uniformity** DU = the largest 100·(max − min)/(max + min) over every run of
   5 contiguous analysed pixels in a row (and, separately, a column); rows and columns are
   reported and the worse is DU.
7. **Counts** (NU 1 asks ≥ 10 000 counts in the centre pixel after rebinning): the unsmoothed
   count of the pixel at the CFOV's centroid is reported, with a warning when it is lower.

Example::

    >>> import numpy as np
    >>> flood = FloodUniformity.from_array(np.full((64, 64), 2500.0), pixel_mm=3.2)
    >>> flood.analyze().results_data().heads[0].iu_ufov_pct
    0.0
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage
from scipy.spatial import ConvexHull

from phase4.phantoms.control import Tolerance, Verdict
from phase4.phantoms.image import PathsArg, PhantomInputError, load_image
from phase4.phantoms.results import ResultData, ToleranceLike, judge

NEMA_PIXEL_MM = 6.4
PIXEL_RANGE_MM = (4.48, 8.32)  # 6.4 mm ± 30%
SMOOTHING_KERNEL = np.array([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16.0
MIN_CENTRE_COUNTS = 10_000.0
DU_WINDOW = 5
# A daily flood's IU is expected below about 5% (routine gamma-camera QC; IU as NEMA NU 1-2018
# defines it): a tolerance, not an action level.
DEFAULT_TOLERANCES: dict[str, Tolerance] = {"iu_ufov_pct": Tolerance(upper_tolerance=5.0)}


def rebin_factor(pixel_mm: float) -> int:
    """The integer rebinning factor that brings ``pixel_mm`` into 4.48–8.32 mm (NU 1),
    closest to 6.4 mm; an error naming the pixel size when there is none."""
    if not np.isfinite(pixel_mm) or pixel_mm <= 0:
        raise PhantomInputError(f"pixel spacing {pixel_mm} mm is not a positive size")
    lo, hi = PIXEL_RANGE_MM
    candidates = [f for f in range(1, int(hi // pixel_mm) + 1) if lo <= f * pixel_mm <= hi]
    if not candidates:
        raise PhantomInputError(
            f"pixel spacing {pixel_mm:g} mm cannot be rebinned into {lo}–{hi} mm "
            "(NEMA NU 1 needs 6.4 mm ± 30% pixels made of whole native pixels)"
        )
    return min(candidates, key=lambda f: abs(f * pixel_mm - NEMA_PIXEL_MM))


def rebin(image: np.ndarray, factor: tuple[int, int]) -> np.ndarray:
    """Sum blocks of ``factor`` native pixels (counts add); leftovers cropped from both sides."""
    fy, fx = factor
    rows, cols = image.shape
    ny, nx = rows // fy, cols // fx
    if ny < DU_WINDOW or nx < DU_WINDOW:
        raise PhantomInputError(
            f"image of {rows}×{cols} pixels gives only {ny}×{nx} pixels after rebinning by "
            f"{fy}×{fx}: too small for uniformity"
        )
    y0, x0 = (rows - ny * fy) // 2, (cols - nx * fx) // 2
    cropped = image[y0 : y0 + ny * fy, x0 : x0 + nx * fx]
    return cropped.reshape(ny, fy, nx, fx).sum(axis=(1, 3))


@dataclass(frozen=True)
class FieldShape:
    """A convex field outline: vertices (row, column) in pixel edge coordinates (pixel j spans
    [j, j + 1)), counter-clockwise, as from :class:`scipy.spatial.ConvexHull`."""

    vertices: np.ndarray

    @classmethod
    def rectangle(cls, rect: tuple[float, float, float, float]) -> FieldShape:
        """The rectangle (row0, row1, col0, col1)."""
        r0, r1, c0, c1 = rect
        return cls.hull(np.array([[r0, c0], [r1, c0], [r1, c1], [r0, c1]], dtype=float))

    @classmethod
    def hull(cls, points: np.ndarray) -> FieldShape:
        """The convex hull of ``points`` (n, 2)."""
        hull = ConvexHull(points)
        return cls(points[hull.vertices].astype(float))

    @classmethod
    def of_pixels(cls, mask: np.ndarray) -> FieldShape:
        """The convex hull of the pixels of ``mask`` (their corners)."""
        rr, cc = np.nonzero(mask)
        corners = np.concatenate(
            [np.stack([rr + dr, cc + dc], axis=1) for dr in (0, 1) for dc in (0, 1)]
        )
        return cls.hull(np.unique(corners, axis=0).astype(float))

    def centroid(self) -> tuple[float, float]:
        """The area centroid (shoelace formula)."""
        y, x = self.vertices[:, 0], self.vertices[:, 1]
        y1, x1 = np.roll(y, -1), np.roll(x, -1)
        cross = x * y1 - x1 * y
        area = cross.sum() / 2.0
        return (
            float(((y + y1) * cross).sum() / (6.0 * area)),
            float(((x + x1) * cross).sum() / (6.0 * area)),
        )

    def scaled(self, ratio: float) -> FieldShape:
        """The shape scaled by ``ratio`` in each linear dimension about its centroid."""
        centre = np.array(self.centroid())
        return FieldShape(centre + (self.vertices - centre) * ratio)

    def pixels(self, shape: tuple[int, int]) -> np.ndarray:
        """Pixels with ≥ 50% of their area inside. Pixels whose square the outline crosses
        have their area inside measured exactly, by clipping the square to the half-planes
        (Sutherland–Hodgman) of the edges that cross it."""
        hull = ConvexHull(self.vertices)
        normals, offsets = hull.equations[:, :2], hull.equations[:, 2]  # inside: n·p + o ≤ 0
        rows, cols = shape
        centres = np.stack(
            np.meshgrid(np.arange(rows) + 0.5, np.arange(cols) + 0.5, indexing="ij"), axis=-1
        ).reshape(-1, 2)
        distances = centres @ normals.T + offsets  # > 0 outside each edge's line
        half_diagonal = np.sqrt(0.5)
        inside = (distances <= -half_diagonal).all(axis=1)
        near = ~inside & (distances < half_diagonal).all(axis=1)
        for k in np.flatnonzero(near):
            crossing = np.flatnonzero(np.abs(distances[k]) < half_diagonal)
            area = _clipped_square_area(centres[k], normals[crossing], offsets[crossing])
            inside[k] = area >= 0.5 - 1e-12
        return inside.reshape(rows, cols)


def _clipped_square_area(centre: np.ndarray, normals: np.ndarray, offsets: np.ndarray) -> float:
    """Area of the unit square about ``centre`` inside every half-plane n·p + o ≤ 0."""
    r, c = float(centre[0]), float(centre[1])
    polygon = [(r - 0.5, c - 0.5), (r + 0.5, c - 0.5), (r + 0.5, c + 0.5), (r - 0.5, c + 0.5)]
    for (nr, nc), o in zip(normals.tolist(), offsets.tolist(), strict=True):
        clipped: list[tuple[float, float]] = []
        for i, p in enumerate(polygon):
            q = polygon[(i + 1) % len(polygon)]
            dp, dq = nr * p[0] + nc * p[1] + o, nr * q[0] + nc * q[1] + o
            if dp <= 0:
                clipped.append(p)
            if (dp < 0 < dq) or (dq < 0 < dp):
                t = dp / (dp - dq)
                clipped.append((p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])))
        polygon = clipped
        if len(polygon) < 3:
            return 0.0
    return 0.5 * abs(
        sum(
            polygon[i][0] * polygon[(i + 1) % len(polygon)][1]
            - polygon[(i + 1) % len(polygon)][0] * polygon[i][1]
            for i in range(len(polygon))
        )
    )


def rectangle_pixels(shape: tuple[int, int], rect: tuple[float, float, float, float]) -> np.ndarray:
    """Pixels with ≥ 50% of their area inside ``rect`` = (row0, row1, col0, col1) in pixel
    edge coordinates (pixel j spans [j, j + 1))."""
    r0, r1, c0, c1 = rect

    def overlap(n: int, a: float, b: float) -> np.ndarray:
        edges = np.arange(n, dtype=float)
        return np.clip(np.minimum(edges + 1, b) - np.maximum(edges, a), 0.0, 1.0)

    area = overlap(shape[0], r0, r1)[:, None] * overlap(shape[1], c0, c1)[None, :]
    return area >= 0.5 - 1e-12


def smooth_within(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The 9-point smoothing with weights renormalised over ``mask`` (0 outside it)."""
    m = mask.astype(float)
    num = ndimage.convolve(image * m, SMOOTHING_KERNEL, mode="constant", cval=0.0)
    den = ndimage.convolve(m, SMOOTHING_KERNEL, mode="constant", cval=0.0)
    out = np.zeros_like(image, dtype=float)
    np.divide(num, den, out=out, where=mask & (den > 0))
    return out


def integral_uniformity(values: np.ndarray) -> float:
    """IU = 100·(max − min)/(max + min) (NU 1)."""
    if values.size == 0:
        return float("nan")
    hi, lo = float(values.max()), float(values.min())
    return 100.0 * (hi - lo) / (hi + lo) if hi + lo > 0 else float("nan")


def differential_uniformity(image: np.ndarray, mask: np.ndarray, axis: int) -> float:
    """Largest IU of any 5 contiguous analysed pixels along rows (axis=1) or columns (axis=0)
    (NU 1 differential uniformity); windows must lie wholly inside ``mask``."""
    img = image if axis == 1 else image.T
    msk = mask if axis == 1 else mask.T
    if img.shape[1] < DU_WINDOW:
        return float("nan")
    win = sliding_window_view(img, DU_WINDOW, axis=1)
    ok = sliding_window_view(msk, DU_WINDOW, axis=1).all(axis=-1)
    if not ok.any():
        return float("nan")
    hi, lo = win.max(axis=-1)[ok], win.min(axis=-1)[ok]
    with np.errstate(divide="ignore", invalid="ignore"):
        du = np.where(hi + lo > 0, 100.0 * (hi - lo) / (hi + lo), np.nan)
    return float(np.nanmax(du))


@dataclass(frozen=True)
class HeadUniformity(ResultData):
    """Uniformity of one detector head (one frame)."""

    head: int
    iu_ufov_pct: float
    du_ufov_pct: float
    du_ufov_rows_pct: float
    du_ufov_columns_pct: float
    iu_cfov_pct: float
    du_cfov_pct: float
    du_cfov_rows_pct: float
    du_cfov_columns_pct: float
    ufov_pixels: int
    cfov_pixels: int
    ufov_shape_pixels: tuple[int, int]  # rows × columns spanned by the UFOV's pixels (rebinned)
    cfov_mean_counts: float  # rebinned, unsmoothed
    centre_pixel_counts: float  # rebinned, unsmoothed, at the CFOV centre
    counts_adequate: bool  # centre pixel ≥ min_centre_counts (NU 1)
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class FloodUniformityResult(ResultData):
    """All heads of one flood acquisition, and the parameters used."""

    heads: tuple[HeadUniformity, ...]
    native_pixel_mm: tuple[float, float]
    rebin_factor: tuple[int, int]
    pixel_mm: tuple[float, float]
    field_threshold: float
    cfov_ratio: float
    edge_fraction: float
    min_centre_counts: float
    ufov_mm: tuple[float, float] | None
    standard: str = "NEMA NU 1 (intrinsic/extrinsic uniformity)"
    warnings: tuple[str, ...] = ()

    def metrics(self) -> dict[str, float]:
        """Flat metrics: per head with ``_h1``, ``_h2``... when there are several heads, and
        the worst head under the plain name."""
        names = (
            "iu_ufov_pct",
            "du_ufov_pct",
            "iu_cfov_pct",
            "du_cfov_pct",
        )
        out: dict[str, float] = {}
        for name in names:
            values = [getattr(h, name) for h in self.heads]
            out[name] = float(np.nanmax(values))
            if len(self.heads) > 1:
                for h in self.heads:
                    out[f"{name}_h{h.head}"] = float(getattr(h, name))
        out["centre_pixel_counts"] = float(min(h.centre_pixel_counts for h in self.heads))
        return out


@dataclass
class _HeadMaps:
    rebinned: np.ndarray
    smoothed: np.ndarray
    ufov: np.ndarray
    cfov: np.ndarray


class FloodUniformity:
    """NEMA NU 1 flood uniformity of a planar NM flood, one result per detector head.

    Construct with :meth:`from_dicom` (an NM file; each frame is a head, e.g. DetectorVector
    1, 2) or :meth:`from_array`, then :meth:`analyze`, then read :meth:`results`,
    :meth:`results_data`, :meth:`figure`, :meth:`verdicts`.
    """

    def __init__(
        self,
        frames: np.ndarray,
        pixel_mm: float | tuple[float, float],
        *,
        source: Sequence[str] = (),
    ) -> None:
        array = np.asarray(frames, dtype=float)
        if array.ndim == 2:
            array = array[None]
        if array.ndim != 3 or array.shape[0] == 0:
            raise PhantomInputError(
                f"a flood needs one or more 2-D frames, got an array of shape {array.shape}"
            )
        if not np.all(np.isfinite(array)) or (array < 0).any():
            raise PhantomInputError("flood counts must be finite and not negative")
        spacing = (pixel_mm, pixel_mm) if np.isscalar(pixel_mm) else tuple(pixel_mm)  # type: ignore[arg-type]
        self.frames = array
        self.pixel_mm = (float(spacing[0]), float(spacing[1]))
        self.source = tuple(source)
        self._result: FloodUniformityResult | None = None
        self._maps: list[_HeadMaps] = []

    @classmethod
    def from_dicom(cls, path: PathsArg) -> FloodUniformity:
        """A planar NM flood: one frame per head (a multi-frame NM Image)."""
        image = load_image(path, modalities=("NM",), what="flood")
        if image.tomographic:
            raise PhantomInputError(
                f"{Path(image.source[0]).name}: ImageType says RECON TOMO; a flood must be a "
                "planar (static) NM image"
            )
        return cls(image.values, image.spacing_mm[1:], source=image.source)

    @classmethod
    def from_array(
        cls, array: np.ndarray, pixel_mm: float | tuple[float, float]
    ) -> FloodUniformity:
        """Counts (rows, columns) or (heads, rows, columns) and the pixel size in mm (one value
        or (between rows, between columns))."""
        return cls(array, pixel_mm)

    def analyze(
        self,
        *,
        field_threshold: float = 0.5,
        ufov_mm: tuple[float, float] | None = None,
        cfov_ratio: float = 0.75,
        edge_fraction: float = 0.75,
        min_centre_counts: float = MIN_CENTRE_COUNTS,
    ) -> FloodUniformity:
        """Run NEMA NU 1 uniformity on every head.

        ``field_threshold``: fraction of the central mean above which a pixel is in the useful
        field (ignored when ``ufov_mm`` = (width, height) of the detector's UFOV is given).
        ``cfov_ratio``: CFOV linear size relative to the UFOV (NU 1: 0.75). ``edge_fraction``:
        edge pixels below this fraction of the CFOV mean are dropped (NU 1: 0.75).
        ``min_centre_counts``: NU 1 asks at least 10 000 counts in the centre pixel.
        """
        if not 0 < field_threshold < 1:
            raise ValueError(f"field_threshold must be in (0, 1), not {field_threshold}")
        if not 0 < cfov_ratio <= 1:
            raise ValueError(f"cfov_ratio must be in (0, 1], not {cfov_ratio}")
        factor = (rebin_factor(self.pixel_mm[0]), rebin_factor(self.pixel_mm[1]))
        pixel = (self.pixel_mm[0] * factor[0], self.pixel_mm[1] * factor[1])
        heads: list[HeadUniformity] = []
        self._maps = []
        for index, frame in enumerate(self.frames, start=1):
            head, maps = self._analyze_head(
                index,
                rebin(frame, factor),
                pixel,
                field_threshold,
                ufov_mm,
                cfov_ratio,
                edge_fraction,
                min_centre_counts,
            )
            heads.append(head)
            self._maps.append(maps)
        warnings = tuple(f"head {h.head}: {w}" for h in heads for w in h.warnings)
        self._result = FloodUniformityResult(
            heads=tuple(heads),
            native_pixel_mm=self.pixel_mm,
            rebin_factor=factor,
            pixel_mm=pixel,
            field_threshold=field_threshold,
            cfov_ratio=cfov_ratio,
            edge_fraction=edge_fraction,
            min_centre_counts=min_centre_counts,
            ufov_mm=ufov_mm,
            warnings=warnings,
        )
        return self

    @staticmethod
    def _analyze_head(
        index: int,
        img: np.ndarray,
        pixel: tuple[float, float],
        field_threshold: float,
        ufov_mm: tuple[float, float] | None,
        cfov_ratio: float,
        edge_fraction: float,
        min_centre_counts: float,
    ) -> tuple[HeadUniformity, _HeadMaps]:
        rows, cols = img.shape
        if ufov_mm is not None:
            if len(ufov_mm) != 2 or not all(math.isfinite(v) and v > 0 for v in ufov_mm):
                raise PhantomInputError(f"ufov_mm {ufov_mm} must be two positive sizes in mm")
            height = ufov_mm[1] / pixel[0]
            width = ufov_mm[0] / pixel[1]
            if height > rows + 1e-9 or width > cols + 1e-9:
                raise PhantomInputError(
                    f"ufov_mm {ufov_mm} is larger than the image ({cols * pixel[1]:.1f} × "
                    f"{rows * pixel[0]:.1f} mm)"
                )
            rect = (
                (rows - height) / 2,
                (rows + height) / 2,
                (cols - width) / 2,
                (cols + width) / 2,
            )
            ufov_shape = FieldShape.rectangle(rect)
            ufov_field = rectangle_pixels(img.shape, rect)
        else:
            centre = img[rows // 4 : rows - rows // 4, cols // 4 : cols - cols // 4]
            level = float(centre.mean())
            if level <= 0:
                raise PhantomInputError(f"head {index}: no counts in the centre of the image")
            labels, n = ndimage.label(img >= field_threshold * level)
            if n == 0:
                raise PhantomInputError(f"head {index}: no useful field found")
            sizes = ndimage.sum_labels(np.ones_like(img), labels, index=np.arange(1, n + 1))
            biggest = labels == (int(np.argmax(sizes)) + 1)
            ufov_shape = FieldShape.of_pixels(biggest)
            ufov_field = ufov_shape.pixels(img.shape)
        cfov_shape = ufov_shape.scaled(cfov_ratio)
        cfov_candidates = cfov_shape.pixels(img.shape) & ufov_field
        if not cfov_candidates.any():
            raise PhantomInputError(f"head {index}: the CFOV holds no pixel")
        cfov_mean = float(img[cfov_candidates].mean())
        # Edge rule (a): every edge pixel of the UFOV's shape under edge_fraction × CFOV mean
        # → zero.
        padded = np.pad(ufov_field, 1, constant_values=False)
        inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
        edge = ufov_field & ~inner
        kept = ufov_field & ~(edge & (img < edge_fraction * cfov_mean))
        kept &= img > 0
        # Edge rule (b): pixels with a zero 4-neighbour (outside the UFOV counts as zero) → zero.
        p = np.pad(kept, 1, constant_values=False)
        ufov = kept & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
        cfov = cfov_candidates & ufov
        if not ufov.any() or not cfov.any():
            raise PhantomInputError(f"head {index}: no pixel left in the UFOV after the edge rules")
        smoothed = smooth_within(img, ufov)
        du = {
            (name, axis): differential_uniformity(smoothed, mask, axis)
            for name, mask in (("ufov", ufov), ("cfov", cfov))
            for axis in (0, 1)
        }
        centre_row, centre_col = cfov_shape.centroid()
        centre_counts = float(img[int(centre_row), int(centre_col)])
        adequate = centre_counts >= min_centre_counts
        warnings = []
        if not adequate:
            warnings.append(
                f"centre pixel has {centre_counts:.0f} counts after rebinning; NEMA NU 1 asks "
                f"for at least {min_centre_counts:.0f}, so noise inflates IU and DU"
            )
        head = HeadUniformity(
            head=index,
            iu_ufov_pct=integral_uniformity(smoothed[ufov]),
            du_ufov_pct=max(du[("ufov", 0)], du[("ufov", 1)]),
            du_ufov_rows_pct=du[("ufov", 1)],
            du_ufov_columns_pct=du[("ufov", 0)],
            iu_cfov_pct=integral_uniformity(smoothed[cfov]),
            du_cfov_pct=max(du[("cfov", 0)], du[("cfov", 1)]),
            du_cfov_rows_pct=du[("cfov", 1)],
            du_cfov_columns_pct=du[("cfov", 0)],
            ufov_pixels=int(ufov.sum()),
            cfov_pixels=int(cfov.sum()),
            ufov_shape_pixels=(
                int(np.ptp(np.nonzero(ufov_field)[0])) + 1,
                int(np.ptp(np.nonzero(ufov_field)[1])) + 1,
            ),
            cfov_mean_counts=cfov_mean,
            centre_pixel_counts=centre_counts,
            counts_adequate=adequate,
            warnings=tuple(warnings),
        )
        return head, _HeadMaps(img, smoothed, ufov, cfov)

    # -- outputs ---------------------------------------------------------------------------

    def results_data(self) -> FloodUniformityResult:
        if self._result is None:
            raise RuntimeError("call analyze() before reading results")
        return self._result

    def metrics(self) -> dict[str, float]:
        return self.results_data().metrics()

    def results(self) -> str:
        r = self.results_data()
        lines = [
            "Flood uniformity (NEMA NU 1)",
            f"Pixels {r.native_pixel_mm[0]:g} mm rebinned ×{r.rebin_factor[0]} to "
            f"{r.pixel_mm[0]:.2f} mm; 9-point smoothing; CFOV {r.cfov_ratio:.0%} of UFOV",
        ]
        for h in r.heads:
            lines.append(
                f"Head {h.head}: UFOV IU {h.iu_ufov_pct:.2f}% DU {h.du_ufov_pct:.2f}% | "
                f"CFOV IU {h.iu_cfov_pct:.2f}% DU {h.du_cfov_pct:.2f}% | "
                f"centre pixel {h.centre_pixel_counts:.0f} counts"
            )
        lines.extend(f"Warning: {w}" for w in r.warnings)
        return "\n".join(lines)

    def verdicts(self, tolerances: Mapping[str, ToleranceLike] | None = None) -> dict[str, Verdict]:
        """Each metric with a tolerance → pass / tolerance / action (default: IU UFOV ≤ 5%)."""
        return judge(self.metrics(), DEFAULT_TOLERANCES if tolerances is None else tolerances)

    def figure(self) -> Any:
        """Plotly heatmaps of each head's smoothed UFOV (zero outside) with the CFOV outlined."""
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        r = self.results_data()
        fig = make_subplots(
            rows=1,
            cols=len(r.heads),
            subplot_titles=[f"Head {h.head}: IU {h.iu_ufov_pct:.2f}% (UFOV)" for h in r.heads],
        )
        for col, maps in enumerate(self._maps, start=1):
            shown = np.where(maps.ufov, maps.smoothed, np.nan)
            fig.add_trace(go.Heatmap(z=shown, colorscale="Viridis", showscale=col == 1), 1, col)
            rr, cc = np.nonzero(maps.cfov)
            fig.add_shape(
                type="rect",
                x0=cc.min() - 0.5,
                x1=cc.max() + 0.5,
                y0=rr.min() - 0.5,
                y1=rr.max() + 0.5,
                line={"color": "white", "dash": "dash"},
                row=1,
                col=col,
            )
        fig.update_layout(title="Flood uniformity (NEMA NU 1)")
        return fig


__all__ = [
    "DEFAULT_TOLERANCES",
    "FloodUniformity",
    "FloodUniformityResult",
    "HeadUniformity",
    "field",
    "rebin_factor",
]
