"""Daily PET QC on a uniform cylinder: calibration, axial and transaxial uniformity, noise.

Definitions (docs/PHANTOMS.md has the same):

* **Cylinder** — voxels above half the median of the bright voxels (those above 25% of the
  99th percentile); slices whose cylinder cross-section is at least half the largest belong to
  it, and ``axial_margin_mm`` (default 10 mm) is trimmed from each end against partial volume.
  The radius is that of the median cross-section's area.
* **Central ROI** — in each slice, a disc of ``roi_radius_fraction`` (default 0.75) × the
  radius about that slice's cylinder centroid.
* **Calibration** — measured = mean of all ROI voxels; expected = the fill concentration
  decay-corrected from the fill (assay) time to the image's reference time (DecayCorrection
  START: series start; ADMIN: the radiopharmaceutical start time); for an SUV image (Units GML)
  expected = ``expected_suv`` (1.0 for a cylinder filled with the whole activity of a known
  water mass). Error = 100·(measured / expected − 1); EARL accepts ±10% (EARL FDG-PET/CT
  accreditation specifications; Boellaard et al. 2015, EANM procedure guidelines for tumour
  imaging v2.0), the default action level; ±5% (the long-term SUV stability EARL-accredited
  systems show) the tolerance.
* **Axial uniformity** — the per-slice ROI means: largest |slice mean / mean − 1| and their
  coefficient of variation (slice-to-slice, as in daily QC of the scanner's normalisation).
* **Transaxial non-uniformity** — after the NEMA NU 2-1994 uniformity test: in each slice,
  square cells of ``cell_mm`` (default 20 mm) wholly inside the ROI; the largest |cell mean /
  slice ROI mean − 1| of any cell in any slice, in percent.
* **Noise** — coefficient of variation of the ROI voxels (all slices), in percent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from phase4.phantoms.control import Tolerance, Verdict
from phase4.phantoms.image import HeaderFacts, PathsArg, PhantomInputError, load_image
from phase4.phantoms.results import ResultData, ToleranceLike, judge

F18_HALF_LIFE_S = 6586.2  # 109.77 min (NUBASE/ENSDF evaluated half-life)
DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "calibration_error_pct": Tolerance(
        lower_action=-10.0, lower_tolerance=-5.0, upper_tolerance=5.0, upper_action=10.0
    ),
}


def decay_factor(start: datetime, end: datetime, half_life_s: float) -> float:
    """2^(−(end − start)/T½): the fraction of activity left at ``end``."""
    if (start.tzinfo is None) != (end.tzinfo is None):
        start, end = start.replace(tzinfo=None), end.replace(tzinfo=None)
    return float(2.0 ** (-(end - start).total_seconds() / half_life_s))


@dataclass(frozen=True)
class CylinderResult(ResultData):
    quantity: str  # "kBq/mL" or "SUV"
    measured: float
    expected: float | None
    calibration_error_pct: float | None
    axial_max_deviation_pct: float
    axial_cv_pct: float
    transaxial_nonuniformity_pct: float
    cv_pct: float
    slice_means: tuple[float, ...]
    slices_used: tuple[int, int]  # first and last slice index (inclusive)
    radius_mm: float
    roi_radius_mm: float
    roi_voxels: int
    decay_factor: float
    fill_kbq_ml: float | None
    fill_time: datetime | None
    reference_time: datetime | None
    half_life_s: float | None
    warnings: tuple[str, ...] = ()

    def metrics(self) -> dict[str, float]:
        name = "concentration_kbq_ml" if self.quantity == "kBq/mL" else "suv_mean"
        out = {
            name: self.measured,
            "axial_max_deviation_pct": self.axial_max_deviation_pct,
            "axial_cv_pct": self.axial_cv_pct,
            "transaxial_nonuniformity_pct": self.transaxial_nonuniformity_pct,
            "cv_pct": self.cv_pct,
        }
        if self.calibration_error_pct is not None and self.expected is not None:
            out["calibration_error_pct"] = self.calibration_error_pct
            out["recovery_ratio"] = self.measured / self.expected
        return out


class PETCylinder:
    """Daily QC of a uniform PET cylinder. :meth:`from_dicom` / :meth:`from_array`, then
    :meth:`analyze`, :meth:`results`, :meth:`results_data`, :meth:`figure`, :meth:`verdicts`."""

    def __init__(
        self,
        volume: np.ndarray,
        spacing_mm: tuple[float, float, float],
        *,
        units: str = "BQML",
        header: HeaderFacts | None = None,
        source: Sequence[str] = (),
    ) -> None:
        array = np.asarray(volume, dtype=float)
        if array.ndim != 3:
            raise PhantomInputError(f"a cylinder needs a 3-D volume, got shape {array.shape}")
        if not np.all(np.isfinite(array)):
            raise PhantomInputError("the volume holds non-finite values")
        if len(spacing_mm) != 3 or not all(s > 0 and math.isfinite(s) for s in spacing_mm):
            raise PhantomInputError(f"spacing_mm must be 3 positive sizes, not {spacing_mm}")
        if units not in ("BQML", "GML"):
            raise PhantomInputError(
                f"Units {units}: the cylinder needs activity concentration (BQML) or SUV (GML)"
            )
        self.volume = array
        self.spacing_mm = tuple(float(s) for s in spacing_mm)
        self.units = units
        self.header = header or HeaderFacts(modality="PT", units=units)
        self.source = tuple(source)
        self._result: CylinderResult | None = None
        self._roi_slices: list[tuple[int, np.ndarray]] = []

    @classmethod
    def from_dicom(cls, paths: PathsArg) -> PETCylinder:
        image = load_image(paths, modalities=("PT",), what="PET cylinder")
        if image.values.shape[0] < 3:
            raise PhantomInputError(f"only {image.values.shape[0]} slices: not a PET volume")
        return cls(
            image.values,
            image.spacing_mm,
            units=image.header.units or "(missing)",
            header=image.header,
            source=image.source,
        )

    @classmethod
    def from_array(
        cls, volume: np.ndarray, spacing_mm: tuple[float, float, float], *, units: str = "BQML"
    ) -> PETCylinder:
        """A (slices, rows, columns) volume in Bq/mL (``units="BQML"``) or SUV (``"GML"``)."""
        return cls(volume, spacing_mm, units=units)

    def analyze(
        self,
        *,
        fill_kbq_ml: float | None = None,
        fill_time: datetime | None = None,
        reference_time: datetime | None = None,
        half_life_s: float | None = None,
        expected_suv: float = 1.0,
        roi_radius_fraction: float = 0.75,
        axial_margin_mm: float = 10.0,
        cell_mm: float = 20.0,
    ) -> PETCylinder:
        """Measure the cylinder (definitions in the module docstring).

        ``fill_kbq_ml`` is the concentration the cylinder was filled with, at ``fill_time``
        (default: the header's radiopharmaceutical start time; None and no header time: no
        decay correction). ``reference_time`` defaults to the image's decay-correction
        reference; ``half_life_s`` to the header's, else F-18 (6586.2 s).
        """
        if not 0 < roi_radius_fraction <= 1:
            raise ValueError(f"roi_radius_fraction must be in (0, 1], not {roi_radius_fraction}")
        warnings: list[str] = []
        dz, dy, dx = self.spacing_mm
        v = self.volume
        p99 = float(np.percentile(v, 99))
        if p99 <= 0:
            raise PhantomInputError("the volume is empty (no positive values)")
        level = float(np.median(v[v > 0.25 * p99]))
        body = v > 0.5 * level
        areas = body.sum(axis=(1, 2))
        inside = np.nonzero(areas >= 0.5 * areas.max())[0]
        trim = math.ceil(axial_margin_mm / dz - 1e-9)
        first, last = int(inside.min()) + trim, int(inside.max()) - trim
        if last < first:
            raise PhantomInputError(
                f"the cylinder spans {inside.max() - inside.min() + 1} slices: nothing is left "
                f"after trimming {axial_margin_mm} mm from each end"
            )
        radius_mm = math.sqrt(float(np.median(areas[first : last + 1])) * dy * dx / math.pi)
        roi_r = roi_radius_fraction * radius_mm
        rows, cols = v.shape[1:]
        yy, xx = np.mgrid[0:rows, 0:cols]
        self._roi_slices = []
        slice_means: list[float] = []
        all_values: list[np.ndarray] = []
        worst_cell = 0.0
        for k in range(first, last + 1):
            if not body[k].any():
                raise PhantomInputError(
                    f"slice {k} holds no activity between the cylinder's first and last slices "
                    f"({int(inside.min())}-{int(inside.max())}): not one uniform cylinder"
                )
            cy, cx = (float(c) for c in np.argwhere(body[k]).mean(axis=0))
            roi = ((yy - cy) * dy) ** 2 + ((xx - cx) * dx) ** 2 <= roi_r**2
            values = v[k][roi]
            if values.size == 0:
                raise PhantomInputError(
                    f"slice {k}: the ROI of radius {roi_r:.3g} mm holds no voxel of "
                    f"{dy:g} × {dx:g} mm"
                )
            mean_k = float(values.mean())
            slice_means.append(mean_k)
            all_values.append(values)
            self._roi_slices.append((k, roi))
            worst_cell = max(worst_cell, self._worst_cell(v[k], cy, cx, roi_r, cell_mm, mean_k))
        roi_all = np.concatenate(all_values)
        scale = 1000.0 if self.units == "BQML" else 1.0
        measured = float(roi_all.mean()) / scale
        means = np.array(slice_means)
        expected, decay, fill_t, ref_t, t_half = self._expected(
            fill_kbq_ml, fill_time, reference_time, half_life_s, expected_suv, warnings
        )
        error = None if expected is None else 100.0 * (measured / expected - 1.0)
        self._result = CylinderResult(
            quantity="kBq/mL" if self.units == "BQML" else "SUV",
            measured=measured,
            expected=expected,
            calibration_error_pct=error,
            axial_max_deviation_pct=float(100 * np.max(np.abs(means / means.mean() - 1))),
            axial_cv_pct=float(100 * means.std(ddof=1) / means.mean()) if means.size > 1 else 0.0,
            transaxial_nonuniformity_pct=100.0 * worst_cell,
            cv_pct=float(100 * roi_all.std(ddof=1) / roi_all.mean()),
            slice_means=tuple(float(m) / scale for m in means),
            slices_used=(first, last),
            radius_mm=radius_mm,
            roi_radius_mm=roi_r,
            roi_voxels=int(roi_all.size),
            decay_factor=decay,
            fill_kbq_ml=fill_kbq_ml,
            fill_time=fill_t,
            reference_time=ref_t,
            half_life_s=t_half,
            warnings=tuple(warnings),
        )
        return self

    def _expected(
        self,
        fill_kbq_ml: float | None,
        fill_time: datetime | None,
        reference_time: datetime | None,
        half_life_s: float | None,
        expected_suv: float,
        warnings: list[str],
    ) -> tuple[float | None, float, datetime | None, datetime | None, float | None]:
        if self.units == "GML":
            return expected_suv, 1.0, None, None, None
        if fill_kbq_ml is None:
            warnings.append("no fill concentration given: calibration not checked")
            return None, 1.0, None, None, None
        if not fill_kbq_ml > 0:
            raise ValueError(f"fill_kbq_ml must be positive, not {fill_kbq_ml}")
        h = self.header
        t_half = half_life_s or h.half_life_s or F18_HALF_LIFE_S
        fill_t = fill_time or h.radiopharmaceutical_start
        if reference_time is None:
            correction = (h.decay_correction or "START").upper()
            reference_time = h.radiopharmaceutical_start if correction == "ADMIN" else h.series_time
            if correction == "NONE":
                warnings.append("DecayCorrection NONE: decay taken to the series start")
        if fill_t is None or reference_time is None:
            return fill_kbq_ml, 1.0, fill_t, reference_time, t_half
        decay = decay_factor(fill_t, reference_time, t_half)
        return fill_kbq_ml * decay, decay, fill_t, reference_time, t_half

    def _worst_cell(
        self, plane: np.ndarray, cy: float, cx: float, roi_r: float, cell_mm: float, mean: float
    ) -> float:
        _, dy, dx = self.spacing_mm
        ny, nx = max(1, round(cell_mm / dy)), max(1, round(cell_mm / dx))
        worst = 0.0
        n_half = int(roi_r // cell_mm) + 1
        for a in range(-n_half, n_half):
            for b in range(-n_half, n_half):
                r0 = round(cy + a * ny)
                c0 = round(cx + b * nx)
                corners_mm = [
                    ((r - cy) * dy, (c - cx) * dx)
                    for r in (r0 - 0.5, r0 + ny - 0.5)
                    for c in (c0 - 0.5, c0 + nx - 0.5)
                ]
                if any(y * y + x * x > roi_r**2 for y, x in corners_mm):
                    continue
                if r0 < 0 or c0 < 0 or r0 + ny > plane.shape[0] or c0 + nx > plane.shape[1]:
                    continue
                cell = plane[r0 : r0 + ny, c0 : c0 + nx]
                worst = max(worst, abs(float(cell.mean()) / mean - 1.0))
        return worst

    # -- outputs ---------------------------------------------------------------------------

    def results_data(self) -> CylinderResult:
        if self._result is None:
            raise RuntimeError("call analyze() before reading results")
        return self._result

    def metrics(self) -> dict[str, float]:
        return self.results_data().metrics()

    def results(self) -> str:
        r = self.results_data()
        lines = ["PET cylinder daily QC"]
        if r.expected is not None and r.calibration_error_pct is not None:
            lines.append(
                f"Mean {r.measured:.3f} {r.quantity} vs expected {r.expected:.3f} "
                f"({r.calibration_error_pct:+.2f}%; EARL accepts ±10%)"
            )
        else:
            lines.append(f"Mean {r.measured:.3f} {r.quantity} (no expected value)")
        lines.append(
            f"Axial: max deviation {r.axial_max_deviation_pct:.2f}%, CV {r.axial_cv_pct:.2f}% "
            f"over slices {r.slices_used[0]}–{r.slices_used[1]}"
        )
        lines.append(
            f"Transaxial non-uniformity {r.transaxial_nonuniformity_pct:.2f}%; voxel CV "
            f"{r.cv_pct:.2f}% in a {r.roi_radius_mm:.0f} mm radius ROI"
        )
        lines.extend(f"Warning: {w}" for w in r.warnings)
        return "\n".join(lines)

    def verdicts(self, tolerances: Mapping[str, ToleranceLike] | None = None) -> dict[str, Verdict]:
        """Default: calibration error action at ±10% (EARL), tolerance at ±5%."""
        return judge(self.metrics(), DEFAULT_TOLERANCES if tolerances is None else tolerances)

    def figure(self) -> Any:
        """Per-slice ROI means (axial profile) and the central slice with its ROI."""
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        r = self.results_data()
        fig = make_subplots(rows=1, cols=2, subplot_titles=["Axial profile", "Central slice"])
        ks = list(range(r.slices_used[0], r.slices_used[1] + 1))
        fig.add_trace(go.Scatter(x=ks, y=list(r.slice_means), mode="lines+markers"), 1, 1)
        if r.expected is not None:
            fig.add_hline(y=r.expected, line_dash="dash", row=1, col=1)
        k, roi = self._roi_slices[len(self._roi_slices) // 2]
        fig.add_trace(go.Heatmap(z=self.volume[k], colorscale="Gray", showscale=False), 1, 2)
        fig.add_trace(
            go.Contour(
                z=roi.astype(float),
                showscale=False,
                contours_coloring="lines",
                ncontours=1,
                line_color="red",
            ),
            1,
            2,
        )
        fig.update_layout(title=f"PET cylinder ({r.quantity})", showlegend=False)
        return fig
