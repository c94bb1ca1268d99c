"""What the AI returned, read from DICOM: SEG (segments, volume, SUV on the referenced PET), SR
(numeric measurements and codes), and "an output is present" for secondary captures.

The record's ``outputs`` get flat summaries that the drift engine turns into streams
(``lesion_count``, ``total_volume_ml``, ``suv_max``...) and a ``segments`` list for people.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset

SuvLookup = Callable[[str], "np.ndarray | None"]  # SOPInstanceUID of a PET slice -> SUV image

_NON_WORD = re.compile(r"[^a-z0-9]+")


class OutputReadError(ValueError):
    """An AI output file that cannot be read; the message names its kind and why (not the
    file: the listener names files after UIDs)."""


def _snake(text: str) -> str:
    return _NON_WORD.sub("_", text.lower()).strip("_")[:60] or "value"


def _voxel_ml(seg: Dataset) -> float:
    shared = seg.SharedFunctionalGroupsSequence[0]
    measures = shared.PixelMeasuresSequence[0]
    dy, dx = (float(v) for v in measures.PixelSpacing)
    dz = float(measures.get("SpacingBetweenSlices") or measures.get("SliceThickness") or 0)
    if dz <= 0:
        raise OutputReadError("SEG PixelMeasuresSequence has no SliceThickness: volume unknown")
    return dx * dy * dz / 1000.0


def read_seg(path: Path, suv_of: SuvLookup | None = None) -> list[dict[str, Any]]:
    """Each segment: label, volume in mL, and SUVmax/SUVmean on the referenced PET (if known)."""
    import highdicom as hd

    try:
        seg = hd.seg.segread(path)
    except Exception as exc:  # highdicom raises many kinds; name the file and the cause
        raise OutputReadError(f"SEG: not readable ({type(exc).__name__}: {exc})") from exc
    voxel_ml = _voxel_ml(seg)
    sources = [uid for _, _, uid in seg.get_source_image_uids()]
    segments = []
    for number in seg.segment_numbers:
        description = seg.get_segment_description(number)
        pixels = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=sources,
            segment_numbers=[number],
            assert_missing_frames_are_empty=True,
            ignore_spatial_locations=True,
        )[..., 0]
        mask = pixels > 0
        entry: dict[str, Any] = {
            "segment": int(number),
            "label": str(description.segment_label),
            "volume_ml": round(float(mask.sum()) * voxel_ml, 3),
            "suv_max": None,
            "suv_mean": None,
        }
        if suv_of is not None and mask.any():
            values = []
            for k, uid in enumerate(sources):
                if not mask[k].any():
                    continue
                suv = suv_of(uid)
                if suv is None or suv.shape != mask[k].shape:
                    values = []
                    break
                values.append(suv[mask[k]])
            if values:
                inside = np.concatenate(values)
                entry["suv_max"] = round(float(inside.max()), 3)
                entry["suv_mean"] = round(float(inside.mean()), 3)
        segments.append(entry)
    return segments


def _walk(items: Iterable[Dataset]) -> Iterable[Dataset]:
    for item in items:
        yield item
        if "ContentSequence" in item:
            yield from _walk(item.ContentSequence)


def read_sr(path: Path) -> dict[str, Any]:
    """Numeric measurements (concept name → value, with unit) and coded findings of an SR."""
    try:
        sr = pydicom.dcmread(path)
    except Exception as exc:
        raise OutputReadError(f"SR: not readable DICOM ({type(exc).__name__}: {exc})") from exc
    if "ContentSequence" not in sr:
        raise OutputReadError("SR: no ContentSequence")
    numbers: dict[str, Any] = {}
    codes: dict[str, str] = {}
    for item in _walk(sr.ContentSequence):
        kind = item.get("ValueType")
        name_seq = item.get("ConceptNameCodeSequence")
        if not name_seq:
            continue
        name = _snake(str(name_seq[0].CodeMeaning))
        if kind == "NUM" and item.get("MeasuredValueSequence"):
            mv = item.MeasuredValueSequence[0]
            unit = (
                mv.MeasurementUnitsCodeSequence[0].CodeValue
                if mv.get("MeasurementUnitsCodeSequence")
                else ""
            )
            key = f"{name}_{_snake(unit)}" if unit and unit != "1" else name
            numbers[key] = float(mv.NumericValue)
        elif kind == "CODE" and item.get("ConceptCodeSequence"):
            codes[name] = str(item.ConceptCodeSequence[0].CodeMeaning)
    return {"measurements": numbers, "codes": codes}


def study_outputs(
    outputs: dict[str, list[Path]], kinds: dict[str, str], suv_of: SuvLookup | None = None
) -> tuple[dict[str, Any], list[str]]:
    """The record's outputs for one study, and the problems met reading them."""
    result: dict[str, Any] = {"output_present": bool(outputs)}
    problems: list[str] = []
    segments: list[dict[str, Any]] = []
    for series_uid, files in outputs.items():
        kind = kinds.get(series_uid, "SC")
        for path in files:
            try:
                if kind == "SEG":
                    segments += read_seg(path, suv_of)
                elif kind == "SR":
                    sr = read_sr(path)
                    result.update({f"sr_{k}": v for k, v in sr["measurements"].items()})
                    result.update({f"sr_{k}": v for k, v in sr["codes"].items()})
            except OutputReadError as exc:
                problems.append(str(exc))
            except Exception as exc:  # a malformed output must not cost the study its record
                problems.append(f"{kind}: unusable ({type(exc).__name__})")
    result["output_kinds"] = ",".join(sorted(set(kinds.values()))) or None
    if segments:
        result["lesion_count"] = len(segments)
        result["total_volume_ml"] = round(sum(s["volume_ml"] for s in segments), 3)
        suvs = [s["suv_max"] for s in segments if s["suv_max"] is not None]
        result["suv_max"] = max(suvs) if suvs else None
        result["segments"] = segments
    return result, problems
