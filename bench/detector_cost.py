"""Update cost, state size and memory of phase4's drift detectors, against the product targets.

Run:  .venv/bin/python bench/detector_cost.py [--n 200000] [--stream-n 50000] [--repeat 5]
                                              [--streams 100000]

What is measured, and why
-------------------------
phase4 keeps one detector state per monitored stream and updates it on every inference record,
so the per-observation update cost, the size of the persisted state and the memory held for many
streams decide how many deployments one server can watch. Targets set by the product owner:
≤ 5 µs amortised per observation, ≤ 2 KB of state per stream, 100,000 streams in < 1 GB.

1. Amortised update cost (µs per observation, wall clock, median of ``--repeat`` runs over
   ``--n`` in-control observations; the windowed KS test's work every 50th observation is
   spread over all of them). Detectors as the product builds them for its default budget
   (1 false alarm/year, 20 studies/day: ARL0 = 21,900 per numeric detector, reference 500):
   Cusum, Ewma, WindowedKS (on PIT values), BernoulliCusum (p0 = 10%, p1 = 20%); then a whole
   numeric stream through ``DeploymentMonitor.observe`` with one stream (the normal-score
   transform, the three detectors and the stream's bookkeeping), with its parts timed alone, and a
   whole binary stream. Baseline measured in the same run: a Python ``for`` loop doing one float
   addition per observation (the floor of any per-observation Python loop); every figure is also
   given as a ratio to it. The one-off calibration when a stream's reference completes is timed
   separately (cold: first time in a process for an ARL0; warm: cached).
2. State per stream: ``len(json.dumps(stream.to_dict()))`` in bytes, and of its ``detectors``
   part alone, at every observation over 1,000 observations after the reference completed
   (the KS buffer fills and empties every 50), reported as min / mean / max; also the largest
   state while the reference is being collected (the raw values are held until then).
3. Memory for ``--streams`` streams (default 100,000), each built in a fresh child process from
   the JSON state (as a server restores it), with independent objects and the KS buffer half full
   (25 values, its average): (a) the detectors of a numeric stream (Cusum + Ewma + WindowedKS);
   (b) whole numeric ``Stream`` objects (spec, reference, detectors, bookkeeping). Measured as
   resident-set growth (/proc/self/statm) and, in a second child, as tracemalloc's traced bytes.
   If building all of them fails, the count built is reported and the figure is extrapolated
   linearly (stated in the output).

Writes bench/results/detector_cost.json.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import multiprocessing
import os
import platform
import resource
import statistics
import subprocess
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "detector_cost.json"
STAMP = "2026-01-05T08:00:00+00:00"
TARGET_US = 5.0
TARGET_STATE_BYTES = 2048
TARGET_MEMORY_BYTES = 1024**3  # 1 GB, read as GiB (the looser reading; stated in the output)
REFERENCE_SIZE = 500


# ---------------------------------------------------------------------------------------------
# Timing


def loop_add(xs: list[float]) -> float:
    """Baseline: one float addition per observation in a Python for loop."""
    acc = 0.0
    for v in xs:
        acc += v
    return acc


def drive(update: Callable[[Any], Any], xs: list[Any]) -> None:
    for v in xs:
        update(v)


def per_obs_us(run: Callable[[], Any], n: int, repeat: int) -> dict[str, float]:
    """Median and min over ``repeat`` runs of the wall time per observation, in µs."""
    times = []
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter_ns()
        run()
        times.append((time.perf_counter_ns() - t) / n / 1000)
    return {"median_us": statistics.median(times), "min_us": min(times), "runs": repeat}


def numeric_config(n_streams: int = 1) -> Any:
    from phase4.monitor.drift.streams import MonitorConfig, StreamSpec

    return MonitorConfig(
        streams=tuple(StreamSpec(field=f"v{i}", kind="numeric") for i in range(n_streams)),
    )


def time_calibration() -> dict[str, float]:
    """The one-off calibration at reference completion, for the default budget's ARL0."""
    from phase4.monitor.drift.budget import share
    from phase4.monitor.drift.detectors import BernoulliCusum, Cusum, Ewma
    from phase4.monitor.drift.streams import DETECTOR_WEIGHTS

    cfg = numeric_config()
    budget = share(streams=1, false_alarms_per_year=1.0, observations_per_day=20.0)
    w = DETECTOR_WEIGHTS["numeric"]
    arl0_cusum = budget.for_detector("cusum", w["cusum"]).arl0
    arl0_ewma = budget.for_detector("ewma", w["ewma"]).arl0
    out = {
        "arl0_stream": budget.arl0,
        "arl0_cusum": arl0_cusum,
        "arl0_ewma": arl0_ewma,
        "cusum_k": cfg.cusum_k,
        "ewma_lambda": cfg.ewma_lambda,
    }
    for label in ("cold_s", "warm_s"):
        t = time.perf_counter()
        Cusum.calibrated(arl0_cusum, cfg.cusum_k, reference_size=REFERENCE_SIZE)
        Ewma.calibrated(arl0_ewma, cfg.ewma_lambda, reference_size=REFERENCE_SIZE)
        out[label] = time.perf_counter() - t
    out["cusum_h"] = Cusum.calibrated(arl0_cusum, cfg.cusum_k, REFERENCE_SIZE).h
    out["ewma_l"] = Ewma.calibrated(arl0_ewma, cfg.ewma_lambda, REFERENCE_SIZE).multiplier_l
    binary = share(streams=1, false_alarms_per_year=1.0, observations_per_day=20.0)
    t = time.perf_counter()
    BernoulliCusum.calibrated(50.5 / 501, 101 / 501, binary.arl0, (500, 50))
    out["binary_s_per_stream"] = time.perf_counter() - t  # depends on the reference: not cached
    return out


def time_detectors(n: int, repeat: int, rng: np.random.Generator) -> dict[str, dict[str, float]]:
    from phase4.monitor.drift.budget import share
    from phase4.monitor.drift.detectors import BernoulliCusum, Cusum, Ewma, WindowedKS
    from phase4.monitor.drift.reference import z_to_uniform

    arl0 = share(streams=1, false_alarms_per_year=1.0, observations_per_day=20.0).arl0
    arl0_bin = share(streams=1, false_alarms_per_year=1.0, observations_per_day=20.0).arl0
    z = rng.standard_normal(n).tolist()
    u = [z_to_uniform(v) for v in z]
    events = (rng.random(n) < 0.10).tolist()
    bern = BernoulliCusum.calibrated(50.5 / 501, 101 / 501, arl0_bin, (500, 50))

    cfg = numeric_config()

    def fresh(kind: str) -> Any:
        if kind == "cusum":
            return Cusum.calibrated(arl0, cfg.cusum_k, reference_size=REFERENCE_SIZE)
        if kind == "ewma":
            return Ewma.calibrated(arl0, cfg.ewma_lambda, reference_size=REFERENCE_SIZE)
        if kind == "ks":
            return WindowedKS.calibrated(arl0, reference_size=REFERENCE_SIZE, window=cfg.ks_window)
        return BernoulliCusum.from_dict(bern.to_dict())

    out = {"baseline: for loop, one float addition": per_obs_us(lambda: loop_add(z), n, repeat)}
    for label, kind, data in (
        ("Cusum.update", "cusum", z),
        ("Ewma.update", "ewma", z),
        ("WindowedKS.update", "ks", u),
        ("BernoulliCusum.update", "bern", events),
    ):
        out[label] = per_obs_us(lambda k=kind, d=data: drive(fresh(k).update, d), n, repeat)
    return out


def warmed_monitor(kind: str, rng: np.random.Generator) -> Any:
    """A DeploymentMonitor with one stream whose reference is complete."""
    from phase4.monitor.drift.streams import DeploymentMonitor, MonitorConfig, StreamSpec

    if kind == "numeric":
        mon = DeploymentMonitor.new(numeric_config())
        for v in rng.normal(2.2, 0.22, REFERENCE_SIZE).tolist():
            mon.observe({"v0": v}, at=STAMP)
    else:
        cfg = MonitorConfig(streams=(StreamSpec(field="v0", kind="binary"),))
        mon = DeploymentMonitor.new(cfg)
        while not mon.streams["v0"].monitoring:
            mon.observe({"v0": bool(rng.random() < 0.10)}, at=STAMP)
    assert mon.streams["v0"].monitoring
    return mon


def time_streams(n: int, repeat: int, rng: np.random.Generator) -> dict[str, dict[str, float]]:
    from phase4.monitor.drift.reference import NumericReference, z_to_uniform

    out: dict[str, dict[str, float]] = {}
    values = rng.normal(2.2, 0.22, n).tolist()
    records = [{"v0": v} for v in values]
    out["baseline: for loop, one float addition"] = per_obs_us(lambda: loop_add(values), n, repeat)

    def run_numeric() -> None:
        mon = warmed_monitor("numeric", np.random.default_rng(1))
        observe = mon.observe
        t = time.perf_counter_ns()
        for r in records:
            observe(r, at=STAMP)
        run_numeric.elapsed = time.perf_counter_ns() - t  # type: ignore[attr-defined]

    times = []
    for _ in range(repeat):
        gc.collect()
        run_numeric()
        times.append(run_numeric.elapsed / n / 1000)  # type: ignore[attr-defined]
    out["DeploymentMonitor.observe, 1 numeric stream"] = {
        "median_us": statistics.median(times),
        "min_us": min(times),
        "runs": repeat,
    }
    # The parts of a numeric update, alone.
    mon = warmed_monitor("numeric", np.random.default_rng(1))
    stream = mon.streams["v0"]
    ref = NumericReference.from_dict(stream.reference)
    zs = [ref.z(v, i, "v0") for i, v in enumerate(values)]
    out["  part: NumericReference.z (normal score)"] = per_obs_us(
        lambda: [ref.z(v, i, "v0") for i, v in enumerate(values)], n, repeat
    )
    out["  part: z_to_uniform"] = per_obs_us(lambda: [z_to_uniform(z) for z in zs], n, repeat)
    dets = stream.detectors

    def three() -> None:
        from phase4.monitor.drift.detectors import detector_from_dict

        c, e, k = (
            detector_from_dict(name, dets[name].to_dict()) for name in ("cusum", "ewma", "ks")
        )
        for i, z in enumerate(zs):
            c.update(z, i)
            e.update(z, i)
            k.update(z_to_uniform(z), i)

    out["  part: Cusum + Ewma + WindowedKS (incl. z_to_uniform)"] = per_obs_us(three, n, repeat)
    bin_records = [{"v0": bool(b)} for b in (rng.random(n) < 0.10).tolist()]

    def run_binary() -> None:
        mon = warmed_monitor("binary", np.random.default_rng(2))
        observe = mon.observe
        t = time.perf_counter_ns()
        for r in bin_records:
            observe(r, at=STAMP)
        run_binary.elapsed = time.perf_counter_ns() - t  # type: ignore[attr-defined]

    times = []
    for _ in range(repeat):
        gc.collect()
        run_binary()
        times.append(run_binary.elapsed / n / 1000)  # type: ignore[attr-defined]
    out["DeploymentMonitor.observe, 1 binary stream"] = {
        "median_us": statistics.median(times),
        "min_us": min(times),
        "runs": repeat,
    }
    return out


def time_round_trip(repeat: int) -> dict[str, float]:
    """A detection pass restores the deployment's state from JSON and saves it again
    (phase4.monitor.surveillance.detection: DeploymentMonitor.from_dict ... to_dict, per batch of
    PASS_BATCH records):
    its cost per pass, and spread over a full batch."""
    from phase4.monitor.drift.streams import DeploymentMonitor
    from phase4.monitor.surveillance.detection import PASS_BATCH

    mon = warmed_monitor("numeric", np.random.default_rng(5))
    text = json.dumps(mon.to_dict())
    n = 200

    def cycle() -> None:
        for _ in range(n):
            json.dumps(DeploymentMonitor.from_dict(json.loads(text)).to_dict())

    t = per_obs_us(cycle, n, repeat)
    return {
        "per_pass_us": t["median_us"],
        "pass_batch": PASS_BATCH,
        "per_observation_us_full_batch": t["median_us"] / PASS_BATCH,
    }


# ---------------------------------------------------------------------------------------------
# State size


def state_sizes(rng: np.random.Generator) -> dict[str, Any]:
    from phase4.monitor.drift.streams import DeploymentMonitor

    out: dict[str, Any] = {}
    mon = DeploymentMonitor.new(numeric_config())
    during_reference = 0
    for v in rng.normal(2.2, 0.22, REFERENCE_SIZE).tolist():
        before = mon.streams["v0"].to_dict()
        during_reference = max(during_reference, len(json.dumps(before)))
        mon.observe({"v0": v}, at=STAMP)
    stream = mon.streams["v0"]
    whole, dets = [], []
    for v in rng.normal(2.2, 0.22, 1000).tolist():
        mon.observe({"v0": v}, at=STAMP)
        d = stream.to_dict()
        whole.append(len(json.dumps(d)))
        dets.append(len(json.dumps(d["detectors"])))
    d = stream.to_dict()
    parts = {k: len(json.dumps(v)) for k, v in d.items()}
    out["numeric"] = {
        "stream_bytes": {"min": min(whole), "mean": statistics.mean(whole), "max": max(whole)},
        "detectors_bytes": {"min": min(dets), "mean": statistics.mean(dets), "max": max(dets)},
        "max_bytes_while_collecting_reference": during_reference,
        "parts_bytes_at_end": parts,
        "reference_knots": len(d["reference"]["knot_z"]),
    }
    bmon = warmed_monitor("binary", rng)
    bstream = bmon.streams["v0"]
    bwhole, bdets = [], []
    for b in (rng.random(1000) < 0.10).tolist():
        bmon.observe({"v0": bool(b)}, at=STAMP)
        d = bstream.to_dict()
        bwhole.append(len(json.dumps(d)))
        bdets.append(len(json.dumps(d["detectors"])))
    out["binary"] = {
        "stream_bytes": {"min": min(bwhole), "mean": statistics.mean(bwhole), "max": max(bwhole)},
        "detectors_bytes": {"min": min(bdets), "mean": statistics.mean(bdets), "max": max(bdets)},
        "parts_bytes_at_end": {k: len(json.dumps(v)) for k, v in bstream.to_dict().items()},
    }
    return out


# ---------------------------------------------------------------------------------------------
# Memory for many streams (each measurement in a fresh child process)


def template_stream_json() -> str:
    """The JSON state of a monitoring numeric stream whose KS buffer holds 25 values."""
    mon = warmed_monitor("numeric", np.random.default_rng(3))
    stream = mon.streams["v0"]
    rng = np.random.default_rng(4)
    while len(stream.detectors["ks"].buffer) != 25:
        mon.observe({"v0": float(rng.normal(2.2, 0.22))}, at=STAMP)
    return json.dumps(stream.to_dict())


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_child(args: tuple[str, str, int, str]) -> dict[str, Any]:
    """Build ``count`` independent objects from the JSON state; report the growth."""
    what, template, count, probe = args
    from phase4.monitor.drift.detectors import detector_from_dict
    from phase4.monitor.drift.streams import Stream

    detectors_json = json.dumps(json.loads(template)["detectors"])

    def build() -> Any:
        if what == "detectors":
            d = json.loads(detectors_json)
            return tuple(detector_from_dict(k, v) for k, v in d.items())
        return Stream.from_dict(json.loads(template))

    build()  # imports and caches outside the measurement
    gc.collect()
    if probe == "tracemalloc":
        tracemalloc.start()
    rss0 = _rss_bytes()
    t0 = time.perf_counter()
    held = []
    built = 0
    try:
        for _ in range(count):
            held.append(build())
            built += 1
    except MemoryError:
        pass
    seconds = time.perf_counter() - t0
    gc.collect()
    out: dict[str, Any] = {"what": what, "probe": probe, "requested": count, "built": built}
    if probe == "tracemalloc":
        current, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out["bytes"] = current
    else:
        out["bytes"] = _rss_bytes() - rss0
        out["max_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out["build_seconds"] = seconds
    out["bytes_per_stream"] = out["bytes"] / max(built, 1)
    out["extrapolated_to_requested"] = built < count
    out["bytes_for_requested"] = out["bytes_per_stream"] * count
    del held
    return out


def memory(count: int) -> list[dict[str, Any]]:
    template = template_stream_json()
    ctx = multiprocessing.get_context("spawn")
    results = []
    for what in ("detectors", "stream"):
        for probe in ("rss", "tracemalloc"):
            with ctx.Pool(1) as pool:
                results.append(pool.apply(memory_child, ((what, template, count, probe),)))
    return results


# ---------------------------------------------------------------------------------------------


def provenance() -> dict[str, Any]:
    """The code measured: git commit, whether phase4/monitor/ differs from it, a hash of
    phase4/monitor/drift
    (other people edit the product while benchmarks run)."""
    root = Path(__file__).resolve().parents[1]
    files = sorted((root / "phase4" / "monitor" / "drift").glob("*.py"))

    def git(*a: str) -> str:
        out = subprocess.run(["git", *a], cwd=root, capture_output=True, text=True, check=False)
        return out.stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD"),
        "monitor_uncommitted_changes": bool(git("status", "--porcelain", "phase4/monitor")),
        "monitor_drift_sha256_16": hashlib.sha256(
            b"".join(f.read_bytes() for f in files)
        ).hexdigest()[:16],
    }


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200_000, help="observations per detector timing")
    ap.add_argument("--stream-n", type=int, default=50_000, help="observations per stream timing")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--streams", type=int, default=100_000, help="streams held in memory")
    ap.add_argument("--seed", type=int, default=20260105)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()

    import phase4.monitor.drift.detectors
    import phase4.monitor.drift.streams  # noqa: F401  (the version measured: imported at the start)

    info = machine()
    source = provenance()
    date = datetime.now(UTC).isoformat(timespec="seconds")
    print(f"# phase4 detector cost — {date}")
    print(f"# {info['platform']}, {info['cpu_count']} CPUs, Python {info['python']}")
    print(
        f"# phase4 commit {source['commit'][:12]}"
        f"{' + uncommitted changes' if source['monitor_uncommitted_changes'] else ''}, "
        f"phase4/monitor/drift sha256 {source['monitor_drift_sha256_16']}",
        flush=True,
    )
    rng = np.random.default_rng(args.seed)

    calibration = time_calibration()
    print(
        f"calibration at reference completion (ARL0 CUSUM {calibration['arl0_cusum']:,.0f}, "
        f"EWMA {calibration['arl0_ewma']:,.0f}): "
        f"cold {calibration['cold_s']:.1f} s, warm {calibration['warm_s'] * 1e3:.2f} ms; "
        f"binary {calibration['binary_s_per_stream']:.2f} s per stream",
        flush=True,
    )
    timings = time_detectors(args.n, args.repeat, rng)
    timings.update(
        {
            k: v
            for k, v in time_streams(args.stream_n, args.repeat, rng).items()
            if "baseline" not in k
        }
    )
    round_trip = time_round_trip(args.repeat)
    base = timings["baseline: for loop, one float addition"]["median_us"]
    lines = [
        "",
        f"## Amortised update cost per observation (median of {args.repeat} runs; detectors "
        f"{args.n:,} obs, streams {args.stream_n:,} obs)",
        "",
        "| what | µs / obs | × baseline | ≤ 5 µs? |",
        "|---|---:|---:|---|",
    ]
    for label, t in timings.items():
        t["ratio_to_baseline"] = t["median_us"] / base
        t["meets_target"] = t["median_us"] <= TARGET_US
        part = label.startswith("  ") or label.startswith("baseline")
        lines.append(
            f"| {label.strip()} | {t['median_us']:.3f} | {t['ratio_to_baseline']:.1f} | "
            f"{'' if part else ('yes' if t['meets_target'] else '**no**')} |"
        )

    lines += [
        "",
        f"State round trip per detection pass (from JSON, observe..., to JSON), 1 numeric "
        f"stream: {round_trip['per_pass_us']:.0f} µs per pass, "
        f"{round_trip['per_observation_us_full_batch']:.3f} µs per observation over a full "
        f"batch of {round_trip['pass_batch']:,} records.",
    ]
    sizes = state_sizes(rng)
    num, binary = sizes["numeric"], sizes["binary"]
    lines += [
        "",
        "## State per stream (len of json.dumps, bytes; min / mean / max over 1,000 observations)",
        "",
        "| stream | whole stream.to_dict() | detectors only | whole ≤ 2 KB? | detectors ≤ 2 KB? |",
        "|---|---|---|---|---|",
    ]
    for name, s in (("numeric", num), ("binary", binary)):
        w, d = s["stream_bytes"], s["detectors_bytes"]
        s["meets_target_whole"] = w["max"] <= TARGET_STATE_BYTES
        s["meets_target_detectors"] = d["max"] <= TARGET_STATE_BYTES
        lines.append(
            f"| {name} | {w['min']:,} / {w['mean']:,.0f} / {w['max']:,} | "
            f"{d['min']:,} / {d['mean']:,.0f} / {d['max']:,} | "
            f"{'yes' if s['meets_target_whole'] else '**no**'} | "
            f"{'yes' if s['meets_target_detectors'] else '**no**'} |"
        )
    lines += [
        "",
        f"numeric stream parts at the end (bytes): {num['parts_bytes_at_end']}; "
        f"while collecting its reference the state reaches "
        f"{num['max_bytes_while_collecting_reference']:,} bytes (raw values).",
    ]
    print("\n".join(lines), flush=True)

    mem = memory(args.streams)
    mlines = [
        "",
        f"## Memory for {args.streams:,} numeric streams (KS buffer half full), fresh child "
        "process each",
        "",
        "| objects | probe | built | bytes / stream | total for requested | < 1 GiB? |",
        "|---|---|---:|---:|---:|---|",
    ]
    for m in mem:
        m["meets_target"] = m["bytes_for_requested"] < TARGET_MEMORY_BYTES
        what = "Cusum + Ewma + WindowedKS" if m["what"] == "detectors" else "whole Stream"
        extra = " (extrapolated)" if m["extrapolated_to_requested"] else ""
        mlines.append(
            f"| {what} | {m['probe']} | {m['built']:,} | {m['bytes_per_stream']:,.0f} | "
            f"{m['bytes_for_requested'] / 2**20:,.0f} MiB{extra} | "
            f"{'yes' if m['meets_target'] else '**no**'} |"
        )
    print("\n".join(mlines))
    table = "\n".join(lines + mlines)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "date": date,
        "machine": info,
        "source": source,
        "targets": {
            "update_us_per_observation": TARGET_US,
            "state_bytes_per_stream": TARGET_STATE_BYTES,
            "memory_bytes_for_streams": TARGET_MEMORY_BYTES,
            "streams": args.streams,
        },
        "settings": {"n": args.n, "stream_n": args.stream_n, "repeat": args.repeat},
        "calibration_seconds": calibration,
        "timings_us_per_observation": timings,
        "state_round_trip": round_trip,
        "state_sizes": sizes,
        "memory": mem,
        "markdown": table,
    }
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
