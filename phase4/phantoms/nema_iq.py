"""NEMA NU 2 image quality (IEC body phantom): sphere recovery, background, lung, EARL bands.

Geometry used (NEMA NU 2-2018 §7 / IEC 61675-1 body phantom): six spheres of inner diameter
10, 13, 17, 22, 28, 37 mm with centres on a ring of radius 57.2 mm in one transverse plane,
adjacent sizes 60° apart, around a lung insert (about 50 mm across) on the ring's axis.

How the spheres are found: the sphere plane is the count-weighted axial centroid of the
voxels above half the (slightly smoothed) maximum; in that plane the two largest hot blobs
(above half-way between background and maximum) are the 37 and 28 mm spheres; the ring centre
is the point 57.2 mm from both on the side where the other four spheres' predicted positions
are brightest; each sphere centre is then refined in 3-D (± ``search_mm``) to the position
where the mean over a ball of the sphere's radius is highest (a matched filter).

Recovery coefficients (the true sphere concentration C_S is the fill decay-corrected to the
image's reference time):

* **RCmax** = the maximum voxel within the sphere (voxel centres within R + half a voxel
  diagonal of the refined centre) / C_S.
* **RCmean (A50)** = the mean of the voxels at or above B + 0.5·(max − B), B the measured
  background mean, connected (26-neighbourhood) to the maximum voxel and within R + 10 mm of
  the centre, / C_S. The isocontour is background-corrected; the mean itself is not (EARL).
* **RCpeak** = the highest mean over a 1 mL sphere (radius 6.20 mm, voxel centres inside)
  whose centre lies within the sphere, / C_S.
* **Percent contrast** Q_H (NEMA NU 2 §7) = 100·(C_H/C_B − 1)/(a_H/a_B − 1), C_H the mean in
  a circle of the sphere's diameter on the sphere's central slice, C_B the mean of the
  background circles of that diameter; a_H/a_B the true ratio (needs ``background_kbq_ml``).
* **Background variability** N = 100·SD/mean of the background circle means: 12 circles per
  slice (37 mm, concentric smaller ones for each sphere size) on the sphere plane and ±10,
  ±20 mm. Circle centres: ≥ 15 mm from the phantom edge, ≥ 10 mm from any sphere and from the
  lung insert, spread out by farthest-point sampling.
* **Lung residual** = 100·(mean in a 30 mm circle on the lung insert) / C_B(37 mm), averaged
  over the same five slices.
* **EARL compliance** per sphere: RCmean and RCmax within the bands of ``phase4.phantoms.earl``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from scipy import ndimage

from phase4.phantoms.control import Verdict
from phase4.phantoms.cylinder import F18_HALF_LIFE_S, decay_factor
from phase4.phantoms.earl import EARL_BANDS, SPHERE_DIAMETERS_MM, within
from phase4.phantoms.image import HeaderFacts, PathsArg, PhantomInputError, load_image
from phase4.phantoms.results import ResultData, ToleranceLike, judge

RING_RADIUS_MM = 57.2
SPHERE_ORDER_MM: tuple[float, ...] = (37.0, 28.0, 22.0, 17.0, 13.0, 10.0)  # round the ring
ONE_ML_RADIUS_MM = (3.0 / (4.0 * math.pi)) ** (1.0 / 3.0) * 10.0  # 6.2035 mm
BACKGROUND_ROIS_PER_SLICE = 12
BACKGROUND_SLICE_OFFSETS_MM = (-20.0, -10.0, 0.0, 10.0, 20.0)
BACKGROUND_ROI_DIAMETER_MM = 37.0
EDGE_MARGIN_MM = 15.0
SPHERE_GAP_MM = 10.0
LUNG_RADIUS_MM = 25.0
LUNG_ROI_DIAMETER_MM = 30.0


@dataclass(frozen=True)
class SphereResult(ResultData):
    diameter_mm: float
    volume_ml: float
    center_mm: tuple[float, float, float]  # x, y, z
    center_index: tuple[int, int, int]  # slice, row, column
    max_kbq_ml: float
    rc_max: float
    rc_mean: float
    rc_peak: float
    a50_voxels: int
    a50_volume_ml: float
    contrast_recovery_pct: float | None
    background_variability_pct: float
    earl: dict[str, dict[str, bool]]  # standard → metric → within the band


@dataclass(frozen=True)
class NEMAImageQualityResult(ResultData):
    spheres: tuple[SphereResult, ...]  # 10 → 37 mm
    sphere_kbq_ml: float  # true, at the image's reference time
    background_kbq_ml: float | None  # true, at the reference time (if given)
    background_measured_kbq_ml: float
    lung_residual_pct: float
    sphere_plane_z_mm: float
    ring_center_mm: tuple[float, float]
    decay_factor: float
    earl_compliant: dict[str, bool]
    fill_time: datetime | None
    reference_time: datetime | None
    warnings: tuple[str, ...] = ()

    def sphere(self, diameter_mm: float) -> SphereResult:
        for s in self.spheres:
            if s.diameter_mm == float(diameter_mm):
                return s
        raise KeyError(f"no {diameter_mm} mm sphere")

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for s in self.spheres:
            d = f"{s.diameter_mm:g}mm"
            out[f"rc_max_{d}"] = s.rc_max
            out[f"rc_mean_{d}"] = s.rc_mean
            out[f"rc_peak_{d}"] = s.rc_peak
            out[f"background_variability_{d}_pct"] = s.background_variability_pct
            if s.contrast_recovery_pct is not None:
                out[f"contrast_recovery_{d}_pct"] = s.contrast_recovery_pct
        out["lung_residual_pct"] = self.lung_residual_pct
        out["background_kbq_ml"] = self.background_measured_kbq_ml
        for standard, ok in self.earl_compliant.items():
            out[f"{standard.lower()}_compliant"] = 1.0 if ok else 0.0
        return out


def _ball_offsets(radius_mm: float, spacing: Sequence[float]) -> np.ndarray:
    """Integer (dk, dj, di) offsets of voxel centres within ``radius_mm`` of a voxel centre."""
    n = [math.ceil(radius_mm / s) for s in spacing]
    k, j, i = np.mgrid[-n[0] : n[0] + 1, -n[1] : n[1] + 1, -n[2] : n[2] + 1]
    d2 = (k * spacing[0]) ** 2 + (j * spacing[1]) ** 2 + (i * spacing[2]) ** 2
    keep = d2 <= radius_mm**2 + 1e-9
    return np.stack([k[keep], j[keep], i[keep]], axis=1)


def _ball_kernel(radius_mm: float, spacing: Sequence[float]) -> np.ndarray:
    n = [math.ceil(radius_mm / s) for s in spacing]
    k, j, i = np.mgrid[-n[0] : n[0] + 1, -n[1] : n[1] + 1, -n[2] : n[2] + 1]
    d2 = (k * spacing[0]) ** 2 + (j * spacing[1]) ** 2 + (i * spacing[2]) ** 2
    kernel = (d2 <= radius_mm**2 + 1e-9).astype(float)
    return kernel / kernel.sum()


class NEMAImageQuality:
    """NEMA NU 2 image quality / EARL recovery on an IEC body phantom PET series.

    :meth:`from_dicom` (a PET series, Units BQML) or :meth:`from_array`, then
    :meth:`analyze` with the true sphere concentration, then :meth:`results`,
    :meth:`results_data`, :meth:`figure`, :meth:`verdicts`.
    """

    def __init__(
        self,
        volume: np.ndarray,
        spacing_mm: tuple[float, float, float],
        *,
        origin_mm: tuple[float, float] = (0.0, 0.0),
        z_mm: Sequence[float] | None = None,
        header: HeaderFacts | None = None,
        source: Sequence[str] = (),
    ) -> None:
        array = np.asarray(volume, dtype=float)
        if array.ndim != 3 or min(array.shape) < 3:
            raise PhantomInputError(f"the IQ phantom needs a 3-D volume, got shape {array.shape}")
        if not np.all(np.isfinite(array)):
            raise PhantomInputError("the volume holds non-finite values")
        if len(spacing_mm) != 3 or not all(s > 0 and math.isfinite(s) for s in spacing_mm):
            raise PhantomInputError(f"spacing_mm must be 3 positive sizes, not {spacing_mm}")
        self.volume = array
        self.spacing_mm = tuple(float(s) for s in spacing_mm)
        self.origin_mm = origin_mm
        self.z_mm = None if z_mm is None else np.asarray(z_mm, dtype=float)
        self.header = header or HeaderFacts(modality="PT", units="BQML")
        self.source = tuple(source)
        self._result: NEMAImageQualityResult | None = None
        self._background_centres: list[tuple[int, int]] = []

    @classmethod
    def from_dicom(cls, paths: PathsArg) -> NEMAImageQuality:
        image = load_image(paths, modalities=("PT",), what="NEMA IQ phantom")
        if image.header.units not in ("BQML", None):
            raise PhantomInputError(
                f"Units {image.header.units}: recovery coefficients need activity "
                "concentration (BQML)"
            )
        return cls(
            image.values,
            image.spacing_mm,
            origin_mm=image.origin_mm,
            z_mm=image.z_mm,
            header=image.header,
            source=image.source,
        )

    @classmethod
    def from_array(
        cls,
        volume: np.ndarray,
        spacing_mm: tuple[float, float, float],
        *,
        origin_mm: tuple[float, float] = (0.0, 0.0),
        z_mm: Sequence[float] | None = None,
    ) -> NEMAImageQuality:
        """A (slices, rows, columns) volume in Bq/mL; pixel [0, 0] at ``origin_mm`` (x, y)."""
        return cls(volume, spacing_mm, origin_mm=origin_mm, z_mm=z_mm)

    # -- geometry helpers ------------------------------------------------------------------

    def _mm(self, k: float, j: float, i: float) -> tuple[float, float, float]:
        x = self.origin_mm[0] + i * self.spacing_mm[2]
        y = self.origin_mm[1] + j * self.spacing_mm[1]
        if self.z_mm is not None and self.z_mm.size > 1:
            z = float(np.interp(k, np.arange(self.z_mm.size), self.z_mm))
        else:
            z = k * self.spacing_mm[0]
        return (float(x), float(y), float(z))

    def analyze(
        self,
        *,
        sphere_kbq_ml: float,
        background_kbq_ml: float | None = None,
        fill_time: datetime | None = None,
        reference_time: datetime | None = None,
        half_life_s: float | None = None,
        search_mm: float = 8.0,
    ) -> NEMAImageQuality:
        """Find the spheres and measure them (definitions in the module docstring).

        ``sphere_kbq_ml`` (and ``background_kbq_ml``, for percent contrast) are the fill
        concentrations at ``fill_time`` (default: the header's radiopharmaceutical start;
        None and none in the header: no decay correction); they are decay-corrected to
        ``reference_time`` (default: the image's decay-correction reference).
        """
        if not sphere_kbq_ml > 0:
            raise ValueError(f"sphere_kbq_ml must be positive, not {sphere_kbq_ml}")
        warnings: list[str] = []
        decay, fill_t, ref_t = self._decay(fill_time, reference_time, half_life_s)
        true_sphere = sphere_kbq_ml * decay * 1000.0  # Bq/mL
        true_background = None if background_kbq_ml is None else background_kbq_ml * decay * 1000
        v = self.volume
        sp = self.spacing_mm
        smooth = ndimage.gaussian_filter(v, sigma=[max(0.5, 2.0 / s) for s in sp])
        gmax = float(smooth.max())
        if gmax <= 0:
            raise PhantomInputError("the volume is empty (no positive values)")
        hot = smooth >= 0.5 * gmax
        weights = smooth * hot
        k_plane = float((weights.sum(axis=(1, 2)) * np.arange(v.shape[0])).sum() / weights.sum())
        k0 = round(k_plane)
        plane = smooth[max(0, k0 - 1) : k0 + 2].mean(axis=0)
        body_pixels = plane[plane > 0.05 * gmax]
        b0 = float(np.median(body_pixels))
        ring_centre, positions = self._find_ring(plane, b0)
        centres: dict[float, tuple[int, int, int]] = {}
        for diameter, (row, col) in zip(SPHERE_ORDER_MM, positions, strict=True):
            centres[diameter] = self._refine(v, (k_plane, row, col), diameter / 2, search_mm)
        bg_slices = self._slices_at_offsets(k_plane)
        body2d = ndimage.binary_fill_holes(plane > 0.5 * b0)
        bg_centres = self._background_centres_for(body2d, ring_centre, centres)
        self._background_centres = bg_centres
        bg_means = {
            d: self._circle_means(v, bg_slices, bg_centres, d / 2) for d in SPHERE_DIAMETERS_MM
        }
        c_b37 = float(np.mean(bg_means[37.0]))
        lung_means = self._circle_means(
            v, bg_slices, [self._px(ring_centre)], LUNG_ROI_DIAMETER_MM / 2
        )
        lung_residual = 100.0 * float(np.mean(lung_means)) / c_b37
        spheres = []
        for diameter in SPHERE_DIAMETERS_MM:
            spheres.append(
                self._measure_sphere(
                    diameter,
                    centres[diameter],
                    true_sphere,
                    true_background,
                    c_b37,
                    np.asarray(bg_means[diameter]),
                )
            )
        compliant = {
            standard: all(all(s.earl[standard].values()) for s in spheres)
            for standard in EARL_BANDS
        }
        if true_background is not None and abs(c_b37 / true_background - 1) > 0.1:
            warnings.append(
                f"measured background {c_b37 / 1000:.3f} kBq/mL is "
                f"{100 * (c_b37 / true_background - 1):+.1f}% from the fill"
            )
        self._result = NEMAImageQualityResult(
            spheres=tuple(spheres),
            sphere_kbq_ml=true_sphere / 1000.0,
            background_kbq_ml=None if true_background is None else true_background / 1000.0,
            background_measured_kbq_ml=c_b37 / 1000.0,
            lung_residual_pct=lung_residual,
            sphere_plane_z_mm=self._mm(k_plane, 0, 0)[2],
            ring_center_mm=self._mm(k_plane, *ring_centre)[:2],
            decay_factor=decay,
            earl_compliant=compliant,
            fill_time=fill_t,
            reference_time=ref_t,
            warnings=tuple(warnings),
        )
        return self

    def _decay(
        self, fill_time: datetime | None, reference_time: datetime | None, half_life_s: float | None
    ) -> tuple[float, datetime | None, datetime | None]:
        h = self.header
        fill_t = fill_time or h.radiopharmaceutical_start
        if reference_time is None:
            correction = (h.decay_correction or "START").upper()
            reference_time = h.radiopharmaceutical_start if correction == "ADMIN" else h.series_time
        if fill_t is None or reference_time is None:
            return 1.0, fill_t, reference_time
        t_half = half_life_s or h.half_life_s or F18_HALF_LIFE_S
        return decay_factor(fill_t, reference_time, t_half), fill_t, reference_time

    @staticmethod
    def _px(point: tuple[float, float]) -> tuple[int, int]:
        return (round(point[0]), round(point[1]))

    def _find_ring(
        self, plane: np.ndarray, b0: float
    ) -> tuple[tuple[float, float], list[tuple[float, float]]]:
        """Ring centre and the six predicted sphere centres (row, col), 37 mm first."""
        _, dy, dx = self.spacing_mm
        top = float(plane.max())
        labels, n = ndimage.label(plane >= b0 + 0.5 * (top - b0))
        if n < 2:
            raise PhantomInputError(
                "could not find the two largest spheres (37 and 28 mm) in the sphere plane: "
                f"{n} hot region(s) above half-way between background and maximum"
            )
        sizes = ndimage.sum_labels(np.ones_like(plane), labels, np.arange(1, n + 1))
        order = np.argsort(sizes)[::-1][:2] + 1
        blobs = [ndimage.center_of_mass(plane * (labels == lab)) for lab in order]
        # work in mm (rows → y, cols → x)
        p37 = np.array([blobs[0][0] * dy, blobs[0][1] * dx])
        p28 = np.array([blobs[1][0] * dy, blobs[1][1] * dx])
        chord = p28 - p37
        length = float(np.hypot(*chord))
        if not 0.5 * RING_RADIUS_MM < length < 1.5 * RING_RADIUS_MM:
            raise PhantomInputError(
                f"the two largest hot regions are {length:.1f} mm apart; the 37 and 28 mm "
                f"spheres of the IEC phantom are {RING_RADIUS_MM} mm apart"
            )
        mid = (p37 + p28) / 2
        h = math.sqrt(max(0.0, RING_RADIUS_MM**2 - (length / 2) ** 2))
        normal = np.array([-chord[1], chord[0]]) / length
        best: tuple[float, np.ndarray, list[np.ndarray]] | None = None
        for centre in (mid + h * normal, mid - h * normal):
            a37 = math.atan2(*(p37 - centre))
            a28 = math.atan2(*(p28 - centre))
            step = math.copysign(math.pi / 3, math.remainder(a28 - a37, 2 * math.pi))
            predicted = [
                centre
                + RING_RADIUS_MM * np.array([math.sin(a37 + n_ * step), math.cos(a37 + n_ * step)])
                for n_ in range(6)
            ]
            score = float(
                sum(
                    ndimage.map_coordinates(plane, [[p[0] / dy], [p[1] / dx]], order=1)[0]
                    for p in predicted[2:]
                )
            )
            if best is None or score > best[0]:
                best = (score, centre, predicted)
        assert best is not None
        _, centre, predicted = best
        to_px = [(float(p[0] / dy), float(p[1] / dx)) for p in predicted]
        return (float(centre[0] / dy), float(centre[1] / dx)), to_px

    def _refine(
        self, v: np.ndarray, guess: tuple[float, float, float], radius_mm: float, search_mm: float
    ) -> tuple[int, int, int]:
        """The voxel within ± search_mm of ``guess`` where the mean over a ball of the sphere's
        radius is highest."""
        kernel = _ball_kernel(radius_mm, self.spacing_mm)
        half = [math.ceil(search_mm / s) for s in self.spacing_mm]
        pad = [(kernel.shape[a] // 2) for a in range(3)]
        g = [round(c) for c in guess]
        lo = [max(0, g[a] - half[a] - pad[a]) for a in range(3)]
        hi = [min(v.shape[a], g[a] + half[a] + pad[a] + 1) for a in range(3)]
        sub = v[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        wlo = [max(0, g[a] - half[a] - lo[a]) for a in range(3)]
        whi = [min(sub.shape[a], g[a] + half[a] + 1 - lo[a]) for a in range(3)]
        if sub.size == 0 or any(whi[a] <= wlo[a] for a in range(3)):
            raise PhantomInputError(
                f"a sphere of {2 * radius_mm:g} mm is expected at voxel {tuple(g)}, outside the "
                f"image of {v.shape} voxels: not a NEMA IQ phantom in this field of view"
            )
        score = ndimage.convolve(sub, kernel, mode="nearest")
        window = np.full(score.shape, -np.inf)
        window[wlo[0] : whi[0], wlo[1] : whi[1], wlo[2] : whi[2]] = score[
            wlo[0] : whi[0], wlo[1] : whi[1], wlo[2] : whi[2]
        ]
        best = np.unravel_index(int(np.argmax(window)), window.shape)
        return (int(best[0] + lo[0]), int(best[1] + lo[1]), int(best[2] + lo[2]))

    def _slices_at_offsets(self, k_plane: float) -> list[int]:
        dz = self.spacing_mm[0]
        out = []
        for off in BACKGROUND_SLICE_OFFSETS_MM:
            k = round(k_plane + off / dz)
            if 0 <= k < self.volume.shape[0]:
                out.append(k)
        return sorted(set(out))

    def _background_centres_for(
        self,
        body2d: np.ndarray,
        ring_centre: tuple[float, float],
        centres: Mapping[float, tuple[int, int, int]],
    ) -> list[tuple[int, int]]:
        _, dy, dx = self.spacing_mm
        r_roi = BACKGROUND_ROI_DIAMETER_MM / 2
        edge = ndimage.distance_transform_edt(body2d, sampling=(dy, dx))
        rows, cols = np.mgrid[0 : body2d.shape[0], 0 : body2d.shape[1]]
        allowed = edge >= r_roi + EDGE_MARGIN_MM
        ry, rx = ring_centre
        lung_d = np.hypot((rows - ry) * dy, (cols - rx) * dx)
        allowed &= lung_d >= LUNG_RADIUS_MM + r_roi + SPHERE_GAP_MM
        for diameter, (_, j, i) in centres.items():
            d = np.hypot((rows - j) * dy, (cols - i) * dx)
            allowed &= d >= diameter / 2 + r_roi + SPHERE_GAP_MM
        candidates = np.argwhere(allowed)
        if len(candidates) < BACKGROUND_ROIS_PER_SLICE:
            raise PhantomInputError(
                "no room for 12 background ROIs of 37 mm at least 15 mm inside the phantom "
                "and clear of the spheres and lung insert"
            )
        mm = candidates * np.array([dy, dx])
        centre_mm = np.array([ry * dy, rx * dx])
        chosen = [int(np.argmax(np.hypot(*(mm - centre_mm).T)))]
        dist = np.hypot(*(mm - mm[chosen[0]]).T)
        while len(chosen) < BACKGROUND_ROIS_PER_SLICE:
            nxt = int(np.argmax(dist))
            chosen.append(nxt)
            dist = np.minimum(dist, np.hypot(*(mm - mm[nxt]).T))
        return [(int(candidates[c][0]), int(candidates[c][1])) for c in chosen]

    def _circle_means(
        self,
        v: np.ndarray,
        slices: Sequence[int],
        centres: Sequence[tuple[int, int]],
        radius_mm: float,
    ) -> list[float]:
        _, dy, dx = self.spacing_mm
        ny, nx = math.ceil(radius_mm / dy), math.ceil(radius_mm / dx)
        jj, ii = np.mgrid[-ny : ny + 1, -nx : nx + 1]
        disc = (jj * dy) ** 2 + (ii * dx) ** 2 <= radius_mm**2 + 1e-9
        offsets = np.argwhere(disc) - np.array([ny, nx])
        means = []
        for k in slices:
            for j, i in centres:
                rr = np.clip(offsets[:, 0] + j, 0, v.shape[1] - 1)
                cc = np.clip(offsets[:, 1] + i, 0, v.shape[2] - 1)
                means.append(float(v[k, rr, cc].mean()))
        return means

    def _measure_sphere(
        self,
        diameter: float,
        centre: tuple[int, int, int],
        true_sphere: float,
        true_background: float | None,
        c_b37: float,
        bg_means: np.ndarray,
    ) -> SphereResult:
        v = self.volume
        sp = self.spacing_mm
        radius = diameter / 2
        half_diag = 0.5 * math.sqrt(sum(s * s for s in sp))

        def voxels(offsets: np.ndarray, at: Sequence[int]) -> np.ndarray:
            idx = offsets + np.asarray(at)
            ok = np.all((idx >= 0) & (idx < np.array(v.shape)), axis=1)
            return idx[ok]

        inside = voxels(_ball_offsets(radius + half_diag, sp), centre)
        values = v[inside[:, 0], inside[:, 1], inside[:, 2]]
        peak_at = inside[int(np.argmax(values))]
        vmax = float(values.max())
        # A50: background-corrected 50% isocontour, connected to the maximum.
        region = voxels(_ball_offsets(radius + 10.0, sp), centre)
        lo = region.min(axis=0)
        hi = region.max(axis=0) + 1
        box = v[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        in_region = np.zeros(box.shape, dtype=bool)
        in_region[tuple((region - lo).T)] = True
        threshold = c_b37 + 0.5 * (vmax - c_b37)
        labels, _ = ndimage.label((box >= threshold) & in_region, structure=np.ones((3, 3, 3)))
        a50 = labels == labels[tuple(peak_at - lo)]
        rc_mean = float(box[a50].mean()) / true_sphere
        # RCpeak: 1 mL ball, centre anywhere within the sphere.
        kernel = _ball_kernel(ONE_ML_RADIUS_MM, sp)
        peak_map = ndimage.convolve(box, kernel, mode="nearest")
        candidates = voxels(_ball_offsets(radius, sp), centre) - lo
        rc_peak = float(peak_map[tuple(candidates.T)].max()) / true_sphere
        # NEMA percent contrast on the sphere's central slice.
        c_h = self._circle_means(v, [centre[0]], [(centre[1], centre[2])], radius)[0]
        c_b = float(bg_means.mean())
        contrast = None
        if true_background:
            contrast = 100.0 * (c_h / c_b - 1.0) / (true_sphere / true_background - 1.0)
        rc_max = vmax / true_sphere
        earl = {
            standard: {
                "rc_mean": within(standard, "rc_mean", diameter, rc_mean),
                "rc_max": within(standard, "rc_max", diameter, rc_max),
            }
            for standard in EARL_BANDS
        }
        voxel_ml = sp[0] * sp[1] * sp[2] / 1000.0
        return SphereResult(
            diameter_mm=diameter,
            volume_ml=4.0 / 3.0 * math.pi * radius**3 / 1000.0,
            center_mm=self._mm(*centre),
            center_index=centre,
            max_kbq_ml=vmax / 1000.0,
            rc_max=rc_max,
            rc_mean=rc_mean,
            rc_peak=rc_peak,
            a50_voxels=int(a50.sum()),
            a50_volume_ml=float(a50.sum()) * voxel_ml,
            contrast_recovery_pct=contrast,
            background_variability_pct=100.0 * float(bg_means.std(ddof=1)) / c_b,
            earl=earl,
        )

    # -- outputs ---------------------------------------------------------------------------

    def results_data(self) -> NEMAImageQualityResult:
        if self._result is None:
            raise RuntimeError("call analyze() before reading results")
        return self._result

    def metrics(self) -> dict[str, float]:
        return self.results_data().metrics()

    def results(self) -> str:
        r = self.results_data()
        lines = [
            "NEMA NU 2 image quality (IEC body phantom)",
            f"True sphere {r.sphere_kbq_ml:.3f} kBq/mL; background measured "
            f"{r.background_measured_kbq_ml:.3f} kBq/mL; lung residual {r.lung_residual_pct:.1f}%",
            "sphere  RCmax  RCmean  RCpeak  BV%   EARL1  EARL2",
        ]
        for s in r.spheres:
            marks = ["ok" if all(s.earl[std].values()) else "OUT" for std in ("EARL1", "EARL2")]
            lines.append(
                f"{s.diameter_mm:4.0f} mm {s.rc_max:6.3f} {s.rc_mean:6.3f} {s.rc_peak:7.3f} "
                f"{s.background_variability_pct:5.1f}  {marks[0]:5}  {marks[1]:5}"
            )
        lines.append(
            "EARL1 "
            + ("compliant" if r.earl_compliant["EARL1"] else "NOT compliant")
            + "; EARL2 "
            + ("compliant" if r.earl_compliant["EARL2"] else "NOT compliant")
        )
        lines.extend(f"Warning: {w}" for w in r.warnings)
        return "\n".join(lines)

    def verdicts(
        self, tolerances: Mapping[str, ToleranceLike] | None = None, *, standard: str = "EARL1"
    ) -> dict[str, Verdict]:
        """Without ``tolerances``: each sphere's RCmean and RCmax against the ``standard``'s
        band ("pass" inside, "action" outside). With them: each metric against its tolerance.
        """
        if tolerances is not None:
            return judge(self.metrics(), tolerances)
        if standard not in EARL_BANDS:
            raise ValueError(f"standard must be one of {sorted(EARL_BANDS)}, not {standard!r}")
        out: dict[str, Verdict] = {}
        for s in self.results_data().spheres:
            for metric, ok in s.earl[standard].items():
                out[f"{metric}_{s.diameter_mm:g}mm"] = "pass" if ok else "action"
        return out

    def figure(self) -> Any:
        """Recovery curves against the EARL bands, and the sphere plane."""
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        r = self.results_data()
        fig = make_subplots(rows=1, cols=2, subplot_titles=["Recovery", "Sphere plane"])
        d = [s.diameter_mm for s in r.spheres]
        colours = {"EARL1": "rgba(0,0,255,0.12)", "EARL2": "rgba(0,160,0,0.12)"}
        for standard, bands in EARL_BANDS.items():
            for metric in ("rc_mean", "rc_max"):
                lo = [bands[metric][x][0] for x in d]
                up = [bands[metric][x][1] for x in d]
                fig.add_trace(go.Scatter(x=d, y=lo, line={"width": 0}, showlegend=False), 1, 1)
                fig.add_trace(
                    go.Scatter(
                        x=d,
                        y=up,
                        fill="tonexty",
                        fillcolor=colours[standard],
                        line={"width": 0},
                        name=f"{standard} {metric}",
                    ),
                    1,
                    1,
                )
        for metric in ("rc_max", "rc_mean", "rc_peak"):
            fig.add_trace(
                go.Scatter(
                    x=d,
                    y=[getattr(s, metric) for s in r.spheres],
                    mode="lines+markers",
                    name=metric,
                ),
                1,
                1,
            )
        k = r.spheres[-1].center_index[0]
        fig.add_trace(go.Heatmap(z=self.volume[k], colorscale="Hot", showscale=False), 1, 2)
        fig.update_xaxes(title_text="sphere diameter (mm)", row=1, col=1)
        fig.update_layout(title="NEMA NU 2 image quality")
        return fig
