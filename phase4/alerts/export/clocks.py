"""Serious-incident reporting clocks: when each regulator must hear of an incident.

Pure date arithmetic, no database. Every clock runs from the day the organisation became aware
(``Incident.aware_at``, taken as a UTC calendar date) and is chosen by the incident's
seriousness and whether remedial action is needed:

* EU AI Act Art. 73 (``eu_ai_act``): 15 days (73(2)); 10 days after a death (73(4)); 2 days
  for a widespread infringement or a serious and irreversible disruption of critical
  infrastructure (73(3)).
* EU MDR Art. 87 (``eu_mdr``): 15 days (87(3)); 10 days for a death or an unanticipated serious
  deterioration in a person's state of health (87(5)); 2 days for a serious public health
  threat (87(4)). ``serious_harm`` is taken as a possible unanticipated serious deterioration
  (the earlier clock: the register must not tell someone they have more time than they may
  have); ``widespread`` as a serious public health threat.
* FDA 21 CFR 803 (``fda_803``), manufacturer reports: 30 calendar days (803.50); 5 work days
  when remedial action is needed to prevent an unreasonable risk of substantial harm to the
  public health (803.53). Work days skip Saturdays and Sundays; public holidays are not
  modelled (a holiday in the window makes the true due date later, never earlier).

Day counting: day 0 is the day of awareness; "within N days" is due on aware date + N days; a
report on the due date is on time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

SERIOUSNESS = ("death", "serious_harm", "widespread", "critical_infrastructure", "malfunction")

EU_AI_ACT = "eu_ai_act"
EU_MDR = "eu_mdr"
FDA_803 = "fda_803"
REGIMES: tuple[str, ...] = (EU_AI_ACT, EU_MDR, FDA_803)
REGIME_TITLES = {
    EU_AI_ACT: "EU AI Act Art. 73",
    EU_MDR: "EU MDR Art. 87",
    FDA_803: "FDA 21 CFR 803 (manufacturer)",
}

DayKind = Literal["calendar", "work"]
Status = Literal["reported_on_time", "reported_late", "open", "overdue"]


class ClockError(ValueError):
    """An incident's data cannot be put on a clock (unknown seriousness or regime, bad date)."""


@dataclass(frozen=True)
class Deadline:
    """How long a regime allows, and why."""

    days: int
    kind: DayKind
    rule: str


@dataclass(frozen=True)
class Clock:
    """One incident's clock under one regime, as of a given day."""

    regime: str
    aware_on: date
    deadline: Deadline
    due: date
    reported_on: date | None
    status: Status
    days_left: int | None  # open: calendar days from as_of to due (0 = due today)
    days_overdue: int | None  # overdue or reported late: calendar days past due

    @property
    def summary(self) -> str:
        if self.status == "reported_on_time":
            return f"reported on time ({self.reported_on})"
        if self.status == "reported_late":
            return f"reported late ({self.reported_on}, {self.days_overdue} days after due)"
        if self.status == "open":
            return f"open, {self.days_left} days left"
        return f"overdue by {self.days_overdue} days"

    def to_dict(self) -> dict[str, Any]:
        return {
            "regime": self.regime,
            "regime_title": REGIME_TITLES.get(self.regime, self.regime),
            "aware_on": self.aware_on.isoformat(),
            "deadline_days": self.deadline.days,
            "deadline_kind": self.deadline.kind,
            "rule": self.deadline.rule,
            "due": self.due.isoformat(),
            "reported_on": self.reported_on.isoformat() if self.reported_on else None,
            "status": self.status,
            "days_left": self.days_left,
            "days_overdue": self.days_overdue,
            "summary": self.summary,
        }


def _check_seriousness(seriousness: str) -> None:
    if seriousness not in SERIOUSNESS:
        raise ClockError(
            f"unknown seriousness {seriousness!r}: expected one of {', '.join(SERIOUSNESS)}"
        )


def deadline(regime: str, seriousness: str, remedial_action_needed: bool = False) -> Deadline:
    """The reporting deadline of ``regime`` for an incident of this seriousness."""
    _check_seriousness(seriousness)
    if regime == EU_AI_ACT:
        if seriousness in ("widespread", "critical_infrastructure"):
            return Deadline(2, "calendar", "Art. 73(3): widespread or critical infrastructure")
        if seriousness == "death":
            return Deadline(10, "calendar", "Art. 73(4): death")
        return Deadline(15, "calendar", "Art. 73(2): serious incident")
    if regime == EU_MDR:
        if seriousness == "widespread":
            return Deadline(2, "calendar", "Art. 87(4): serious public health threat")
        if seriousness in ("death", "serious_harm"):
            return Deadline(
                10, "calendar", "Art. 87(5): death or unanticipated serious deterioration"
            )
        return Deadline(15, "calendar", "Art. 87(3): serious incident")
    if regime == FDA_803:
        if remedial_action_needed:
            return Deadline(5, "work", "21 CFR 803.53: remedial action needed (5 work days)")
        return Deadline(30, "calendar", "21 CFR 803.50: 30 calendar days")
    raise ClockError(f"unknown regime {regime!r}: expected one of {', '.join(REGIMES)}")


def add_work_days(start: date, days: int) -> date:
    """``start`` plus ``days`` working days (Monday to Friday; public holidays not modelled)."""
    if days < 0:
        raise ClockError("a deadline cannot be negative")
    current = start
    left = days
    while left > 0:
        current += timedelta(days=1)
        if current.weekday() < 5:
            left -= 1
    return current


def due_date(aware_on: date, limit: Deadline) -> date:
    if limit.kind == "work":
        return add_work_days(aware_on, limit.days)
    return aware_on + timedelta(days=limit.days)


def as_date(value: date | datetime | str | None, *, what: str = "date") -> date | None:
    """A date from a date, an aware datetime (its UTC date) or an ISO string; None stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ClockError(f"{what} {value!r} has no time zone")
        return value.astimezone(UTC).date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            if len(value) == 10:
                return date.fromisoformat(value)
            return as_date(datetime.fromisoformat(value), what=what)
        except ValueError as exc:
            raise ClockError(f"{what} {value!r} is not an ISO date") from exc
    raise ClockError(f"{what} {value!r} is not a date")


def clock(
    regime: str,
    *,
    seriousness: str,
    remedial_action_needed: bool,
    aware_at: date | datetime,
    reported: date | datetime | str | None,
    as_of: date,
) -> Clock:
    """The state of one regime's clock for one incident on ``as_of``."""
    limit = deadline(regime, seriousness, remedial_action_needed)
    aware_on = as_date(aware_at, what="aware_at")
    assert aware_on is not None
    due = due_date(aware_on, limit)
    reported_on = as_date(reported, what=f"{regime} report date")
    if reported_on is not None:
        late = (reported_on - due).days
        if late <= 0:
            return Clock(regime, aware_on, limit, due, reported_on, "reported_on_time", None, None)
        return Clock(regime, aware_on, limit, due, reported_on, "reported_late", None, late)
    if as_of <= due:
        return Clock(regime, aware_on, limit, due, None, "open", (due - as_of).days, None)
    return Clock(regime, aware_on, limit, due, None, "overdue", None, (as_of - due).days)


def incident_clocks(
    *,
    seriousness: str,
    remedial_action_needed: bool,
    aware_at: date | datetime,
    reports: Mapping[str, Any] | None,
    as_of: date,
    regimes: tuple[str, ...] = REGIMES,
) -> list[Clock]:
    """Every regime's clock for one incident (``reports`` maps regime -> ISO report date;
    keys that name no regime are ignored here, see :func:`unknown_regimes`)."""
    reports = reports or {}
    return [
        clock(
            r,
            seriousness=seriousness,
            remedial_action_needed=remedial_action_needed,
            aware_at=aware_at,
            reported=reports.get(r),
            as_of=as_of,
        )
        for r in regimes
    ]


def unknown_regimes(reports: Mapping[str, Any] | None) -> list[str]:
    """Keys of ``Incident.reports`` that name no regime phase4 knows (likely typos)."""
    return sorted(str(k) for k in (reports or {}) if k not in REGIMES)
