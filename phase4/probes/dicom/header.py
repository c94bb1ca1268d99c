"""Header covariates of a series: scanner, reconstruction, corrections, injection, patient
size (binned), timing. These are the "what changed?" features a drift alarm is explained by.

No identifiers: patient weight and height are reported only in 10 kg / 10 cm bins, dates are
never reported (only the uptake interval), and free text comes only from equipment and
protocol attributes (SeriesDescription only as a fallback for the reconstruction, truncated).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from pydicom.dataset import Dataset
from pydicom.uid import UID

from phase4.probes.dicom import attrs
from phase4.probes.dicom.errors import DicomFeatureError
from phase4.probes.dicom.isotope import GE_PET_CREATOR, DoseInfo
from phase4.probes.dicom.volume import Volume

WEIGHT_BIN_KG = 10
HEIGHT_BIN_CM = 10
T = TypeVar("T")
MAX_TEXT = 64  # free-text covariates are truncated: a category, not a document

# "OSEM3D 4i21s", "PSF+TOF 3i21s", "2i 16s", "4 iterations 8 subsets", "i3s21"
_ITER_SUBSETS = re.compile(
    r"(\d+)\s*i(?:t(?:er(?:ation)?s?)?)?[\s,x/-]*(\d+)\s*s(?:ub(?:set)?s?)?\b"
)
_SUBSETS_ITER = re.compile(r"\bi(\d+)\s*s(\d+)\b")
_ITERATIONS = re.compile(r"(\d+)\s*(?:it|iter|iterations?)\b")
_SUBSETS = re.compile(r"(\d+)\s*(?:sub|subsets?)\b")
_FWHM = re.compile(r"(\d+(?:\.\d+)?)\s*(?:mm)?")


@dataclass(frozen=True)
class HeaderCovariates:
    """Scanner, protocol and patient covariates of one series (None where not given)."""

    modality: str
    sop_class: str | None
    manufacturer: str | None
    model: str | None
    software_versions: str | None
    image_type: str | None
    reconstruction_method: str | None
    reconstruction_method_source: str | None
    iterations: int | None
    subsets: int | None
    post_filter: str | None
    post_filter_fwhm_mm: float | None
    rows: int
    columns: int
    slices: int
    voxel_x_mm: float | None
    voxel_y_mm: float | None
    voxel_z_mm: float | None
    slice_thickness_mm: float | None
    corrected_image: str | None
    attenuation_corrected: bool | None
    scatter_corrected: bool | None
    decay_corrected: bool | None
    units: str | None
    decay_correction: str | None
    radiopharmaceutical: str | None
    nuclide: str | None
    half_life_s: float | None
    injected_activity_mbq: float | None
    activity_mbq_per_kg: float | None
    uptake_time_s: float | None
    series_start_source: str | None
    weight_bin_kg: int | None
    height_bin_cm: int | None
    frame_duration_s: float | None
    detectors: int | None


def read_header(volume: Volume, dose: DoseInfo) -> HeaderCovariates:
    """Covariates of a decoded series (matrix and voxel size from the volume)."""
    shape = volume.values.shape
    return _covariates(
        volume.datasets[0],
        volume.modality,
        (int(shape[0]), int(shape[1]), int(shape[2])),
        volume.pixel_spacing_mm,
        volume.slice_spacing_mm,
        dose,
    )


def read_header_without_pixels(
    modality: str, datasets: tuple[Dataset, ...], dose: DoseInfo
) -> HeaderCovariates:
    """Covariates of a series whose pixels could not be decoded: the same attributes, the
    matrix from Rows/Columns and the number of files, no slice spacing (it needs the sorted
    positions of a volume)."""
    ds = datasets[0]
    rows = _optional(attrs.integer, ds, "Rows") or 0
    columns = _optional(attrs.integer, ds, "Columns") or 0
    frames = _optional(attrs.integer, ds, "NumberOfFrames") or 1
    slices = frames if len(datasets) == 1 else len(datasets)
    spacing = _optional(lambda d, k: attrs.numbers(d, k, 2), ds, "PixelSpacing")
    pixel = (spacing[0], spacing[1]) if spacing is not None else None
    return _covariates(ds, modality, (slices, rows, columns), pixel, None, dose)


def _covariates(
    ds: Dataset,
    modality: str,
    shape: tuple[int, int, int],
    pixel: tuple[float, float] | None,
    slice_spacing_mm: float | None,
    dose: DoseInfo,
) -> HeaderCovariates:
    corrected = _optional(attrs.words, ds, "CorrectedImage") or ()
    recon, recon_source = _reconstruction(ds)
    iterations, subsets = _iterations_subsets(ds, recon if recon_source else None)
    kernel = _optional(attrs.text, ds, "ConvolutionKernel")
    post_filter = _clip(kernel or _optional(attrs.text, ds, "FilterType"))
    duration_ms = _optional(attrs.number, ds, "ActualFrameDuration")
    activity_mbq = None if dose.injected_activity_bq is None else dose.injected_activity_bq / 1e6
    sop = _optional(attrs.text, ds, "SOPClassUID")
    return HeaderCovariates(
        modality=modality,
        sop_class=_sop_name(sop),
        manufacturer=_clip(_optional(attrs.text, ds, "Manufacturer")),
        model=_clip(_optional(attrs.text, ds, "ManufacturerModelName")),
        software_versions=_clip(_optional(attrs.text, ds, "SoftwareVersions")),
        image_type=_clip(_optional(attrs.text, ds, "ImageType")),
        reconstruction_method=recon,
        reconstruction_method_source=recon_source,
        iterations=iterations,
        subsets=subsets,
        post_filter=post_filter,
        post_filter_fwhm_mm=_fwhm_mm(post_filter),
        rows=shape[1],
        columns=shape[2],
        slices=shape[0],
        voxel_x_mm=pixel[1] if pixel else None,
        voxel_y_mm=pixel[0] if pixel else None,
        voxel_z_mm=slice_spacing_mm,
        slice_thickness_mm=_optional(attrs.number, ds, "SliceThickness"),
        corrected_image="\\".join(corrected) or None,
        attenuation_corrected=("ATTN" in corrected) if corrected else None,
        scatter_corrected=("SCAT" in corrected) if corrected else None,
        decay_corrected=("DECY" in corrected) if corrected else None,
        units=_upper(_optional(attrs.text, ds, "Units")),
        decay_correction=_upper(_optional(attrs.text, ds, "DecayCorrection")),
        radiopharmaceutical=_clip(dose.radiopharmaceutical),
        nuclide=dose.nuclide,
        half_life_s=dose.half_life_s,
        injected_activity_mbq=activity_mbq,
        activity_mbq_per_kg=(
            activity_mbq / dose.weight_kg if activity_mbq and dose.weight_kg else None
        ),
        uptake_time_s=dose.uptake_time_s,
        series_start_source=dose.series_start_source,
        weight_bin_kg=_bin(dose.weight_kg, WEIGHT_BIN_KG),
        height_bin_cm=_bin(None if dose.height_m is None else dose.height_m * 100, HEIGHT_BIN_CM),
        frame_duration_s=None if duration_ms is None else duration_ms / 1000.0,
        detectors=_optional(attrs.integer, ds, "NumberOfDetectors"),
    )


def parse_iterations_subsets(text: str | None) -> tuple[int | None, int | None]:
    """Iterations and subsets from free text such as ReconstructionMethod "OSEM3D 4i21s"."""
    if not text:
        return None, None
    lowered = text.lower()
    match = _ITER_SUBSETS.search(lowered) or _SUBSETS_ITER.search(lowered)
    if match:
        return int(match.group(1)), int(match.group(2))
    iterations = _ITERATIONS.search(lowered)
    subsets = _SUBSETS.search(lowered)
    return (
        int(iterations.group(1)) if iterations else None,
        int(subsets.group(1)) if subsets else None,
    )


def _reconstruction(ds: Dataset) -> tuple[str | None, str | None]:
    """ReconstructionMethod (PET Image Module, PS3.3 C.8.9.4), else SeriesDescription."""
    for keyword in ("ReconstructionMethod", "SeriesDescription"):
        value = _clip(_optional(attrs.text, ds, keyword))
        if value:
            return value, keyword
    return None, None


def _iterations_subsets(ds: Dataset, text: str | None) -> tuple[int | None, int | None]:
    iterations, subsets = parse_iterations_subsets(text)
    if iterations is None or subsets is None:
        ge_iterations, ge_subsets = _ge_iterations_subsets(ds)
        iterations = iterations if iterations is not None else ge_iterations
        subsets = subsets if subsets is not None else ge_subsets
    return iterations, subsets


def _ge_iterations_subsets(ds: Dataset) -> tuple[int | None, int | None]:
    """GE PET private (0009,10B2) ir_num_iterations and (0009,10B3) ir_num_subsets."""
    out: list[int | None] = []
    for element in (0xB2, 0xB3):
        try:
            value = ds.private_block(0x0009, GE_PET_CREATOR)[element].value
            number = int.from_bytes(value[:4], "little") if isinstance(value, bytes) else value
            out.append(int(number) if int(number) > 0 else None)
        except (KeyError, ValueError, TypeError):
            out.append(None)
    return out[0], out[1]


def _fwhm_mm(post_filter: str | None) -> float | None:
    """The Gaussian FWHM in mm from texts like "XYZ Gauss5.00" or "Gaussian 5.0 mm"."""
    if not post_filter:
        return None
    lowered = post_filter.lower()
    if not any(word in lowered for word in ("gauss", "fwhm", "mm")):
        return None
    match = _FWHM.search(lowered)
    return float(match.group(1)) if match else None


def _bin(value: float | None, width: int) -> int | None:
    """Lower edge of the ``width`` bin holding ``value`` (coarse on purpose: not an identifier)."""
    if value is None or not math.isfinite(value):
        return None
    return int(value // width * width)


def _sop_name(uid: str | None) -> str | None:
    if not uid:
        return None
    name = UID(uid).name
    return name if name and name != uid else uid


def _optional(getter: Callable[[Dataset, str], T], ds: Dataset, keyword: str) -> T | None:
    """A covariate the extraction does not depend on: unreadable counts as absent."""
    try:
        return getter(ds, keyword)
    except DicomFeatureError:
        return None


def _clip(value: str | None) -> str | None:
    if value is None:
        return None
    value = " ".join(value.split())
    return value[:MAX_TEXT] or None


def _upper(value: str | None) -> str | None:
    return value.upper() if value else None
