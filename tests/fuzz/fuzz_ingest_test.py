"""The atheris harness of the ingest validator: a few seconds of fuzzing on every run, and the
kept inputs (seeds and the inputs of past findings) as regression cases."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.fuzz_ingest import test_one_input as check_input

HERE = Path(__file__).parent
CORPUS = HERE / "corpus_ingest"


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.iterdir()))
def test_kept_inputs_are_refused_or_usable(name: str) -> None:
    check_input((CORPUS / name).read_bytes())


def test_the_harness_fuzzes_for_a_few_seconds_without_a_finding(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(CORPUS, corpus)
    run = subprocess.run(
        [
            sys.executable,
            str(HERE / "fuzz_ingest.py"),
            str(corpus),
            f"-dict={HERE / 'ingest.dict'}",
            "-max_total_time=5",
            "-seed=1",
            f"-artifact_prefix={tmp_path}/",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=HERE.parent.parent,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Done" in run.stderr and " runs in " in run.stderr
    assert not list(tmp_path.glob("crash-*"))
