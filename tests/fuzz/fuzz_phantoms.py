"""Coverage-guided fuzzing (atheris, libFuzzer) of the phantom analyses: NEMA NU 1 flood
uniformity, the PET cylinder and NEMA NU 2 image quality, from arrays and from DICOM bytes.

The contract under test: whatever the input, an analysis either returns a result or raises
``PhantomInputError`` (the documented error, whose message names what is wrong); any other
exception is a crash. Run as a script:

    .venv/bin/python tests/fuzz/fuzz_phantoms.py -max_total_time=600 [corpus_dir]

With a corpus folder, valid synthetic series (a flood, a cylinder slice stack, an IQ stack)
are written into it first as seeds, so that the byte mutations start from real DICOM.
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["phase4.phantoms"]):
    import numpy as np

    from phase4.phantoms.cylinder import PETCylinder
    from phase4.phantoms.flood import FloodUniformity
    from phase4.phantoms.image import PhantomInputError
    from phase4.phantoms.nema_iq import NEMAImageQuality

_WORK = Path(tempfile.mkdtemp(prefix="phase4-fuzz-"))


def _array(fdp: atheris.FuzzedDataProvider, shape: tuple[int, ...]) -> np.ndarray:
    size = int(np.prod(shape))
    kind = fdp.ConsumeIntInRange(0, 3)
    values = np.zeros(size)
    if kind == 0:  # a level with small fluctuations, the usual case
        level = fdp.ConsumeFloatInRange(0.0, 1e5)
        noise = np.asarray(fdp.ConsumeIntListInRange(size, 0, 255), dtype=float)
        values[:] = level
        values[: noise.size] += noise
    elif kind == 1:  # any floats, nan and inf included
        got = np.asarray(fdp.ConsumeFloatList(size), dtype=float)
        values[: got.size] = got
    elif kind == 2:  # counts
        got = np.asarray(fdp.ConsumeIntListInRange(size, 0, 70000), dtype=float)
        values[: got.size] = got
    else:  # a centred disc of counts, the shape of a real field
        grid = np.indices(shape[-2:]).astype(float)
        centre = (np.array(shape[-2:]) - 1) / 2
        r = np.hypot(*(grid - centre[:, None, None]))
        disc = r <= fdp.ConsumeFloatInRange(0.0, float(max(shape[-2:])))
        level = fdp.ConsumeFloatInRange(0.0, 1e5)
        values = np.broadcast_to(np.where(disc, level, 0.0), shape).reshape(-1).copy()
    return values.reshape(shape)


def _from_arrays(fdp: atheris.FuzzedDataProvider) -> None:
    which = fdp.ConsumeIntInRange(0, 2)
    if which == 0:
        heads = fdp.ConsumeIntInRange(1, 2)
        shape = (heads, fdp.ConsumeIntInRange(1, 96), fdp.ConsumeIntInRange(1, 96))
        pixel = fdp.ConsumeFloatInRange(-1.0, 12.0)
        flood = FloodUniformity.from_array(_array(fdp, shape), pixel)
        ufov = None
        if fdp.ConsumeBool():
            ufov = (fdp.ConsumeFloatInRange(0.0, 800.0), fdp.ConsumeFloatInRange(0.0, 800.0))
        flood.analyze(ufov_mm=ufov).results()
        return
    shape = (
        fdp.ConsumeIntInRange(1, 12),
        fdp.ConsumeIntInRange(1, 48),
        fdp.ConsumeIntInRange(1, 48),
    )
    spacing = tuple(fdp.ConsumeFloatInRange(-1.0, 20.0) for _ in range(3))
    volume = _array(fdp, shape)
    if which == 1:
        PETCylinder.from_array(volume, spacing).analyze(  # type: ignore[arg-type]
            fill_kbq_ml=fdp.ConsumeFloatInRange(0.01, 100.0) if fdp.ConsumeBool() else None
        ).results()
    else:
        NEMAImageQuality.from_array(volume, spacing).analyze(  # type: ignore[arg-type]
            sphere_kbq_ml=fdp.ConsumeFloatInRange(0.01, 100.0)
        ).results()


def _from_dicom(fdp: atheris.FuzzedDataProvider) -> None:
    which = fdp.ConsumeIntInRange(0, 2)
    path = _WORK / "input.dcm"
    path.write_bytes(fdp.ConsumeBytes(fdp.remaining_bytes()))
    if which == 0:
        FloodUniformity.from_dicom(path).analyze().results()
    elif which == 1:
        PETCylinder.from_dicom(path).analyze(fill_kbq_ml=5.0).results()
    else:
        NEMAImageQuality.from_dicom(path).analyze(sphere_kbq_ml=20.0).results()


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            if fdp.ConsumeBool():
                _from_arrays(fdp)
            else:
                _from_dicom(fdp)
    except PhantomInputError:
        pass  # the documented error: the message says what is wrong


def write_seeds(corpus: Path) -> None:
    """Valid synthetic phantoms as seeds (the DICOM branch is taken when the first byte is
    even, then one byte picks the analysis)."""
    from phase4.phantoms.synthetic import (
        CylinderSpec,
        IQSpec,
        write_flood,
        write_nema_iq,
        write_pet_cylinder,
    )

    corpus.mkdir(parents=True, exist_ok=True)
    seeds = _WORK / "seeds"
    flood = write_flood(seeds / "flood.dcm", shape=(64, 64), field_mm=(160.0, 120.0))
    cylinder = write_pet_cylinder(seeds / "cyl", CylinderSpec(shape=(4, 32, 32)))
    iq = write_nema_iq(seeds / "iq", IQSpec(shape=(4, 48, 48)))
    for index, (which, series) in enumerate(((0, flood), (1, cylinder), (2, iq))):
        first = Path(series.paths[0])
        (corpus / f"seed-{index}").write_bytes(bytes([0, which]) + first.read_bytes())


if __name__ == "__main__":
    corpora = [a for a in sys.argv[1:] if not a.startswith("-")]
    if corpora:
        write_seeds(Path(corpora[0]))
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
