"""``phase4 --help`` and the light commands do not load the heavy dependencies of others.

Checked by what a fresh interpreter has imported (sys.modules), not by timing: the speed itself
is measured in bench/cli_startup.py.
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = (
    "scipy",
    "evidently",
    "plotly",
    "pandas",
    "sklearn",
    "fastapi",
    "pydicom",
    "fpdf",
    # the database layer: only the commands that open the store need it (the token commands'
    # --role option once loaded it through phase4.monitor.store.auth, 6 of the 7 s of a loaded
    # start)
    "sqlalchemy",
    "sqlmodel",
    "alembic",
    # typer carries its own click; the standalone one (uvicorn's) is 40 ms of nothing here
    "click",
)


def _loaded_after(code: str) -> list[str]:
    probe = (
        "import json, sys\n"
        f"{code}\n"
        f"print(json.dumps(sorted(m for m in {list(HEAVY)!r} if m in sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=True
    )
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def test_importing_the_command_loads_no_heavy_dependency() -> None:
    assert _loaded_after("import phase4.cli") == []


def test_help_lists_every_command_without_loading_them() -> None:
    code = (
        "import contextlib, io\n"
        "from phase4.cli import app\n"
        "text = io.StringIO()\n"
        "with contextlib.redirect_stdout(text):\n"
        "    try:\n"
        "        app(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "assert 'export' in text.getvalue() and 'phantom' in text.getvalue(), text.getvalue()\n"
    )
    assert _loaded_after(code) == []


def test_the_lazy_export_command_still_parses_its_options() -> None:
    code = (
        "from phase4.cli import app\n"
        "try:\n"
        "    app(['export', '--help'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
    )
    # asking for export's own help loads export (and whatever it needs), and exits 0
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert "--deployment" in done.stdout and "--format" in done.stdout


def test_a_store_command_on_an_up_to_date_store_skips_alembic(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'store.db'}"
    migrate = f"from phase4.monitor.store.db import upgrade\nupgrade({url!r})\n"
    first = subprocess.run(
        [sys.executable, "-c", migrate + "import sys; print('alembic' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert first.stdout.strip() == "True"  # a new store is created by Alembic
    assert "alembic" not in _loaded_after(migrate)  # an up-to-date one is only read
