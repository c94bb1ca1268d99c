"""The numeric stream's detection over a whole column at once, identical to feeding it row by row.

``Stream.observe`` takes one record at a time: for a numeric stream that is monitoring it maps
the value to its normal score (``reference.NumericReference.z``), updates the CUSUM, the EWMA,
the spread CUSUM and the windowed KS test, keeps the record's time when a detector may date a
change to it, and prunes those times past 64. A backtest (``phase4 replay``) has the whole
column in hand; :func:`observe_column` gives the same alarms, in the same order, with the same
change estimates, statistics and timestamps, and leaves the stream in the same state (its
detectors' ``to_dict``, its counters and kept times), at a fraction of the cost:

- normal scores for the whole column with numpy: the continuous transform (standardise,
  Yeo–Johnson, linear interpolation at the knots, the cap) is elementwise IEEE arithmetic that
  numpy computes bit for bit as Python does, except ``pow``/``log1p``, whose vectorised
  versions differ from the C library's in the last bit (on 5-9% of values here): those are
  taken per value from the C library (``map``). Discrete, grid and point-mass references draw their
  randomised-PIT uniform from a hash of the observation's index (``_uniform_from_index``):
  the hashes are taken per value, the rest (``searchsorted`` for ``bisect``, ``ndtri``)
  vectorised;
- the KS test's windows do not depend on the other detectors or on its own alarms (a window
  is judged and emptied whether it alarms or not): the PIT values (rounded to 5 decimals as
  the test takes them, :func:`pit_rounded`) are cut into windows, sorted and their
  Kolmogorov distances computed all at once;
- the three recursive charts (S_t = max(0, S_{t−1} + ...) with a restart at each alarm) and the
  bookkeeping of kept times run in one tight loop of local variables, with the same floating
  point operations in the same order as the detectors' ``update``: a vectorised Lindley
  recursion (cumulative sums minus a running minimum) or ``lfilter`` would round differently,
  and a change of start index or an alarm may hinge on a statistic being exactly 0. The kept
  times are pruned on the same rows as ``Stream.observe`` prunes them, after the row's
  alarms are dated (a detector that has just alarmed has restarted, and its start would
  otherwise be pruned before its alarm could be dated by it).

A value the vectorised transform cannot score (a non-finite intermediate: a value so large that
its power overflows, which the scalar path meets as an exception and quarantines the stream
for) stops the batch there: :attr:`ColumnResult.stopped` tells the caller to feed that
stream's remaining rows through ``Stream.observe`` as before.

Only statistics: no I/O. Binary and categorical streams, and a numeric stream's reference
collection, are not handled here (they stay on ``Stream.observe``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import repeat
from typing import Any

import numpy as np
from scipy import stats
from scipy.special import erfc, ndtr, ndtri

from phase4.monitor.drift.detectors import Alarm, Cusum, Ewma, SpreadCusum, WindowedKS
from phase4.monitor.drift.detectors.ks import ks_effective_size
from phase4.monitor.drift.detectors.spread import _constants
from phase4.monitor.drift.reference import GRID_SALT, Z_CLIP, NumericReference
from phase4.monitor.drift.state import StreamState
from phase4.monitor.drift.streams import Stream, StreamAlarm

SQRT2 = math.sqrt(2)  # as reference.z_to_uniform computes it
# the detectors of a numeric stream, in the order _update_numeric updates them
NUMERIC_DETECTORS = ("cusum", "ewma", "spread", "ks")
TIMES_KEPT = 64  # Stream.observe prunes its kept times past this many


@dataclass(frozen=True, slots=True)
class ColumnResult:
    """What :func:`observe_column` did: the alarms as (position in the column, detector order
    0-3, alarm), in the order the streaming path raises them, and ``stopped``: the position of
    the first value it left to ``Stream.observe`` (None: it took the whole column)."""

    alarms: list[tuple[int, int, StreamAlarm]]
    stopped: int | None


def batchable(stream: Stream) -> bool:
    """Whether :func:`observe_column` can take ``stream``: a monitoring numeric stream of the
    whole table (no subgroup), with the four detectors and a reference whose knots are evenly
    spaced (a state saved by an older version is left to the streaming path)."""
    ref = stream._numeric_ref
    return (
        stream.spec.kind == "numeric"
        and not stream.spec.where
        and stream.state is StreamState.MONITORING
        and stream.quarantine is None
        and ref is not None
        and (ref.discrete or bool(ref.knot_range))
        and tuple(stream.detectors) == NUMERIC_DETECTORS
        and len(stream.times) <= TIMES_KEPT
        and isinstance(stream.detectors["cusum"], Cusum)
        and isinstance(stream.detectors["ewma"], Ewma)
        and isinstance(stream.detectors["spread"], SpreadCusum)
        and isinstance(stream.detectors["ks"], WindowedKS)
    )


def uniforms_from_indices(salt: str, indices: Sequence[int]) -> np.ndarray:
    """``reference._uniform_from_index(salt, i)`` for every i, bit for bit: the hashes are
    taken one by one, their conversion to floats at once (numpy's uint64 → float64 rounds to
    nearest, as Python's int → float does)."""
    # the salt's part of the message hashed once, copied for each index: the same digest as
    # blake2b(f"{salt}:{i}".encode()), in three quarters of the time
    copy = hashlib.blake2b(f"{salt}:".encode(), digest_size=8).copy
    digests = b"".join([_digest(copy(), b"%d" % i) for i in indices])
    return (np.frombuffer(digests, dtype=">u8").astype(np.float64) + 0.5) / 2**64


def _digest(h: Any, tail: bytes) -> bytes:
    h.update(tail)
    return h.digest()  # type: ignore[no-any-return]


def _powers(bases: np.ndarray, exponent: float) -> tuple[np.ndarray, np.ndarray]:
    """``b ** exponent`` per value as Python computes it (the C library's ``pow``), and where
    it overflowed (Python raises there; those values are marked, their power set to inf)."""
    listed = bases.tolist()
    try:
        powered = list(map(pow, listed, repeat(exponent)))  # pow(b, e) is b ** e
        return np.array(powered, dtype=float), np.zeros(len(listed), bool)
    except OverflowError:
        out = np.empty(len(listed))
        bad = np.zeros(len(listed), bool)
        for j, b in enumerate(listed):
            try:
                out[j] = b**exponent
            except OverflowError:
                out[j], bad[j] = math.inf, True
        return out, bad


def _log1ps(values: np.ndarray) -> np.ndarray:
    return np.array(list(map(math.log1p, values.tolist())), dtype=float)


def _yeo_johnson(y: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """``reference._yeo_johnson_scalar`` elementwise, bit for bit, and where it would raise."""
    out = np.empty_like(y)
    bad = np.zeros(y.size, bool)
    pos = y >= 0
    neg = ~pos
    if pos.any():
        yp = y[pos]
        if abs(lam) < 1e-9:
            out[pos] = _log1ps(yp)
        else:
            powered, overflow = _powers(yp + 1, lam)
            out[pos] = (powered - 1) / lam
            bad[pos] = overflow
    if neg.any():
        yn = y[neg]
        if abs(lam - 2) < 1e-9:
            out[neg] = -_log1ps(-yn)
        else:
            powered, overflow = _powers(1 - yn, 2 - lam)
            out[neg] = -(powered - 1) / (2 - lam)
            bad[neg] = overflow
    return out, bad


def continuous_scores(ref: NumericReference, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``ref._z_continuous(v)`` for every value (a reference with ``knot_range``), and the
    values the scalar path would raise on (a non-finite intermediate, an overflow)."""
    with np.errstate(all="ignore"):
        y, bad = _yeo_johnson((values - ref.location) / ref.scale, ref.yj_lambda)
        zs = np.asarray(ref.knot_z, dtype=float)
        first, last = ref.knot_range
        step = (last - first) / (len(ref.knot_z) - 1)
        pos = (y - first) / step
        bad |= ~np.isfinite(pos)
        safe = np.where(bad, 0.0, pos)
        i = np.where(safe > 0, np.minimum(np.trunc(safe), len(zs) - 2), 0.0).astype(np.intp)
        z = zs[i] + (safe - i) * (zs[i + 1] - zs[i])
        cap = ref.z_cap
        z = np.where(z > cap, cap, np.where(z < -cap, -cap, z))
    return z, bad


def _clip_scores(u: np.ndarray) -> np.ndarray:
    """Φ⁻¹(u) clipped as the discrete and mixed scores are: u to [1e-12, 1 − 1e-12], then the
    score to ±Z_CLIP."""
    u = np.minimum(np.maximum(u, 1e-12), 1 - 1e-12)
    z = ndtri(u)
    return np.maximum(-Z_CLIP, np.minimum(Z_CLIP, z))


def normal_scores(
    ref: NumericReference, values: np.ndarray, rows: Sequence[int], salt: str
) -> tuple[np.ndarray, np.ndarray]:
    """``ref.z(value, row, salt)`` for every (value, row), bit for bit, and a mask of the
    values the scalar path would raise on (their scores are meaningless)."""
    if ref.grid:
        jitter = uniforms_from_indices(f"{salt}:{GRID_SALT}", rows) - 0.5
        return continuous_scores(ref, values + jitter * ref.grid)
    if ref.discrete:
        levels, cdf = np.asarray(ref.levels, dtype=float), np.asarray(ref.cdf, dtype=float)
        below = np.searchsorted(levels, values, side="left")
        upto = np.searchsorted(levels, values, side="right")
        f_lo = np.where(below > 0, cdf[np.maximum(below - 1, 0)], 0.0)
        f_hi = np.where(upto > 0, cdf[np.maximum(upto - 1, 0)], 0.0)
        # a value the reference never held (as NumericReference._z_discrete places it)
        new = f_hi <= f_lo
        half = 0.5 / ref.n
        lo_new = np.where(upto > 0, np.maximum(f_lo - half, 0.0), 0.0)
        hi_new = np.where(upto > 0, f_lo, half)
        beyond = new & (upto >= len(levels))
        lo_new = np.where(beyond, 1 - half, lo_new)
        hi_new = np.where(beyond, 1.0, hi_new)
        f_lo = np.where(new, lo_new, f_lo)
        f_hi = np.where(new, hi_new, f_hi)
        u = f_lo + (f_hi - f_lo) * uniforms_from_indices(salt, rows)
        return _clip_scores(u), np.zeros(values.size, bool)
    z, bad = continuous_scores(ref, values)
    if not ref.atoms:
        return z, bad
    # F(x) = Σ_{atoms a < x} p_a + (1 − Σ p_a)·F_cont(x), randomised within an atom's jump
    below = np.zeros(values.size)
    for a, p in zip(ref.atoms, ref.atom_probs, strict=True):
        below = below + np.where(a < values, p, 0.0)
    weight = 1.0 - sum(ref.atom_probs)
    f = below + weight * ndtr(z)
    on_atom = np.isin(values, ref.atoms)
    if on_atom.any():
        where = np.flatnonzero(on_atom)
        atom_share = dict(zip(reversed(ref.atoms), reversed(ref.atom_probs), strict=True))
        shares = np.array([atom_share[v] for v in values[where].tolist()])
        f[where] += shares * uniforms_from_indices(salt, [rows[j] for j in where.tolist()])
    return _clip_scores(f), bad


def pit_rounded(z: np.ndarray) -> np.ndarray:
    """``round(reference.z_to_uniform(z), 5)`` per score, bit for bit. Only the rounded value
    is used (the KS test takes PIT values to 5 decimals), so Φ(z) = ½·erfc(−z/√2) is taken from
    scipy's vectorised erfc, within 3·10⁻¹⁶ of ``math.erfc``'s, and rounded by numpy
    (rint(u·10⁵)/10⁵, what Python's correctly rounded ``round`` gives for the same u): the two
    can differ only where u·10⁵ lies within 10⁻¹⁰ of a half, and every value within 10⁻⁶ of
    one is computed again as the scalar path computes it (``math.erfc``, then ``round``)."""
    u = 0.5 * erfc(-z / SQRT2)
    scaled = u * 100_000
    rounded = np.rint(scaled) / 100_000
    close = np.abs(scaled - np.floor(scaled) - 0.5) < 1e-6
    for j in np.flatnonzero(close).tolist():
        rounded[j] = round(0.5 * math.erfc(-float(z[j]) / SQRT2), 5)
    return rounded


@dataclass(frozen=True, slots=True)
class _Windows:
    """The KS test over a column: its alarms (the distance, by the position among the present
    values of the window's last value), and the buffer and last distance it ends with."""

    alarms: dict[int, float]
    buffer: list[float]
    last_d: float | None


def _ks_windows(ks: WindowedKS, u: np.ndarray) -> _Windows:
    """Cut the buffer under way and the column's PIT values ``u`` into windows and judge the
    complete ones at once, with ``WindowedKS.update``'s arithmetic (the distance over the
    sorted window, (j + 1)/m − u_(j) and u_(j) − j/m, divisions of integers as Python's)."""
    m = ks.window
    held = len(ks.buffer)
    seq = np.concatenate([np.asarray(ks.buffer, dtype=float), u])
    complete = seq.size // m
    alarms: dict[int, float] = {}
    last_d = ks.last_d
    if complete:
        windows = np.sort(seq[: complete * m].reshape(complete, m), axis=1)
        j = np.arange(m)
        d = np.maximum((j + 1) / m - windows, windows - j / m).max(axis=1)
        last_d = float(d[-1])
        for w in np.flatnonzero(d > ks.critical_d).tolist():
            alarms[(w + 1) * m - held - 1] = float(d[w])
    return _Windows(alarms, seq[complete * m :].tolist(), last_d)


def observe_column(
    stream: Stream,
    values: np.ndarray,
    rows: Sequence[int],
    stamps: Sequence[str],
    unusable: np.ndarray | None = None,
) -> ColumnResult:
    """Feed ``stream`` (see :func:`batchable`) a column: ``values[p]`` (float, NaN: missing)
    recorded at ``stamps[p]`` in row ``rows[p]``, in order, exactly as ``stream.observe`` would
    take them one record at a time; ``unusable[p]``: the value was present but unusable (NaN
    there too; counted as ``Stream.observe`` counts it)."""
    if not batchable(stream):
        raise ValueError(f"stream {stream.spec.name} cannot be fed a column at once")
    values = np.asarray(values, dtype=float)
    rows_all = np.asarray(rows, dtype=np.int64)
    if rows_all.size > 1 and not np.diff(np.sort(rows_all)).all():
        raise ValueError("a column's rows must be distinct (each record's own index)")
    ref = stream._numeric_ref
    assert ref is not None
    present_at = np.flatnonzero(~np.isnan(values))
    present_rows = rows_all[present_at]
    rows_present = present_rows.tolist()
    z, bad = normal_scores(ref, values[present_at], rows_present, stream.spec.name)
    stopped: int | None = None
    if bad.any():
        cut = int(np.argmax(bad))
        stopped = int(present_at[cut])
        present_at, rows_present, z = present_at[:cut], rows_present[:cut], z[:cut]
    taken = len(values) if stopped is None else stopped
    stream.seen_records += taken
    stream.observations += int(present_at.size)
    if unusable is not None:
        stream.unusable += int(np.count_nonzero(unusable[:taken]))
    if present_at.size == 0:
        return ColumnResult([], stopped)
    ks: WindowedKS = stream.detectors["ks"]  # type: ignore[assignment]
    windows = _ks_windows(ks, pit_rounded(z))
    stamp_list = list(stamps)
    if present_at.size == len(stamp_list):
        present_stamps = stamp_list
    else:
        present_stamps = [stamp_list[p] for p in present_at.tolist()]
    raw = _charts(stream, z.tolist(), rows_present, present_stamps, windows)
    alarms = [
        (int(present_at[q]), order, _stream_alarm(stream, alarm, at, change_at))
        for q, order, alarm, at, change_at in raw
    ]
    return ColumnResult(alarms, stopped)


def _stream_alarm(stream: Stream, alarm: Alarm, at: str, change_at: str | None) -> StreamAlarm:
    """The alarm as ``Stream.observe`` reports it: the budget behind its threshold and its
    detector's description as it stands right after the alarm (restarted; a KS test with the
    distance of the window just judged)."""
    det = stream.detectors[alarm.detector]
    after: Any
    if isinstance(det, Cusum):
        after = replace(det, s_hi=0.0, s_lo=0.0)
    elif isinstance(det, Ewma):
        after = replace(det, z=0.0)
    elif isinstance(det, SpreadCusum):
        after = replace(det, s_up=0.0, s_down=0.0)
    else:
        after = replace(det, buffer=[], last_d=alarm.statistic)
    spec = stream.spec
    return StreamAlarm(
        spec.name,
        spec.kind,
        alarm,
        at,
        change_at,
        stream._evidence(alarm.detector),
        after.describe(),
    )


def _charts(
    stream: Stream,
    zs: list[float],
    rows: list[int],
    stamps: list[str],
    windows: _Windows,
) -> list[tuple[int, int, Alarm, str, str | None]]:
    """The CUSUM, EWMA and spread CUSUM over the scores, and the kept times, in one loop with
    the detectors' own arithmetic (``Cusum.update``, ``Ewma.update``, ``SpreadCusum.update``,
    ``Stream._update_numeric``, ``Stream._prune_times``); the KS alarms (computed by window)
    are slotted in at their rows. Returns (position among the present values, detector order,
    alarm, its time, the change's time) and leaves the detectors and the kept times as the
    stream would."""
    cusum: Cusum = stream.detectors["cusum"]  # type: ignore[assignment]
    ewma: Ewma = stream.detectors["ewma"]  # type: ignore[assignment]
    spread: SpreadCusum = stream.detectors["spread"]  # type: ignore[assignment]
    ks: WindowedKS = stream.detectors["ks"]  # type: ignore[assignment]
    k, h = cusum.k, cusum.h
    s_hi, s_lo, start_hi, start_lo = cusum.s_hi, cusum.s_lo, cusum.start_hi, cusum.start_lo
    lam, ml = ewma.lam, ewma.multiplier_l
    e, last_cross = ewma.z, ewma.last_cross
    limit = ml * math.sqrt(lam / (2 - lam))
    a_up, k_up, a_down, k_down = _constants(spread.ratio)
    # down_scale · a⁻ · (k⁻ − y) is evaluated left to right: (down_scale · a⁻) is the same
    # double at every step, and so is (1 − λ) in the EWMA
    ds_a = spread.down_scale * a_down
    lam1 = 1 - lam
    cap = spread.z_cap
    cap2 = math.inf if cap is None else cap * cap
    hs = spread.h
    s_up, s_down = spread.s_up, spread.s_down
    start_up, start_down = spread.start_up, spread.start_down
    m = ks.window
    kc = len(ks.buffer)  # the KS buffer's length
    kf = ks.first
    ks_alarms = windows.alarms
    times = stream.times
    initial = {start_hi, start_lo, last_cross, start_up, start_down, kf}
    out: list[tuple[int, int, Alarm, str, str | None]] = []
    # the row's alarms, and whether a detector dated a start to it (both reset once used)
    found: list[tuple[int, Alarm]] | None = None
    started = False
    for q, (i, x, at) in enumerate(zip(rows, zs, stamps, strict=True)):
        # Cusum.update
        hi = s_hi + x - k
        lo = s_lo - x - k
        if hi <= 0.0:
            hi = 0.0
        elif s_hi == 0.0:
            start_hi = i
            started = True
        if lo <= 0.0:
            lo = 0.0
        elif s_lo == 0.0:
            start_lo = i
            started = True
        s_hi = hi
        s_lo = lo
        if hi > h or lo > h:
            up = s_hi >= s_lo
            found = [
                (
                    0,
                    Alarm(
                        "cusum",
                        i,
                        s_hi if up else s_lo,
                        h,
                        start_hi if up else start_lo,
                        direction="up" if up else "down",
                    ),
                )
            ]
            s_hi = s_lo = 0.0
        # Ewma.update
        previous = e
        e = lam * x + lam1 * previous
        if previous == 0.0 or (previous > 0) != (e > 0):
            last_cross = i
            started = True
        if e > limit or e < -limit:  # abs(e) > limit
            a = Alarm("ewma", i, e, limit, last_cross, direction="up" if e > 0 else "down")
            found = [*(found or ()), (1, a)]
            e = 0.0
        # SpreadCusum.update
        y = x * x
        if y > cap2:
            y = cap2
        su = s_up + a_up * (y - k_up)
        sd = s_down + ds_a * (k_down - y)
        if su <= 0.0:
            su = 0.0
        elif s_up == 0.0:
            start_up = i
            started = True
        if sd <= 0.0:
            sd = 0.0
        elif s_down == 0.0:
            start_down = i
            started = True
        s_up = su
        s_down = sd
        if su > hs or sd > hs:
            wider = su >= sd
            a = Alarm(
                "spread",
                i,
                su if wider else sd,
                hs,
                start_up if wider else start_down,
                detail={"spread": "wider" if wider else "narrower"},
            )
            found = [*(found or ()), (2, a)]
            s_up = s_down = 0.0
        # WindowedKS.update (its windows judged beforehand)
        if kc == 0:
            kf = i
            started = True
        kc += 1
        if kc == m:
            kc = 0
            if q in ks_alarms:
                d = ks_alarms[q]
                p = float(stats.kstwo.sf(d, ks_effective_size(ks.reference_size, m)))
                a = Alarm("ks", i, d, ks.critical_d, kf, detail={"p_value": p})
                found = [*(found or ()), (3, a)]
        # Stream._update_numeric, then Stream.observe's pruning of the kept times
        # (a start not set by this row equals it only if it held the row before the column:
        # the rows are distinct, so only a start's value from before can coincide)
        if started or (
            i in initial and i in (start_up, start_down, start_hi, start_lo, last_cross, kf)
        ):
            started = False
            times[i] = at
        # the alarms are dated before the kept times are pruned (a detector that has just
        # alarmed has restarted: its start is no longer a candidate, but the alarm needs it)
        if found:
            for order, a in found:
                start = a.change_index_estimate
                out.append((q, order, a, at, at if start == i else times.get(start)))
            found = None
        if len(times) > TIMES_KEPT:
            keep = set()
            if s_hi > 0:
                keep.add(start_hi)
            if s_lo > 0:
                keep.add(start_lo)
            if e != 0.0:
                keep.add(last_cross)
            if s_up > 0:
                keep.add(start_up)
            if s_down > 0:
                keep.add(start_down)
            if kc:
                keep.add(kf)
            times = {j: t for j, t in times.items() if j in keep or j == i}
    n = len(zs)
    cusum.s_hi, cusum.s_lo, cusum.start_hi, cusum.start_lo = s_hi, s_lo, start_hi, start_lo
    cusum.n += n
    ewma.z, ewma.last_cross = e, last_cross
    ewma.n += n
    spread.s_up, spread.s_down, spread.start_up, spread.start_down = (
        s_up,
        s_down,
        start_up,
        start_down,
    )
    spread.n += n
    ks.buffer, ks.first, ks.last_d = windows.buffer, kf, windows.last_d
    ks.n += n
    stream.times = times
    return out
