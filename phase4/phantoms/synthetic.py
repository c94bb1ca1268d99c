"""Synthetic phantom acquisitions with a known answer: NM floods, PET cylinders, NEMA IQ.

Nothing here is patient data: every series is named ``PHANTOM^DAILY_QC``. The DICOM building
blocks are those of ``phase4.probes.dicom.synthetic`` (same modules, same per-slice PET scaling).

Physics, deliberately simple and exactly known:

* **Resolution** — an isotropic 3-D Gaussian of ``fwhm_mm``; with ``overshoot`` a > 0 the
  kernel is (1 + a)·G(σ) − a·G(2σ), a difference of Gaussians that mimics the edge overshoot
  (Gibbs ringing) of resolution-modelling (PSF) reconstruction. Spheres are blurred with the
  closed form of a uniform ball convolved with a Gaussian (:func:`blurred_ball`), evaluated at
  voxel centres; the background and lung insert are blurred numerically (their edges are far
  from the spheres).
* **Noise** — Poisson: a PET voxel holds Poisson(c·C)/c with c = ``counts_per_kbq_ml`` and C
  the concentration in kBq/mL; a flood pixel holds Poisson(counts). Seeded.
* **Faults** — a cold region on a flood head (a dead or detuned PMT), a calibration error
  (all PET values × (1 + error)), a resolution change (another FWHM or overshoot: a
  reconstruction upgrade).

The IEC body phantom is simplified to an elliptical cylinder (semi-axes 150 × 115 mm),
longer than the field of view, with the lung insert (radius 25 mm, no activity) on the
sphere ring's axis and sphere walls of zero thickness.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import dcmwrite
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import NuclearMedicineImageStorage, generate_uid
from scipy import ndimage
from scipy.special import erf

from phase4.phantoms.earl import SPHERE_DIAMETERS_MM
from phase4.phantoms.nema_iq import LUNG_RADIUS_MM, RING_RADIUS_MM, SPHERE_ORDER_MM
from phase4.probes.dicom.synthetic import (
    _copy,
    _ds,
    _Geometry,
    _image_dataset,
    _pet_dataset,
    _pixels,
    _radiopharmaceutical,
    _study,
)

PHANTOM_PATIENT = {
    "PatientName": "PHANTOM^DAILY_QC",
    "PatientID": "PHANTOM-QC",
    "PatientBirthDate": "",
    "AccessionNumber": "",
}
F18_HALF_LIFE_S = 6586.2
TC99M_HALF_LIFE_S = 21624.1
FILL_TIME = datetime(2024, 5, 6, 7, 30, 0)
SCAN_TIME = datetime(2024, 5, 6, 8, 0, 0)
IQ_BODY_SEMI_AXES_MM = (150.0, 115.0)
SIGMA_PER_FWHM = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


@dataclass(frozen=True)
class PhantomSeries:
    """What a writer produced: the files, and the phantom's known answer."""

    paths: tuple[Path, ...]
    truth: dict[str, Any]


# --- resolution ------------------------------------------------------------------------------


def blurred_ball(r_mm: np.ndarray | float, radius_mm: float, sigma_mm: float) -> np.ndarray:
    """A uniform ball of radius R (value 1) convolved with an isotropic 3-D Gaussian of
    standard deviation σ, at distance r from its centre (closed form):

    P(r) = ½[erf((R−r)/(√2σ)) + erf((R+r)/(√2σ))]
           − σ/(r√(2π)) · [exp(−(R−r)²/(2σ²)) − exp(−(R+r)²/(2σ²))],

    with P(0) = erf(R/(√2σ)) − √(2/π)·(R/σ)·exp(−R²/(2σ²)).
    """
    r = np.abs(np.asarray(r_mm, dtype=float))
    s2 = math.sqrt(2.0) * sigma_mm
    centre = math.erf(radius_mm / s2) - math.sqrt(2.0 / math.pi) * (radius_mm / sigma_mm) * (
        math.exp(-(radius_mm**2) / (2 * sigma_mm**2))
    )
    safe = np.where(r < 1e-9, 1.0, r)
    value = 0.5 * (erf((radius_mm - safe) / s2) + erf((radius_mm + safe) / s2)) - sigma_mm / (
        safe * math.sqrt(2 * math.pi)
    ) * (
        np.exp(-((radius_mm - safe) ** 2) / (2 * sigma_mm**2))
        - np.exp(-((radius_mm + safe) ** 2) / (2 * sigma_mm**2))
    )
    return np.where(r < 1e-9, centre, value)


@dataclass(frozen=True)
class Resolution:
    """Isotropic Gaussian of ``fwhm_mm``; ``overshoot`` a adds −a·G(2σ) and scales G(σ) by
    1 + a (unit integral kept)."""

    fwhm_mm: float
    overshoot: float = 0.0

    def components(self) -> list[tuple[float, float]]:
        """(weight, σ in mm) of each Gaussian; weights sum to 1."""
        sigma = self.fwhm_mm * SIGMA_PER_FWHM
        if self.overshoot == 0:
            return [(1.0, sigma)]
        return [(1.0 + self.overshoot, sigma), (-self.overshoot, 2.0 * sigma)]

    def ball(self, r_mm: np.ndarray | float, radius_mm: float) -> np.ndarray:
        return sum(w * blurred_ball(r_mm, radius_mm, s) for w, s in self.components())

    def blur(self, array: np.ndarray, spacing_mm: Sequence[float]) -> np.ndarray:
        out = np.zeros_like(array, dtype=float)
        for w, s in self.components():
            sig = [s / d if np.isfinite(d) else 0.0 for d in spacing_mm]
            out += w * ndimage.gaussian_filter(array.astype(float), sig, mode="nearest")
        return out


def _coverage_2d(
    shape: tuple[int, int],
    spacing: tuple[float, float],
    origin: tuple[float, float],
    inside: Any,
    supersample: int = 4,
) -> np.ndarray:
    """Fraction of each pixel (rows = y, cols = x) inside a region, by supersampling."""
    rows, cols = shape
    dy, dx = spacing
    sub = (np.arange(supersample) + 0.5) / supersample - 0.5
    y = origin[1] + (np.arange(rows)[:, None] + sub[None, :]).ravel() * dy
    x = origin[0] + (np.arange(cols)[:, None] + sub[None, :]).ravel() * dx
    yy, xx = np.meshgrid(y, x, indexing="ij")
    fine = inside(xx, yy).astype(float)
    return fine.reshape(rows, supersample, cols, supersample).mean(axis=(1, 3))


# --- flood -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColdRegion:
    """A region of lower sensitivity on one head: ``shape="square"`` scales pixels whose
    centre lies in a ``size_mm`` square by 1 − depth (exact); ``"pmt"`` is a Gaussian dip of
    FWHM ``size_mm`` and depth ``depth`` (a detuned photomultiplier)."""

    x_mm: float
    y_mm: float
    size_mm: float
    depth: float = 0.1
    shape: str = "square"
    head: int = 1


def flood_array(
    *,
    shape: tuple[int, int] = (160, 160),
    pixel_mm: float = 3.2,
    field_mm: tuple[float, float] = (480.0, 360.0),
    counts_per_pixel: float = 2500.0,
    heads: int = 1,
    cold: Sequence[ColdRegion] = (),
    noise: bool = True,
    seed: int = 0,
    field_diameter_mm: float | None = None,
) -> np.ndarray:
    """Flood counts (heads, rows, columns): ``counts_per_pixel`` in a centred rectangular
    field of ``field_mm`` (width, height), or a circular field of ``field_diameter_mm`` when
    given, zero outside (a pixel is in the field if its centre is); pixel centres at
    ±(n−1)/2·pixel."""
    rows, cols = shape
    y = (np.arange(rows) - (rows - 1) / 2) * pixel_mm
    x = (np.arange(cols) - (cols - 1) / 2) * pixel_mm
    yy, xx = np.meshgrid(y, x, indexing="ij")
    if field_diameter_mm is None:
        field_mask = (np.abs(xx) <= field_mm[0] / 2) & (np.abs(yy) <= field_mm[1] / 2)
    else:
        field_mask = xx**2 + yy**2 <= (field_diameter_mm / 2) ** 2
    rng = np.random.default_rng(seed)
    frames = []
    for head in range(1, heads + 1):
        sensitivity = np.ones(shape)
        for region in cold:
            if region.head != head:
                continue
            if region.shape == "square":
                inside = (np.abs(xx - region.x_mm) <= region.size_mm / 2) & (
                    np.abs(yy - region.y_mm) <= region.size_mm / 2
                )
                sensitivity[inside] *= 1.0 - region.depth
            elif region.shape == "pmt":
                s = region.size_mm * SIGMA_PER_FWHM
                d2 = (xx - region.x_mm) ** 2 + (yy - region.y_mm) ** 2
                sensitivity *= 1.0 - region.depth * np.exp(-d2 / (2 * s * s))
            else:
                raise ValueError(
                    f"ColdRegion.shape must be 'square' or 'pmt', not {region.shape!r}"
                )
        expected = np.where(field_mask, counts_per_pixel * sensitivity, 0.0)
        frames.append(rng.poisson(expected).astype(float) if noise else expected)
    return np.stack(frames)


def flood_truth(
    *, counts_per_pixel: float = 2500.0, heads: int = 1, cold: Sequence[ColdRegion] = (), **_: Any
) -> dict[str, Any]:
    """The known answer of a flood: per head, the noise-free IU a square cold region of
    depth d gives, 100·d/(2 − d) (0 for a flat head)."""
    out = []
    for head in range(1, heads + 1):
        depths = [c.depth for c in cold if c.head == head]
        d = max(depths, default=0.0)
        out.append({"head": head, "expected_iu_pct": 100.0 * d / (2.0 - d)})
    return {
        "kind": "flood",
        "counts_per_pixel": counts_per_pixel,
        "heads": out,
        "cold_regions": [asdict(c) for c in cold],
    }


def write_flood(
    path: str | Path,
    *,
    shape: tuple[int, int] = (160, 160),
    pixel_mm: float = 3.2,
    field_mm: tuple[float, float] = (480.0, 360.0),
    counts_per_pixel: float = 2500.0,
    heads: int = 1,
    cold: Sequence[ColdRegion] = (),
    noise: bool = True,
    seed: int = 0,
    series_time: datetime = SCAN_TIME,
    field_diameter_mm: float | None = None,
) -> PhantomSeries:
    """One multi-frame NM Image Storage file, one STATIC frame per head (DetectorVector)."""
    frames = flood_array(
        shape=shape,
        pixel_mm=pixel_mm,
        field_mm=field_mm,
        counts_per_pixel=counts_per_pixel,
        heads=heads,
        cold=cold,
        noise=noise,
        seed=seed,
        field_diameter_mm=field_diameter_mm,
    )
    if frames.max() > 65535:
        raise ValueError(f"{frames.max():.0f} counts in a pixel do not fit 16 bits")
    geometry = _Geometry((heads, *shape), (1.0, pixel_mm, pixel_mm))
    study = _study(None, None, series_time, PHANTOM_PATIENT)
    ds = _image_dataset(study, generate_uid(), NuclearMedicineImageStorage, "NM", geometry, None)
    ds.SeriesDescription = "phase4 synthetic flood"
    detector = Dataset()
    detector.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.FrameIncrementPointer = 0x00540020  # DetectorVector
    ds.DetectorVector = list(range(1, heads + 1))
    ds.NumberOfDetectors = heads
    ds.DetectorInformationSequence = DicomSequence([_copy(detector) for _ in range(heads)])
    ds.ImageType = ["ORIGINAL", "PRIMARY", "STATIC", "EMISSION"]
    ds.NumberOfFrames = heads
    ds.SeriesDate = series_time.strftime("%Y%m%d")
    ds.SeriesTime = series_time.strftime("%H%M%S")
    ds.AcquisitionDate, ds.AcquisitionTime = ds.SeriesDate, ds.SeriesTime
    ds.ActualFrameDuration = 600000
    ds.CorrectedImage = ["UNIF"]
    item = _radiopharmaceutical("Tc-99m", 400.0, TC99M_HALF_LIFE_S, series_time)
    ds.RadiopharmaceuticalInformationSequence = DicomSequence([item])
    _pixels(ds, np.rint(frames).astype(np.uint16))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dcmwrite(path, ds, enforce_file_format=True)
    truth = flood_truth(counts_per_pixel=counts_per_pixel, heads=heads, cold=cold)
    return PhantomSeries((path,), truth)


# --- PET volumes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PetGrid:
    """Voxel grid written by :func:`write_pet_volume`: index (k, j, i) ↔ patient mm
    x = x0 + i·dx, y = y0 + j·dy, z = −k·dz (probes' synthetic convention)."""

    shape: tuple[int, int, int]
    voxel_mm: tuple[float, float, float]  # (slice, row, column) spacing

    @property
    def origin_mm(self) -> tuple[float, float]:
        _, rows, cols = self.shape
        return (-(cols - 1) / 2 * self.voxel_mm[2], -(rows - 1) / 2 * self.voxel_mm[1])

    def axes_mm(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(z per slice, y per row, x per column)."""
        nz, ny, nx = self.shape
        x0, y0 = self.origin_mm
        return (
            -np.arange(nz) * self.voxel_mm[0],
            y0 + np.arange(ny) * self.voxel_mm[1],
            x0 + np.arange(nx) * self.voxel_mm[2],
        )


def _poisson_kbq(
    volume_bq_ml: np.ndarray, counts_per_kbq_ml: float | None, seed: int
) -> np.ndarray:
    if counts_per_kbq_ml is None:
        return volume_bq_ml
    rng = np.random.default_rng(seed)
    lam = np.clip(volume_bq_ml, 0.0, None) / 1000.0 * counts_per_kbq_ml
    return rng.poisson(lam).astype(float) / counts_per_kbq_ml * 1000.0


def write_pet_volume(
    folder: str | Path,
    volume_bq_ml: np.ndarray,
    grid: PetGrid,
    *,
    fill_time: datetime,
    series_time: datetime,
    half_life_s: float = F18_HALF_LIFE_S,
    total_dose_bq: float,
    weight_kg: float,
    description: str,
) -> tuple[Path, ...]:
    """PET Image Storage, one file per slice, Units BQML, DecayCorrection START; the
    radiopharmaceutical start time is the fill (assay) time and the dose the phantom's total
    activity then, so a phantom's SUV is C × mass / activity."""
    geometry = _Geometry(grid.shape, grid.voxel_mm)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    study = _study(None, None, series_time, PHANTOM_PATIENT)
    series_uid = generate_uid()
    paths = []
    for index in range(grid.shape[0]):
        ds = _pet_dataset(study, series_uid, geometry, index, volume_bq_ml[index])
        ds.SeriesDescription = description
        ds.Units = "BQML"
        ds.DecayCorrection = "START"
        ds.SeriesType = ["STATIC", "IMAGE"]
        ds.SeriesDate = series_time.strftime("%Y%m%d")
        ds.SeriesTime = series_time.strftime("%H%M%S")
        ds.AcquisitionDate, ds.AcquisitionTime = ds.SeriesDate, ds.SeriesTime
        ds.ActualFrameDuration = 600000
        ds.FrameReferenceTime = "0"
        ds.NumberOfSlices = grid.shape[0]
        ds.ImageIndex = index + 1
        ds.PatientWeight = _ds(weight_kg)
        ds.RadiopharmaceuticalInformationSequence = DicomSequence(
            [_radiopharmaceutical("F-18", total_dose_bq, half_life_s, fill_time)]
        )
        path = folder / f"slice_{index:04d}.dcm"
        dcmwrite(path, ds, enforce_file_format=True)
        paths.append(path)
    return tuple(paths)


def _decay(fill_time: datetime, series_time: datetime, half_life_s: float) -> float:
    return float(2.0 ** (-(series_time - fill_time).total_seconds() / half_life_s))


# --- cylinder --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CylinderSpec:
    """A uniform cylinder along z, centred in the field of view."""

    fill_kbq_ml: float = 5.0
    radius_mm: float = 100.0
    length_mm: float = 120.0
    fwhm_mm: float = 6.0
    calibration_error: float = 0.0
    counts_per_kbq_ml: float | None = None
    shape: tuple[int, int, int] = (40, 64, 64)
    voxel_mm: tuple[float, float, float] = (4.0, 4.0, 4.0)
    fill_time: datetime = FILL_TIME
    series_time: datetime = SCAN_TIME
    half_life_s: float = F18_HALF_LIFE_S
    seed: int = 0


def cylinder_volume(spec: CylinderSpec = CylinderSpec()) -> np.ndarray:
    """The cylinder's image in Bq/mL at the series time (decayed from the fill), blurred,
    times (1 + calibration error), with Poisson noise if asked."""
    grid = PetGrid(spec.shape, spec.voxel_mm)
    z, _, _ = grid.axes_mm()
    z_mid = float(z.mean())
    disc = _coverage_2d(
        spec.shape[1:],
        (spec.voxel_mm[1], spec.voxel_mm[2]),
        grid.origin_mm,
        lambda x, y: x * x + y * y <= spec.radius_mm**2,
    )
    dz = spec.voxel_mm[0]
    lo = np.clip((z + dz / 2) - (z_mid - spec.length_mm / 2), 0, dz)
    hi = np.clip((z_mid + spec.length_mm / 2) - (z - dz / 2), 0, dz)
    axial = np.minimum(lo, hi) / dz
    coverage = axial[:, None, None] * disc[None]
    blurred = Resolution(spec.fwhm_mm).blur(coverage, spec.voxel_mm)
    concentration = (
        spec.fill_kbq_ml * 1000.0 * _decay(spec.fill_time, spec.series_time, spec.half_life_s)
    )
    image = blurred * concentration * (1.0 + spec.calibration_error)
    return _poisson_kbq(image, spec.counts_per_kbq_ml, spec.seed)


def cylinder_truth(spec: CylinderSpec = CylinderSpec()) -> dict[str, Any]:
    decay = _decay(spec.fill_time, spec.series_time, spec.half_life_s)
    volume_ml = math.pi * spec.radius_mm**2 * spec.length_mm / 1000.0
    return {
        "kind": "cylinder",
        "fill_kbq_ml": spec.fill_kbq_ml,
        "fill_time": spec.fill_time.isoformat(),
        "reference_time": spec.series_time.isoformat(),
        "concentration_kbq_ml": spec.fill_kbq_ml * decay,
        "volume_ml": volume_ml,
        "total_activity_bq": spec.fill_kbq_ml * 1000.0 * volume_ml,
        "weight_kg": volume_ml / 1000.0,
        "suv": 1.0,
        "calibration_error": spec.calibration_error,
        "fwhm_mm": spec.fwhm_mm,
    }


def write_pet_cylinder(folder: str | Path, spec: CylinderSpec = CylinderSpec()) -> PhantomSeries:
    truth = cylinder_truth(spec)
    paths = write_pet_volume(
        folder,
        cylinder_volume(spec),
        PetGrid(spec.shape, spec.voxel_mm),
        fill_time=spec.fill_time,
        series_time=spec.series_time,
        half_life_s=spec.half_life_s,
        total_dose_bq=truth["total_activity_bq"],
        weight_kg=truth["weight_kg"],
        description="phase4 synthetic PET cylinder",
    )
    return PhantomSeries(paths, truth)


# --- NEMA IQ ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class IQSpec:
    """An IEC body phantom (simplified, see the module docstring) filled at ``sphere_kbq_ml``
    and ``background_kbq_ml`` at ``fill_time``."""

    sphere_kbq_ml: float = 20.0
    background_kbq_ml: float = 2.0
    fwhm_mm: float = 7.0
    overshoot: float = 0.0
    calibration_error: float = 0.0
    counts_per_kbq_ml: float | None = None
    shape: tuple[int, int, int] = (50, 160, 160)
    voxel_mm: tuple[float, float, float] = (2.0, 2.0, 2.0)
    ring_centre_mm: tuple[float, float] = (0.0, 0.0)
    ring_rotation_deg: float = 0.0
    sphere_plane_index: int | None = None  # default: the middle slice
    fill_time: datetime = FILL_TIME
    series_time: datetime = SCAN_TIME
    half_life_s: float = F18_HALF_LIFE_S
    seed: int = 0
    diameters_mm: tuple[float, ...] = field(default=SPHERE_ORDER_MM)

    @property
    def resolution(self) -> Resolution:
        return Resolution(self.fwhm_mm, self.overshoot)

    def sphere_centres_mm(self) -> dict[float, tuple[float, float, float]]:
        """Sphere diameter → centre (x, y, z) in patient mm; adjacent sizes 60° apart."""
        grid = PetGrid(self.shape, self.voxel_mm)
        z_axis, _, _ = grid.axes_mm()
        k = self.shape[0] // 2 if self.sphere_plane_index is None else self.sphere_plane_index
        out = {}
        for n, d in enumerate(self.diameters_mm):
            a = math.radians(self.ring_rotation_deg + 60.0 * n)
            out[d] = (
                self.ring_centre_mm[0] + RING_RADIUS_MM * math.cos(a),
                self.ring_centre_mm[1] + RING_RADIUS_MM * math.sin(a),
                float(z_axis[k]),
            )
        return out


def nema_iq_volume(spec: IQSpec = IQSpec()) -> np.ndarray:
    """The phantom's image in Bq/mL at the series time (see the module docstring)."""
    grid = PetGrid(spec.shape, spec.voxel_mm)
    z_axis, y_axis, x_axis = grid.axes_mm()
    decay = _decay(spec.fill_time, spec.series_time, spec.half_life_s)
    b = spec.background_kbq_ml * 1000.0 * decay
    s = spec.sphere_kbq_ml * 1000.0 * decay
    ax, ay = IQ_BODY_SEMI_AXES_MM
    cx, cy = spec.ring_centre_mm
    body = _coverage_2d(
        spec.shape[1:],
        (spec.voxel_mm[1], spec.voxel_mm[2]),
        grid.origin_mm,
        lambda x, y: (
            ((x / ax) ** 2 + (y / ay) ** 2 <= 1.0)
            & ((x - cx) ** 2 + (y - cy) ** 2 > LUNG_RADIUS_MM**2)
        ),
    )
    plane = spec.resolution.blur(body, spec.voxel_mm[1:]) * b
    image = np.broadcast_to(plane, spec.shape).copy()
    reach = 5.0 * max(sig for _, sig in spec.resolution.components())
    for d, (x, y, z) in spec.sphere_centres_mm().items():
        r = d / 2
        ks = np.nonzero(np.abs(z_axis - z) <= r + reach)[0]
        js = np.nonzero(np.abs(y_axis - y) <= r + reach)[0]
        is_ = np.nonzero(np.abs(x_axis - x) <= r + reach)[0]
        zz, yy, xx = np.meshgrid(z_axis[ks], y_axis[js], x_axis[is_], indexing="ij")
        dist = np.sqrt((zz - z) ** 2 + (yy - y) ** 2 + (xx - x) ** 2)
        image[np.ix_(ks, js, is_)] += (s - b) * spec.resolution.ball(dist, r)
    image *= 1.0 + spec.calibration_error
    return _poisson_kbq(image, spec.counts_per_kbq_ml, spec.seed)


def nema_iq_truth(spec: IQSpec = IQSpec()) -> dict[str, Any]:
    """The known answer: true concentrations (at fill and at the image's reference time),
    each sphere's centre, volume and SUV (C × phantom mass / total activity at the fill)."""
    decay = _decay(spec.fill_time, spec.series_time, spec.half_life_s)
    ax, ay = IQ_BODY_SEMI_AXES_MM
    length_mm = 180.0
    body_ml = (math.pi * ax * ay - math.pi * LUNG_RADIUS_MM**2) * length_mm / 1000.0
    spheres_ml = {d: 4.0 / 3.0 * math.pi * (d / 2) ** 3 / 1000.0 for d in spec.diameters_mm}
    activity = spec.background_kbq_ml * 1000.0 * (body_ml - sum(spheres_ml.values())) + (
        spec.sphere_kbq_ml * 1000.0 * sum(spheres_ml.values())
    )
    weight_kg = body_ml / 1000.0
    suv = spec.sphere_kbq_ml * 1000.0 * weight_kg * 1000.0 / activity
    centres = spec.sphere_centres_mm()
    return {
        "kind": "nema-iq",
        "fill_time": spec.fill_time.isoformat(),
        "reference_time": spec.series_time.isoformat(),
        "sphere_kbq_ml_at_fill": spec.sphere_kbq_ml,
        "background_kbq_ml_at_fill": spec.background_kbq_ml,
        "sphere_kbq_ml": spec.sphere_kbq_ml * decay,
        "background_kbq_ml": spec.background_kbq_ml * decay,
        "total_activity_bq": activity,
        "weight_kg": weight_kg,
        "background_suv": spec.background_kbq_ml * 1000.0 * weight_kg * 1000.0 / activity,
        "fwhm_mm": spec.fwhm_mm,
        "overshoot": spec.overshoot,
        "calibration_error": spec.calibration_error,
        "spheres": [
            {
                "diameter_mm": d,
                "volume_ml": spheres_ml[d],
                "center_mm": list(centres[d]),
                "concentration_kbq_ml": spec.sphere_kbq_ml * decay,
                "suv": suv,
            }
            for d in sorted(spec.diameters_mm)
        ],
    }


def write_nema_iq(folder: str | Path, spec: IQSpec = IQSpec()) -> PhantomSeries:
    truth = nema_iq_truth(spec)
    paths = write_pet_volume(
        folder,
        nema_iq_volume(spec),
        PetGrid(spec.shape, spec.voxel_mm),
        fill_time=spec.fill_time,
        series_time=spec.series_time,
        half_life_s=spec.half_life_s,
        total_dose_bq=truth["total_activity_bq"],
        weight_kg=truth["weight_kg"],
        description="phase4 synthetic NEMA IQ",
    )
    return PhantomSeries(paths, truth)


def scan_later(spec: Any, minutes: float) -> Any:
    """The same phantom scanned ``minutes`` later (for decay-correction tests)."""
    from dataclasses import replace

    return replace(spec, series_time=spec.series_time + timedelta(minutes=minutes))


__all__ = [
    "SPHERE_DIAMETERS_MM",
    "ColdRegion",
    "CylinderSpec",
    "IQSpec",
    "PhantomSeries",
    "Resolution",
    "blurred_ball",
    "cylinder_truth",
    "cylinder_volume",
    "flood_array",
    "flood_truth",
    "nema_iq_truth",
    "nema_iq_volume",
    "write_flood",
    "write_nema_iq",
    "write_pet_cylinder",
    "write_pet_volume",
]
