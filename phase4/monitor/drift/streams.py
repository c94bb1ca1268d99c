"""Streams: one monitored quantity of one deployment, and the deployment-wide detection engine.

A stream reads one field of each record (``features.liver_suvmean``, ``outputs.lesion_count``,
``error``...), optionally only within a subgroup (``where={"features.scanner_model": "X"}``).
Its first ``reference_size`` observations are its reference; then its detectors, calibrated to
its share of the deployment's false-alarm budget, watch every later observation.

Kinds and detectors:
- numeric: values → normal scores (``reference.NumericReference``) → CUSUM, EWMA, spread
  CUSUM, windowed KS;
- binary: Bernoulli CUSUM for a rise from the reference rate p0 to p1;
- categorical: new-category notice, and a windowed G-test against the reference counts.

What a stream is doing is its ``state`` (:class:`StreamState`): collecting its reference,
monitoring, collecting a larger one, abandoned, collecting again, or quarantined. A stream whose
detectors cannot be calibrated to its budget from the reference it has (a small reference whose
own estimation error alone would overspend the false-alarm budget) says why in its budget
(``not_calibratable``) and keeps collecting a reference twice as large; after
``MAX_REFERENCE_GROWTH`` times the configured size it gives up (``ABANDONED``), says so, and
stops collecting. One stream's problem never stops the deployment's other streams.

A value that cannot be one of the stream's observations (beyond float range, NaN, ±inf, a list
where a number belongs) is missing for that stream, and counted (``unusable``). A stream whose
update raises anyway (a state the store holds but no update could have written) is
**quarantined**: its state says why and since when, it receives no further observations until
its reference is reset or uploaded, and the deployment's other streams go on
(``DeploymentMonitor.observe`` returns one ``quarantine`` notice for it, never the exception).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from phase4.monitor.drift.arl import CalibrationError
from phase4.monitor.drift.budget import BudgetShare, share
from phase4.monitor.drift.cbpe import PerformanceEstimator
from phase4.monitor.drift.detectors import (
    Alarm,
    BernoulliCusum,
    Cusum,
    Detector,
    DetectorSummary,
    Ewma,
    NewCategory,
    SpreadCusum,
    Trace,
    WindowedChiSquare,
    WindowedKS,
    detector_from_dict,
    trace,
)
from phase4.monitor.drift.growth import ReferenceGrowth, Step, guard_lag
from phase4.monitor.drift.reference import (
    CategoricalReference,
    NumericReference,
    RateReference,
    ReferenceFitError,
    z_to_uniform,
)
from phase4.monitor.drift.state import STATE_VERSION, StreamState, upgrade_state

StreamKind = Literal["numeric", "binary", "categorical"]
STREAM_KINDS = ("numeric", "binary", "categorical")
# Each detector's part of its stream's false-alarm rate (phase4.monitor.drift.budget). On a numeric
# stream the CUSUM, the near-optimal detector of the small mean shifts that matter (0.5-0.75σ),
# holds 45%; the EWMA (λ = 0.2), faster for shifts of 1.5σ and more, 20%; the spread CUSUM, for
# a change of spread with the mean unchanged (×1.5 aimed at), 30%; the windowed KS test, for
# changes of shape that leave mean and spread alone, 5%. Chosen by measurement
# (bench/detector_weights.py; docs/STATISTICS.md, "Numeric streams"): a ×1.5 spread is then
# detected within 1.5x the oracle's delay, at a cost of at most 8% on the mean shifts.
DETECTOR_WEIGHTS: dict[StreamKind, dict[str, float]] = {
    "numeric": {"cusum": 0.45, "ewma": 0.2, "spread": 0.3, "ks": 0.05},
    "binary": {"bernoulli_cusum": 1.0},
    "categorical": {"chi_square": 1.0},
}
# A stream that cannot be calibrated doubles its reference up to this multiple of its configured
# size (16: the reference's standard error falls fourfold), then gives up.
MAX_REFERENCE_GROWTH = 16
# A binary reference configured to wait for reference_events_min events (none by default: it
# starts at its size and grows, phase4.monitor.drift.growth) waits no longer than this many
# times reference_size observations.
BINARY_REFERENCE_CAP = 20
# the states tested on every record, as module constants (an enum member looked up through its
# class costs a tenth of a microsecond in Python 3.11)
_MONITORING = StreamState.MONITORING
_QUARANTINED = StreamState.QUARANTINED
_ABANDONED = StreamState.ABANDONED


class ConfigError(ValueError):
    """A monitoring configuration that cannot work; the message names the part."""


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """What to watch. ``field`` is a dotted path into the record."""

    field: str
    kind: StreamKind
    where: tuple[tuple[str, Any], ...] = ()
    # "record": read from each inference record; "feedback": from each labelled outcome
    source: Literal["record", "feedback"] = "record"
    reference_size: int | None = None
    p1: float | None = None
    rate_ratio: float = 2.0

    @property
    def name(self) -> str:
        if not self.where:
            return self.field
        cond = ",".join(f"{k.split('.')[-1]}={v}" for k, v in self.where)
        return f"{self.field}[{cond}]"

    def to_dict(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "kind": self.kind,
            "source": self.source,
            "where": [list(w) for w in self.where],
            "reference_size": self.reference_size,
            "p1": self.p1,
            "rate_ratio": self.rate_ratio,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StreamSpec:
        kind = d.get("kind")
        if kind not in STREAM_KINDS:
            raise ConfigError(
                f"stream {d.get('field')!r}: kind must be numeric, binary or categorical"
            )
        return cls(
            field=str(d["field"]),
            kind=kind,
            source=d.get("source", "record"),
            where=tuple((str(k), v) for k, v in d.get("where", [])),
            reference_size=d.get("reference_size"),
            p1=d.get("p1"),
            rate_ratio=float(d.get("rate_ratio", 2.0)),
        )


@dataclass(frozen=True)
class MonitorConfig:
    """A deployment's monitoring configuration (kept in ``deployment.monitoring``)."""

    streams: tuple[StreamSpec, ...]
    studies_per_day: float = 20.0
    false_alarms_per_year: float = 1.0
    reference_size: int = 500
    # k = δ/2 is optimal for a shift of δ σ (Moustakides 1986). The changes that matter in
    # nuclear medicine are about half a σ of a feature's between-patient spread (an 8% dose-
    # calibrator error on liver SUVmean, +25% on lesion SUVmax), so k = 0.25; larger shifts are
    # still caught within a few studies, and the EWMA covers the middle ground.
    cusum_k: float = 0.25
    # The EWMA covers the middle and large shifts the k = 0.25 CUSUM is slow on: λ = 0.2 is
    # within 1.2-1.35x of the optimum from 1.5σ to 2.5σ, against 1.3-1.6x for λ = 0.1, at no
    # cost on small shifts (docs/STATISTICS.md, "Numeric streams").
    ewma_lambda: float = 0.2
    ks_window: int = 50
    chi_square_window: int = 100
    # A binary stream starts monitoring at reference_size observations, with its chart designed
    # for the uncertainty of a rate estimated from few events (the expected false-alarm rate
    # over the rate's posterior). A deployment may let its reference grow in audited steps
    # toward reference_events_target events (phase4.monitor.drift.growth); off by default (0):
    # growth that stops at alarms, as it must not absorb a change, corrects the references that
    # err on the cautious side and freezes those that err the other way, and over two years in
    # control spent 1.37-1.62x the budget (docs/STATISTICS.md, "Rare events"). A deployment may
    # also make the reference wait for reference_events_min events before monitoring starts (at
    # most 20 x reference_size observations): blind time.
    reference_events_min: int = 0
    reference_events_target: int = 0
    # Performance estimated without labels (phase4.monitor.drift.cbpe), e.g. {"score":
    # "outputs.malignancy_score", "prediction": "outputs.positive", "reference_size": 300,
    # "window": 200}; None: off.
    cbpe: dict[str, Any] | None = None
    # The disparity monitor (phase4.monitor.drift.subgroups) takes one share of the budget.
    disparity: bool = False

    def __post_init__(self) -> None:
        if not self.streams:
            raise ConfigError("monitoring needs at least one stream")
        names = [s.name for s in self.streams]
        if len(set(names)) != len(names):
            raise ConfigError(
                f"stream names repeat: {sorted(n for n in names if names.count(n) > 1)}"
            )
        if self.reference_size < 30:
            raise ConfigError(f"reference_size {self.reference_size} is too small (at least 30)")

    @property
    def budget_streams(self) -> int:
        """How many shares the false-alarm budget is divided into: one per stream, and one per
        metric estimated without labels (expected sensitivity and specificity) when on, and one
        for the disparity monitor when on."""
        return len(self.streams) + (2 if self.cbpe else 0) + (1 if self.disparity else 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "streams": [s.to_dict() for s in self.streams],
            "studies_per_day": self.studies_per_day,
            "false_alarms_per_year": self.false_alarms_per_year,
            "reference_size": self.reference_size,
            "cusum_k": self.cusum_k,
            "ewma_lambda": self.ewma_lambda,
            "ks_window": self.ks_window,
            "chi_square_window": self.chi_square_window,
            "reference_events_min": self.reference_events_min,
            "reference_events_target": self.reference_events_target,
            "cbpe": self.cbpe,
        } | ({"disparity": True} if self.disparity else {})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MonitorConfig:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d and k != "streams"}
        return cls(streams=tuple(StreamSpec.from_dict(s) for s in d.get("streams", [])), **known)


def read_field(record: Mapping[str, Any], path: str) -> Any:
    """``record[path]`` if the key exists as is (a CSV column may contain dots), else the
    dotted path into nested mappings; None when absent."""
    if path in record:
        return record[path]
    node: Any = record
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def finite_float(value: Any) -> float | None:
    """``value`` as a finite float, or None: NaN, ±inf and integers beyond float range (a JSON
    integer may have any number of digits; ``float(10**400)`` raises OverflowError) are not
    observations of a physical quantity."""
    if type(value) is float:
        return value if math.isfinite(value) else None
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            return None
    if isinstance(value, float):  # a float subclass
        return float(value) if math.isfinite(value) else None
    return None


def _usable(kind: StreamKind, value: Any) -> Any:
    """The value as the stream's kind, or None when missing or unusable."""
    if value is None:
        return None
    if kind == "numeric":
        return finite_float(value)
    if kind == "binary":
        if isinstance(value, bool):
            return value
        if isinstance(value, int):
            return value != 0
        if isinstance(value, float):
            return value != 0 if not math.isnan(value) else None
        if isinstance(value, str):
            return bool(value.strip())  # e.g. an error message: present = event
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return str(value) if math.isfinite(value) else None
    if isinstance(value, int):
        try:
            return str(value)
        except ValueError:  # beyond Python's integer-to-text limit
            return None
    return None  # a list or an object is not a category


def observation_of(kind: StreamKind, value: Any) -> Any:
    """``value`` as a stream of ``kind`` observes it (a float, a bool or a category), or None
    when it is missing or unusable: what the stream's detectors are fed, for the drift reports'
    window tests to compare the same values."""
    return _usable(kind, value)


@dataclass(slots=True)
class StreamAlarm:
    """An alarm on a named stream, with timestamps for the alarm and the estimated change, the
    budget arithmetic behind its threshold and the detector's description (its parameters and
    rule, as ``Detector.describe`` gives them right after the alarm)."""

    stream: str
    kind: StreamKind
    alarm: Alarm
    at: str
    change_at: str | None
    budget: dict[str, Any] | None
    description: DetectorSummary | None = None

    def to_dict(self) -> dict[str, Any]:
        a = self.alarm
        described = self.description
        return {
            "stream": self.stream,
            "stream_kind": self.kind,
            "detector": a.detector,
            "kind": a.kind,
            "index": a.index,
            "timestamp": self.at,
            "change_index_estimate": a.change_index_estimate,
            "change_timestamp": self.change_at,
            "statistic": a.statistic,
            "threshold": a.threshold,
            "direction": a.direction,
            "detail": a.detail,
            "budget": self.budget,
            **(
                {
                    "detector_rule": described.text,
                    "detector_unit": described.unit,
                    "detector_parameters": [p.to_dict() for p in described.parameters],
                }
                if described is not None
                else {}
            ),
        }


@dataclass(slots=True)
class Stream:
    """One stream: collecting its reference, then detecting."""

    spec: StreamSpec
    reference_size: int
    seen_records: int = 0
    reference_values: list[Any] = field(default_factory=list)
    reference: dict[str, Any] | None = None
    detectors: dict[str, Detector[Any]] = field(default_factory=dict)
    budget: dict[str, Any] | None = None
    times: dict[int, str] = field(default_factory=dict)
    observations: int = 0
    reference_events: int = 0
    # values present but unusable as an observation (beyond float range, NaN, a list...)
    unusable: int = 0
    # set when an update raised: {"reason": plain words, "at": the record's time}; no update
    # reaches the stream again until its reference is reset or uploaded
    quarantine: dict[str, Any] | None = None
    state: StreamState = StreamState.COLLECTING
    # the times of the reference's first and last observation ([first, last]; None before it is
    # complete) and, while collecting, of its first
    reference_span: list[str] | None = None
    reference_first_at: str | None = None
    # a binary reference growing in audited steps (phase4.monitor.drift.growth); None: no growth
    growth: ReferenceGrowth | None = None
    # the growth steps taken since the caller last took them (DeploymentMonitor.take_growth_steps);
    # not saved: the caller audits them before the state is saved
    grown: list[dict[str, Any]] = field(default_factory=list)
    # a binary baseline declared by a user (events, cases, source: the validation study), which
    # is then the stream's reference; None: the reference came from the stream's records
    declared: dict[str, Any] | None = None
    _numeric_ref: NumericReference | None = None

    @property
    def monitoring(self) -> bool:
        """The reference is complete and the detectors watch every observation."""
        return self.state is StreamState.MONITORING

    def observation(self, record: Mapping[str, Any]) -> Any:
        """What this stream observes in ``record``: its field's value as the stream's kind, or
        None when the record is outside the stream's subgroup, or the value missing or
        unusable."""
        spec = self.spec
        if spec.where and any(read_field(record, k) != v for k, v in spec.where):
            return None
        return _usable(spec.kind, read_field(record, spec.field))

    def observe(
        self,
        record: Mapping[str, Any],
        row: int,
        at: str,
        config: MonitorConfig,
        records_total: int,
    ) -> list[StreamAlarm]:
        spec = self.spec
        if spec.where and any(read_field(record, k) != v for k, v in spec.where):
            return []
        if self.state is _QUARANTINED:
            return []
        self.seen_records += 1
        path = spec.field
        raw = record[path] if path in record else read_field(record, path)
        value = _usable(spec.kind, raw)
        if value is None:
            if raw is not None:
                self.unusable += 1
            return []
        self.observations += 1
        if self.state is not _MONITORING:
            if self.state is _ABANDONED:
                return []
            if not self.reference_values:
                self.reference_first_at = at
            self.reference_values.append(value)
            if self._reference_complete(config):
                self._start_monitoring(config, records_total, at)
            return []
        ref = self._numeric_ref
        if ref is not None:
            found = self._update_numeric(ref, value, row, at)
        else:
            self.times[row] = at
            found = self._update(value, row)
            growth = self.growth
            if growth is not None and not growth.done:
                self._follow_growth(growth, found, value, row, at)
        if not found:
            if len(self.times) > 64:
                self._prune_times(row)
            return []
        alarms = [
            StreamAlarm(
                spec.name,
                spec.kind,
                a,
                at,
                None,
                self._evidence(a.detector),
                self.detectors[a.detector].describe(),
            )
            for a in found
        ]
        # dated before the kept times are pruned: a detector that has just alarmed has
        # restarted, so its start is no longer a candidate, but its alarm needs that time
        for sa in alarms:
            start = sa.alarm.change_index_estimate
            sa.change_at = at if start == row else self.times.get(start)
        if len(self.times) > 64:
            self._prune_times(row)
        return alarms

    def _evidence(self, detector: str) -> dict[str, Any] | None:
        """The budget arithmetic behind ``detector``'s threshold, for an alarm's evidence."""
        budget = self.budget
        if self.state is not StreamState.MONITORING or not budget:
            return None
        stream_share = BudgetShare.from_numbers(budget)
        weight = (budget.get("weights") or {}).get(detector)
        if weight is None or weight >= 1:
            return stream_share.to_dict()
        return stream_share.for_detector(detector, weight).to_dict()

    def _update_numeric(
        self, ref: NumericReference, value: float, row: int, at: str
    ) -> list[Alarm]:
        """The numeric stream's update, inlined (it runs on every record). A row's time is kept
        only when a detector may date a change to it: the start of a CUSUM side's excursion,
        an EWMA zero crossing, the first observation of a KS window."""
        detectors = self.detectors
        # a numeric stream's detectors (annotated, not cast: this runs on every record)
        cusum: Cusum = detectors["cusum"]  # type: ignore[assignment]
        ewma: Ewma = detectors["ewma"]  # type: ignore[assignment]
        ks: WindowedKS = detectors["ks"]  # type: ignore[assignment]
        # (a stream calibrated before the spread detector existed keeps the three it had)
        spread: SpreadCusum | None = detectors.get("spread")  # type: ignore[assignment]
        z = (
            ref.z(value, row, self.spec.name)
            if ref.discrete or ref.atoms or ref.grid
            else ref._z_continuous(value)
        )
        out = []
        a = cusum.update(z, row)
        if a:
            out.append(a)
        a = ewma.update(z, row)
        if a:
            out.append(a)
        started = False
        if spread is not None:
            a = spread.update(z, row)
            if a:
                out.append(a)
            started = spread.start_up == row or spread.start_down == row
        a = ks.update(z_to_uniform(z), row)
        if a:
            out.append(a)
        if (
            started
            or cusum.start_hi == row
            or cusum.start_lo == row
            or ewma.last_cross == row
            or ks.first == row
        ):
            self.times[row] = at
        return out

    def _follow_growth(
        self, growth: ReferenceGrowth, found: list[Alarm], event: bool, row: int, at: str
    ) -> None:
        """A binary reference's growth after one observation: an alarm holds it; otherwise the
        observation waits to join, and a step is taken when one is due and the chart's sum is at
        zero (no excursion under way, so nothing that joins follows a change the chart may
        estimate later)."""
        if found:
            growth.on_alarm(at)
            return
        growth.add(bool(event), row, at, self.observations)
        chart: BernoulliCusum = self.detectors["bernoulli_cusum"]  # type: ignore[assignment]
        reference = self.reference
        if chart.s != 0 or reference is None:
            return
        step = growth.ready(self.observations, reference["n"], reference["events"])
        if step is not None:
            self._grow(growth, step, chart, RateReference.from_dict(reference), row, at)

    def _grow(
        self,
        growth: ReferenceGrowth,
        step: Step,
        chart: BernoulliCusum,
        ref: RateReference,
        row: int,
        at: str,
    ) -> None:
        """Add ``step`` to the reference and redesign the chart on it (its sum is at zero)."""
        new = RateReference(ref.n + step.n, ref.events + step.events)
        arl0 = BudgetShare.from_numbers(self.budget or {}).arl0
        try:
            redesigned = _binary_chart(self.spec, new, arl0)
        except (CalibrationError, ValueError) as exc:
            growth.end(f"the chart could not be redesigned on {new.n:,} observations ({exc})")
            return
        redesigned.n = chart.n
        guard_before = growth.guard
        guard = guard_lag(self.reference_size, redesigned.arl(redesigned.p1))
        growth.took(step, new.events, guard)
        self.detectors["bernoulli_cusum"] = redesigned
        self.reference = new.to_dict()
        if self.reference_span:
            self.reference_span = [self.reference_span[0], step.last_at]
        self.grown.append(
            {
                "stream": self.spec.name,
                "source": self.spec.source,
                "step": growth.steps,
                "at": at,
                "row": row,
                "reference_before": {"n": ref.n, "events": ref.events, "rate": ref.rate},
                "reference_after": {"n": new.n, "events": new.events, "rate": new.rate},
                "added": {
                    "observations": step.n,
                    "events": step.events,
                    "first_row": step.first_row,
                    "first_at": step.first_at,
                    "last_row": step.last_row,
                    "last_at": step.last_at,
                },
                "guard": guard_before,
                "next_guard": guard,
                "target_events": growth.target,
                "p0_before": chart.p0,
                "p1_before": chart.p1,
                "threshold_before": chart.threshold,
                "p0": redesigned.p0,
                "p1": redesigned.p1,
                "threshold": redesigned.threshold,
                "done": growth.done,
            }
        )

    def _prune_times(self, row: int) -> None:
        """Keep only the times a detector may still date a change to."""
        keep = self._live_starts()
        self.times = {i: t for i, t in self.times.items() if i in keep or i == row}

    def _reference_complete(self, config: MonitorConfig) -> bool:
        """Called once per value added to the reference."""
        n = len(self.reference_values)
        if self.spec.kind == "binary":
            self.reference_events += bool(self.reference_values[-1])
        if n < self.reference_size:
            return False
        if self.spec.kind != "binary" or n >= BINARY_REFERENCE_CAP * self.reference_size:
            return True
        return self.reference_events >= config.reference_events_min

    def _live_starts(self) -> set[int]:
        return set().union(*(d.candidate_starts() for d in self.detectors.values()))

    def replay(self, detector: str, observations: Sequence[tuple[int, Any]]) -> Trace:
        """``detector``'s run from a restart over ``observations`` ((row, value) pairs, as
        :meth:`observation` gives values), fed as the stream feeds it (numeric values as normal
        scores, or their PIT for the KS test). The stream is not changed."""
        det = self.detectors[detector]
        ref = self._numeric_ref
        name = self.spec.name
        if ref is None:
            inputs: list[Any] = [value for _, value in observations]
        elif detector == WindowedKS.name:
            inputs = [z_to_uniform(ref.z(value, row, name)) for row, value in observations]
        else:
            inputs = [ref.z(value, row, name) for row, value in observations]
        return trace(det, inputs)

    def describe_state(self, reference_events_min: int) -> str:
        """What the stream is doing, in words (``reference_events_min``: the events a binary
        reference waits for)."""
        have = len(self.reference_values)
        budget = self.budget or {}
        collecting = f"{have} of {self.reference_size} values"
        if self.spec.kind == "binary" and have >= self.reference_size and reference_events_min:
            collecting += f"; waits for {reference_events_min} events"
        state = self.state
        if state is StreamState.MONITORING:
            return "monitoring"
        if state is StreamState.COLLECTING:
            return f"collecting the reference ({collecting})"
        if state is StreamState.COLLECTING_LARGER:
            return (
                f"collecting a larger reference ({collecting}): "
                f"{budget.get('not_calibratable', '')}"
            )
        if state is StreamState.RECOLLECTING:
            return (
                f"collecting a new reference ({collecting}): {budget.get('unusable_reference', '')}"
            )
        if state is StreamState.ABANDONED:
            return f"not monitored: {budget.get('not_calibratable', '')}"
        return f"stopped: {(self.quarantine or {}).get('reason', '')}"

    def describe_reference(self) -> str:
        """The reference in a line, for people (or how far its collection is)."""
        ref = self.reference
        if ref is None:
            return f"collecting: {len(self.reference_values)} of {self.reference_size} values"
        if self.spec.kind == "numeric":
            text = (self._numeric_ref or NumericReference.from_dict(ref)).describe()
        elif self.spec.kind == "binary":
            text = RateReference.from_dict(ref).describe()
        else:
            text = CategoricalReference.from_dict(ref).describe()
        declared, span = self.declared, self.reference_span
        if declared:
            text += (
                f"; declared from {declared['source']} ({declared['events']} events in "
                f"{declared['cases']} cases) on {str(declared['at'])[:10]}"
            )
        elif span and span[0][:4].isdigit():
            when = "labels given" if self.spec.source == "feedback" else "studies acquired"
            text += f"; {when} {span[0][:10]} to {span[1][:10]}"
        if self.growth is not None:
            text += f"; {self.growth.describe()}"
        return text

    def _update(self, value: Any, row: int) -> list[Alarm]:
        out = []
        for det in self.detectors.values():
            a = det.update(value, row)
            if a:
                out.append(a)
        return out

    def _start_monitoring(self, config: MonitorConfig, records_total: int, at: str) -> None:
        values = self.reference_values
        # Observations per inference record: 1 for a feature every record has, the labelled
        # fraction for a performance stream, the subgroup's share for a subgroup stream.
        coverage = self.observations / max(records_total, 1)
        budget = share(
            streams=config.budget_streams,
            false_alarms_per_year=config.false_alarms_per_year,
            observations_per_day=config.studies_per_day * coverage,
        )
        try:
            detectors = _build_detectors(self.spec, values, budget, config)
        except CalibrationError as exc:
            self._not_calibratable(exc, budget, config)
            return
        weights = DETECTOR_WEIGHTS[self.spec.kind]
        # kept with the state, so that evidence shows the split the thresholds were built with
        self.budget = {**budget.numbers(), **({"weights": weights} if len(weights) > 1 else {})}
        self.detectors = detectors
        self.reference = self._reference_dict(values)  # ReferenceFitError: see observe
        self.reference_values = []
        self.reference_span = [self.reference_first_at or at, at]
        self.reference_first_at = None
        self.state = StreamState.MONITORING
        if self.spec.kind == "binary" and config.reference_events_target > 0:
            events = int(self.reference["events"])
            if events < config.reference_events_target:
                chart: BernoulliCusum = detectors["bernoulli_cusum"]  # type: ignore[assignment]
                self.growth = ReferenceGrowth.start(
                    config.reference_events_target,
                    guard_lag(self.reference_size, chart.arl(chart.p1)),
                )

    def _not_calibratable(
        self, exc: CalibrationError, budget: BudgetShare, config: MonitorConfig
    ) -> None:
        """Record why the detectors could not be calibrated; keep the values collected so far
        and collect a reference twice as large, or give up past ``MAX_REFERENCE_GROWTH``."""
        configured = self.spec.reference_size or config.reference_size
        state: dict[str, Any] = {
            "not_calibratable": str(exc),
            "reference_collected": len(self.reference_values),
            "target_arl0": exc.arl0,
            "achievable_arl0": exc.achievable_arl0,
        }
        if 2 * self.reference_size <= MAX_REFERENCE_GROWTH * configured:
            self.reference_size *= 2
            state["next_reference_size"] = self.reference_size
            self.state = StreamState.COLLECTING_LARGER
        else:
            self.state = StreamState.ABANDONED
            state["not_calibratable"] += (
                f" Gave up after a reference of {len(self.reference_values)} values "
                f"({MAX_REFERENCE_GROWTH} times the configured size); this stream is not "
                "monitored until its reference is reset or its budget or configuration changed."
            )
            self.reference_values = []
            self.reference_first_at = None
        self.budget = state

    def _reference_dict(self, values: list[Any]) -> dict[str, Any]:
        if self.spec.kind == "numeric":
            ref = NumericReference.fit(values)
            self._numeric_ref = ref
            return ref.to_dict()
        if self.spec.kind == "binary":
            return RateReference.fit(values).to_dict()
        return CategoricalReference.fit(values).to_dict()

    def to_dict(self) -> dict[str, Any]:
        live = self._live_starts()
        return {
            "spec": self.spec.to_dict(),
            "reference_size": self.reference_size,
            "seen_records": self.seen_records,
            "reference_values": self.reference_values,
            "reference": self.reference,
            "budget": self.budget,
            "detectors": {k: v.to_dict() for k, v in self.detectors.items()},
            "times": {str(k): v for k, v in self.times.items() if k in live},
            "observations": self.observations,
            "unusable": self.unusable,
            "quarantine": self.quarantine,
            "state": self.state.value,
            "reference_span": self.reference_span,
            # saved only when set (a numeric stream's state is read on every chunk)
            **({"reference_first_at": self.reference_first_at} if self.reference_first_at else {}),
            **({"growth": self.growth.to_dict()} if self.growth is not None else {}),
            **({"declared": self.declared} if self.declared is not None else {}),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Stream:
        """From :meth:`to_dict` of the current state version (``DeploymentMonitor.from_dict``
        upgrades older saved states first)."""
        spec = StreamSpec.from_dict(d["spec"])
        stream = cls(
            spec=spec,
            reference_size=d["reference_size"],
            seen_records=d["seen_records"],
            reference_values=list(d["reference_values"]),
            reference=d["reference"],
            budget=d["budget"],
            detectors={k: detector_from_dict(k, v) for k, v in d["detectors"].items()},
            times={int(k): v for k, v in d["times"].items()},
            observations=d["observations"],
            unusable=int(d["unusable"]),
            quarantine=d["quarantine"],
            state=StreamState(d["state"]),
            reference_span=d["reference_span"],
            reference_first_at=d.get("reference_first_at"),
            growth=ReferenceGrowth.from_dict(d["growth"]) if d.get("growth") else None,
            declared=d.get("declared"),
        )
        if spec.kind == "numeric" and stream.reference is not None:
            stream._numeric_ref = NumericReference.from_dict(stream.reference)
        if spec.kind == "binary":
            # The events collected so far are in the reference values: counted again here, or
            # every reload (each pass's chunk) would start the count at zero and the reference
            # would wait for its 50 events to arrive within a single chunk.
            stream.reference_events = sum(1 for v in stream.reference_values if v)
        return stream


def failure_words(exc: BaseException) -> str:
    """What went wrong, in plain words and without the value that caused it."""
    if isinstance(exc, OverflowError):
        return "a value beyond float range arrived"
    if isinstance(exc, ArithmeticError):
        return "a value made its arithmetic fail"
    if isinstance(exc, KeyError | TypeError | ValueError | AttributeError | IndexError):
        return f"its saved state or a value could not be used ({type(exc).__name__})"
    return f"its update failed ({type(exc).__name__})"


def _quarantine_notice(
    name: str, kind: StreamKind, reason: str, exc: Exception, row: int, stamp: str
) -> StreamAlarm:
    notice = Alarm(
        "quarantine",
        row,
        0.0,
        0.0,
        row,
        kind="quarantine",
        detail={"reason": reason, "error": type(exc).__name__},
    )
    return StreamAlarm(name, kind, notice, stamp, stamp, None)


def designed_p1(p0: float, rate_ratio: float) -> float:
    """The rate a binary stream's chart is designed to detect when p1 is not configured:
    p1 = min(0.95, max(rate_ratio · p0, p0 + 0.01)) (at least a point above p0)."""
    return min(0.95, max(p0 * rate_ratio, p0 + 0.01))


def _reference_summary_values(kind: StreamKind, reference: Mapping[str, Any]) -> list[Any]:
    """Values with the summary ``_build_detectors`` reads from a reference (numeric: its size;
    binary: its size and events; categorical: its counts), rebuilt from the saved reference,
    whose values are not kept once monitoring starts."""
    if kind == "numeric":
        return [0.0] * int(reference["n"])
    if kind == "binary":
        n, events = int(reference["n"]), int(reference["events"])
        return [True] * events + [False] * (n - events)
    return [c for c, count in reference["counts"].items() for _ in range(int(count))]


def _binary_chart(spec: StreamSpec, ref: RateReference, arl0: float) -> BernoulliCusum:
    """The Bernoulli CUSUM of a binary stream whose reference is ``ref``, designed for the
    uncertainty of its rate, at ``arl0``."""
    p0 = ref.rate
    p1 = spec.p1 if spec.p1 is not None else designed_p1(p0, spec.rate_ratio)
    if not p0 < p1 < 1:
        raise CalibrationError(
            f"stream {spec.name}: p1 = {p1:.4f} must lie between the reference rate {p0:.4f} and 1",
            arl0=arl0,
        )
    return BernoulliCusum.calibrated(p0, p1, arl0, (ref.n, ref.events))


def _build_detectors(
    spec: StreamSpec, values: list[Any], budget: BudgetShare, config: MonitorConfig
) -> dict[str, Detector[Any]]:
    n = len(values)
    weights = DETECTOR_WEIGHTS[spec.kind]

    def arl0(detector: str) -> float:
        return budget.for_detector(detector, weights[detector]).arl0

    if spec.kind == "numeric":
        return {
            "cusum": Cusum.calibrated(arl0("cusum"), config.cusum_k, reference_size=n),
            "ewma": Ewma.calibrated(arl0("ewma"), config.ewma_lambda, reference_size=n),
            "spread": SpreadCusum.calibrated(arl0("spread"), reference_size=n),
            "ks": WindowedKS.calibrated(arl0("ks"), reference_size=n, window=config.ks_window),
        }
    if spec.kind == "binary":
        return {"bernoulli_cusum": _binary_chart(spec, RateReference.fit(values), budget.arl0)}
    ref_counts = CategoricalReference.fit(values).counts
    return {
        "new_category": NewCategory(seen=sorted(ref_counts), reference_categories=len(ref_counts)),
        "chi_square": WindowedChiSquare.calibrated(
            budget.arl0, ref_counts, window=config.chi_square_window
        ),
    }


@dataclass
class DeploymentMonitor:
    """All streams of one deployment. Feed records in acquisition order with ``observe``."""

    config: MonitorConfig
    streams: dict[str, Stream]
    records: int = 0
    feedback: int = 0
    # CBPE: labelled (score, truth, call) triples until the calibration is fitted, then its state
    cbpe_pairs: list[list[Any]] = field(default_factory=list)
    cbpe: PerformanceEstimator | None = None
    cbpe_window_at: str | None = None
    cbpe_quarantine: dict[str, Any] | None = None

    @classmethod
    def new(cls, config: MonitorConfig) -> DeploymentMonitor:
        streams = {
            s.name: Stream(spec=s, reference_size=s.reference_size or config.reference_size)
            for s in config.streams
        }
        return cls(config=config, streams=streams)

    def observe(
        self,
        record: Mapping[str, Any],
        at: datetime | str,
        row: int | None = None,
        source: Literal["record", "feedback"] = "record",
        streams: Iterable[Stream] | None = None,
    ) -> list[StreamAlarm]:
        """Feed one inference record (or, with ``source='feedback'``, one labelled outcome);
        returns the alarms and notices it raised (usually none). ``streams``: only these of the
        deployment's streams, in this order (a backtest feeds its numeric columns to the others
        at once, ``phase4.monitor.drift.batch``); None: all of them."""
        if source == "record":
            row = self.records if row is None else row
            self.records += 1
        else:
            row = self.feedback if row is None else row
            self.feedback += 1
        stamp = at.isoformat() if isinstance(at, datetime) else str(at)
        alarms: list[StreamAlarm] = []
        if self.config.cbpe and self.cbpe_quarantine is None:
            try:
                alarms = self._cbpe(record, row, stamp, source)
            except Exception as exc:  # one estimator's failure stops only it
                alarms = [self._quarantine_cbpe(exc, row, stamp)]
        config, total = self.config, max(self.records, 1)
        for stream in self.streams.values() if streams is None else streams:
            if stream.spec.source != source:
                continue
            try:
                found = stream.observe(record, row, stamp, config, total)
                if found:
                    alarms += found
            except ReferenceFitError as exc:
                # A reference with no variation (e.g. a constant feature) cannot be
                # standardised. Start its reference again rather than stop the deployment.
                stream.reference_values = []
                stream.reference_first_at = None
                stream.seen_records = 0
                stream.observations = 0
                stream.budget = {"unusable_reference": str(exc)}
                stream.state = StreamState.RECOLLECTING
            except Exception as exc:  # one stream's failure stops only it
                alarms.append(self._quarantine(stream, exc, row, stamp))
        return alarms

    def take_growth_steps(self) -> list[dict[str, Any]]:
        """The binary references' growth steps since the last call, for the audit trail
        (each says which observations joined, the reference before and after, and the chart's
        redesign)."""
        steps: list[dict[str, Any]] = []
        for stream in self.streams.values():
            if stream.grown:
                steps += stream.grown
                stream.grown = []
        return steps

    def declare_baseline(
        self, name: str, *, cases: int, events: int, source: str, at: str
    ) -> dict[str, Any]:
        """Make ``events`` in ``cases`` (from ``source``, e.g. the validation study) the
        reference of the binary stream ``name``: its chart is designed on it (for its
        uncertainty, as any reference) and watches from the next observation; it does not grow.
        Returns the stream's old and new reference, for the audit trail. ValueError, in words,
        when the stream or the numbers cannot be used."""
        stream = self.streams.get(name)
        if stream is None:
            binary = sorted(n for n, st in self.streams.items() if st.spec.kind == "binary")
            more = f" and {len(binary) - 12} more" if binary[12:] else ""
            shown = ", ".join(binary[:12]) + more
            raise ValueError(f"no stream {name!r} (binary streams: {shown or 'none'})")
        if stream.spec.kind != "binary":
            raise ValueError(
                f"stream {name!r} is {stream.spec.kind}: a baseline of events in "
                "cases is declared for a binary stream"
            )
        if cases < 30:
            raise ValueError(f"a baseline needs at least 30 cases, got {cases}")
        if not 0 <= events <= cases:
            raise ValueError(f"events must lie between 0 and the {cases} cases, got {events}")
        if not source.strip():
            raise ValueError("say where the baseline comes from (the study, its dates)")
        coverage = stream.observations / self.records if self.records else 1.0
        budget = share(
            streams=self.config.budget_streams,
            false_alarms_per_year=self.config.false_alarms_per_year,
            observations_per_day=self.config.studies_per_day * (coverage or 1.0),
        )
        ref = RateReference(cases, events)
        try:
            chart = _binary_chart(stream.spec, ref, budget.arl0)
        except CalibrationError as exc:
            raise ValueError(f"stream {name!r}: {exc}") from exc
        old = stream.reference
        stream.detectors = {"bernoulli_cusum": chart}
        stream.budget = budget.numbers()
        stream.reference = ref.to_dict()
        stream.reference_values = []
        stream.reference_first_at = None
        stream.reference_span = None
        stream.growth = None
        stream.quarantine = None
        stream.times = {}
        stream.declared = {"cases": cases, "events": events, "source": source, "at": at}
        stream.state = StreamState.MONITORING
        return {
            "old": old,
            "new": ref.to_dict(),
            "p0": chart.p0,
            "p1": chart.p1,
            "threshold_nats": chart.threshold,
        }

    def held_growth(self) -> set[str]:
        """The streams whose reference growth an alarm holds until its alert is resolved."""
        return {
            name
            for name, s in self.streams.items()
            if s.growth is not None and s.growth.hold is not None and not s.growth.done
        }

    def release_growth(self, streams: set[str]) -> None:
        """The alerts that held these streams' growth are resolved: observations from now on
        may join their references again."""
        for name in streams:
            stream = self.streams.get(name)
            if stream is not None and stream.growth is not None:
                stream.growth.release()

    def recalibrate(self, studies_per_day: float) -> dict[str, dict[str, Any]]:
        """Use ``studies_per_day`` (the observed rate, ``phase4.monitor.drift.rate``) for the
        budget from now on; returns each monitoring stream's old and new ARL0.

        Each monitoring stream's detectors are built again from its reference at the new ARL0
        (its coverage, observations per record, kept), so their statistics start again from
        zero: a statistic accumulated against the old threshold has no meaning against the new
        one for the windowed tests, and a restart after a re-design is the usual zero-state
        start of a chart (Montgomery, *Introduction to Statistical Quality Control*, §9.1). An
        alert already open stays open. A stream the new ARL0 cannot be calibrated for with its
        reference collects a larger one, as at its start. Streams still collecting their
        reference take the new rate when they start. The estimator without labels (CBPE) keeps
        the ARL0 it was fitted with."""
        old_rate = self.config.studies_per_day
        if studies_per_day <= 0:
            raise ValueError(f"studies per day must be positive (got {studies_per_day})")
        self.config = dataclasses.replace(self.config, studies_per_day=studies_per_day)
        changes: dict[str, dict[str, Any]] = {}
        for name, stream in self.streams.items():
            if stream.state is not _MONITORING or not stream.budget or stream.reference is None:
                continue
            old = BudgetShare.from_numbers(stream.budget)
            new = share(
                streams=old.streams_sharing,
                false_alarms_per_year=old.false_alarms_per_year,
                observations_per_day=old.observations_per_day * studies_per_day / old_rate,
            )
            changes[name] = {"old_arl0": old.stream_arl0, "new_arl0": new.stream_arl0}
            values = _reference_summary_values(stream.spec.kind, stream.reference)
            try:
                detectors = _build_detectors(stream.spec, values, new, self.config)
            except CalibrationError as exc:
                stream.reference_values = []
                stream.reference = None
                stream._numeric_ref = None
                stream.detectors = {}
                stream._not_calibratable(exc, new, self.config)
                changes[name]["not_calibratable"] = str(exc)
                continue
            weights = DETECTOR_WEIGHTS[stream.spec.kind]
            stream.detectors = detectors
            stream.budget = {**new.numbers(), **({"weights": weights} if len(weights) > 1 else {})}
        return changes

    def _quarantine(self, stream: Stream, exc: Exception, row: int, stamp: str) -> StreamAlarm:
        """Stop ``stream`` (its state says why) and say so once, in plain words. The words
        name the kind of failure, never the value (it may be anything a client sent)."""
        others = sum(1 for s in self.streams.values() if s is not stream and s.quarantine is None)
        reason = (
            f"stream '{stream.spec.name}' stopped: {failure_words(exc)} on {stamp[:10]}; "
            f"detection of the other {others} streams continues. It stays stopped until its "
            "reference is reset or uploaded."
        )
        stream.quarantine = {"reason": reason, "at": stamp, "error": type(exc).__name__}
        stream.state = StreamState.QUARANTINED
        return _quarantine_notice(stream.spec.name, stream.spec.kind, reason, exc, row, stamp)

    def _quarantine_cbpe(self, exc: Exception, row: int, stamp: str) -> StreamAlarm:
        reason = (
            f"performance estimation without labels stopped: {failure_words(exc)} on "
            f"{stamp[:10]}; detection of the {len(self.streams)} streams continues. It stays "
            "stopped until the reference is reset or uploaded."
        )
        self.cbpe_quarantine = {"reason": reason, "at": stamp, "error": type(exc).__name__}
        return _quarantine_notice("estimated", "numeric", reason, exc, row, stamp)

    def _cbpe(
        self, record: Mapping[str, Any], row: int, stamp: str, source: str
    ) -> list[StreamAlarm]:
        spec = self.config.cbpe
        if not spec:
            return []
        if source == "feedback":
            triple = record.get("cbpe") or {}
            score = finite_float(triple.get("score"))
            truth, call = triple.get("truth"), triple.get("call")
            if self.cbpe is None and score is not None and isinstance(truth, bool):
                self.cbpe_pairs.append([score, truth, bool(call)])
                if len(self.cbpe_pairs) >= int(spec.get("reference_size", 300)):
                    self._fit_cbpe(spec)
            return []
        if self.cbpe is None:
            return []
        score = finite_float(read_field(record, str(spec["score"])))
        call = read_field(record, str(spec["prediction"]))
        if score is None or not isinstance(call, bool):
            return []
        if not self.cbpe.probs:
            self.cbpe_window_at = stamp
        found = self.cbpe.update(score, call, row)
        return [
            StreamAlarm(
                f"estimated.{a.detail['metric']}",
                "numeric",
                a,
                stamp,
                self.cbpe_window_at,
                self._cbpe_share().to_dict(),
                self.cbpe.charts[a.detail["metric"]].describe(),
            )
            for a in found
        ]

    def _fit_cbpe(self, spec: Mapping[str, Any]) -> None:
        scores = [p[0] for p in self.cbpe_pairs]
        truths = [p[1] for p in self.cbpe_pairs]
        calls = [p[2] for p in self.cbpe_pairs]
        if len(set(truths)) < 2:
            return  # keep collecting until both outcomes have been confirmed
        budget = self._cbpe_share()
        self.cbpe = PerformanceEstimator.fit(
            scores, truths, calls, window=int(spec.get("window", 200)), arl0=budget.arl0
        )
        self.cbpe_pairs = []

    def _cbpe_share(self) -> BudgetShare:
        return share(
            streams=self.config.budget_streams,
            false_alarms_per_year=self.config.false_alarms_per_year,
            observations_per_day=self.config.studies_per_day,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "state_version": STATE_VERSION,
            "cbpe_pairs": self.cbpe_pairs,
            "cbpe": self.cbpe.to_dict() if self.cbpe else None,
            "cbpe_window_at": self.cbpe_window_at,
            "cbpe_quarantine": self.cbpe_quarantine,
            "config": self.config.to_dict(),
            "records": self.records,
            "feedback": self.feedback,
            "streams": {k: v.to_dict() for k, v in self.streams.items()},
        }

    @classmethod
    def from_dict(cls, saved: Mapping[str, Any]) -> DeploymentMonitor:
        """From a saved state of any version (upgraded by
        :func:`phase4.monitor.drift.state.upgrade_state`)."""
        d = upgrade_state(saved)
        return cls(
            config=MonitorConfig.from_dict(d["config"]),
            streams={k: Stream.from_dict(v) for k, v in d["streams"].items()},
            records=d["records"],
            feedback=d["feedback"],
            cbpe_pairs=list(d["cbpe_pairs"]),
            cbpe=PerformanceEstimator.from_dict(d["cbpe"]) if d["cbpe"] else None,
            cbpe_window_at=d["cbpe_window_at"],
            cbpe_quarantine=d["cbpe_quarantine"],
        )
