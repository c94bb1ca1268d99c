"""The probe's core (``phase4.probes`` without its ``dicom`` and ``listener`` subpackages) runs
in the deployed model's own environment and imports the standard library alone.

Checked twice: every import statement in the core's source, those inside functions included,
names a standard-library module or another core module; and a fresh interpreter that imports
``phase4.probes`` has loaded nothing else (the import a bare install makes:
tests/packaging/test_install.py runs it there).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "phase4" / "probes"
EXTRA_SUBPACKAGES = ("phase4.probes.dicom", "phase4.probes.listener")


def _is_core(module: str) -> bool:
    inside = module == "phase4.probes" or module.startswith("phase4.probes.")
    return inside and not module.startswith(EXTRA_SUBPACKAGES)


def _allowed(module: str) -> bool:
    return module.split(".")[0] in sys.stdlib_module_names or _is_core(module)


def test_the_core_source_imports_only_the_standard_library() -> None:
    offending = []
    for path in sorted(CORE.glob("*.py")):  # the core's modules; subpackages are extras
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.ImportFrom):
                names = [f"phase4.probes.{node.module or ''}".rstrip(".")]  # relative: core
            else:
                continue
            offending += [f"{path.name}:{node.lineno} {n}" for n in names if not _allowed(n)]
    assert offending == []


def test_importing_the_probe_loads_only_the_standard_library() -> None:
    code = (
        "import json, sys\n"
        "before = set(sys.modules)\n"
        "import phase4.probes\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert "phase4.probes.probe" in loaded
    assert [m for m in loaded if not (_allowed(m) or m == "phase4")] == []
