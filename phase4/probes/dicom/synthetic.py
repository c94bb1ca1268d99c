"""Synthetic PET, NM and CT series written with pydicom, with concentrations known exactly.

For tests, demos and the DICOM listener: the files are valid PET Image Storage
(1.2.840.10008.5.1.4.1.1.128), NM Image Storage (1.2.840.10008.5.1.4.1.1.20) and CT Image
Storage (1.2.840.10008.5.1.4.1.1.2) instances, Explicit VR Little Endian, with fresh UIDs from
``pydicom.uid.generate_uid``. They carry *fake* patient identifiers (``PatientName`` etc.) so
that privacy can be tested: nothing here is real data.

The phantom is an elliptical cylinder ("the body") of uniform activity concentration with
optional hot spheres. PET pixels are int16 with one ``RescaleSlope`` per slice (as scanners
write them, PS3.3 C.8.9.4), so stored value × slope reproduces the concentration to about 1 part
in 30 000 of the slice maximum. Example::

    from datetime import datetime
    from phase4.probes.dicom.synthetic import write_pet_series

    paths = write_pet_series(
        "/tmp/pet", activity_bq=300e6, weight_kg=75.0,
        injection_time=datetime(2024, 5, 6, 9, 0), series_time=datetime(2024, 5, 6, 10, 0),
    )

With ``units="BQML"`` and ``decay_correction="START"`` the body's SUVbw is then
``5000 * 75000 / (300e6 * 2 ** (-3600 / 6586.2))``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    NuclearMedicineImageStorage,
    PositronEmissionTomographyImageStorage,
    generate_uid,
)

from phase4.probes.dicom.suv import decay_weighted_middle_s

PHILIPS_PET_CREATOR = "Philips PET Private Group"
FAKE_PATIENT = {
    "PatientName": "Phantom^Synthetic^Phase4",
    "PatientID": "P4-SYNTH-000042",
    "PatientBirthDate": "19500101",
    "AccessionNumber": "ACC-SYNTH-7731",
}
_NUCLIDE_CODES = {  # PS3.16 CID 4020 / CID 18 (SNOMED-RT code values)
    "F-18": ("C-111A1", "^18^Fluorine", "Fluorodeoxyglucose"),
    "Ga-68": ("C-131A3", "^68^Gallium", "Ga-68 PSMA-11"),
    "C-11": ("C-105A1", "^11^Carbon", "Choline C-11"),
    "Zr-89": ("C-168A4", "^89^Zirconium", "Zr-89 antibody"),
    "Tc-99m": ("C-163A8", "^99m^Technetium", "Tc-99m MDP"),
}


@dataclass(frozen=True)
class HotSphere:
    """A sphere of uniform concentration; centre in patient coordinates (mm)."""

    centre_mm: tuple[float, float, float]
    radius_mm: float
    concentration_bq_ml: float


@dataclass(frozen=True)
class _Geometry:
    shape: tuple[int, int, int]
    voxel_mm: tuple[float, float, float]  # (slice spacing, row spacing, column spacing)

    def origin_mm(self) -> tuple[float, float, float]:
        """ImagePositionPatient of the first slice: the matrix centred on x = y = 0."""
        _, rows, cols = self.shape
        return (-(cols - 1) / 2 * self.voxel_mm[2], -(rows - 1) / 2 * self.voxel_mm[1], 0.0)

    def z_mm(self, index: int) -> float:
        """Slices run from head (z = 0) towards the feet, one spacing apart."""
        return -index * self.voxel_mm[0]


def write_pet_series(
    folder: str | Path,
    *,
    activity_bq: float = 300e6,
    weight_kg: float | None = 75.0,
    injection_time: datetime = datetime(2024, 5, 6, 9, 0, 0),
    series_time: datetime = datetime(2024, 5, 6, 10, 0, 0),
    units: str = "BQML",
    decay_correction: str = "START",
    half_life_s: float = 6586.2,
    nuclide: str = "F-18",
    shape: tuple[int, int, int] = (40, 64, 64),
    voxel_mm: tuple[float, float, float] = (4.0, 4.0, 4.0),
    background_bq_ml: float = 5000.0,
    body_semi_axes_mm: tuple[float, float] | None = None,
    hot_spheres: Sequence[HotSphere] = (),
    noise: float = 0.0,
    seed: int = 0,
    frame_duration_s: float = 120.0,
    slices_per_bed: int | None = None,
    motion_step_mm: float = 0.0,
    philips_suv_factor: float | None = None,
    philips_activity_factor: float | None = None,
    missing: Sequence[str] = (),
    extra: Mapping[str, object] | None = None,
    study_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    height_m: float | None = 1.75,
    patient: Mapping[str, str] | None = None,
) -> list[Path]:
    """Write one synthetic PET series, one file per slice (``slice_0000.dcm`` ...); return
    the paths in slice order.

    Concentrations (``background_bq_ml``, each sphere's) are the activity concentration in the
    image's own reference time (series start for START, injection for ADMIN, the frame's time
    for NONE). How they are stored depends on ``units``: BQML as given; GML as SUVbw computed
    from them (PS3.3 C.8.9.1.1.3); CNTS divided by ``philips_activity_factor`` (1 if None),
    with the Philips private factors (7053,1000) SUV and (7053,1009) activity concentration
    written when given.

    ``body_semi_axes_mm`` (x, y) defaults to 35% and 28% of the field of view; larger than the
    field of view makes a truncated body. ``noise`` is the relative standard deviation of
    multiplicative Gaussian noise in the body (air stays 0). ``slices_per_bed`` splits the
    slices into beds acquired one after another (AcquisitionTime and FrameReferenceTime step
    by ``frame_duration_s``). ``motion_step_mm`` shifts the body and spheres in y for the
    second half of the slices (a patient who moved). ``missing`` lists attribute keywords to
    delete (top level or in RadiopharmaceuticalInformationSequence); ``extra`` sets top-level
    attributes by keyword on every slice.
    """
    geometry = _Geometry(shape, voxel_mm)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n_slices = shape[0]
    per_bed = slices_per_bed or n_slices
    semi_axes = body_semi_axes_mm or (0.35 * shape[2] * voxel_mm[2], 0.28 * shape[1] * voxel_mm[1])
    rng = np.random.default_rng(seed)
    study = _study(study_uid, frame_of_reference_uid, series_time, patient)
    series_uid = generate_uid()
    uptake_s = (series_time - injection_time).total_seconds()
    paths = []
    for index in range(n_slices):
        bed = index // per_bed
        bed_start_s = bed * frame_duration_s
        shift_mm = motion_step_mm if index >= n_slices // 2 else 0.0
        concentration = _phantom_slice(
            geometry, index, semi_axes, hot_spheres, background_bq_ml, shift_mm
        )
        if noise > 0:
            body = concentration > 0
            concentration[body] *= 1.0 + noise * rng.standard_normal(int(body.sum()))
            np.clip(concentration, 0.0, None, out=concentration)
        reference_s = decay_weighted_middle_s(half_life_s, frame_duration_s)
        if units == "GML":
            decay = {
                "START": 2.0 ** (-uptake_s / half_life_s),
                "ADMIN": 1.0,
                "NONE": 2.0 ** (-(uptake_s + bed_start_s + reference_s) / half_life_s),
            }[decay_correction]
            values = concentration * (weight_kg or 0.0) * 1000.0 / (activity_bq * decay)
        elif units == "CNTS":
            values = concentration / (philips_activity_factor or 1.0)
        else:
            values = concentration
        ds = _pet_dataset(study, series_uid, geometry, index, values)
        ds.Units = units
        ds.DecayCorrection = decay_correction
        ds.SeriesDate = series_time.strftime("%Y%m%d")
        ds.SeriesTime = series_time.strftime("%H%M%S")
        acquisition = series_time + timedelta(seconds=bed_start_s)
        ds.AcquisitionDate = acquisition.strftime("%Y%m%d")
        ds.AcquisitionTime = acquisition.strftime("%H%M%S")
        ds.ActualFrameDuration = round(frame_duration_s * 1000)
        ds.FrameReferenceTime = _ds((bed_start_s + reference_s) * 1000.0)
        ds.NumberOfSlices = n_slices
        ds.ImageIndex = index + 1
        if weight_kg is not None:
            ds.PatientWeight = _ds(weight_kg)
        if height_m is not None:
            ds.PatientSize = _ds(height_m)
        ds.RadiopharmaceuticalInformationSequence = DicomSequence(
            [_radiopharmaceutical(nuclide, activity_bq, half_life_s, injection_time)]
        )
        if philips_suv_factor is not None or philips_activity_factor is not None:
            block = ds.private_block(0x7053, PHILIPS_PET_CREATOR, create=True)
            if philips_suv_factor is not None:
                block.add_new(0x00, "DS", _ds(philips_suv_factor))
            if philips_activity_factor is not None:
                block.add_new(0x09, "DS", _ds(philips_activity_factor))
        _apply_edits(ds, missing, extra)
        path = folder / f"slice_{index:04d}.dcm"
        dcmwrite(path, ds, enforce_file_format=True)
        paths.append(path)
    return paths


def write_ct_series(
    folder: str | Path,
    *,
    study_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    shape: tuple[int, int, int] = (20, 64, 64),
    voxel_mm: tuple[float, float, float] = (8.0, 4.0, 4.0),
    series_time: datetime = datetime(2024, 5, 6, 9, 58, 0),
    patient: Mapping[str, str] | None = None,
) -> list[Path]:
    """A minimal CT series (water-like body at 0 HU in air at -1000 HU) to pair with a PET
    series of the same study: pass the PET's ``study_uid`` and, for a matching frame of
    reference, its ``frame_of_reference_uid``."""
    geometry = _Geometry(shape, voxel_mm)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    study = _study(study_uid, frame_of_reference_uid, series_time, patient)
    series_uid = generate_uid()
    semi_axes = (0.35 * shape[2] * voxel_mm[2], 0.28 * shape[1] * voxel_mm[1])
    paths = []
    for index in range(shape[0]):
        body = _phantom_slice(geometry, index, semi_axes, (), 1.0, 0.0) > 0
        hu = np.where(body, 0, -1000).astype(np.int16)
        ds = _image_dataset(study, series_uid, CTImageStorage, "CT", geometry, index)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = "1", "0", "HU"
        ds.KVP = "120"
        ds.SeriesDate = series_time.strftime("%Y%m%d")
        ds.SeriesTime = series_time.strftime("%H%M%S")
        _pixels(ds, hu)
        path = folder / f"ct_{index:04d}.dcm"
        dcmwrite(path, ds, enforce_file_format=True)
        paths.append(path)
    return paths


def write_nm_image(
    path: str | Path,
    *,
    kind: str = "RECON TOMO",
    shape: tuple[int, int, int] = (32, 64, 64),
    voxel_mm: tuple[float, float, float] = (4.8, 4.8, 4.8),
    counts: float = 200.0,
    detectors: int = 2,
    activity_mbq: float = 740.0,
    weight_kg: float | None = 80.0,
    injection_time: datetime = datetime(2024, 5, 6, 8, 0, 0),
    series_time: datetime = datetime(2024, 5, 6, 11, 0, 0),
    nuclide: str = "Tc-99m",
    seed: int = 0,
    patient: Mapping[str, str] | None = None,
) -> Path:
    """One multi-frame NM Image Storage file in counts (no Units: PS3.3 C.8.4.9 NM images are
    counts). ``kind="RECON TOMO"`` writes reconstructed SPECT slices (frames along
    SliceVector, geometry in DetectorInformationSequence); ``kind="STATIC"`` writes one planar
    frame per detector head (DetectorVector) of ``shape[1:]``, ignoring ``shape[0]``.
    RadionuclideTotalDose is in MBq, as the NM Isotope Module defines it (PS3.3 C.8.4.10)."""
    geometry = _Geometry(shape, voxel_mm)
    rng = np.random.default_rng(seed)
    study = _study(None, None, series_time, patient)
    ds = _image_dataset(study, generate_uid(), NuclearMedicineImageStorage, "NM", geometry, None)
    semi_axes = (0.35 * shape[2] * voxel_mm[2], 0.28 * shape[1] * voxel_mm[1])
    detector = Dataset()
    detector.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    if kind == "RECON TOMO":
        frames = np.stack(
            [_phantom_slice(geometry, i, semi_axes, (), counts, 0.0) for i in range(shape[0])]
        )
        ds.FrameIncrementPointer = 0x00540080  # SliceVector
        ds.SliceVector = list(range(1, shape[0] + 1))
        ds.NumberOfSlices = shape[0]
        ds.SpacingBetweenSlices = _ds(voxel_mm[0])
        ds.SliceThickness = _ds(voxel_mm[0])
        detector.ImagePositionPatient = [_ds(v) for v in geometry.origin_mm()]
        ds.DetectorInformationSequence = DicomSequence([detector])
        ds.NumberOfDetectors = 1
    else:
        plane = _phantom_slice(geometry, 0, semi_axes, (), counts, 0.0)
        frames = np.stack([plane] * detectors)
        ds.FrameIncrementPointer = 0x00540020  # DetectorVector
        ds.DetectorVector = list(range(1, detectors + 1))
        ds.NumberOfDetectors = detectors
        ds.DetectorInformationSequence = DicomSequence([_copy(detector) for _ in range(detectors)])
    frames = rng.poisson(frames).astype(np.uint16)
    ds.ImageType = ["ORIGINAL", "PRIMARY", kind, "EMISSION"]
    ds.NumberOfFrames = frames.shape[0]
    ds.SeriesDate = series_time.strftime("%Y%m%d")
    ds.SeriesTime = series_time.strftime("%H%M%S")
    ds.AcquisitionDate, ds.AcquisitionTime = ds.SeriesDate, ds.SeriesTime
    ds.ActualFrameDuration = 20000
    ds.CorrectedImage = ["UNIF", "COR"]
    if weight_kg is not None:
        ds.PatientWeight = _ds(weight_kg)
    item = _radiopharmaceutical(nuclide, activity_mbq, 21624.1, injection_time)
    ds.RadiopharmaceuticalInformationSequence = DicomSequence([item])
    _pixels(ds, frames)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dcmwrite(path, ds, enforce_file_format=True)
    return path


# -- building blocks ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Study:
    study_uid: str
    frame_of_reference_uid: str
    study_time: datetime
    patient: Mapping[str, str]


def _study(
    study_uid: str | None,
    frame_of_reference_uid: str | None,
    when: datetime,
    patient: Mapping[str, str] | None,
) -> _Study:
    return _Study(
        study_uid or generate_uid(),
        frame_of_reference_uid or generate_uid(),
        when,
        {**FAKE_PATIENT, **(patient or {})},
    )


def _image_dataset(
    study: _Study,
    series_uid: str,
    sop_class: str,
    modality: str,
    geometry: _Geometry,
    index: int | None,
) -> Dataset:
    """Patient, study, series, frame of reference, equipment and image plane modules."""
    sop_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    ds.SpecificCharacterSet = "ISO_IR 100"
    for keyword, value in study.patient.items():
        setattr(ds, keyword, value)
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study.study_uid
    ds.StudyDate = study.study_time.strftime("%Y%m%d")
    ds.StudyTime = study.study_time.strftime("%H%M%S")
    ds.StudyID = "1"
    ds.ReferringPhysicianName = ""
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = {"PT": 3, "CT": 2, "NM": 4}.get(modality, 1)
    ds.SeriesDescription = f"phase4 synthetic {modality}"
    ds.FrameOfReferenceUID = study.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = "phase4"
    ds.ManufacturerModelName = "Synthetic Scanner"
    ds.SoftwareVersions = "synthetic 1.0"
    ds.PatientPosition = "HFS"
    ds.PixelSpacing = [_ds(geometry.voxel_mm[1]), _ds(geometry.voxel_mm[2])]
    ds.Rows, ds.Columns = geometry.shape[1], geometry.shape[2]
    if index is not None:
        ds.InstanceNumber = index + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        x0, y0, _ = geometry.origin_mm()
        z = geometry.z_mm(index)
        ds.ImagePositionPatient = [_ds(x0), _ds(y0), _ds(z)]
        ds.SliceLocation = _ds(z)
        ds.SliceThickness = _ds(geometry.voxel_mm[0])
    else:
        ds.InstanceNumber = 1
    return ds


def _pet_dataset(
    study: _Study, series_uid: str, geometry: _Geometry, index: int, values: np.ndarray
) -> Dataset:
    """PET Series and PET Image modules (PS3.3 C.8.9.1, C.8.9.4) with per-slice scaling."""
    ds = _image_dataset(
        study, series_uid, PositronEmissionTomographyImageStorage, "PT", geometry, index
    )
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SeriesType = ["WHOLE BODY", "IMAGE"]
    ds.CountsSource = "EMISSION"
    ds.CorrectedImage = ["DECY", "ATTN", "SCAT", "DTIM", "RAN", "NORM"]
    ds.ReconstructionMethod = "OSEM 3i21s"
    ds.ConvolutionKernel = "Gaussian 5.0 mm"
    ds.AttenuationCorrectionMethod = "CTAC"
    ds.ScatterCorrectionMethod = "single scatter simulation"
    ds.RandomsCorrectionMethod = "DLYD"
    peak = float(np.abs(values).max())
    slope = peak / 32767.0 if peak > 0 else 1.0
    slope = float(_ds(slope))  # the decoder sees the DS string, so quantise with exactly it
    ds.RescaleSlope = _ds(slope)
    ds.RescaleIntercept = "0"
    _pixels(ds, np.rint(values / slope).astype(np.int16))
    return ds


def _pixels(ds: Dataset, array: np.ndarray) -> None:
    """Image Pixel module for a monochrome int16 or uint16 array (frames, rows, cols)."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if array.dtype == np.int16 else 0
    ds.PixelData = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def _radiopharmaceutical(
    nuclide: str, dose: float, half_life_s: float, injection_time: datetime
) -> Dataset:
    """One RadiopharmaceuticalInformationSequence item (PS3.3 C.8.9.2 / C.8.4.10)."""
    code_value, meaning, pharmaceutical = _NUCLIDE_CODES.get(nuclide, ("", nuclide, nuclide))
    item = Dataset()
    item.Radiopharmaceutical = pharmaceutical
    item.RadiopharmaceuticalStartTime = injection_time.strftime("%H%M%S")
    item.RadiopharmaceuticalStartDateTime = injection_time.strftime("%Y%m%d%H%M%S")
    item.RadionuclideTotalDose = _ds(dose)
    item.RadionuclideHalfLife = _ds(half_life_s)
    item.RadionuclidePositronFraction = "0.9686" if nuclide == "F-18" else "1"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = code_value, "SRT", meaning
    item.RadionuclideCodeSequence = DicomSequence([code])
    return item


def _phantom_slice(
    geometry: _Geometry,
    index: int,
    semi_axes_mm: tuple[float, float],
    spheres: Sequence[HotSphere],
    background: float,
    shift_y_mm: float,
) -> np.ndarray:
    """Concentration of one slice: the body ellipse and the spheres it cuts."""
    _, rows, cols = geometry.shape
    x0, y0, _ = geometry.origin_mm()
    x = x0 + np.arange(cols) * geometry.voxel_mm[2]
    y = y0 + np.arange(rows) * geometry.voxel_mm[1] - shift_y_mm
    z = geometry.z_mm(index)
    xx, yy = np.meshgrid(x, y)
    inside = (xx / semi_axes_mm[0]) ** 2 + (yy / semi_axes_mm[1]) ** 2 <= 1.0
    values = np.where(inside, background, 0.0)
    for sphere in spheres:
        cx, cy, cz = sphere.centre_mm
        d2 = (xx - cx) ** 2 + (yy - cy) ** 2 + (z - cz) ** 2
        values[d2 <= sphere.radius_mm**2] = sphere.concentration_bq_ml
    return values


def _apply_edits(ds: Dataset, missing: Sequence[str], extra: Mapping[str, object] | None) -> None:
    item = ds.RadiopharmaceuticalInformationSequence[0]
    for keyword in missing:
        for target in (ds, item):
            if keyword in target:
                delattr(target, keyword)
    for keyword, value in (extra or {}).items():
        setattr(ds, keyword, value)


def _copy(ds: Dataset) -> Dataset:
    out = Dataset()
    out.update(ds)
    return out


def _ds(value: float) -> str:
    """A decimal string of at most 16 characters (PS3.5 VR DS)."""
    text = f"{value:.10g}"
    return text if len(text) <= 16 else f"{value:.6e}"
