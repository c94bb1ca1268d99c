"""The ``phase4`` console script, and ``python -m phase4``: the command line if it can load.

A bare ``pip install phase4`` is the probe alone (standard library only, PEP 508 extras add the
rest): there the command line's own dependencies (typer, the monitor's stack) are missing, and
the script says in one line what to install and exits 2 (a usage error), instead of a traceback.
An import error from phase4's own code is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys

INSTALL_HINT = "phase4: the command line needs the server extra: pip install 'phase4[server]'"


def main() -> None:
    try:
        from phase4.cli import app
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] == "phase4":
            raise
        print(f"{INSTALL_HINT} (missing: {exc.name})", file=sys.stderr)
        raise SystemExit(2) from None
    app()


if __name__ == "__main__":
    main()
