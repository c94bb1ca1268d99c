"""A short, bounded, seeded run of the DICOM feature-extraction fuzzer: the harness works and
finds no crash in its first 60 inputs (longer runs: docs/DICOM.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HARNESS = Path(__file__).with_name("fuzz_dicom_features.py")


def test_the_fuzzer_runs_and_finds_no_crash(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    done = subprocess.run(
        [
            sys.executable,
            str(HARNESS),
            "-runs=60",
            "-seed=1",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Done 60 runs" in done.stderr
    assert not list(tmp_path.glob("crash-*"))
