"""Coverage-guided fuzzing (atheris, libFuzzer) of PET/NM series feature extraction from bytes.

Each input is the bytes of one DICOM file; it is given to
``phase4.probes.dicom.features.extract_study`` and ``extract_series`` twice: alone (written as two
files, which also exercises duplicate-instance handling), and as the middle slice of a valid
three-slice PET series. Their contract is the crash
oracle: ``extract_study`` never raises for bad input, ``extract_series`` raises only
``DicomFeatureError``, and a record is flat JSON. Anything else is a crash.

    .venv/bin/python tests/fuzz/fuzz_dicom_features.py -max_total_time=600 CORPUS_DIR

With no corpus folder, or an empty one, the seeds (a small synthetic PET slice and an NM
image) are written there first (a temporary folder when none is given). libFuzzer's flags
apply (-runs, -seed, -artifact_prefix=...).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import tempfile
import warnings
from pathlib import Path

import atheris
import numpy  # noqa: F401  (imported first so that only pydicom and probes are instrumented)

with atheris.instrument_imports(include=["pydicom", "phase4.probes"]):
    import pydicom  # instrumented: its parser is most of what the input reaches

    from phase4.probes.dicom.errors import DicomFeatureError
    from phase4.probes.dicom.features import extract_series, extract_study

WORK = Path(tempfile.mkdtemp(prefix="phase4-fuzz-"))
ALONE, SERIES = WORK / "alone", WORK / "series"
FIXED_UID = "1.2.826.0.1.3680043.8.498.4242"  # same UIDs every run: corpora stay meaningful


def fixed_series() -> list[bytes]:
    """A valid 3-slice PET series whose UIDs do not change between runs."""
    from phase4.probes.dicom.synthetic import write_pet_series

    slices = []
    with tempfile.TemporaryDirectory() as tmp:
        for index, path in enumerate(write_pet_series(Path(tmp), shape=(3, 8, 8))):
            ds = pydicom.dcmread(path)
            ds.StudyInstanceUID, ds.SeriesInstanceUID = f"{FIXED_UID}.1", f"{FIXED_UID}.2"
            ds.FrameOfReferenceUID = f"{FIXED_UID}.3"
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"{FIXED_UID}.9.{index}"
            ds.save_as(path)
            slices.append(path.read_bytes())
    return slices


def check(folder: Path) -> None:
    """The contract: extract_study never raises, records are JSON, errors are ours."""
    study = extract_study(folder)
    for series in study.series:
        json.dumps(series.to_record(), allow_nan=False)
    for error in study.errors:
        assert isinstance(error, DicomFeatureError), type(error)
        str(error)
    with contextlib.suppress(DicomFeatureError):
        extract_series(folder)


def one_input(data: bytes) -> None:
    """The input as a file alone (twice: a duplicate instance), then as the middle slice of a
    valid series (so that volume building, spacing and flags see it among good slices)."""
    for name in ("a.dcm", "b.dcm"):
        (ALONE / name).write_bytes(data)
    check(ALONE)
    (SERIES / "slice_1.dcm").write_bytes(data)
    check(SERIES)


def write_seeds(folder: Path) -> None:
    """Small valid files to start from: the fixed series' middle slice and an NM image."""
    from phase4.probes.dicom.synthetic import write_nm_image

    (folder / "pet.dcm").write_bytes(fixed_series()[1])
    with tempfile.TemporaryDirectory() as tmp:
        nm = write_nm_image(Path(tmp) / "nm.dcm", shape=(4, 8, 8))
        (folder / "nm.dcm").write_bytes(nm.read_bytes())


def main(argv: list[str]) -> None:
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    ALONE.mkdir()
    SERIES.mkdir()
    first, _, last = fixed_series()
    (SERIES / "slice_0.dcm").write_bytes(first)
    (SERIES / "slice_2.dcm").write_bytes(last)
    folders = [arg for arg in argv[1:] if not arg.startswith("-")]
    if not folders:
        folders = [tempfile.mkdtemp(prefix="phase4-fuzz-corpus-")]
        argv = [*argv, folders[0]]
    corpus = Path(folders[0])
    if corpus.is_dir() and not any(corpus.iterdir()):
        write_seeds(corpus)
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
