"""Features of one PET (PT) or NM series on the SUV scale, with artifact and integrity flags.

The DICOM side of the probe: what a deployed PET/SPECT model was given, described by header
covariates (scanner, reconstruction, injection, uptake), SUV-scale image features and named
flags, without identifiers::

    from phase4.probes.dicom import DicomFeatureError, extract_series

    try:
        features = extract_series("/data/incoming/pet-series")
    except DicomFeatureError as exc:  # names the file, the attribute and why
        print(exc)
    else:
        record = features.to_record()  # {"features": {...scalars...}, "flags": {...}}

``extract_study`` takes several series (PET/NM plus the CT of the same study, for the
frame-of-reference check) and reports one error per unusable file or series instead of
raising. ``read_suv_image`` gives the SUVbw voxels themselves (for measuring inside an AI's
segmentation). ``phase4.probes.dicom.synthetic`` writes synthetic PET/NM/CT series with known
values.
"""

from phase4.probes.dicom.errors import DicomFeatureError
from phase4.probes.dicom.features import (
    SeriesFeatures,
    StudyFeatures,
    describe,
    extract_series,
    extract_study,
)
from phase4.probes.dicom.flags import Flag
from phase4.probes.dicom.header import HeaderCovariates
from phase4.probes.dicom.quantify import ImageFeatures
from phase4.probes.dicom.suv_image import SuvImage, read_suv_image

__all__ = [
    "DicomFeatureError",
    "Flag",
    "HeaderCovariates",
    "ImageFeatures",
    "SeriesFeatures",
    "StudyFeatures",
    "SuvImage",
    "describe",
    "extract_series",
    "extract_study",
    "read_suv_image",
]
