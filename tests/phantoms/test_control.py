"""Control charts: exact Markov-chain ARLs against Champ & Woodall and a Monte Carlo of the
streaming checker; the Western Electric rules one by one; tolerance verdicts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from phase4.phantoms.control import (
    ShewhartChart,
    Tolerance,
    WesternElectric,
    markov_arl,
    simulate_run_lengths,
    tolerance_verdict,
)
from tests.reference import spc

# --- exact ARL -------------------------------------------------------------------------------


def test_three_sigma_rule_alone_matches_the_closed_form() -> None:
    p = 2 * (1 - 0.5 * (1 + math.erf(3 / math.sqrt(2))))  # P(|Z| > 3)
    assert markov_arl((1,)) == pytest.approx(1 / p, rel=1e-9)
    assert markov_arl((1,)) == pytest.approx(spc.WESTERN_ELECTRIC_ARL0[(1,)], abs=0.05)


def test_eight_in_a_row_alone_is_two_to_the_eighth_minus_one() -> None:
    # a run of 8 equal outcomes of a fair coin takes 2^8 - 1 tosses on average
    assert markov_arl((4,)) == pytest.approx(255.0, rel=1e-9)


@pytest.mark.parametrize(("rules", "expected"), sorted(spc.WESTERN_ELECTRIC_ARL0.items()))
def test_champ_woodall_arl0(rules: tuple[int, ...], expected: float) -> None:
    # Champ & Woodall (1987): rule 1 with each supplementary rule added *on its own* gives
    # 225.4, 166.1, 152.7; all four rules together 91.75. The three are not cumulative: the
    # chain gives 132.9 for rules 1-3 together.
    assert markov_arl(rules) == pytest.approx(expected, abs=0.05)


def test_three_sigma_rule_at_a_one_sigma_shift() -> None:
    expected = spc.SHEWHART_ARL_AT_ONE_SIGMA
    assert markov_arl((1,), shift_sigma=1.0) == pytest.approx(expected, abs=0.05)
    # more rules detect a shift sooner
    assert markov_arl((1, 2, 3, 4), shift_sigma=1.0) < markov_arl((1,), shift_sigma=1.0) / 3


@pytest.mark.parametrize("rules", [(1,), (1, 4), (1, 2, 3, 4)])
def test_monte_carlo_of_the_streaming_checker_confirms_the_chain(rules: tuple[int, ...]) -> None:
    lengths = simulate_run_lengths(20_000, rules, seed=11)
    mean = lengths.mean()
    se = lengths.std(ddof=1) / math.sqrt(lengths.size)
    assert abs(mean - markov_arl(rules)) < 3 * se


def test_monte_carlo_under_a_shift() -> None:
    lengths = simulate_run_lengths(20_000, (1, 2, 3, 4), shift_sigma=1.0, seed=3)
    se = lengths.std(ddof=1) / math.sqrt(lengths.size)
    assert abs(lengths.mean() - markov_arl((1, 2, 3, 4), 1.0)) < 3 * se


# --- the rules -------------------------------------------------------------------------------


def _rules_fired(values: list[float]) -> list[tuple[int, int]]:
    chart = ShewhartChart(center=0.0, sigma=1.0)
    return [(h.index, h.rule) for h in chart.check(values)]


def test_rule_1_one_point_beyond_three_sigma() -> None:
    assert _rules_fired([0.0, 3.01, 0.0]) == [(1, 1)]
    assert _rules_fired([0.0, -3.5]) == [(1, 1)]
    assert _rules_fired([3.0]) == []  # on the limit is not beyond it


def test_rule_2_two_of_three_beyond_two_sigma_same_side() -> None:
    assert _rules_fired([2.5, 0.0, 2.1]) == [(2, 2)]
    assert _rules_fired([2.5, -2.5, 0.0]) == []  # opposite sides
    assert _rules_fired([2.5, 0.0, 0.0, 2.1]) == []  # 2 of 4, not 2 of 3


def test_rule_3_four_of_five_beyond_one_sigma_same_side() -> None:
    assert (4, 3) in _rules_fired([-1.5, -1.2, 0.5, -1.1, -1.9])
    assert _rules_fired([1.5, 1.2, 0.5, 1.1, -1.9]) == []


def test_rule_4_eight_in_a_row_same_side() -> None:
    assert _rules_fired([0.2] * 7) == []
    assert _rules_fired([0.2] * 8) == [(7, 4)]
    assert _rules_fired([0.2] * 7 + [-0.2]) == []


def test_the_vectorised_checker_runs_charts_independently() -> None:
    checker = WesternElectric(3)
    fired = [checker.update(np.array([3.5, 0.5, 2.5])) for _ in range(2)]
    assert fired[0].tolist() == [True, False, False]
    assert fired[1].tolist() == [True, False, True]  # chart 3: two of three beyond 2σ
    # chart 1 too: a point beyond 3σ is also beyond 2σ
    assert checker.fired[2].tolist() == [True, False, True]
    with pytest.raises(ValueError, match="expected 3 values"):
        checker.update([1.0])


def test_reference_limits_from_the_moving_range_and_the_sd() -> None:
    rng = np.random.default_rng(4)
    values = 100 + 2 * rng.standard_normal(400)
    mr = ShewhartChart.from_reference(values)
    sd = ShewhartChart.from_reference(values, sigma_method="sd")
    assert mr.center == pytest.approx(values.mean())
    assert mr.sigma == pytest.approx(np.mean(np.abs(np.diff(values))) / 1.128)
    assert sd.sigma == pytest.approx(values.std(ddof=1))
    for chart in (mr, sd):
        assert chart.sigma == pytest.approx(2.0, rel=0.1)
        assert chart.upper_limit == pytest.approx(chart.center + 3 * chart.sigma)
    # a drift inside the reference inflates the SD but hardly the moving range
    drift = values + np.linspace(0, 12, values.size)
    assert ShewhartChart.from_reference(drift, sigma_method="sd").sigma > 1.5 * (
        ShewhartChart.from_reference(drift).sigma
    )
    with pytest.raises(ValueError, match="do not vary"):
        ShewhartChart.from_reference([1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="at least 2"):
        ShewhartChart.from_reference([1.0])


def test_a_five_percent_step_fires_and_hits_serialise() -> None:
    rng = np.random.default_rng(9)
    history = list(100 + rng.standard_normal(30)) + list(105 + rng.standard_normal(10))
    chart = ShewhartChart.from_reference(history[:20])
    hits = chart.check(history)
    assert hits and min(h.index for h in hits) >= 30
    d = hits[0].to_dict()
    assert d["side"] == "above" and d["description"]
    assert len(chart.figure(history).data) == 2


# --- tolerance and action levels -------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.0, "pass"),
        (5.0, "pass"),
        (5.01, "tolerance"),
        (-7.0, "tolerance"),
        (10.5, "action"),
        (-10.01, "action"),
        (-10.0, "tolerance"),
    ],
)
def test_tolerance_verdicts(value: float, expected: str) -> None:
    tol = dict(lower_action=-10.0, lower_tolerance=-5.0, upper_tolerance=5.0, upper_action=10.0)
    assert tolerance_verdict(value, **tol) == expected
    assert Tolerance(**tol).verdict(value) == expected


def test_missing_levels_mean_no_limit_on_that_side() -> None:
    assert tolerance_verdict(1e6, lower_action=0.0) == "pass"
    assert tolerance_verdict(-1.0, lower_action=0.0) == "action"
    assert tolerance_verdict(6.0, upper_tolerance=5.0) == "tolerance"
    assert tolerance_verdict(6.0) == "pass"


def test_bad_tolerances_are_refused() -> None:
    with pytest.raises(ValueError, match="out of order"):
        tolerance_verdict(1.0, lower_tolerance=2.0, upper_tolerance=1.0)
    with pytest.raises(ValueError, match="out of order"):
        Tolerance(upper_tolerance=10.0, upper_action=5.0)
    with pytest.raises(ValueError, match="non-finite"):
        tolerance_verdict(float("nan"), upper_action=1.0)


def test_docstring_examples_run() -> None:
    import doctest

    import phase4.phantoms.control
    import phase4.phantoms.flood

    for module in (phase4.phantoms.control, phase4.phantoms.flood):
        failed, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert tried > 0 and failed == 0, module.__name__
