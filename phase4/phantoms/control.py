"""Control charts on a phantom metric's history, and tolerance/action verdicts.

* :class:`ShewhartChart` — an individuals (X) chart: centre and σ from a reference period,
  limits at centre ± 3σ. σ comes from the average moving range divided by d2 = 1.128 (the
  usual choice for individuals charts: it is insensitive to a slow drift inside the reference
  period) or, with ``sigma_method="sd"``, from the sample standard deviation.
* :class:`WesternElectric` — the four Western Electric rules, checked as each value arrives
  (a streaming checker that also runs many independent charts at once, one value each):

  1. one point beyond 3σ;
  2. two of the last three beyond 2σ on the same side;
  3. four of the last five beyond 1σ on the same side;
  4. eight in a row on the same side of the centre line.

  (Nelson's rules use nine in a row and add trend rules: this module implements the Western
  Electric set only.) A point at exactly a limit is not beyond it.
* :func:`markov_arl` — the exact average run length of any subset of those rules by the
  Markov-chain method of Champ & Woodall (1987, Technometrics 29:393–399): ARL0 = 370.4 for
  rule 1 alone; 225.4, 166.1, 152.7 with rule 2, 3 or 4 added to it on its own; 91.75 with all
  four.
* :func:`tolerance_verdict` — "pass" / "tolerance" / "action" against a tolerance record
  (as in QATrack+, whose tests carry a tolerance band and a wider action band).

Example::

    >>> chart = ShewhartChart(center=100.0, sigma=1.0)
    >>> [(h.index, h.rule) for h in chart.check([100.0, 104.0, 100.0])]
    [(1, 1)]
    >>> round(markov_arl(rules=(1,)), 1)
    370.4
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import spsolve
from scipy.stats import norm

D2_MOVING_RANGE = 1.128  # d2 for subgroups of 2 (moving range of consecutive individuals)
ALL_RULES: tuple[int, ...] = (1, 2, 3, 4)
RULE_TEXT = {
    1: "1 point beyond 3σ",
    2: "2 of 3 points beyond 2σ on the same side",
    3: "4 of 5 points beyond 1σ on the same side",
    4: "8 points in a row on the same side of the centre line",
}
Verdict = Literal["pass", "tolerance", "action"]


# --- tolerance and action levels --------------------------------------------------------------


@dataclass(frozen=True)
class Tolerance:
    """One metric's tolerance record; any level may be None (no limit on that side)."""

    lower_action: float | None = None
    lower_tolerance: float | None = None
    upper_tolerance: float | None = None
    upper_action: float | None = None

    def __post_init__(self) -> None:
        levels = [
            (name, v)
            for name, v in (
                ("lower_action", self.lower_action),
                ("lower_tolerance", self.lower_tolerance),
                ("upper_tolerance", self.upper_tolerance),
                ("upper_action", self.upper_action),
            )
            if v is not None
        ]
        for name, v in levels:
            if not math.isfinite(v):
                raise ValueError(f"tolerance level {name} must be finite, not {v}")
        for (a_name, a), (b_name, b) in itertools.pairwise(levels):
            if a > b:
                raise ValueError(f"tolerance levels out of order: {a_name} {a} > {b_name} {b}")

    def verdict(self, value: float) -> Verdict:
        return tolerance_verdict(value, **asdict(self))

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)


def tolerance_verdict(
    value: float,
    *,
    lower_action: float | None = None,
    lower_tolerance: float | None = None,
    upper_tolerance: float | None = None,
    upper_action: float | None = None,
) -> Verdict:
    """``"action"`` outside an action level, ``"tolerance"`` outside a tolerance level (but
    inside the action levels), else ``"pass"``. A value equal to a level is inside it.

    >>> tolerance_verdict(1.07, lower_action=0.9, upper_tolerance=1.05, upper_action=1.1)
    'tolerance'
    """
    Tolerance(lower_action, lower_tolerance, upper_tolerance, upper_action)  # validates order
    if not math.isfinite(value):
        raise ValueError(f"cannot judge a non-finite value ({value})")
    if (lower_action is not None and value < lower_action) or (
        upper_action is not None and value > upper_action
    ):
        return "action"
    if (lower_tolerance is not None and value < lower_tolerance) or (
        upper_tolerance is not None and value > upper_tolerance
    ):
        return "tolerance"
    return "pass"


# --- the Western Electric rules ---------------------------------------------------------------


def zone(z: np.ndarray | float) -> np.ndarray:
    """Signed zone of standardised values: ±1 within 1σ, ±2 in 1–2σ, ±3 in 2–3σ, ±4 beyond
    3σ (a value exactly on a limit belongs to the inner zone); the sign is the side."""
    a = np.asarray(z, dtype=float)
    magnitude = np.where(
        np.abs(a) > 3, 4, np.where(np.abs(a) > 2, 3, np.where(np.abs(a) > 1, 2, 1))
    )
    return np.where(a >= 0, magnitude, -magnitude).astype(np.int8)


class WesternElectric:
    """Streaming checker of the Western Electric rules on standardised values, for ``n``
    independent charts at once (``n=1`` for one chart).

    ``update(z)`` takes one value per chart and returns a boolean array (charts that alarm at
    this value, for any of ``rules``); :attr:`fired` then holds, per rule, which charts it
    fired on. The window holds the zones of the last 8 values; zero means "no value yet".
    """

    def __init__(self, n: int = 1, rules: Sequence[int] = ALL_RULES) -> None:
        bad = sorted(set(rules) - set(ALL_RULES))
        if bad or not rules:
            raise ValueError(f"rules must be a non-empty subset of {ALL_RULES}, not {list(rules)}")
        self.rules = tuple(sorted(set(rules)))
        self.window = np.zeros((n, 8), dtype=np.int8)  # column 7 is the newest
        self.fired: dict[int, np.ndarray] = {}

    def update(self, z: np.ndarray | Sequence[float] | float) -> np.ndarray:
        zones = zone(np.atleast_1d(np.asarray(z, dtype=float)))
        if zones.shape != (self.window.shape[0],):
            raise ValueError(f"expected {self.window.shape[0]} values, got {zones.shape}")
        self.window = np.concatenate([self.window[:, 1:], zones[:, None]], axis=1)
        w = self.window
        fired: dict[int, np.ndarray] = {}
        if 1 in self.rules:
            fired[1] = np.abs(w[:, 7]) == 4
        if 2 in self.rules:
            last3 = w[:, 5:]
            fired[2] = ((last3 >= 3).sum(axis=1) >= 2) | ((last3 <= -3).sum(axis=1) >= 2)
        if 3 in self.rules:
            last5 = w[:, 3:]
            fired[3] = ((last5 >= 2).sum(axis=1) >= 4) | ((last5 <= -2).sum(axis=1) >= 4)
        if 4 in self.rules:
            fired[4] = np.all(w > 0, axis=1) | np.all(w < 0, axis=1)
        self.fired = fired
        alarm = np.zeros(w.shape[0], dtype=bool)
        for hits in fired.values():
            alarm |= hits
        return alarm

    def reset(self, mask: np.ndarray | None = None) -> None:
        """Forget the history (of the charts in ``mask``, or all): the chart restarts."""
        if mask is None:
            self.window[:] = 0
        else:
            self.window[mask] = 0


@dataclass(frozen=True)
class RuleHit:
    """A rule that fired at one point of the history (0-based index, oldest first)."""

    index: int
    rule: int
    value: float
    z: float
    side: Literal["above", "below"]

    @property
    def description(self) -> str:
        return RULE_TEXT[self.rule]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "description": self.description}


@dataclass(frozen=True)
class ShewhartChart:
    """Individuals chart with limits centre ± 3σ (and the 1σ, 2σ zones of the WE rules)."""

    center: float
    sigma: float
    sigma_method: str = "given"
    reference_size: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.center) and math.isfinite(self.sigma)) or self.sigma <= 0:
            raise ValueError(
                f"a chart needs a finite centre and a positive σ (got {self.center}, {self.sigma})"
            )

    @classmethod
    def from_reference(
        cls,
        values: Sequence[float],
        *,
        sigma_method: Literal["moving_range", "sd"] = "moving_range",
    ) -> ShewhartChart:
        """Centre = mean of the reference values; σ = mean moving range / 1.128 (default) or
        the sample standard deviation (``sigma_method="sd"``). Needs at least 2 values."""
        x = np.asarray(values, dtype=float)
        if x.ndim != 1 or x.size < 2:
            raise ValueError(f"a reference period needs at least 2 values, got {x.size}")
        if not np.all(np.isfinite(x)):
            raise ValueError("reference values must be finite")
        if sigma_method == "moving_range":
            sigma = float(np.mean(np.abs(np.diff(x)))) / D2_MOVING_RANGE
        elif sigma_method == "sd":
            sigma = float(np.std(x, ddof=1))
        else:
            raise ValueError(f"sigma_method must be 'moving_range' or 'sd', not {sigma_method!r}")
        if sigma <= 0:
            raise ValueError("the reference values do not vary: σ is 0, so no limits can be set")
        return cls(float(x.mean()), sigma, sigma_method, int(x.size))

    @property
    def lower_limit(self) -> float:
        return self.center - 3 * self.sigma

    @property
    def upper_limit(self) -> float:
        return self.center + 3 * self.sigma

    def standardise(self, values: Iterable[float]) -> np.ndarray:
        return (np.asarray(list(values), dtype=float) - self.center) / self.sigma

    def check(self, values: Sequence[float], rules: Sequence[int] = ALL_RULES) -> list[RuleHit]:
        """Every rule that fires at every point of ``values`` (oldest first). The checker does
        not restart after a signal: a run of bad points keeps firing, as a reviewer wants."""
        z = self.standardise(values)
        checker = WesternElectric(1, rules)
        hits: list[RuleHit] = []
        for i, zi in enumerate(z):
            if not math.isfinite(zi):
                raise ValueError(f"value {i} is not finite ({values[i]})")
            checker.update(zi)
            for rule, fired in checker.fired.items():
                if fired[0]:
                    side: Literal["above", "below"] = "above" if zi >= 0 else "below"
                    hits.append(RuleHit(i, rule, float(values[i]), float(zi), side))
        return hits

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "lower_limit": self.lower_limit,
            "upper_limit": self.upper_limit,
        }

    def figure(self, values: Sequence[float], title: str = "Individuals chart") -> Any:
        """A plotly figure: the values, centre line, ±1/2/3σ lines, and rule hits marked."""
        import plotly.graph_objects as go

        x = list(range(len(values)))
        fig = go.Figure(go.Scatter(x=x, y=list(values), mode="lines+markers", name="value"))
        for k, dash in ((0, "solid"), (1, "dot"), (2, "dash"), (3, "solid")):
            for sign in (1,) if k == 0 else (1, -1):
                fig.add_hline(y=self.center + sign * k * self.sigma, line_dash=dash, opacity=0.5)
        hits = self.check(values)
        if hits:
            fig.add_trace(
                go.Scatter(
                    x=[h.index for h in hits],
                    y=[h.value for h in hits],
                    mode="markers",
                    marker={"color": "red", "size": 11, "symbol": "x"},
                    text=[h.description for h in hits],
                    name="rule fired",
                )
            )
        fig.update_layout(title=title, xaxis_title="result", yaxis_title="value")
        return fig


# --- exact ARL by a Markov chain --------------------------------------------------------------


def _zone_probabilities(shift_sigma: float) -> dict[int, float]:
    """P(zone) for one standardised value N(shift, 1) (zone ±4 = beyond 3σ)."""
    edges = [-np.inf, -3, -2, -1, 0, 1, 2, 3, np.inf]
    cdf = norm.cdf(np.array(edges) - shift_sigma)
    probs = np.diff(cdf)
    return dict(zip((-4, -3, -2, -1, 1, 2, 3, 4), (float(p) for p in probs), strict=True))


def _alarms(window: tuple[int, ...], rules: tuple[int, ...]) -> bool:
    """The same rules as :class:`WesternElectric`, on one window of 8 zones (newest last)."""
    if 1 in rules and abs(window[7]) == 4:
        return True
    if 2 in rules:
        last3 = window[5:]
        if sum(v >= 3 for v in last3) >= 2 or sum(v <= -3 for v in last3) >= 2:
            return True
    if 3 in rules:
        last5 = window[3:]
        if sum(v >= 2 for v in last5) >= 4 or sum(v <= -2 for v in last5) >= 4:
            return True
    return 4 in rules and (all(v > 0 for v in window) or all(v < 0 for v in window))


def _state(window: tuple[int, ...], rules: tuple[int, ...]) -> tuple[int, ...]:
    """The part of the history that can still matter: the last 4 zones (rules 2 and 3 look at
    most 4 values back) and the length of the current same-side run capped at 7 (rule 4)."""
    if rules == (1,):
        return ()
    keep = window[4:] if (2 in rules or 3 in rules) else (window[7],)
    run = 0
    if 4 in rules:
        side = np.sign(window[7])
        for v in reversed(window):
            if side != 0 and np.sign(v) == side:
                run += 1
            else:
                break
        run = min(run, 7)
        keep = (*window[4:], run) if (2 in rules or 3 in rules) else (window[7], run)
    return keep


def _window_from_state(state: tuple[int, ...], rules: tuple[int, ...]) -> tuple[int, ...]:
    """A window of 8 zones consistent with ``state`` (older values beyond the state are filled
    with zone ±1 of the run's side, or 0 = no value)."""
    if rules == (1,):
        return (0,) * 8
    if 4 in rules:
        zones, run = state[:-1], state[-1]
    else:
        zones, run = state, 0
    zones = tuple(zones)
    side = int(np.sign(zones[-1])) if zones and zones[-1] != 0 else 0
    older = [0] * (8 - len(zones))
    # the run extends past the kept zones: fill with the mildest zone on that side
    extra = max(0, run - len(zones))
    for k in range(extra):
        older[len(older) - 1 - k] = side
    return (*older, *zones)


def markov_arl(rules: Sequence[int] = ALL_RULES, shift_sigma: float = 0.0) -> float:
    """Exact average run length of an individuals chart with the chosen Western Electric rules
    for a sustained mean shift of ``shift_sigma`` σ, starting with no history (Champ & Woodall
    1987, Technometrics 29:393). The states are the last four zones and the current run length
    on one side; the ARL is (I − Q)⁻¹·1 from the empty state, Q the transient transitions.
    """
    rule_set = tuple(sorted(set(rules)))
    bad = sorted(set(rule_set) - set(ALL_RULES))
    if bad or not rule_set:
        raise ValueError(f"rules must be a non-empty subset of {ALL_RULES}, not {list(rules)}")
    probs = _zone_probabilities(shift_sigma)
    start = _state((0,) * 8, rule_set)
    index = {start: 0}
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    frontier = [start]
    while frontier:
        nxt: list[tuple[int, ...]] = []
        for state in frontier:
            window = _window_from_state(state, rule_set)
            i = index[state]
            for z, p in probs.items():
                new_window = (*window[1:], z)
                if _alarms(new_window, rule_set):
                    continue
                new_state = _state(new_window, rule_set)
                if new_state not in index:
                    index[new_state] = len(index)
                    nxt.append(new_state)
                rows.append(i)
                cols.append(index[new_state])
                vals.append(p)
        frontier = nxt
    n = len(index)
    q = sparse.csr_matrix((vals, (rows, cols)), shape=(n, n))
    system = (sparse.identity(n, format="csc") - q).tocsc()
    arl = spsolve(system, np.ones(n))
    return float(np.atleast_1d(arl)[0])


def simulate_run_lengths(
    runs: int,
    rules: Sequence[int] = ALL_RULES,
    shift_sigma: float = 0.0,
    seed: int = 0,
    max_length: int = 100_000,
) -> np.ndarray:
    """Run lengths of ``runs`` independent charts under the streaming :class:`WesternElectric`
    checker (values N(shift, 1), seeded), vectorised over charts. For checking
    :func:`markov_arl` by Monte Carlo: the mean has standard error ≈ SD / √runs."""
    rng = np.random.default_rng(seed)
    checker = WesternElectric(runs, rules)
    lengths = np.zeros(runs, dtype=np.int64)
    alive = np.arange(runs)  # charts that have not alarmed yet, in checker row order
    for t in range(1, max_length + 1):
        alarm = checker.update(rng.standard_normal(alive.size) + shift_sigma)
        if alarm.any():
            lengths[alive[alarm]] = t
            alive = alive[~alarm]
            checker.window = checker.window[~alarm]  # drop finished charts: only the live run
            if alive.size == 0:
                return lengths
    raise RuntimeError(f"{alive.size} charts did not alarm in {max_length} values")
