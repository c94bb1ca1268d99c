"""A numeric reference's quantiles (what the charts draw as its median and bands) are the inverse
of the normal scores the detectors are fed: z(quantile(p)) = Φ⁻¹(p), and they sit near the
sample's own percentiles, for symmetric, skewed, heavy-tailed, mixed and discrete features."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import ndtri

from phase4.monitor.drift.reference import NumericReference

PROBS = (0.025, 0.25, 0.5, 0.75, 0.975)


def _samples() -> dict[str, np.ndarray]:
    g = np.random.default_rng(3)
    return {
        "normal": g.normal(2.2, 0.25, 500),
        "lognormal": g.lognormal(5.8, 0.3, 500),
        "left-skewed": -g.lognormal(0, 0.8, 500),
        "t3": g.standard_t(3, 500),
    }


@pytest.mark.parametrize("name", list(_samples()))
def test_continuous_quantiles_invert_the_normal_scores(name: str) -> None:
    values = _samples()[name]
    ref = NumericReference.fit(values)
    assert not ref.discrete and not ref.atoms
    qs = [ref.quantile(p) for p in PROBS]
    assert qs == sorted(qs)
    for p, q in zip(PROBS, qs, strict=True):
        assert ref.z(q) == pytest.approx(float(ndtri(p)), abs=1e-6)
    spread = float(np.subtract(*np.percentile(values, [97.5, 2.5])))
    for q, e in zip(qs, np.percentile(values, [p * 100 for p in PROBS]), strict=True):
        assert abs(q - e) < 0.15 * spread, (name, q, e)
    # the same from the saved state
    restored = NumericReference.from_dict(json.loads(json.dumps(ref.to_dict())))
    assert restored.quantile(0.5) == pytest.approx(ref.quantile(0.5))


def test_mixed_and_discrete_quantiles() -> None:
    g = np.random.default_rng(4)
    tmtv = np.concatenate([np.zeros(300), g.lognormal(3, 1, 200)])
    ref = NumericReference.fit(tmtv)
    assert ref.atoms == [0.0]
    assert ref.quantile(0.25) == 0.0 and ref.quantile(0.5) == 0.0
    assert ref.quantile(0.75) == pytest.approx(float(np.percentile(tmtv, 75)), rel=0.15)
    assert ref.quantile(0.975) > ref.quantile(0.75) > 0
    counts = g.poisson(3, 500).astype(float)
    ref = NumericReference.fit(counts)
    assert ref.discrete
    assert [ref.quantile(p) for p in PROBS] == list(
        np.percentile(counts, [p * 100 for p in PROBS], method="inverted_cdf")
    )
