"""Stored pixel values of one dataset as a (frames, rows, columns) array.

Uncompressed little-endian pixel data (PS3.5 §8.1.1 native format) whose samples fill their
allocation (BitsStored == BitsAllocated) is viewed in place with ``numpy.frombuffer``: it is
exactly the bytes of the file, so there is nothing to decode and pydicom's generic pixel
pipeline (validation, copying, dtype juggling) is skipped. Everything else (compressed
transfer syntaxes, big endian, packed bits, colour) goes through ``Dataset.pixel_array``; a
failure there becomes a DicomFeatureError naming PixelData and the transfer syntax.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from phase4.probes.dicom import attrs
from phase4.probes.dicom.errors import DicomFeatureError

_NATIVE_LE = {ImplicitVRLittleEndian, ExplicitVRLittleEndian}
_DTYPES = {  # (BitsAllocated, PixelRepresentation) -> little-endian dtype
    (8, 0): "u1",
    (8, 1): "i1",
    (16, 0): "<u2",
    (16, 1): "<i2",
    (32, 0): "<u4",
    (32, 1): "<i4",
}


def stored_frames(ds: Dataset, memo: attrs.Memo | None = None) -> np.ndarray:
    """Stored values (before RescaleSlope/Intercept), shape (frames, rows, columns).

    ``memo`` shares parsed image-pixel attributes between the slices of a series."""
    memo = memo or attrs.Memo()
    if "PixelData" not in ds:
        kind = "FloatPixelData" if "FloatPixelData" in ds else None
        reason = f"absent ({kind} is not supported)" if kind else "absent: the file has no image"
        raise DicomFeatureError(reason, attribute="PixelData")
    rows = memo.get(ds, "Rows", attrs.integer) or 0
    cols = memo.get(ds, "Columns", attrs.integer) or 0
    frames = memo.get(ds, "NumberOfFrames", attrs.integer) or 1
    if rows <= 0 or cols <= 0 or frames <= 0:
        raise DicomFeatureError(
            f"image size {frames}x{rows}x{cols} is not usable", attribute="Rows"
        )
    if (memo.get(ds, "SamplesPerPixel", attrs.integer) or 1) != 1:
        raise DicomFeatureError(
            "is not 1: a colour image carries no activity values", attribute="SamplesPerPixel"
        )
    fast = _native(ds, frames, rows, cols, memo)
    if fast is not None:
        return fast
    return _decoded(ds, frames, rows, cols)


def _native(ds: Dataset, frames: int, rows: int, cols: int, memo: attrs.Memo) -> np.ndarray | None:
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax not in _NATIVE_LE:
        return None
    bits = memo.get(ds, "BitsAllocated", attrs.integer)
    stored = memo.get(ds, "BitsStored", attrs.integer)
    sign = memo.get(ds, "PixelRepresentation", attrs.integer)
    dtype = _DTYPES.get((bits or 0, sign or 0))
    if dtype is None or stored != bits:
        return None
    data = ds.PixelData
    if not isinstance(data, bytes):
        return None
    count = frames * rows * cols
    expected = count * np.dtype(dtype).itemsize
    if len(data) not in (expected, expected + 1):  # + 1: padding to an even length
        raise DicomFeatureError(
            f"holds {len(data)} bytes where NumberOfFrames x Rows x Columns x BitsAllocated "
            f"({frames} x {rows} x {cols} x {bits}) needs {expected}",
            attribute="PixelData",
        )
    return np.frombuffer(data, dtype=dtype, count=count).reshape(frames, rows, cols)


def _decoded(ds: Dataset, frames: int, rows: int, cols: int) -> np.ndarray:
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    name = getattr(syntax, "name", None) or "unknown transfer syntax"
    missing = _missing_decoder(syntax)
    if missing is not None:
        raise DicomFeatureError(
            f"cannot be decoded: no decoder for {name} is installed ({missing})",
            attribute="PixelData",
        )
    try:
        array = ds.pixel_array
    except Exception as exc:  # corrupt streams, bad lengths, a plugin refusing the bit depth
        message = f"{type(exc).__name__}: {exc}"
        raise DicomFeatureError(
            f"cannot be decoded ({name}): {message[:300]}", attribute="PixelData"
        ) from exc
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[np.newaxis]
    if array.shape != (frames, rows, cols):
        raise DicomFeatureError(
            f"decodes to shape {array.shape}, not ({frames}, {rows}, {cols})",
            attribute="PixelData",
        )
    return array


def _missing_decoder(syntax: object) -> str | None:
    """What pydicom would need to decode ``syntax`` when no plugin is usable, else None."""
    if not isinstance(syntax, UID) or not syntax.is_compressed:
        return None
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        return "pydicom has no decoder for it"
    if decoder.is_available:
        return None
    return "; ".join(decoder.missing_dependencies) or "no plugin"
