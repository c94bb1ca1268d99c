"""Sources are cited from primary documents: no Python file of the repository cites an issue
number or a reference file outside the repository, and no test reads a file by an absolute path
into someone's checkout or the shared folder beside it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Built from parts so that this file does not match itself.
ISSUE_CITATION = re.compile("issue" + r" [0-9]" + "|REFERENCE" + r"\.md")
OUTSIDE_PATH = re.compile(r"""["'](/work/|/home/|\.\./shared)""")


def python_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return [ROOT / name for name in listed]


def test_no_python_file_cites_an_issue_or_an_outside_reference() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in python_files()
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if ISSUE_CITATION.search(line)
    ]
    assert not found, "cite the primary document instead:\n" + "\n".join(found)


def test_no_test_reads_a_file_outside_the_repository() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in python_files()
        if path.is_relative_to(ROOT / "tests") or path.is_relative_to(ROOT / "bench")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if OUTSIDE_PATH.search(line)
    ]
    assert not found, "\n".join(found)


def test_the_patterns_find_what_they_look_for() -> None:
    assert ISSUE_CITATION.search("checked in (" + "iss" + "ue 5)")
    assert ISSUE_CITATION.search("see REFERENCE" + ".md §3")
    assert OUTSIDE_PATH.search('Path("/wo' + 'rk/shared/x")')
    assert not ISSUE_CITATION.search("an issue with scanner 5")
