"""Cost of PET feature extraction against reading the same pixels with pydicom alone.

Usage: .venv/bin/python bench/dicom_features.py [--repeats 7] [--slices 300] [--matrix 192]

A synthetic whole-body PET series (300 slices of 192 x 192, int16 with per-slice
RescaleSlope, 3.65 x 3.65 x 3.27 mm voxels, a 34 x 24 cm body with noise and hot spheres) is
written once to a temporary folder. Each repeat then times, in alternating order:

* baseline: ``pydicom.dcmread(path)`` and ``ds.pixel_array`` for every file - the least any
  tool that looks at the pixels must do;
* header only: ``pydicom.dcmread(path)`` for every file (for context: the parsing floor);
* extraction: ``phase4.probes.dicom.extract_series(folder)`` - discovery, reading, ordering, SUV,
  image features and every flag.

Files are in the page cache for all three (written just before, and warmed once), so the
numbers are CPU cost, not disk. Medians over the repeats are reported with the ratio
extraction / baseline; the target is <= 1.2. A per-stage breakdown of the extraction (read,
volume, features) is always printed; with --profile, or when the target is missed, the top
functions of a cProfile run are printed too.

Prints a Markdown table and writes JSON to bench/results/dicom_features.json.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pydicom  # noqa: E402

from phase4.probes.dicom import extract_series  # noqa: E402
from phase4.probes.dicom.read import read_series  # noqa: E402
from phase4.probes.dicom.synthetic import HotSphere, write_pet_series  # noqa: E402
from phase4.probes.dicom.volume import build_volume  # noqa: E402

RESULTS_PATH = ROOT / "bench" / "results" / "dicom_features.json"
TARGET_RATIO = 1.2
VOXEL_MM = (3.27, 3.65, 3.65)  # slice spacing, row spacing, column spacing
BODY_SEMI_AXES_MM = (170.0, 120.0)
SPHERES = (
    HotSphere((40.0, 20.0, -300.0), 15.0, 40000.0),
    HotSphere((-60.0, -10.0, -520.0), 10.0, 25000.0),
    HotSphere((0.0, 0.0, -800.0), 30.0, 60000.0),  # a bladder
)


def write_series(folder: Path, slices: int, matrix: int) -> list[Path]:
    return write_pet_series(
        folder,
        shape=(slices, matrix, matrix),
        voxel_mm=VOXEL_MM,
        body_semi_axes_mm=BODY_SEMI_AXES_MM,
        hot_spheres=SPHERES,
        noise=0.15,
        slices_per_bed=60,
    )


def baseline(paths: list[Path]) -> None:
    for path in paths:
        pydicom.dcmread(path).pixel_array  # noqa: B018  (decoding is the point)


def header_only(paths: list[Path]) -> None:
    for path in paths:
        pydicom.dcmread(path)


def timed(function: Callable[[], object]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def stages(folder: Path) -> dict[str, float]:
    """Read (discover + dcmread) and volume (order, decode, rescale) timed through the public
    steps; features (dose, SUV, statistics, flags) is a whole extraction minus the two."""
    read_s = timed(lambda: read_series(folder))
    series = read_series(folder).series[0]
    volume_s = timed(lambda: build_volume(series))
    total_s = timed(lambda: extract_series(folder))
    return {
        "read_s": read_s,
        "volume_s": volume_s,
        "features_s": max(0.0, total_s - read_s - volume_s),
    }


def profile(folder: Path, top: int = 25) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    extract_series(folder)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "pydicom": pydicom.__version__,
        "numpy": __import__("numpy").__version__,
    }


def run(repeats: int, slices: int, matrix: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="phase4-bench-dicom-") as tmp:
        folder = Path(tmp)
        paths = write_series(folder, slices, matrix)
        size_mb = sum(p.stat().st_size for p in paths) / 1e6
        baseline(paths)  # warm the page cache and pydicom's imports
        features = extract_series(folder)
        samples: dict[str, list[float]] = {"baseline": [], "header_only": [], "extraction": []}
        breakdown: list[dict[str, float]] = []
        for repeat in range(repeats):
            order = ["baseline", "header_only", "extraction"]
            if repeat % 2:
                order.reverse()  # alternate, so drift in machine load hits both sides
            for name in order:
                function = {
                    "baseline": lambda: baseline(paths),
                    "header_only": lambda: header_only(paths),
                    "extraction": lambda: extract_series(folder),
                }[name]
                samples[name].append(timed(function))
            breakdown.append(stages(folder))
        medians = {name: statistics.median(values) for name, values in samples.items()}
        ratio = medians["extraction"] / medians["baseline"]
        report: dict[str, Any] = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine(),
            "series": {
                "slices": slices,
                "rows": matrix,
                "columns": matrix,
                "voxel_mm": VOXEL_MM,
                "files_mb": round(size_mb, 1),
                "transfer_syntax": "Explicit VR Little Endian, int16, per-slice RescaleSlope",
            },
            "repeats": repeats,
            "median_s": {k: round(v, 4) for k, v in medians.items()},
            "samples_s": {k: [round(v, 4) for v in values] for k, values in samples.items()},
            "extraction_stages_median_s": {
                key: round(statistics.median(b[key] for b in breakdown), 4) for key in breakdown[0]
            },
            "ratio_extraction_to_baseline": round(ratio, 3),
            "target_ratio": TARGET_RATIO,
            "target_met": ratio <= TARGET_RATIO,
            "features_check": {
                "suv_max": round(features.image.suv_max or 0.0, 3),
                "background_cv": round(features.image.background_cv or 0.0, 4),
                "flags_raised": list(features.raised_flags),
            },
        }
        if ratio > TARGET_RATIO:
            report["profile"] = profile(folder)
        return report


def markdown(report: dict[str, Any]) -> str:
    m, s = report["machine"], report["series"]
    medians, stages_s = report["median_s"], report["extraction_stages_median_s"]
    base = medians["baseline"]
    slices = s["slices"]
    lines = [
        f"### DICOM feature extraction - {report['date']}",
        "",
        f"Machine: {m['platform']}, {m['cpu_count']} CPUs, Python {m['python']}, "
        f"pydicom {m['pydicom']}, numpy {m['numpy']}",
        f"Series: {slices} slices of {s['rows']}x{s['columns']} ({s['files_mb']} MB), "
        f"median of {report['repeats']} repeats, page cache warm",
        "",
        "| what | median (s) | per slice (ms) | vs baseline |",
        "|---|---:|---:|---:|",
    ]
    rows = [
        ("baseline: dcmread + pixel_array", medians["baseline"]),
        ("dcmread alone (header floor)", medians["header_only"]),
        ("extract_series (all features and flags)", medians["extraction"]),
        ("  of which read (discover + dcmread)", stages_s["read_s"]),
        ("  of which volume (order, decode, rescale)", stages_s["volume_s"]),
        ("  of which features (SUV, statistics, flags)*", stages_s["features_s"]),
    ]
    for name, value in rows:
        lines.append(f"| {name} | {value:.3f} | {value / slices * 1e3:.2f} | {value / base:.2f}x |")
    verdict = "met" if report["target_met"] else "MISSED"
    lines += [
        "",
        "Stages are medians of separate timed runs; * = a whole extraction minus read and volume.",
        f"Ratio extraction / baseline: **{report['ratio_extraction_to_baseline']:.2f}x** "
        f"(target <= {report['target_ratio']}: {verdict})",
    ]
    if "profile" in report:
        lines += [
            "",
            "Where the time goes (cProfile, by own time):",
            "```",
            report["profile"],
            "```",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--matrix", type=int, default=192)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one run")
    parser.add_argument("--out", type=Path, default=RESULTS_PATH)
    args = parser.parse_args()
    report = run(args.repeats, args.slices, args.matrix)
    if args.profile and "profile" not in report:
        with tempfile.TemporaryDirectory(prefix="phase4-bench-dicom-") as tmp:
            write_series(Path(tmp), args.slices, args.matrix)
            report["profile"] = profile(Path(tmp))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))
    print(f"\nJSON: {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
