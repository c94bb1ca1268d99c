"""Detection delay at an equal false-alarm rate: phase4 against an oracle and five peers.

Run:  .venv/bin/python bench/detection_delay.py [--reps 200] [--tune-reps 200] [--jobs 2]
      [--scenarios artifact artifact_late ...] [--binary-rule old|old-blind --out FILE]

What is measured, and why
-------------------------
A drift detector is only as good as its delay *at a given false-alarm rate*: any detector can
be made fast by letting it alarm often. So every detector here is held to the same in-control
mean run length (ARL0, default 2,000 post-reference observations, small enough that a test-sized
run can measure it), and we compare the conditional mean delay after a step change.

Streams (all values continuous, not rounded; distributions from phase4/demo/simulate.py):
1. ``recon_suv``: lesion SUVmax of malignant studies, lognormal(log 8, 0.45) (simulate.py's
   draw without the uptake-time factor, so that the oracle can standardise it exactly);
   a reconstruction upgrade multiplies it by 1.25.
2. ``dose_cal``: liver SUVmean ~ N(2.2, 0.22) (CV 10%); a dose calibrator reading 8% high
   multiplies every SUV by 1/1.08.
3. ``noise``: image-noise CV ~ lognormal(log 0.095, 0.0854) (site A; the per-kg activity
   scatter of simulate.py folded into the log-sd: sqrt(0.08² + (0.06/2)²)); dose reduction
   multiplies it by 1.4.
4. ``artifact``: artifact flag, Bernoulli 2% → 6%.
5. ``ai_fp``: AI positive call among truth-negative studies (false-positive rate), 10% → 15%.
6. ``spread``: AI malignancy score ~ N(0.40, 0.10) whose spread grows x1.5, same mean.
7. ``ramp``: the image-noise CV of 3., drifting gradually: the log-value's mean grows linearly
   from the change to +1σ 600 studies later, then stays. No single-change oracle exists for a
   ramp; its "oracle" column is the CUSUM for the end point (+1σ, k = 0.5) on the exact score,
   a labelled reference chart.
8. ``artifact_late``: the artifact rise of 4. (2% → 6%) with the change at row 1,500 of the
   stream, i.e. τ = 1,000 in-control observations after the 500-observation reference instead
   of 500: the time phase4's binary reference has to grow before the change. It runs on the
   same deployments as ``artifact`` (the same seeds, so its in-control run lengths are
   ``artifact``'s, to the observation: they do not depend on τ), with the same oracle and the
   peers tuned on ``artifact``.

Protocol for every replicate: a reference period, then the change at τ = 500 observations after
the end of the reference (the scenario's ``tau``: 1,000 for ``artifact_late``). The reference is
what phase4 itself uses: the first 500 observations, for a numeric stream and, since 2026-12, for
a binary stream too (MonitorConfig.reference_events_min = 0: monitoring starts at
reference_size, with a chart designed for the uncertainty of the rate; before, the product
waited for 50 events, at 2% about 2,500 observations). With ``--binary-rule growth`` phase4's
binary reference also grows while it monitors, in audited steps toward 200 events, from
in-control observations older than a guard lag, only while its chart's sum is 0 and never after
an alarm (phase4.monitor.drift.growth; docs/STATISTICS.md, "Rare events"), an option a
deployment may set (off by default): the bench feeds the reference and then the continuation
through the real DeploymentMonitor, so the growth happens in the in-control runs and before the
change in the delay runs, as deployed. The other methods keep the first 500 observations. For
comparison,
phase4 can run the previous rule (reference_events_min = 50, reference_events_target = 0):
``--binary-rule old`` as the bench ran it before (every method gets that longer reference and
the change comes τ after it, so the blind time and a change absorbed into the reference are not
counted), ``--binary-rule old-blind`` on the product's streams (phase4 alone is fed them from
row 0 and its reference takes the rows it needs, changed ones included; its delay from the
change and its in-control run lengths from row 500 count its blind time). Every method sees the
same reference/warm-up data (common random numbers across methods).
- Delay = number of post-change observations up to and including the first alarm. Runs that
  alarm before the change (before τ, the scenario's) are excluded and replaced by fresh
  replicates (the count is reported), so the delay is the conditional delay given no false alarm
  before τ. Runs without an alarm within 10,000 post-change observations are counted as 10,000
  and flagged (≥).
- In-control ARL = mean number of post-reference observations up to the first alarm on
  in-control data, censored at 5·ARL0 and estimated as total observations / alarms (the
  censored-geometric MLE, equal to the plain mean when nothing is censored).

Detectors:
- ``oracle``: knows the pre- and post-change distributions. Numeric: two-sided tabular CUSUM
  (phase4.monitor.drift.detectors.Cusum) on the exactly standardised value z, with k = |δ|/2 (δ =
  mean
  of z after the change) and h = calibrate_cusum_h(ARL0, k) for an exactly known reference.
  Binary: Bernoulli CUSUM with the true p0, p1 and h from calibrate_bernoulli_cusum.
- ``phase4``: the product as it runs: a DeploymentMonitor with one stream (field ``v``),
  MonitorConfig(reference_size=500, studies_per_day=20, false_alarms_per_year=3.65), so that
  the per-stream budget is ARL0 = 365·20/3.65 = 2,000 observations (on a numeric stream split by
  phase4.monitor.drift.streams.DETECTOR_WEIGHTS: CUSUM 70% → 2,857, EWMA 25% → 8,000, windowed KS
  5% →
  40,000; the whole Bernoulli CUSUM budget on a
  binary stream, with the default p1 = 2·p0, designed for the reference's uncertainty and
  redesigned at each growth step). CUSUM k, EWMA λ and the KS window are
  MonitorConfig's defaults at the commit measured (recorded in the JSON with the commit and a
  hash of phase4/monitor/drift). Its alarm is the first alarm of any of its detectors. phase4 is
  *not* tuned by simulation: its analytic calibration is what is tested, and its measured
  in-control ARL is reported next to the peers'. (The bench memoises
  calibrate_bernoulli_cusum_uncertain per reference, so a replicate's in-control run and its
  delay run calibrate once, as do equal references after growth steps; the function is pure,
  so results are unchanged.)
- ``adwin``, ``kswin``, ``page_hinkley``: river.drift (river 0.26). ADWIN and Page-Hinkley are
  fed the reference period as warm-up (alarms there are ignored, as a user would after
  deployment); KSWIN starts with its window pre-filled with the last 100 reference values (its
  ``window`` argument).
- ``evidently``: a Report with ValueDrift(column) and the column's default drift test (chosen by
  evidently from the reference size and column type: K-S for the numeric streams, Z-test for
  the binary ones with their 500-row reference; Jensen-Shannon distance for ``artifact`` under
  ``--binary-rule old``, whose reference then exceeds 1,000 rows), run on
  consecutive non-overlapping windows of W = 100 observations against the reference. The
  windows start at the end of the reference, so the change falls on a window boundary (the most
  favourable alignment for a windowed test).
- ``frouros``: frouros.detectors.data_drift.IncrementalKSTest(window_size=100) fitted on the
  reference: a sliding-window two-sample K-S test at every observation; alarm when p < α.

Two diagnostics for phase4, which is not tuned: (a) the oracle is run a second time calibrated
to the in-control ARL phase4 actually achieved, so "phase4 / that oracle" compares the detector
designs at phase4's own false-alarm rate; (b) phase4's numeric in-control ARL is split by
detector (CUSUM, EWMA, windowed KS, each alone on the same stream) with the reference known
exactly and estimated from 500 values, to show where its run length goes.

When the assumptions are wrong: the oracle's design and the peers' tuned parameters are right
for the stream they were designed or tuned on, and the simulation that tuned them knew that
stream exactly; a deployed monitor knows only its reference. So two streams are run a second
time IN CONTROL, every method keeping the design or parameter it had, phase4 calibrating itself
from its own reference as always:
- image noise with the same median and spread but a heavier tail (the log-value Student-t with
  10 and 5 degrees of freedom, scaled to unit variance; the same N(0, 1) draws mapped
  monotonically, so the ranks are those of the Gaussian stream). Rank-based tests (KSWIN,
  evidently's K-S, frouros) must then give exactly the same run lengths: a built-in check of
  the common random numbers.
- the AI false-positive stream with p0 = 8.7% or 11.3% instead of 10% (one standard error of
  p0 estimated from 50 events, what a 500-study reference holds at 10%): what a user gets who
  tunes a detector by simulation at the rate their reference estimated.

Fairness: the peers' thresholds are not calibrated by their authors, so ONE threshold-like
parameter of each is tuned by simulation on in-control streams (independent of the streams used
for the results) until its in-control ARL equals ARL0: ADWIN δ, KSWIN α, Page-Hinkley threshold
λ, evidently's drift threshold, frouros α. The tuned value is then validated on fresh in-control
streams (the ARL ± SE reported). Each peer is also measured WITH ITS DEFAULTS (ADWIN δ = 0.002,
KSWIN α = 0.005, PH λ = 50, evidently 0.05 for p-value tests and 0.1 for distances, frouros
α = 0.05, a convention since frouros sets none), since that is what users get. Where a peer's
statistic is discrete, the attainable ARLs jump and the one closest to ARL0 (in log) is used,
flagged with †.

Speed: KSWIN (≈0.8 ms per update: an exact scipy K-S test each step), frouros (≈0.2 ms) and
evidently (≈100 ms per Report) are too slow for thousands of long runs, so their statistics are
computed by vectorised replicas that call the libraries' own p-value functions, and the replicas
are checked against the libraries themselves on a few streams (section "verification" of the
JSON; the run stops if they disagree). ADWIN, Page-Hinkley, phase4 and the oracle always run the
real code.

Writes bench/results/detection_delay.json.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import multiprocessing
import os
import platform
import random
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from rank_limits import first_alarm_bound

TARGET_ARL0 = 2000.0
REFERENCE_SIZE = 500
TAU = 500
WINDOW = 100
DELAY_HORIZON = 10_000
IC_HORIZON_FACTOR = 5
STAMP = "2026-01-05T08:00:00+00:00"
RESULTS = Path(__file__).resolve().parent / "results" / "detection_delay.json"
METHODS = ("oracle", "phase4", "adwin", "kswin", "page_hinkley", "evidently", "frouros")
PEERS = ("adwin", "kswin", "page_hinkley", "evidently", "frouros")
PATH_PEERS = ("kswin", "evidently", "frouros")
LABELS = {
    "oracle": "oracle CUSUM",
    "phase4": "phase4",
    "adwin": "river ADWIN",
    "kswin": "river KSWIN",
    "page_hinkley": "river Page-Hinkley",
    "evidently": "evidently (W=100)",
    "frouros": "frouros IKS (W=100)",
}

# ---------------------------------------------------------------------------------------------
# Scenarios and data


@dataclass(frozen=True)
class Scenario:
    """One monitored stream and the step change injected into it."""

    key: str
    title: str
    stream: str
    kind: Literal["numeric", "binary"]
    family: str  # streams whose in-control behaviour is identical for rank-based detectors
    dist: Literal["lognormal", "normal", "bernoulli"]
    loc: float = 0.0  # lognormal: log-median; normal: mean
    sd: float = 1.0
    factor: float = 1.0  # numeric change: value x factor
    p0: float = 0.0
    p1: float = 0.0
    tail_df: float = math.inf  # < inf: the (log-)value is Student-t with unit variance
    spread: float = 1.0  # numeric change: deviations from the centre x spread (same mean)
    ramp: int = 0  # > 0: the change grows linearly, reaching x factor after this many studies
    design: str = ""  # the scenario whose oracle design, tuned peers and seeds this one uses
    tau: int = TAU  # the change: this many post-reference observations (in-control) before it

    def values(self, noise: np.ndarray, changed: bool) -> np.ndarray:
        """Map N(0, 1) draws (numeric) or U(0, 1) draws (binary) to the stream's values."""
        if self.dist == "bernoulli":
            return (noise < (self.p1 if changed else self.p0)).astype(float)
        if math.isfinite(self.tail_df):
            # A monotone map N(0, 1) -> t_df scaled to unit variance: the same ranks as the
            # Gaussian stream (common random numbers), heavier tails.
            from scipy import special, stats

            df = self.tail_df
            t = stats.t.isf(special.ndtr(-np.abs(noise)), df) * np.sign(noise)
            noise = t * math.sqrt((df - 2) / df)
        base = (
            np.exp(self.loc + self.sd * noise)
            if self.dist == "lognormal"
            else (self.loc + self.sd * noise)
        )
        if changed and self.spread != 1.0:
            wide = self.sd * self.spread * noise
            return np.exp(self.loc + wide) if self.dist == "lognormal" else self.loc + wide
        if changed and self.ramp:
            # A gradual drift: the i-th changed study (from 1) carries min(1, i / ramp) of the
            # change (on the log scale for a lognormal stream, i.e. a linear ramp in σ units).
            frac = np.minimum(1.0, np.arange(1, noise.size + 1) / self.ramp)
            return base * self.factor**frac
        return base * self.factor if changed else base

    def z_exact(self, x: np.ndarray) -> np.ndarray:
        """The exact in-control normal score of a value (what the oracle monitors)."""
        if self.dist == "lognormal":
            return (np.log(x) - self.loc) / self.sd
        return (x - self.loc) / self.sd

    @property
    def delta(self) -> float:
        """Mean of the exact normal score after the change."""
        if self.dist == "lognormal":
            return math.log(self.factor) / self.sd
        if self.dist == "normal":
            return (self.factor - 1) * self.loc / self.sd
        return math.nan


SCENARIOS: dict[str, Scenario] = {
    s.key: s
    for s in (
        Scenario(
            "recon_suv",
            "SUV +25% (reconstruction upgrade)",
            "lesion SUVmax, lognormal(log 8, 0.45)",
            "numeric",
            "continuous",
            "lognormal",
            loc=math.log(8.0),
            sd=0.45,
            factor=1.25,
        ),
        Scenario(
            "dose_cal",
            "+8% dose-calibrator error (SUV x 1/1.08)",
            "liver SUVmean, N(2.2, 0.22)",
            "numeric",
            "continuous",
            "normal",
            loc=2.2,
            sd=0.22,
            factor=1 / 1.08,
        ),
        Scenario(
            "noise",
            "+40% image noise (dose reduction)",
            "image-noise CV, lognormal(log 0.095, 0.0854)",
            "numeric",
            "continuous",
            "lognormal",
            loc=math.log(0.095),
            sd=math.hypot(0.08, 0.03),
            factor=1.4,
        ),
        Scenario(
            "artifact",
            "artifact rate 2% -> 6%",
            "artifact flag, Bernoulli",
            "binary",
            "artifact",
            "bernoulli",
            p0=0.02,
            p1=0.06,
        ),
        Scenario(
            "ai_fp",
            "AI false-positive rate 10% -> 15%",
            "AI positive among truth-negatives, Bernoulli",
            "binary",
            "ai_fp",
            "bernoulli",
            p0=0.10,
            p1=0.15,
        ),
        Scenario(
            "spread",
            "AI score spread x1.5, same mean",
            "AI malignancy score, N(0.40, 0.10)",
            "numeric",
            "continuous",
            "normal",
            loc=0.40,
            sd=0.10,
            spread=1.5,
        ),
        # No single-change oracle exists for a ramp: the "oracle" column runs the CUSUM
        # designed for the ramp's end point (+1σ, k = 0.5) on the exact score, a reference
        # chart that knows the in-control distribution, not an optimal detector for the ramp.
        Scenario(
            "ramp",
            "image noise ramping to +1σ over 600 studies",
            "image-noise CV, lognormal(log 0.095, 0.0854)",
            "numeric",
            "continuous",
            "lognormal",
            loc=math.log(0.095),
            sd=math.hypot(0.08, 0.03),
            factor=math.exp(math.hypot(0.08, 0.03)),
            ramp=600,
        ),
        # The artifact rise again, on the same deployments (``design``: the same seeds, oracle
        # and tuned peers), with the change 1,000 studies after the 500-study reference (row
        # 1,500 of the stream) instead of 500: time for phase4's binary reference to grow from
        # the in-control continuation before the change (phase4.monitor.drift.growth).
        Scenario(
            "artifact_late",
            "artifact rate 2% -> 6%, change at row 1,500",
            "artifact flag, Bernoulli",
            "binary",
            "artifact",
            "bernoulli",
            p0=0.02,
            p1=0.06,
            design="artifact",
            tau=1000,
        ),
    )
}
FAMILY_SCENARIO = {"continuous": "recon_suv", "artifact": "artifact", "ai_fp": "ai_fp"}

# In control only: streams that differ from what the oracle's design and the peers' tuning
# assumed, run with the design and parameters of the stream they were tuned on (``design``), while
# phase4 calibrates itself from its own reference as always. Who keeps the false-alarm rate when
# the world is not the simulated one? (docs/BENCHMARKS.md, "When the assumptions are wrong".)
# - the image-noise feature with the same median and spread but a heavier tail (Student t on the
#   log scale, unit variance);
# - the AI false-positive stream with p0 one reference standard error (13%) below or above the
#   10% assumed: what a user who tunes a detector on the rate estimated from 50 events gets.
_NOISE = SCENARIOS["noise"]
_AI_FP = SCENARIOS["ai_fp"]
MISMATCH_SCENARIOS: dict[str, Scenario] = {
    **{
        f"noise_t{df}": Scenario(
            f"noise_t{df}",
            f"image-noise CV, log-scale t{df} (same median and sd as noise)",
            f"image-noise CV, exp(log 0.095 + 0.0854 t{df} sqrt({df - 2}/{df}))",
            "numeric",
            "continuous",
            "lognormal",
            loc=_NOISE.loc,
            sd=_NOISE.sd,
            tail_df=float(df),
            design="noise",
        )
        for df in (10, 5)
    },
    **{
        f"ai_fp_p0_{p0:.3f}": Scenario(
            f"ai_fp_p0_{p0:.3f}",
            f"AI false-positive rate {p0:.1%} (tuned for 10%)",
            f"AI positive among truth-negatives, Bernoulli({p0:.3f})",
            "binary",
            "ai_fp",
            "bernoulli",
            p0=p0,
            p1=p0,
            design="ai_fp",
        )
        for p0 in (0.087, 0.113)
    },
}


def scenario(key: str) -> Scenario:
    return SCENARIOS[key] if key in SCENARIOS else MISMATCH_SCENARIOS[key]


def scenario_index(key: str) -> int:
    """The scenario's place in the seed keys."""
    return list(SCENARIOS).index(key)


# How phase4 builds a binary reference (``--binary-rule``). "product": MonitorConfig's defaults,
# the product's rule since 2026-12 (monitoring starts at reference_size observations; the
# reference does not grow). "growth": the same, and the reference grows in audited steps toward
# 200 events from the in-control continuation, inside the DeploymentMonitor (an option a
# deployment may set; off by default). The rule before them (wait for 50 events before
# monitoring starts, no growth), for comparison, two ways:
# - "old": the bench's protocol before 2026-12: every method gets that longer reference and the
#   change comes τ after it, so neither the blind time nor a change absorbed into the reference
#   is counted;
# - "old-blind": the same streams as "growth" (a 500-observation reference for every other
#   method, the change at row 500 + τ); phase4 is fed them from row 0 and its reference takes the
#   rows it needs, changed ones included, so its delay counts its blind time from the change. Its
#   in-control run lengths are counted from row 500 too (blind time included).
_OLD_RULE = {"reference_events_min": 50, "reference_events_target": 0}
BINARY_RULES: dict[str, dict[str, int]] = {
    "product": {},
    "growth": {"reference_events_target": 200},
    "old": _OLD_RULE,
    "old-blind": _OLD_RULE,
}
BINARY_RULE = "product"
BINARY_RULE_NOTES = {
    "product": "phase4 and the other methods use the first 500 observations",
    "growth": "phase4 grows its own reference from the in-control continuation "
    "(DeploymentMonitor), the other methods keep the first 500 observations",
    "old": "every method gets this reference; the change comes tau after it",
    "old-blind": "phase4 alone, fed the growth rule's streams from row 0 (the others keep the "
    "first 500 observations): its reference may absorb the change, its delay and in-control "
    "run lengths count its blind time",
}


def _events_min() -> int:
    """The events a binary reference waits for before monitoring starts, in the configuration
    phase4 runs with here (0 with the product's defaults)."""
    return int(phase4_config("binary").reference_events_min)


def _events_target() -> int:
    """The events a binary reference grows toward while monitoring (0: no growth)."""
    return int(phase4_config("binary").reference_events_target)


def binary_rule_text() -> str:
    """The binary reference rule in words, for the console."""
    need, target = _events_min(), _events_target()
    text = f"{REFERENCE_SIZE} observations"
    if need:
        text += f" and {need} events"
    return text + (f", growing toward {target} events" if target else ", no growth")


@dataclass
class Replicate:
    """One simulated deployment: reference, in-control continuation, changed continuation."""

    ref: np.ndarray
    ic: np.ndarray
    post: np.ndarray
    seed: int

    def delayed(self, tau: int) -> np.ndarray:
        return np.concatenate((self.ic[:tau], self.post))


def make_replicate(
    scen: Scenario, key: tuple[int, ...], base_seed: int, ic_len: int, post_len: int
) -> Replicate:
    """Three independent generators per replicate, so the in-control and changed continuations
    do not depend on each other's length (common random numbers across methods)."""
    ss = np.random.SeedSequence([base_seed, *key])
    g_ref, g_ic, g_post = (np.random.default_rng(s) for s in ss.spawn(3))
    seed = int(ss.generate_state(1)[0])
    if scen.kind == "numeric":
        ref = scen.values(g_ref.standard_normal(REFERENCE_SIZE), False)
        ic = scen.values(g_ic.standard_normal(ic_len), False)
        post = scen.values(g_post.standard_normal(post_len), True) if post_len else ic[:0]
        return Replicate(ref, ic, post, seed)
    # The product's binary reference (Stream._reference_complete): >= reference_size observations
    # and >= reference_events_min events (0 by default: simply the first reference_size), or
    # BINARY_REFERENCE_CAP x reference_size observations for very rare events. phase4 then grows
    # its own reference from the continuation (DeploymentMonitor, as deployed); the other
    # methods keep this one.
    from phase4.monitor.drift.streams import BINARY_REFERENCE_CAP

    need = 0 if BINARY_RULE == "old-blind" else _events_min()
    cap = BINARY_REFERENCE_CAP * REFERENCE_SIZE
    ref = scen.values(g_ref.random(cap), False)
    events = np.cumsum(ref)
    hit = np.flatnonzero(events >= need)
    n = max(REFERENCE_SIZE, int(hit[0]) + 1) if hit.size else cap
    ic = scen.values(g_ic.random(ic_len), False)
    post = scen.values(g_post.random(post_len), True) if post_len else ic[:0]
    return Replicate(ref[:n], ic, post, seed)


# ---------------------------------------------------------------------------------------------
# Detectors that run the real code: oracle, phase4, river ADWIN and Page-Hinkley


def _patch_phase4_calibration_cache() -> None:
    """Memoise the (pure) binary calibration so that a replicate calibrates once."""
    from phase4.monitor.drift import arl
    from phase4.monitor.drift.detectors import bernoulli

    if not hasattr(bernoulli.calibrate_bernoulli_cusum_uncertain, "cache_info"):
        bernoulli.calibrate_bernoulli_cusum_uncertain = functools.lru_cache(maxsize=4096)(
            arl.calibrate_bernoulli_cusum_uncertain
        )


def phase4_config(kind: str) -> Any:
    from phase4.monitor.drift.streams import MonitorConfig, StreamSpec

    # ARL0 per stream = 365 * studies_per_day / false_alarms_per_year = 2,000 observations.
    return MonitorConfig(
        streams=(StreamSpec(field="v", kind=kind),),  # type: ignore[arg-type]
        studies_per_day=20.0,
        false_alarms_per_year=365.0 * 20.0 / TARGET_ARL0,
        reference_size=REFERENCE_SIZE,
        **BINARY_RULES[BINARY_RULE],  # type: ignore[arg-type]
    )


def phase4_detector_arl0s() -> dict[str, float]:
    """Each numeric detector's ARL0: its weight's part of the stream's ARL0 (as
    Stream._start_monitoring computes it)."""
    from phase4.monitor.drift.budget import share
    from phase4.monitor.drift.streams import DETECTOR_WEIGHTS

    cfg = phase4_config("numeric")
    budget = share(
        streams=1,
        false_alarms_per_year=cfg.false_alarms_per_year,
        observations_per_day=cfg.studies_per_day * 1.0,  # coverage 1: every record has v
    )
    return {d: budget.for_detector(d, w).arl0 for d, w in DETECTOR_WEIGHTS["numeric"].items()}


def prewarm_phase4_calibration() -> dict[str, float]:
    """Calibrate the numeric stream's CUSUM and EWMA once in the parent process (exactly as
    Stream._start_monitoring will ask for them), so that forked workers inherit the cache."""
    from phase4.monitor.drift.detectors import Cusum, Ewma, SpreadCusum

    cfg = phase4_config("numeric")
    arl0 = phase4_detector_arl0s()
    Cusum.calibrated(arl0["cusum"], cfg.cusum_k, reference_size=REFERENCE_SIZE)
    Ewma.calibrated(arl0["ewma"], cfg.ewma_lambda, reference_size=REFERENCE_SIZE)
    if "spread" in arl0:
        SpreadCusum.calibrated(arl0["spread"], reference_size=REFERENCE_SIZE)
    return arl0


def phase4_monitor(scen: Scenario, ref: np.ndarray) -> tuple[Any, Callable[[float], Any]]:
    """The product as deployed, fed the reference: a DeploymentMonitor whose one stream starts
    monitoring exactly at the reference's last value (checked), and the value conversion. A
    binary stream's reference then grows inside it from what it is fed next."""
    from phase4.monitor.drift.streams import DeploymentMonitor

    _patch_phase4_calibration_cache()
    mon = DeploymentMonitor.new(phase4_config(scen.kind))
    conv: Callable[[float], Any] = bool if scen.kind == "binary" else float
    values = ref.tolist()
    for v in values[:-1]:
        mon.observe({"v": conv(v)}, at=STAMP)
    early = mon.streams["v"].monitoring
    mon.observe({"v": conv(values[-1])}, at=STAMP)
    if early or not mon.streams["v"].monitoring:
        raise RuntimeError("phase4's reference did not complete where the benchmark expected")
    return mon, conv


def phase4_first_alarm(scen: Scenario, ref: np.ndarray, x: np.ndarray) -> int | None:
    if scen.kind == "binary" and BINARY_RULE == "old-blind":
        return phase4_blind_first_alarm(ref, x)
    mon, conv = phase4_monitor(scen, ref)
    for i, v in enumerate(x.tolist()):
        if any(a.alarm.kind == "alarm" for a in mon.observe({"v": conv(v)}, at=STAMP)):
            return i
    return None


def phase4_blind_first_alarm(ref: np.ndarray, x: np.ndarray) -> int | None:
    """``--binary-rule old-blind``: the product with the old rule fed the stream from row 0, its
    reference ending where its rule says (at or after ``ref``'s end: it needs at least as many
    rows); the first alarm's index in ``x``."""
    from phase4.monitor.drift.streams import DeploymentMonitor

    _patch_phase4_calibration_cache()
    mon = DeploymentMonitor.new(phase4_config("binary"))
    for i, v in enumerate(np.concatenate((ref, x)).tolist()):
        if any(a.alarm.kind == "alarm" for a in mon.observe({"v": bool(v)}, at=STAMP)):
            return i - ref.size
    return None


@functools.cache
def oracle_design(key: str, arl0: float = TARGET_ARL0) -> dict[str, Any]:
    from phase4.monitor.drift.arl import (
        bernoulli_cusum_arl,
        calibrate_bernoulli_cusum,
        calibrate_cusum_h,
        cusum_arl,
    )

    scen = scenario(key)
    if scen.kind == "numeric" and scen.spread != 1.0:
        # Page's CUSUM of the exact log-likelihood ratio of N(0, spread²) against N(0, 1) on
        # the exact normal score, the one side that knows the direction, uncapped
        from phase4.monitor.drift.arl import (
            ScaleCusumDesign,
            calibrate_scale_cusum_side,
            scale_cusum_arl,
        )

        design = ScaleCusumDesign(scen.spread, None)
        h = calibrate_scale_cusum_side(design, "up", arl0, None)
        a, k = design.up
        return {
            "scale": True,
            "a": a,
            "k": k,
            "h": h,
            "spread": scen.spread,
            "nominal_arl0": scale_cusum_arl(design, h, 0.0),
        }
    if scen.kind == "numeric":
        k = abs(scen.delta) / 2
        h = calibrate_cusum_h(arl0, k)
        return {"k": k, "h": h, "delta": scen.delta, "nominal_arl0": cusum_arl(h, k)}
    d = calibrate_bernoulli_cusum(scen.p0, scen.p1, arl0)
    return {
        "p0": d.p0,
        "p1": d.p1,
        "up": d.up,
        "down": d.down,
        "h": d.h,
        "nominal_arl0": bernoulli_cusum_arl(d.up, d.down, d.h, scen.p0),
    }


def oracle_first_alarm(scen: Scenario, x: np.ndarray, arl0: float) -> int | None:
    from phase4.monitor.drift.detectors import BernoulliCusum, Cusum

    d = oracle_design(scen.design or scen.key, arl0)
    det: Any
    if d.get("scale"):
        s = 0.0
        for i, v in enumerate(scen.z_exact(x).tolist()):
            s = max(0.0, s + d["a"] * (v * v - d["k"]))
            if s > d["h"]:
                return i
        return None
    if scen.kind == "numeric":
        det = Cusum(h=d["h"], k=d["k"])
        values = scen.z_exact(x).tolist()
    else:
        det = BernoulliCusum(p0=d["p0"], p1=d["p1"], up=d["up"], down=d["down"], h=d["h"])
        values = [bool(v) for v in x.tolist()]
    for i, v in enumerate(values):
        if det.update(v) is not None:
            return i
    return None


def river_first_alarm(method: str, param: float, ref: np.ndarray, x: np.ndarray) -> int | None:
    from river import drift

    det: Any = drift.ADWIN(delta=param) if method == "adwin" else drift.PageHinkley(threshold=param)
    for v in ref.tolist():  # warm-up: alarms here are ignored (the detector resets itself)
        det.update(v)
    for i, v in enumerate(x.tolist()):
        det.update(v)
        if det.drift_detected:
            return i
    return None


# ---------------------------------------------------------------------------------------------
# Vectorised replicas of the slow peers: each yields (positions, scores) chunk by chunk


KSWIN_WINDOW, KSWIN_STAT = 100, 30
CHUNK = 500


def _ks_numerator_equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise two-sample K-S statistic times n for two (T, n) samples of equal size n,
    exact with ties (the ECDFs are compared after the last of each run of equal values)."""
    n = a.shape[1]
    both = np.concatenate((a, b), axis=1)
    order = np.argsort(both, axis=1, kind="stable")
    vals = np.take_along_axis(both, order, axis=1)
    labels = np.where(order < n, 1, -1)
    cs = np.cumsum(labels, axis=1)
    last = np.ones_like(vals, dtype=bool)
    last[:, :-1] = vals[:, :-1] != vals[:, 1:]
    return np.abs(np.where(last, cs, 0)).max(axis=1)


@functools.cache
def kswin_pvalue_table() -> tuple[np.ndarray, np.ndarray]:
    """scipy's exact two-sample K-S p-value for 30 vs 30 (the call KSWIN makes) at each D = k/30,
    and scipy's floating-point D (KSWIN also requires D > 0.1)."""
    from scipy import stats

    n = KSWIN_STAT
    a = np.arange(n, dtype=float)
    ps, ds = [], []
    for k in range(n + 1):
        st, p = stats.ks_2samp(a, a + k, method="auto")
        ps.append(float(p))
        ds.append(float(st))
    return np.array(ps), np.array(ds)


def kswin_chunks(ref: np.ndarray, x: np.ndarray, seed: int) -> Iterator[tuple[np.ndarray, ...]]:
    """River KSWIN(window=last 100 reference values, seed=seed), update by update: the same
    random sub-sample of the old part of the window (the same random.Random calls), the same
    exact scipy p-value. Score = p-value where D > 0.1, else 1 (alarm iff score <= alpha)."""
    w, s = KSWIN_WINDOW, KSWIN_STAT
    buf = np.concatenate((ref[-w:], x))
    rng = random.Random(seed)
    population = range(w - s)
    ptab, dtab = kswin_pvalue_table()
    recent_offsets = 1 + (w - s) + np.arange(s)
    for start in range(0, x.size, CHUNK):
        stop = min(start + CHUNK, x.size)
        t = np.arange(start, stop)
        idx = np.array([rng.sample(population, s) for _ in range(stop - start)])
        old = buf[t[:, None] + 1 + idx]
        recent = buf[t[:, None] + recent_offsets[None, :]]
        k = _ks_numerator_equal(old, recent)
        yield t, np.where(dtab[k] > 0.1, ptab[k], 1.0)


@functools.lru_cache(maxsize=65536)
def _iks_pvalue(n: int, g: int, h: int) -> float:
    from frouros.detectors.data_drift import IncrementalKSTest

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = IncrementalKSTest._calculate_p_value_exact(
            X_ref_num_samples=n, statistic=h * g / (n * WINDOW), gcd=g, window_size=WINDOW
        )
    return float(p)


def _ks_numerator_vs_reference(r: np.ndarray, win: np.ndarray) -> np.ndarray:
    """Row-wise sup |F_ref - F_win| times n·m, for a sorted reference r (n) and windows (T, m).

    Between consecutive window values F_win is constant and F_ref rises, so the supremum is
    reached either at a window value (F_win - F_ref) or just below one (F_ref(w-) - F_win)."""
    n, m = r.size, win.shape[1]
    ws = np.sort(win, axis=1)
    cr_right = np.searchsorted(r, ws, side="right")
    cr_left = np.searchsorted(r, ws, side="left")
    last = np.ones_like(ws, dtype=bool)
    last[:, :-1] = ws[:, :-1] != ws[:, 1:]
    pos = np.where(last, np.arange(m), m)
    cw_right = np.minimum.accumulate(pos[:, ::-1], axis=1)[:, ::-1] + 1
    above = cw_right * n - cr_right * m
    prev = np.concatenate((np.zeros((ws.shape[0], 1), dtype=int), cw_right[:, :-1]), axis=1)
    below = cr_left * m - prev * n
    return np.maximum(np.maximum(above.max(axis=1), below.max(axis=1)), 0)


def frouros_chunks(ref: np.ndarray, x: np.ndarray, seed: int) -> Iterator[tuple[np.ndarray, ...]]:
    """frouros IncrementalKSTest(window_size=100).fit(ref), update by update: the window is the
    last 100 observations, the p-value frouros' own exact function of D (score = p; NaN, as
    frouros returns on numerical failure, and the first 99 updates never alarm)."""
    del seed
    r = np.sort(ref)
    n = r.size
    g = math.gcd(n, WINDOW)
    for start in range(0, x.size, CHUNK):
        stop = min(start + CHUNK, x.size)
        t = np.arange(start, stop)
        p = np.full(t.size, np.nan)
        lo = max(start, WINDOW - 1)
        if lo < stop:
            win = sliding_window_view(x[lo - WINDOW + 1 : stop], WINDOW)
            h = _ks_numerator_vs_reference(r, win) // g
            p[lo - start :] = [_iks_pvalue(n, g, int(v)) for v in h]
        yield t, p


EVIDENTLY_RULE = {"ks": "le", "z": "lt", "jensenshannon": "ge", "chisquare": "lt"}
EVIDENTLY_DEFAULT = {"ks": 0.05, "z": 0.05, "jensenshannon": 0.1, "chisquare": 0.05}


def _evidently_column(kind: str) -> Any:
    from evidently.legacy.core import ColumnType

    return ColumnType.Numerical if kind == "numeric" else ColumnType.Categorical


def evidently_window_score(
    ref: Any, cur: Any, kind: str
) -> tuple[float, str]:  # (drift score, test name)
    """The drift score evidently's Report computes for one column: the column's default test
    (registry.get_stattest with no method) applied with its default threshold."""
    from evidently.legacy.calculations.stattests.registry import get_stattest

    ctype = _evidently_column(kind)
    test = get_stattest(ref, cur, ctype, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = test(ref, cur, ctype, test.default_threshold)
    return float(result.drift_score), str(test.name)


def evidently_chunks(
    ref: np.ndarray, x: np.ndarray, seed: int, kind: str
) -> Iterator[tuple[np.ndarray, ...]]:
    """Non-overlapping windows of W after the reference; the score sits on each window's last
    observation (where the alarm would be raised)."""
    import pandas as pd

    del seed
    conv = (lambda a: a) if kind == "numeric" else (lambda a: a.astype(int))
    rs = pd.Series(conv(ref), name="v")
    per = max(1, CHUNK // WINDOW)
    n_win = x.size // WINDOW
    for first in range(0, n_win, per):
        last = min(first + per, n_win)
        pos, sc = [], []
        for i in range(first, last):
            cur = pd.Series(conv(x[i * WINDOW : (i + 1) * WINDOW]), name="v")
            score, name = evidently_window_score(rs, cur, kind)
            if name not in EVIDENTLY_RULE:
                raise RuntimeError(f"evidently chose an unexpected test {name!r}")
            pos.append((i + 1) * WINDOW - 1)
            sc.append(score)
        yield np.array(pos), np.array(sc)


def evidently_test_name(scen: Scenario, ref: np.ndarray, x: np.ndarray) -> str:
    import pandas as pd

    conv = (lambda a: a) if scen.kind == "numeric" else (lambda a: a.astype(int))
    return evidently_window_score(
        pd.Series(conv(ref), name="v"), pd.Series(conv(x[:WINDOW]), name="v"), scen.kind
    )[1]


def path_chunks(
    method: str, scen: Scenario, ref: np.ndarray, x: np.ndarray, seed: int
) -> Iterator[tuple[np.ndarray, ...]]:
    if method == "kswin":
        return kswin_chunks(ref, x, seed)
    if method == "frouros":
        return frouros_chunks(ref, x, seed)
    return evidently_chunks(ref, x, seed, scen.kind)


def alarm_mask(method: str, rule: str, scores: np.ndarray, param: float) -> np.ndarray:
    """Whether each score alarms at the parameter value (NaN never alarms)."""
    with np.errstate(invalid="ignore"):
        if method == "kswin":
            return scores <= param
        if method == "frouros":
            return scores < param
        return {
            "le": scores <= param,
            "lt": scores < param,
            "ge": scores >= param,
        }[rule]


def path_first_alarm(
    method: str,
    rule: str,
    param: float,
    scen: Scenario,
    rep_ref: np.ndarray,
    x: np.ndarray,
    seed: int,
) -> int | None:
    for pos, sc in path_chunks(method, scen, rep_ref, x, seed):
        hit = np.flatnonzero(alarm_mask(method, rule, sc, param))
        if hit.size:
            return int(pos[hit[0]])
    return None


# ---------------------------------------------------------------------------------------------
# One detector, one stream


@dataclass(frozen=True)
class Setting:
    """A detector with a fixed parameter (None for oracle and phase4)."""

    method: str
    param: float | None = None
    rule: str = ""


def first_alarm(
    setting: Setting, scen: Scenario, ref: np.ndarray, x: np.ndarray, seed: int
) -> int | None:
    m = setting.method
    if m == "oracle":
        arl0 = TARGET_ARL0 if setting.param is None else setting.param
        return oracle_first_alarm(scen, x, arl0)
    if m == "phase4":
        return phase4_first_alarm(scen, ref, x)
    assert setting.param is not None
    if m in ("adwin", "page_hinkley"):
        return river_first_alarm(m, setting.param, ref, x)
    return path_first_alarm(m, setting.rule, setting.param, scen, ref, x, seed)


def default_setting(method: str, rule_name: str = "") -> Setting:
    if method == "adwin":
        return Setting(method, 0.002)
    if method == "page_hinkley":
        return Setting(method, 50.0)
    if method == "kswin":
        return Setting(method, 0.005)
    if method == "frouros":
        return Setting(method, 0.05)
    return Setting(method, EVIDENTLY_DEFAULT[rule_name], EVIDENTLY_RULE[rule_name])


# ---------------------------------------------------------------------------------------------
# Tuning one parameter to the target in-control ARL


def arl_estimate(run_lengths: list[int | None], horizon: int) -> dict[str, float | int]:
    """Mean run length from runs censored at ``horizon`` (None = no alarm): total observations
    over alarms (censored-geometric MLE); SE from the sample SD when nothing is censored, else
    from the geometric model (ARL / sqrt(alarms))."""
    n = len(run_lengths)
    alarms = sum(r is not None for r in run_lengths)
    total = sum(horizon if r is None else r for r in run_lengths)
    if alarms == 0:
        return {"arl": math.inf, "se": math.nan, "n": n, "censored": n, "horizon": horizon}
    arl = total / alarms
    if alarms == n and n > 1:
        se = float(np.std(np.array(run_lengths, dtype=float), ddof=1) / math.sqrt(n))
    else:
        se = arl / math.sqrt(alarms)
    return {"arl": arl, "se": se, "n": n, "censored": n - alarms, "horizon": horizon}


PARAM_SPACE: dict[str, tuple[str, float, float, bool]] = {
    # name, lower bound, upper bound, ARL increases with the parameter
    "adwin": ("delta", 1e-30, 1.0, False),
    "page_hinkley": ("threshold", 1e-9, 1e9, True),
    "kswin": ("alpha", 1e-300, 1.0, False),
    "frouros": ("alpha", 1e-300, 1.0, False),
    "evidently_p": ("threshold (p-value)", 1e-300, 1.0, False),
    "evidently_d": ("threshold (distance)", 1e-9, 1.0, True),
}


def tune(
    evaluate: Callable[[float], float], start: float, space: tuple[str, float, float, bool]
) -> dict[str, Any]:
    """Find the parameter whose in-control ARL (on a fixed set of streams) equals the target:
    bracket by factors of 4 in log space, then bisect in log space. ARL is a step function of
    the parameter on a fixed sample; where it jumps across the target the side closer to it
    (in log) is kept and ``exact`` is False."""
    _, lo_bound, hi_bound, increasing = space
    log_t = math.log(TARGET_ARL0)
    memo: dict[float, float] = {}

    def gap(p: float) -> float:
        if p not in memo:
            memo[p] = evaluate(p)
        a = memo[p]
        g = (math.log(a) if a > 0 else -math.inf) - log_t
        return g if increasing else -g

    lo = hi = min(max(start, lo_bound), hi_bound)
    # gap increases with the parameter: find lo with gap < 0 and hi with gap > 0.
    g0 = gap(lo)
    if g0 == 0:
        return {"param": lo, "arl": memo[lo], "exact": True, "evaluations": len(memo)}
    if g0 < 0:
        while gap(hi) < 0:
            lo, hi = hi, min(hi * 4, hi_bound)
            if lo == hi_bound:
                return {
                    "param": lo,
                    "arl": memo[lo],
                    "exact": False,
                    "evaluations": len(memo),
                    "note": "target ARL0 out of reach: at the bound",
                }
    else:
        while gap(lo) > 0:
            hi, lo = lo, max(lo / 4, lo_bound)
            if hi == lo_bound:
                return {
                    "param": hi,
                    "arl": memo[hi],
                    "exact": False,
                    "evaluations": len(memo),
                    "note": "target ARL0 out of reach: at the bound",
                }
    for _ in range(80):
        if hi / lo < 1.002:
            break
        mid = math.sqrt(lo * hi)
        g = gap(mid)
        if g == 0:
            lo = hi = mid
            break
        if g < 0:
            lo = mid
        else:
            hi = mid
    best = min((lo, hi), key=lambda p: abs(gap(p)))
    exact = abs(gap(best)) < 0.05  # within 5% of the target on the tuning streams
    return {
        "param": best,
        "arl": memo[best],
        "exact": exact,
        "evaluations": len(memo),
        "bracket_arls": [memo[lo], memo[hi]],
    }


def tune_task(args: tuple[str, str, int, int]) -> dict[str, Any]:
    """Tune one peer on one stream family with ``n`` in-control streams (seed set 1)."""
    method, family, n, base_seed = args
    t0 = time.perf_counter()
    scen = SCENARIOS[FAMILY_SCENARIO[family]] if method in PATH_PEERS else SCENARIOS[family]
    sidx = list(SCENARIOS).index(scen.key)
    horizon = int(IC_HORIZON_FACTOR * TARGET_ARL0)
    reps = [make_replicate(scen, (sidx, 1, j), base_seed, horizon, 0) for j in range(n)]
    rule, test_name = "", ""
    if method in PATH_PEERS:
        if method == "evidently":
            test_name = evidently_test_name(scen, reps[0].ref, reps[0].ic)
            rule = EVIDENTLY_RULE[test_name]
        # Alarm at the first t where the score crosses the parameter, i.e. where its running
        # extreme (min for p-values, max for distances) does: a binary search per stream.
        strict = {"kswin": "le", "frouros": "lt"}.get(method, rule)
        records = []
        for rep in reps:
            pos, sc = zip(*path_chunks(method, scen, rep.ref, rep.ic, rep.seed), strict=True)
            score = np.concatenate(sc)
            if strict == "ge":
                key = np.maximum.accumulate(np.nan_to_num(score, nan=-np.inf))
            else:
                key = -np.minimum.accumulate(np.nan_to_num(score, nan=np.inf))
            records.append((np.concatenate(pos), key))

        def evaluate(p: float) -> float:
            side = "right" if strict == "lt" else "left"
            target = p if strict == "ge" else -p
            rls: list[int | None] = []
            for pos, key in records:
                i = int(np.searchsorted(key, target, side=side))
                rls.append(int(pos[i]) + 1 if i < pos.size else None)
            return float(arl_estimate(rls, horizon)["arl"])

    else:

        def evaluate(p: float) -> float:
            rls = []
            for rep in reps:
                i = river_first_alarm(method, p, rep.ref, rep.ic)
                rls.append(None if i is None else i + 1)
            return float(arl_estimate(rls, horizon)["arl"])

    space_key = method
    if method == "evidently":
        space_key = "evidently_d" if rule == "ge" else "evidently_p"
    space = PARAM_SPACE[space_key]
    start = default_setting(method, test_name).param
    assert start is not None
    result = tune(evaluate, start, space)
    result.update(
        method=method,
        family=family,
        parameter=space[0],
        rule=rule,
        test=test_name,
        tuning_streams=n,
        seconds=round(time.perf_counter() - t0, 1),
    )
    return result


# ---------------------------------------------------------------------------------------------
# Runs: in-control run lengths and conditional delays


def run_task(args: tuple[str, Setting, str, int, int, int, bool]) -> dict[str, Any]:
    """One chunk of replicates for one (scenario, detector setting).

    In-control: seeds (scenario, 2, chunk, j) for j < per_chunk, censored at 5·ARL0.
    Delays (if ``delays``): the same seeds, then extra seeds (scenario, 3, chunk, i) until
    ``per_chunk`` runs have no alarm before τ; a run that alarmed before τ is excluded (τ: the
    scenario's ``tau``)."""
    scen_key, setting, variant, chunk, per_chunk, base_seed, delays = args
    scen = scenario(scen_key)
    sidx = scenario_index(scen.design or scen_key)  # a variant reuses its design's seeds
    tau = scen.tau
    horizon = int(IC_HORIZON_FACTOR * TARGET_ARL0)
    t0 = time.perf_counter()
    ic_rls: list[int | None] = []
    delay_values: list[int] = []
    censored = excluded = 0
    j = extra = 0
    while j < per_chunk or (delays and len(delay_values) < per_chunk):
        if j < per_chunk:
            rep = make_replicate(
                scen, (sidx, 2, chunk, j), base_seed, horizon, DELAY_HORIZON if delays else 0
            )
            i = first_alarm(setting, scen, rep.ref, rep.ic, rep.seed)
            ic_rls.append(None if i is None else i + 1)
            pre_change_alarm = i is not None and i < tau
            j += 1
        else:
            if extra > 50 * per_chunk:
                break  # an alarm-happy detector: give up on more replacements
            rep = make_replicate(scen, (sidx, 3, chunk, extra), base_seed, tau, DELAY_HORIZON)
            extra += 1
            i = first_alarm(setting, scen, rep.ref, rep.ic[:tau], rep.seed)
            pre_change_alarm = i is not None
        if not delays or len(delay_values) >= per_chunk:
            continue
        if pre_change_alarm:
            excluded += 1
            continue
        i = first_alarm(setting, scen, rep.ref, rep.delayed(tau), rep.seed)
        if i is not None and i < tau:
            raise RuntimeError(f"{setting.method}: pre-change alarm differs between runs")
        if i is None:
            censored += 1
            delay_values.append(DELAY_HORIZON)
        else:
            delay_values.append(i - tau + 1)
    return {
        "scenario": scen_key,
        "method": setting.method,
        "variant": variant,
        "chunk": chunk,
        "ic_run_lengths": ic_rls,
        "delays": delay_values,
        "delay_censored": censored,
        "excluded_pre_change_alarm": excluded,
        "seconds": time.perf_counter() - t0,
    }


# ---------------------------------------------------------------------------------------------
# Checking the replicas against the libraries


DECOMPOSE_HORIZON = 40_000


DETECTOR_WORDS = {"cusum": "CUSUM", "ewma": "EWMA", "spread": "spread CUSUM", "ks": "windowed KS"}


def decompose_task(args: tuple[str, int, int, int]) -> dict[str, Any]:
    """Why phase4's numeric stream runs longer than its budget in control: each of its three
    detectors' first alarm, separately, on the same in-control liver-SUV stream, and the stream's
    (the first of the three). ``known``: exact normal scores, thresholds calibrated for a known
    reference; ``estimated``: what the product does (NumericReference fitted on 500 values,
    thresholds calibrated for a 500-value reference)."""
    from phase4.monitor.drift.detectors import Cusum, Ewma, SpreadCusum, WindowedKS
    from phase4.monitor.drift.reference import NumericReference, z_to_uniform

    mode, chunk, n, base_seed = args
    arl0 = phase4_detector_arl0s()
    scen = SCENARIOS["dose_cal"]
    cfg = phase4_config("numeric")
    size = None if mode == "known" else REFERENCE_SIZE
    out: dict[str, list[int | None]] = {d: [] for d in (*arl0, "stream")}
    for j in range(n):
        rep = make_replicate(scen, (98, 5, chunk, j), base_seed, DECOMPOSE_HORIZON, 0)
        dets: dict[str, Any] = {
            "cusum": Cusum.calibrated(arl0["cusum"], cfg.cusum_k, reference_size=size),
            "ewma": Ewma.calibrated(arl0["ewma"], cfg.ewma_lambda, reference_size=size),
            "ks": WindowedKS.calibrated(
                arl0["ks"], reference_size=size or 10**9, window=cfg.ks_window
            ),
        }
        if "spread" in arl0:
            dets["spread"] = SpreadCusum.calibrated(arl0["spread"], reference_size=size)
        ref = None if mode == "known" else NumericReference.fit(rep.ref)
        first: dict[str, int | None] = dict.fromkeys(dets)
        for start in range(0, DECOMPOSE_HORIZON, 2000):
            x = rep.ic[start : start + 2000]
            z = scen.z_exact(x).tolist() if ref is None else [ref.z(v) for v in x.tolist()]
            for name, det in dets.items():
                if first[name] is not None:
                    continue
                values = [z_to_uniform(v) for v in z] if name == "ks" else z
                for i, v in enumerate(values):
                    if det.update(v) is not None:
                        first[name] = start + i + 1
                        break
            if all(v is not None for v in first.values()):
                break
        for name, v in first.items():
            out[name].append(v)
        hits = [v for v in first.values() if v is not None]
        out["stream"].append(min(hits) if hits else None)
    return {"mode": mode, "run_lengths": out}


def verify(
    tuned: dict[tuple[str, str], dict[str, Any]],
    families: list[str],
    n_streams: int,
    base_seed: int,
) -> dict:
    """Replica vs. library on ``n_streams`` streams per family (in-control then changed data):
    KSWIN p-values (river), IncrementalKSTest p-values (frouros), window scores (evidently
    Report). Any difference stops the run."""
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from frouros.detectors.data_drift import IncrementalKSTest
    from river import drift

    out: dict[str, Any] = {}
    steps = 300
    for family in families:
        scen = SCENARIOS[FAMILY_SCENARIO[family]]
        worst = {"kswin": 0.0, "frouros": 0.0, "evidently": 0.0}
        compared = {"kswin": 0, "frouros": 0, "evidently": 0}
        for j in range(n_streams):
            rep = make_replicate(scen, (99, 9, j), base_seed, steps, steps)
            x = np.concatenate((rep.ic[: steps // 2], rep.post[: steps // 2]))
            # river KSWIN
            alpha = tuned[("kswin", family)]["param"]
            real = drift.KSWIN(alpha=alpha, window=rep.ref[-KSWIN_WINDOW:].tolist(), seed=rep.seed)
            real_p, real_alarm = [], None
            for i, v in enumerate(x.tolist()):
                real.update(v)
                real_p.append(float(real.p_value))
                if real.drift_detected:
                    real_alarm = i
                    break
            rep_p = np.concatenate([sc for _, sc in kswin_chunks(rep.ref, x, rep.seed)])
            m = len(real_p)
            # The replica reports 1.0 where D <= 0.1 (cannot alarm); compare where D > 0.1.
            live = rep_p[:m] < 1.0
            worst["kswin"] = max(
                worst["kswin"],
                float(np.max(np.abs(np.array(real_p)[live] - rep_p[:m][live]), initial=0.0)),
            )
            rep_alarm = path_first_alarm("kswin", "", alpha, scen, rep.ref, x, rep.seed)
            if rep_alarm != real_alarm:
                worst["kswin"] = math.inf
            compared["kswin"] += m
            # frouros
            det = IncrementalKSTest(window_size=WINDOW)
            det.fit(X=rep.ref)
            fr = []
            for v in x.tolist():
                res, _ = det.update(value=v)
                fr.append(math.nan if res is None else float(res.p_value))
            rp = np.concatenate([sc for _, sc in frouros_chunks(rep.ref, x, rep.seed)])
            both = ~(np.isnan(fr) & np.isnan(rp))
            diff = np.abs(np.array(fr)[both] - rp[both])
            worst["frouros"] = max(worst["frouros"], float(np.nanmax(diff, initial=0.0)))
            if np.isnan(diff).any():
                worst["frouros"] = math.inf
            compared["frouros"] += int(both.sum())
            # evidently Report vs. the function the replica calls
            definition = (
                DataDefinition(numerical_columns=["v"])
                if scen.kind == "numeric"
                else DataDefinition(categorical_columns=["v"])
            )
            conv = (lambda a: a) if scen.kind == "numeric" else (lambda a: a.astype(int))
            ref_ds = Dataset.from_pandas(
                pd.DataFrame({"v": conv(rep.ref)}), data_definition=definition
            )
            scores = np.concatenate(
                [sc for _, sc in evidently_chunks(rep.ref, x, rep.seed, scen.kind)]
            )
            for w in range(x.size // WINDOW):
                cur = Dataset.from_pandas(
                    pd.DataFrame({"v": conv(x[w * WINDOW : (w + 1) * WINDOW])}),
                    data_definition=definition,
                )
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    snap = Report([ValueDrift(column="v")]).run(
                        current_data=cur, reference_data=ref_ds
                    )
                value = float(snap.dict()["metrics"][0]["value"])
                worst["evidently"] = max(worst["evidently"], abs(value - scores[w]))
                compared["evidently"] += 1
        out[family] = {
            k: {"max_abs_difference": worst[k], "values_compared": compared[k]} for k in worst
        }
    return out


# ---------------------------------------------------------------------------------------------
# Report


def fmt(v: float, se: float | None = None, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if math.isinf(v):
        return "∞"
    s = f"{v:,.{digits}f}"
    if se is not None and not math.isnan(se):
        s += f" ± {se:,.{digits}f}"
    return s


def fmt_arl(ic: dict[str, Any]) -> str:
    """In-control ARL ± SE, or a lower bound when no run alarmed before the horizon."""
    if ic["censored"] == ic["n"]:
        return f"> {ic['horizon']:,} (no alarm in {ic['n']} runs)"
    s = fmt(ic["arl"], ic["se"], 0)
    if ic["censored"]:
        s += f" ({ic['censored']}/{ic['n']} censored)"
    return s


def monitor_digest() -> str:
    """A hash of phase4/monitor/drift/*.py: other people edit the product while benchmarks run."""
    files = sorted(
        (Path(__file__).resolve().parents[1] / "phase4" / "monitor" / "drift").glob("*.py")
    )
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]


def provenance() -> dict[str, Any]:
    """The code measured: git commit, whether phase4/monitor/ differs from it, and its hash. The
    monitor modules are imported here, once, so every worker (forked later) runs this version
    even if the files change on disk during the run."""
    import phase4.monitor.drift.arl
    import phase4.monitor.drift.budget
    import phase4.monitor.drift.detectors
    import phase4.monitor.drift.reference
    import phase4.monitor.drift.streams  # noqa: F401

    root = Path(__file__).resolve().parents[1]

    def git(*a: str) -> str:
        out = subprocess.run(["git", *a], cwd=root, capture_output=True, text=True, check=False)
        return out.stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD"),
        "monitor_uncommitted_changes": bool(git("status", "--porcelain", "phase4/monitor")),
        "monitor_drift_sha256_16": monitor_digest(),
    }


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {
        p: version(p)
        for p in ("phase4", "river", "evidently", "frouros", "numpy", "scipy", "pandas")
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=200, help="delays per cell (and in-control runs)")
    ap.add_argument("--tune-reps", type=int, default=200, help="in-control streams for tuning")
    ap.add_argument("--verify", type=int, default=2, help="streams per family to check replicas")
    ap.add_argument(
        "--decompose-runs",
        type=int,
        default=200,
        help="in-control runs to split phase4's numeric ARL by detector (0: skip)",
    )
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--chunk", type=int, default=25, help="replicates per parallel task")
    ap.add_argument("--seed", type=int, default=20260105)
    ap.add_argument("--scenarios", nargs="*", default=list(SCENARIOS), choices=list(SCENARIOS))
    ap.add_argument(
        "--binary-rule",
        choices=list(BINARY_RULES),
        default="product",
        help="phase4's binary reference: the product's (500 observations), growth (the same, "
        "growing toward 200 events: an option, off by default), or the rule before 2026-12 "
        "(wait for 50 events, no growth): old (every method gets that reference, the change "
        "after it) or old-blind (phase4 alone, on the product's streams, its blind time "
        "counted); use --out",
    )
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    global BINARY_RULE
    BINARY_RULE = args.binary_rule  # before the pools fork: the workers inherit it

    started = time.perf_counter()
    source = provenance()
    info = machine()
    date = datetime.now(UTC).isoformat(timespec="seconds")
    print(f"# Detection delay at equal false-alarm rate — {date}")
    print(f"# {info['platform']}, {info['cpu_count']} CPUs, Python {info['python']}")
    print(
        f"# phase4 commit {source['commit'][:12]}"
        f"{' + uncommitted changes' if source['monitor_uncommitted_changes'] else ''}, "
        f"phase4/monitor/drift sha256 {source['monitor_drift_sha256_16']}"
    )
    print(
        f"# target in-control ARL0 = {TARGET_ARL0:,.0f}, reference = {REFERENCE_SIZE} "
        f"(binary, rule {BINARY_RULE!r}: {binary_rule_text()}), change at τ = {TAU}"
        + "".join(f" ({k}: {SCENARIOS[k].tau})" for k in args.scenarios if SCENARIOS[k].tau != TAU)
        + f", reps = {args.reps}, tuning streams = {args.tune_reps}, jobs = {args.jobs}",
        flush=True,
    )
    scen_keys = args.scenarios
    families = sorted({SCENARIOS[k].family for k in scen_keys})
    ctx = multiprocessing.get_context("fork")

    # 1. Tune each peer.
    tune_jobs: list[tuple[str, str, int, int]] = []
    for m in PATH_PEERS:
        tune_jobs += [(m, f, args.tune_reps, args.seed) for f in families]
    # (a scenario with a ``design`` runs with its design's tuning)
    designs = list(dict.fromkeys(SCENARIOS[k].design or k for k in scen_keys))
    for m in ("page_hinkley", "adwin"):
        tune_jobs += [(m, k, args.tune_reps, args.seed) for k in designs]
    tuned: dict[tuple[str, str], dict[str, Any]] = {}
    t = time.perf_counter()
    with ctx.Pool(args.jobs) as pool:
        results = pool.imap_unordered(tune_task, tune_jobs)
        # Meanwhile, the parent calibrates phase4's numeric detectors once (~15 s), so that the
        # run workers forked later inherit the cache instead of each repeating it.
        phase4_detector_arl0 = prewarm_phase4_calibration()
        for res in results:
            tuned[(res["method"], res["family"])] = res
            print(
                f"  tuned {res['method']:>12} on {res['family']:<10} {res['parameter']} = "
                f"{res['param']:.4g} (tuning ARL {res['arl']:,.0f}"
                f"{'' if res['exact'] else ', not exact'}) in {res['seconds']}s",
                flush=True,
            )
    tune_seconds = time.perf_counter() - t

    # 2. Check the replicas against the libraries.
    t = time.perf_counter()
    verification = verify(tuned, families, args.verify, args.seed) if args.verify > 0 else {}
    for fam, checks in verification.items():
        for m, c in checks.items():
            ok = c["max_abs_difference"] <= 1e-9
            print(
                f"  verify {m:>10} on {fam:<10}: max |replica - library| = "
                f"{c['max_abs_difference']:.2g} over {c['values_compared']} values "
                f"{'OK' if ok else 'MISMATCH'}",
                flush=True,
            )
            if not ok:
                sys.exit(f"replica of {m} disagrees with the library on {fam}")
    verify_seconds = time.perf_counter() - t

    def tuned_setting(method: str, scen: Scenario) -> Setting:
        key = (method, scen.family if method in PATH_PEERS else (scen.design or scen.key))
        r = tuned[key]
        return Setting(method, float(r["param"]), r["rule"])

    # 3. Runs.
    run_jobs: list[tuple[str, Setting, str, int, int, int, bool]] = []
    chunks = max(1, math.ceil(args.reps / args.chunk))
    per = math.ceil(args.reps / chunks)
    for k in scen_keys:
        scen = SCENARIOS[k]
        settings: list[tuple[Setting, str, bool]] = [
            (Setting("phase4"), "product", True),
            (Setting("oracle"), "oracle", True),
        ]
        for m in PEERS:
            settings.append((tuned_setting(m, scen), "tuned", True))
            rule_name = tuned[(m, scen.family)]["test"] if m == "evidently" else ""
            settings.append((default_setting(m, rule_name), "default", False))
        for s, variant, delays in settings:
            run_jobs += [(k, s, variant, c, per, args.seed, delays) for c in range(chunks)]
    # Longest first: phase4 on numeric streams dominates.
    run_jobs.sort(key=lambda j: (j[1].method != "phase4", SCENARIOS[j[0]].kind != "numeric"))
    cells: dict[tuple[str, str, str], dict[str, Any]] = {}
    tail_cells: dict[tuple[str, str, str], dict[str, Any]] = {}

    def collect(pool: Any, jobs: list[Any], label: str, into: dict | None = None) -> None:
        t = time.perf_counter()
        target = cells if into is None else into
        for done, res in enumerate(pool.imap_unordered(run_task, jobs), start=1):
            cell = target.setdefault(
                (res["scenario"], res["method"], res["variant"]),
                {"ic": [], "delays": [], "censored": 0, "excluded": 0, "seconds": 0.0},
            )
            cell["ic"] += res["ic_run_lengths"]
            cell["delays"] += res["delays"]
            cell["censored"] += res["delay_censored"]
            cell["excluded"] += res["excluded_pre_change_alarm"]
            cell["seconds"] += res["seconds"]
            if done % 20 == 0 or done == len(jobs):
                print(
                    f"  {label}: {done}/{len(jobs)} tasks, {time.perf_counter() - t:.0f}s",
                    flush=True,
                )

    horizon = int(IC_HORIZON_FACTOR * TARGET_ARL0)
    t = time.perf_counter()
    with ctx.Pool(args.jobs) as pool:
        collect(pool, run_jobs, "runs")
        # 4. The oracle again, at the in-control ARL phase4 actually achieved: the delay an
        # ideal detector would have at phase4's (lower) false-alarm rate.
        matched = {
            k: float(arl_estimate(cells[(k, "phase4", "product")]["ic"], horizon)["arl"])
            for k in scen_keys
        }
        oracle_jobs = [
            (k, Setting("oracle", matched[k]), "at_phase4_arl0", c, per, args.seed, True)
            for k in scen_keys
            for c in range(chunks)
        ]
        collect(pool, oracle_jobs, "oracle at phase4's ARL0")
        # 4b. In control, streams that differ from what the tuning assumed.
        tail_jobs = [
            (k, s, "mismatch", c, per, args.seed, False)
            for k, mis in MISMATCH_SCENARIOS.items()
            if mis.design in scen_keys
            for s in [Setting("phase4"), Setting("oracle")] + [tuned_setting(m, mis) for m in PEERS]
            for c in range(chunks)
        ]
        tail_jobs.sort(key=lambda j: j[1].method != "phase4")
        if tail_jobs:
            collect(pool, tail_jobs, "assumptions wrong, in control", tail_cells)
        # 5. phase4's in-control ARL, decomposed by detector.
        decomposition: dict[str, dict[str, list[int | None]]] = {}
        if args.decompose_runs > 0:
            dchunks = max(1, math.ceil(args.decompose_runs / args.chunk))
            dper = math.ceil(args.decompose_runs / dchunks)
            djobs = [
                (mode, c, dper, args.seed)
                for mode in ("known", "estimated")
                for c in range(dchunks)
            ]
            for res in pool.imap_unordered(decompose_task, djobs):
                into = decomposition.setdefault(res["mode"], {})
                for name, rls in res["run_lengths"].items():
                    into.setdefault(name, []).extend(rls)
    run_seconds = time.perf_counter() - t

    summary: dict[str, dict[str, Any]] = {}
    for (k, m, variant), c in sorted(cells.items()):
        ic = arl_estimate(c["ic"], horizon)
        entry: dict[str, Any] = {"in_control": ic, "seconds": round(c["seconds"], 1)}
        if variant != "default":
            d = np.array(c["delays"], dtype=float)
            entry["delay"] = {
                "mean": float(d.mean()) if d.size else math.nan,
                "median": float(np.median(d)) if d.size else math.nan,
                "se": float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else math.nan,
                "n": int(d.size),
                "censored_at_horizon": c["censored"],
                "excluded_pre_change_alarm": c["excluded"],
                "excluded_fraction": c["excluded"] / max(1, c["excluded"] + d.size),
            }
        if variant == "tuned":
            r = tuned[(m, SCENARIOS[k].family if m in PATH_PEERS else SCENARIOS[k].design or k)]
            entry["tuning"] = {
                kk: r.get(kk)
                for kk in ("parameter", "param", "arl", "exact", "note", "test", "tuning_streams")
            }
        if variant == "default":
            rule_name = tuned[(m, SCENARIOS[k].family)]["test"] if m == "evidently" else ""
            entry["default_param"] = default_setting(m, rule_name).param
        summary.setdefault(k, {})[f"{m}/{variant}"] = entry

    # Tables.
    def dcell(k: str, key: str) -> str:
        e = summary[k].get(key)
        if not e:
            return "-"
        d = e["delay"]
        s = fmt(d["mean"], d["se"])
        if d["censored_at_horizon"]:
            s = "≥ " + s
        if key.endswith("/tuned") and e["tuning"].get("note"):
            s += " ‡"
        elif key.endswith("/tuned") and not e["tuning"]["exact"]:
            s += " †"
        return s

    cols = ["oracle/oracle", "phase4/product"] + [f"{m}/tuned" for m in PEERS]
    lines = [
        "",
        f"## Conditional mean delay (observations after the change), ARL0 = "
        f"{TARGET_ARL0:,.0f}, mean ± SE over {args.reps} runs",
        "",
        "| scenario | "
        + " | ".join(LABELS[c.split("/")[0]] for c in cols)
        + " | phase4 / oracle | oracle at phase4's measured ARL0 | phase4 / that oracle |",
        "|---" * (len(cols) + 4) + "|",
    ]
    for k in scen_keys:
        p4 = summary[k]["phase4/product"]["delay"]["mean"]
        ratio = p4 / summary[k]["oracle/oracle"]["delay"]["mean"]
        at = summary[k]["oracle/at_phase4_arl0"]
        at_arl = summary[k]["phase4/product"]["in_control"]["arl"]
        lines.append(
            f"| {SCENARIOS[k].title} | "
            + " | ".join(dcell(k, c) for c in cols)
            + f" | {ratio:.2f} | {fmt(at['delay']['mean'], at['delay']['se'])} "
            f"(ARL0 {at_arl:,.0f}) | {p4 / at['delay']['mean']:.2f} |"
        )
    # What no distribution-free rule can beat (bench/rank_limits.py): numeric streams only.
    bounds: dict[str, dict[str, float]] = {}
    for k in scen_keys:
        scen = SCENARIOS[k]
        if scen.kind != "numeric" or scen.spread != 1.0 or scen.ramp:
            continue
        oracle_delay = summary[k]["oracle/oracle"]["delay"]["mean"]
        row: dict[str, float] = {"shift_sd": abs(scen.delta), "oracle_delay": oracle_delay}
        for label, n in (("frozen", REFERENCE_SIZE), ("learning", REFERENCE_SIZE + scen.tau)):
            b = first_alarm_bound(abs(scen.delta), n, TARGET_ARL0)
            row[f"{label}_p_first"] = b.p_first
            row[f"{label}_delay_bound"] = b.delay_lower_bound
        bounds[k] = row
    table_bounds = [
        "",
        "## The least delay any distribution-free rule can have (bench/rank_limits.py)",
        "",
        f"A rule whose false-alarm rate holds whatever the tail decides from ranks among its "
        f"reference; to keep ARL0 = {TARGET_ARL0:,.0f} it can alarm on the first changed study "
        f"at most with probability p_first, so its delay is at least 2 − p_first (all of the "
        f"stream's budget on one side; generous). Frozen: the {REFERENCE_SIZE}-value reference; "
        "learning: also the in-control studies before the change (τ of them).",
        "",
        "| scenario | shift (σ) | oracle | p_first, frozen | delay ≥ (frozen) | ÷ oracle "
        "| p_first, learning | delay ≥ (learning) | ÷ oracle |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for k, b in bounds.items():
        od = b["oracle_delay"]
        table_bounds.append(
            f"| {SCENARIOS[k].title} | {b['shift_sd']:.2f} | {od:.2f} | "
            f"{b['frozen_p_first']:.3f} | {b['frozen_delay_bound']:.2f} | "
            f"{b['frozen_delay_bound'] / od:.2f} | {b['learning_p_first']:.3f} | "
            f"{b['learning_delay_bound']:.2f} | {b['learning_delay_bound'] / od:.2f} |"
        )
    lines += table_bounds
    lines += [
        "",
        "† the peer's attainable in-control ARLs jump across the target (a discrete statistic); "
        "the closest was used. ‡ the target is out of reach: even at the parameter's bound the "
        "peer alarms less often than ARL0 (it runs at a lower false-alarm rate: see its measured "
        "ARL below). ≥: some runs had no alarm within "
        f"{DELAY_HORIZON:,} post-change observations (counted as {DELAY_HORIZON:,}).",
        "",
        f"## In-control ARL measured on fresh streams (target {TARGET_ARL0:,.0f}; censored at "
        f"{horizon:,}), with the tuned parameter",
        "",
        "| detector | parameter | " + " | ".join(SCENARIOS[k].key for k in scen_keys) + " |",
        "|---" * (len(scen_keys) + 2) + "|",
    ]
    for c in cols:
        m = c.split("/")[0]
        pname = {"oracle": "(exact design)", "phase4": "(analytic calibration)"}.get(m)
        cells_txt = []
        for k in scen_keys:
            e = summary[k][c]
            s = fmt_arl(e["in_control"])
            if "tuning" in e:
                pname = e["tuning"]["parameter"]
                s = f"{e['tuning']['param']:.3g} → {s}"
            cells_txt.append(s)
        lines.append(f"| {LABELS[m]} | {pname} | " + " | ".join(cells_txt) + " |")
    lines += [
        "",
        "## In-control ARL with the peers' DEFAULT parameters (what users get)",
        "",
        "| detector | " + " | ".join(SCENARIOS[k].key for k in scen_keys) + " |",
        "|---" * (len(scen_keys) + 1) + "|",
    ]
    for m in PEERS:
        cells_txt = []
        for k in scen_keys:
            e = summary[k][f"{m}/default"]
            cells_txt.append(f"{e['default_param']:g}: {fmt_arl(e['in_control'])}")
        lines.append(f"| {LABELS[m]} | " + " | ".join(cells_txt) + " |")
    decomposed = {
        mode: {name: arl_estimate(rls, DECOMPOSE_HORIZON) for name, rls in by.items()}
        for mode, by in decomposition.items()
    }
    if decomposed:
        lines += [
            "",
            "## phase4's numeric stream in control, by detector (liver SUV; each detector "
            "budgeted ARL0 "
            + ", ".join(f"{d} {v:,.0f}" for d, v in phase4_detector_arl0.items())
            + f"; the stream {TARGET_ARL0:,.0f}; "
            f"{args.decompose_runs} runs, censored at {DECOMPOSE_HORIZON:,})",
            "",
            "| reference | "
            + " | ".join(DETECTOR_WORDS.get(n, n) for n in phase4_detector_arl0)
            + " | stream (the first of them) |",
            "|---" * (len(phase4_detector_arl0) + 2) + "|",
        ]
        names = {"known": "known exactly (exact z)", "estimated": "estimated from 500 (product)"}
        for mode, by in decomposed.items():
            lines.append(
                f"| {names[mode]} | "
                + " | ".join(fmt_arl(by[n]) for n in (*phase4_detector_arl0, "stream"))
                + " |"
            )
    tail_summary: dict[str, dict[str, Any]] = {}
    for (k, m, _), c in sorted(tail_cells.items()):
        tail_summary.setdefault(k, {})[m] = arl_estimate(c["ic"], horizon)
    for design in dict.fromkeys(MISMATCH_SCENARIOS[k].design for k in tail_summary):
        variants = [k for k in tail_summary if MISMATCH_SCENARIOS[k].design == design]
        as_tuned = {c.split("/")[0]: summary[design][c]["in_control"] for c in cols}
        lines += [
            "",
            f"## In-control ARL when {design} is not what the tuning assumed (oracle design "
            f"and peers' parameters as tuned on {design}; phase4 from its own reference; "
            f"{args.reps} runs, censored at {horizon:,})",
            "",
            f"| detector | {design} (as tuned) | " + " | ".join(variants) + " |",
            "|---" * (len(variants) + 2) + "|",
        ]
        for c in cols:
            m = c.split("/")[0]
            lines.append(
                f"| {LABELS[m]} | {fmt_arl(as_tuned[m])} | "
                + " | ".join(fmt_arl(tail_summary[k][m]) for k in variants)
                + " |"
            )
    lines += ["", "Excluded runs (alarm before the change), fraction of attempts:", ""]
    for k in scen_keys:
        parts = [
            f"{LABELS[c.split('/')[0]]} {summary[k][c]['delay']['excluded_fraction']:.0%}"
            for c in cols
        ]
        lines.append(f"- {k}: " + ", ".join(parts))
    table = "\n".join(lines)
    print(table)

    source["monitor_changed_on_disk_during_run"] = (
        monitor_digest() != source["monitor_drift_sha256_16"]
    )
    if source["monitor_changed_on_disk_during_run"]:
        print(
            "\n# NOTE: phase4/monitor/drift changed on disk during the run; the results are for "
            "the "
            "version imported at the start (hash above)."
        )
    total = time.perf_counter() - started
    print(
        f"\n# total {total:.0f}s (tuning {tune_seconds:.0f}s, verification "
        f"{verify_seconds:.0f}s, runs {run_seconds:.0f}s)"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "date": date,
        "machine": info,
        "source": source,
        "versions": versions(),
        "settings": {
            "target_arl0": TARGET_ARL0,
            "reference_size": REFERENCE_SIZE,
            "binary_rule": BINARY_RULE,
            "binary_reference_events_min": _events_min(),
            "binary_reference_events_target": _events_target(),
            "binary_reference": f"{binary_rule_text()}; {BINARY_RULE_NOTES[BINARY_RULE]}",
            "tau": TAU,
            "tau_by_scenario": {k: SCENARIOS[k].tau for k in scen_keys},
            "window": WINDOW,
            "delay_horizon": DELAY_HORIZON,
            "in_control_horizon": horizon,
            "reps": args.reps,
            "tune_reps": args.tune_reps,
            "seed": args.seed,
            "jobs": args.jobs,
            "phase4_config": phase4_config("numeric").to_dict(),
            "phase4_arl0_per_numeric_detector": phase4_detector_arl0,
        },
        "scenarios": {
            k: {
                "title": SCENARIOS[k].title,
                "stream": SCENARIOS[k].stream,
                "tau": SCENARIOS[k].tau,
                # (the old binary rule's reference ends at a random row)
                "change_at_row": REFERENCE_SIZE + SCENARIOS[k].tau
                if SCENARIOS[k].kind == "numeric" or BINARY_RULE != "old"
                else None,
                **({"design": SCENARIOS[k].design} if SCENARIOS[k].design else {}),
                "oracle": oracle_design(k),
            }
            for k in scen_keys
        },
        "tuning": [{kk: v for kk, v in r.items() if kk != "rule"} for r in tuned.values()],
        "verification": verification,
        "phase4_in_control_decomposition": decomposed,
        "results": summary,
        "distribution_free_delay_bounds": bounds,
        "assumptions_wrong_in_control": {
            k: {"stream": MISMATCH_SCENARIOS[k].stream, "in_control": v}
            for k, v in tail_summary.items()
        },
        "markdown": table,
        "seconds": {
            "total": total,
            "tuning": tune_seconds,
            "verification": verify_seconds,
            "runs": run_seconds,
        },
    }
    args.out.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
