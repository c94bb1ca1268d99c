"""Coverage-guided fuzzing (atheris, libFuzzer) of PET/NM series feature extraction from bytes.

Each input is the bytes of one DICOM file; it is written to a private folder twice (the same
bytes as two files, which also exercises duplicate-instance handling) and given to
``probes.dicom.features.extract_study`` and ``extract_series``. Their contract is the crash
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

with atheris.instrument_imports(include=["pydicom", "probes"]):
    import pydicom  # noqa: F401  (its parser is most of what the input reaches)

    from probes.dicom.errors import DicomFeatureError
    from probes.dicom.features import extract_series, extract_study

WORK = Path(tempfile.mkdtemp(prefix="phase4-fuzz-"))


def one_input(data: bytes) -> None:
    for name in ("a.dcm", "b.dcm"):
        (WORK / name).write_bytes(data)
    study = extract_study(WORK)  # must not raise
    for series in study.series:
        json.dumps(series.to_record(), allow_nan=False)
    for error in study.errors:
        assert isinstance(error, DicomFeatureError), type(error)
        str(error)
    with contextlib.suppress(DicomFeatureError):
        extract_series(WORK / "a.dcm")


def write_seeds(folder: Path) -> None:
    """Small valid files to start from: a PET slice series and an NM image."""
    from probes.dicom.synthetic import write_nm_image, write_pet_series

    with tempfile.TemporaryDirectory() as tmp:
        pet = write_pet_series(Path(tmp) / "pet", shape=(2, 8, 8))
        (folder / "pet.dcm").write_bytes(pet[0].read_bytes())
        nm = write_nm_image(Path(tmp) / "nm.dcm", shape=(4, 8, 8))
        (folder / "nm.dcm").write_bytes(nm.read_bytes())


def main(argv: list[str]) -> None:
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
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
