"""Start-up time of the ``phase4`` command: ``--help`` and light commands against the bare
interpreter, in the same run.

Run:  .venv/bin/python bench/cli_startup.py [--runs 7]

Each command runs ``--runs`` times in a fresh process (the installed console script, as a user
runs it) against a throwaway SQLite store; the median wall time is reported, with its ratio to
``python -c pass`` (the floor no command can beat) measured in the same run, interleaved, so
that a noisy shared machine affects both alike. ``export --help`` loads the export (FHIR, PDF,
scipy) on purpose: it shows what every command would pay if those imports ran at start-up.
Writes bench/results/cli_startup.json and prints markdown rows for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

BIN = Path(sys.executable).parent


def _commands(store: Path) -> dict[str, list[str]]:
    phase4 = str(BIN / "phase4")
    return {
        "python -c pass (baseline)": [sys.executable, "-c", "pass"],
        "phase4 --help": [phase4, "--help"],
        "phase4 phantom --help": [phase4, "phantom", "--help"],
        "phase4 token --help": [phase4, "token", "--help"],
        "phase4 detect --help": [phase4, "detect", "--help"],
        "phase4 audit verify": [phase4, "audit", "verify"],
        "phase4 deployment create": [
            phase4,
            "deployment",
            "create",
            "ID",
            "--site",
            "site-a",
            "--model",
            "m",
            "--version",
            "1",
        ],
        "phase4 export --help (loads the export)": [phase4, "export", "--help"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "phase4.db"
        env = {**os.environ, "PHASE4_DATABASE_URL": f"sqlite:///{store}"}
        subprocess.run(
            [str(BIN / "phase4"), "db", "upgrade"], env=env, check=True, capture_output=True
        )
        commands = _commands(store)
        times: dict[str, list[float]] = {name: [] for name in commands}
        cpu: dict[str, list[float]] = {name: [] for name in commands}
        for run in range(args.runs):
            for name, argv in commands.items():
                argv = [a.replace("ID", f"bench-{run}@site-a") for a in argv]
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.perf_counter()
                subprocess.run(argv, env=env, check=True, capture_output=True)
                times[name].append(time.perf_counter() - t0)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu[name].append(
                    after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
                )
    base = statistics.median(times["python -c pass (baseline)"])
    rows = []
    for name, values in times.items():
        median = statistics.median(values)
        rows.append(
            {
                "command": name,
                "median_s": median,
                "min_s": min(values),
                "ratio": median / base,
                # CPU time (user + system) of the process: what a busy machine inflates least
                "cpu_median_s": statistics.median(cpu[name]),
            }
        )
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
        "load_average": os.getloadavg(),
        "runs": args.runs,
        "rows": rows,
    }
    out = Path(__file__).parent / "results" / "cli_startup.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"{result['machine']}; load average {result['load_average']}; {args.runs} runs each")
    print(
        "| command | median s | min s | × python -c pass | CPU s (median) |\n"
        "|---|---:|---:|---:|---:|"
    )
    for r in rows:
        print(
            f"| `{r['command']}` | {r['median_s']:.3f} | {r['min_s']:.3f} | {r['ratio']:.1f} "
            f"| {r['cpu_median_s']:.3f} |"
        )


if __name__ == "__main__":
    main()
