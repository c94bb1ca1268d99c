"""The examples in the statistics package's docstrings are part of the suite.

Every module of ``phase4/monitor/drift`` is collected for doctests (each detector's module
shows, on a deterministic sequence, when it alarms): ``pytest phase4/monitor/drift -v`` lists
them, and plain ``pytest`` runs them with the tests (``testpaths``). Only that package: a global
``--doctest-modules`` would also import every helper module under tests/ in-process, the
instrumented fuzzing harnesses among them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _pytest.doctest import DoctestModule  # what --doctest-modules collects with

DOCTESTED = Path(__file__).resolve().parent / "phase4" / "monitor" / "drift"


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix == ".py" and DOCTESTED in file_path.resolve().parents:
        if parent.config.option.doctestmodules:  # collected by pytest itself already
            return None
        return DoctestModule.from_parent(parent, path=file_path)
    return None
