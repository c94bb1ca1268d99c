"""The limits docs/BENCHMARKS.md cites for the two changes phase4 cannot catch within 1.2x of the
oracle: the distribution-free delay bound of bench/rank_limits.py (the +40% image-noise jump; its
rank probabilities against exchangeability and simulation, and the bound's arithmetic) and the
reference outcomes of bench/estimated_rate_limits.py (the AI false-positive rise; against a
simulation of the product's own reference-stopping rule)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from estimated_rate_limits import reference_outcomes
from rank_limits import (
    first_alarm_bound,
    monte_carlo_p_top,
    rank_probability,
)

from phase4.monitor.drift.streams import Stream, StreamSpec

NOISE_JUMP_SD = math.log(1.4) / 0.0854  # +40% on a lognormal with log-sd 0.0854


@pytest.mark.parametrize("n", [10, 50, 500])
def test_in_control_every_rank_has_probability_one_over_n_plus_one(n: int) -> None:
    # Exchangeability: a new in-control value is equally likely to take any of the n + 1 ranks.
    for rank in {0, 1, n // 2, n - 1, n}:
        assert rank_probability(rank, n, 0.0) == pytest.approx(1 / (n + 1), rel=1e-6)


def test_rank_probabilities_sum_to_one_after_a_shift() -> None:
    assert sum(rank_probability(r, 60, 1.7) for r in range(61)) == pytest.approx(1, abs=1e-9)


def test_top_rank_probability_agrees_with_simulation() -> None:
    exact = rank_probability(500, 500, NOISE_JUMP_SD)
    estimate, se = monte_carlo_p_top(NOISE_JUMP_SD, 500, runs=60_000, seed=7)
    assert abs(exact - estimate) < 4 * se
    assert 0.78 < exact < 0.82


def test_bound_for_the_noise_jump_with_a_500_value_reference() -> None:
    b = first_alarm_bound(NOISE_JUMP_SD, 500, 2000.0)
    assert b.allowance == pytest.approx(501 / 2000)
    # the allowance goes to the top rank only (it is below 1)
    assert b.p_first == pytest.approx(b.allowance * b.p_top)
    assert b.delay_lower_bound == pytest.approx(2 - b.p_first)
    # the oracle that knows the tail needs about 1.4 studies: 1.2x that is out of reach
    assert b.delay_lower_bound > 1.2 * 1.45


def test_allowance_above_one_spills_to_the_next_ranks() -> None:
    b = first_alarm_bound(2.0, 50, 20.0)  # allowance 51/20 = 2.55 ranks
    expected = (
        rank_probability(50, 50, 2.0)
        + rank_probability(49, 50, 2.0)
        + 0.55 * rank_probability(48, 50, 2.0)
    )
    assert b.p_first == pytest.approx(expected)


def test_a_longer_reference_weakens_the_bound() -> None:
    frozen = first_alarm_bound(NOISE_JUMP_SD, 500, 2000.0)
    learning = first_alarm_bound(NOISE_JUMP_SD, 1000, 2000.0)
    assert learning.delay_lower_bound < frozen.delay_lower_bound


def test_refuses_a_downward_or_null_shift() -> None:
    with pytest.raises(ValueError, match="upward"):
        first_alarm_bound(0.0, 500, 2000.0)


def test_reference_outcomes_match_the_products_stopping_rule() -> None:
    """The binary reference ends where the product's own Stream ends it (at least 500 studies
    and 50 events): probabilities from reference_outcomes against the real Stream's rule run
    on simulated AI false-positive streams."""
    from phase4.monitor.drift.streams import MonitorConfig

    spec = StreamSpec(field="fp", kind="binary")
    config = MonitorConfig(streams=(spec,), reference_events_min=50)
    outcomes = reference_outcomes(0.1, config.reference_size, config.reference_events_min)
    assert sum(o.probability for o in outcomes) == pytest.approx(1.0)
    rng = np.random.default_rng(11)
    ended_at = []
    for _ in range(1500):
        stream = Stream(spec=spec, reference_size=config.reference_size)
        events = rng.random(3000) < 0.1
        for n, event in enumerate(events, start=1):
            stream.reference_values.append(bool(event))
            if stream._reference_complete(config):
                ended_at.append(n)
                break
    ended = np.array(ended_at)
    p_at_min = sum(o.probability for o in outcomes if o.studies == config.reference_size)
    se = np.sqrt(p_at_min * (1 - p_at_min) / ended.size)
    assert abs((ended == config.reference_size).mean() - p_at_min) < 4 * se
    mean = sum(o.probability * o.studies for o in outcomes)
    assert abs(ended.mean() - mean) < 4 * ended.std() / np.sqrt(ended.size)


def test_reference_outcomes_end_at_the_products_cap_on_a_rare_event() -> None:
    """At p0 = 2% a 50-study reference rarely holds 50 events before the product's cap of
    20 x 50 studies: most references end there with fewer, as the real Stream ends them."""
    from phase4.monitor.drift.streams import MonitorConfig

    spec = StreamSpec(field="rare", kind="binary")
    config = MonitorConfig(streams=(spec,), reference_size=50, reference_events_min=50)
    outcomes = reference_outcomes(0.02, 50, config.reference_events_min)
    assert sum(o.probability for o in outcomes) == pytest.approx(1.0)
    assert max(o.studies for o in outcomes) == 1000
    p_cap = sum(o.probability for o in outcomes if o.studies == 1000)
    events_at_cap = sum(o.probability * o.events for o in outcomes if o.studies == 1000) / p_cap
    rng = np.random.default_rng(12)
    ended = []
    for _ in range(600):
        stream = Stream(spec=spec, reference_size=50)
        for n, event in enumerate(rng.random(2000) < 0.02, start=1):
            stream.reference_values.append(bool(event))
            if stream._reference_complete(config):
                ended.append((n, stream.reference_events))
                break
    at_cap = [e for n, e in ended if n == 1000]
    assert len(ended) == 600
    se = np.sqrt(p_cap * (1 - p_cap) / 600)
    assert abs(len(at_cap) / 600 - p_cap) < 4 * max(se, 1e-3)
    assert abs(np.mean(at_cap) - events_at_cap) < 4 * np.std(at_cap) / np.sqrt(len(at_cap))
