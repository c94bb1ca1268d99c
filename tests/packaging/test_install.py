"""A bare ``pip install phase4`` is the probe alone: no dependency, the probe works offline, and
the ``phase4`` command says what to install instead of failing with a traceback.

Builds a wheel of the working tree with the project's own setuptools (no build isolation, no
index), installs it into a fresh ``python -m venv`` with ``pip install --no-index``, so that any
dependency the wheel declared outside an extra (PEP 508 ``extra ==`` marker) would make the
install fail, and runs the probe there. Nothing here needs the network. The wheel must also carry
the monitor's non-Python files (migrations, templates, static files), which setuptools ships
only as package data.
"""

from __future__ import annotations

import email.parser
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = "Scripts" if os.name == "nt" else "bin"
# what a fresh venv may hold besides phase4 (Python 3.11's ensurepip installs setuptools too)
VENV_SHIPS = {"pip", "setuptools"}

PROBE_SCRIPT = """
import sys
from pathlib import Path

from phase4.probes import Probe

url, spool = sys.argv[1], Path(sys.argv[2])
probe = Probe(url, token="p4_offline", deployment="lesion-ai@site-a",
              site_secret=b"site-a-secret-0123456789abcdef", spool_path=spool, durable=True,
              backoff_base_s=0.05, backoff_max_s=0.1, timeout_s=1.0)
record_id = probe.record(features={"injected_activity_mbq": 250.0},
                         outputs={"malignancy_score": 0.4}, study_uid="1.2.840.1")
assert record_id is not None, "the durable capture was not committed"
depth = probe.stats().spool_depth
probe.close(timeout_s=0.5)
print(record_id, depth)
"""


def _pip_env() -> dict[str, str]:
    """The environment without any pip setting (this machine's pip.conf adds find-links and
    extra indexes): only what the command line says."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(args: list[str | Path], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=_pip_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"{args} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel of the working tree, built from a copy (setuptools writes build/ and *.egg-info
    beside the sources, and a stale build/ would leak into the wheel)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "phase4", source / "phase4", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    out = tmp_path_factory.mktemp("wheel")
    build = ["wheel", "--no-deps", "--no-build-isolation", "--no-index", ".", "-w", out]
    _run([sys.executable, "-m", "pip", *build], cwd=source)
    (built,) = out.glob("phase4-*.whl")
    return built


@pytest.fixture(scope="module")
def bare_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the wheel alone: its python."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    _run([sys.executable, "-m", "venv", venv], cwd=venv.parent)
    python = venv / BIN / "python"
    _run([python, "-m", "pip", "install", "--no-index", wheel], cwd=venv.parent)
    return python


def test_the_wheel_declares_no_dependency_outside_an_extra(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = email.parser.Parser().parsestr(archive.read(name).decode("utf-8"))
    requires = metadata.get_all("Requires-Dist") or []
    assert requires, "the extras are missing from the metadata"
    assert [r for r in requires if "extra ==" not in r] == []
    assert set(metadata.get_all("Provides-Extra") or []) == {"dicom", "server", "test"}


def test_the_wheel_carries_the_monitors_files(wheel: Path) -> None:
    """Migrations (alembic reads them as files), templates and static files of the dashboard."""
    with zipfile.ZipFile(wheel) as archive:
        shipped = set(archive.namelist())
    monitor = ROOT / "phase4" / "monitor"
    expected = [
        p
        for folder in ("store/migrations", "ui/templates", "ui/static")
        for p in (monitor / folder).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    ]
    names = {p.relative_to(ROOT).as_posix() for p in expected}
    assert "phase4/monitor/store/migrations/env.py" in names
    assert "phase4/monitor/store/migrations/versions/0001_initial_schema.py" in names
    assert "phase4/monitor/ui/templates/base.html" in names
    assert "phase4/monitor/ui/static/style.css" in names
    assert sorted(names - shipped) == []


def test_a_bare_install_holds_phase4_alone(bare_venv: Path) -> None:
    listed = _run([bare_venv, "-m", "pip", "list", "--format=json"], cwd=bare_venv.parent)
    names = {entry["name"].lower() for entry in json.loads(listed.stdout)}
    assert "phase4" in names
    assert names - VENV_SHIPS == {"phase4"}


@pytest.mark.parametrize("old_name", ["monitor", "alerts", "probes", "phantoms"])
def test_the_old_top_level_names_are_gone(bare_venv: Path, old_name: str) -> None:
    done = _run([bare_venv, "-c", f"import {old_name}"], cwd=bare_venv.parent, check=False)
    assert done.returncode != 0
    assert f"No module named '{old_name}'" in done.stderr


def test_the_probe_captures_to_its_spool_offline(bare_venv: Path, tmp_path: Path) -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on: the monitor is down
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    spool = tmp_path / "probe.spool.sqlite"
    done = _run([bare_venv, "-c", PROBE_SCRIPT, url, spool], cwd=tmp_path)
    record_id, depth = done.stdout.split()
    assert depth == "1"
    with sqlite3.connect(spool) as conn:
        stored = [row[0] for row in conn.execute("SELECT record_id FROM records")]
    assert stored == [record_id]


def test_the_command_says_what_to_install(bare_venv: Path) -> None:
    done = _run([bare_venv.parent / "phase4", "--help"], cwd=bare_venv.parent, check=False)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "pip install 'phase4[server]'" in lines[0]
