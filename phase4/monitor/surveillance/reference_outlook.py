"""Will each stream's reference ever be complete? Its expected completion at the observed rate.

A stream watches nothing until its reference holds ``reference_size`` values (and a binary one
its ``reference_events_min`` events). At 74 studies a year a 500-value reference takes about
seven years: the page said "collecting the reference (74 of 500 values)" and nothing more, which
reads as "nearly there" when the deployment is, in practice, never watched. This module says
when each collecting stream will be complete at the rate its deployment's studies are being
*acquired*, and flags those that will not be complete within the deployment's
``reference_horizon_days`` (``MonitoringConfig``, default 90): the deployment page, /metrics
and the export all read it from here.

The arithmetic, per deployment and stream:

- **rate**: records per day by acquisition time (``acquired_at``; arrival time says nothing
  of the clinic's pace when a backlog is sent at once) over the last
  :data:`RATE_WINDOW_DAYS` days, or since the first record when that is more recent (records
  before ``accepted_at`` count too: they tell the clinic's pace); the window is counted in whole
  days (at least one) so that the estimate does not move with the clock between two reads;
- **share**: the values a stream takes per record analysed so far (a subgroup stream, a field
  often missing, or labelled outcomes take fewer than one); one per record before any record
  was analysed;
- **values still needed**: ``reference_size`` minus the values held; for a binary stream still
  short of its events, the values the events need at the event rate seen so far, capped where
  the engine stops waiting (``BINARY_REFERENCE_CAP`` times its size);
- **days** = values still needed / (rate x share); no days (never) when nothing arrives.

Only streams collecting a reference are concerned; a stream that gave up or was stopped is
reported elsewhere (its state says why).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from phase4.monitor.core.monitoring import (
    MonitoringConfig,
    MonitoringConfigError,
    parse_monitoring,
)
from phase4.monitor.drift.state import StreamState, upgrade_state
from phase4.monitor.drift.streams import BINARY_REFERENCE_CAP
from phase4.monitor.store.models import Deployment, DetectorState, InferenceRecord
from phase4.monitor.surveillance.detection import STATE_DETECTOR, STATE_STREAM

RATE_WINDOW_DAYS = 30
DEFAULT_HORIZON_DAYS: int = MonitoringConfig.model_fields["reference_horizon_days"].default
COLLECTING = frozenset(
    {StreamState.COLLECTING, StreamState.COLLECTING_LARGER, StreamState.RECOLLECTING}
)
ADVICE = (
    "consider a smaller reference (reference_size) or declaring a baseline "
    "(phase4 reference upload; for an event rate, phase4 reference declare)"
)


@dataclass(frozen=True)
class StreamNeed:
    """What a collecting stream still needs, from its saved state alone."""

    stream: str
    have: int  # values in the reference so far
    target: int  # the reference's size
    remaining: float  # values still needed (an estimate for a binary stream short of events)
    share: float  # values the stream takes per record


@dataclass(frozen=True)
class ArrivalRate:
    """Records acquired in the last ``days`` whole days (``RATE_WINDOW_DAYS``, or since the
    first record)."""

    records: int
    days: int

    @property
    def per_day(self) -> float:
        return self.records / self.days

    def words(self) -> str:
        """'74 studies/year', '3.5 studies/day', or 'no study acquired in the last 30 days'."""
        per_day = self.per_day
        if per_day <= 0:
            return f"no study acquired in the last {self.days} days"
        if per_day < 1:
            return f"{per_day * 365:.0f} studies/year"
        return f"{per_day:.0f} studies/day" if per_day >= 10 else f"{per_day:.1f} studies/day"


@dataclass(frozen=True)
class StreamEta:
    need: StreamNeed
    days: float | None  # None: never at this rate

    def to_dict(self, horizon_days: int) -> dict[str, Any]:
        n = self.need
        return {
            "stream": n.stream,
            "values_held": n.have,
            "reference_size": n.target,
            "values_needed": math.ceil(n.remaining),
            "values_per_record": n.share,
            "eta_days": None if self.days is None else round(self.days, 1),
            "completes_within_horizon": self.days is not None and self.days <= horizon_days,
        }


@dataclass(frozen=True)
class ReferenceOutlook:
    """A deployment's collecting streams and when each will be complete."""

    deployment: str
    horizon_days: int
    rate: ArrivalRate | None  # None: no record yet
    streams: tuple[StreamEta, ...]

    @property
    def hopeless(self) -> tuple[StreamEta, ...]:
        """The collecting streams that will not be complete within the horizon, the soonest
        first (those that never will last)."""
        if self.rate is None:
            return ()
        late = [s for s in self.streams if s.days is None or s.days > self.horizon_days]
        return tuple(sorted(late, key=lambda s: (s.days is None, s.days or 0.0, s.need.stream)))

    def sentence(self) -> str | None:
        """One line for people, or None when every collecting stream will be in time."""
        late = self.hopeless
        if not late or self.rate is None:
            return None
        n = len(late)
        what = (
            f"{n} streams will not complete their reference"
            if n > 1
            else f"1 stream ({late[0].need.stream}) will not complete its reference"
        )
        days = sorted(s.days for s in late if s.days is not None)
        if not days:
            when = "at all at this rate"
        elif days[-1] <= days[0] * 1.1:
            when = f"about {duration_words(days[-1])} more"
        else:
            low, high = duration_words(days[0]), duration_words(days[-1])
            low_n, _, low_unit = low.partition(" ")
            same_unit = low_unit == high.partition(" ")[2]
            when = f"{low_n if same_unit else low} to {high} more"
            if len(days) < n:
                when += ", some never"
        return f"{what} within {self.horizon_days} days at {self.rate.words()} ({when}): {ADVICE}."

    def to_dict(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment,
            "horizon_days": self.horizon_days,
            "rate_window_days": None if self.rate is None else self.rate.days,
            "records_in_window": None if self.rate is None else self.rate.records,
            "records_per_day": None if self.rate is None else round(self.rate.per_day, 4),
            "streams_collecting": len(self.streams),
            "streams_not_complete_within_horizon": len(self.hopeless),
            "summary": self.sentence(),
            "streams": [s.to_dict(self.horizon_days) for s in self.streams],
        }


def duration_words(days: float) -> str:
    """'12 days', '7 months', '6.8 years'."""
    if days < 60:
        return f"{days:.0f} days"
    if days < 730:
        return f"{days / 30.44:.0f} months"
    return f"{days / 365.25:.1f} years"


def horizon_days(monitoring: Any) -> int:
    """The deployment's ``reference_horizon_days`` (the default when its stored configuration
    does not validate: detection reports that with its own alert)."""
    try:
        return parse_monitoring(monitoring).reference_horizon_days
    except MonitoringConfigError:
        return DEFAULT_HORIZON_DAYS


def stream_needs(state: Mapping[str, Any] | None) -> tuple[StreamNeed, ...]:
    """The collecting streams of a saved detector state (``DeploymentMonitor.to_dict``, any
    version) and the values each still needs; an unreadable state or stream is left out."""
    if not state:
        return ()
    try:
        saved = upgrade_state(state)
        streams = saved["streams"]
        records = int(saved.get("records") or 0)
        events_min = int((saved.get("config") or {}).get("reference_events_min") or 0)
    except (KeyError, TypeError, ValueError):
        return ()
    out = []
    for name, s in sorted(streams.items()):
        try:
            if StreamState(s["state"]) not in COLLECTING:
                continue
            values = s["reference_values"]
            have, target = len(values), int(s["reference_size"])
            remaining = float(max(0, target - have))
            if s["spec"]["kind"] == "binary":
                remaining = max(remaining, _binary_remaining(values, target, events_min))
            share = min(1.0, int(s.get("observations") or 0) / records) if records else 1.0
        except (KeyError, TypeError, ValueError):
            continue
        out.append(StreamNeed(str(name), have, target, remaining, share))
    return tuple(out)


def _binary_remaining(values: Sequence[Any], target: int, events_min: int) -> float:
    """Values a binary reference still needs for its events, at the event rate so far (the
    engine stops waiting at ``BINARY_REFERENCE_CAP`` times its size)."""
    have = len(values)
    events = sum(1 for v in values if v)
    if events >= events_min:
        return 0.0
    cap = float(max(0, BINARY_REFERENCE_CAP * target - have))
    if events == 0:
        return cap
    return min(cap, (events_min - events) * have / events)


def outlook(
    deployment: str,
    needs: Iterable[StreamNeed],
    rate: ArrivalRate | None,
    horizon: int,
) -> ReferenceOutlook:
    """Each collecting stream's days to completion at ``rate``."""
    etas = []
    for need in needs:
        per_day = (rate.per_day if rate is not None else 0.0) * need.share
        if need.remaining <= 0:
            days: float | None = 0.0
        elif per_day > 0:
            days = need.remaining / per_day
        else:
            days = None
        etas.append(StreamEta(need, days))
    return ReferenceOutlook(deployment, horizon, rate, tuple(etas))


def rate_columns(now: datetime, deployment_id: Any) -> tuple[Any, Any]:
    """Two scalar subqueries for the deployment whose id is ``deployment_id`` (a value or a
    column, to correlate them with a query of deployments): its first acquisition (one probe of
    the (deployment, acquisition time) index) and the records acquired in the last
    ``RATE_WINDOW_DAYS`` days (a range of it)."""
    ir = InferenceRecord
    first = (
        sa.select(sa.func.min(ir.acquired_at))
        .where(col(ir.deployment_id) == deployment_id)
        .scalar_subquery()
    )
    recent = (
        sa.select(sa.func.count())
        .where(
            col(ir.deployment_id) == deployment_id,
            col(ir.acquired_at) >= now - timedelta(days=RATE_WINDOW_DAYS),
            col(ir.acquired_at) <= now,
        )
        .scalar_subquery()
    )
    return first, recent


def rate_from(first: Any, recent: Any, now: datetime) -> ArrivalRate | None:
    """The rate from :func:`rate_columns`' values; None before the first record. The window
    is the last ``RATE_WINDOW_DAYS`` days, or the days since the first record, whole days."""
    first_at = _aware(first)
    if first_at is None:
        return None
    start = max(first_at, now - timedelta(days=RATE_WINDOW_DAYS))
    days = max(1, min(RATE_WINDOW_DAYS, math.ceil((now - start) / timedelta(days=1))))
    return ArrivalRate(int(recent or 0), days)


def arrival_rate(session: Session, deployment_id: str, now: datetime) -> ArrivalRate | None:
    """Records per day by acquisition time (see the module's docstring); None before the
    first record."""
    first, recent = session.execute(sa.select(*rate_columns(now, deployment_id))).one()
    return rate_from(first, recent, now)


def _aware(value: Any) -> datetime | None:
    """An aggregate bypasses the column type: SQLite gives naive UTC text or datetimes."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def deployment_outlook(session: Session, deployment: Deployment, now: datetime) -> ReferenceOutlook:
    """The deployment's outlook from its stored detector state and records."""
    row = session.exec(
        select(DetectorState).where(
            DetectorState.deployment_id == deployment.id,
            DetectorState.stream == STATE_STREAM,
            DetectorState.detector == STATE_DETECTOR,
        )
    ).first()
    needs = stream_needs(row.state if row is not None else None)
    rate = arrival_rate(session, deployment.id, now) if needs else None
    return outlook(deployment.id, needs, rate, horizon_days(deployment.monitoring))
