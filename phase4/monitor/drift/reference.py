"""Reference distributions, and the transform that makes every numeric stream N(0, 1) in control.

Control-chart ARLs are computed for N(0, 1) observations, but injected activity is skewed, lesion
counts are small integers and Dice piles up near 1. Rather than pretend they are Gaussian after
subtracting a mean, each value is mapped through the reference's distribution function and then
the standard normal quantile (normal scores, a probability integral transform):

    z = Φ⁻¹(F_ref(x))

In control z ~ N(0, 1) whatever the feature's distribution, so one calibration serves all.
- Continuous features: F_ref is a Gaussian-kernel CDF of the (Yeo–Johnson symmetrised)
  reference, its bandwidth the plug-in choice for a distribution function (not a density);
  it is kept at 33 knots evenly spaced over the symmetrised reference's range, interpolated
  linearly in z, and z saturates at the score of a value beyond every reference value
  (``continuous_z_cap``: ±3.09 for 500 values), which is all a reference of that size can
  say about such a value.
- Discrete features (≤ 24 distinct reference values, e.g. lesion count): the randomised PIT
  u ~ U(F(x⁻), F(x)) is exactly uniform in control (A. E. Brockwell 2007, "Universal
  residuals: a multivariate transformation", Statistics & Probability Letters 77:1473–1478).
  The uniform is a deterministic hash of the observation's index, so replays give identical
  results.
- Values recorded on a grid (to 0.1, to integers; more than 24 levels, all a whole number of
  the smallest gap apart, repeating, none holding over 20% of the reference, which would be a
  point mass such as a TMTV of 0): each value, in the reference and live, is spread
  uniformly over its rounding interval, x + (V − ½)·step with V from the observation's index,
  and the reference is then continuous (the randomised PIT's device applied to the value;
  Brockwell 2007). Without it the levels holding ≥ 2% of the reference became point masses,
  the continuous part was the rest (a distribution with a hole in its middle), and its tails
  were mis-scored: integers ran 29% over their budget (docs/BENCHMARKS.md).
- Mixed features (a point mass holding ≥ 2% of the reference, and a continuum): F(x) is the
  point masses' shares plus the continuous part's CDF weighted by its share, randomised within
  a point mass's jump.
The sample's median and MAD are kept for the evidence shown to people; the transform has its
own constants (``location``, ``scale``), those of the continuous part.
"""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_left, bisect_right
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats
from scipy.special import ndtr, ndtri

KNOTS = 33
DISCRETE_MAX_LEVELS = 24
ATOM_SHARE = 0.02
GRID_SALT = "grid"
# A level holding more than this share is a point mass (TMTV recorded to 0.1 mL is 0 for most
# studies), not a tie of rounding: such a reference keeps its atoms and is not jittered.
GRID_MAX_SHARE = 0.2
Z_CLIP = 8.0


class ReferenceFitError(ValueError):
    """A reference cannot be built from what was given (too few values, no variation...)."""


def _uniform_from_index(salt: str, index: int) -> float:
    digest = hashlib.blake2b(f"{salt}:{index}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / 2**64


@dataclass(slots=True)
class NumericReference:
    """The in-control distribution of one numeric stream.

    ``median`` and ``mad_sigma`` summarise the whole reference sample for people (its median and
    its median absolute deviation × 1.4826). The transform to normal scores has its own
    constants: ``location`` and ``scale`` standardise the continuous part of the sample (the
    values outside any point mass) before the Yeo–Johnson transform; for a feature with a point
    mass (TMTV: 0 for most studies) they differ from the sample's median and MAD.
    """

    n: int
    # the sample's median and MAD·1.4826; None in a state saved before they were kept for a
    # feature with a point mass (the state then held the continuous part's)
    median: float | None
    mad_sigma: float | None
    discrete: bool
    # discrete: the distinct reference values and the empirical CDF at each
    levels: list[float] = field(default_factory=list)
    cdf: list[float] = field(default_factory=list)
    # continuous: the normal scores at KNOTS knots evenly spaced over knot_range = [first,
    # last] in the symmetrised scale; a reference saved before the knots were evenly spaced
    # keeps their positions in knot_x instead of knot_range
    knot_z: list[float] = field(default_factory=list)
    knot_range: list[float] = field(default_factory=list)
    knot_x: list[float] = field(default_factory=list)
    # the symmetrising transform: y = YJ((x − location) / scale; yj_lambda)
    location: float = 0.0
    scale: float = 1.0
    yj_lambda: float = 1.0
    # Point masses of a mixed feature (TMTV is exactly 0 for most studies): value and share.
    atoms: list[float] = field(default_factory=list)
    atom_probs: list[float] = field(default_factory=list)
    # Values recorded on a grid (to 0.1, to integers: every reference value a multiple of
    # ``grid`` from the smallest, and ties): each value, reference and live alike, is scored as
    # x + (V − ½)·grid with V ~ U(0, 1) from the observation's index; 0: not a grid.
    grid: float = 0.0
    # Derived from n, not stored (see to_dict): the largest |z| a continuous value can score.
    z_cap: float = field(default=0.0, compare=False)

    def __post_init__(self) -> None:
        if not self.z_cap:
            self.z_cap = continuous_z_cap(self.n)

    @classmethod
    def fit(cls, values: Any, *, min_size: int = 30) -> NumericReference:
        x = np.asarray(values, dtype=float)
        x = x[np.isfinite(x)]
        if x.size < min_size:
            raise ReferenceFitError(
                f"a reference needs at least {min_size} finite values, got {x.size}"
            )
        median = float(np.median(x))
        mad_sigma = float(stats.median_abs_deviation(x, scale="normal"))
        levels, counts = np.unique(x, return_counts=True)
        if levels.size < 2:
            raise ReferenceFitError(
                f"the reference has a single value ({levels[0]}): nothing varies"
            )
        is_atom = counts >= max(5, ATOM_SHARE * x.size)
        continuous = x[~np.isin(x, levels[is_atom])]
        grid = (
            _grid_step(levels, x.size)
            if levels.size > DISCRETE_MAX_LEVELS and counts.max() <= GRID_MAX_SHARE * x.size
            else 0.0
        )
        if grid:
            # Ties of rounding are not point masses: spread each value uniformly over its
            # rounding interval (the randomised PIT's device, Brockwell 2007, applied to the
            # value), and the reference is continuous again. The values are jittered by their
            # position in the reference, live values by their index (``z``).
            u = np.array([_uniform_from_index(GRID_SALT, i) for i in range(x.size)])
            jittered = x + (u - 0.5) * grid
            ref = cls._fit_continuous(jittered, x.size, median, mad_sigma)
            ref.grid = grid
            return ref
        if levels.size <= DISCRETE_MAX_LEVELS or continuous.size < min_size:
            cdf = np.cumsum(counts) / x.size
            return cls(
                n=x.size,
                median=median,
                mad_sigma=mad_sigma,
                discrete=True,
                levels=levels.tolist(),
                cdf=cdf.tolist(),
            )
        ref = cls._fit_continuous(continuous, x.size, median, mad_sigma)
        ref.atoms = levels[is_atom].tolist()
        ref.atom_probs = (counts[is_atom] / x.size).tolist()
        return ref

    @classmethod
    def _fit_continuous(
        cls, x: np.ndarray, n: int, median: float, mad_sigma: float
    ) -> NumericReference:
        """Fit the continuous part ``x`` of a reference of ``n`` values whose (whole-sample)
        median and MAD·1.4826 are ``median`` and ``mad_sigma``."""
        location = float(np.median(x))
        robust_sd = float(stats.median_abs_deviation(x, scale="normal"))
        # Symmetrise first (Yeo-Johnson, fitted by maximum likelihood on robustly standardised
        # values), so that a Gaussian kernel's tails suit the data's; then smooth the CDF: a
        # kernel CDF has a smaller error than the empirical one, above all in the sparse tails
        # that decide a CUSUM's false-alarm rate. Evaluated once at knots, interpolated in z.
        scale = robust_sd if robust_sd > 0 else float(np.std(x, ddof=1))
        _, lam = stats.yeojohnson((x - location) / scale)
        g = _yeo_johnson((x - location) / scale, float(lam))
        # The bandwidth that minimises the asymptotic mean integrated squared error of a kernel
        # *distribution function* estimate, two-stage plug-in (A. J. Polansky & E. R. Baker
        # 2000, "Multistage plug-in bandwidth selection for kernel distribution function
        # estimates", J. Stat. Comput. Simul. 65:63–80). Until 2026-12-05 it was Silverman's
        # rule for a density, 0.9·min(sd, IQR/1.349)·m^(−1/5), about twice as wide for a
        # bimodal feature: each mode came out ~12% too wide, its scores' tails too light, and
        # its charts spent half their budget (docs/BENCHMARKS.md, "The budget by family").
        iqr_sigma = float(np.subtract(*np.percentile(g, [75, 25]))) / 1.349
        spread = min(float(np.std(g, ddof=1)), iqr_sigma) or float(np.std(g, ddof=1))
        bandwidth = distribution_bandwidth(g, spread)
        # A kernel estimate's variance is the sample's plus bandwidth²: z would come out about
        # 3% too narrow, and every chart conservative by a third of its false-alarm rate. The
        # sample is shrunk toward its mean by 1/√(1 + b²/s²) first, so that the smoothed
        # distribution keeps the sample's variance (M. C. Jones 1991, "On correcting for
        # variance inflation in kernel density estimation", Comput. Stat. Data Anal. 11:3–15).
        sd = float(np.std(g, ddof=1))
        centre = float(np.mean(g))
        smooth = centre + (g - centre) / math.sqrt(1.0 + (bandwidth / sd) ** 2)
        # Knots evenly spaced in the symmetrised scale, where z is nearly linear: 33 of them
        # interpolate the smoothed CDF's normal scores with a 99th-percentile error of 0.03
        # (0.14 for the 65 quantile knots used before, whose spacing is widest in the tails
        # that matter most).
        # Only the range is stored, at seven significant digits (far finer than the
        # reference's own error), and the knots are spaced from the stored values.
        first = float(f"{g.min() - 3 * bandwidth:.7g}")
        last = float(f"{g.max() + 3 * bandwidth:.7g}")
        knots = np.linspace(first, last, KNOTS)
        # The kernel CDF itself up to the reference's extremes (until 2026-12-05, beyond the
        # 5th and 95th percentiles z continued linearly, a Gaussian tail in the symmetrised
        # scale: too light for a bimodal feature, too heavy for a t₃, whose scores between 2
        # and 3.1 came half again too often), and beyond them the cap (``continuous_z_cap``).
        # With the plug-in bandwidth the kernel CDF's tail beyond the extremes is that of the
        # extreme values' own kernels: it reaches the cap within a bandwidth or so of them.
        zs = _kernel_normal_scores(knots, smooth, bandwidth)
        return cls(
            n=n,
            median=median,
            mad_sigma=mad_sigma,
            discrete=False,
            knot_z=[float(f"{v:.7g}") for v in zs],
            knot_range=[first, last],
            location=location,
            scale=scale,
            yj_lambda=float(lam),
        )

    def z(self, value: float, index: int = 0, salt: str = "") -> float:
        """The normal score of ``value`` (``index`` and ``salt`` seed the randomised PIT)."""
        if self.grid:
            jitter = _uniform_from_index(f"{salt}:{GRID_SALT}", index) - 0.5
            return self._z_continuous(value + jitter * self.grid)
        if self.discrete:
            return self._z_discrete(value, index, salt)
        if self.atoms:
            return self._z_mixed(value, index, salt)
        return self._z_continuous(value)

    def _z_mixed(self, value: float, index: int, salt: str) -> float:
        """F(x) = Σ_{atoms a < x} p_a + (1 - Σ p_a)·F_cont(x), randomised within an atom's jump."""
        below = sum(p for a, p in zip(self.atoms, self.atom_probs, strict=True) if a < value)
        weight = 1.0 - sum(self.atom_probs)
        f = below + weight * float(ndtr(self._z_continuous(value)))
        if value in self.atoms:
            f += self.atom_probs[self.atoms.index(value)] * _uniform_from_index(salt, index)
        f = min(max(f, 1e-12), 1 - 1e-12)
        return max(-Z_CLIP, min(Z_CLIP, float(ndtri(f))))

    def _z_continuous(self, value: float) -> float:
        """z of a continuous value: y = YJ((x − location)/scale; yj_lambda), then knot_z
        interpolated linearly at y (extrapolated beyond the outer knots), capped at ±z_cap."""
        zs = self.knot_z
        value = _yeo_johnson_scalar((value - self.location) / self.scale, self.yj_lambda)
        if self.knot_range:
            first, last = self.knot_range
            step = (last - first) / (len(zs) - 1)
            pos = (value - first) / step
            # Linear in z between knots; beyond the outer knots, the outer slope continues.
            i = 0
            if pos > 0:
                i = int(pos)
                if i > len(zs) - 2:
                    i = len(zs) - 2
            z = zs[i] + (pos - i) * (zs[i + 1] - zs[i])
            cap = self.z_cap
            return cap if z > cap else -cap if z < -cap else z
        xs = self.knot_x
        j = bisect_right(xs, value)
        if j == 0:
            j = 1
        elif j == len(xs):
            j = len(xs) - 1
        # Linear in z between knots; beyond the outer knots, the outer slope continues.
        z = zs[j - 1] + (value - xs[j - 1]) * (zs[j] - zs[j - 1]) / (xs[j] - xs[j - 1])
        return max(-self.z_cap, min(self.z_cap, z))

    def _z_discrete(self, value: float, index: int, salt: str) -> float:
        """The randomised PIT u = F(x⁻) + V·(F(x) − F(x⁻)), V ~ U(0, 1) from the index
        (Brockwell 2007), as a normal score Φ⁻¹(u)."""
        levels, cdf = self.levels, self.cdf
        below = bisect_left(levels, value)
        upto = bisect_right(levels, value)
        f_lo = cdf[below - 1] if below > 0 else 0.0
        f_hi = cdf[upto - 1] if upto > 0 else 0.0
        if f_hi <= f_lo:
            # A value the reference never held: place it by its neighbours, at the edge if
            # beyond them, with the probability of a half count, so it scores as rare.
            half = 0.5 / self.n
            f_lo, f_hi = (max(f_lo - half, 0.0), f_lo) if upto > 0 else (0.0, half)
            if upto >= len(levels):
                f_lo, f_hi = 1 - half, 1.0
        u = f_lo + (f_hi - f_lo) * _uniform_from_index(salt, index)
        u = min(max(u, 1e-12), 1 - 1e-12)
        return float(max(-Z_CLIP, min(Z_CLIP, ndtri(u))))

    def quantile(self, p: float) -> float:
        """The value below which a share ``p`` of the reference lies, read from the stored
        distribution (the same one the normal scores come from): the inverse of ``z``.

        Discrete: the smallest level whose cumulative share reaches ``p``. Continuous: the
        knots' normal scores inverted at Φ⁻¹(p), then the symmetrising transform undone.
        Mixed: the point masses' shares, then the continuous part. The charts draw the
        reference's median and bands with it.

        >>> ref = NumericReference.fit([float(v) for v in range(1, 201)])
        >>> round(ref.quantile(0.5))
        100
        >>> ref.quantile(0.025) < ref.quantile(0.25) < ref.quantile(0.75) < ref.quantile(0.975)
        True
        >>> NumericReference.fit([1.0, 2.0, 3.0] * 20).quantile(0.5)
        2.0
        """
        p = min(max(float(p), 1e-9), 1 - 1e-9)
        if self.discrete:
            i = bisect_left(self.cdf, p - 1e-12)
            return self.levels[min(i, len(self.levels) - 1)]
        if not self.atoms:
            return self._continuous_quantile(p)
        weight = 1.0 - sum(self.atom_probs)
        below = 0.0
        for atom, share in sorted(zip(self.atoms, self.atom_probs, strict=True)):
            before = below + weight * float(ndtr(self._z_continuous(atom)))
            if p <= before:
                return self._continuous_quantile((p - below) / weight)
            if p <= before + share:
                return atom
            below += share
        return self._continuous_quantile((p - below) / weight)

    def _continuous_quantile(self, p: float) -> float:
        """The inverse of ``_z_continuous`` at Φ⁻¹(p): the knots' scores are increasing, so
        the symmetrised value is found by linear interpolation (the outer slopes beyond)."""
        p = min(max(p, 1e-12), 1 - 1e-12)
        z = max(-self.z_cap, min(self.z_cap, float(ndtri(p))))
        zs = self.knot_z
        if self.knot_range:
            first, last = self.knot_range
            step = (last - first) / (len(zs) - 1)
            ys = [first + i * step for i in range(len(zs))]
        else:
            ys = list(self.knot_x)
        j = bisect_right(zs, z)
        j = min(max(j, 1), len(zs) - 1)
        dz = zs[j] - zs[j - 1]
        y = ys[j - 1] + ((z - zs[j - 1]) / dz * (ys[j] - ys[j - 1]) if dz > 0 else 0.0)
        return self.location + self.scale * _yeo_johnson_inverse(y, self.yj_lambda)

    def describe(self) -> str:
        """The reference in a line, for people."""
        if self.median is None or self.mad_sigma is None:
            text = f"n = {self.n}, median and robust SD not recorded (saved by an older version)"
        else:
            text = f"n = {self.n}, median {self.median:.4g}, robust SD {self.mad_sigma:.3g}"
        if self.atoms:
            masses = ", ".join(
                f"{a:g} ({p:.0%})" for a, p in zip(self.atoms, self.atom_probs, strict=True)
            )
            text += f"; values exactly at {masses}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """The fields that hold something; the others (a discrete reference's knots and
        transform, a continuous one's levels, absent point masses) keep their defaults."""
        d = asdict(self)
        del d["z_cap"]
        unused = ("knot_z", "knot_range", "knot_x", "location", "scale", "yj_lambda")
        if self.discrete:
            for key in unused:
                del d[key]
        if not self.grid:
            del d["grid"]
        for key in ("levels", "cdf", "knot_x", "atoms", "atom_probs"):
            if key in d and not d[key]:
                del d[key]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NumericReference:
        """From :meth:`to_dict` of the current state version (see
        ``phase4.monitor.drift.state``)."""
        return cls(**d)


def _grid_step(levels: np.ndarray, n: int) -> float:
    """The rounding step of values recorded on a grid, or 0: the smallest gap between distinct
    values, when every value is a whole number of such gaps from the smallest (to 1e-6 of a
    gap) and values repeat (fewer distinct values than 90% of ``n``): to 0.1 or to integers,
    say. Continuous values rarely tie, and their gaps are no common multiple."""
    if levels.size < 2 or levels.size > 0.9 * n:
        return 0.0
    step = float(np.min(np.diff(levels)))
    if not step > 0:
        return 0.0
    multiples = (levels - levels[0]) / step
    if np.max(np.abs(multiples - np.round(multiples))) > 1e-6:
        return 0.0
    return float(f"{step:.12g}")


def continuous_z_cap(n: int) -> float:
    """The largest |z| a continuous value scores against a reference of n values: that of a
    value beyond every reference value, given the probability of half a count, as the discrete
    scores do (3.09 for n = 500). A reference of n values cannot tell how far beyond its
    extremes a value lies in probability, only that it lies beyond them; letting z grow there
    made the false-alarm rate depend on a tail nobody measured (a t₃ feature ran at 7 times its
    budget, mostly from the EWMA; with the cap 0.8 times)."""
    return float(ndtri(1 - 0.5 / n))


@dataclass(slots=True)
class RateReference:
    """The in-control rate of a binary stream, with its uncertainty (events in n trials)."""

    n: int
    events: int

    @classmethod
    def fit(cls, values: Any, *, min_size: int = 30) -> RateReference:
        x = [bool(v) for v in values if v is not None]
        if len(x) < min_size:
            raise ReferenceFitError(f"a reference needs at least {min_size} values, got {len(x)}")
        return cls(len(x), sum(x))

    @property
    def rate(self) -> float:
        """(events + ½) / (n + 1): the posterior mean of the rate under the Jeffreys prior
        Beta(½, ½) (H. Jeffreys 1946, "An invariant form for the prior probability in estimation
        problems", Proc. R. Soc. A 186:453–461). Never exactly 0, even with no events; the
        Bernoulli CUSUM is designed on it (its p0)."""
        return (self.events + 0.5) / (self.n + 1)

    def describe(self) -> str:
        """The reference in a line, for people, with the rate the chart was designed on."""
        return (
            f"n = {self.n}, {self.events} events; rate the chart was designed on, "
            f"(events + ½)/(n + 1) = {self.rate:.2%}"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RateReference:
        return cls(**d)


@dataclass(slots=True)
class CategoricalReference:
    """Reference counts of a categorical stream (scanner model, reconstruction, tracer...)."""

    counts: dict[str, int]

    @classmethod
    def fit(cls, values: Any, *, min_size: int = 30) -> CategoricalReference:
        x = [str(v) for v in values if v is not None]
        if len(x) < min_size:
            raise ReferenceFitError(f"a reference needs at least {min_size} values, got {len(x)}")
        counts: dict[str, int] = {}
        for v in x:
            counts[v] = counts.get(v, 0) + 1
        return cls(counts)

    @property
    def n(self) -> int:
        return sum(self.counts.values())

    def describe(self, top: int = 5) -> str:
        """The ``top`` most frequent categories and their counts, for people."""
        ranked = sorted(self.counts.items(), key=lambda kv: -kv[1])
        text = "; ".join(f"{k}: {v}" for k, v in ranked[:top])
        return text + (" …" if len(ranked) > top else "")

    def to_dict(self) -> dict[str, Any]:
        return {"counts": self.counts}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CategoricalReference:
        return cls(dict(d["counts"]))


def distribution_bandwidth(g: np.ndarray, sigma: float) -> float:
    """The Gaussian-kernel bandwidth for estimating the *distribution function* of the sample
    ``g``: the two-stage plug-in of A. J. Polansky & E. R. Baker (2000, "Multistage plug-in
    bandwidth selection for kernel distribution function estimates", J. Stat. Comput. Simul.
    65:63–80), ``sigma`` the scale of its normal reference at the first stage.

    The asymptotic MISE of a kernel CDF is minimised by h = (ψ(K) / (n·R(f′)))^(1/3), where
    ψ(K) = 1/√π for the Gaussian kernel and R(f′) = ∫f′² = −ψ₂ (M. C. Jones 1990, "The
    performance of kernel density functions in kernel distribution function estimation",
    Stat. Probab. Lett. 9:129–132); ψ₂ is estimated by ψ̂₂(g₂), whose own optimal pilot g₂
    needs ψ₄, estimated by ψ̂₄(g₄), whose pilot g₄ needs ψ₆, taken from a normal of scale
    ``sigma`` (M. P. Wand & M. C. Jones 1995, "Kernel Smoothing", Chapman & Hall, §3.5). For
    normal data h ≈ 1.59·σ·n^(−1/3) (Silverman's density bandwidth is 0.9·σ·n^(−1/5), wider
    at every n that matters); for a bimodal sample it follows the modes' own width.

    >>> g = np.random.default_rng(1).normal(0.0, 1.0, 500)
    >>> 0.15 < distribution_bandwidth(g, 1.0) < 0.25  # 1.587·500^(−1/3) = 0.20
    True
    """
    n = g.size
    psi6 = -15.0 / (16.0 * math.sqrt(math.pi) * sigma**7)
    g4 = (6.0 / math.sqrt(2 * math.pi) / (-psi6 * n)) ** (1 / 7)
    psi4 = _psi_hat(g, 4, g4)
    if not psi4 > 0:  # (a degenerate sample): the normal reference's
        psi4 = 3.0 / (8.0 * math.sqrt(math.pi) * sigma**5)
    g2 = (2.0 / math.sqrt(2 * math.pi) / (psi4 * n)) ** (1 / 5)
    psi2 = _psi_hat(g, 2, g2)
    if not psi2 < 0:
        psi2 = -1.0 / (4.0 * math.sqrt(math.pi) * sigma**3)
    return float((1.0 / (math.sqrt(math.pi) * n * -psi2)) ** (1 / 3))


def _psi_hat(g: np.ndarray, r: int, pilot: float) -> float:
    """The kernel estimate of the functional ψ_r = ∫ f^(r) f (r = 2, 4), n⁻²·pilot^(−r−1)·
    Σᵢ Σⱼ φ^(r)((gᵢ − gⱼ)/pilot) (Wand & Jones 1995, §3.5), summed in blocks of rows so that
    a large reference does not hold all n² differences at once."""
    total = 0.0
    for start in range(0, g.size, 256):
        d = (g[start : start + 256, None] - g[None, :]) / pilot
        d2 = d * d
        phi = np.exp(-0.5 * d2) / math.sqrt(2 * math.pi)
        poly = d2 - 1.0 if r == 2 else d2 * d2 - 6.0 * d2 + 3.0
        total += float(np.sum(poly * phi))
    return total / (g.size**2 * pilot ** (r + 1))


def _kernel_normal_scores(at: np.ndarray, g: np.ndarray, bandwidth: float) -> np.ndarray:
    """Φ⁻¹ of the Gaussian-kernel CDF of the sample ``g`` at the points ``at``."""
    cdf = ndtr((at[:, None] - g[None, :]) / bandwidth).mean(axis=1)
    return np.asarray(ndtri(np.clip(cdf, 1e-12, 1 - 1e-12)))


def _yeo_johnson(y: np.ndarray, lam: float) -> np.ndarray:
    return np.array([_yeo_johnson_scalar(float(v), lam) for v in y])


def _yeo_johnson_scalar(y: float, lam: float) -> float:
    """The power transform of I.-K. Yeo & R. A. Johnson (2000, "A new family of power
    transformations to improve normality or symmetry", Biometrika 87:954–959), defined for all
    real y: ((y + 1)^λ − 1)/λ for y ≥ 0 (log(y + 1) at λ = 0), and
    −((1 − y)^(2−λ) − 1)/(2 − λ) for y < 0 (−log(1 − y) at λ = 2)."""
    if y >= 0:
        return math.log1p(y) if abs(lam) < 1e-9 else ((y + 1) ** lam - 1) / lam
    return -math.log1p(-y) if abs(lam - 2) < 1e-9 else -((1 - y) ** (2 - lam) - 1) / (2 - lam)


def _yeo_johnson_inverse(y: float, lam: float) -> float:
    """The inverse of :func:`_yeo_johnson_scalar` (the transform keeps the sign of y). Beyond
    the range a power transform reaches (λ < 0 above, λ > 2 below) the largest finite value."""
    if y >= 0:
        if abs(lam) < 1e-9:
            return math.expm1(y)
        base = lam * y + 1
        return base ** (1 / lam) - 1 if base > 0 else math.inf
    if abs(lam - 2) < 1e-9:
        return -math.expm1(-y)
    base = 1 - (2 - lam) * y
    return 1 - base ** (1 / (2 - lam)) if base > 0 else -math.inf


def z_to_uniform(z: float) -> float:
    """Φ(z), the standard normal CDF (as ½·erfc(−z/√2), accurate in the lower tail)."""
    return 0.5 * math.erfc(-z / math.sqrt(2))
