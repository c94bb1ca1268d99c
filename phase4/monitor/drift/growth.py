"""A binary stream's reference that grows in audited steps, never sliding and never forgetting.

A rare event (an artifact flag at 2%, an AI error at 1%) gives a 500-study reference about ten
events: its rate is known to ±30%. Waiting for 50 events before monitoring starts (at 2%, about
2,500 studies) leaves the stream blind for months, and a change in that time is absorbed into
the reference it is judged against. Instead the stream starts monitoring at its configured size,
with a chart designed for the reference's uncertainty (the expected false-alarm rate over the
rate's posterior, ``arl.calibrate_bernoulli_cusum_uncertain``), and its reference then grows
toward an information target (``reference_events_target`` events) in steps:

- only from observations older than a **guard lag** (``guard``: the larger of the configured
  reference size and the chart's expected delay for the change it is designed to detect,
  ``ARL(p1)``: a doubling of the rate, for which the uncertainty-designed chart is slowest),
  so that a change of the designed size or larger has usually been alarmed on before its
  observations could join;
- only while the chart's sum is at zero: a CUSUM dates a change at the start of the excursion
  that alarms (E. S. Page 1954, "Continuous inspection schemes", Biometrika 41:100–115), and
  at a step no excursion is under way, so every observation that joins precedes any change the
  chart will estimate later: **never past a change estimate**;
- **never while the stream has an open alert**: an alarm drops the observations waiting to join
  and holds growth until its alert is resolved (the service checks; a backtest resolves none,
  so there an alarm ends growth); observations that arrive while held never join;
- **never sliding, never forgetting**: a step adds observations to the counts (n, events) and
  removes none.

Waiting observations are kept as blocks of ``block`` observations (first and last row and time,
observations and events), so the state stays small whatever the guard. A step takes every block
that has cleared the guard once they hold at least ``max(STEP_EVENTS_MIN, events)`` events (the
reference's events double), or as many observations as the reference (its size doubles): a
handful of steps (from 10 events to 200, five), each of which redesigns the chart (one
calibration) and is reported for the audit trail.

This module keeps the bookkeeping; ``streams.Stream`` redesigns the chart.

Growth is an option (``reference_events_target`` > 0), off by default. Kept to these rules it
over-spends the false-alarm budget in control (``bench/growth_budget.py``: 1.62× over two years
when no alert is resolved, 1.37× when false alarms are resolved within a week, against 0.97×
without growth). It corrects a reference only while the stream does not alarm, so the references
that underestimate the rate, which alarm, stop growing and those that overestimate it grow out of
their caution, which the uncertainty-designed chart counted on (docs/STATISTICS.md, "Rare
events").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

# a step waits for at least this many events among the blocks past the guard
STEP_EVENTS_MIN = 5
# blocks are at least this many observations (at most about eight blocks span the guard)
BLOCK_MIN = 50


def guard_lag(reference_size: int, delay_at_p1: float) -> int:
    """Observations a value waits before it may join the reference: the larger of the
    configured reference size and the chart's expected delay at its designed rate p1."""
    delay = delay_at_p1 if math.isfinite(delay_at_p1) else 0.0
    return max(int(reference_size), math.ceil(delay))


@dataclass(slots=True)
class Block:
    """Consecutive observations waiting to join: rows, times, counts, and the stream's
    observation count when the block closed (``end``; 0 while open)."""

    first_row: int
    first_at: str
    last_row: int
    last_at: str
    n: int = 0
    events: int = 0
    end: int = 0

    def to_list(self) -> list[Any]:
        return [
            self.first_row,
            self.first_at,
            self.last_row,
            self.last_at,
            self.n,
            self.events,
            self.end,
        ]

    @classmethod
    def from_list(cls, v: list[Any]) -> Block:
        return cls(int(v[0]), str(v[1]), int(v[2]), str(v[3]), int(v[4]), int(v[5]), int(v[6]))


@dataclass(frozen=True, slots=True)
class Step:
    """The observations one step adds: how many, their events, and their first and last row
    and time."""

    n: int
    events: int
    first_row: int
    first_at: str
    last_row: int
    last_at: str


@dataclass(slots=True)
class ReferenceGrowth:
    """The growth of one binary stream's reference (see the module).

    ``target``: the events the reference grows toward; ``guard``: observations a value waits;
    ``block``: observations per waiting block; ``hold``: the time of the alarm that holds growth
    (None: not held); ``steps``: steps taken so far; ``done``: the target was reached (or growth
    ended for the reason in ``ended``)."""

    target: int
    guard: int
    block: int
    blocks: list[Block] = field(default_factory=list)
    hold: str | None = None
    steps: int = 0
    done: bool = False
    ended: str | None = None

    @classmethod
    def start(cls, target: int, guard: int) -> ReferenceGrowth:
        return cls(target=target, guard=guard, block=max(BLOCK_MIN, guard // 8))

    def add(self, event: bool, row: int, at: str, observations: int) -> None:
        """One observation of the stream while monitoring (``observations``: the stream's count,
        this one included). Kept only while growth runs and is not held."""
        if self.done or self.hold is not None:
            return
        blocks = self.blocks
        if not blocks or blocks[-1].end:
            blocks.append(Block(row, at, row, at))
        b = blocks[-1]
        b.n += 1
        b.events += event
        b.last_row, b.last_at = row, at
        if b.n >= self.block:
            b.end = observations
            self._merge_past(observations)

    def _merge_past(self, observations: int) -> None:
        """The blocks that have cleared the guard, merged into one (a step takes them all
        together): however long a step waits for its events, at most about ten blocks are
        kept."""
        blocks = self.blocks
        k = 0
        while k < len(blocks) and blocks[k].end and observations - blocks[k].end >= self.guard:
            k += 1
        if k > 1:
            first, last = blocks[0], blocks[k - 1]
            merged = Block(
                first.first_row,
                first.first_at,
                last.last_row,
                last.last_at,
                sum(b.n for b in blocks[:k]),
                sum(b.events for b in blocks[:k]),
                last.end,
            )
            self.blocks = [merged, *blocks[k:]]

    def on_alarm(self, at: str) -> None:
        """An alarm: drop what waits (it may hold changed data) and hold until it is resolved."""
        if self.done:
            return
        self.blocks = []
        if self.hold is None:  # the first alarm since growth last ran
            self.hold = at

    def release(self) -> None:
        """The alert that held growth is resolved: observations from now on may join again."""
        self.hold = None

    def ready(self, observations: int, reference_n: int, reference_events: int) -> Step | None:
        """The step to take now, if the blocks past the guard justify one (the caller checks
        that the chart's sum is at zero and takes the step with :meth:`took`)."""
        if self.done or self.hold is not None:
            return None
        blocks = self.blocks
        if not blocks or not blocks[0].end or observations - blocks[0].end < self.guard:
            return None  # the oldest block has not cleared the guard (the usual case: cheap)
        past = [b for b in blocks if b.end and observations - b.end >= self.guard]
        if not past:
            return None
        n = sum(b.n for b in past)
        events = sum(b.events for b in past)
        wanted = max(STEP_EVENTS_MIN, reference_events)
        if events < wanted and n < reference_n and reference_events + events < self.target:
            return None
        return Step(
            n, events, past[0].first_row, past[0].first_at, past[-1].last_row, past[-1].last_at
        )

    def took(self, step: Step, reference_events: int, guard: int) -> None:
        """``step`` joined the reference, which now holds ``reference_events`` events; ``guard``
        is the redesigned chart's guard lag."""
        taken = 0
        while taken < step.n:
            taken += self.blocks.pop(0).n
        self.steps += 1
        self.guard = guard
        self.block = max(BLOCK_MIN, guard // 8)
        if reference_events >= self.target:
            self.done = True
            self.blocks = []

    def end(self, reason: str) -> None:
        self.done = True
        self.ended = reason
        self.blocks = []

    def describe(self) -> str:
        """Growth in words, for people."""
        if self.ended:
            return f"growth ended after {self.steps} step(s): {self.ended}"
        if self.done:
            steps = f"{self.steps} audited step{'s' if self.steps != 1 else ''}"
            return f"grew in {steps} to its target of {self.target} events"
        held = (
            f"; held since the alarm of {self.hold[:10]} until its alert is resolved"
            if self.hold
            else ""
        )
        waiting = sum(b.n for b in self.blocks)
        return (
            f"grows toward {self.target} events in audited steps ({self.steps} so far) from "
            f"values at least {self.guard:,} observations old; {waiting:,} waiting{held}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "guard": self.guard,
            "block": self.block,
            "blocks": [b.to_list() for b in self.blocks],
            "hold": self.hold,
            "steps": self.steps,
            "done": self.done,
            "ended": self.ended,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ReferenceGrowth:
        return cls(
            target=int(d["target"]),
            guard=int(d["guard"]),
            block=int(d["block"]),
            blocks=[Block.from_list(b) for b in d.get("blocks", [])],
            hold=d.get("hold"),
            steps=int(d.get("steps", 0)),
            done=bool(d.get("done", False)),
            ended=d.get("ended"),
        )
