"""The demo test's identifier scan alone: one regex at a time against the token prefilter.

Usage: .venv/bin/python bench/phi_scan.py [--texts PATH] [--repeats 5]

Runs the demo as tests/demo/test_demo.py does (120 days, 10 studies a day, seed 7; minutes),
collects the same texts and identifiers, then times ``scan_each_regex`` (every identifier's
regexes over every text) once and ``scan`` (tests/demo/phi_scan.py) ``--repeats`` times (best
kept: the machine is shared), and checks both return the same list, on the demo's texts and on
three of them with identifiers planted. With ``--texts`` the texts and identifiers are saved
there as JSON on the first run and read back on later ones, so the demo runs once.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.demo.phi_scan import identifier_probes, scan, scan_each_regex  # noqa: E402


def demo_texts() -> tuple[dict[str, str], list[str]]:
    """The texts and identifiers the demo test scans, from a fresh demo run."""
    from rich.console import Console

    from phase4.demo.run import run_demo
    from tests.demo.test_demo import DemoRun, _everything_the_demo_produced

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        buffer = io.StringIO()
        console = Console(file=buffer, width=200, color_system=None)
        logs = io.StringIO()
        handler = logging.StreamHandler(logs)
        handler.setLevel(logging.INFO)
        handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            result = run_demo(
                data_dir=data_dir, days=120, studies_per_day=10, seed=7, console=console
            )
        finally:
            root.removeHandler(handler)
        run = DemoRun(result, data_dir, buffer.getvalue(), logs.getvalue())
        return _everything_the_demo_produced(run), sorted(result.phi_values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=Path, help="JSON cache of the texts and identifiers")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    if args.texts is not None and args.texts.exists():
        saved = json.loads(args.texts.read_text())
        texts, values = saved["texts"], saved["values"]
    else:
        texts, values = demo_texts()
        if args.texts is not None:
            args.texts.write_text(json.dumps({"texts": texts, "values": values}))

    t = time.perf_counter()
    probes = identifier_probes(values)
    probes_s = time.perf_counter() - t
    t = time.perf_counter()
    patterns = [p.regex for p in probes]  # what the per-regex scan compiles up front
    compile_s = time.perf_counter() - t

    t = time.perf_counter()
    reference = scan_each_regex(texts, patterns)
    each_regex_s = time.perf_counter() - t

    fast_s = float("inf")
    for _ in range(args.repeats):
        re.purge()  # the fast scan compiles its candidates' regexes itself, each time
        t = time.perf_counter()
        fast = scan(texts, probes)
        fast_s = min(fast_s, time.perf_counter() - t)
    assert fast == reference, "the prefiltered scan differs from the per-regex scan"

    # The demo leaves no identifier, so compare once more on three of its texts with identifiers
    # planted in every form (as is, ISO date, "Given Family", family name in lower case).
    planted = {}
    for n, (where, text) in enumerate(list(texts.items())[:3]):
        extra = []
        for v in values[n::40]:
            if re.fullmatch(r"\d{8}", v):
                extra.append(f"born {v[:4]}-{v[4:6]}-{v[6:]}.")
            elif "^" in v:
                family, given = v.split("^", 1)
                extra.append(f"{given.title()} {family.title()}, {family.lower()}")
            else:
                extra.append(f"id={v};")
        planted[where] = text + "\n" + "\n".join(extra)
    expected = scan_each_regex(planted, patterns)
    assert expected and scan(planted, probes) == expected, "planted: the scans differ"
    print(f"planted: {len(expected)} found by both scans in {len(planted)} texts")

    chars = sum(len(x) for x in texts.values())
    print(
        f"{len(probes):,} regexes ({len(values):,} identifiers), {len(texts)} texts, "
        f"{chars:,} characters"
    )
    print(
        f"each regex over each text: {each_regex_s:.2f} s, plus {compile_s:.2f} s compiling "
        f"every regex ({len(reference)} found)"
    )
    print(
        f"token prefilter, then regex: {fast_s:.3f} s including the regexes it compiles "
        f"(best of {args.repeats}; same result), plus {probes_s:.3f} s listing the probes"
    )
    print(
        f"speed-up of the scan: {each_regex_s / fast_s:,.0f}x; of the whole check: "
        f"{(compile_s + each_regex_s) / (probes_s + fast_s):,.0f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
