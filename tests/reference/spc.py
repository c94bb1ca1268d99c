"""Published average run lengths (ARL) of control charts on standardised normal data.

* Two-sided tabular CUSUM, reference value k = 0.5, decision interval h = 4 and 5, zero start:
  Lucas & Crosier 1982, "Fast initial response for CUSUM quality-control schemes: give your
  CUSUM a head start", Technometrics 24:199–205 (two one-sided charts combined as
  1/ARL = 1/ARL⁺ + 1/ARL⁻; the same values come out of the R package ``spc``).
* EWMA, λ = 0.10, limits L = 2.814: ARL 500 in control and 10.3 at a 1σ shift, Lucas &
  Saccucci 1990, "Exponentially weighted moving average control schemes: properties and
  enhancements", Technometrics 32:1–12, Table 3.
* Shewhart individuals chart with Western Electric supplementary runs rules, exact by the
  Markov-chain method: Champ & Woodall 1987, "Exact results for Shewhart control charts with
  supplementary runs rules", Technometrics 29:393–399. Rules: 1 one point beyond 3σ; 2 two
  of three beyond 2σ on one side; 3 four of five beyond 1σ on one side; 4 eight in a row on
  one side. Each of rules 2, 3, 4 is added to rule 1 on its own; the last row has all four.
"""

from __future__ import annotations

CUSUM_K = 0.5
CUSUM_SHIFTS_SIGMA: tuple[float, ...] = (0, 0.25, 0.5, 0.75, 1, 1.5, 2, 2.5, 3, 4)
CUSUM_TWO_SIDED_ARL: dict[int, tuple[float, ...]] = {
    4: (168, 74.2, 26.6, 13.3, 8.38, 4.75, 3.34, 2.62, 2.19, 1.71),
    5: (465, 139, 38.0, 17.0, 10.4, 5.75, 4.01, 3.11, 2.57, 2.01),
}

EWMA_LAMBDA = 0.10
EWMA_L = 2.814
EWMA_ARL_IN_CONTROL = 500.0
EWMA_ARL_AT_ONE_SIGMA = 10.3

# rules → in-control ARL (ARL0)
WESTERN_ELECTRIC_ARL0: dict[tuple[int, ...], float] = {
    (1,): 370.4,
    (1, 2): 225.4,
    (1, 3): 166.1,
    (1, 4): 152.7,
    (1, 2, 3, 4): 91.75,
}
# rule 1 alone at a 1σ shift of the mean
SHEWHART_ARL_AT_ONE_SIGMA = 43.9
