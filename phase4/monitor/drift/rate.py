"""The budget follows the observed arrival rate of studies.

The false-alarm budget (``phase4.monitor.drift.budget``) turns "at most F false alarms per
deployment per year" into each stream's ARL0 through a rate: ARL0_stream = S · 365 · r / F. With
the configured rate r and studies arriving k times faster, the deployment raises k times its
budget, each alarm correctly calibrated for a rate that is not the real one. So at each pass
the rate is measured from the records' acquisition times and compared with the rate in use:

* observed rate: records per day over a trailing window of ``WINDOW_DAYS`` (30) days ending at
  the last record analysed, or since the first record when that is shorter; not measured
  before ``MIN_DAYS`` (7) days of records exist (a few days say little about a weekly rhythm);
* recalibrate when the observed rate and the rate in use differ by more than ``FACTOR`` (2×)
  either way, and the count says so beyond chance: the exact (Garwood) 95% interval of the
  Poisson rate lies wholly beyond the 2× band (three studies in 30 days do not prove a rate
  half the one in use); the rate in use then becomes the observed one, so the next
  recalibration needs another 2× change from it (hysteresis: no recalibration on every pass
  for a rate wandering around the threshold);
* each stream's new ARL0 is its old one scaled by the ratio of the rates (ARL0 is proportional
  to r, and a stream's coverage, its observations per record, is unchanged).

The ARL0 as the in-control average run length and its relation to the false-alarm rate per
unit time follow Montgomery, *Introduction to Statistical Quality Control* (7th ed., §9.1):
false alarms per unit time = observations per unit time / ARL0.
"""

from __future__ import annotations

WINDOW_DAYS = 30.0
MIN_DAYS = 7.0
FACTOR = 2.0


def observed_rate(records: int, span_days: float, min_days: float = MIN_DAYS) -> float | None:
    """Records per day: ``records`` acquired over ``span_days`` (the trailing window, or the time
    since the first record when shorter). None while fewer than ``min_days`` are covered.

    >>> observed_rate(6000, 30.0)
    200.0
    >>> observed_rate(1000, 5.0) is None
    True
    """
    if span_days < min_days or span_days <= 0:
        return None
    return records / span_days


def needs_recalibration(
    observed: float,
    in_use: float,
    factor: float = FACTOR,
    *,
    records: int | None = None,
    span_days: float | None = None,
) -> bool:
    """Whether ``observed`` differs from the rate ``in_use`` by more than ``factor``, either way;
    given the ``records`` over ``span_days`` it was measured from, only when the exact 95%
    Poisson interval of the rate (Garwood 1936) lies wholly beyond that factor.

    >>> needs_recalibration(200.0, 20.0)
    True
    >>> needs_recalibration(39.0, 20.0), needs_recalibration(9.0, 20.0)
    (False, True)
    >>> needs_recalibration(150.0, 200.0)  # after recalibrating to 200: hysteresis
    False
    >>> needs_recalibration(0.1, 0.2, records=3, span_days=30.0)  # 3 studies prove nothing
    False
    >>> needs_recalibration(200.0, 20.0, records=6000, span_days=30.0)
    True
    """
    if observed <= 0 or in_use <= 0:
        return False
    ratio = observed / in_use
    if not (ratio > factor or ratio < 1 / factor):
        return False
    if records is None or span_days is None or span_days <= 0:
        return True
    from scipy.stats import chi2

    low = chi2.ppf(0.025, 2 * records) / 2 / span_days if records > 0 else 0.0
    high = chi2.ppf(0.975, 2 * records + 2) / 2 / span_days
    return bool(low > in_use * factor or high < in_use / factor)


def rescaled_arl0(arl0: float, old_rate: float, new_rate: float) -> float:
    """A stream's ARL0 at ``new_rate`` studies a day, from its ARL0 at ``old_rate``
    (ARL0_stream = S · 365 · r / F is proportional to r).

    >>> rescaled_arl0(292.0, 20.0, 200.0)
    2920.0
    """
    if old_rate <= 0 or new_rate <= 0:
        raise ValueError("rates must be positive")
    return arl0 * new_rate / old_rate
