"""The SUVbw image of one PET series, for callers that measure inside regions (e.g. an AI's
segmentation): the same ordering, rescaling and SUV rules as the features, as an array.

    image = read_suv_image("/data/pet-series")
    lesion_suv = image.slice_of(referenced_sop_instance_uid)[mask]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from phase4.probes.dicom import attrs
from phase4.probes.dicom.errors import DicomFeatureError
from phase4.probes.dicom.isotope import read_dose_info
from phase4.probes.dicom.read import PathsArg, read_series
from phase4.probes.dicom.suv import suv_scale
from phase4.probes.dicom.volume import build_volume


@dataclass(frozen=True)
class SuvImage:
    """SUVbw voxels (slices in position order) and the SOPInstanceUID of each slice."""

    suv: np.ndarray  # float32 (slices, rows, columns)
    sop_instance_uids: tuple[str, ...]
    pixel_spacing_mm: tuple[float, float] | None
    slice_spacing_mm: float | None
    _index: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def slice_of(self, sop_instance_uid: str) -> np.ndarray | None:
        """The SUV slice of the instance ``sop_instance_uid`` (None if not in the series)."""
        index = self._index.get(sop_instance_uid)
        return None if index is None else self.suv[index]


def read_suv_image(paths: PathsArg) -> SuvImage:
    """Read the one PET/NM series under ``paths`` as SUVbw; DicomFeatureError if there is no
    such series or its SUV cannot be computed (the error names the attribute and why)."""
    result = read_series(paths)
    candidates = [s for s in result.series if s.modality in ("PT", "NM")]
    if len(candidates) != 1:
        if not candidates and len(result.errors) == 1:
            raise result.errors[0]
        raise DicomFeatureError(
            f"{len(candidates)} PET/NM series found where one was expected",
            path=str(paths) if isinstance(paths, str) else None,
            attribute="SeriesInstanceUID",
        )
    series = candidates[0]
    volume = build_volume(series)
    try:
        scale = suv_scale(volume, read_dose_info(volume.modality, volume.datasets))
    except DicomFeatureError as exc:
        raise exc.with_path(series.first.path) from None
    suv = volume.values * scale.suv_per_unit.astype(np.float32)[:, None, None]
    uids = tuple(attrs.text(ds, "SOPInstanceUID") or "" for ds in volume.datasets)
    return SuvImage(
        suv=suv,
        sop_instance_uids=uids,
        pixel_spacing_mm=volume.pixel_spacing_mm,
        slice_spacing_mm=volume.slice_spacing_mm,
        _index={uid: i for i, uid in enumerate(uids) if uid},
    )
